"""Two workers per context: partitioned queues, one leader per context, fail-over under kill -9.

The deployment runs two workers of each follower context (booking, scheduling, consultations) over
four partitions per follower (``CLINIC_WORKERS=2``, ``CLINIC_PARTITIONS=4``). Bookings compete for
few slots while the leading workers are killed with SIGKILL and not restarted at first: the other
worker of each context takes the lead (relay, saga timer) and the partitions of the killed one, and
every booking ends decided, no slot booked twice or left held. Then the killed workers come back
(as an orchestrator would restart them) and the deployment goes on.
"""

from __future__ import annotations

import signal
from concurrent.futures import ThreadPoolExecutor
from itertools import pairwise

import pytest

from tests.e2e.distributed.bookings import book, settled, setup, slot_events
from tests.e2e.distributed.cluster import DEADLINE_SECONDS, Cluster, deployed, eventually

FOLLOWERS = ("scheduling", "consultations", "booking")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    with deployed(tmp_path_factory.mktemp("scaled"), tracing=False, workers=2) as deployment:
        yield deployment


def leaders(cluster: Cluster) -> dict[str, str]:
    found = {service: cluster.leader_of(service) for service in FOLLOWERS}
    return found if all(found.values()) else {}


def test_each_context_has_two_workers_and_exactly_one_leader(cluster):
    assert all(len(cluster.workers_of(service)) == 2 for service in FOLLOWERS)
    eventually(lambda: leaders(cluster), what="one leader per context")
    admin, [patient], doctor, [start] = setup(cluster)
    assert settled(cluster, admin, book(cluster, admin, patient, doctor, start)["consultation_id"])["status"] \
        == "CONFIRMED"


def test_killing_the_leaders_mid_load_loses_no_booking_and_books_no_slot_twice(cluster):
    admin, patients, doctor, starts = setup(cluster, patients=30, starts=10)
    killed = eventually(lambda: leaders(cluster), what="the leaders")
    with ThreadPoolExecutor(max_workers=6) as pool:
        futures = [pool.submit(book, cluster, admin, patients[i], doctor, starts[i % 10]) for i in range(30)]
        eventually(lambda: sum(f.done() for f in futures) >= 8, what="the first bookings accepted")
        for name in killed.values():  # while requests keep coming: each context's leading worker
            assert cluster.stop(name, signal.SIGKILL) == -signal.SIGKILL
        accepted = [future.result() for future in futures]
    # the other worker of each context leads now, and every booking is decided
    survivors = eventually(lambda: leaders(cluster), timeout=30, what="new leaders")
    assert set(survivors.values()).isdisjoint(killed.values())
    outcomes = [settled(cluster, admin, a["consultation_id"], timeout=DEADLINE_SECONDS + 60) for a in accepted]
    confirmed: dict[str, int] = {}
    for request, outcome in enumerate(outcomes):
        assert outcome["status"] in ("CONFIRMED", "REJECTED")
        if outcome["status"] == "CONFIRMED":
            confirmed[starts[request % 10]] = confirmed.get(starts[request % 10], 0) + 1
    assert all(count == 1 for count in confirmed.values())
    for start in starts:  # each slot ends booked for its one confirmed booking, or open again: none left held
        history = slot_events(cluster, admin, doctor, start)
        assert history[-1] in ("Booked", "Released", "Opened"), history
        assert (history[-1] == "Booked") == (confirmed.get(start) == 1), (history, confirmed.get(start))
        # booked again only once released: a saga past its deadline while booking is compensated, its
        # booked slot released, and another booking may take it
        assert all(event != "Booked" or after == "Released" for event, after in pairwise(history)), history
    # when the killed workers come back they stand by, and bookings go on
    for name in killed.values():
        cluster.start(name)
    _, [patient], doctor, [start] = setup(cluster)
    assert settled(cluster, admin, book(cluster, admin, patient, doctor, start)["consultation_id"])["status"] \
        == "CONFIRMED"
    assert leaders(cluster) == survivors
