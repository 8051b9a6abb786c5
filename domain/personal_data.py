"""How events declare the personal data they carry, and what replaces it once erased.

An event class lists its personal fields in ``personal_data`` and names the field holding
its data subject (the patient) in ``data_subject``: ``"originator_id"`` when the aggregate
is the patient, another field (``"patient_id"``) when the event opens an aggregate about
the patient, or ``None`` when the subject is the one named by the aggregate's first event.
The infrastructure encrypts those fields with the subject's key; the domain only declares.
"""

from __future__ import annotations

from typing import Any

ERASED = "[erased]"
"""What a text field of an erased data subject reads as (dates and other types read as ``None``)."""

SUBJECT_IS_ORIGINATOR = "originator_id"
"""``data_subject`` of events of the patient's own aggregate."""


def personal_fields(event_class: type) -> tuple[str, ...]:
    """The fields of ``event_class`` that hold personal data (``()`` for none)."""
    return tuple(getattr(event_class, "personal_data", ()))


def subject_field(event_class: type) -> str | None:
    """The field naming the data subject, or ``None``: the subject linked to the aggregate."""
    return getattr(event_class, "data_subject", None)


def erased_value(annotation: Any) -> str | None:
    """What replaces an erased field with this type annotation: the marker for text, else ``None``."""
    return ERASED if annotation in (str, "str") else None
