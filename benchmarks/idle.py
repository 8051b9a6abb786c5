"""What an idle distributed deployment costs: CPU of its processes and of the servers, PostgreSQL
transactions and rows in its own database, Redis commands, over a window once it has settled.

The same window is measured on the servers alone before the deployment starts: that is the
baseline. PostgreSQL counts (``pg_stat_database``) are exact because the deployment has a database
to itself; a backend publishes its counts up to a few seconds late, so a rate is a steady state's.
Redis's ``total_commands_processed`` and the servers' CPU are server-wide (shared with anything else
on the machine): read them against the baseline.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from benchmarks import cpu, servers
from benchmarks.harness import Figure

IDLE_SECONDS = 10.0
SETTLE_SECONDS = 60.0
"""How long the deployment may take to settle; past it, it is measured anyway (``settled`` false)."""
QUIET_SECONDS = 11.0
"""Seconds without a transaction in the run's database before the window starts: longer than the 10 s a
backend may take to publish its counts, so the start-up's transactions, reported late, cannot land in the
window (with 3 s they sometimes did: 12 commits/s measured on a deployment that makes none)."""
STEADY_PERCENT = 1.0
"""Settled: two consecutive seconds in which its processes' CPU differs by at most this (% of a core):
one clock tick (``/proc`` counts CPU in 10 ms ticks), where a starting deployment moves by tens."""
POSTGRES_COUNTERS = ("xact_commit", "xact_rollback", "tup_returned", "tup_fetched", "tup_inserted",
                     "tup_updated", "tup_deleted")
CPU_TARGET_PERCENT = 1.0


@dataclass(frozen=True)
class Sample:
    at: float
    cpu: cpu.Snapshot
    postgres: dict[str, int]
    redis_commands: int


class Counters:
    """Reads the counters: ``pg_stat_database`` of one database (from a connection to another), Redis's
    commands processed, and every process's CPU."""

    def __init__(self, database: str) -> None:
        import psycopg
        import redis

        self.database = database
        self.postgres = psycopg.connect(servers.postgres_conninfo(), autocommit=True)
        self.redis = redis.Redis.from_url(servers.REDIS_URL)

    def sample(self) -> Sample:
        row = self.postgres.execute(f"SELECT {', '.join(POSTGRES_COUNTERS)} FROM pg_stat_database "
                                    "WHERE datname = %s", (self.database,)).fetchone()
        if row is None:
            raise RuntimeError(f"no database {self.database} in pg_stat_database")
        commands = int(self.redis.info("stats")["total_commands_processed"])
        return Sample(time.monotonic(), cpu.snapshot(self.database), dict(zip(POSTGRES_COUNTERS, row, strict=True)),
                      commands)

    def close(self) -> None:
        self.postgres.close()
        self.redis.close()


@contextmanager
def counters(database: str) -> Iterator[Counters]:
    reader = Counters(database)
    try:
        yield reader
    finally:
        reader.close()


def window(database: str, seconds: float = IDLE_SECONDS) -> dict[str, Any]:
    """Rates over the next ``seconds``: CPU (% of one core) by kind, ``database``'s counters and Redis commands per s."""
    with counters(database) as reader:
        before = reader.sample()
        time.sleep(seconds)  # the window itself: what is measured is what the processes do meanwhile
        return rates(before, reader.sample())


def rates(before: Sample, after: Sample) -> dict[str, Any]:
    """The window between two samples as rates; Redis's count less the one INFO of ours it includes."""
    elapsed = after.at - before.at
    by_kind = cpu.spent(before.cpu, after.cpu)
    own = sum(seconds for kind, seconds in by_kind.items() if cpu.own(kind))
    serving = sum(seconds for kind, seconds in by_kind.items() if kind in cpu.SERVERS)
    return {
        "window_s": round(elapsed, 2),
        "cpu_percent_by_process": {kind: round(100 * s / elapsed, 3) for kind, s in sorted(by_kind.items())},
        "deployment_cpu_percent": round(100 * own / elapsed, 3),
        "servers_cpu_percent": round(100 * serving / elapsed, 3),
        "cpu_percent": round(100 * (own + serving) / elapsed, 3),
        **{f"postgres_{name}_per_s": round((after.postgres[name] - before.postgres[name]) / elapsed, 3)
           for name in POSTGRES_COUNTERS},
        "redis_commands_per_s": round((after.redis_commands - before.redis_commands - 1) / elapsed, 3),
    }


def settle(depths: Callable[[], dict[str, int]], database: str, timeout: float = SETTLE_SECONDS) -> dict[str, Any]:
    """Wait until no message waits in a queue (dead letters aside), the run's own processes' CPU stops
    changing (two consecutive seconds within ``STEADY_PERCENT``) and ``database``'s transaction count
    stops moving for ``QUIET_SECONDS`` (a backend publishes its counts up to 10 s after its last
    statement: the start-up's connections and catalog reads arrive late), at most ``timeout`` s. A
    deployment that queries periodically never settles: it is measured anyway, ``settled`` false."""
    started, last, quiet_since = time.monotonic(), None, None
    with counters(database) as reader:
        while time.monotonic() - started < timeout:
            before, began = reader.sample(), time.monotonic()
            time.sleep(1.0)  # one second's CPU and counts, the quantities being watched
            after = reader.sample()
            used = sum(s for kind, s in cpu.spent(before.cpu, after.cpu).items() if cpu.own(kind))
            percent = 100 * used / (time.monotonic() - began)
            queued = sum(n for queue, n in depths().items() if not queue.endswith(".dlq"))
            moved = after.postgres["xact_commit"] != before.postgres["xact_commit"]
            quiet_since = None if moved else quiet_since or began
            steady = last is not None and abs(percent - last) <= STEADY_PERCENT
            if queued == 0 and steady and quiet_since is not None and time.monotonic() - quiet_since >= QUIET_SECONDS:
                return {"settled": True, "settle_s": round(time.monotonic() - started, 1)}
            last = percent
    return {"settled": False, "settle_s": round(time.monotonic() - started, 1)}


def measure(depths: Callable[[], dict[str, int]], database: str, seconds: float = IDLE_SECONDS) -> dict[str, Any]:
    """Settle, then one window."""
    settled = settle(depths, database)
    return settled | window(database, seconds)


def figures(idle: dict[str, Any], alone: dict[str, Any], tick_seconds: float) -> list[Figure]:
    """The idle deployment beside the servers alone: CPU, PostgreSQL commits, Redis commands."""
    fields = {"idle": idle, "servers_alone": alone, "tick_seconds": tick_seconds}
    over = idle["cpu_percent"] - alone["servers_cpu_percent"]
    ticks = 1 / tick_seconds
    commits = idle["postgres_xact_commit_per_s"]
    redis_over = idle["redis_commands_per_s"] - alone["redis_commands_per_s"]
    settled = "" if idle["settled"] else f"NOT settled after {idle['settle_s']} s; "
    return [
        Figure("distributed, idle: CPU of the deployment and the servers", idle["cpu_percent"], "% of a core",
               f"the servers alone, before it started ({alone['window_s']} s)", alone["servers_cpu_percent"],
               target=f"≤ {CPU_TARGET_PERCENT:g} % of a core above the servers alone",
               met=over <= CPU_TARGET_PERCENT, higher_is_better=False, fields=fields,
               notes=f"{settled}its processes {idle['deployment_cpu_percent']} %, the servers "
                     f"{idle['servers_cpu_percent']} % (shared); by process: {idle['cpu_percent_by_process']}"),
        Figure("distributed, idle: PostgreSQL commits/s in its database", commits, "commits/s",
               "the deadline timer's most (1 / CLINIC_RUNNER_TICK_SECONDS)", ticks,
               target="no periodic query but the deadline timer's", met=commits <= ticks,
               higher_is_better=False, fields=fields,
               notes=f"rollbacks {idle['postgres_xact_rollback_per_s']}/s, rows returned "
                     f"{idle['postgres_tup_returned_per_s']}/s, fetched {idle['postgres_tup_fetched_per_s']}/s; "
                     "no saga is open, so the timer has nothing due"),
        Figure("distributed, idle: Redis commands/s (server-wide)", idle["redis_commands_per_s"], "commands/s",
               "the server alone, before it started", alone["redis_commands_per_s"],
               target="< 1/s above the server alone (no periodic command)", met=redis_over < 1,
               higher_is_better=False, fields=fields),
    ]
