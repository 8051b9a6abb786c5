# Two commands on a fresh machine with Python 3.11+:
#   make run    - install into .venv and serve the API in embedded mode (no servers needed)
#   make test   - install into .venv and run every test tier (server tiers skip loudly if a server is down)
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install run test lint demo openapi lock clean console-assets

# Dependencies come pinned, with hashes, from the lock file (`make lock` regenerates it from pyproject.toml).
$(STAMP): pyproject.toml requirements-test.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet --require-hashes -r requirements-test.lock
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $(STAMP)

# The offline validators from npm (redocly, the AsyncAPI parser, Backstage's catalog model); skipped
# loudly by the tests that need them when npm is missing.
TOOLS := tools/node_modules/.installed
$(TOOLS): tools/package.json tools/package-lock.json
	@if command -v npm >/dev/null 2>&1; then npm ci --prefix tools --no-audit --no-fund --loglevel=error && touch $(TOOLS); \
	else echo "npm not found: the OpenAPI/AsyncAPI/Backstage lint tests will be skipped (apt-get install -y npm)"; fi

# The console's browser assets: npm (web/package-lock.json) into the static files the product serves;
# committed, so running the product needs no npm (tests/unit/interfaces/test_console_assets.py compares).
WEB := web/node_modules/.installed
$(WEB): web/package.json web/package-lock.json
	@if command -v npm >/dev/null 2>&1; then npm ci --prefix web --no-audit --no-fund --loglevel=error && touch $(WEB); \
	else echo "npm not found: the console assets' provenance test will be skipped (apt-get install -y npm)"; fi

console-assets: $(WEB)
	cp web/node_modules/htmx.org/dist/htmx.min.js interfaces/http/console/static/htmx.min.js
	cp web/node_modules/htmx-ext-sse/dist/sse.min.js interfaces/http/console/static/htmx-ext-sse.min.js

install: $(STAMP)

run: $(STAMP)
	$(BIN)/clinic serve

demo: $(STAMP)
	$(BIN)/clinic demo

test: $(STAMP) $(TOOLS) $(WEB)
	$(BIN)/python -m pytest -n 2 --dist loadfile

# What the CI workflow's lint job runs (tests/unit/test_lint.py runs the same inside `make test`).
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/lint-imports

openapi: $(STAMP)
	$(BIN)/clinic openapi --output specs/openapi.json

lock: $(STAMP)
	$(BIN)/uv pip compile pyproject.toml --python-version 3.11 --python-platform x86_64-manylinux_2_28 --generate-hashes -q -o requirements.lock
	$(BIN)/uv pip compile pyproject.toml --extra test --python-version 3.11 --python-platform x86_64-manylinux_2_28 --generate-hashes -q -o requirements-test.lock
	$(BIN)/uv pip compile requirements-build.in --python-version 3.11 --python-platform x86_64-manylinux_2_28 --generate-hashes -q -o requirements-build.lock

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis .mypy_cache .ruff_cache
