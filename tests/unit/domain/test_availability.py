"""A doctor's recurring availability: the starts it opens, for any weekdays, window, length, zone and weeks."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from domain.availability import MAX_SLOTS, AvailabilityError, Weekday, WeeklyAvailability

ZONES = [ZoneInfo(name) for name in ("UTC", "Europe/Lisbon", "America/New_York", "Australia/Lord_Howe")]


@st.composite
def recurrences(draw: st.DrawFn) -> WeeklyAvailability:
    opens = draw(st.integers(0, 22 * 60))
    closes = draw(st.integers(opens + 5, 24 * 60 - 1))
    slot = draw(st.sampled_from([5, 10, 15, 20, 30, 45, 60, 90]))
    assume(closes - opens >= slot)
    try:
        return WeeklyAvailability(frozenset(draw(st.sets(st.sampled_from(list(Weekday)), min_size=1))),
                                  time(opens // 60, opens % 60), time(closes // 60, closes % 60), slot,
                                  draw(st.dates(date(2027, 1, 1), date(2028, 12, 31))), draw(st.integers(1, 4)),
                                  draw(st.sampled_from(ZONES)))
    except AvailabilityError:
        assume(False)
        raise


@given(recurrences())
def test_every_start_is_a_chosen_weekday_inside_the_window_spaced_by_the_slot_and_unique(recurrence):
    starts = recurrence.starts()
    assert len(starts) == len(set(starts)) <= MAX_SLOTS
    assert starts == sorted(starts)
    end_of_plan = recurrence.first_day + timedelta(weeks=recurrence.weeks)
    for start in starts:
        local = start.astimezone(recurrence.zone)
        assert start.tzinfo is UTC
        assert Weekday(local.weekday()) in recurrence.weekdays
        assert recurrence.first_day <= local.date() < end_of_plan
        opened = datetime.combine(local.date(), recurrence.opens)
        minutes = (local.replace(tzinfo=None) - opened).total_seconds() / 60
        assert minutes % recurrence.slot_minutes == 0
        assert local.time() >= recurrence.opens
        assert (local.replace(tzinfo=None) + timedelta(minutes=recurrence.slot_minutes)).time() <= recurrence.closes


@given(recurrences())
def test_each_day_has_every_slot_that_fits_unless_the_clocks_skipped_it(recurrence):
    per_day = ((recurrence.closes.hour * 60 + recurrence.closes.minute)
               - (recurrence.opens.hour * 60 + recurrence.opens.minute)) // recurrence.slot_minutes
    days = [recurrence.first_day + timedelta(days=i) for i in range(recurrence.weeks * 7)
            if Weekday((recurrence.first_day + timedelta(days=i)).weekday()) in recurrence.weekdays]
    counts = dict.fromkeys(days, 0)
    for start in recurrence.starts():
        counts[start.astimezone(recurrence.zone).date()] += 1
    assert all(count <= per_day for count in counts.values())
    assert sum(per_day - count for count in counts.values()) <= per_day * 2  # only a clock change skips any


def test_nine_oclock_stays_nine_oclock_across_daylight_saving():
    lisbon = WeeklyAvailability(frozenset({Weekday.MON}), time(9), time(9, 30), 30, date(2027, 3, 22), 2,
                                ZoneInfo("Europe/Lisbon"))
    assert lisbon.starts() == [datetime(2027, 3, 22, 9, tzinfo=UTC), datetime(2027, 3, 29, 8, tzinfo=UTC)]


def test_a_start_the_clocks_skip_is_left_out():
    new_york = WeeklyAvailability(frozenset({Weekday.SUN}), time(2), time(3), 30, date(2027, 3, 14), 1,
                                  ZoneInfo("America/New_York"))  # 02:00-03:00 does not exist that night
    assert new_york.starts() == []


@pytest.mark.parametrize(("change", "why"), [
    ({"weekdays": frozenset()}, "weekday"), ({"closes": time(8)}, "close after"), ({"slot_minutes": 600}, "fits"),
    ({"weeks": 13}, "weeks"), ({"opens": time(0), "closes": time(23, 55), "slot_minutes": 5}, "at most 500"),
])
def test_a_recurrence_that_cannot_be_opened_says_why(change, why):
    fields = {"weekdays": frozenset(Weekday), "opens": time(9), "closes": time(12), "slot_minutes": 30,
              "first_day": date(2027, 3, 1), "weeks": 4, "zone": ZoneInfo("UTC")} | change
    with pytest.raises(AvailabilityError, match=why):
        WeeklyAvailability(**fields)
