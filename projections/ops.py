"""The view changes a projection asks for: a small vocabulary every read-model store applies.

Projections are pure: an event in, a list of these out. Keys are relative ("consultation:<id>");
the store puts them under its prefix and the projection's version, so a rebuild writes fresh keys.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Union


@dataclass(frozen=True)
class SetFields:
    """Set these fields of the hash at ``key`` (creating it); values are strings."""

    key: str
    fields: dict[str, str]


@dataclass(frozen=True)
class AddToIndex:
    """Add ``member`` with ``score`` to the sorted set at ``key`` (re-adding updates the score)."""

    key: str
    member: str
    score: float


@dataclass(frozen=True)
class RemoveFromIndex:
    """Remove ``member`` from the sorted set at ``key`` (no-op if absent)."""

    key: str
    member: str


@dataclass(frozen=True)
class AppendToList:
    """Append ``value`` to the list at ``key``."""

    key: str
    value: str


@dataclass(frozen=True)
class RemoveFromList:
    """Remove every ``value`` from the list at ``key``."""

    key: str
    value: str


@dataclass(frozen=True)
class SetFieldsIf:
    """Set ``fields`` of the hash at ``key`` only if its field ``field`` equals ``equals`` now.

    For a transition that depends on the view's current state (a saga's COMPLETED → CANCELLED)
    when the event alone does not say it; a missing hash or field never equals.
    """

    key: str
    field: str
    equals: str
    fields: dict[str, str]


@dataclass(frozen=True)
class CopyToMembers:
    """Copy the fields of the hash at ``source`` onto the hash ``prefix + member`` of every member
    of the sorted set at ``index`` (nothing if ``source`` is absent or empty).

    For changes that follow a subject into every view about them (a patient's erasure redacting
    each of their consultations), including views added later: re-applied after each addition.
    The store checks the types of ``index``, ``source`` and the members' hashes existing before
    the batch.
    """

    index: str
    prefix: str
    source: str


Op = Union[SetFields, AddToIndex, RemoveFromIndex, AppendToList, RemoveFromList, SetFieldsIf, CopyToMembers]  # noqa: UP007
