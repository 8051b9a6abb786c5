"""The OpenAPI document as the code generates it (committed in specs/openapi.json)."""

from __future__ import annotations

import json
from typing import Any

from litestar.serialization import encode_json

from application.bootstrap import bootstrap
from application.settings import Settings
from infrastructure.security.tokens import TokenVerifier, public_keys
from interfaces.http.app import create_app
from interfaces.http.openapi import complete


def openapi_document() -> dict[str, Any]:
    """Generate the document from the routes (completed as the app serves it), with no event store on disk."""
    clinic = bootstrap(Settings(persistence="memory"))
    try:
        verifier = TokenVerifier(public_keys([]), "unused", "unused")
        app = create_app(clinic, verifier)
        return complete(json.loads(encode_json(app.openapi_schema.to_schema())))
    finally:
        clinic.close()
