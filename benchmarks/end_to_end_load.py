"""The end-to-end load generator: books consultations over HTTP and waits for each to be decided.

Runs in its own process (``python benchmarks/end_to_end_load.py PLAN.json``), so its CPU is not the
server's; the driver (benchmarks/end_to_end.py) pins it to a core with ``taskset``. A booking is
``POST /v1/consultations`` (202), then ``GET /v1/consultations/{id}`` with ``Prefer: wait`` (RFC 7240),
which the API answers once the saga has decided: as a client should learn the outcome, without polling.
A read that comes back undecided (the wait ran out) or 404 (not projected yet) is asked again, after
``poll`` seconds for a 404.

Modes (the plan's ``mode``):

- ``open``: bookings sent on a fixed schedule (``rate`` per second for ``duration`` s), each in
  its own task whatever the server's pace; latency counts from the *scheduled* send time, so a
  server that falls behind shows its queueing (no coordinated omission).
- ``closed``: ``clients`` concurrent clients, each booking and waiting for the outcome, then the
  next, for ``duration`` s: the saturation throughput.
- ``accept``: as ``closed``, but each client only waits for the 202 (the saga is not waited for):
  the HTTP accept rate, the baseline of the end-to-end figures. After the window, every accepted
  booking is polled (every ``DRAIN_POLL_SECONDS``) until decided (the backlog drains;
  ``decided_per_s`` is then the rate the sagas got through it).

Prints one JSON object: counts, rates and latency percentiles (ms).
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import httpx

DECIDED_TIMEOUT = 30.0
"""A booking not decided this long after its send is counted as timed out."""
DRAIN_TIMEOUT = 600.0
"""``accept`` mode: how long the backlog may take to drain."""
POLL_SECONDS = 0.05
"""How soon a client asks again after a 404 (the booking not projected yet: rare, the read waits ≤ 1 s for it)."""
WAIT_SECONDS = 30
"""The longest ``Prefer: wait`` the API honours: each read waits at most this long for the decision."""
DRAIN_POLL_SECONDS = 0.25
"""``accept`` mode's pause after a 404 while its backlog drains."""


@dataclass
class Outcomes:
    """What the run saw: per booking, when it was due, accepted and decided."""

    accept_ms: list[float] = field(default_factory=list)
    decided_ms: list[float] = field(default_factory=list)
    censored_ms: list[float] = field(default_factory=list)
    """Bookings not decided in time, at the timeout: a lower bound of their latency, kept in the percentiles."""
    statuses: dict[str, int] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)
    used: int = 0
    polls: int = 0
    """``GET``s asking whether a booking is decided: requests the servers answered besides the bookings."""
    first_due: float | None = None
    last_accepted: float = 0.0
    last_decided: float = 0.0

    def error(self, what: str) -> None:
        self.errors[what] = self.errors.get(what, 0) + 1


class Booker:
    """Books one consultation at a time from the plan's free slots."""

    def __init__(self, client: httpx.AsyncClient, plan: dict[str, Any], outcomes: Outcomes) -> None:
        self.client = client
        self.bookings = iter(plan["bookings"])
        self.poll = poll_seconds(plan)
        self.headers = {"Authorization": f"Bearer {plan['token']}"}
        self.outcomes = outcomes
        self.undecided: list[tuple[str, float]] = []
        """Accepted bookings not waited for (``accept`` mode), with their send times."""

    async def book(self, due: float, wait_for_outcome: bool = True) -> None:
        """Book the next free slot; ``due`` is when it should have been sent (perf_counter)."""
        booking = next(self.bookings, None)
        self.outcomes.used += booking is not None
        if booking is None:
            self.outcomes.error("plan exhausted")
            return
        if self.outcomes.first_due is None:
            self.outcomes.first_due = due
        try:
            response = await self.client.post("/v1/consultations", json=booking, headers=self.headers)
        except httpx.HTTPError as error:
            self.outcomes.error(type(error).__name__)
            return
        accepted = time.perf_counter()
        if response.status_code != 202:
            self.outcomes.error(f"POST {response.status_code}")
            return
        self.outcomes.accept_ms.append((accepted - due) * 1000)
        self.outcomes.last_accepted = accepted
        if wait_for_outcome:
            await self._until_decided(response.json()["consultation_id"], due)
        else:
            self.undecided.append((response.json()["consultation_id"], due))

    async def drain(self, concurrency: int = 64) -> None:
        """Wait until every booking accepted without waiting is decided."""
        pending = iter(self.undecided)

        async def poller() -> None:
            for consultation_id, due in pending:
                await self._until_decided(consultation_id, due, DRAIN_TIMEOUT)

        await asyncio.gather(*(poller() for _ in range(concurrency)))

    async def _until_decided(self, consultation_id: str, due: float, timeout: float = DECIDED_TIMEOUT) -> None:
        path = f"/v1/consultations/{consultation_id}"
        while time.perf_counter() - due < timeout:
            self.outcomes.polls += 1
            wait = max(1, min(WAIT_SECONDS, int(timeout - (time.perf_counter() - due))))
            try:
                response = await self.client.get(path, headers={**self.headers, "Prefer": f"wait={wait}"})
            except httpx.HTTPError as error:
                self.outcomes.error(f"GET {type(error).__name__}")
                await asyncio.sleep(self.poll)
                continue
            status = response.json().get("status") if response.status_code == 200 else None
            if status is not None and status != "REQUESTED":
                now = time.perf_counter()
                self.outcomes.decided_ms.append((now - due) * 1000)
                self.outcomes.statuses[status] = self.outcomes.statuses.get(status, 0) + 1
                self.outcomes.last_decided = now
                return
            if response.status_code not in (200, 404):  # 404: not yet projected
                self.outcomes.error(f"GET {response.status_code}")
            if response.status_code != 200:  # a 200 still REQUESTED has waited already: ask again at once
                await asyncio.sleep(self.poll)
        self.outcomes.error("not decided in time")
        self.outcomes.censored_ms.append(timeout * 1000)


async def open_loop(booker: Booker, rate: float, duration: float) -> None:
    """``rate`` bookings a second on a fixed schedule, whatever the answers' pace."""
    start, tasks = time.perf_counter(), []
    for i in range(int(rate * duration)):
        due = start + i / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(booker.book(due)))
    await asyncio.gather(*tasks)


async def closed_loop(booker: Booker, clients: int, duration: float, wait_for_outcome: bool) -> None:
    """``clients`` clients, each sending its next booking as soon as the last one is done."""
    end = time.perf_counter() + duration

    async def client() -> None:
        while time.perf_counter() < end:
            await booker.book(time.perf_counter(), wait_for_outcome)

    await asyncio.gather(*(client() for _ in range(clients)))


def poll_seconds(plan: dict[str, Any]) -> float:
    """How often this run asks whether a booking is decided: the plan's ``poll``, else the mode's default."""
    return plan.get("poll", DRAIN_POLL_SECONDS if plan["mode"] == "accept" else POLL_SECONDS)


def percentile(values: list[float], p: float) -> float | None:
    """The ``p``-th percentile (nearest rank) of ``values``, or ``None`` if there are none."""
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered)) - 1))], 1)


def summary(plan: dict[str, Any], outcomes: Outcomes, elapsed: float) -> dict[str, Any]:
    """Counts, rates over the run's window and latency percentiles."""
    start = outcomes.first_due or 0.0
    accept_window = max(outcomes.last_accepted - start, 1e-9)
    decided_window = max(outcomes.last_decided - start, 1e-9)
    return {
        "mode": plan["mode"], "rate": plan.get("rate"), "clients": plan.get("clients"),
        "duration": plan["duration"], "elapsed_s": round(elapsed, 2), "poll_s": poll_seconds(plan),
        "used": outcomes.used, "accepted": len(outcomes.accept_ms), "decided": len(outcomes.decided_ms), "statuses": outcomes.statuses,
        "polls": outcomes.polls,
        "errors": outcomes.errors,
        "accepted_per_s": round(len(outcomes.accept_ms) / accept_window, 1),
        "decided_per_s": round(len(outcomes.decided_ms) / decided_window, 1) if outcomes.decided_ms else 0.0,
        "confirmed_per_s": round(outcomes.statuses.get("CONFIRMED", 0) / decided_window, 1)
        if outcomes.decided_ms else 0.0,
        "accept_ms": {f"p{p}": percentile(outcomes.accept_ms, p) for p in (50, 95, 99)},
        "decided_ms": {f"p{p}": percentile(outcomes.decided_ms + outcomes.censored_ms, p) for p in (50, 95, 99)},
    }


async def run(plan: dict[str, Any]) -> dict[str, Any]:
    """Run the plan's load against ``plan["base"]``; the summary."""
    outcomes = Outcomes()
    limits = httpx.Limits(max_connections=plan.get("connections", 256), max_keepalive_connections=256)
    async with httpx.AsyncClient(base_url=plan["base"], limits=limits, timeout=DECIDED_TIMEOUT) as client:
        booker = Booker(client, plan, outcomes)
        started = time.perf_counter()
        if plan["mode"] == "open":
            await open_loop(booker, plan["rate"], plan["duration"])
        else:
            await closed_loop(booker, plan["clients"], plan["duration"], plan["mode"] == "closed")
            await booker.drain()
        return summary(plan, outcomes, time.perf_counter() - started)


def main() -> None:
    with open(sys.argv[1]) as file:
        plan = json.load(file)
    print(json.dumps(asyncio.run(run(plan))), flush=True)


if __name__ == "__main__":
    main()
