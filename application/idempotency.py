"""Idempotent commands: a request repeated with its ``Idempotency-Key`` is answered, not carried out again.

``once`` runs a command under a key. The command's own ``save`` records a ``CommandReceipt`` in the
same transaction (``process_managers.base.also_saving``), so the receipt exists exactly when the
command's events do, on every replica, after any crash. A repeat of the key within ``KEY_LIFETIME``
is answered from the receipt; the same key with another request is ``IdempotencyKeyReusedError``.
Two requests with one key at the same moment both run, but only one commits: the other's save
conflicts on the receipt (or on the command's own aggregates), nothing of it is recorded, and it is
answered from the winner's receipt. A command that fails records no receipt, so its repeat runs again.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError

from domain.receipts import CommandReceipt, Written, receipt_id_for
from process_managers.base import also_saving

T = TypeVar("T")

KEY_LIFETIME = timedelta(hours=24)
"""How long a key is remembered: after it, a request with the same key is a new command."""


@dataclass(frozen=True)
class IdempotencyKey:
    """A client's key for one command: who sent it (``scope``), the key, and a fingerprint of the
    request (operation, resource and body) that a repeat must match."""

    scope: str
    key: str
    request: str


def once(app: Any, key: IdempotencyKey | None, command: Callable[[], T],
         replay: Callable[[tuple[Written, ...]], T]) -> T:
    """``command()``, or, if ``key`` was used for it before, ``replay(the aggregates it wrote)``."""
    if key is None:
        return command()
    receipt = _receipt(app, key)
    if receipt is not None and not receipt.expired(_now(), KEY_LIFETIME):
        return replay(receipt.answer(key.request))
    try:
        with also_saving(app, lambda saved: _issue(receipt, key, saved)):
            return command()
    except Exception:
        answered = _receipt(app, key)
        if answered is None or (receipt is not None and answered.version == receipt.version):
            raise
        return replay(answered.answer(key.request))  # a concurrent request with the key committed first


def created(wrote: tuple[Written, ...]) -> UUID:
    """A create command's answer on a repeat: the aggregate it created (the first it saved)."""
    return wrote[0].id


def all_created(wrote: tuple[Written, ...]) -> list[UUID]:
    """The answer of a command that created several aggregates: all of them, in order."""
    return [written.id for written in wrote]


def nothing(_: tuple[Written, ...]) -> None:
    """The answer of a command whose response names only what its request did."""


def _issue(receipt: CommandReceipt | None, key: IdempotencyKey, saved: tuple[Any, ...]) -> CommandReceipt:
    aggregates = [aggregate for aggregate in saved if aggregate is not None]
    wrote, versions = [str(a.id) for a in aggregates], [a.version for a in aggregates]
    if receipt is None:
        return CommandReceipt(scope=key.scope, key=key.key, request=key.request, wrote=wrote, versions=versions)
    receipt.reissue(key.request, wrote, versions)
    return receipt


def _receipt(app: Any, key: IdempotencyKey) -> CommandReceipt | None:
    try:
        receipt = app.repository.get(receipt_id_for(key.scope, key.key))
    except AggregateNotFoundError:
        return None
    return receipt if isinstance(receipt, CommandReceipt) else None


def _now() -> datetime:
    return datetime.now(UTC)
