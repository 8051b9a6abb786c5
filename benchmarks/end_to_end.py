"""End-to-end booking throughput, latency and CPU: POST /v1/consultations (202) to decided in the read model.

Two deployments, each over real HTTP:

- **embedded**: ``clinic serve`` (one process, SQLite stores, in-process read models);
- **distributed**: every service its own OS process (``clinic run``) on PostgreSQL (a database of its
  own, so its counts are its own), RabbitMQ (own prefix), Redis (own prefix), the registry over mTLS,
  the authorization server, behind nginx: the product's local deployment (interfaces/local_deployment),
  the one the e2e tests run.

For each: open-loop runs at fixed offered loads (latency from the scheduled send), a closed loop of
one client (the unloaded latency), closed loops of more and more clients until the confirmed rate
stops rising (saturation), and the baseline: the HTTP accept rate alone (clients that only wait for
the 202) at the saturating client count, drained (every accepted booking is then waited for, so its
CPU per booking is a whole booking's). The distributed deployment is first measured idle
(benchmarks/idle.py). The load generator (benchmarks/end_to_end_load.py) runs in its own process,
pinned to the last core. Patients, doctors and free slots (one per booking) are created before any
measured window.

Every run's figure carries, as top-level JSON fields, ``confirmed_per_s``, ``cpu_ms_per_booking``
(CPU per confirmed booking summed over the run's processes and, distributed, the servers it uses;
the load generator is not counted: ``load_generator_cpu_ms_per_booking``), ``p50_ms`` and ``p99_ms``
(send → decided), ``offered_per_s`` (null for closed loops), ``polls_per_booking`` (the load
generator's reads, answered by the same processes: one per booking when ``Prefer: wait`` answers it
once decided) and the per-process breakdown.

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

from interfaces.local_deployment.deployment import LocalDeployment, deployed  # noqa: E402 - after the path is set
from interfaces.local_deployment.servers import free_port, wait_for  # noqa: E402

from benchmarks import cpu, idle, servers  # noqa: E402
from benchmarks.harness import Figure, benchmark  # noqa: E402

CLINIC = [sys.executable, "-m", "interfaces.cli.main"]
LOAD = Path(__file__).with_name("end_to_end_load.py")
FIRST_SLOT = datetime(2027, 1, 4, tzinfo=UTC)
LOADGEN_CPU = str((os.cpu_count() or 1) - 1)
"""The load generator's core (``taskset``): the last one."""
ONE_CLIENT_POLL = 0.01
"""The one-client run asks again 10 ms after a 404 (a booking not projected yet; every read waits for the
decision with ``Prefer: wait``): its p50 is compared with tens of milliseconds."""


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
    """Runs the load generator process over a shared list of free slots, and accounts for the CPU spent.

    ``database``: the distributed deployment's PostgreSQL database (its backends' CPU is its own);
    ``None`` for the embedded deployment, which uses no server (the servers' CPU is then not counted).
    """

    def __init__(self, base: str, token: str, bookings: list[dict[str, str]], workdir: Path,
                 database: str | None = None) -> None:
        self.base, self.token, self.bookings, self.workdir = base, token, bookings, workdir
        self.database = database
        self.used = 0

    def run(self, mode: str, duration: float, rate: float | None = None, clients: int | None = None,
            poll: float | None = None) -> dict[str, Any]:
        """One run of the load generator; its JSON summary, with the CPU per confirmed booking."""
        need = int((rate or 0) * duration) + 1 if mode == "open" else len(self.bookings) - self.used
        plan = {"base": self.base, "token": self.token, "mode": mode, "duration": duration, "rate": rate,
                "clients": clients, "bookings": self.bookings[self.used:self.used + need],
                **({"poll": poll} if poll is not None else {})}
        path = self.workdir / "plan.json"
        path.write_text(json.dumps(plan))
        before, children = cpu.snapshot(self.database), cpu.children_seconds()
        result = subprocess.run(["taskset", "-c", LOADGEN_CPU, sys.executable, str(LOAD), str(path)],
                                capture_output=True, text=True, timeout=duration + 300, check=True)
        used = cpu.spent(before, cpu.snapshot(self.database))
        used[cpu.LOAD_GENERATOR] = cpu.children_seconds() - children
        summary = json.loads(result.stdout.strip().splitlines()[-1])
        summary |= per_booking(used, summary["statuses"].get("CONFIRMED", 0), self.database is not None)
        self.used += summary["used"]
        print(f"  {_line(summary)}", file=sys.stderr, flush=True)
        return summary


def per_booking(used: dict[str, float], confirmed: int, with_servers: bool) -> dict[str, Any]:
    """CPU ms per confirmed booking: the total counted, the run's own processes, the load generator, by process."""
    def ms(seconds: float) -> float | None:
        return round(1000 * seconds / confirmed, 3) if confirmed else None

    counted = sorted(kind for kind in used if cpu.counted(kind, with_servers))
    return {
        "cpu_ms_per_booking": ms(sum(used[kind] for kind in counted)),
        "cpu_ms_per_booking_processes": ms(sum(s for kind, s in used.items() if cpu.own(kind))),
        "load_generator_cpu_ms_per_booking": ms(used[cpu.LOAD_GENERATOR]),
        "cpu_ms_per_booking_by_process": {kind: ms(s) for kind, s in sorted(used.items(), key=lambda i: -i[1])
                                          if s > 0 and (kind in counted or kind == cpu.LOAD_GENERATOR)},
        "cpu_counted": counted,
    }


def _line(s: dict[str, Any]) -> str:
    load = f"{s['rate']}/s offered" if s["mode"] == "open" else f"{s['clients']} clients"
    return (f"{s['mode']:6} {load:>16}: accepted {s['accepted_per_s']:7.1f}/s, confirmed {s['confirmed_per_s']:7.1f}/s "
            f"{s['statuses']}, decided ms {s['decided_ms']}, errors {s['errors']}\n    CPU ms/booking "
            f"{s['cpu_ms_per_booking']} (load generator {s['load_generator_cpu_ms_per_booking']}): "
            f"{s['cpu_ms_per_booking_by_process']}")


def run_seconds(quick: bool) -> float:
    """How long each closed-loop run lasts (``--quick`` keeps the whole ``clinic bench`` under 5 minutes)."""
    return 3.0 if quick else 15.0


def open_seconds(quick: bool) -> float:
    """Each fixed load's window: past saturation its backlog is waited out before the next run."""
    return 2.0 if quick else run_seconds(quick)


def accept_seconds(quick: bool) -> float:
    """The accept baseline's window: its backlog is drained after it, at the saga's pace (the longest wait)."""
    return 2.0 if quick else run_seconds(quick)


def sweep(load: Load, quick: bool, rates: tuple[float, ...], scale: float = 1.0) -> dict[str, Any]:
    """Fixed loads, one client, clients doubled until the confirmed rate rises < 5%, then the accept baseline."""
    duration = run_seconds(quick) * scale
    # warm-up, waited out: the setup's events reach every follower first (Booking follows Scheduling,
    # so each opened slot is one message it must take before the first booking's), then caches fill
    load.run("accept", 2.0 * scale, clients=4)
    results: dict[str, Any] = {"open": [load.run("open", open_seconds(quick) * scale, rate=r) for r in rates]}
    load.run("accept", 1.0 * scale, clients=1)  # an overloaded open run leaves a backlog: wait it out first
    results["one_client"] = load.run("closed", duration, clients=1, poll=ONE_CLIENT_POLL)
    results["closed"] = []
    first, *more = (8, 16, 32, 64, 128)[: 2 if quick else 5]
    best: dict[str, Any] = load.run("closed", duration, clients=first)
    results["closed"].append(best)
    for clients in more:
        run = load.run("closed", duration, clients=clients)
        results["closed"].append(run)
        if run["confirmed_per_s"] < best["confirmed_per_s"] * 1.05:
            break
        best = run if run["confirmed_per_s"] > best["confirmed_per_s"] else best
    results["saturation"] = best
    results["accept"] = load.run("accept", accept_seconds(quick) * scale, clients=best["clients"])
    return results


def enough_slots(quick: bool, rates: tuple[float, ...], accept_rate: float, scale: float = 1.0) -> int:
    """Slots for every run of the sweep: the fixed loads, the accept run and the closed runs (slower)."""
    duration = run_seconds(quick) * scale
    return int(sum(rates) * duration + accept_rate * duration * 3) + int((500 if quick else 2000) * scale)


@contextmanager
def embedded(env: dict[str, str]) -> Iterator[tuple[str, str, subprocess.Popen[bytes]]]:
    """``clinic serve`` on SQLite in a temporary data directory: its URL, an admin token, the process."""
    with tempfile.TemporaryDirectory() as data:
        env = {**os.environ, "CLINIC_DATA_DIR": data, **env}
        port = free_port()
        with open(Path(data) / "serve.log", "w") as log:
            process = subprocess.Popen([*CLINIC, "serve", "--port", str(port)], cwd=data, env=env,
                                       stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_for(lambda: _ready(port, process), timeout=60, what="clinic serve ready")
            token = subprocess.run([*CLINIC, "token", "--sub", "ops-1", "--role", "ADMIN"], cwd=data, env=env,
                                   capture_output=True, text=True, check=True).stdout.strip()
            yield f"http://127.0.0.1:{port}", token, process
        finally:
            process.terminate()
            process.wait(timeout=30)


def _ready(port: int, process: subprocess.Popen[bytes]) -> bool:
    if process.poll() is not None:
        raise RuntimeError(f"clinic serve exited {process.returncode}")
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health/ready", timeout=1) as response:
            return response.status == 200
    except OSError:
        return False


@contextmanager
def distributed(env: dict[str, str], database: str) -> Iterator[tuple[str, str, LocalDeployment]]:
    """The local deployment in ``database`` (no span export): the gateway's URL, an admin token, the deployment."""
    settings = {"CLINIC_SAGA_DEADLINE_SECONDS": "60", "CLINIC_AUTH_TOKEN_TTL_SECONDS": "3600",
                "POSTGRES_POOL_SIZE": "4", "POSTGRES_MAX_OVERFLOW": "8", **env}
    with tempfile.TemporaryDirectory() as tmp, deployed(Path(tmp), servers.deployment_servers(database), settings,
                                                        tracing=False) as deployment:
        yield deployment.base, deployment.token("ops-1", "ADMIN"), deployment


def measure(mode: str, quick: bool, env: dict[str, str] | None = None, scale: float = 1.0) -> dict[str, Any]:
    """The whole sweep against one deployment (``embedded`` or ``distributed``, the latter measured idle first)."""
    if mode == "embedded":
        with embedded(env or {}) as (base, token, _):
            return _sweep_on(mode, base, token, quick, scale)
    with servers.postgres_database("e2e") as database:
        alone = idle.window(database)
        with distributed(env or {}, database) as (base, token, deployment):
            still = idle.measure(deployment.queue_depths, database)
            results = _sweep_on(mode, base, token, quick, scale, database)
            tick = float(deployment.env["CLINIC_RUNNER_TICK_SECONDS"])
    return results | {"idle": still, "servers_alone": alone, "tick_seconds": tick}


def _sweep_on(mode: str, base: str, token: str, quick: bool, scale: float,
              database: str | None = None) -> dict[str, Any]:
    rates = (50.0, 100.0) if mode == "distributed" or quick else (50.0, 100.0, 200.0)
    with tempfile.TemporaryDirectory() as work:
        started = time.perf_counter()
        bookings = prepare(base, token, enough_slots(quick, rates, 400.0 if mode == "embedded" else 150.0, scale))
        print(f"{mode}: {len(bookings)} free slots in {time.perf_counter() - started:.0f}s", file=sys.stderr)
        return sweep(Load(base, token, bookings, Path(work), database), quick, rates, scale)


TARGETS: dict[str, dict[str, float]] = {
    "embedded": {"saturation": 1000.0, "cpu_ms": 1.0},
    "distributed": {"saturation": 200.0, "cpu_ms": 8.0, "p99_ms_at_100": 250.0, "p50_ms_one_client": 60.0},
}
"""The issue's targets: confirmed bookings/s at saturation, CPU ms per confirmed booking, latencies."""


def fields(run: dict[str, Any]) -> dict[str, Any]:
    """A run's figures' top-level JSON fields: its rates, latencies (ms, send → decided), reads and CPU."""
    confirmed = run["statuses"].get("CONFIRMED", 0)
    return {
        "loop": run["mode"], "clients": run["clients"], "offered_per_s": run["rate"] if run["mode"] == "open" else None,
        "duration_s": run["duration"], "poll_s": run["poll_s"], "accepted": run["accepted"],
        "confirmed": confirmed, "decided": run["decided"],
        "polls_per_booking": round(run["polls"] / confirmed, 2) if confirmed else None,
        "accepted_per_s": run["accepted_per_s"], "confirmed_per_s": run["confirmed_per_s"],
        "p50_ms": run["decided_ms"]["p50"], "p95_ms": run["decided_ms"]["p95"], "p99_ms": run["decided_ms"]["p99"],
        "accept_p50_ms": run["accept_ms"]["p50"], "accept_p99_ms": run["accept_ms"]["p99"], "errors": run["errors"],
        **{key: run[key] for key in ("cpu_ms_per_booking", "cpu_ms_per_booking_processes",
                                     "load_generator_cpu_ms_per_booking", "cpu_ms_per_booking_by_process",
                                     "cpu_counted")},
    }


def figures(mode: str, results: dict[str, Any]) -> list[Figure]:
    """The sweep as figures, one or two per run, the issue's targets first; then the idle deployment's."""
    out = [saturation(mode, results), cpu_per_booking(mode, results), one_client(mode, results["one_client"])]
    for run in results["open"]:
        out += open_loop(mode, run)
    out += [closed_loop(mode, run, results["accept"]) for run in results["closed"] if run is not results["saturation"]]
    if "idle" in results:
        out += idle.figures(results["idle"], results["servers_alone"], results["tick_seconds"])
    return out


def saturation(mode: str, results: dict[str, Any]) -> Figure:
    best, accept, target = results["saturation"], results["accept"], TARGETS[mode]["saturation"]
    return Figure(f"{mode}: confirmed bookings/s at saturation ({best['clients']} clients)", best["confirmed_per_s"],
                  "bookings/s", f"HTTP accept rate alone, {accept['clients']} clients (202s/s)",
                  accept["accepted_per_s"], target=f"≥ {target:,.0f}/s", met=best["confirmed_per_s"] >= target,
                  notes=f"send → decided p50/p95/p99 {_ms(best)} ms; CPU ms per booking {best['cpu_ms_per_booking']}",
                  fields=fields(best))


def cpu_per_booking(mode: str, results: dict[str, Any]) -> Figure:
    accept, target = results["accept"], TARGETS[mode]["cpu_ms"]
    value = accept["cpu_ms_per_booking"] or 0.0
    baseline = ("services, auth and nginx alone (servers not counted)" if mode == "distributed"
                else "clinic serve alone (it uses no server)")
    return Figure(f"{mode}: CPU per confirmed booking, all processes (drained accept run, {accept['clients']} clients)",
                  value, "ms", baseline, accept["cpu_ms_per_booking_processes"] or 0.0,
                  target=f"≤ {target:g} ms", met=0 < value <= target, higher_is_better=False, fields=fields(accept),
                  notes=f"with {fields(accept)['polls_per_booking']} polls (GETs) per booking; load generator apart: "
                        f"{accept['load_generator_cpu_ms_per_booking']} ms; by process: "
                        f"{accept['cpu_ms_per_booking_by_process']}")


def one_client(mode: str, run: dict[str, Any]) -> Figure:
    target = TARGETS[mode].get("p50_ms_one_client")
    p50 = run["decided_ms"]["p50"] or 0.0
    return Figure(f"{mode}: p50 accept → decided, one client (closed loop)", p50, "ms",
                  "p50 of the 202 alone, same run", run["accept_ms"]["p50"] or 0.0, higher_is_better=False,
                  target=None if target is None else f"≤ {target:g} ms", met=None if target is None else p50 <= target,
                  notes=f"{run['confirmed_per_s']} confirmed/s; read with Prefer: wait "
                        f"({fields(run)['polls_per_booking']} reads per booking)",
                  fields=fields(run))


def open_loop(mode: str, run: dict[str, Any]) -> list[Figure]:
    p99, rate = run["decided_ms"]["p99"] or 0.0, run["rate"]
    target = TARGETS[mode].get("p99_ms_at_100") if rate == 100.0 else None
    return [
        Figure(f"{mode}: confirmed/s at {rate:.0f}/s offered (open loop)", run["confirmed_per_s"], "bookings/s",
               "offered rate", rate, fields=fields(run),
               notes=f"send → decided p50/p95/p99 {_ms(run)} ms (from the scheduled send); 202 p99 "
                     f"{run['accept_ms']['p99']} ms; errors {run['errors']}"),
        Figure(f"{mode}: p99 accept → decided at {rate:.0f}/s offered", p99, "ms", "p99 of the 202 alone, same run",
               run["accept_ms"]["p99"] or 0.0, higher_is_better=False, fields=fields(run),
               target=None if target is None else f"≤ {target:g} ms", met=None if target is None else p99 <= target),
    ]


def closed_loop(mode: str, run: dict[str, Any], accept: dict[str, Any]) -> Figure:
    return Figure(f"{mode}: confirmed/s with {run['clients']} clients (closed loop)", run["confirmed_per_s"],
                  "bookings/s", f"HTTP accept rate alone, {accept['clients']} clients (202s/s)",
                  accept["accepted_per_s"], notes=f"send → decided p50/p95/p99 {_ms(run)} ms", fields=fields(run))


def _ms(run: dict[str, Any]) -> str:
    return "/".join(str(run["decided_ms"][p]) for p in ("p50", "p95", "p99"))


@benchmark("end_to_end_embedded", summary="bookings over HTTP to confirmed: clinic serve (SQLite)")
def end_to_end_embedded(quick: bool, scale: float = 1.0) -> list[Figure]:
    """Embedded mode: fixed loads, one client, saturation, the accept-rate baseline."""
    return figures("embedded", measure("embedded", quick, scale=scale))


@benchmark("end_to_end_distributed", needs=("postgres", "rabbitmq", "redis", "nginx"),
           summary="an idle deployment, then bookings over HTTP to confirmed: every service a process, behind nginx")
def end_to_end_distributed(quick: bool, scale: float = 1.0) -> list[Figure]:
    """Distributed mode: idle, fixed loads, one client, saturation, the accept-rate baseline."""
    return figures("distributed", measure("distributed", quick, scale=scale))


AB_VARIANTS = {"bindings": {"all": {"CLINIC_AMQP_BINDINGS": "all"}, "handled": {"CLINIC_AMQP_BINDINGS": "handled"}},
               "group_commit": {"off": {"CLINIC_GROUP_COMMIT": "off"}, "on": {"CLINIC_GROUP_COMMIT": "on"}}}
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
            results.append(_ab_round(variant, env, slots, clients, seconds))
            print(f"ab {name} {variant}: {json.dumps(results[-1])}", file=sys.stderr, flush=True)
    return results


def _ab_round(variant: str, env: dict[str, str], slots: int, clients: int, seconds: float) -> dict[str, Any]:
    with servers.postgres_database("ab") as database, distributed(env, database) as (base, token, _), \
            tempfile.TemporaryDirectory() as work:
        before, started = cpu.snapshot(database), time.perf_counter()
        bookings = prepare(base, token, slots)
        load = Load(base, token, bookings, Path(work), database)
        load.run("accept", 1.0, clients=1)  # decided only once Booking has taken the setup's events
        setup = {kind: round(1000 * used / slots, 3) for kind, used in cpu.spent(before, cpu.snapshot(database)).items()
                 if used > 0.05}
        setup_seconds = time.perf_counter() - started
        run = load.run("accept", seconds, clients=clients)
        return {"variant": variant, "setup_seconds": round(setup_seconds, 1), "setup_cpu_ms_per_slot": setup,
                "accepted_per_s": run["accepted_per_s"], "confirmed_per_s": run["confirmed_per_s"],
                "cpu_ms_per_booking": run["cpu_ms_per_booking"],
                "cpu_ms_per_booking_by_process": run["cpu_ms_per_booking_by_process"]}


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
