"""Contract tests (Pact): offline, no broker; see docs/contracts.md."""

import os

os.environ.setdefault("PACT_DO_NOT_TRACK", "true")  # before any test module imports pact
