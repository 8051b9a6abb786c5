"""``clinic chaos``: the distributed deployment under steady bookings and a seeded schedule of faults,
then the invariants that must hold whatever happened.

It runs on private PostgreSQL, Redis and RabbitMQ servers (``private_servers.py``), because it stops
them. Faults come one at a time, each repaired before the next: kill -9 of a worker, the broker, the
database or Redis stopped and started, the registry down past the saga deadline, a poison message
published to a follower's queue. At the end, once everything has settled, it checks:

- no request was answered ``500`` (an outage is a ``503``);
- every accepted booking is final (confirmed, rejected or cancelled) and none is confirmed twice;
- no slot is left held;
- every poison message, and nothing else, is in a dead-letter queue;
- each read model equals a rebuild from the event logs;
- no process's memory, and not the database's connection count, grew without bound.
"""

from __future__ import annotations

import asyncio
import random
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from infrastructure.messaging.topology import Topology
from interfaces.local_deployment.deployment import DEADLINE_SECONDS, LocalDeployment, deployed
from interfaces.local_deployment.private_servers import PrivateServers, private_servers, scratch
from interfaces.local_deployment.servers import wait_for

FAULTS = ("kill-worker", "broker-down", "database-down", "registry-down", "redis-down", "poison")
"""Every kind of fault a schedule injects; each appears once before any appears twice."""
WARM_UP_SECONDS = 10.0
SETTLE_SECONDS = 20.0
"""Left free of faults at the end of the run, before the invariants are checked."""
OUTAGE_SECONDS = (3.0, 8.0)
REGISTRY_DOWN_SECONDS = (DEADLINE_SECONDS + 2.0, DEADLINE_SECONDS + 5.0)
"""Past the saga deadline, so that bookings meanwhile are compensated."""
KILLABLE = ("booking", "scheduling", "consultations-worker", "projections")
FOLLOWERS = ("Booking", "Scheduling", "Consultations")
DOCTORS, PATIENTS, SLOTS_PER_DOCTOR = 4, 12, 60
FIRST_DAY = datetime.now(UTC).date() + timedelta(days=30)
"""A month ahead: inside the API's plausible range for a slot's start, whenever the soak runs."""
TOKEN_SECONDS = 240
"""How often the load signs in again (the issuer's tokens last five minutes)."""
GROWTH_ALLOWED = (1.5, 64 * 2**20)
"""A process's resident memory may end at most this factor of its first sample plus this many bytes."""


@dataclass(frozen=True)
class Injection:
    """One fault: when it starts (seconds into the run), what, and how long it lasts (0: instantaneous)."""

    at: float
    fault: str
    seconds: float


def schedule(seed: int, minutes: float, every: float = 30.0) -> list[Injection]:
    """The faults of a run of ``minutes``, one every ``every``/2 to ``every`` seconds after the last ends,
    none in the warm-up or the settling time; the same ``seed`` gives the same schedule."""
    rng = random.Random(seed)
    end = minutes * 60 - SETTLE_SECONDS
    injections: list[Injection] = []
    order: list[str] = []
    at = WARM_UP_SECONDS
    while True:
        if not order:
            order = rng.sample(FAULTS, len(FAULTS))
        fault = order.pop()
        seconds = _duration(rng, fault)
        if at + seconds > end:
            return injections
        injections.append(Injection(round(at, 1), fault, round(seconds, 1)))
        at += seconds + rng.uniform(every / 2, every)


def _duration(rng: random.Random, fault: str) -> float:
    if fault in ("kill-worker", "poison"):
        return 0.0
    return rng.uniform(*(REGISTRY_DOWN_SECONDS if fault == "registry-down" else OUTAGE_SECONDS))


@dataclass
class Check:
    """One invariant and whether it held."""

    name: str
    held: bool
    detail: str


@dataclass
class Report:
    seed: int
    minutes: float
    injections: list[Injection]
    answers: dict[int, int] = field(default_factory=dict)
    """HTTP statuses the load saw, counted (0: nothing answered)."""
    accepted: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)
    checks: list[Check] = field(default_factory=list)

    @property
    def held(self) -> bool:
        return bool(self.checks) and all(check.held for check in self.checks)


class Load:
    """Books steadily through the gateway at ``rate`` per second, in a thread; notes every answer."""

    def __init__(self, deployment: LocalDeployment, rate: float, seed: int) -> None:
        self.deployment = deployment
        self.rate = rate
        self.rng = random.Random(seed)
        self.answers: Counter[int] = Counter()
        self.accepted: list[tuple[str, str, str]] = []
        """(consultation id, doctor id, start) of every booking answered 202."""
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="chaos-load", daemon=True)
        self.token = ""
        self.signed_in = 0.0
        self.doctors: list[str] = []
        self.patients: list[str] = []
        self.starts: list[str] = []

    def prepare(self) -> None:
        """Doctors with open slots, and patients, before any fault."""
        self._sign_in()
        for number in range(DOCTORS):
            doctor = self._created("/v1/doctors", {"name": f"Dr. Chaos {number}", "specialty": "gp"}, "doctor_id")
            self.doctors.append(doctor)
        self.starts = [_slot_start(n) for n in range(SLOTS_PER_DOCTOR)]
        for doctor in self.doctors:
            slots = [{"start": start, "duration_minutes": 30} for start in self.starts]
            status, _ = self.deployment.call("POST", f"/v1/doctors/{doctor}/slots", self.token, {"slots": slots})
            if status != 201:
                raise RuntimeError(f"opening slots answered {status}")
        for number in range(PATIENTS):
            self.patients.append(self._created("/v1/patients", {
                "name": f"Patient {number}", "email": f"patient{number}@example.org", "birth_date": "1980-01-01",
                "consent": True}, "patient_id"))

    def __enter__(self) -> Load:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        self.thread.join(timeout=60)

    def _run(self) -> None:
        while not self.stop.wait(1 / self.rate):
            if time.monotonic() - self.signed_in > TOKEN_SECONDS:
                self._sign_in()
            doctor, start = self.rng.choice(self.doctors), self.rng.choice(self.starts)
            status, body = self.deployment.call("POST", "/v1/consultations", self.token, {
                "patient_id": self.rng.choice(self.patients), "doctor_id": doctor, "start": start,
                "reason": "chaos"})
            self.answers[status] += 1
            if status == 202:
                self.accepted.append((body["consultation_id"], doctor, start))

    def _sign_in(self) -> None:
        self.token = self.deployment.token("chaos-admin", "ADMIN")
        self.signed_in = time.monotonic()

    def _created(self, path: str, body: dict[str, Any], key: str) -> str:
        status, answer = self.deployment.call("POST", path, self.token, body)
        if status != 201:
            raise RuntimeError(f"POST {path} answered {status}: {answer}")
        return str(answer[key])


def _slot_start(number: int) -> str:
    day, slot = divmod(number, 12)
    return (datetime.combine(FIRST_DAY + timedelta(days=day), datetime.min.time(), UTC)
            + timedelta(hours=8, minutes=30 * slot)).isoformat()


class Faults:
    """Injects and repairs each kind of fault on one deployment and its private servers."""

    def __init__(self, deployment: LocalDeployment, servers: PrivateServers, rng: random.Random,
                 stop: threading.Event) -> None:
        self.deployment = deployment
        self.servers = servers
        self.rng = rng
        self.stop = stop
        self.poisoned: list[str] = []
        """The message ids of the poison messages published."""

    def inject(self, injection: Injection) -> str:
        """Break something, wait out the fault's duration, repair it; what was done."""
        act: Callable[[float], str] = getattr(self, "_" + injection.fault.replace("-", "_"))
        return act(injection.seconds)

    def _kill_worker(self, _: float) -> str:
        name = self.rng.choice([name for name in KILLABLE if name in self.deployment.processes])
        self.deployment.stop(name, signal.SIGKILL)
        self.deployment.start(name)
        return f"killed {name} (SIGKILL) and started it again"

    def _broker_down(self, seconds: float) -> str:
        return self._outage("RabbitMQ", self.servers.rabbitmq.stop, self.servers.rabbitmq.start, seconds)

    def _database_down(self, seconds: float) -> str:
        return self._outage("PostgreSQL", self.servers.postgres.stop, self.servers.postgres.start, seconds)

    def _redis_down(self, seconds: float) -> str:
        return self._outage("Redis", self.servers.redis.stop, self.servers.redis.start, seconds)

    def _registry_down(self, seconds: float) -> str:
        return self._outage("the registry service", lambda: self.deployment.stop("registry"),
                            lambda: self.deployment.start("registry"), seconds)

    def _poison(self, _: float) -> str:
        follower = self.rng.choice(FOLLOWERS)
        queue = Topology(prefix=self.deployment.prefix, partitions=self.deployment.partitions).queues(
            follower).consumed[0]
        message_id = f"chaos-poison-{len(self.poisoned)}"
        asyncio.run(_publish_poison(self.deployment.servers.amqp_url, queue, message_id))
        self.poisoned.append(message_id)
        return f"published a poison message ({message_id}) to {queue}"

    def _outage(self, what: str, stop: Callable[[], object], start: Callable[[], object], seconds: float) -> str:
        stop()
        self.stop.wait(seconds)  # the fault's scheduled length, not a wait for anything
        start()
        return f"{what} down for {seconds:.1f}s"


async def _publish_poison(url: str, queue: str, message_id: str) -> None:
    import aiormq
    from pamqp.commands import Basic

    connection = await aiormq.connect(url)
    try:
        channel = await connection.channel(publisher_confirms=True)
        await channel.basic_publish(b"\x00 not an event", routing_key=queue, properties=Basic.Properties(
            message_id=message_id, delivery_mode=2, headers={"topic": "chaos:Poison"}))
    finally:
        await connection.close()


class Gauges:
    """Each process's resident memory and the database's connections, sampled over the run."""

    def __init__(self, deployment: LocalDeployment) -> None:
        self.deployment = deployment
        self.memory: dict[tuple[str, int], list[int]] = {}
        self.connections: list[int] = []

    def sample(self) -> None:
        for name, process in self.deployment.processes.items():
            rss = _resident_bytes(process.pid)
            if rss is not None:
                self.memory.setdefault((name, process.pid), []).append(rss)
        self.connections.append(_connections(self.deployment))

    def grown(self) -> list[str]:
        """The processes whose memory grew beyond ``GROWTH_ALLOWED`` between their first and last sample."""
        factor, extra = GROWTH_ALLOWED
        return [f"{name} {samples[0] // 2**20} → {samples[-1] // 2**20} MiB"
                for (name, _), samples in self.memory.items()
                if len(samples) > 2 and samples[-1] > samples[0] * factor + extra]


def _resident_bytes(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def _connections(deployment: LocalDeployment) -> int:
    import psycopg

    try:
        with psycopg.connect(deployment.servers.postgres_conninfo(), connect_timeout=2) as connection:
            row = connection.execute("SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'"
                                     ).fetchone()
    except psycopg.Error:
        return -1
    return int(row[0]) if row else -1


def run(seed: int, minutes: float, rate: float, every: float = 30.0,
        say: Callable[[str], object] = print) -> Report:
    """A whole chaos run on private servers; its report (``report.held``: every invariant held)."""
    report = Report(seed, minutes, schedule(seed, minutes, every))
    with scratch("clinic-chaos-") as root, private_servers() as servers, \
            deployed(root, servers.servers, env=CHAOS_SETTINGS, tracing=False) as deployment:
        say(f"deployment up on private servers (gateway {deployment.base}); {len(report.injections)} faults over "
            f"{minutes:g} min, seed {seed}")
        load = Load(deployment, rate, seed)
        load.prepare()
        gauges = Gauges(deployment)
        stop = threading.Event()
        faults = Faults(deployment, servers, random.Random(seed), stop)
        started = time.monotonic()
        with load:
            gauges.sample()
            for injection in report.injections:
                stop.wait(max(0.0, started + injection.at - time.monotonic()))
                say(f"{time.monotonic() - started:6.1f}s  {injection.fault:<14} {faults.inject(injection)}")
                gauges.sample()
            stop.wait(max(0.0, started + minutes * 60 - time.monotonic()))
        say(f"{time.monotonic() - started:6.1f}s  load stopped: {len(load.accepted)} bookings accepted; settling")
        report.answers, report.accepted = dict(load.answers), len(load.accepted)
        outcomes = _settled(deployment, load)
        gauges.sample()
        report.outcomes = dict(Counter(status for status, *_ in outcomes.values()))
        report.checks = invariants(deployment, load, outcomes, faults.poisoned, gauges)
    return report


CHAOS_SETTINGS = {"CLINIC_LOG_LEVEL": "WARNING", "CLINIC_AUTH_TOKEN_TTL_SECONDS": "300"}


def _settled(deployment: LocalDeployment, load: Load) -> dict[str, tuple[str, str, str]]:
    """Each accepted booking's status once none is still requested (bounded: the saga deadline and more)."""
    token = deployment.token("chaos-admin", "ADMIN")
    statuses: dict[str, tuple[str, str, str]] = {}

    def decided() -> bool:
        for consultation, doctor, start in load.accepted:
            if statuses.get(consultation, ("REQUESTED",))[0] in ("REQUESTED", "UNKNOWN"):
                status, body = deployment.call("GET", f"/v1/consultations/{consultation}", token)
                statuses[consultation] = (body["status"] if status == 200 else "UNKNOWN", doctor, start)
        return all(status not in ("REQUESTED", "UNKNOWN") for status, *_ in statuses.values())

    with _quietly():
        wait_for(decided, timeout=DEADLINE_SECONDS * 10 + 60, what="every accepted booking decided", interval=1)
    return statuses


@contextmanager
def _quietly() -> Iterator[None]:
    """Whatever did not settle is reported by the invariants rather than raised."""
    try:
        yield
    except RuntimeError:
        pass


def invariants(deployment: LocalDeployment, load: Load, outcomes: dict[str, tuple[str, str, str]],
               poisoned: list[str], gauges: Gauges) -> list[Check]:
    checks = [_no_500(load), _every_booking_final(load, outcomes), _none_confirmed_twice(outcomes),
              _no_slot_held(deployment, load), _dead_letters(deployment, poisoned)]
    checks.append(_read_models_equal_a_rebuild(deployment))
    grown = gauges.grown()
    checks.append(Check("memory bounded", not grown, "; ".join(grown) or f"{len(gauges.memory)} processes sampled"))
    first, last = gauges.connections[0], gauges.connections[-1]
    checks.append(Check("database connections bounded", 0 <= last <= first * 1.5 + 10,
                        f"{first} after warm-up, {last} at the end, most {max(gauges.connections)}"))
    return checks


def _no_500(load: Load) -> Check:
    errors = {status: count for status, count in load.answers.items() if status >= 500 and status != 503}
    return Check("no 500 answered (an outage is a 503)", not errors,
                 ", ".join(f"{count}× {status}" for status, count in sorted(load.answers.items())))


def _every_booking_final(load: Load, outcomes: dict[str, tuple[str, str, str]]) -> Check:
    pending = [c for c, (status, *_) in outcomes.items() if status not in ("CONFIRMED", "REJECTED", "CANCELLED")]
    return Check("every accepted booking final", len(outcomes) == len(load.accepted) and not pending,
                 f"{len(load.accepted)} accepted, {len(pending)} not final" + (f": {pending[:5]}" if pending else ""))


def _none_confirmed_twice(outcomes: dict[str, tuple[str, str, str]]) -> Check:
    confirmed = Counter((doctor, start) for status, doctor, start in outcomes.values() if status == "CONFIRMED")
    twice = [slot for slot, count in confirmed.items() if count > 1]
    return Check("no slot confirmed twice", not twice, f"{sum(confirmed.values())} confirmed on "
                 f"{len(confirmed)} slots" + (f"; twice: {twice[:3]}" if twice else ""))


def _no_slot_held(deployment: LocalDeployment, load: Load) -> Check:
    token = deployment.token("chaos-admin", "ADMIN")
    held, days = [], sorted({start[:10] for start in load.starts})
    for doctor in load.doctors:
        for day in days:
            status, body = deployment.call("GET", f"/v1/doctors/{doctor}/slots?date={day}", token)
            if status != 200:
                return Check("no slot left held", False, f"listing slots answered {status}")
            held += [slot["start"] for slot in body["slots"] if slot["status"] == "HELD"]
    return Check("no slot left held", not held, f"{len(held)} held" + (f": {held[:3]}" if held else ""))


def _dead_letters(deployment: LocalDeployment, poisoned: list[str]) -> Check:
    """Every poison message is a dead letter, and nothing else is (a copy made twice, when a consumer or the
    broker went down between copying a message to the DLQ and acking it, is still that message)."""
    depths = deployment.queue_depths()
    letters = asyncio.run(_dead_letter_list(deployment))
    waiting = {queue: count for queue, count in depths.items() if count and not queue.endswith(".dlq")}
    others = [f"{reason}: {message_id}: {error}" for reason, message_id, error in letters
              if reason != "poison" or message_id not in poisoned]
    missing = sorted(set(poisoned) - {message_id for _, message_id, _ in letters})
    return Check("only the poison messages dead-lettered, no message left waiting",
                 not others and not missing and not waiting,
                 f"{len(letters)} dead letters for {len(poisoned)} poison messages; waiting: {waiting or 'none'}"
                 + (f"; not poison: {others}" if others else "") + (f"; poison not dead-lettered: {missing}"
                                                                      if missing else ""))


async def _dead_letter_list(deployment: LocalDeployment) -> list[tuple[str, str, str]]:
    """``(reason, message id, error)`` of every dead letter of the deployment, left in place."""
    import aiormq

    from infrastructure.messaging.dlq import DeadLetterQueue

    topology = Topology(prefix=deployment.prefix, partitions=deployment.partitions)
    connection = await aiormq.connect(deployment.servers.amqp_url)
    try:
        letters = []
        for follower in FOLLOWERS:
            found = await DeadLetterQueue(connection, topology.queues(follower)).list_messages(limit=1000)
            letters += [(letter.reason or "?", str(letter.message_id), letter.error or "") for letter in found]
        return letters
    finally:
        await connection.close()


def _read_models_equal_a_rebuild(deployment: LocalDeployment) -> Check:
    from application.bootstrap import build_applications, view_store
    from application.settings import Settings
    from projections.catalog import ALL_PROJECTIONS
    from projections.rebuild import rebuild
    from projections.runner import ProjectionRunner

    settings = Settings.from_env(deployment.env)
    apps, store = build_applications(settings, create_table=False), view_store(settings)
    try:
        runner = ProjectionRunner(apps, store, ALL_PROJECTIONS)
        wait_for(lambda: all(s.lag == 0 for s in runner.status().values()), timeout=60,
                 what="the read models caught up")
        differing = {}
        for projection in ALL_PROJECTIONS:
            diff = rebuild(apps, store, projection, dry_run=True).diff
            if diff is not None and not diff.same:
                differing[projection.name] = len(diff.differing) + len(diff.missing) + len(diff.extra)
    finally:
        for app in apps.values():
            app.close()
    return Check("read models equal a rebuild", not differing,
                 f"{len(ALL_PROJECTIONS)} projections compared" + (f"; differing keys: {differing}" if differing else ""))


def render(report: Report) -> str:
    lines = [f"chaos run: seed {report.seed}, {report.minutes:g} min, {len(report.injections)} faults "
             f"({', '.join(f'{n}× {f}' for f, n in sorted(Counter(i.fault for i in report.injections).items()))})",
             f"bookings accepted: {report.accepted}; outcomes: {report.outcomes}; answers: {report.answers}"]
    lines += [f"  {'✓' if check.held else '✗'} {check.name}: {check.detail}" for check in report.checks]
    lines.append("every invariant held" if report.held else "AN INVARIANT DID NOT HOLD")
    return "\n".join(lines)
