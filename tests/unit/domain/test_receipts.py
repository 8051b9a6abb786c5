"""A command's receipt: answers a repeat of its request, refuses another, expires, is reissued."""

from __future__ import annotations

from datetime import timedelta
from uuid import uuid4

import pytest

from domain.receipts import CommandReceipt, IdempotencyKeyReusedError, receipt_id_for

DAY = timedelta(hours=24)


def issued(wrote: list[str] | None = None) -> CommandReceipt:
    wrote = wrote or [str(uuid4())]
    return CommandReceipt(scope="patient-1", key="k-1", request="fingerprint-a", wrote=wrote, versions=[1] * len(wrote))


def test_one_receipt_per_caller_and_key():
    assert issued().id == receipt_id_for("patient-1", "k-1")
    assert receipt_id_for("patient-1", "k-1") != receipt_id_for("patient-2", "k-1")
    assert receipt_id_for("a", "b\nc") != receipt_id_for("a\nb", "c")  # no separator can be forged


def test_a_repeat_of_the_request_is_answered_with_what_the_command_wrote_in_order():
    wrote = [str(uuid4()), str(uuid4())]
    assert [(str(w.id), w.version) for w in issued(wrote).answer("fingerprint-a")] == [(i, 1) for i in wrote]


def test_another_request_under_the_key_is_refused():
    with pytest.raises(IdempotencyKeyReusedError, match="different request"):
        issued().answer("fingerprint-b")


def test_a_receipt_expires_after_its_lifetime_from_its_last_issue():
    receipt = issued()
    assert not receipt.expired(receipt.modified_on + DAY - timedelta(seconds=1), DAY)
    assert receipt.expired(receipt.modified_on + DAY, DAY)


def test_a_reissued_receipt_answers_for_the_new_request():
    receipt = issued()
    new = str(uuid4())
    receipt.reissue("fingerprint-b", [new], [3])
    assert [(str(w.id), w.version) for w in receipt.answer("fingerprint-b")] == [(new, 3)]
    assert [type(e).__name__ for e in receipt.collect_events()] == ["Issued", "Reissued"]
