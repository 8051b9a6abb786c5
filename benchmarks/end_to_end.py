"""End-to-end booking throughput and latency: POST /v1/consultations (202) to decided in the read model.

Two deployments, each over real HTTP:

- **embedded**: ``clinic serve`` (one process, SQLite stores, in-process read models);
- **distributed**: every service its own OS process (``clinic run``) on PostgreSQL (own schema),
  RabbitMQ (own prefix), Redis (own prefix), the registry over mTLS, the authorization server,
  behind nginx: the e2e tests' deployment (tests/e2e/distributed/cluster.py).

For each: open-loop runs at fixed offered loads (latency from the scheduled send), closed-loop runs
with more and more clients until the decided rate stops rising (saturation), and the baseline: the
HTTP accept rate alone (clients that only wait for the 202) at the saturating client count. The
load generator (benchmarks/end_to_end_load.py) runs in its own process, pinned to the last core.
Patients, doctors and free slots (one per booking) are created before any measured window.

    .venv/bin/python benchmarks/end_to_end.py [--quick] [--only embedded|distributed]
    .venv/bin/python benchmarks/end_to_end.py --ab bindings [--rounds 2]   # A/B of a setting, ABAB
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.harness import Figure, benchmark  # noqa: E402 - after the path is set (run as a script)

CLINIC = [sys.executable, "-m", "interfaces.cli.main"]
LOAD = ROOT / "benchmarks" / "end_to_end_load.py"
FIRST_SLOT = datetime(2027, 1, 4, tzinfo=UTC)
LOADGEN_CPU = str((os.cpu_count() or 1) - 1)
"""The load generator's core (``taskset``): the last one."""


def prepare(base: str, token: str, count: int, doctors: int = 20, patients: int = 50) -> list[dict[str, str]]:
    """Register patients and doctors and open ``count`` free slots; one booking request per slot."""
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=base, headers=headers, timeout=60) as client:
        patient_ids = [_created(client.post("/v1/patients", json={
            "name": f"Patient {i}", "email": f"p{i}@example.org", "birth_date": "1980-01-01", "consent": True}),
            "patient_id") for i in range(patients)]
        doctor_ids = [_created(client.post("/v1/doctors", json={"name": f"Dr. {i}", "specialty": "general"}),
                               "doctor_id") for i in range(doctors)]
        per_doctor = -(-count // doctors)
        bookings, position = [], ""
        for d, doctor_id in enumerate(doctor_ids):
            starts = [FIRST_SLOT + timedelta(minutes=30 * k) for k in range(per_doctor)]
            for chunk in range(0, len(starts), 100):  # small bodies: nginx buffers them in memory
                slots = [{"start": s.isoformat(), "duration_minutes": 30} for s in starts[chunk:chunk + 100]]
                opened = client.post(f"/v1/doctors/{doctor_id}/slots", json={"slots": slots})
                _created(opened, "slot_ids")
                position = opened.headers["X-Event-Position"]
            bookings += [{"patient_id": patient_ids[(d + k) % patients], "doctor_id": doctor_id,
                          "start": s.isoformat(), "reason": "check-up"} for k, s in enumerate(starts)]
        _until_projected(client, doctor_ids[-1], starts[-1], position)
    # interleave doctors, so consecutive bookings touch different aggregates
    return [b for k in range(per_doctor) for b in bookings[k::per_doctor]][:count]


def _until_projected(client: httpx.Client, doctor_id: str, start: datetime, position: str) -> None:
    """Wait until the read models have applied the setup (else the first bookings wait behind it)."""
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        response = client.get(f"/v1/doctors/{doctor_id}/slots", params={"date": start.date().isoformat()},
                              headers={"X-Min-Position": position})
        if response.status_code == 200 and response.headers.get("X-Projection-Stale") != "true":
            return
    raise RuntimeError(f"the read models did not reach {position} in 600 s")


def _created(response: httpx.Response, key: str) -> Any:
    if response.status_code != 201:
        raise RuntimeError(f"{response.request.url}: {response.status_code} {response.text[:300]}")
    return response.json()[key]


class Load:
    """Runs the load generator process over a shared list of free slots."""

    def __init__(self, base: str, token: str, bookings: list[dict[str, str]], workdir: Path) -> None:
        self.base, self.token, self.bookings, self.workdir = base, token, bookings, workdir
        self.used = 0

    def run(self, mode: str, duration: float, rate: float | None = None, clients: int | None = None) -> dict[str, Any]:
        """One run of the load generator; its JSON summary."""
        need = int((rate or 0) * duration) + 1 if mode == "open" else len(self.bookings) - self.used
        plan = {"base": self.base, "token": self.token, "mode": mode, "duration": duration, "rate": rate,
                "clients": clients, "bookings": self.bookings[self.used:self.used + need]}
        path = self.workdir / "plan.json"
        path.write_text(json.dumps(plan))
        before = cpu_seconds()
        result = subprocess.run(["taskset", "-c", LOADGEN_CPU, sys.executable, str(LOAD), str(path)],
                                capture_output=True, text=True, timeout=duration + 300, check=True)
        summary = json.loads(result.stdout.strip().splitlines()[-1])
        spent = {name: seconds - before.get(name, 0.0) for name, seconds in cpu_seconds().items()}
        decided = (summary["accepted"] if mode == "accept" else summary["decided"]) or 1
        summary["cpu_ms_per_booking"] = {name: round(1000 * seconds / decided, 2)
                                         for name, seconds in sorted(spent.items(), key=lambda i: -i[1]) if seconds > 0.05}
        self.used += summary["used"]
        print(f"  {_line(summary)}", file=sys.stderr, flush=True)
        return summary


def cpu_seconds() -> dict[str, float]:
    """CPU time (user + system) used so far, by kind of process (``/proc``): this run's own processes
    (services, nginx, load generator: descendants of this one) and the servers.

    The servers (PostgreSQL, RabbitMQ, Redis) are shared with anything else running on this machine.
    Processes that ended meanwhile (the last run's load generator) drop out, so deltas stay honest.
    """
    ticks = os.sysconf("SC_CLK_TCK")
    stats: dict[int, tuple[int, float, list[str]]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            args = [a.decode(errors="replace") for a in (stat.parent / "cmdline").read_bytes().split(b"\0") if a]
        except OSError:
            continue
        stats[int(stat.parent.name)] = (int(fields[1]), (int(fields[11]) + int(fields[12])) / ticks, args)
    mine = {os.getpid()}
    for _ in range(4):  # children, grandchildren (nginx workers) ...
        mine |= {pid for pid, (parent, _, _) in stats.items() if parent in mine}
    totals: dict[str, float] = {}
    for pid, (_, seconds, args) in stats.items():
        name = _kind(args, pid in mine)
        if name is not None:
            totals[name] = totals.get(name, 0.0) + seconds
    return totals


SERVERS = {"beam.smp": "rabbitmq (shared)", "postgres": "postgres (shared)", "redis-server": "redis (shared)"}


def _kind(args: list[str], mine: bool) -> str | None:
    if not args:
        return None
    program = Path(args[0].split()[0]).name
    if not mine:
        return next((kind for prefix, kind in SERVERS.items() if program.startswith(prefix)), None)
    if "interfaces.cli.main" in args and len(args) > args.index("interfaces.cli.main") + 2:
        command = args[args.index("interfaces.cli.main") + 1:]
        if command[0] == "serve":
            return "clinic serve"
        role = command[command.index("--role") + 1] if "--role" in command else ""
        return f"{command[0]} {command[1]}" + (f" ({role})" if command[0] == "run" else "")
    if any(a.endswith("end_to_end_load.py") for a in args):
        return "load generator"
    return "nginx" if program.startswith("nginx") or args[0].startswith("nginx") else None


def _line(s: dict[str, Any]) -> str:
    load = f"{s['rate']}/s offered" if s["mode"] == "open" else f"{s['clients']} clients"
    return (f"{s['mode']:6} {load:>16}: accepted {s['accepted_per_s']:7.1f}/s, decided {s['decided_per_s']:7.1f}/s "
            f"{s['statuses']}, decided ms {s['decided_ms']}, errors {s['errors']}\n    CPU ms/booking "
            f"{s.get('cpu_ms_per_booking')}")


def run_seconds(quick: bool) -> float:
    """How long each run of the sweep lasts (``--quick`` keeps the whole ``clinic bench`` under 5 minutes)."""
    return 3.0 if quick else 15.0


def open_seconds(quick: bool) -> float:
    """Each fixed load's window: past saturation its backlog is waited out before the next run."""
    return 2.0 if quick else run_seconds(quick)


def accept_seconds(quick: bool) -> float:
    """The accept baseline's window: its backlog is drained after it, at the saga's pace (the longest wait)."""
    return 2.0 if quick else run_seconds(quick)


def sweep(load: Load, quick: bool, rates: tuple[float, ...]) -> dict[str, Any]:
    """Fixed loads, then clients doubled until the decided rate rises < 5%, then the accept baseline."""
    duration = run_seconds(quick)
    # warm-up, waited out: the setup's events reach every follower first (Booking follows Scheduling,
    # so each opened slot is one message it must take before the first booking's), then caches fill
    load.run("accept", 2.0, clients=4)
    results: dict[str, Any] = {"open": [load.run("open", open_seconds(quick), rate=r) for r in rates], "closed": []}
    load.run("accept", 1.0, clients=1)  # an overloaded open run leaves a backlog: wait it out before the next
    best: dict[str, Any] | None = None
    for clients in (8, 16, 32, 64, 128)[: 2 if quick else 5]:
        run = load.run("closed", duration, clients=clients)
        results["closed"].append(run)
        if best is not None and run["decided_per_s"] < best["decided_per_s"] * 1.05:
            break
        best = run if best is None or run["decided_per_s"] > best["decided_per_s"] else best
    results["saturation"] = best
    results["accept"] = load.run("accept", accept_seconds(quick), clients=best["clients"])
    return results


def enough_slots(quick: bool, rates: tuple[float, ...], accept_rate: float) -> int:
    """Slots for every run of the sweep: the fixed loads, the accept run and the closed runs (slower)."""
    duration = run_seconds(quick)
    return int(sum(rates) * duration + accept_rate * duration * 3) + (500 if quick else 2000)


@contextmanager
def embedded(env: dict[str, str]) -> Iterator[tuple[str, str, subprocess.Popen]]:
    """``clinic serve`` on SQLite in a temporary data directory: its URL, an admin token, the process."""
    from tests.e2e.distributed.cluster import eventually, free_port

    with tempfile.TemporaryDirectory() as data:
        env = {**os.environ, "CLINIC_DATA_DIR": data, **env}
        port = free_port()
        with open(Path(data) / "serve.log", "w") as log:
            process = subprocess.Popen([*CLINIC, "serve", "--port", str(port)], cwd=ROOT, env=env,
                                       stdout=log, stderr=subprocess.STDOUT)
        try:
            eventually(lambda: _ready(port), timeout=60, what="clinic serve ready")
            token = subprocess.run([*CLINIC, "token", "--sub", "ops-1", "--role", "ADMIN"], cwd=ROOT, env=env,
                                   capture_output=True, text=True, check=True).stdout.strip()
            yield f"http://127.0.0.1:{port}", token, process
        finally:
            process.terminate()
            process.wait(timeout=30)


def _ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health/ready", timeout=1) as response:
            return response.status == 200
    except OSError:
        return False


@contextmanager
def distributed(env: dict[str, str]) -> Iterator[tuple[str, str, Any]]:
    """The e2e tests' deployment (no span export): the gateway's URL, an admin token, the cluster."""
    from tests.e2e.distributed.cluster import deployed

    settings = {"CLINIC_SAGA_DEADLINE_SECONDS": "60", "CLINIC_AUTH_TOKEN_TTL_SECONDS": "3600",
                "POSTGRES_POOL_SIZE": "4", "POSTGRES_MAX_OVERFLOW": "8", **env}
    with tempfile.TemporaryDirectory() as tmp, deployed(Path(tmp), settings, tracing=False) as cluster:
        yield cluster.base, cluster.token("ops-1", "ADMIN"), cluster


def measure(mode: str, quick: bool, env: dict[str, str] | None = None) -> dict[str, Any]:
    """The whole sweep against one deployment (``embedded`` or ``distributed``)."""
    rates = (50.0, 100.0) if mode == "distributed" or quick else (50.0, 100.0, 200.0)
    deploy = embedded if mode == "embedded" else distributed
    with deploy(env or {}) as (base, token, _), tempfile.TemporaryDirectory() as work:
        started = time.perf_counter()
        bookings = prepare(base, token, enough_slots(quick, rates, 400.0 if mode == "embedded" else 150.0))
        print(f"{mode}: {len(bookings)} free slots in {time.perf_counter() - started:.0f}s", file=sys.stderr)
        return sweep(Load(base, token, bookings, Path(work)), quick, rates)


TARGETS = {"embedded": 1000.0, "distributed": 200.0}
"""Confirmed bookings/s at saturation the issue asks for."""


def figures(mode: str, results: dict[str, Any]) -> list[Figure]:
    """The sweep as figures: saturation against the accept rate, each fixed load against its offer."""
    best, accept = results["saturation"], results["accept"]
    cpu = accept.get("cpu_ms_per_booking", {})
    out = [Figure(f"{mode}: confirmed bookings/s at saturation ({best['clients']} clients)", best["decided_per_s"],
                  "bookings/s", f"HTTP accept rate alone, {accept['clients']} clients (202s/s)",
                  accept["accepted_per_s"], target=f"≥ {TARGETS[mode]:.0f}/s",
                  met=best["decided_per_s"] >= TARGETS[mode],
                  notes=f"decided p50/p95/p99 {_ms(best)} ms; CPU ms per booking (accept run, drained): "
                        f"{cpu}; total {sum(cpu.values()):.1f}")]
    for run in results["open"]:
        p99 = run["decided_ms"]["p99"] or 0.0
        needs_p99 = mode == "distributed" and run["rate"] == 100.0
        out.append(Figure(f"{mode}: confirmed/s at {run['rate']:.0f}/s offered (open loop)", run["decided_per_s"],
                          "bookings/s", "offered rate", run["rate"],
                          notes=f"decided p50/p95/p99 {_ms(run)} ms (from the scheduled send); 202 p99 "
                                f"{run['accept_ms']['p99']} ms; errors {run['errors']}"))
        out.append(Figure(f"{mode}: p99 accept → decided at {run['rate']:.0f}/s offered", p99, "ms",
                          "p99 of the 202 alone, same run", run["accept_ms"]["p99"] or 0.0, higher_is_better=False,
                          target="≤ 500 ms" if needs_p99 else None, met=(p99 <= 500) if needs_p99 else None))
    return out


def _ms(run: dict[str, Any]) -> str:
    return "/".join(str(run["decided_ms"][p]) for p in ("p50", "p95", "p99"))


@benchmark("end_to_end_embedded", summary="bookings over HTTP to confirmed: clinic serve (SQLite)")
def end_to_end_embedded(quick: bool) -> list[Figure]:
    """Embedded mode: fixed loads, saturation, the accept-rate baseline."""
    return figures("embedded", measure("embedded", quick))


@benchmark("end_to_end_distributed", needs=("postgres", "rabbitmq", "redis"),
           summary="bookings over HTTP to confirmed: every service a process, behind nginx")
def end_to_end_distributed(quick: bool) -> list[Figure]:
    """Distributed mode: fixed loads, saturation, the accept-rate baseline."""
    return figures("distributed", measure("distributed", quick))


AB_VARIANTS = {"bindings": {"all": {"CLINIC_AMQP_BINDINGS": "all"}, "handled": {"CLINIC_AMQP_BINDINGS": "handled"}}}
"""``--ab NAME``: the settings compared, each deployed afresh, in turn (ABAB...)."""


def ab(name: str, rounds: int, slots: int = 1500, clients: int = 16, seconds: float = 8.0) -> list[dict[str, Any]]:
    """Distributed mode, one variant after the other ``rounds`` times: CPU per booking, per opened slot.

    Each deployment opens ``slots`` free slots (the setup, timed until its events reached every
    follower, with the CPU each process spent on it), then a drained accept run of ``clients`` for
    ``seconds`` (CPU ms per booking by process). CPU moves far less than rates on a shared machine.
    """
    results = []
    for _ in range(rounds):
        for variant, env in AB_VARIANTS[name].items():
            with distributed(env) as (base, token, _), tempfile.TemporaryDirectory() as work:
                before, started = cpu_seconds(), time.perf_counter()
                bookings = prepare(base, token, slots)
                load = Load(base, token, bookings, Path(work))
                load.run("accept", 1.0, clients=1)  # decided only once Booking has taken the setup's events
                setup = {k: round(1000 * (v - before.get(k, 0.0)) / slots, 3) for k, v in cpu_seconds().items()
                         if v - before.get(k, 0.0) > 0.05}
                setup_seconds = time.perf_counter() - started
                run = load.run("accept", seconds, clients=clients)
                cpu = run["cpu_ms_per_booking"]
                results.append({"variant": variant, "setup_seconds": round(setup_seconds, 1),
                                "setup_cpu_ms_per_slot": setup, "accepted_per_s": run["accepted_per_s"],
                                "decided_per_s": run["decided_per_s"], "cpu_ms_per_booking": cpu,
                                "cpu_ms_per_booking_total": round(sum(cpu.values()), 2)})
                print(f"ab {name} {variant}: {json.dumps(results[-1])}", file=sys.stderr, flush=True)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--only", choices=["embedded", "distributed"])
    parser.add_argument("--log-level", default=None, help="CLINIC_LOG_LEVEL of the servers (default: theirs)")
    parser.add_argument("--ab", choices=sorted(AB_VARIANTS), help="compare settings (distributed, ABAB...)")
    parser.add_argument("--rounds", type=int, default=2, help="with --ab: how many times each variant runs")
    args = parser.parse_args()
    if args.ab:
        print(json.dumps(ab(args.ab, args.rounds), indent=1))
        return
    env = {"CLINIC_LOG_LEVEL": args.log_level} if args.log_level else {}
    results = {mode: measure(mode, args.quick, env) for mode in ("embedded", "distributed")
               if args.only in (None, mode)}
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
