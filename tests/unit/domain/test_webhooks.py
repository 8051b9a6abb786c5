"""Webhook subscriptions, the directory that finds them, and each delivery's schedule of attempts."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from itertools import pairwise

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain.webhooks import (
    EVENT_TYPES,
    MAX_SUBSCRIPTIONS_PER_OWNER,
    OUTCOMES,
    DeliverySchedule,
    DeliveryStatus,
    TooManySubscriptionsError,
    WebhookDelivery,
    WebhookDirectory,
    WebhookError,
    WebhookSubscription,
    checked_events,
    checked_url,
    delivery_id_for,
)

NOW = datetime(2027, 1, 5, 9, tzinfo=UTC)
PATIENT, DOCTOR = uuid.uuid4(), uuid.uuid4()


def subscription(owner="p-1", patient_id=None, doctor_id=None, events=("consultation.confirmed",)):
    return WebhookSubscription(owner=owner, url="https://hooks.example.org/x", events=list(events),
                               patient_id=patient_id, doctor_id=doctor_id)


def delivery():
    return WebhookDelivery(subscription_id=uuid.uuid4(), event_type="consultation.confirmed",
                           consultation_id=uuid.uuid4(), body="{}", source_event_id="c/2")


# Which subscriptions an outcome concerns ----------------------------------------------------------


def test_a_patient_hears_of_their_own_a_doctor_of_theirs_and_staff_of_all():
    directory = WebhookDirectory()
    mine, doctors, staff, other = (subscription("p", patient_id=PATIENT), subscription("d", doctor_id=DOCTOR),
                                   subscription("ops"), subscription("q", patient_id=uuid.uuid4()))
    for each in (mine, doctors, staff, other):
        directory.add(each)
    assert directory.concerned(PATIENT, DOCTOR, "consultation.confirmed") == [mine.id, doctors.id, staff.id]
    assert directory.concerned(None, None, "consultation.confirmed") == [staff.id]  # parties unknown
    assert directory.concerned(PATIENT, DOCTOR, "consultation.rejected") == []


def test_a_removed_subscription_hears_of_nothing_and_removing_again_records_nothing():
    directory = WebhookDirectory()
    staff = subscription("ops")
    directory.add(staff)
    directory.remove(staff.id)
    version = directory.version
    directory.remove(staff.id)
    assert directory.concerned(PATIENT, DOCTOR, "consultation.confirmed") == [] and directory.version == version


def test_an_owner_has_at_most_the_limit():
    directory = WebhookDirectory()
    for _ in range(MAX_SUBSCRIPTIONS_PER_OWNER):
        directory.add(subscription("p"))
    with pytest.raises(TooManySubscriptionsError):
        directory.add(subscription("p"))
    directory.add(subscription("someone else"))


def test_every_outcome_has_a_type_and_the_types_are_listed_once():
    assert set(OUTCOMES.values()) == set(EVENT_TYPES) and len(EVENT_TYPES) == len(set(EVENT_TYPES))
    assert checked_events(["consultation.rejected", "consultation.confirmed", "consultation.confirmed"]) == [
        "consultation.confirmed", "consultation.rejected"]
    with pytest.raises(WebhookError, match="unknown"):
        checked_events(["slot.opened"])
    with pytest.raises(WebhookError, match="at least one"):
        checked_events([])


@pytest.mark.parametrize("url", ["https://hooks.example.org/x?a=1", "https://[2001:db8::1]:8443/x"])
def test_an_https_url_is_taken_as_it_is(url):
    assert checked_url(url, allow_http=False) == url


def test_plain_http_only_where_allowed():
    with pytest.raises(WebhookError, match="https"):
        checked_url("http://hooks.example.org/x", allow_http=False)
    assert checked_url("http://hooks.example.org/x", allow_http=True)


def test_a_url_longer_than_the_limit_is_refused():
    with pytest.raises(WebhookError, match="at most"):
        checked_url("https://hooks.example.org/" + "x" * 3000, allow_http=False)


# A delivery's attempts ----------------------------------------------------------------------------


def test_one_delivery_per_outcome_and_subscription():
    subscription_id = uuid.uuid4()
    assert delivery_id_for(subscription_id, "c/2") == delivery_id_for(subscription_id, "c/2")
    assert delivery_id_for(subscription_id, "c/2") != delivery_id_for(subscription_id, "c/3")
    assert delivery_id_for(subscription_id, "c/2") != delivery_id_for(uuid.uuid4(), "c/2")


def test_a_2xx_delivers_and_later_answers_change_nothing():
    sent = delivery()
    sent.record_attempt(204, None, NOW, DeliverySchedule())
    version = sent.version
    sent.record_attempt(500, "late", NOW, DeliverySchedule())
    sent.abandon("subscription_deleted")
    assert (sent.status, sent.attempts, sent.version) == (DeliveryStatus.DELIVERED, 1, version)


def test_a_failure_is_tried_again_later_and_the_last_one_gives_up():
    schedule = DeliverySchedule(first_delay=timedelta(seconds=10), max_attempts=3)
    sent = delivery()
    sent.record_attempt(500, "the client answered 500", NOW, schedule)
    assert (sent.status, sent.next_attempt_at) == (DeliveryStatus.PENDING, NOW + timedelta(seconds=10))
    sent.record_attempt(None, "ConnectError", NOW, schedule)
    assert sent.next_attempt_at == NOW + timedelta(seconds=20)
    sent.record_attempt(302, "the client answered 302", NOW, schedule)  # a redirect is not taken
    assert (sent.status, sent.attempts, sent.next_attempt_at) == (DeliveryStatus.FAILED, 3, None)


def test_abandoning_a_pending_delivery_fails_it_with_the_reason():
    sent = delivery()
    sent.abandon("subscription_deleted")
    assert (sent.status, sent.last_error) == (DeliveryStatus.FAILED, "subscription_deleted")


@given(first=st.integers(1, 600), cap_factor=st.integers(1, 1000), attempts=st.integers(1, 30))
def test_the_schedule_backs_off_never_shrinks_never_passes_its_cap_and_ends(first, cap_factor, attempts):
    schedule = DeliverySchedule(timedelta(seconds=first), timedelta(seconds=first * cap_factor), attempts)
    delays = [schedule.retry_after(n) for n in range(1, attempts + 1)]
    waits = [d for d in delays if d is not None]
    assert delays[-1] is None and len(waits) == attempts - 1  # every attempt but the last is followed by another
    assert all(schedule.first_delay <= d <= schedule.max_delay for d in waits)
    assert all(a <= b for a, b in pairwise(waits))
    assert all(b in (2 * a, schedule.max_delay) for a, b in pairwise(waits))


@given(answers=st.lists(st.one_of(st.none(), st.integers(100, 599)), min_size=1, max_size=20))
def test_a_delivery_ends_delivered_at_its_first_2xx_or_failed_after_the_last_attempt(answers):
    schedule = DeliverySchedule(max_attempts=5)
    sent = delivery()
    for code in answers:
        sent.record_attempt(code, None if code and 200 <= code < 300 else "refused", NOW, schedule)
    first_ok = next((i for i, code in enumerate(answers) if code is not None and 200 <= code < 300), None)
    if first_ok is not None and first_ok < schedule.max_attempts:
        assert (sent.status, sent.attempts) == (DeliveryStatus.DELIVERED, first_ok + 1)
    elif len(answers) >= schedule.max_attempts:
        assert (sent.status, sent.attempts) == (DeliveryStatus.FAILED, schedule.max_attempts)
    else:
        assert (sent.status, sent.attempts) == (DeliveryStatus.PENDING, len(answers))
        assert sent.next_attempt_at is not None


def test_a_schedule_that_could_not_work_is_refused():
    with pytest.raises(ValueError, match="schedule"):
        DeliverySchedule(first_delay=timedelta(0))
    with pytest.raises(ValueError, match="schedule"):
        DeliverySchedule(first_delay=timedelta(hours=3), max_delay=timedelta(hours=2))
