"""The base of every event-processing application: clock, metadata, codecs."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime
from typing import Any

from eventsourcing.application import ProcessingEvent
from eventsourcing.persistence import Tracking, Transcoder, Transcoding
from eventsourcing.system import ProcessApplication

from domain.metadata import caused_by


def utc_now() -> datetime:
    return datetime.now(UTC)


class DateAsISO(Transcoding):
    """Stores a calendar date (e.g. a birth date) as ``YYYY-MM-DD``."""

    type = date
    name = "date_iso"

    def encode(self, obj: date) -> str:
        return obj.isoformat()

    def decode(self, data: str) -> date:
        return date.fromisoformat(data)


def register_clinic_transcodings(transcoder: Transcoder) -> None:
    transcoder.register(DateAsISO())


class ClinicProcessApplication(ProcessApplication):
    """A process application whose reactions carry the cause's correlation and saga ids.

    Its policy runs with the metadata of the event it reacts to, with this
    application's service name as the actor, so every event it records names its
    cause without the policy threading anything by hand.
    """

    clock: Callable[[], datetime] = staticmethod(utc_now)

    @property
    def actor(self) -> str:
        return f"service:{self.name.lower()}"

    def register_transcodings(self, transcoder: Transcoder) -> None:
        super().register_transcodings(transcoder)
        register_clinic_transcodings(transcoder)

    def process_event(self, domain_event: Any, tracking: Tracking) -> None:
        with caused_by(domain_event, self.actor):
            super().process_event(domain_event, tracking)

    def policy(self, domain_event: Any, processing_event: ProcessingEvent) -> None:
        """Ignore events this application does not react to."""
