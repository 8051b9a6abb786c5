"""One leader per context among its workers, by a PostgreSQL advisory lock, with fail-over.

Real PostgreSQL. Two contenders for one lock: one leads, the other waits in the server; when the
leader's connection dies (as when its process is killed) the other leads at once. Each contender
also takes a slot of its own; deployments (schemas) never contend with each other.
"""

from __future__ import annotations

import asyncio
import time
import uuid

import psycopg

from infrastructure.leadership import Leadership, while_leading
from tests import services

CONNECTION = {"host": services.POSTGRES_HOST, "port": services.POSTGRES_PORT, "dbname": services.POSTGRES_DB,
              "user": services.POSTGRES_USER}


def contender(name: str, lock: str, slots: int = 2) -> Leadership:
    return Leadership({**CONNECTION, "application_name": name}, lock, slots=slots)


async def until(condition, seconds: float = 10.0, what: str = "") -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"not within {seconds}s: {what}"
        await asyncio.sleep(0.01)


def kill(application_name: str) -> int:
    with psycopg.connect(**CONNECTION, autocommit=True) as connection:
        return len(connection.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                                      "WHERE application_name = %s", (application_name,)).fetchall())


def test_one_contender_leads_and_the_other_takes_over_when_its_connection_dies():
    services.require_postgres()
    lock, names = f"test|{uuid.uuid4().hex}|Booking", [f"leader-{uuid.uuid4().hex[:8]}" for _ in range(2)]
    a, b = contender(names[0], lock), contender(names[1], lock)

    async def scenario() -> None:
        stop = asyncio.Event()
        tasks = [asyncio.create_task(a.run(stop, first_retry=0.05)), asyncio.create_task(b.run(stop, first_retry=0.05))]
        await until(lambda: a.held.is_set() or b.held.is_set(), what="a leader")
        await until(lambda: a.slotted.is_set() and b.slotted.is_set(), what="both contenders' slots")
        leader, other = (a, b) if a.held.is_set() else (b, a)
        assert not other.held.is_set() and {a.slot, b.slot} == {0, 1}  # each its own slot
        # when the leader's session ends (kill -9 of its process does the same), the other leads
        started = time.monotonic()
        assert await asyncio.to_thread(kill, leader.connection["application_name"]) == 1
        await until(lambda: other.held.is_set(), what="the other leads")
        assert time.monotonic() - started < 3
        await until(lambda: not leader.held.is_set(), what="the old leader knows it lost")
        stop.set()
        await asyncio.gather(*tasks)
        assert a.released.is_set() and b.released.is_set()

    asyncio.run(scenario())


def test_work_runs_only_while_leading_and_stops_when_the_lead_is_lost():
    services.require_postgres()
    lock, name = f"test|{uuid.uuid4().hex}|Scheduling", f"worker-{uuid.uuid4().hex[:8]}"
    leadership = contender(name, lock, slots=1)
    runs: list[str] = []

    async def work(until: asyncio.Event) -> None:
        runs.append("started")
        await until.wait()
        runs.append("stopped")

    async def scenario() -> None:
        stop = asyncio.Event()
        leading = asyncio.create_task(leadership.run(stop, first_retry=0.05))
        working = asyncio.create_task(while_leading(leadership, stop, work))
        await until(lambda: runs == ["started"], what="work while leading")
        await asyncio.to_thread(kill, name)
        await until(lambda: runs[:2] == ["started", "stopped"], what="work stopped with the lead")
        await until(lambda: runs == ["started", "stopped", "started"], what="work again once it leads again")
        stop.set()
        await asyncio.gather(leading, working)
        assert runs[-1] == "stopped"

    asyncio.run(scenario())


def test_deployments_in_other_schemas_never_contend():
    services.require_postgres()
    one, two = (contender(f"schema-{uuid.uuid4().hex[:8]}", f"test|{uuid.uuid4().hex}|Booking") for _ in range(2))

    async def scenario() -> None:
        stop = asyncio.Event()
        tasks = [asyncio.create_task(one.run(stop)), asyncio.create_task(two.run(stop))]
        await until(lambda: one.held.is_set() and two.held.is_set(), what="both lead their own")
        stop.set()
        await asyncio.gather(*tasks)

    asyncio.run(scenario())
