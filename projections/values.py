"""How projections write event data into views: deterministic strings and scores only."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any


def iso(moment: datetime) -> str:
    """A timezone-aware datetime as ISO 8601 in UTC (``2027-01-05T09:00:00+00:00``)."""
    return moment.astimezone(UTC).isoformat()


def epoch(moment: datetime) -> float:
    """A sorted-set score: seconds since the epoch."""
    return moment.timestamp()


def utc_day(moment: datetime) -> str:
    """The UTC calendar day of ``moment`` (``YYYY-MM-DD``), as used in per-day index keys."""
    return moment.astimezone(UTC).date().isoformat()


def topic_of(event: Any) -> str:
    """The event's class as eventsourcing names it in stored topics (``module:Qual.Name``).

    Lets a projection recognise events of a layer it must not import (the booking saga's).
    """
    cls = type(event)
    return f"{cls.__module__}:{cls.__qualname__}"
