"""The relay publishes what its own process records at once: it is prompted, it does not poll."""

from __future__ import annotations

import asyncio

import pytest

from application.services import Prompts
from infrastructure.messaging.relay import OutboxRelay
from tests.integration.messaging.conftest import request_consultations
from tests.kit import eventually_async

pytestmark = pytest.mark.anyio


async def test_events_recorded_in_this_process_are_published_without_waiting_for_the_poll(broker, consultations):
    # given a caught-up relay that never polls, prompted by the application it relays
    spy = await broker.declare("Spy", "Consultations")
    relay = OutboxRelay(consultations, await broker.channel(), broker.topology.exchange, poll_interval=None)
    prompts = Prompts()
    prompts.relay = relay
    consultations.lead(prompts)
    stop = asyncio.Event()
    running = asyncio.create_task(relay.run(stop))
    await eventually_async(lambda: relay._prompted is not None, what="relay running")

    # when a request thread records an event
    await asyncio.to_thread(request_consultations, consultations, 1)

    # then it is on the queue at once
    await eventually_async(lambda: broker.count(spy.main), timeout=5, what="the prompted publish")
    stop.set()
    await running


async def test_a_prompt_before_the_relay_runs_is_harmless(broker, consultations):
    relay = OutboxRelay(consultations, await broker.channel(), broker.topology.exchange)
    relay.prompt()  # nothing to wake yet
    assert await relay.run_once() == 0
