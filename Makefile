# Two commands on a fresh machine with Python 3.11+:
#   make run    - install into .venv and serve the API in embedded mode (no servers needed)
#   make test   - install into .venv and run every test tier (server tiers skip loudly if a server is down)
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test demo openapi clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/clinic serve

demo: $(STAMP)
	$(BIN)/clinic demo

test: $(STAMP)
	$(BIN)/python -m pytest -n 2 --dist loadfile

openapi: $(STAMP)
	$(BIN)/clinic openapi --output specs/openapi.json

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
