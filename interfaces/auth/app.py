"""The authorization server's HTTP endpoints (Litestar glue around :class:`AuthService`)."""

from __future__ import annotations

import hmac
import secrets

import anyio
from authlib.oauth2.rfc6749.util import extract_basic_authorization
from litestar import Litestar, MediaType, Request, Response, get, post
from litestar.datastructures import Cookie, MutableScopeHeaders, State
from litestar.types import Message, Scope
from opentelemetry.trace import TracerProvider

from infrastructure.observability.metrics import Metrics
from interfaces.auth.login import CSRF_FIELD, LOGIN_PAGE_CSP, OAUTH_FIELDS, login_page
from interfaces.auth.oauth import FormRequest, OAuthResponse
from interfaces.auth.service import AUTHORIZE_PATH, JWKS_PATH, TOKEN_PATH, AuthService
from interfaces.http.metrics import instrument
from interfaces.http.middleware import correlation_middleware
from interfaces.http.tracing import route_span_names, tracing_plugins

CSRF_COOKIE = "clinic_auth_csrf"
MAX_REQUEST_BYTES = 16384
SECURITY_HEADERS = {"X-Content-Type-Options": "nosniff", "X-Frame-Options": "DENY",
                    "Referrer-Policy": "no-referrer", "Content-Security-Policy": LOGIN_PAGE_CSP}
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


def create_auth_app(service: AuthService, metrics: Metrics | None = None,
                    tracer_provider: TracerProvider | None = None) -> Litestar:
    """The Litestar app of ``clinic run auth`` (tests build it the same way); ``/metrics`` with ``metrics``;
    server spans with ``tracer_provider``. Every line a request logs carries its correlation id (the caller's
    ``X-Correlation-Id``, e.g. a service fetching a token for a booking's call, else a new one)."""
    return instrument(Litestar(route_handlers=[token, authorize_form, authorize_login, jwks, metadata,
                                               openid_configuration, live, ready],
                               state=State({"auth": service}), before_send=[_security_headers],
                               request_max_body_size=MAX_REQUEST_BYTES, openapi_config=None,
                               logging_config=None, middleware=[correlation_middleware, route_span_names],
                               plugins=tracing_plugins(tracer_provider)), metrics)  # logging_config: ours (configure_logging)


@post(TOKEN_PATH, status_code=200)
async def token(request: Request) -> Response:
    """RFC 6749 §3.2: exchange client credentials, or a code and its PKCE verifier, for an access token."""
    auth = _auth(request)
    params = await _form(request)
    client_id = extract_basic_authorization(request.headers)[0] or _first(params, "client_id")
    keys = [("token-ip", _ip(request))] + ([("token-client", client_id)] if client_id else [])
    wait = auth.limits.retry_after(auth.limits.token, *keys)
    if wait is not None:
        return _too_many_requests(wait)
    repeated = sorted(name for name, values in params.items() if len(values) > 1)
    if repeated:
        return _oauth_error(400, "invalid_request", f"Parameters sent more than once: {', '.join(repeated)}.")
    oauth = FormRequest("POST", auth.url(TOKEN_PATH), request.headers, params)
    return _response(await anyio.to_thread.run_sync(auth.server.create_token_response, oauth))


@get(AUTHORIZE_PATH)
async def authorize_form(request: Request) -> Response:
    """RFC 6749 §4.1.1: validate the authorization request, then show the login form."""
    auth = _auth(request)
    params = {name: request.query_params.getall(name) for name in request.query_params}
    oauth = FormRequest("GET", auth.url(AUTHORIZE_PATH), request.headers, params)
    grant = auth.consent(oauth)
    if isinstance(grant, OAuthResponse):
        return _response(grant)
    return _login_page(auth, oauth, grant.request.scope, request.cookies.get(CSRF_COOKIE))


@post(AUTHORIZE_PATH, status_code=200)
async def authorize_login(request: Request) -> Response:
    """The login form posted: the right password redirects to the client with ``code`` and ``state``."""
    auth = _auth(request)
    wait = auth.limits.retry_after(auth.limits.login, ("login-ip", _ip(request)))
    if wait is not None:
        return _too_many_requests(wait)
    params = await _form(request)
    cookie = request.cookies.get(CSRF_COOKIE, "")
    if not cookie or not hmac.compare_digest(cookie, _first(params, CSRF_FIELD) or ""):
        return Response("The sign-in form expired or was not ours: go back to the application and start again.",
                        status_code=403, media_type=MediaType.TEXT, headers=NO_STORE)
    oauth = FormRequest("POST", auth.url(AUTHORIZE_PATH), request.headers,
                        {name: values for name, values in params.items() if name in OAUTH_FIELDS})
    username = _first(params, "username") or ""
    grant = await anyio.to_thread.run_sync(auth.sign_in, oauth, username, _first(params, "password") or "")
    if isinstance(grant, OAuthResponse):
        return _response(grant)
    return _login_page(auth, oauth, grant.request.scope, cookie, "Wrong username or password.", username)


@get(JWKS_PATH, sync_to_thread=False)
def jwks(request: Request) -> Response:
    """The public keys: next (pre-published), current and retired (until their last token expired)."""
    return Response(_auth(request).keys.ring().published(), headers={"Cache-Control": "public, max-age=60"},
                    media_type="application/jwk-set+json")


@get("/.well-known/oauth-authorization-server", sync_to_thread=False)
def metadata(request: Request) -> dict[str, object]:
    """RFC 8414 authorization server metadata."""
    return _auth(request).metadata()


@get("/.well-known/openid-configuration", sync_to_thread=False)
def openid_configuration(request: Request) -> dict[str, object]:
    """The same metadata where OpenID Connect clients look for it (this server issues no ID tokens)."""
    return _auth(request).metadata()


@get("/health/live", sync_to_thread=False)
def live() -> dict[str, str]:
    """The process is up."""
    return {"status": "ok"}


@get("/health/ready", sync_to_thread=False)
def ready(request: Request) -> Response:
    """The signing keys, clients and users can be read."""
    checks = _auth(request).readiness()
    ok = all(checks.values())
    return Response({"status": "ok" if ok else "unavailable", "checks": checks}, status_code=200 if ok else 503)


def _auth(request: Request) -> AuthService:
    return request.app.state["auth"]


async def _form(request: Request) -> dict[str, list[str]]:
    form = await request.form()
    return {name: [str(v) for v in form.getall(name)] for name in form}


def _first(params: dict[str, list[str]], name: str) -> str | None:
    values = params.get(name)
    return values[0] if values else None


def _ip(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def _login_page(auth: AuthService, oauth: FormRequest, scope: str, csrf: str | None, error: str | None = None,
                username: str = "") -> Response:
    csrf = csrf or secrets.token_urlsafe(32)
    page = login_page(auth.url(AUTHORIZE_PATH), oauth.payload.data, scope, csrf, error, username)
    cookie = Cookie(key=CSRF_COOKIE, value=csrf, path=AUTHORIZE_PATH, httponly=True, samesite="strict",
                    secure=auth.issuer.startswith("https://"), max_age=900)
    return Response(page, media_type=MediaType.HTML, headers=NO_STORE, cookies=[cookie])


def _response(result: OAuthResponse) -> Response:
    headers = dict(result.headers)
    media_type = headers.pop("Content-Type", MediaType.JSON)
    if result.status in (301, 302, 303, 307):
        return Response(b"", status_code=result.status, headers={**headers, **NO_STORE})
    return Response(result.body, status_code=result.status, headers={**NO_STORE, **headers}, media_type=media_type)


def _oauth_error(status: int, error: str, description: str, headers: dict[str, str] | None = None) -> Response:
    return Response({"error": error, "error_description": description}, status_code=status,
                    headers={**NO_STORE, **(headers or {})}, media_type=MediaType.JSON)


def _too_many_requests(wait: int) -> Response:
    return _oauth_error(429, "temporarily_unavailable", f"Too many requests: retry after {wait} seconds.",
                        {"Retry-After": str(wait)})


async def _security_headers(message: Message, scope: Scope) -> None:
    """``before_send``: on every response, errors and 404s included."""
    if message["type"] == "http.response.start":
        headers = MutableScopeHeaders.from_message(message)
        for name, value in SECURITY_HEADERS.items():
            if name not in headers:
                headers[name] = value
