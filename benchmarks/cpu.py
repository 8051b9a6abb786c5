"""CPU time by kind of process, from ``/proc``: a run's own processes and the servers it uses.

A run's own processes are this process's descendants (``clinic serve``, every ``clinic run`` of a
distributed deployment, nginx). The servers are PostgreSQL (split into the backends connected to
the run's own database, the server's background processes, and every other backend), RabbitMQ and
Redis; they are shared with whatever else runs on the machine, except the backends of a database
the run made for itself.
"""

from __future__ import annotations

import os
import re
import resource
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

POSTGRES_OWN = "postgres: this run's database"
POSTGRES_BACKGROUND = "postgres: background"
POSTGRES_OTHER = "postgres: other databases"
RABBITMQ = "rabbitmq"
REDIS = "redis"
LOAD_GENERATOR = "load generator"
SERVERS = (POSTGRES_OWN, POSTGRES_BACKGROUND, RABBITMQ, REDIS)
"""The servers' kinds a distributed run counts (other databases' backends are other people's work)."""
NOT_COUNTED = (LOAD_GENERATOR, POSTGRES_OTHER)
_BACKEND = re.compile(r"^(?:\d+/\w+: )?(\S+) (\S+) (\S+\(\d+\)|\[local\])")
"""A backend's title, ``postgres: [15/main: ]<user> <database> <address> <state>``."""


@dataclass(frozen=True)
class Process:
    kind: str
    seconds: float


Snapshot = dict[tuple[int, int], Process]
"""CPU seconds used so far, by (pid, start time): a reused pid is another process."""


def snapshot(database: str | None = None) -> Snapshot:
    """Every process of a known kind now, with the CPU (user + system) it has used so far."""
    ticks = os.sysconf("SC_CLK_TCK")
    stats = dict(_stats())
    mine = _descendants(stats, os.getpid())
    taken: Snapshot = {}
    for pid, (_, start, used, args) in stats.items():
        kind = kind_of(args, pid in mine, database)
        if kind is not None:
            taken[(pid, start)] = Process(kind, used / ticks)
    return taken


def spent(before: Snapshot, after: Snapshot) -> dict[str, float]:
    """CPU seconds by kind between two snapshots. A process that started meanwhile counts from zero;
    one that ended meanwhile is missing (its last seconds are unknown)."""
    totals: dict[str, float] = {}
    for key, process in after.items():
        used = process.seconds - (before[key].seconds if key in before else 0.0)
        totals[process.kind] = totals.get(process.kind, 0.0) + used
    return totals


def counted(kind: str, with_servers: bool) -> bool:
    """Whether ``kind`` is part of a run's total: its own processes, and the servers if it uses them."""
    if kind in NOT_COUNTED:
        return False
    return with_servers or kind not in SERVERS


def own(kind: str) -> bool:
    """Whether ``kind`` is one of the run's own processes (not a server, not the load generator)."""
    return kind not in SERVERS and kind not in NOT_COUNTED


def children_seconds() -> float:
    """CPU used by this process's children that have ended and been waited for (the load generator)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def kind_of(args: list[str], mine: bool, database: str | None) -> str | None:
    """The kind of a process from its command line (None: not one a run accounts for)."""
    if not args:
        return None
    program = Path(args[0].split()[0]).name
    if mine:
        return _own_kind(args, program)
    if program.startswith("postgres"):
        return _postgres_kind(args[0], database)
    if program.startswith("beam.smp"):
        return RABBITMQ
    return REDIS if program.startswith("redis-server") else None


def _own_kind(args: list[str], program: str) -> str | None:
    if "interfaces.cli.main" in args and len(args) > args.index("interfaces.cli.main") + 2:
        command = args[args.index("interfaces.cli.main") + 1:]
        if command[0] == "serve":
            return "clinic serve"
        role = command[command.index("--role") + 1] if "--role" in command else ""
        return f"{command[0]} {command[1]}" + (f" ({role})" if command[0] == "run" else "")
    if any(a.endswith("end_to_end_load.py") for a in args):
        return LOAD_GENERATOR
    return "nginx" if program.startswith("nginx") else None


def _postgres_kind(title: str, database: str | None) -> str:
    backend = _BACKEND.match(title.removeprefix("postgres: "))
    if backend is None:
        return POSTGRES_BACKGROUND  # the postmaster, checkpointer, WAL writer...
    return POSTGRES_OWN if database is not None and backend.group(2) == database else POSTGRES_OTHER


def _stats() -> Iterable[tuple[int, tuple[int, int, int, list[str]]]]:
    """Per process: parent pid, start time, CPU ticks used (user + system), command line."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            args = [a.decode(errors="replace") for a in (stat.parent / "cmdline").read_bytes().split(b"\0") if a]
        except OSError:
            continue
        yield int(stat.parent.name), (int(fields[1]), int(fields[19]), int(fields[11]) + int(fields[12]), args)


def _descendants(stats: dict[int, tuple[int, int, int, list[str]]], root: int) -> set[int]:
    mine = {root}
    for _ in range(4):  # children, grandchildren (nginx's worker, a service's own children) ...
        mine |= {pid for pid, (parent, *_) in stats.items() if parent in mine}
    return mine
