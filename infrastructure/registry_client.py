"""``RegistryPort`` over REST + mutual TLS: the booking process manager asks the registry service.

One logical call = bulkhead slot -> up to ``max_attempts`` attempts, each through the circuit
breaker -> one HTTPS request. Every way the registry can fail to answer ends in
``RegistryUnavailableError`` (the saga records it and asks again later, until its deadline);
nothing else escapes, because an exception from a policy would stop the follower for good.

Every request carries this service's own access token (``Authorization: Bearer``, from a
``ServiceTokens`` provider; ADR 0007): the registry checks the certificate in the handshake and
then the token and its scope. A 401 drops the cached token and the call is made once more with a
fresh one; a 403 (our token lacks the scope) is a deployment mistake, a ``RegistryProtocolError``.
A token that cannot be obtained is ``RegistryUnavailableError`` too (the registry is not called).

Synchronous on purpose: eventsourcing policies are synchronous. Thread-safe: share one client.
"""

from __future__ import annotations

import logging
import random as _random
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import httpx
import msgspec

from domain.metadata import current_metadata
from domain.values import RejectionReason
from infrastructure.observability.tracing import instrument_http_client
from infrastructure.resilience import (
    Bulkhead,
    BulkheadFullError,
    CircuitBreaker,
    CircuitOpenError,
    StateListener,
    backoff_delay,
)
from infrastructure.security.service_tokens import ServiceTokenError, ServiceTokens
from infrastructure.tls import Pki, client_ssl_context
from process_managers.ports import Eligibility, RegistryUnavailableError

ELIGIBILITY_PATH = "/internal/v1/eligibility"
"""The registry's internal route the booking saga asks (served by ``interfaces/http/internal.py``)."""
log = logging.getLogger(__name__)


class RegistryProtocolError(RegistryUnavailableError):
    """The registry answered, but not as the contract says (a 4xx, an unreadable 200).

    A deployment mistake (wrong URL, version skew), not an outage: never retried and not counted
    by the breaker. Still a ``RegistryUnavailableError`` for the saga: it has no answer either.
    """

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class RegistryCallPolicy:
    """Timeouts and resilience settings of one client (defaults: ADR 0004)."""

    connect_timeout: float = 0.5
    """TCP connect plus the TLS handshake, seconds."""
    read_timeout: float = 1.0
    """Longest silence while waiting for the answer (httpx: per read, not in total)."""
    write_timeout: float = 0.5
    pool_timeout: float = 0.1
    """Waiting for a pooled connection; the pool is as large as the bulkhead, so rarely used."""
    max_attempts: int = 3
    backoff_base: float = 0.1
    """Retry n waits uniform(0, min(backoff_cap, backoff_base * 2 ** (n - 1))) seconds."""
    backoff_cap: float = 1.0
    failure_threshold: int = 5
    """Consecutive failed attempts (not calls) that open the circuit."""
    reset_timeout: float = 15.0
    """Seconds the circuit stays open before one trial call is let through."""
    max_concurrent: int = 10
    """Bulkhead: calls in flight at once."""
    bulkhead_timeout: float = 0.05
    """Seconds a caller waits for a bulkhead slot before failing fast."""

    def __post_init__(self) -> None:
        for name in ("connect_timeout", "read_timeout", "write_timeout", "pool_timeout", "reset_timeout"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive")
        for name in ("max_attempts", "failure_threshold", "max_concurrent"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be 1 or more")
        if self.backoff_base < 0 or self.backoff_cap < 0 or self.bulkhead_timeout < 0:
            raise ValueError("backoff_base, backoff_cap and bulkhead_timeout must not be negative")

    def httpx_timeout(self) -> httpx.Timeout:
        return httpx.Timeout(connect=self.connect_timeout, read=self.read_timeout,
                             write=self.write_timeout, pool=self.pool_timeout)


class _TokenRefused(RegistryProtocolError):
    """The registry answered 401 to ``token``: expired, revoked, or signed by a key it no longer trusts."""

    def __init__(self, message: str, token: str) -> None:
        super().__init__(message, 401)
        self.token = token


class _AttemptFailed(Exception):
    """One attempt failed in a way that says the registry is not available now (breaker: failure)."""

    def __init__(self, message: str, retryable: bool) -> None:
        super().__init__(message)
        self.retryable = retryable


class _Answer(msgspec.Struct):
    allowed: bool
    reason: RejectionReason | None = None


class HttpRegistryClient:
    """Asks the registry's internal API whether a patient may book a doctor (``RegistryPort``)."""

    def __init__(self, base_url: str, ssl_context: ssl.SSLContext, policy: RegistryCallPolicy | None = None, *,
                 tokens: ServiceTokens, on_state_change: StateListener | None = None, sleep: Callable[[float], None] = time.sleep,
                 random: Callable[[], float] = _random.random, clock: Callable[[], float] = time.monotonic,
                 name: str = "registry") -> None:
        self.policy = policy = policy or RegistryCallPolicy()
        self.base_url = base_url.rstrip("/")
        self._sleep = sleep
        self._random = random
        self._tokens = tokens
        self._http = instrument_http_client(httpx.Client(  # a client span per attempt; traceparent sent on
            base_url=self.base_url, verify=ssl_context, timeout=policy.httpx_timeout(),
            limits=httpx.Limits(max_connections=policy.max_concurrent,
                                max_keepalive_connections=policy.max_concurrent),
            trust_env=False,  # no proxy from the environment between two services
        ))
        listeners = [on_state_change] if on_state_change else []
        self.breaker = CircuitBreaker(name, failure_threshold=policy.failure_threshold,
                                      reset_timeout=policy.reset_timeout, exclude=(RegistryProtocolError,),
                                      clock=clock, listeners=listeners)
        self.bulkhead = Bulkhead(name, policy.max_concurrent, policy.bulkhead_timeout)

    @classmethod
    def from_pki(cls, base_url: str, pki: Pki, service: str = "booking", *, tokens: ServiceTokens,
                 **options: Any) -> HttpRegistryClient:
        """A client presenting ``service``'s certificate and token, trusting only the PKI's CA."""
        return cls(base_url, client_ssl_context(pki, service), tokens=tokens, **options)

    def booking_eligibility(self, patient_id: UUID, doctor_id: UUID) -> Eligibility:
        params = {"patient_id": str(patient_id), "doctor_id": str(doctor_id)}
        try:
            with self.bulkhead.slot():
                return self._authorised_call(params)
        except BulkheadFullError as error:
            raise RegistryUnavailableError(f"registry not called: {error}") from None

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> HttpRegistryClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # Internals -------------------------------------------------------------------------------

    def _authorised_call(self, params: dict[str, str]) -> Eligibility:
        """The call with our token; a 401 drops it and the call is made once more with a fresh one."""
        try:
            return self._with_retries(params, self._token())
        except _TokenRefused as refused:
            log.info("the registry refused our service token (%s); fetching a fresh one", refused)
            self._tokens.invalidate(refused.token)
        try:
            return self._with_retries(params, self._token())
        except _TokenRefused as again:
            raise RegistryProtocolError(f"{again}; a freshly obtained token was refused too: check that the "
                                        "registry trusts our token issuer", 401) from None

    def _token(self) -> str:
        try:
            return self._tokens.token()
        except ServiceTokenError as error:
            log.warning("registry not called: no service token: %s", error)
            raise RegistryUnavailableError(f"registry not called: no service token: {error}") from None

    def _with_retries(self, params: dict[str, str], token: str) -> Eligibility:
        last: _AttemptFailed | None = None
        attempts = 0
        for attempt in range(1, self.policy.max_attempts + 1):
            try:
                return self.breaker.call(self._attempt, params, token)
            except CircuitOpenError as error:
                if last is None:
                    raise RegistryUnavailableError(f"registry not called: {error}") from None
                raise RegistryUnavailableError(
                    f"registry at {self.base_url} unavailable after {attempts} attempt(s): {last}; "
                    f"no further attempt: {error}") from None
            except _AttemptFailed as error:
                attempts, last = attempt, error
                if not error.retryable or attempt == self.policy.max_attempts:
                    break
                delay = backoff_delay(attempt, self.policy.backoff_base, self.policy.backoff_cap, self._random)
                log.info("registry attempt %d/%d failed (%s); retrying in %.3fs",
                         attempt, self.policy.max_attempts, error, delay)
                self._sleep(delay)
        assert last is not None
        retried = "" if last.retryable else ", not retried"
        message = f"registry at {self.base_url} unavailable after {attempts} attempt(s){retried}: {last}"
        log.warning(message)
        raise RegistryUnavailableError(message) from last.__cause__

    def _attempt(self, params: dict[str, str], token: str) -> Eligibility:
        headers = {"Authorization": f"Bearer {token}"}
        if (correlation_id := current_metadata().correlation_id) is not None:
            headers["X-Correlation-Id"] = correlation_id
        try:
            response = self._http.get(ELIGIBILITY_PATH, params=params, headers=headers)
        except httpx.ConnectTimeout as error:
            raise _AttemptFailed(f"connect and TLS handshake timed out after {self.policy.connect_timeout}s",
                                 retryable=True) from error
        except httpx.ReadTimeout as error:
            raise _AttemptFailed(f"no answer within the read timeout of {self.policy.read_timeout}s",
                                 retryable=True) from error
        except httpx.TimeoutException as error:
            raise _AttemptFailed(f"{type(error).__name__}: {error}", retryable=True) from error
        except httpx.ConnectError as error:
            tls = _ssl_error_in(error)
            if tls is not None:
                raise _AttemptFailed(f"TLS handshake failed: {_describe_tls(tls)}", retryable=False) from error
            raise _AttemptFailed(f"cannot connect: {error}", retryable=True) from error
        except httpx.RemoteProtocolError as error:
            raise _AttemptFailed(
                f"the registry closed the connection without answering ({error}); if this persists, it may be "
                "refusing our client certificate (TLS 1.3 reports that only after the handshake)",
                retryable=True) from error
        except httpx.TransportError as error:
            tls = _ssl_error_in(error)
            detail = f"TLS error: {_describe_tls(tls)}" if tls else f"{type(error).__name__}: {error}"
            raise _AttemptFailed(detail, retryable=isinstance(error, httpx.NetworkError) and tls is None) from error
        return self._read(response, token)

    def _read(self, response: httpx.Response, token: str) -> Eligibility:
        status = response.status_code
        if status >= 500:
            raise _AttemptFailed(f"the registry answered {status} {response.reason_phrase}", retryable=True)
        if status == 401:
            raise _TokenRefused(f"the registry refused our service token with 401 ({_problem_detail(response)})",
                                token)
        if status == 403:
            raise RegistryProtocolError(
                f"the registry refused the call with 403 ({_problem_detail(response)}); not retried: our service "
                "token lacks the scope the call needs (check the client's registration)", status)
        if status != 200:
            raise RegistryProtocolError(
                f"the registry refused the request with {status} {response.reason_phrase} "
                f"({_problem_detail(response)}); not retried: check the registry URL and version", status)
        try:
            answer = msgspec.json.decode(response.content, type=_Answer)
        except msgspec.DecodeError as error:
            raise RegistryProtocolError(f"unreadable eligibility answer from the registry: {error}", status) from None
        if answer.allowed:
            return Eligibility.ok()
        if answer.reason is None:
            raise RegistryProtocolError("the registry refused without a reason", status)
        return Eligibility.refused(answer.reason)


def _ssl_error_in(error: BaseException) -> ssl.SSLError | None:
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        if isinstance(current, ssl.SSLError):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def _describe_tls(error: ssl.SSLError) -> str:
    if isinstance(error, ssl.SSLCertVerificationError):
        return f"the registry's certificate is not trusted ({error.verify_message})"
    if isinstance(error, ssl.SSLEOFError):
        return "the registry closed the connection during the handshake (does it trust our client certificate?)"
    return error.reason or str(error)


def _problem_detail(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:200] or "no body"
    if isinstance(body, dict):
        return str(body.get("detail") or body.get("title") or body)[:200]
    return str(body)[:200]
