"""Who is using the console: a signed-in operator, carried by a session cookie, never by a URL.

The cookie holds an access token of the clinic's issuer (the development issuer in embedded mode, so
``clinic serve`` needs nothing else), ``HttpOnly`` (no script reads it), ``SameSite=Strict`` (no other
site's page sends it) and scoped to ``/console``; the API's own routes never read it. Each request's
token is verified like a bearer token, and only ADMIN and AUDITOR may use the console.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import anyio
from litestar import Request
from litestar.exceptions import NotAuthorizedException, PermissionDeniedException

from application.views import STUCK_AFTER
from domain.values import Role
from infrastructure.messaging.dlq import DeadLetterDesk
from infrastructure.security.tokens import InvalidTokenError, Principal, TokenIssuer, TokenVerifier

if TYPE_CHECKING:
    from interfaces.http.console.oauth import ConsoleOAuth

COOKIE = "clinic_console"
PATH = "/console"
SESSION_SECONDS = 8 * 3600
"""How long a console sign-in lasts (an operator's shift)."""
OPERATORS = (Role.ADMIN, Role.AUDITOR)
"""Who may use the console: admins act, auditors only read."""


class SignInRequired(NotAuthorizedException):
    """No valid console session: the browser is sent to the sign-in page."""


@dataclass(frozen=True)
class Console:
    """The console's settings: how operators sign in (embedded mode: the development sign-in, a form that
    names the operator and their role, signed by the development issuer as ``clinic token`` is; distributed
    mode: ``oauth``, through the authorization server), what it reads, and when a saga counts as stuck."""

    issuer: TokenIssuer | None
    """The development issuer the development sign-in signs with (``None``: sign in through ``oauth``)."""
    oauth: ConsoleOAuth | None = field(default=None, compare=False)
    """The console as a public client of the authorization server (code + PKCE)."""
    in_process: bool = True
    """It runs beside the clinic's stores (embedded mode: sagas, streams, read models, live updates);
    ``False``: it reaches what it has a connection to (``clinic run console``: the API, the dead letters)."""
    api_url: str | None = None
    """Where a console apart from the stores reads sagas and streams: the clinic's public API (the gateway),
    as the signed-in operator (``None``: it does not)."""
    secure_cookie: bool = False
    """``Secure`` on the cookie (behind https)."""
    stuck_after: timedelta = STUCK_AFTER
    """An open saga on one step longer than this is stuck (as is any saga past its deadline)."""
    dead_letters: DeadLetterDesk | None = field(default=None, compare=False)
    """Where the followers' dead letters are read and re-driven (a broker; ``None``: no broker, no page)."""
    trace_url_template: str | None = None
    """``CLINIC_TRACE_URL_TEMPLATE``: where a trace is shown, ``{trace_id}`` in it (``None``: no link)."""

    def trace_url(self, trace_id: str | None) -> str | None:
        if not self.trace_url_template or not trace_id:
            return None
        return self.trace_url_template.replace("{trace_id}", trace_id)

    @property
    def reads_sagas(self) -> bool:
        """It shows sagas and streams (from the stores, or through the API)."""
        return self.in_process or self.api_url is not None

    @property
    def home(self) -> str:
        """Where a signed-in operator starts."""
        return f"{PATH}/sagas" if self.reads_sagas else f"{PATH}/dead-letters"

    def session_token(self, sub: str, role: Role) -> str:
        if self.issuer is None:
            raise RuntimeError("this console signs operators in through the authorization server")
        return self.issuer.issue(sub, [role], ttl_seconds=SESSION_SECONDS, client_id="clinic-console")


def console_of(request: Request[Any, Any, Any]) -> Console:
    """This app's console settings."""
    console: Console = request.app.state.console
    return console


async def operator(request: Request[Any, Any, Any]) -> Principal:
    """The signed-in operator (``SignInRequired`` without a valid session; 403 for other roles)."""
    token = request.cookies.get(COOKIE)
    if not token:
        raise SignInRequired("sign in to the console")
    verifier: TokenVerifier = request.app.state.verifier
    remembered = getattr(verifier, "cached", None)
    principal: Principal | None = remembered(token) if remembered is not None else None
    if principal is None:
        try:
            principal = await anyio.to_thread.run_sync(verifier.verify, token)
        except InvalidTokenError:
            raise SignInRequired("your console session has ended; sign in again") from None
    if not principal.has_role(*OPERATORS):
        raise PermissionDeniedException("the console is for admins and auditors")
    return principal
