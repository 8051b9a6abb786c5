"""What the distributed tier's tests do through the gateway: register patients and a doctor, open slots,
book, wait for a booking to be decided, read a slot's history; and put a poison message on the bus."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from itertools import count
from uuid import UUID

import aiormq

from domain.slot import slot_id_for
from infrastructure.messaging.topology import Topology
from tests import services
from tests.e2e.distributed.cluster import Cluster
from tests.kit import eventually

_hours = count()


def new_start() -> str:
    return (datetime(2027, 3, 1, 8, tzinfo=UTC) + timedelta(hours=next(_hours))).isoformat()


def setup(cluster: Cluster, patients: int = 1, starts: int = 1) -> tuple[str, list[str], str, list[str]]:
    """Register consenting patients and a doctor, open slots; returns (admin token, patients, doctor, starts)."""
    admin = cluster.token("ops-1", "ADMIN")
    patient_ids = [cluster.call("POST", "/v1/patients", admin, {
        "name": f"Patient {i}", "email": f"p{i}@example.org", "birth_date": "1990-01-01", "consent": True,
    })[1]["patient_id"] for i in range(patients)]
    doctor_id = cluster.call("POST", "/v1/doctors", admin, {"name": "Dr. Reis", "specialty": "cardiology"})[1][
        "doctor_id"]
    slot_starts = [new_start() for _ in range(starts)]
    status, _ = cluster.call("POST", f"/v1/doctors/{doctor_id}/slots", admin,
                             {"slots": [{"start": s, "duration_minutes": 30} for s in slot_starts]})
    assert status == 201
    return admin, patient_ids, doctor_id, slot_starts


def book(cluster: Cluster, admin: str, patient: str, doctor: str, start: str) -> dict:
    status, body = cluster.call("POST", "/v1/consultations", admin,
                                {"patient_id": patient, "doctor_id": doctor, "start": start, "reason": "e2e"})
    assert status == 202, body
    return body


def settled(cluster: Cluster, admin: str, consultation_id: str, timeout: float = 30) -> dict:
    def decided() -> dict | None:
        status, body = cluster.call("GET", f"/v1/consultations/{consultation_id}", admin)
        return body if status == 200 and body["status"] != "REQUESTED" else None

    return eventually(decided, timeout=timeout, what=f"consultation {consultation_id} decided")


def slot_events(cluster: Cluster, admin: str, doctor: str, start: str) -> list[str]:
    slot_id = slot_id_for(UUID(doctor), datetime.fromisoformat(start))
    status, trail = cluster.call("GET", f"/v1/audit/slot/{slot_id}", admin)
    assert status == 200
    return [event["type"].split(".")[-1] for event in trail["events"]]


async def publish_poison(prefix: str, message_id: str = "poison-1", amqp_url: str | None = None) -> None:
    """An unreadable message routed as a consultation's Requested event: every follower of it dead-letters it."""
    connection = await aiormq.connect(amqp_url or services.amqp_url())
    channel = await connection.channel()
    await channel.confirm_delivery()
    await channel.basic_publish(b"\x00 not an event", exchange=Topology(prefix=prefix).exchange,
                                routing_key="consultations.Consultation.Requested",
                                properties=aiormq.spec.Basic.Properties(message_id=message_id, delivery_mode=2))
    await connection.close()
