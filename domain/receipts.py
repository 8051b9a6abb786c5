"""A command's receipt: a client sent it with an ``Idempotency-Key``, and this is what it asked and wrote.

A context records the receipt in the same transaction as the command's own events, so a command and
its receipt exist together or not at all, on every replica. A repeat of the key finds the receipt
and is answered from it instead of acting twice; the same key with another request is refused.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
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


@dataclass(frozen=True)
class Written:
    """An aggregate a command saved, and the version its save left it at."""

    id: UUID
    version: int


class CommandReceipt(ClinicAggregate):
    """What a keyed command asked (``request``, a fingerprint of operation, resource and body) and the
    aggregates its save wrote (``wrote``, in the order it saved them, at ``versions``), from which its
    answer is rebuilt."""

    class Issued(ClinicAggregate.Created):
        scope: str
        key: str
        request: str
        wrote: list[str]
        versions: list[int]

    class Reissued(ClinicAggregate.Event):
        """The key came back after it expired, with a command that was carried out afresh."""

        request: str
        wrote: list[str]
        versions: list[int]

    @staticmethod
    def create_id(scope: str, key: str, request: str, wrote: list[str], versions: list[int]) -> UUID:
        return receipt_id_for(scope, key)

    @event(Issued)
    def __init__(self, scope: str, key: str, request: str, wrote: list[str], versions: list[int]) -> None:
        self.scope = scope
        self.key = key
        self.request = request
        self.wrote = wrote
        self.versions = versions

    def expired(self, now: datetime, lifetime: timedelta) -> bool:
        """The key is older than ``lifetime``: a request with it is a new command."""
        return now - self.modified_on >= lifetime

    def answer(self, request: str) -> tuple[Written, ...]:
        """The aggregates the command wrote, for a repeat of the same request; another request with this
        key is refused."""
        if request != self.request:
            raise IdempotencyKeyReusedError(
                "this Idempotency-Key was already used for a different request; use a new key for a new request")
        return tuple(Written(UUID(i), v) for i, v in zip(self.wrote, self.versions, strict=True))

    @event(Reissued)
    def reissue(self, request: str, wrote: list[str], versions: list[int]) -> None:
        self.request = request
        self.wrote = wrote
        self.versions = versions
