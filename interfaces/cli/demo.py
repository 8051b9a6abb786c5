"""``clinic demo``: a scripted walk-through against the real application.

It registers people, opens slots and books through the same use cases the API
calls, on SQLite stores, and prints each outcome. It exits non-zero if an
outcome is not the expected one, so it doubles as a smoke test.
"""

from __future__ import annotations

import argparse
import queue
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from uuid import UUID

from standardwebhooks import Webhook

from application.bootstrap import bootstrap
from application.clinic import Clinic
from application.consultations import ConsultationsApplication
from application.notifications import NotificationsApplication
from application.registry import RegistryApplication
from application.scheduling import SchedulingApplication
from application.settings import Settings
from domain.metadata import event_metadata
from domain.slot import slot_id_for

MONDAY_9AM = datetime(2027, 1, 4, 9, 0, tzinfo=UTC)


@dataclass
class Walkthrough:
    clinic: Clinic
    failures: list[str] = field(default_factory=list)

    def expect(self, title: str, actual: object, expected: object, detail: str = "") -> None:
        ok = actual == expected
        mark = "ok " if ok else "FAIL"
        print(f"[{mark}] {title}: {actual}" + (f" (expected {expected})" if not ok else "") + detail)
        if not ok:
            self.failures.append(title)

    def book(self, patient: UUID, doctor: UUID, start: datetime, correlation_id: str) -> UUID:
        with event_metadata(correlation_id=correlation_id, actor="demo"):
            accepted = self.clinic.book(patient, doctor, start, "demo consultation")
        self.clinic.wait_until_settled()
        return accepted.consultation_id

    def status(self, consultation_id: UUID) -> tuple[str, str | None]:
        view = self.clinic.require(ConsultationsApplication).consultation(consultation_id)
        return view.status, view.rejection_reason

    def slot_status(self, doctor: UUID, start: datetime) -> str:
        return self.clinic.require(SchedulingApplication).slot(slot_id_for(doctor, start)).status


def run_demo(args: argparse.Namespace) -> int:
    if args.data_dir:
        return _walk(Path(args.data_dir))
    with tempfile.TemporaryDirectory(prefix="clinic-demo-") as data_dir:
        return _walk(Path(data_dir))


def _walk(data_dir: Path) -> int:
    # Ana's app listens on this machine, over plain http: allowed here, never in production
    clinic = bootstrap(Settings(persistence="sqlite", data_dir=data_dir, runner_tick_seconds=0.1,
                                webhook_allow_http=True, webhook_allow_private_networks=True))
    try:
        demo = Walkthrough(clinic)
        print(f"clinic demo: SQLite event stores in {data_dir}\n")
        with _inbox() as (url, received):
            _script(demo, url, received)
    finally:
        clinic.close()
    print("\nall outcomes as expected" if not demo.failures else f"\nunexpected: {', '.join(demo.failures)}")
    return 0 if not demo.failures else 1


@contextmanager
def _inbox() -> Iterator[tuple[str, queue.Queue[tuple[dict[str, str], bytes]]]]:
    """Ana's app's webhook endpoint: a loopback HTTP server that keeps what it is sent."""
    received: queue.Queue[tuple[dict[str, str], bytes]] = queue.Queue()

    class Inbox(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - the standard library's name
            received.put((dict(self.headers.items()), self.rfile.read(int(self.headers.get("content-length", 0)))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Inbox)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/clinic-hooks", received
    finally:
        server.shutdown()
        server.server_close()


def _told(secret: str, received: queue.Queue[tuple[dict[str, str], bytes]], count: int) -> list[str]:
    """The types of the next ``count`` deliveries, each verified with the subscription's secret."""
    types = []
    for _ in range(count):
        try:
            headers, body = received.get(timeout=10)
        except queue.Empty:
            break
        types.append(Webhook(secret).verify(body, headers)["type"])
    return sorted(types)


def _script(demo: Walkthrough, hook_url: str, received: queue.Queue[tuple[dict[str, str], bytes]]) -> None:
    clinic = demo.clinic
    registry = clinic.require(RegistryApplication)
    with event_metadata(correlation_id="demo-setup", actor="demo-admin"):
        ana = registry.register_patient("Ana Silva", "ana@example.org", date(1988, 3, 14), True)
        rui = registry.register_patient("Rui Costa", "rui@example.org", date(1975, 9, 2), True)
        cardio = registry.register_doctor("Dr. Marta Reis", "cardiology")
        derma = registry.register_doctor("Dr. João Lima", "dermatology")
        slots = [MONDAY_9AM, MONDAY_9AM + timedelta(minutes=30), MONDAY_9AM + timedelta(hours=1)]
        clinic.open_slots(cardio, [(s, 30) for s in slots])
        clinic.open_slots(derma, [(MONDAY_9AM, 30)])

    notifications = clinic.require(NotificationsApplication)
    with event_metadata(correlation_id="demo-webhook", actor=str(ana)):
        hook = notifications.subscribe(str(ana), hook_url, ["consultation.confirmed", "consultation.rescheduled"],
                                       patient_id=ana)
    print(f"0. Ana's app subscribes {hook_url} to her consultations' confirmations and moves\n")

    print("1. Ana books Dr. Reis at 09:00")
    first = demo.book(ana, cardio, MONDAY_9AM, "demo-booking-1")
    demo.expect("consultation", demo.status(first), ("CONFIRMED", None))
    demo.expect("slot", demo.slot_status(cardio, MONDAY_9AM), "BOOKED")

    print("\n2. Rui tries the same slot")
    second = demo.book(rui, cardio, MONDAY_9AM, "demo-booking-2")
    demo.expect("consultation", demo.status(second), ("REJECTED", "slot_unavailable"))

    print("\n3. Dr. Lima is deactivated, then Rui books him: the held slot is released")
    with event_metadata(correlation_id="demo-deactivate", actor="demo-admin"):
        registry.deactivate_doctor(derma)
    third = demo.book(rui, derma, MONDAY_9AM, "demo-booking-3")
    demo.expect("consultation", demo.status(third), ("REJECTED", "doctor_inactive"))
    slot_trail = clinic.auditor.trail("slot", slot_id_for(derma, MONDAY_9AM))
    demo.expect("slot history", [e.type.split(".")[-1] for e in slot_trail.events], ["Opened", "Held", "Released"])
    demo.expect("slot", demo.slot_status(derma, MONDAY_9AM), "OPEN")

    print("\n4. Rui books 09:30 with Dr. Reis, then cancels: the slot is free again")
    fourth = demo.book(rui, cardio, slots[1], "demo-booking-4")
    demo.expect("consultation", demo.status(fourth), ("CONFIRMED", None))
    with event_metadata(correlation_id="demo-cancel", actor=str(rui)):
        clinic.require(ConsultationsApplication).cancel(fourth, "cannot make it", by_patient=True)
    clinic.wait_until_settled()
    demo.expect("consultation", demo.status(fourth), ("CANCELLED", None))
    demo.expect("slot", demo.slot_status(cardio, slots[1]), "OPEN")

    print("\n5. Ana moves her consultation to 10:00: the new slot is booked before the old one is freed")
    with event_metadata(correlation_id="demo-reschedule", actor=str(ana)):
        move = clinic.require(ConsultationsApplication).reschedule(first, slots[2])
    clinic.wait_until_settled()
    demo.expect("consultation", demo.status(first), ("CONFIRMED", None))
    demo.expect("starts", clinic.require(ConsultationsApplication).consultation(first).start.strftime("%H:%M"),
                "10:00")
    demo.expect("slots at 09:00 and 10:00", (demo.slot_status(cardio, slots[0]), demo.slot_status(cardio, slots[2])),
                ("OPEN", "BOOKED"))
    demo.expect("reschedule saga", clinic.saga(move).state, "COMPLETED")
    demo.expect("Ana's app was told (signatures verified)", _told(notifications.secret(hook), received, 2),
                ["consultation.confirmed", "consultation.rescheduled"])

    print("\n6. An auditor replays Ana's consultation at version 1, from its stream alone")
    trail = clinic.auditor.trail("consultation", first, version=1)
    latest = clinic.auditor.trail("consultation", first)
    demo.expect("status at version 1", trail.state["status"], "REQUESTED")
    demo.expect(f"status now (version {latest.version})", latest.state["status"], "CONFIRMED")
    for event in latest.events:
        print(f"      v{event.version} {event.type:24} actor={event.actor} correlation_id={event.correlation_id} "
              f"saga_id={event.saga_id}")
