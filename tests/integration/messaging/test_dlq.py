"""Operator actions on the booking DLQ: list and show leave messages in place; redrive; purge."""

from __future__ import annotations

import pytest

from infrastructure.messaging.consumer import FollowerConsumer
from infrastructure.messaging.dlq import DeadLetterNotFoundError, DeadLetterQueue
from infrastructure.messaging.relay import OutboxRelay
from process_managers.booking_saga import saga_id_for
from tests.integration.messaging.conftest import request_consultations
from tests.kit import eventually_async

pytestmark = pytest.mark.anyio


@pytest.fixture
async def three_dead_letters(broker, consultations, booking):
    """Three requests the saga always fails on, dead-lettered at their first attempt, in order."""
    queues = await broker.declare("Booking", "Consultations")
    # One at a time, so they reach the DLQ in notification order (with more, handlers run concurrently).
    consumer = FollowerConsumer(booking, await broker.channel(), queues, prefetch=1, max_attempts=1)
    await consumer.start()
    ids = request_consultations(consultations, 3)
    booking.failures.update(dict.fromkeys(ids))
    await OutboxRelay(consultations, await broker.channel(), broker.topology.exchange).run_once()
    await eventually_async(lambda: consumer.outcomes["dead_lettered"] == 3, what="three dead letters")
    yield DeadLetterQueue(broker.connection, queues), consumer, ids
    await consumer.stop()


def message_ids(dead_letters) -> list[str]:
    return [d.message_id for d in dead_letters]


async def test_listing_and_showing_leave_the_dead_letters_in_order(three_dead_letters, broker):
    dlq, _, ids = three_dead_letters
    expected = ["Consultations:1", "Consultations:2", "Consultations:3"]

    assert message_ids(await dlq.list_messages()) == expected
    assert message_ids(await dlq.list_messages()) == expected
    assert message_ids(await dlq.list_messages(limit=2)) == expected[:2]
    shown = await dlq.show("Consultations:2")
    assert (shown.reason, shown.attempts, shown.error) == \
        ("max-attempts", 1, f"RuntimeError: simulated failure on {ids[1]}")
    assert message_ids(await dlq.list_messages()) == expected
    assert await broker.count(dlq.queues.dead_letters) == 3


async def test_showing_an_unknown_message_says_so(three_dead_letters):
    dlq, _, _ = three_dead_letters
    with pytest.raises(DeadLetterNotFoundError):
        await dlq.show("Consultations:99")
    with pytest.raises(DeadLetterNotFoundError):
        await dlq.redrive("Consultations:99")


async def test_a_redriven_message_is_processed_once_fixed_and_the_others_stay(three_dead_letters, booking):
    dlq, _consumer, ids = three_dead_letters
    # given the cause of the second failure fixed
    booking.failures[ids[1]] = 0

    # when the operator redrives it
    assert await dlq.redrive("Consultations:2") == 1

    # then it is processed, and the other two stay in the DLQ in their order
    await eventually_async(lambda: saga_id_for(ids[1]) in booking.repository, what="redriven saga")
    assert message_ids(await dlq.list_messages()) == ["Consultations:1", "Consultations:3"]


async def test_redriving_all_resets_attempts_and_a_still_failing_message_comes_back(three_dead_letters, booking):
    dlq, consumer, ids = three_dead_letters
    # given the first and second fixed, the third still failing
    booking.failures[ids[0]] = booking.failures[ids[1]] = 0

    # when the operator redrives everything
    assert await dlq.redrive_all() == 3

    # then two are processed, and the third is back, attempts counted afresh, redrive recorded
    await eventually_async(lambda: consumer.outcomes["processed"] == 2, what="two processed")
    await eventually_async(lambda: consumer.outcomes["dead_lettered"] == 4, what="third back in the DLQ")
    [back] = await dlq.list_messages()
    assert (back.message_id, back.attempts, back.headers["x-redrives"]) == ("Consultations:3", 1, 1)


async def test_purging_deletes_every_dead_letter(three_dead_letters):
    dlq, _, _ = three_dead_letters
    assert await dlq.purge() == 3
    assert await dlq.list_messages() == []
