"""Retry backoff and the client's call policy (no network: see tests/integration/test_registry_mtls.py)."""

from __future__ import annotations

import pytest

from infrastructure.registry_client import RegistryCallPolicy, RegistryProtocolError
from infrastructure.resilience import backoff_delay
from process_managers.ports import RegistryUnavailableError


def test_backoff_is_exponential_capped_and_fully_jittered():
    top = [backoff_delay(n, base=0.1, cap=0.5, random=lambda: 1.0) for n in range(1, 6)]
    assert top == pytest.approx([0.1, 0.2, 0.4, 0.5, 0.5])
    assert backoff_delay(3, base=0.1, cap=0.5, random=lambda: 0.25) == pytest.approx(0.1)
    assert backoff_delay(3, base=0.1, cap=0.5, random=lambda: 0.0) == 0.0


def test_default_policy_bounds_a_call():
    policy = RegistryCallPolicy()
    assert policy.max_attempts == 3
    timeout = policy.httpx_timeout()
    assert (timeout.connect, timeout.read, timeout.write, timeout.pool) == (0.5, 1.0, 0.5, 0.1)
    # worst case of one logical call: every attempt connects, then waits the full read timeout
    worst = policy.max_attempts * (policy.connect_timeout + policy.read_timeout) + sum(
        backoff_delay(n, policy.backoff_base, policy.backoff_cap, lambda: 1.0) for n in (1, 2))
    assert worst < 5.0


@pytest.mark.parametrize("options", [
    {"max_attempts": 0}, {"read_timeout": 0}, {"connect_timeout": -1}, {"max_concurrent": 0},
    {"failure_threshold": 0}, {"reset_timeout": 0}, {"backoff_base": -0.1},
])
def test_bad_policies_are_refused(options):
    with pytest.raises(ValueError):
        RegistryCallPolicy(**options)


def test_a_protocol_error_is_a_registry_unavailable_error_for_the_saga():
    assert issubclass(RegistryProtocolError, RegistryUnavailableError)
