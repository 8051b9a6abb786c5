"""The relay publishes what its own process records at once, not at the next poll."""

from __future__ import annotations

import asyncio

import pytest

from application.services import RelayPrompts
from infrastructure.messaging.relay import OutboxRelay
from tests.integration.messaging.conftest import eventually, request_consultations

pytestmark = pytest.mark.anyio


async def test_events_recorded_in_this_process_are_published_without_waiting_for_the_poll(broker, consultations):
    # given a caught-up relay that would poll only once a minute, prompted by the application it relays
    spy = await broker.declare("Spy", "Consultations")
    relay = OutboxRelay(consultations, await broker.channel(), broker.topology.exchange, poll_interval=60)
    prompts = RelayPrompts()
    prompts.relay = relay
    consultations.lead(prompts)
    stop = asyncio.Event()
    running = asyncio.create_task(relay.run(stop))
    await eventually(lambda: relay._prompted is not None, what="relay running")

    # when a request thread records an event
    await asyncio.to_thread(request_consultations, consultations, 1)

    # then it is on the queue long before the poll would have found it
    await eventually(lambda: broker.count(spy.main), timeout=5, what="the prompted publish")
    stop.set()
    await running


async def test_a_prompt_before_the_relay_runs_is_harmless(broker, consultations):
    relay = OutboxRelay(consultations, await broker.channel(), broker.topology.exchange)
    relay.prompt()  # nothing to wake yet
    assert await relay.run_once() == 0
