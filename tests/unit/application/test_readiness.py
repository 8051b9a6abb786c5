"""The readiness probe: checks run concurrently, each bounded in time, a hung one never piles up, answers cached."""

from __future__ import annotations

import asyncio
import threading

from application.readiness import Readiness
from tests.clocks import SecondsClock


class Counted:
    """A check that counts its calls; it blocks while ``gate`` is closed, or raises when told to."""

    def __init__(self, result: bool = True, blocked: bool = False, error: Exception | None = None) -> None:
        self.result = result
        self.error = error
        self.calls = 0
        self.gate = threading.Event()
        if not blocked:
            self.gate.set()

    def __call__(self) -> bool:
        self.calls += 1
        self.gate.wait(10)
        if self.error is not None:
            raise self.error
        return self.result


def probe(readiness: Readiness) -> dict[str, bool]:
    return asyncio.run(asyncio.wait_for(readiness.check(), timeout=5))


def test_each_check_is_reported_by_name_and_one_raising_counts_as_failing():
    checks = {"postgres": Counted(), "redis": Counted(False), "rabbitmq": Counted(error=ConnectionError("down"))}
    assert probe(Readiness(lambda: checks)) == {"postgres": True, "redis": False, "rabbitmq": False}


def test_a_hung_check_fails_in_time_without_holding_up_the_others_and_is_not_started_twice():
    clock, hung, fine = SecondsClock(100.0), Counted(blocked=True), Counted()
    readiness = Readiness(lambda: {"postgres": hung, "redis": fine}, timeout=0.1, ttl=1.0, clock=clock)

    async def scenario() -> list[dict[str, bool]]:
        first = await readiness.check()
        clock.now += 2  # the cached answer expired: the next probe evaluates again
        second = await readiness.check()
        hung.gate.set()  # the dependency answers at last
        await asyncio.sleep(0)  # let the thread's answer reach the loop
        while not readiness._running["postgres"].done():
            await asyncio.sleep(0.01)
        clock.now += 2
        return [first, second, await readiness.check()]

    first, second, third = asyncio.run(asyncio.wait_for(scenario(), timeout=5))
    assert first == second == {"postgres": False, "redis": True}
    assert third == {"postgres": True, "redis": True}
    assert hung.calls == 2  # the second probe waited on the hung run instead of starting another
    assert fine.calls == 3


def test_answers_are_cached_for_ttl_and_concurrent_probes_share_one_evaluation():
    clock, check = SecondsClock(100.0), Counted()
    readiness = Readiness(lambda: {"postgres": check}, ttl=1.0, clock=clock)

    async def scenario() -> None:
        await asyncio.gather(*(readiness.check() for _ in range(5)))
        clock.now += 0.5
        await readiness.check()
        assert check.calls == 1
        clock.now += 0.6
        await readiness.check()
        assert check.calls == 2

    asyncio.run(scenario())


def test_checks_added_after_the_probe_was_built_are_asked_too():
    checks = {"postgres": Counted()}
    readiness = Readiness(lambda: checks, ttl=0)
    checks["rabbitmq"] = Counted(False)
    assert probe(readiness) == {"postgres": True, "rabbitmq": False}


def test_each_role_is_checked_for_exactly_the_dependencies_it_uses(tmp_path):
    from application.services import build_service
    from application.settings import Settings

    settings = Settings(persistence="memory", data_dir=tmp_path, redis_url="redis://127.0.0.1:1/0")  # nothing there
    checks = {}
    for service in ("registry", "scheduling"):
        for role in ("api", "worker"):
            clinic = build_service(service, settings, role)
            checks[service, role] = sorted(clinic.readiness_checks())
            clinic.close()  # stops the read models' change feed, which would go on dialling
    # the worker's broker check and "accepting" are added where the worker and the signals live (clinic run)
    assert checks == {("registry", "api"): ["memory", "redis"], ("registry", "worker"): ["memory"],
                      ("scheduling", "api"): ["memory", "redis"], ("scheduling", "worker"): ["memory"]}


def test_an_answer_is_stamped_when_it_is_known_so_a_slow_evaluation_is_kept_a_whole_ttl():
    clock = SecondsClock(100.0)

    class Slow(Counted):
        def __call__(self) -> bool:
            clock.now += 0.9  # the dependency takes most of a ttl to answer
            return super().__call__()

    slow = Slow()
    readiness = Readiness(lambda: {"postgres": slow}, timeout=5, ttl=1.0, clock=clock)

    async def scenario() -> None:
        await readiness.check()
        clock.now += 0.5  # 1.4 s after the evaluation started, 0.5 s after its answer
        await readiness.check()

    asyncio.run(scenario())
    assert slow.calls == 1  # stamped at its start, the answer would have been stale at once


def test_only_degradable_checks_failing_is_degraded_not_unavailable():
    readiness = Readiness(dict, degradable=lambda: {"redis"})
    assert readiness.status({"postgres": True, "redis": True}) == "ok"
    assert readiness.status({"postgres": True, "redis": False}) == "degraded"
    assert readiness.status({"postgres": False, "redis": False}) == "unavailable"
