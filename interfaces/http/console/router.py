"""Everything under ``/console``: the pages, the sign-in, the static assets, behind CSRF-checked forms."""

from __future__ import annotations

import secrets

from litestar import Controller, Router
from litestar.config.csrf import CSRFConfig
from litestar.exceptions import PermissionDeniedException
from litestar.middleware import DefineMiddleware
from litestar.middleware.csrf import CSRFMiddleware
from litestar.static_files import create_static_files_router

from application.audit import AuditQueryError
from domain.base import NotFoundError
from infrastructure.messaging.connection import BrokerError
from infrastructure.messaging.dlq import DeadLetterNotFoundError, UnknownFollowerError
from interfaces.http.console.dead_letters import ConsoleDeadLetters
from interfaces.http.console.oauth import ConsoleOAuthSignIn
from interfaces.http.console.pages import (
    ConsoleEntrance,
    ConsoleLive,
    ConsolePages,
    ConsoleSignIn,
    refused,
    signed_out,
    unavailable,
)
from interfaces.http.console.read_models import ConsoleReadModels
from interfaces.http.console.render import OPEN, STATIC
from interfaces.http.console.session import PATH, Console, SignInRequired
from interfaces.http.console.streams import ConsoleStreams
from process_managers.booking import SagaStateError


def console_pages(console: Console) -> list[type[Controller]]:
    """The console's controllers: how operators sign in, and the pages of what this console reaches."""
    return [ConsoleEntrance, ConsoleOAuthSignIn if console.oauth is not None else ConsoleSignIn,
            *([ConsolePages, ConsoleStreams, ConsoleLive, ConsoleReadModels] if console.reads_sagas else []),
            *([ConsoleDeadLetters] if console.dead_letters is not None else [])]


def console_router(console: Console) -> Router:
    """The console's routes; CSRF is checked on its forms only (the API's routes take bearer tokens)."""
    csrf = CSRFConfig(secret=secrets.token_hex(32), cookie_path=PATH, cookie_samesite="strict",
                      cookie_httponly=False, cookie_secure=console.secure_cookie)
    static = create_static_files_router(path=f"{PATH}/static", directories=[STATIC], opt=OPEN,
                                        include_in_schema=False, send_as_attachment=False)
    return Router(path="/", route_handlers=[*console_pages(console), static],
                  middleware=[DefineMiddleware(CSRFMiddleware, config=csrf)],
                  exception_handlers={SignInRequired: signed_out, PermissionDeniedException: refused,
                                      NotFoundError: refused, SagaStateError: refused, UnknownFollowerError: refused,
                                      PermissionError: refused, AuditQueryError: refused,
                                      DeadLetterNotFoundError: refused, BrokerError: unavailable,
                                      ConnectionError: unavailable})
