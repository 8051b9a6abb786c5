"""A command's receipt: a client sent it with an ``Idempotency-Key``, and this is what it asked and wrote.

A context records the receipt in the same transaction as the command's own events, so a command and
its receipt exist together or not at all, on every replica. A repeat of the key finds the receipt
and is answered from it instead of acting twice; the same key with another request is refused.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from uuid import NAMESPACE_URL, UUID, uuid5

from eventsourcing.domain import event

from domain.base import ClinicAggregate, DomainError

RECEIPT_NAMESPACE = uuid5(NAMESPACE_URL, "urn:clinic:command-receipt")


class IdempotencyKeyReusedError(DomainError):
    """The key was used for a different request (another operation, resource or body)."""


def receipt_id_for(scope: str, key: str) -> UUID:
    """The one receipt of ``key`` as sent by ``scope`` (the caller): two callers' keys never meet."""
    return uuid5(RECEIPT_NAMESPACE, json.dumps([scope, key]))


class CommandReceipt(ClinicAggregate):
    """What a keyed command asked (``request``, a fingerprint of operation, resource and body) and the
    aggregates its save wrote (``wrote``, in the order it saved them), from which its answer is
    rebuilt."""

    class Issued(ClinicAggregate.Created):
        scope: str
        key: str
        request: str
        wrote: list[str]

    class Reissued(ClinicAggregate.Event):
        """The key came back after it expired, with a command that was carried out afresh."""

        request: str
        wrote: list[str]

    @staticmethod
    def create_id(scope: str, key: str, request: str, wrote: list[str]) -> UUID:
        return receipt_id_for(scope, key)

    @event(Issued)
    def __init__(self, scope: str, key: str, request: str, wrote: list[str]) -> None:
        self.scope = scope
        self.key = key
        self.request = request
        self.wrote = wrote

    def expired(self, now: datetime, lifetime: timedelta) -> bool:
        """The key is older than ``lifetime``: a request with it is a new command."""
        return now - self.modified_on >= lifetime

    def answer(self, request: str) -> tuple[UUID, ...]:
        """The aggregates the command wrote, for a repeat of the same request; another request with this
        key is refused."""
        if request != self.request:
            raise IdempotencyKeyReusedError(
                "this Idempotency-Key was already used for a different request; use a new key for a new request")
        return tuple(UUID(aggregate_id) for aggregate_id in self.wrote)

    @event(Reissued)
    def reissue(self, request: str, wrote: list[str]) -> None:
        self.request = request
        self.wrote = wrote
