"""The console's browser assets are npm's, exactly: the committed file the product serves is the one the
lock file's package holds (``make console-assets`` copies it), and nothing else is fetched by a page."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from interfaces.http.console.render import STATIC, TEMPLATES
from tests import services

REPO = Path(__file__).resolve().parents[3]
ASSETS = {"htmx.min.js": ("htmx.org", "dist/htmx.min.js"),
          "htmx-ext-sse.min.js": ("htmx-ext-sse", "dist/sse.min.js")}
"""Each committed asset: its npm package, and its file in the package."""


def test_each_asset_is_pinned_by_the_lock_file():
    lock = json.loads((REPO / "web" / "package-lock.json").read_text())
    wanted = json.loads((REPO / "web" / "package.json").read_text())["dependencies"]
    for package, _ in ASSETS.values():
        locked = lock["packages"][f"node_modules/{package}"]
        assert locked["version"] == wanted[package] and locked["integrity"].startswith("sha512-")


@pytest.mark.parametrize("asset", sorted(ASSETS))
def test_each_committed_asset_is_the_npm_packages_file(asset):
    package, inside = ASSETS[asset]
    installed = REPO / "web" / "node_modules" / package / inside
    if not installed.exists():
        message = "web/node_modules is not installed (make test runs npm ci --prefix web)"
        if services.services_required():
            pytest.fail(message)
        pytest.skip(message)
    assert (STATIC / asset).read_bytes() == installed.read_bytes(), "run `make console-assets`"


def test_templates_load_scripts_and_styles_only_from_the_static_files():
    for template in TEMPLATES.glob("*.j2"):
        text = template.read_text()
        assert "cdn" not in text.lower() and "https://" not in text, template.name
        assert "<script>" not in text and " style=" not in text, template.name  # nothing inline: the CSP allows none
