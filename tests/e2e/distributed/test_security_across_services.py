"""Security across the deployed services: the whole flow, key rotation under load, erasure everywhere.

Login (code flow + PKCE at ``clinic run auth``) → token → gateway → service → the booking
saga's internal call (mTLS + its own client-credentials token) → confirmation; a signing-key
rotation while clients keep calling fails no request; after ``clinic gdpr erase`` nothing
readable about the patient remains in PostgreSQL, Redis, RabbitMQ's queues (dead letters
included) or any service's log.
"""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from uuid import UUID

import aiormq
import pytest
from eventsourcing.persistence import StoredEvent
from joserfc import jws

from application.bootstrap import build_applications
from application.settings import Settings
from infrastructure.messaging.topology import Topology
from interfaces.local_deployment.deployment import queue_names
from tests import services
from tests.e2e import leaks
from tests.e2e.distributed.bookings import settled
from tests.e2e.distributed.cluster import deployed
from tests.e2e.distributed.conftest import Cluster, eventually

NAME, EMAIL, BIRTH_DATE = "Oriel Vantablack", "oriel.vantablack@unique.example", "1929-11-23"
REASON, NOTE, CANCEL = "Axolotl-knee-9137", "Pangolin-note-4417", "Ibex-cancel-6620"
SECRETS = [NAME, EMAIL, BIRTH_DATE, REASON, NOTE, CANCEL]
_day = iter(range(1, 300))


@pytest.fixture(scope="module")
def cluster(tmp_path_factory) -> Iterator[Cluster]:
    """The deployment logging at DEBUG, the level an operator turns on to follow one booking through
    every service (at INFO no line is written per event or message: counters count them)."""
    with deployed(tmp_path_factory.mktemp("cluster"), env={"CLINIC_LOG_LEVEL": "DEBUG"}) as deployment:
        yield deployment


def start_time() -> str:
    return (datetime(2027, 6, 1, 9, tzinfo=UTC) + timedelta(days=next(_day))).isoformat()


def people(cluster: Cluster, name: str = "Patient", email: str = "p@example.org",
           birth_date: str = "1990-01-01") -> tuple[str, str, str, str]:
    """An admin's token, a registered consenting patient, a doctor and an open slot's start."""
    admin = cluster.token("ops-1", "ADMIN")
    _, patient = cluster.call("POST", "/v1/patients", admin, {"name": name, "email": email,
                                                              "birth_date": birth_date, "consent": True})
    _, doctor = cluster.call("POST", "/v1/doctors", admin, {"name": "Dr. Sá", "specialty": "gp"})
    start = start_time()
    status, _ = cluster.call("POST", f"/v1/doctors/{doctor['doctor_id']}/slots", admin,
                             {"slots": [{"start": start, "duration_minutes": 30}]})
    assert status == 201
    return admin, patient["patient_id"], doctor["doctor_id"], start


def test_a_patient_signs_in_books_for_themself_and_the_saga_confirms_over_mtls_with_its_own_token(cluster):
    _admin, patient_id, doctor_id, start = people(cluster)
    # given a patient signed in with the code flow (their token names them, as PATIENT, with their scopes)
    patient = cluster.token(patient_id, "PATIENT")
    # when they book for themself through the gateway
    status, accepted = cluster.call("POST", "/v1/consultations", patient, {
        "patient_id": patient_id, "doctor_id": doctor_id, "start": start, "reason": "check-up"})
    assert status == 202, accepted
    # then the saga validated them with the registry (mTLS + service token) and confirmed
    assert settled(cluster, patient, accepted["consultation_id"])["status"] == "CONFIRMED"
    # and the services trust only the configured issuer: a development-key token is refused everywhere
    dev_token = cluster.clinic("token", "--sub", "ops-1", "--role", "ADMIN")
    assert cluster.call("GET", f"/v1/consultations/{accepted['consultation_id']}", dev_token)[0] == 401
    assert cluster.call("GET", f"/v1/sagas/{accepted['saga_id']}", dev_token)[0] == 401


def test_rotating_the_signing_key_while_clients_call_fails_no_request(cluster):
    _admin, _, doctor_id, start = people(cluster)
    path = f"/v1/doctors/{doctor_id}/slots?date={start[:10]}"
    before = cluster.token("ops-1", "ADMIN")
    statuses: list[int] = []
    kids: set[str] = set()
    rotated = threading.Event()

    def client() -> None:  # a bounded loop: fresh tokens, calls to two services through the gateway
        for _ in range(300):
            token = cluster.token("ops-1", "ADMIN")
            kids.add(jws.extract_compact(token.encode()).headers()["kid"])
            statuses.append(cluster.call("GET", path, token)[0])  # scheduling
            statuses.append(cluster.call("GET", f"/v1/doctors/{doctor_id}/agenda?date={start[:10]}", token)[0])
            if rotated.is_set() and len(kids) > 1:
                return

    caller = threading.Thread(target=client)
    caller.start()
    eventually(lambda: len(statuses) >= 6, what="calls before the rotation")
    cluster.clinic("keys", "rotate")
    rotated.set()
    caller.join(timeout=120)
    assert len(kids) == 2, "tokens from before and after the rotation were used"
    assert set(statuses) == {200}, statuses
    # a token signed before the rotation is still accepted (its key is retired, still published)
    assert cluster.call("GET", path, before)[0] == 200


def test_after_erasure_nothing_readable_remains_in_any_service_store_queue_or_log(cluster):
    admin, patient_id, doctor_id, start = people(cluster, NAME, EMAIL, BIRTH_DATE)
    patient, doctor = cluster.token(patient_id, "PATIENT"), cluster.token(doctor_id, "DOCTOR")
    # given the patient booked, their doctor wrote a note, and they cancelled
    _, accepted = cluster.call("POST", "/v1/consultations", patient, {
        "patient_id": patient_id, "doctor_id": doctor_id, "start": start, "reason": REASON})
    consultation = f"/v1/consultations/{accepted['consultation_id']}"
    assert settled(cluster, patient, accepted["consultation_id"])["status"] == "CONFIRMED"
    assert cluster.call("POST", f"{consultation}/notes", doctor, {"text": NOTE})[0] == 201
    assert cluster.call("POST", f"{consultation}/cancel", patient, {"reason": CANCEL})[0] == 200
    assert cluster.call("GET", f"/v1/patients/{patient_id}", admin)[1]["name"] == NAME
    # and two of the patient's events sit in a dead-letter queue (dead-lettered by the booking consumer)
    letters = dead_letter_the_stored_events(cluster, patient_id, accepted["consultation_id"])
    assert [e.name for e in decoded(cluster, letters)["Registry"]] == [NAME]  # readable, while the key exists
    # when an operator erases the patient
    assert "erased patient" in cluster.clinic("gdpr", "erase", patient_id, "--yes")
    # then every service shows the erasure: the read model once the projection worker applied it, the
    # services' replays once each process's cached data key expired (CLINIC_DATA_KEY_CACHE_SECONDS, 5 s)
    def erased_everywhere() -> bool:
        record = cluster.call("GET", f"/v1/patients/{patient_id}", admin)[1]
        audited = cluster.call("GET", f"/v1/audit/consultation/{accepted['consultation_id']}", admin)[1]
        return (cluster.call("GET", consultation, admin)[1].get("reason") == "[erased]"
                and (record["name"], record["email"], record["birth_date"], record["erased"]) == (
                    "[erased]", "[erased]", None, True)
                and cluster.call("GET", f"{consultation}/notes", doctor)[1]["notes"][0]["text"] == "[erased]"
                and audited["state"]["reason"] == "[erased]" and audited["version"] >= 4)

    eventually(erased_everywhere, timeout=30, what="the erasure shown by every service and replica")
    # and nothing readable remains: every row of the schema, every view, every queued message, every log
    assert leaks.in_postgres_schema(cluster.env["POSTGRES_SCHEMA"], SECRETS) == []
    assert leaks.in_redis(cluster.env["CLINIC_REDIS_URL"], cluster.env["CLINIC_REDIS_PREFIX"], SECRETS) == []
    read, queued = leaks.in_queues(queue_names(cluster.prefix), SECRETS)
    assert read >= 2 and queued == []
    after = decoded(cluster, letters)  # the dead letters' sealed fields are gone with the key
    assert [(e.name, e.email, e.birth_date) for e in after["Registry"]] == [("[erased]", "[erased]", None)]
    assert [e.reason for e in after["Consultations"]] == ["[erased]"]
    assert leaks.in_files(cluster.tmp.rglob("*.log"), SECRETS) == []


def test_every_process_logs_json_naming_the_booking_by_its_correlation_id_and_never_the_patient_or_a_token(
        cluster):
    name, email, reason = "Quennell Brightwater-Oyelaran", "quennell.brightwater@logscan.example", "Okapi-elbow-2291"
    admin, patient_id, doctor_id, start = people(cluster, name, email, "1931-02-17")
    patient, correlation_id = cluster.token(patient_id, "PATIENT"), f"logscan-{uuid.uuid4().hex[:12]}"
    # when the patient books with their bearer token and a correlation id of their own
    status, accepted = cluster.call("POST", "/v1/consultations", patient, {
        "patient_id": patient_id, "doctor_id": doctor_id, "start": start, "reason": reason},
        headers={"X-Correlation-Id": correlation_id})
    assert status == 202, accepted
    assert settled(cluster, patient, accepted["consultation_id"])["status"] == "CONFIRMED"
    # then every service that took part logged a line with that correlation id (at DEBUG: a consumer's line
    # per message, the projection worker's per event; wait for them)
    took_part = {"consultations", "booking", "registry", "scheduling", "projections", "gateway"}
    eventually(lambda: took_part <= {line["service"] for line in _log_lines(cluster)
                                     if line.get("correlation_id") == correlation_id},
               what="a line with the correlation id from every service")
    # and every line of every process (and the gateway's access log) is one JSON object with the fields
    lines = _log_lines(cluster)
    assert {line["service"] for line in lines} >= took_part | {"auth"}
    assert all({"timestamp", "level", "service", "event", "logger"} <= line.keys() for line in lines)
    # and no log, nginx's error log included, holds the patient's name, e-mail or reason, or a bearer token
    secrets = [name, email, reason, admin, patient, admin.rsplit(".", 1)[1], patient.rsplit(".", 1)[1]]
    assert leaks.in_files(cluster.tmp.rglob("*.log"), secrets) == []


def _log_lines(cluster: Cluster) -> list[dict]:
    """Every line the processes and the gateway's access log wrote, each one JSON object (else it fails)."""
    return [line.fields for line in cluster.log_lines(strict=True)]


def dead_letter_the_stored_events(cluster: Cluster, patient_id: str, consultation_id: str) -> list[dict]:
    """Publish the patient's stored Registered and the consultation's Requested, byte for byte, without
    their position headers: the booking consumer refuses them as poison and dead-letters them whole."""
    rows = [_stored_row(cluster, "registry_events", patient_id), _stored_row(cluster, "consultations_events",
                                                                                consultation_id)]
    asyncio.run(_publish_unpositioned(cluster.prefix, rows))
    ids = {row["message_id"] for row in rows}
    return eventually(lambda: (lambda found: found if {m["message_id"] for m in found} == ids else None)(
        [m for m in asyncio.run(_dead_letters(cluster.prefix)) if m["message_id"] in ids]),
        what="the events in the booking DLQ")


def decoded(cluster: Cluster, letters: list[dict]) -> dict[str, list]:
    """The dead letters decoded by each owning context's mapper (with the shared key store)."""
    apps = build_applications(Settings.from_env(cluster.env), create_table=False)
    try:
        events: dict[str, list] = {"Registry": [], "Consultations": []}
        for letter in letters:
            stored = StoredEvent(originator_id=UUID(letter["originator_id"]),
                                 originator_version=letter["originator_version"], topic=letter["topic"],
                                 state=letter["body"])
            events[letter["application"]].append(apps[letter["application"]].mapper.to_domain_event(stored))
        return events
    finally:
        for app in apps.values():
            app.close()


def _stored_row(cluster: Cluster, table: str, originator_id: str) -> dict:
    import psycopg

    schema = cluster.env["POSTGRES_SCHEMA"]
    with psycopg.connect(f"host={services.POSTGRES_HOST} port={services.POSTGRES_PORT} "
                         f"dbname={services.POSTGRES_DB} user={services.POSTGRES_USER}") as conn:
        version, topic, state = conn.execute(
            f'SELECT originator_version, topic, state FROM "{schema}"."{table}" WHERE originator_id = %s '
            "ORDER BY originator_version LIMIT 1", (originator_id,)).fetchone()
    application = "Registry" if table.startswith("registry") else "Consultations"
    return {"application": application, "originator_id": originator_id, "originator_version": version,
            "topic": topic, "body": bytes(state), "message_id": f"erasure-test:{application}:{originator_id}"}


async def _publish_unpositioned(prefix: str, rows: list[dict]) -> None:
    connection = await aiormq.connect(services.amqp_url())
    channel = await connection.channel()
    await channel.confirm_delivery()
    for row in rows:  # no notification_id header: not a position in any log, so the consumer's poison
        headers = {"application": row["application"], "topic": row["topic"], "originator_id": row["originator_id"],
                   "originator_version": row["originator_version"]}
        await channel.basic_publish(row["body"], exchange=Topology(prefix=prefix).exchange,
                                    routing_key="consultations.Consultation.Requested",
                                    properties=aiormq.spec.Basic.Properties(
                                        message_id=row["message_id"], delivery_mode=2, headers=headers))
    await connection.close()


async def _dead_letters(prefix: str) -> list[dict]:
    """The booking DLQ's messages, read and left in place (not acknowledged)."""
    connection = await aiormq.connect(services.amqp_url())
    channel = await connection.channel()
    letters = []
    while (message := await channel.basic_get(Topology(prefix=prefix).queues("Booking").dead_letters)).delivery_tag:
        headers = message.header.properties.headers or {}
        letters.append({"message_id": message.header.properties.message_id, "body": message.body,
                        **{k: (v.decode() if isinstance(v, bytes) else v) for k, v in headers.items()
                           if k in ("application", "topic", "originator_id", "originator_version")}})
    await connection.close()
    return letters


def test_each_service_signs_in_to_postgresql_as_its_own_role_and_cannot_reach_another_contexts_events(cluster):
    import psycopg

    conninfo = cluster.servers.postgres_conninfo()
    roles = set(cluster.database_roles.values())

    def signed_in() -> set[str]:
        with psycopg.connect(conninfo, autocommit=True) as connection:
            return {row[0] for row in connection.execute(
                "SELECT DISTINCT usename FROM pg_stat_activity WHERE usename = ANY(%s)", (list(roles),))}

    eventually(lambda: signed_in() == roles, timeout=10, what=f"every process signed in as its role: {roles}")
    schema = cluster.env["POSTGRES_SCHEMA"]
    with psycopg.connect(f"{conninfo} user={cluster.database_roles['booking']}", autocommit=True) as connection, \
            pytest.raises(psycopg.errors.InsufficientPrivilege):
        connection.execute(f'SELECT * FROM "{schema}".registry_events')


def test_each_worker_uses_its_own_broker_user_which_may_not_publish_another_services_events(cluster):
    import subprocess

    if not cluster.broker_urls:
        pytest.skip("rabbitmqctl cannot administer this broker: every service shares its user")
    # every service's user (the console's connects only when an operator opens its dead letters)
    users = {aiormq_user(url) for service, url in cluster.broker_urls.items() if service != "console"}

    def connected() -> set[str]:
        listed = subprocess.run(["rabbitmqctl", "-q", "list_connections", "user"], capture_output=True, text=True,
                                timeout=30, check=True).stdout.split()
        return users & set(listed)

    eventually(lambda: connected() == users, timeout=10, what=f"a connection of each user: {users}")

    async def forge() -> None:
        connection = await aiormq.connect(cluster.broker_urls["scheduling"])
        try:
            channel = await connection.channel()
            exchange = Topology(prefix=cluster.prefix).exchange
            with pytest.raises(aiormq.exceptions.ChannelAccessRefused):
                await channel.basic_publish(b"{}", exchange=exchange, routing_key="registry.Patient.Registered")
        finally:
            await connection.close()

    asyncio.run(forge())


def aiormq_user(url: str) -> str:
    from yarl import URL

    return URL(url).user or ""
