"""The circuit breaker: thresholds, fail-fast, exactly one half-open trial, listener events."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest

from infrastructure.resilience import CircuitBreaker, CircuitOpenError, CircuitState
from tests.clocks import SecondsClock

WAIT = 5.0  # bound on every synchronisation wait: a broken breaker fails the test, never hangs it


class Down(Exception):
    """The other side failed."""


class BadRequest(Exception):
    """The other side answered: our request was wrong (excluded)."""


def fail() -> None:
    raise Down("down")


def refuse() -> None:
    raise BadRequest("400")


@pytest.fixture
def clock() -> SecondsClock:
    return SecondsClock()


@pytest.fixture
def transitions() -> list[tuple[CircuitState, CircuitState]]:
    return []


@pytest.fixture
def breaker(clock, transitions) -> CircuitBreaker:
    return CircuitBreaker("registry", failure_threshold=3, reset_timeout=10.0, exclude=(BadRequest,), clock=clock,
                          listeners=[lambda name, old, new: transitions.append((old, new))])


def trip(breaker: CircuitBreaker) -> None:
    for _ in range(breaker.failure_threshold):
        with pytest.raises(Down):
            breaker.call(fail)
    assert breaker.state is CircuitState.OPEN


def test_closed_until_the_threshold_of_consecutive_failures(breaker, transitions):
    for _ in range(2):
        with pytest.raises(Down):
            breaker.call(fail)
    assert breaker.state is CircuitState.CLOSED and breaker.failure_count == 2
    assert breaker.call(lambda: "ok") == "ok"
    assert breaker.failure_count == 0, "a success resets the count: failures must be consecutive"
    trip(breaker)
    assert transitions == [(CircuitState.CLOSED, CircuitState.OPEN)]


def test_open_fails_fast_without_calling(breaker, clock):
    trip(breaker)
    calls = []
    clock.advance(9.9)
    with pytest.raises(CircuitOpenError) as refused:
        breaker.call(lambda: calls.append(1))
    assert calls == []
    assert refused.value.retry_in == pytest.approx(0.1)
    assert "open after 3 consecutive failures" in str(refused.value)


def test_trial_success_closes(breaker, clock, transitions):
    trip(breaker)
    clock.advance(10.0)
    assert breaker.call(lambda: "ok") == "ok"
    assert breaker.state is CircuitState.CLOSED and breaker.failure_count == 0
    assert transitions == [(CircuitState.CLOSED, CircuitState.OPEN), (CircuitState.OPEN, CircuitState.HALF_OPEN),
                           (CircuitState.HALF_OPEN, CircuitState.CLOSED)]
    with pytest.raises(Down):  # closed again: one failure does not reopen it
        breaker.call(fail)
    assert breaker.state is CircuitState.CLOSED


def test_trial_failure_reopens_for_another_timeout(breaker, clock, transitions):
    trip(breaker)
    clock.advance(10.0)
    with pytest.raises(Down):
        breaker.call(fail)
    assert breaker.state is CircuitState.OPEN
    clock.advance(9.0)
    with pytest.raises(CircuitOpenError):
        breaker.call(lambda: None)
    clock.advance(1.0)
    breaker.call(lambda: None)
    assert transitions == [
        (CircuitState.CLOSED, CircuitState.OPEN), (CircuitState.OPEN, CircuitState.HALF_OPEN),
        (CircuitState.HALF_OPEN, CircuitState.OPEN), (CircuitState.OPEN, CircuitState.HALF_OPEN),
        (CircuitState.HALF_OPEN, CircuitState.CLOSED),
    ]


def test_exactly_one_concurrent_caller_gets_the_half_open_trial(breaker, clock, transitions):
    trip(breaker)
    clock.advance(10.0)
    callers = 16
    start = threading.Barrier(callers, timeout=WAIT)
    release_trial = threading.Event()
    trial_entered = threading.Event()
    lock = threading.Lock()
    trials: list[int] = []
    refused: list[int] = []
    all_others_refused = threading.Event()

    def trial() -> str:
        with lock:
            trials.append(1)
        trial_entered.set()
        assert release_trial.wait(WAIT), "the other callers were not all refused"
        return "ok"

    def caller() -> None:
        start.wait()
        try:
            breaker.call(trial)
        except CircuitOpenError:
            with lock:
                refused.append(1)
                if len(refused) == callers - 1:
                    all_others_refused.set()

    threads = [threading.Thread(target=caller) for _ in range(callers)]
    for thread in threads:
        thread.start()
    assert trial_entered.wait(WAIT)
    assert all_others_refused.wait(WAIT), f"{len(refused)} refused, {len(trials)} trials"
    assert breaker.state is CircuitState.HALF_OPEN
    release_trial.set()
    for thread in threads:
        thread.join(WAIT)
    assert len(trials) == 1 and len(refused) == callers - 1
    assert breaker.state is CircuitState.CLOSED
    assert transitions == [(CircuitState.CLOSED, CircuitState.OPEN), (CircuitState.OPEN, CircuitState.HALF_OPEN),
                           (CircuitState.HALF_OPEN, CircuitState.CLOSED)], "each transition exactly once"


def test_excluded_exceptions_neither_count_nor_reset(breaker, transitions):
    for call in (fail, fail, refuse, refuse, fail):
        with pytest.raises((Down, BadRequest)):
            breaker.call(call)
    assert breaker.state is CircuitState.OPEN, "the two refusals must not have reset the two failures"
    assert transitions == [(CircuitState.CLOSED, CircuitState.OPEN)], "no CLOSED -> CLOSED events"


def test_an_excluded_exception_ends_the_trial_without_a_verdict(breaker, clock, transitions):
    trip(breaker)
    clock.advance(10.0)
    with pytest.raises(BadRequest):
        breaker.call(refuse)
    assert breaker.state is CircuitState.HALF_OPEN
    assert breaker.call(lambda: "ok") == "ok", "the permit was handed back: the next caller is the trial"
    assert breaker.state is CircuitState.CLOSED


def test_late_outcome_of_a_call_admitted_before_the_circuit_opened_is_ignored(breaker, clock, transitions):
    inside, finish = threading.Event(), threading.Event()
    outcome: list[str] = []

    def slow_success() -> str:
        inside.set()
        assert finish.wait(WAIT)
        return "late"

    slow = threading.Thread(target=lambda: outcome.append(breaker.call(slow_success)))
    slow.start()
    assert inside.wait(WAIT)
    trip(breaker)
    finish.set()
    slow.join(WAIT)
    assert outcome == ["late"]
    assert breaker.state is CircuitState.OPEN, "a success that started before the trip must not close it"


def test_a_failing_listener_does_not_break_calls(clock, caplog):
    def broken(*_: object) -> None:
        raise RuntimeError("metrics down")

    breaker = CircuitBreaker("registry", failure_threshold=1, reset_timeout=1.0, clock=clock, listeners=[broken])
    with pytest.raises(Down):
        breaker.call(fail)
    assert breaker.state is CircuitState.OPEN
    assert "state listener" in caplog.text


def test_transitions_are_logged(breaker, clock, caplog):
    caplog.set_level("INFO", logger="infrastructure.resilience")
    trip(breaker)
    clock.advance(10.0)
    breaker.call(lambda: None)
    assert [r.getMessage() for r in caplog.records] == [
        "circuit registry: closed -> open", "circuit registry: open -> half_open",
        "circuit registry: half_open -> closed"]


@pytest.mark.parametrize("options", [{"failure_threshold": 0}, {"reset_timeout": 0}])
def test_bad_settings_are_refused(options):
    with pytest.raises(ValueError):
        CircuitBreaker("x", **options)


# Why not aiobreaker (ADR 0004): its flaws, pinned. If one of these starts failing, aiobreaker
# changed: reconsider using it instead of infrastructure.resilience.CircuitBreaker.

def test_aiobreaker_lets_every_concurrent_caller_through_in_half_open():
    from aiobreaker import CircuitBreaker as AioBreaker
    from aiobreaker import CircuitBreakerError

    aio = AioBreaker(fail_max=1, timeout_duration=timedelta(microseconds=1))  # timedelta(0) would mean 60 s
    with pytest.raises(CircuitBreakerError):  # the failure that reaches fail_max opens the circuit
        aio.call(fail)
    callers = 8
    start = threading.Barrier(callers, timeout=WAIT)
    inside = threading.Barrier(callers, timeout=WAIT)  # passes only if all 8 run the "trial" at once
    passed: list[bool] = []

    def trial() -> None:
        inside.wait()
        passed.append(True)

    def caller() -> None:
        start.wait()
        try:
            aio.call(trial)
        except Exception:
            pass

    threads = [threading.Thread(target=caller) for _ in range(callers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT)
    assert len(passed) == callers


def test_aiobreaker_resets_the_failure_count_on_an_excluded_exception():
    from aiobreaker import CircuitBreaker as AioBreaker

    aio = AioBreaker(fail_max=3, exclude=[BadRequest])
    for call in (fail, fail, refuse):
        with pytest.raises((Down, BadRequest)):
            aio.call(call)
    assert aio.fail_counter == 0
