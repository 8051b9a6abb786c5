"""Shared by the contract tests: where pacts live, how a regenerated pact is compared, how a
verification is judged.

The committed files in ``specs/pacts/`` are the contracts. A consumer test regenerates its pact
into a temporary directory and fails if it differs from the committed one, so changing a contract
is a visible diff: rerun with ``CLINIC_UPDATE_PACTS=1`` to write the new version, then commit it.
Provider tests verify the committed files, never a freshly generated one.
"""

from __future__ import annotations

import difflib
import json
import os
from pathlib import Path
from typing import Any

os.environ.setdefault("PACT_DO_NOT_TRACK", "true")  # the pact library would otherwise phone home

from pact import Pact, Verifier  # noqa: E402

PACT_DIR = Path(__file__).resolve().parents[2] / "specs" / "pacts"
UPDATE = os.environ.get("CLINIC_UPDATE_PACTS") == "1"

UUID = r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"
UUID_HEX = r"^[0-9a-f]{32}$"
"""How the event store's JSON transcoder writes a UUID (``{"_type_": "uuid_hex", "_data_": ...}``)."""
DATETIME = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$"
"""RFC 3339 with an offset (what ``datetime.isoformat()`` of an aware datetime and the API write)."""
BEARER = r"^Bearer [A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$"
"""A bearer JWS in compact form."""


def new_pact(consumer: str, provider: str) -> Pact:
    return Pact(consumer, provider).with_specification("V4")


def pact_file(consumer: str, provider: str) -> Path:
    return PACT_DIR / f"{consumer}-{provider}.json"


def assert_matches_committed(pact: Pact, directory: Path) -> None:
    """Write ``pact`` under ``directory``; fail unless it equals the committed contract."""
    pact.write_file(directory, overwrite=True)
    name = f"{pact.consumer}-{pact.provider}.json"
    generated = json.loads((directory / name).read_text())
    committed_path = PACT_DIR / name
    if UPDATE:
        committed_path.write_text(json.dumps(generated, indent=2, sort_keys=True) + "\n")
    assert committed_path.exists(), f"{committed_path} is missing: run with CLINIC_UPDATE_PACTS=1 and commit it"
    committed = json.loads(committed_path.read_text())
    if _comparable(generated) != _comparable(committed):
        diff = difflib.unified_diff(_lines(committed), _lines(generated), "committed", "generated", lineterm="")
        raise AssertionError(f"the consumer's contract changed; review, rerun with CLINIC_UPDATE_PACTS=1 and "
                             f"commit {committed_path}:\n" + "\n".join(diff))


def _comparable(pact: dict[str, Any]) -> dict[str, Any]:
    """The pact without the library's own version stamp (an upgrade alone is no contract change)."""
    metadata = {k: v for k, v in pact.get("metadata", {}).items() if k != "pactRust"}
    return {**pact, "metadata": metadata}


def _lines(pact: dict[str, Any]) -> list[str]:
    return json.dumps(_comparable(pact), indent=2, sort_keys=True).splitlines()


def descriptions(consumer: str, provider: str) -> set[str]:
    """The interactions of a committed pact."""
    return {i["description"] for i in json.loads(pact_file(consumer, provider).read_text())["interactions"]}


def assert_every_interaction_verified(verifier: Verifier, consumer: str, provider: str) -> None:
    """The verification ran every interaction of the committed pact, and each passed."""
    results = verifier.results
    outcome = {r["description"]: r["result"] for r in results["interactionResults"]}
    assert set(outcome) == descriptions(consumer, provider), outcome
    failed = {d: r for d, r in outcome.items() if r != "OK"}
    assert not failed and results["result"] is True and not results["errors"], verifier.output(strip_ansi=True)


def failed_interactions(verifier: Verifier) -> dict[str, Any]:
    """Run the verification expecting failures; the failing interactions and why."""
    try:
        verifier.verify()
    except RuntimeError:
        pass  # the FFI reports a failed verification as an error; the results say which
    else:
        raise AssertionError("the verification passed against a provider that breaks the contract")
    results = verifier.results
    assert results["result"] is False
    return {r["description"]: r["result"] for r in results["interactionResults"] if r["result"] != "OK"}
