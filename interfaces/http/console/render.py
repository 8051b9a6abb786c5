"""How every console page is answered: its template, and the headers that protect it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from litestar import Controller, Request
from litestar.di import Provide
from litestar.response import Template

from interfaces.http.console.reads import console_reads
from interfaces.http.console.session import operator
from interfaces.http.metrics import PUBLIC_OPT
from interfaces.http.middleware import EXCLUDE_FROM_AUTH

HERE = Path(__file__).resolve().parent
TEMPLATES = HERE / "templates"
STATIC = HERE / "static"
OPEN = {EXCLUDE_FROM_AUTH: True, PUBLIC_OPT: True}
"""The console's own session guards its pages, not the API's bearer token and scopes."""
CONTENT_SECURITY_POLICY = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
                           "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'")
"""Only the product's own script, styles and requests; no inline script or style (htmx adds none: its
indicator styles are off, see ``base.html.j2``)."""


class ConsoleController(Controller):
    """A controller of console pages: each needs a signed-in operator (``operator``), none is in the OpenAPI
    document, and the API's bearer check does not apply (``OPEN``)."""

    opt = OPEN
    include_in_schema = False
    dependencies = {"operator": Provide(operator), "reads": Provide(console_reads)}  # noqa: RUF012 - Litestar's


def page(template: str, request: Request[Any, Any, Any], status_code: int = 200, **context: Any) -> Template:
    """``template`` with ``context``, under the console's Content-Security-Policy."""
    return Template(template_name=template, context={"request": request, **context}, status_code=status_code,
                    headers={"Content-Security-Policy": CONTENT_SECURITY_POLICY})
