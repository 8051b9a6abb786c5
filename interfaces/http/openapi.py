"""OpenAPI details shared by the controllers: error responses and the security scheme."""

from __future__ import annotations

from litestar.openapi import OpenAPIConfig, ResponseSpec
from litestar.openapi.spec import Components, SecurityScheme

from interfaces.http.schemas import Problem

_DESCRIPTIONS = {
    400: "Malformed request (bad JSON, parameter or query)",
    401: "Missing or invalid bearer token",
    403: "Authenticated but not allowed",
    404: "No such resource (an id in the path that is not a UUID names none)",
    409: "Conflict with the resource's current state or version",
    422: "The body does not match the schema; `errors` names the field",
}


def errors(*statuses: int) -> dict[int, ResponseSpec]:
    """Problem-details responses for the given statuses (400 is always possible)."""
    return {
        status: ResponseSpec(data_container=Problem, description=_DESCRIPTIONS[status],
                             media_type="application/problem+json", generate_examples=False)
        for status in sorted({400, *statuses})
    }


def openapi_config() -> OpenAPIConfig:
    return OpenAPIConfig(
        title="Clinic booking API",
        version="1.0.0",
        description="Book clinic consultations; each booking is a saga that confirms or compensates.",
        path="/schema",
        components=Components(security_schemes={
            "BearerToken": SecurityScheme(type="http", scheme="bearer", bearer_format="JWT",
                                          description="ES256/RS256 JWT with sub, roles, scope, iss, aud, exp"),
        }),
        security=[{"BearerToken": []}],
    )
