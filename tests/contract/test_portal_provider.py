"""Provider side: the public API, embedded mode (what ``clinic serve`` runs), verified against the
committed patient-portal pact.

The Litestar app of ``create_app`` over ``bootstrap(...)`` (in-memory stores, the saga runner in
process) runs under uvicorn on loopback, with ``token_verifier`` from the settings: the dev key.
Provider states seed data through the application layer (``Clinic`` and the registry application)
and answer the patient's id and a real access token signed with the settings' development key
(``dev_issuer``), which the verifier injects into the request.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from uuid import UUID, uuid4

import pytest
from pact import Verifier

from application.bootstrap import bootstrap
from application.settings import Settings
from domain.values import Role
from interfaces.http.app import create_app
from interfaces.security.trust import dev_issuer, token_verifier
from tests.contract import portal_contract as contract
from tests.contract.pacts import assert_every_interaction_verified, failed_interactions, pact_file
from tests.contract.provider_states import ProviderStates
from tests.contract.servers import HOST, RenameInBody, serve_plain_http

START = datetime(2027, 1, 5, 9, tzinfo=UTC)


class ClinicApi:
    """The provider under test and the states the portal's pact names."""

    def __init__(self, data_dir: Path) -> None:
        self.settings = Settings(persistence="memory", data_dir=data_dir, runner_tick_seconds=0.05)
        self.clinic = bootstrap(self.settings)
        self.app = create_app(self.clinic, token_verifier(self.settings))
        self.issuer = dev_issuer(self.settings)

    def states(self) -> ProviderStates:
        return ProviderStates({
            contract.PATIENT_SIGNED_IN: self._signed_in_patient,
            contract.DOCTOR_WITH_SLOT: self._doctor_with_slot,
            contract.CONFIRMED: self._confirmed_consultation,
            contract.NO_CONSULTATION: lambda: {"consultation_id": str(uuid4())},
            contract.LATER_SLOT_OPEN: self._later_slot,
        })

    def close(self) -> None:
        self.clinic.close()

    def _signed_in_patient(self) -> dict[str, str]:
        patient_id = self.clinic.registry.register_patient("Ana", "ana@example.org", date(1990, 1, 1), consent=True)
        return {"patient_id": str(patient_id), "token": self.issuer.issue(str(patient_id), [Role.PATIENT])}

    def _doctor_with_slot(self) -> dict[str, str]:
        doctor_id = self.last_doctor = self.clinic.registry.register_doctor("Dr Rui", "gp")
        self.clinic.open_slots(doctor_id, [(START, 30)])
        return {"doctor_id": str(doctor_id)}

    def _later_slot(self) -> dict[str, str]:
        """Another open slot of the doctor the previous state made (states are set up in order)."""
        self.clinic.open_slots(self.last_doctor, [(START + timedelta(hours=1), 30)])
        return {}

    def _confirmed_consultation(self) -> dict[str, str]:
        patient = self._signed_in_patient()
        doctor = self._doctor_with_slot()
        accepted = self.clinic.book(UUID(patient["patient_id"]), UUID(doctor["doctor_id"]), START, "check-up")
        self.clinic.wait_until_settled()  # bounded: the saga confirms it and the views catch up
        status = self.clinic.read_models.consultation(accepted.consultation_id).status
        assert status == "CONFIRMED", status
        return {**patient, **doctor, "consultation_id": str(accepted.consultation_id)}


@pytest.fixture(scope="module")
def api(tmp_path_factory) -> Iterator[ClinicApi]:
    api = ClinicApi(tmp_path_factory.mktemp("clinic-api-provider"))
    yield api
    api.close()


def verifier_for(url: str, states_url: str) -> Verifier:
    return (Verifier(contract.PROVIDER, host=HOST)
            .add_transport(url=url)
            .add_source(pact_file(contract.CONSUMER, contract.PROVIDER))
            .state_handler(states_url, teardown=False, body=True))


def test_the_public_api_honours_the_portals_contract(api):
    states = api.states()
    with serve_plain_http(api.app) as url, states.serve() as states_url:
        verifier = verifier_for(url, states_url)
        verifier.verify()
    assert_every_interaction_verified(verifier, contract.CONSUMER, contract.PROVIDER)
    assert set(states.seen) == set(states.setups)


def test_an_api_that_renames_a_field_fails_the_portals_verification(api):
    # given the same API, but "consultation_id" renamed in its answers
    states = api.states()
    with (serve_plain_http(RenameInBody(api.app, "consultation_id", "consultationId_")) as url,
          states.serve() as states_url):
        failures = failed_interactions(verifier_for(url, states_url))
    # then the two interactions whose answers carry it fail; the problem answers still pass
    assert set(failures) == {contract.BOOK, contract.READ, contract.RESCHEDULE}, failures
