"""Hypothesis strategies for the aggregates' commands, and for the aggregates themselves.

A command is a ``Command``: the name of one of the aggregate's methods and its arguments, called
with the aggregate (``command(consultation)``) and shown as ``reject('slot_unavailable')`` when
Hypothesis reports a failing sequence. ``AggregateMachine.act`` runs one.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

from hypothesis import strategies as st

from domain.consultation import Consultation
from domain.doctor import Doctor
from domain.patient import Patient
from domain.slot import Slot

NOW = datetime(2027, 1, 4, 8, 0, tzinfo=UTC)
"""The time slot commands are drawn around (a slot's hold expires minutes after it)."""
BOOKINGS: list[UUID] = [uuid4() for _ in range(3)]
"""A few bookings, so that slot commands compete for the same slot."""


@dataclass(frozen=True)
class Command:
    """``name(*args)`` on the aggregate it is called with."""

    name: str
    args: tuple[Any, ...] = ()

    def __call__(self, aggregate: Any) -> Any:
        return getattr(aggregate, self.name)(*self.args)

    def __repr__(self) -> str:
        return f"{self.name}({', '.join(map(repr, self.args))})"


def command(name: str, *arguments: st.SearchStrategy[Any]) -> st.SearchStrategy[Command]:
    """The command ``name`` with arguments drawn from ``arguments``."""
    return st.tuples(*arguments).map(lambda args: Command(name, args))


# Values ----------------------------------------------------------------------------------------

reasons = st.sampled_from(["ill", "slot_unavailable", "doctor_inactive"])
note_texts = st.sampled_from(["Rest.", "Fluids.", "", "  "])
names = st.text(min_size=1, max_size=20)
emails = st.emails()
birth_dates = st.dates(min_value=date(1900, 1, 1), max_value=date(2026, 12, 31))
starts = st.integers(0, 24 * 60).map(lambda minutes: NOW + timedelta(hours=1, minutes=minutes))
bookings = st.sampled_from(BOOKINGS)
minutes = st.integers(min_value=1, max_value=20)

# Aggregates, as their creating command makes them (their created event still pending) ------------

consultations = st.builds(Consultation, patient_id=st.uuids(), doctor_id=st.uuids(), start=starts, reason=reasons)
slots = st.builds(Slot, doctor_id=st.uuids(), start=starts, duration_minutes=st.integers(5, 120))
patients = st.builds(Patient, name=names, email=emails, birth_date=birth_dates, consent=st.booleans())
doctors = st.builds(Doctor, name=names, specialty=st.sampled_from(["gp", "cardiology", "diagnostics"]))

# Commands --------------------------------------------------------------------------------------

consultation_commands = st.one_of(
    command("confirm"), command("reject", reasons), command("cancel_by_patient", reasons),
    command("cancel_by_clinic", reasons), command("complete"), command("mark_no_show"),
    command("add_note", st.just("dr-house"), note_texts),
)
slot_commands = st.one_of(
    st.tuples(bookings, st.integers(0, 60), minutes).map(
        lambda t: Command("hold", (t[0], NOW + timedelta(minutes=t[1] + t[2]), NOW + timedelta(minutes=t[1])))),
    command("book", bookings), command("release", bookings, st.just("released")), command("close"),
)
"""Slot commands at times drawn around ``NOW``; a machine that moves a clock writes its own hold rule."""
patient_commands = st.one_of(command("give_consent"), command("withdraw_consent"), command("erase"))
doctor_commands = st.one_of(command("deactivate"), command("reactivate"))
