"""The registry over REST + mutual TLS: real sockets on 127.0.0.1, real TLS, a real registry.

The internal app runs under uvicorn in a background thread, with the client certificates
required by uvicorn itself, and every eligibility call needs a bearer token with the
``registry:eligibility`` scope (checked by the app; tests of the token rules are at the end). Backoff sleeps are injected (recorded, never slept); the only waits
are bounded: for a server to be up, and the timeouts under test.
"""

from __future__ import annotations

import datetime as dt
import socket
import ssl
import threading
import time
import uuid
import warnings
from collections.abc import Callable, Iterator
from datetime import date
from typing import Any

import httpx
import pytest
from joserfc.jwk import ECKey

from application.bootstrap import build_applications
from application.registry import RegistryApplication
from application.settings import Settings
from domain.metadata import event_metadata
from domain.values import RejectionReason
from infrastructure.registry_client import HttpRegistryClient, RegistryCallPolicy, RegistryProtocolError
from infrastructure.resilience import CircuitState
from infrastructure.security.scopes import Scope
from infrastructure.security.service_tokens import ClientCredentialsTokens, DevServiceTokens
from infrastructure.security.tokens import TokenIssuer
from infrastructure.tls import (
    Pki,
    client_ssl_context,
    create_dev_pki,
    issue_certificate,
    load_ca,
    make_client_context,
    server_ssl_context,
    write_pair,
)
from interfaces.http.internal import create_internal_registry_app, internal_server_config
from process_managers.ports import Eligibility, RegistryUnavailableError
from tests.integration.http_servers import TokenEndpoint, uvicorn_server
from tests.kit import FakeRegistry

WAIT = 5.0
"""Upper bound on any wait for something that should happen at once."""
FAST = RegistryCallPolicy(connect_timeout=0.3, read_timeout=0.3, max_attempts=3, failure_threshold=50)


# Servers --------------------------------------------------------------------------------------

ISSUER, AUDIENCE = "clinic-test", "clinic-api"


def new_issuer() -> TokenIssuer:
    return TokenIssuer(ECKey.generate_key("P-256", auto_kid=True), ISSUER, AUDIENCE)


TRUSTED = new_issuer()
"""The issuer whose tokens the registry under test trusts."""


def booking_tokens(issuer: TokenIssuer = TRUSTED, scope: str = Scope.REGISTRY_ELIGIBILITY) -> DevServiceTokens:
    return DevServiceTokens(issuer, "booking", scope)


def registry_server(registry: Any, pki: Pki, issuer: TokenIssuer = TRUSTED) -> Any:
    app = create_internal_registry_app(registry, issuer.verifier())
    return uvicorn_server(lambda port: internal_server_config(
        app, pki, port=port, log_config=None, log_level="warning", timeout_graceful_shutdown=1))


class MuteTlsServer:
    """Accepts, completes the TLS handshake (client certificate required), then never answers."""

    def __init__(self, context: ssl.SSLContext) -> None:
        self._context = context
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.05)
        self.port = self._listener.getsockname()[1]
        self._held: list[socket.socket] = []
        self._changed = threading.Condition()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True, name="mute-tls")
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            conn.settimeout(WAIT)
            try:
                tls = self._context.wrap_socket(conn, server_side=True)
            except (OSError, ssl.SSLError):
                conn.close()
                continue
            with self._changed:
                self._held.append(tls)
                self._changed.notify_all()

    def wait_for_connections(self, count: int) -> None:
        with self._changed:
            assert self._changed.wait_for(lambda: len(self._held) >= count, WAIT), f"{len(self._held)} held"

    def close(self) -> None:
        self._stop.set()
        self._thread.join(WAIT)
        self._listener.close()
        with self._changed:
            for conn in self._held:
                conn.close()


# Fixtures -------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> Pki:
    pki = create_dev_pki(tmp_path_factory.mktemp("mtls") / "pki")
    ca, ca_key = load_ca(pki)
    now = dt.datetime.now(dt.UTC)
    cert, key = issue_certificate(ca, ca_key, "booking", not_before=now - dt.timedelta(days=30),
                                  not_after=now - dt.timedelta(days=1))
    write_pair(cert, key, pki.directory / "expired.pem", pki.directory / "expired-key.pem")
    return pki


@pytest.fixture(scope="module")
def other_pki(tmp_path_factory) -> Pki:
    """Same service names, another CA."""
    return create_dev_pki(tmp_path_factory.mktemp("mtls-other") / "pki")


class People:
    def __init__(self, registry: RegistryApplication) -> None:
        self.patient = registry.register_patient("Ada", "ada@example.org", date(1990, 1, 1), consent=True)
        self.unconsenting = registry.register_patient("Bob", "bob@example.org", date(1990, 1, 1), consent=False)
        self.doctor = registry.register_doctor("Dr Who", "general")
        self.retired = registry.register_doctor("Dr No", "general")
        registry.deactivate_doctor(self.retired)


@pytest.fixture(scope="module")
def registry() -> Iterator[RegistryApplication]:
    apps = build_applications(Settings(persistence="memory"))
    yield apps[RegistryApplication.name]
    for app in apps.values():
        app.close()


@pytest.fixture(scope="module")
def people(registry) -> People:
    return People(registry)


@pytest.fixture(scope="module")
def registry_url(registry, pki) -> Iterator[str]:
    with registry_server(registry, pki) as port:
        yield f"https://127.0.0.1:{port}"


@pytest.fixture(scope="module")
def flaky(registry) -> FakeRegistry:
    """The real registry behind a fake that fails (HTTP 500) as scripted and counts calls."""
    return FakeRegistry(inner=registry)


@pytest.fixture(scope="module")
def flaky_url(flaky, pki) -> Iterator[str]:
    with registry_server(flaky, pki) as port:
        yield f"https://127.0.0.1:{port}"


@pytest.fixture
def reset_flaky(flaky) -> FakeRegistry:
    flaky.reset()
    return flaky


class Recorder:
    """Injected into the client: backoff delays are recorded, not slept; a clock the test moves."""

    def __init__(self) -> None:
        self.sleeps: list[float] = []
        self.now = 0.0
        self.transitions: list[tuple[CircuitState, CircuitState]] = []

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)

    def clock(self) -> float:
        return self.now

    def on_state_change(self, name: str, old: CircuitState, new: CircuitState) -> None:
        self.transitions.append((old, new))


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def make_client(recorder) -> Iterator[Callable[..., HttpRegistryClient]]:
    clients: list[HttpRegistryClient] = []

    def make(base_url: str, context: ssl.SSLContext, policy: RegistryCallPolicy = FAST,
             tokens: Any = None) -> HttpRegistryClient:
        client = HttpRegistryClient(base_url, context, policy, tokens=tokens or booking_tokens(),
                                    sleep=recorder.sleep, random=lambda: 0.5,
                                    clock=recorder.clock, on_state_change=recorder.on_state_change)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


def closed_port() -> int:
    with socket.create_server(("127.0.0.1", 0)) as sock:
        return sock.getsockname()[1]


# Answers --------------------------------------------------------------------------------------

def test_an_eligible_booking_is_allowed_over_mtls(make_client, registry_url, pki, people):
    client = make_client(registry_url, client_ssl_context(pki, "booking"))
    assert client.booking_eligibility(people.patient, people.doctor) == Eligibility.ok()


@pytest.mark.parametrize(("patient", "doctor", "reason"), [
    ("unknown", "doctor", RejectionReason.PATIENT_NOT_ELIGIBLE),
    ("unconsenting", "doctor", RejectionReason.PATIENT_NOT_ELIGIBLE),
    ("patient", "unknown", RejectionReason.DOCTOR_NOT_FOUND),
    ("patient", "retired", RejectionReason.DOCTOR_INACTIVE),
])
def test_refusals_carry_the_registrys_reason(make_client, registry_url, pki, people, patient, doctor, reason):
    client = make_client(registry_url, client_ssl_context(pki, "booking"))
    ids = {"unknown": uuid.uuid4(), **vars(people)}
    assert client.booking_eligibility(ids[patient], ids[doctor]) == Eligibility.refused(reason)


def test_the_correlation_id_travels_with_the_call(make_client, registry_url, pki, people):
    client = make_client(registry_url, client_ssl_context(pki, "booking"))
    echoed: list[str | None] = []
    client._http.event_hooks["response"].append(lambda response: echoed.append(
        response.headers.get("x-correlation-id")))  # the server echoes the id it received
    with event_metadata(correlation_id="booking-42"):
        client.booking_eligibility(people.patient, people.doctor)
    assert echoed == ["booking-42"]


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_bad_parameters_are_a_problem_json_400(registry_url, pki, people):
    with httpx.Client(base_url=registry_url, verify=client_ssl_context(pki, "booking"),
                      headers=bearer(booking_tokens().token())) as http:
        for params in ({"patient_id": "not-a-uuid", "doctor_id": str(people.doctor)},
                       {"patient_id": str(people.patient)}):
            response = http.get("/internal/v1/eligibility", params=params)
            assert response.status_code == 400
            assert response.headers["content-type"].startswith("application/problem+json")
            assert response.json()["type"] == "urn:clinic:problem:invalid-parameter"


def test_health_is_served_without_a_token_and_no_openapi_document(registry_url, pki):
    with httpx.Client(base_url=registry_url, verify=client_ssl_context(pki, "gateway")) as http:
        assert http.get("/internal/health").json() == {"status": "ok", "checks": {}}
        assert http.get("/schema/openapi.json").status_code == 404
        assert http.get("/schema").status_code == 404


# Refused handshakes ---------------------------------------------------------------------------

IDENTITIES = ["no certificate", "another CA", "expired"]


def identity(name: str, pki: Pki, other_pki: Pki) -> ssl.SSLContext:
    """A client context trusting our CA (so the server is accepted) presenting ``name``."""
    if name == "no certificate":
        return make_client_context(pki.ca_file)
    if name == "another CA":
        return make_client_context(pki.ca_file, other_pki.cert_file("booking"), other_pki.key_file("booking"))
    return make_client_context(pki.ca_file, pki.directory / "expired.pem", pki.directory / "expired-key.pem")


@pytest.mark.parametrize("name", IDENTITIES)
def test_a_valid_token_without_a_valid_certificate_is_refused_in_the_handshake(make_client, registry_url, pki, other_pki, people,
                                                            recorder, name):
    client = make_client(registry_url, identity(name, pki, other_pki))
    with pytest.raises(RegistryUnavailableError, match="after 3 attempt.*closed the connection without answering"):
        client.booking_eligibility(people.patient, people.doctor)
    assert recorder.sleeps == [0.05, 0.1]  # full jitter with random() = 0.5: 0.5 * 0.1, 0.5 * 0.2


@pytest.mark.parametrize("name", IDENTITIES)
def test_over_tls_1_2_the_refusal_is_a_handshake_failure_not_retried(make_client, registry_url, pki, other_pki,
                                                                     people, recorder, name):
    context = identity(name, pki, other_pki)
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    client = make_client(registry_url, context)
    with pytest.raises(RegistryUnavailableError, match="after 1 attempt.*not retried.*TLS handshake failed"):
        client.booking_eligibility(people.patient, people.doctor)
    assert recorder.sleeps == []


def raw_request(port: int, context: ssl.SSLContext) -> bytes:
    """A TLS handshake with ``context``, then a plain HTTP request; returns what the server sent."""
    with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as sock:
        with context.wrap_socket(sock, server_hostname="registry") as tls:
            tls.sendall(b"GET /internal/health HTTP/1.1\r\nHost: registry\r\nConnection: close\r\n\r\n")
            return tls.recv(1024)


def test_a_raw_handshake_with_the_service_certificate_is_answered(registry_url, pki):
    port = int(registry_url.rsplit(":", 1)[1])
    assert raw_request(port, client_ssl_context(pki, "booking")).startswith(b"HTTP/1.1 200")


@pytest.mark.parametrize("name", IDENTITIES)
def test_a_raw_handshake_without_a_valid_certificate_fails(registry_url, pki, other_pki, name):
    port = int(registry_url.rsplit(":", 1)[1])
    # TLS 1.3: the client finishes its side first; the server then drops the connection unanswered.
    try:
        answer = raw_request(port, identity(name, pki, other_pki))
    except (ssl.SSLError, ConnectionError):
        answer = b""
    assert answer == b""
    # TLS 1.2: the server checks the certificate inside the handshake, which fails.
    context = identity(name, pki, other_pki)
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    with pytest.raises((ssl.SSLError, ConnectionError)):
        raw_request(port, context)


def test_the_server_refuses_tls_older_than_1_2(registry_url, pki):
    port = int(registry_url.rsplit(":", 1)[1])
    context = client_ssl_context(pki, "booking")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        context.minimum_version = ssl.TLSVersion.TLSv1
        context.maximum_version = ssl.TLSVersion.TLSv1_1
    context.set_ciphers("ALL:@SECLEVEL=0")  # this client does negotiate TLS 1.1 with a server that allows it
    with pytest.raises((ssl.SSLError, ConnectionError)) as refused:
        raw_request(port, context)
    assert "NO_PROTOCOLS_AVAILABLE" not in str(refused.value), "the client refused locally: the test proves nothing"


def test_the_server_configuration_demands_client_certificates(registry, pki):
    config = internal_server_config(create_internal_registry_app(registry, TRUSTED.verifier()), pki, port=0,
                                    log_config=None)
    config.load()
    assert config.ssl is not None
    assert config.ssl.verify_mode == ssl.CERT_REQUIRED
    assert config.ssl.minimum_version == ssl.TLSVersion.TLSv1_2
    assert config.ssl_cert_reqs == ssl.CERT_REQUIRED and config.ssl_ca_certs == str(pki.ca_file)


def test_the_client_refuses_a_server_from_another_ca(make_client, registry_url, pki, other_pki, people, recorder):
    client = make_client(registry_url, client_ssl_context(other_pki, "booking"))
    with pytest.raises(RegistryUnavailableError, match="not retried: TLS handshake failed: the registry's "
                                                       "certificate is not trusted"):
        client.booking_eligibility(people.patient, people.doctor)
    assert recorder.sleeps == []


def test_the_client_checks_the_servers_name(make_client, registry_url, pki, people):
    # The server presents "registry"; a client told to reach "booking" must refuse it.
    context = client_ssl_context(pki, "booking")
    port = registry_url.rsplit(":", 1)[1]
    with socket.create_connection(("127.0.0.1", int(port)), timeout=WAIT) as sock:
        with pytest.raises(ssl.SSLCertVerificationError, match="Hostname mismatch"):
            context.wrap_socket(sock, server_hostname="booking")


# Unreachable, slow and failing registries -----------------------------------------------------

def test_a_closed_port_is_unavailable_after_the_retries(make_client, pki, people, recorder):
    client = make_client(f"https://127.0.0.1:{closed_port()}", client_ssl_context(pki, "booking"))
    with pytest.raises(RegistryUnavailableError, match=r"after 3 attempt\(s\): cannot connect.*refused"):
        client.booking_eligibility(people.patient, people.doctor)
    assert recorder.sleeps == [0.05, 0.1]


def test_a_stalled_tls_handshake_times_out(make_client, pki, people, recorder):
    # A listening socket that never accepts: TCP connects (backlog), the TLS handshake gets no answer.
    with socket.create_server(("127.0.0.1", 0), backlog=16) as silent:
        policy = RegistryCallPolicy(connect_timeout=0.2, max_attempts=2)
        client = make_client(f"https://127.0.0.1:{silent.getsockname()[1]}", client_ssl_context(pki, "booking"),
                             policy)
        started = time.monotonic()
        with pytest.raises(RegistryUnavailableError, match=r"after 2 attempt\(s\): connect and TLS handshake "
                                                           r"timed out after 0.2s"):
            client.booking_eligibility(people.patient, people.doctor)
        elapsed = time.monotonic() - started
    assert 0.4 <= elapsed < 0.4 + 1.0
    assert recorder.sleeps == [0.05]


def test_a_server_that_never_answers_times_out(make_client, pki, people, recorder):
    mute = MuteTlsServer(server_ssl_context(pki, "registry"))
    try:
        policy = RegistryCallPolicy(read_timeout=0.2, max_attempts=2)
        client = make_client(f"https://127.0.0.1:{mute.port}", client_ssl_context(pki, "booking"), policy)
        started = time.monotonic()
        with pytest.raises(RegistryUnavailableError, match=r"after 2 attempt\(s\): no answer within the read "
                                                           r"timeout of 0.2s"):
            client.booking_eligibility(people.patient, people.doctor)
        elapsed = time.monotonic() - started
    finally:
        mute.close()
    assert 0.4 <= elapsed < 0.4 + 1.0


def test_server_errors_are_retried_with_backoff(make_client, flaky_url, reset_flaky, pki, people, recorder):
    reset_flaky.failures_left = 2
    client = make_client(flaky_url, client_ssl_context(pki, "booking"))
    assert client.booking_eligibility(people.patient, people.doctor) == Eligibility.ok()
    assert reset_flaky.calls == 3
    assert recorder.sleeps == [0.05, 0.1]
    assert client.breaker.failure_count == 0


def test_server_errors_after_the_last_attempt_are_unavailable(make_client, flaky_url, reset_flaky, pki, people):
    reset_flaky.failures_left = 10
    client = make_client(flaky_url, client_ssl_context(pki, "booking"))
    with pytest.raises(RegistryUnavailableError, match=r"after 3 attempt\(s\): the registry answered 500"):
        client.booking_eligibility(people.patient, people.doctor)
    assert reset_flaky.calls == 3


def test_a_4xx_is_not_retried_and_not_counted_by_the_breaker(make_client, registry_url, pki, people, recorder):
    client = make_client(registry_url + "/wrong-prefix", client_ssl_context(pki, "booking"))
    with pytest.raises(RegistryProtocolError, match="refused the request with 404 Not Found.*not retried") as error:
        client.booking_eligibility(people.patient, people.doctor)
    assert error.value.status == 404
    assert recorder.sleeps == [] and client.breaker.failure_count == 0


# Breaker and bulkhead -------------------------------------------------------------------------

def test_the_breaker_opens_then_fails_fast_without_the_network_then_one_trial_closes_it(
        make_client, flaky_url, reset_flaky, pki, people, recorder):
    policy = RegistryCallPolicy(max_attempts=3, failure_threshold=3, reset_timeout=10.0)
    client = make_client(flaky_url, client_ssl_context(pki, "booking"), policy)
    reset_flaky.failures_left = 3
    with pytest.raises(RegistryUnavailableError, match="answered 500"):
        client.booking_eligibility(people.patient, people.doctor)
    assert client.breaker.state is CircuitState.OPEN and reset_flaky.calls == 3

    started = time.monotonic()
    with pytest.raises(RegistryUnavailableError, match="registry not called: circuit 'registry' is open"):
        client.booking_eligibility(people.patient, people.doctor)
    assert time.monotonic() - started < 0.5
    assert reset_flaky.calls == 3, "an open breaker must not touch the network"

    recorder.now += 10.0  # the reset timeout passes; the registry has recovered
    assert client.booking_eligibility(people.patient, people.doctor) == Eligibility.ok()
    assert reset_flaky.calls == 4
    assert recorder.transitions == [(CircuitState.CLOSED, CircuitState.OPEN),
                                    (CircuitState.OPEN, CircuitState.HALF_OPEN),
                                    (CircuitState.HALF_OPEN, CircuitState.CLOSED)]


def test_a_failed_trial_reopens_and_stops_the_retries(make_client, flaky_url, reset_flaky, pki, people, recorder):
    policy = RegistryCallPolicy(max_attempts=3, failure_threshold=1, reset_timeout=10.0)
    client = make_client(flaky_url, client_ssl_context(pki, "booking"), policy)
    reset_flaky.failures_left = 2
    with pytest.raises(RegistryUnavailableError, match=r"after 1 attempt\(s\).*no further attempt: circuit"):
        client.booking_eligibility(people.patient, people.doctor)
    recorder.now += 10.0
    with pytest.raises(RegistryUnavailableError, match=r"after 1 attempt\(s\).*no further attempt: circuit"):
        client.booking_eligibility(people.patient, people.doctor)  # the trial fails: open again at once
    assert reset_flaky.calls == 2
    assert client.breaker.state is CircuitState.OPEN


def test_the_bulkhead_fails_fast_when_full(make_client, pki, people):
    mute = MuteTlsServer(server_ssl_context(pki, "registry"))
    policy = RegistryCallPolicy(read_timeout=WAIT, max_attempts=1, max_concurrent=2, bulkhead_timeout=0.01)
    client = make_client(f"https://127.0.0.1:{mute.port}", client_ssl_context(pki, "booking"), policy)
    outcomes: list[BaseException] = []

    def call() -> None:
        try:
            client.booking_eligibility(people.patient, people.doctor)
        except RegistryUnavailableError as error:
            outcomes.append(error)

    holders = [threading.Thread(target=call) for _ in range(2)]
    try:
        for thread in holders:
            thread.start()
        mute.wait_for_connections(2)  # both calls are in flight, inside the bulkhead
        started = time.monotonic()
        with pytest.raises(RegistryUnavailableError, match="bulkhead 'registry' is full: 2 calls in flight"):
            client.booking_eligibility(people.patient, people.doctor)
        assert time.monotonic() - started < 0.5
    finally:
        mute.close()  # the held calls now fail: the server closed without answering
        for thread in holders:
            thread.join(WAIT)
    assert len(outcomes) == 2 and all("closed the connection" in str(e) for e in outcomes)
    assert client.bulkhead.in_flight == 0


# Service identity: the certificate gets a caller through the handshake, the token authorises ------

def eligibility_params(people: People) -> dict[str, str]:
    return {"patient_id": str(people.patient), "doctor_id": str(people.doctor)}


def call_with(registry_url: str, pki: Pki, people: People, headers: dict[str, str]) -> httpx.Response:
    with httpx.Client(base_url=registry_url, verify=client_ssl_context(pki, "booking")) as http:
        return http.get("/internal/v1/eligibility", params=eligibility_params(people), headers=headers)


def test_a_valid_certificate_and_a_scoped_token_are_answered(registry_url, pki, people):
    response = call_with(registry_url, pki, people, bearer(booking_tokens().token()))
    assert response.status_code == 200
    assert response.json() == {"allowed": True, "reason": None}


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer"}, {"Authorization": "Basic Ym9va2luZzpz"}],
                         ids=["no header", "empty bearer", "basic"])
def test_a_valid_certificate_without_a_token_is_401(registry_url, pki, people, headers):
    response = call_with(registry_url, pki, people, headers)
    assert response.status_code == 401
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.headers["www-authenticate"] == 'Bearer realm="clinic-internal"'
    assert response.json()["type"] == "urn:clinic:problem:unauthenticated"


def refused_tokens() -> dict[str, str]:
    scope = [Scope.REGISTRY_ELIGIBILITY]
    return {
        "foreign signing key": new_issuer().issue("booking", [], scope, client_id="booking"),
        "expired": TRUSTED.issue("booking", [], scope, ttl_seconds=-120, client_id="booking"),
        "another audience": TokenIssuer(TRUSTED.key, ISSUER, "someone-else").issue("booking", [], scope),
        "another issuer": TokenIssuer(TRUSTED.key, "elsewhere", AUDIENCE).issue("booking", [], scope),
        "not a JWT": "not-a-token",
    }


@pytest.mark.parametrize("kind", list(refused_tokens()))
def test_a_valid_certificate_with_an_invalid_token_is_401(registry_url, pki, people, kind):
    response = call_with(registry_url, pki, people, bearer(refused_tokens()[kind]))
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == 'Bearer realm="clinic-internal", error="invalid_token"'
    assert response.json()["detail"].startswith("invalid bearer token")


@pytest.mark.parametrize("scope", [Scope.CONSULTATIONS_READ, "registry:eligibility-extra", ""])
def test_a_token_without_the_eligibility_scope_is_403(registry_url, pki, people, scope):
    token = TRUSTED.issue("booking", ["ADMIN"], [scope] if scope else [], client_id="booking")
    response = call_with(registry_url, pki, people, bearer(token))
    assert response.status_code == 403
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.headers["www-authenticate"] == ('Bearer realm="clinic-internal", error="insufficient_scope", '
                                                    'scope="registry:eligibility"')


@pytest.mark.parametrize("name", IDENTITIES)
def test_a_scoped_token_does_not_replace_the_client_certificate(registry_url, pki, other_pki, people, name):
    """The token is sent, but the handshake is refused first: no HTTP answer at all."""
    with httpx.Client(base_url=registry_url, verify=identity(name, pki, other_pki)) as http:
        with pytest.raises((httpx.RemoteProtocolError, httpx.ConnectError, httpx.ReadError)):
            http.get("/internal/v1/eligibility", params=eligibility_params(people),
                     headers=bearer(booking_tokens().token()))


def test_the_client_reports_a_403_as_a_protocol_error_not_retried(make_client, registry_url, pki, people, recorder):
    tokens = booking_tokens(scope=Scope.CONSULTATIONS_READ)
    client = make_client(registry_url, client_ssl_context(pki, "booking"), tokens=tokens)
    with pytest.raises(RegistryProtocolError, match="403.*lacks the scope") as error:
        client.booking_eligibility(people.patient, people.doctor)
    assert error.value.status == 403
    assert tokens.fetches == 1 and recorder.sleeps == [] and client.breaker.failure_count == 0


@pytest.fixture
def token_endpoint() -> TokenEndpoint:
    return TokenEndpoint(TRUSTED, {"booking": ("booking-secret", {Scope.REGISTRY_ELIGIBILITY})})


def client_credentials(url: str) -> ClientCredentialsTokens:
    return ClientCredentialsTokens(url, "booking", "booking-secret", Scope.REGISTRY_ELIGIBILITY)


def test_the_client_calls_with_a_client_credentials_token_and_reuses_it(make_client, registry_url, pki, people,
                                                                       token_endpoint):
    with token_endpoint.serve() as token_url:
        tokens = client_credentials(token_url)
        client = make_client(registry_url, client_ssl_context(pki, "booking"), tokens=tokens)
        for _ in range(3):
            assert client.booking_eligibility(people.patient, people.doctor) == Eligibility.ok()
    assert token_endpoint.requests == 1
    tokens.close()


def test_a_refused_token_is_dropped_and_the_call_made_once_more_with_a_fresh_one(
        make_client, registry_url, pki, people, token_endpoint, recorder):
    token_endpoint.issuer = TokenIssuer(new_issuer().key, ISSUER, AUDIENCE)  # a key the registry does not trust
    with token_endpoint.serve() as token_url:
        tokens = client_credentials(token_url)
        client = make_client(registry_url, client_ssl_context(pki, "booking"), tokens=tokens)
        tokens.token()  # cached: signed with the old key
        token_endpoint.issuer = TRUSTED  # the authorization server rotated to the key the registry trusts
        assert client.booking_eligibility(people.patient, people.doctor) == Eligibility.ok()
    assert token_endpoint.requests == 2
    assert recorder.sleeps == [] and client.breaker.failure_count == 0
    tokens.close()


def test_a_token_refused_twice_is_a_protocol_error(make_client, registry_url, pki, people, token_endpoint, recorder):
    token_endpoint.issuer = TokenIssuer(new_issuer().key, ISSUER, AUDIENCE)
    with token_endpoint.serve() as token_url:
        tokens = client_credentials(token_url)
        client = make_client(registry_url, client_ssl_context(pki, "booking"), tokens=tokens)
        with pytest.raises(RegistryProtocolError, match="401.*a freshly obtained token was refused too") as error:
            client.booking_eligibility(people.patient, people.doctor)
    assert error.value.status == 401
    assert token_endpoint.requests == 2, "exactly one refetch"
    assert recorder.sleeps == [] and client.breaker.failure_count == 0
    tokens.close()


def test_without_a_token_the_registry_is_not_called(make_client, flaky_url, reset_flaky, pki, people, token_endpoint):
    with token_endpoint.serve() as token_url:
        tokens = ClientCredentialsTokens(token_url, "booking", "wrong-secret", Scope.REGISTRY_ELIGIBILITY)
        client = make_client(flaky_url, client_ssl_context(pki, "booking"), tokens=tokens)
        with pytest.raises(RegistryUnavailableError, match="registry not called: no service token.*invalid_client"):
            client.booking_eligibility(people.patient, people.doctor)
        closed = ClientCredentialsTokens(f"http://127.0.0.1:{closed_port()}/token", "booking", "booking-secret",
                                         Scope.REGISTRY_ELIGIBILITY)
        with pytest.raises(RegistryUnavailableError, match="registry not called: no service token.*unreachable"):
            make_client(flaky_url, client_ssl_context(pki, "booking"), tokens=closed).booking_eligibility(
                people.patient, people.doctor)
    assert reset_flaky.calls == 0 and client.breaker.failure_count == 0
    tokens.close()
    closed.close()
