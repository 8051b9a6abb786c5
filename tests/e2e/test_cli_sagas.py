"""``clinic sagas``: an operator lists, reads, retries and compensates sagas through a running API."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from uuid import UUID

import pytest
import uvicorn

from application.bootstrap import bootstrap
from application.clinic import Clinic
from application.settings import Settings
from interfaces.cli.main import main
from interfaces.http.app import create_app
from interfaces.security.trust import dev_issuer
from process_managers.ports import RegistryUnavailableError
from tests.integration.http_servers import uvicorn_server
from tests.kit import FakeRegistry
from tests.kit.bookings import a_saga


@pytest.fixture
def settings(tmp_path) -> Settings:
    return Settings(persistence="memory", data_dir=tmp_path, runner_tick_seconds=0.05,
                    saga_timeout=timedelta(hours=1))


@pytest.fixture
def clinic(settings) -> Iterator[Clinic]:
    clinic = bootstrap(settings)
    clinic.booking.registry = FakeRegistry(RegistryUnavailableError("registry down: connection refused"))
    yield clinic
    clinic.close()


@pytest.fixture
def api(clinic, settings) -> Iterator[str]:
    """The clinic's API, trusting the development key in the settings' data directory (as ``clinic serve``)."""
    app = create_app(clinic, dev_issuer(settings).verifier())
    with uvicorn_server(lambda port: uvicorn.Config(app, port=port, log_config=None, lifespan="on")) as port:
        yield f"http://127.0.0.1:{port}"


@dataclass
class Ran:
    returncode: int
    stdout: str
    stderr: str


@pytest.fixture
def sagas(capsys, monkeypatch, settings) -> Callable[..., Ran]:
    """``clinic sagas --api <api> <args>`` as the command runs it (in this process: its exit code, its output)."""
    monkeypatch.setenv("CLINIC_DATA_DIR", str(settings.data_dir))

    def run(api: str, *args: str, **env: str) -> Ran:
        with monkeypatch.context() as scoped:
            for name, value in env.items():
                scoped.setenv(name, value)
            try:
                code = main(["sagas", "--api", api, *args])
            except SystemExit as exit_:  # argparse refusing the arguments
                code = int(exit_.code or 0)
        out = capsys.readouterr()
        return Ran(code, out.out, out.err)

    return run


def test_an_operator_finds_a_waiting_saga_asks_again_and_compensates_it(clinic, api, sagas):
    waiting = a_saga(clinic)  # the registry is down: it waits on validation

    listed = sagas(api, "list", "--state", "open")
    assert listed.returncode == 0, listed.stderr
    assert waiting in listed.stdout and "1 saga(s)" in listed.stdout
    page = json.loads(sagas(api, "list", "--state", "open", "--json").stdout)
    assert [saga["saga_id"] for saga in page["items"]] == [waiting]
    assert sagas(api, "list", "--state", "confirmed").stdout.strip() == "0 saga(s)"
    shown = json.loads(sagas(api, "show", waiting).stdout)
    assert (shown["saga_id"], shown["state"]) == (waiting, "VALIDATING")

    retried = sagas(api, "--operator", "marta", "retry", waiting)
    assert retried.returncode == 0, retried.stderr
    assert f"asked the registry again for saga {waiting}; it is now VALIDATING" in retried.stdout

    unconfirmed = sagas(api, "compensate", waiting)
    assert unconfirmed.returncode == 2 and "add --yes to confirm" in unconfirmed.stderr
    compensated = sagas(api, "--operator", "marta", "compensate", waiting, "--yes")
    assert compensated.returncode == 0, compensated.stderr
    assert f"compensated saga {waiting}; it is now REJECTED (compensated_by_operator)" in compensated.stdout
    last = clinic.auditor.trail("saga", UUID(waiting)).events[-1]
    assert (last.type.rsplit(".", 1)[-1], last.actor) == ("Rejected", "operator:marta")

    again = sagas(api, "compensate", waiting, "--yes")
    assert again.returncode == 1 and again.stderr.startswith("clinic: error: 409 ")


def test_a_token_in_clinic_token_is_used_and_its_refusal_said(clinic, api, settings, sagas):
    waiting = a_saga(clinic)
    patient = dev_issuer(settings).issue("someone", ["PATIENT"])
    refused = sagas(api, "show", waiting, CLINIC_TOKEN=patient)
    assert refused.returncode == 1 and refused.stderr.startswith("clinic: error: 403 ")
    auditor = dev_issuer(settings).issue("audrey", ["AUDITOR"])
    assert sagas(api, "show", waiting, CLINIC_TOKEN=auditor).returncode == 0
    forbidden = sagas(api, "compensate", waiting, "--yes", CLINIC_TOKEN=auditor)
    assert forbidden.returncode == 1 and "403" in forbidden.stderr


def test_bad_input_and_an_unreachable_api_are_said_clearly(sagas):
    bad_state = sagas("http://127.0.0.1:9", "list", "--state", "lost")
    assert bad_state.returncode == 2 and "invalid choice: 'lost'" in bad_state.stderr
    bad_day = sagas("http://127.0.0.1:9", "list", "--since", "yesterday")
    assert bad_day.returncode == 2 and "not a day" in bad_day.stderr
    unreachable = sagas("http://127.0.0.1:9", "list")
    assert unreachable.returncode == 1 and "cannot reach the API at http://127.0.0.1:9" in unreachable.stderr
