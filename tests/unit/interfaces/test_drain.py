"""After SIGTERM an API process goes on serving for ``CLINIC_DRAIN_SECONDS`` (readiness already 503) before it
closes its port; tests/e2e/test_zero_downtime_switch.py shows what that buys under load."""

from __future__ import annotations

import asyncio
import time

import pytest

from application.settings import Settings, SettingsError
from interfaces.cli.run import drain


def serving_forever() -> list[asyncio.Task[object]]:
    return [asyncio.create_task(asyncio.Event().wait())]


async def elapsed(serving: list[asyncio.Task[object]], seconds: float) -> float:
    started = time.monotonic()
    await drain(serving, seconds)
    return time.monotonic() - started


def test_given_servers_running_when_draining_then_they_go_on_for_the_drain_time():
    async def scenario() -> tuple[float, bool]:
        serving = serving_forever()
        took = await elapsed(serving, 0.2)
        still_serving = not serving[0].done()
        serving[0].cancel()
        return took, still_serving

    took, still_serving = asyncio.run(scenario())
    assert took >= 0.2 and still_serving


def test_given_no_drain_time_when_draining_then_it_returns_at_once():
    async def scenario() -> float:
        serving = serving_forever()
        took = await elapsed(serving, 0)
        serving[0].cancel()
        return took

    assert asyncio.run(scenario()) < 0.05


def test_given_a_server_that_ends_by_itself_when_draining_then_the_drain_ends_with_it():
    async def scenario() -> float:
        return await elapsed([asyncio.create_task(asyncio.sleep(0.01))], 10)

    assert asyncio.run(scenario()) < 1


def test_drain_seconds_come_from_clinic_drain_seconds():
    assert Settings.from_env({}).drain_seconds == 0
    assert Settings.from_env({"CLINIC_DRAIN_SECONDS": "10"}).drain_seconds == 10
    with pytest.raises(SettingsError, match="CLINIC_DRAIN_SECONDS"):
        Settings.from_env({"CLINIC_DRAIN_SECONDS": "-1"})
