"""Provider side: the registry's real internal app verified against the committed booking pact.

The app is ``create_internal_registry_app`` over the registry service's own composition
(``build_service("registry", ...)``, in-memory stores) and the verifier ``token_verifier`` builds
from the settings, as ``clinic run registry`` does. What differs from production, and why:

- **Mutual TLS.** The Pact verifier (pact_ffi 0.5.12) cannot present a client certificate: its
  options are ``disable_ssl_verification`` and a request timeout, nothing for a client identity. So
  the main verification serves the same app over plain HTTP (uvicorn without TLS): the contract
  is the HTTP semantics (path, query, token, answers); the transport is tested in
  ``tests/integration/test_registry_mtls.py``. A second test does run the registry as production
  does, under ``internal_server_config`` (client certificate required), and puts a forwarder in
  front that presents the booking service's certificate, as a mesh sidecar would.
- The bearer token is a real one: ``DevServiceTokens`` (what the booking service uses without a
  token endpoint) signs it with the settings' development key, the key the registry trusts. The
  verifier sends it as a custom header in place of the pact's example token, so the registry's
  token and scope checks run for real.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest
from pact import Verifier

from application.services import build_service
from application.settings import Settings
from infrastructure.security.scopes import Scope
from infrastructure.security.service_tokens import DevServiceTokens
from infrastructure.tls import client_ssl_context, create_dev_pki
from interfaces.http.internal import create_internal_registry_app, internal_server_config
from interfaces.security.trust import dev_issuer, token_verifier
from tests import services
from tests.contract import registry_contract as contract
from tests.contract.pacts import assert_every_interaction_verified, failed_interactions, pact_file
from tests.contract.provider_states import ProviderStates
from tests.contract.servers import HOST, MtlsForwarder, RenameInBody, serve_plain_http
from tests.integration.http_servers import uvicorn_server


class Registry:
    """The provider under test: the registry service's application, its internal app, its trust."""

    def __init__(self, data_dir: Path) -> None:
        services.require_redis()  # the registry's API answers its doctor directory from the read models
        self.settings = Settings(persistence="memory", data_dir=data_dir, redis_url=services.redis_url(),
                                 redis_prefix=f"clinic:contract:{uuid4().hex}:")
        self.clinic = build_service("registry", self.settings, "api")
        self.registry = self.clinic.registry
        self.app = create_internal_registry_app(self.registry, token_verifier(self.settings))
        self.rotated = Settings(persistence="memory", data_dir=data_dir / "another-key")

    def states(self) -> ProviderStates:
        states = ProviderStates({
            contract.PATIENT_ACTIVE: lambda: {"patient_id": str(self._patient(consent=True))},
            contract.PATIENT_WITHOUT_CONSENT: lambda: {"patient_id": str(self._patient(consent=False))},
            contract.PATIENT_UNKNOWN: lambda: {"patient_id": str(uuid4())},
            contract.DOCTOR_ACTIVE: lambda: {"doctor_id": str(self.registry.register_doctor("Dr Rui", "gp"))},
            contract.DOCTOR_INACTIVE: lambda: {"doctor_id": str(self._retired_doctor())},
            contract.DOCTOR_UNKNOWN: lambda: {"doctor_id": str(uuid4())},
            contract.TOKEN_UNTRUSTED: lambda: self._trust_another_key(states),
        })
        return states

    def booking_token(self) -> str:
        return DevServiceTokens(dev_issuer(self.settings), "booking", Scope.REGISTRY_ELIGIBILITY).token()

    def close(self) -> None:
        self.clinic.close()

    def _patient(self, consent: bool) -> Any:
        return self.registry.register_patient("Ana", "ana@example.org", date(1990, 1, 1), consent=consent)

    def _retired_doctor(self) -> Any:
        doctor_id = self.registry.register_doctor("Dr No", "gp")
        self.registry.deactivate_doctor(doctor_id)
        return doctor_id

    def _trust_another_key(self, states: ProviderStates) -> None:
        """A key rotation the booking service missed: the registry now trusts only another dev key."""
        trusted = self.app.state.verifier
        self.app.state.verifier = token_verifier(self.rotated)
        states.on_teardown(lambda: setattr(self.app.state, "verifier", trusted))


@pytest.fixture(scope="module")
def registry(tmp_path_factory) -> Iterator[Registry]:
    registry = Registry(tmp_path_factory.mktemp("registry-provider"))
    yield registry
    registry.close()


def verifier_for(url: str, states_url: str, token: str) -> Verifier:
    return (Verifier(contract.PROVIDER, host=HOST)
            .add_transport(url=url)
            .add_source(pact_file(contract.CONSUMER, contract.PROVIDER))
            .state_handler(states_url, teardown=True, body=True)
            .add_custom_header("Authorization", f"Bearer {token}"))


def test_the_registry_honours_the_booking_sagas_contract(registry):
    states = registry.states()
    with serve_plain_http(registry.app) as url, states.serve() as states_url:
        verifier = verifier_for(url, states_url, registry.booking_token())
        verifier.verify()
    assert_every_interaction_verified(verifier, contract.CONSUMER, contract.PROVIDER)
    assert set(states.seen) == set(states.setups)  # every state was set up through the application


def test_the_registry_behind_mutual_tls_honours_the_contract(registry, tmp_path):
    # given the registry served as in production: HTTPS, a client certificate from the clinic CA required
    pki = create_dev_pki(tmp_path / "pki")
    mtls = lambda port: internal_server_config(registry.app, pki, port=port, log_config=None,  # noqa: E731
                                               log_level="warning", timeout_graceful_shutdown=1)
    states = registry.states()
    with uvicorn_server(mtls) as port, states.serve() as states_url, serve_plain_http(
            MtlsForwarder(f"https://127.0.0.1:{port}", client_ssl_context(pki, "booking"))) as url:
        # when the verifier's requests reach it with the booking service's certificate
        verifier = verifier_for(url, states_url, registry.booking_token())
        verifier.verify()
    # then every interaction holds there too
    assert_every_interaction_verified(verifier, contract.CONSUMER, contract.PROVIDER)


def test_a_registry_that_renames_a_field_fails_verification(registry):
    # given the same registry, but its answer says "granted" instead of "allowed"
    states = registry.states()
    with serve_plain_http(RenameInBody(registry.app, "allowed", "granted")) as url, states.serve() as states_url:
        # when the committed pact is verified against it
        failures = failed_interactions(verifier_for(url, states_url, registry.booking_token()))
    # then every interaction answered with a 200 body fails, the 401 one still passes
    assert set(failures) == {case.description for case in contract.CASES if case.status == 200}, failures
