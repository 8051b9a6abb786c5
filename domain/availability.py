"""A doctor's recurring availability: the slots of chosen weekdays, between two wall-clock times, for some weeks.

The times are the clinic's local time (an IANA zone), so 09:00 stays 09:00 across a daylight-saving
change; a start that does not exist that day (skipped by the clocks going forward) is left out, and
one that happens twice (the clocks going back) is taken the first time.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from enum import IntEnum
from zoneinfo import ZoneInfo

MAX_WEEKS = 12
"""The longest recurrence opened in one call (a quarter): longer plans are opened again later."""
MAX_SLOTS = 500
"""The most slots one call opens (as many as ``openSlots`` takes)."""


class Weekday(IntEnum):
    MON = 0
    TUE = 1
    WED = 2
    THU = 3
    FRI = 4
    SAT = 5
    SUN = 6


class AvailabilityError(ValueError):
    """The recurrence cannot open slots as asked (an empty window, slots that do not fit, too many weeks)."""


@dataclass(frozen=True)
class WeeklyAvailability:
    """Slots of ``slot_minutes`` from ``opens`` to ``closes`` (local time in ``zone``) on ``weekdays``,
    for ``weeks`` weeks from ``first_day``."""

    weekdays: frozenset[Weekday]
    opens: time
    closes: time
    slot_minutes: int
    first_day: date
    weeks: int
    zone: ZoneInfo

    def __post_init__(self) -> None:
        if not self.weekdays:
            raise AvailabilityError("name at least one weekday")
        if self.closes <= self.opens:
            raise AvailabilityError("the window must close after it opens")
        if self.slot_minutes <= 0 or self._window_minutes() < self.slot_minutes:
            raise AvailabilityError("no slot of that length fits in the window")
        if not 1 <= self.weeks <= MAX_WEEKS:
            raise AvailabilityError(f"weeks must be between 1 and {MAX_WEEKS}")
        self.starts()  # refuses more than MAX_SLOTS

    def starts(self) -> list[datetime]:
        """Every slot's start, in UTC, in order."""
        starts = [start for day in self._days() for start in self._starts_on(day)]
        if len(starts) > MAX_SLOTS:
            raise AvailabilityError(f"that is {len(starts)} slots; open at most {MAX_SLOTS} in one call")
        return starts

    def _days(self) -> Iterator[date]:
        for offset in range(self.weeks * 7):
            day = self.first_day + timedelta(days=offset)
            if Weekday(day.weekday()) in self.weekdays:
                yield day

    def _starts_on(self, day: date) -> Iterator[datetime]:
        opens = datetime.combine(day, self.opens)
        for minutes in range(0, self._window_minutes() - self.slot_minutes + 1, self.slot_minutes):
            wall = opens + timedelta(minutes=minutes)
            local = wall.replace(tzinfo=self.zone)
            if local.astimezone(UTC).astimezone(self.zone).replace(tzinfo=None) == wall:  # it exists that day
                yield local.astimezone(UTC)

    def _window_minutes(self) -> int:
        return (self.closes.hour * 60 + self.closes.minute) - (self.opens.hour * 60 + self.opens.minute)
