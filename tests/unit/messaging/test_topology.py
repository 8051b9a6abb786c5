"""Names of the exchange, queues and routing keys: what operators and bindings rely on."""

from __future__ import annotations

import pytest

from infrastructure.messaging.topology import Topology, binding_key, routing_key


def test_routing_key_is_the_leader_and_the_event_class_qualname():
    assert routing_key("Consultations", "domain.consultation:Consultation.Requested") == \
        "consultations.Consultation.Requested"


def test_a_follower_binds_every_event_of_a_leader():
    assert binding_key("Scheduling") == "scheduling.#"


def test_default_names():
    topology = Topology()
    queues = topology.queues("Booking")
    assert topology.exchange == "clinic.events"
    assert queues.main == "clinic.booking"
    assert queues.retries == ("clinic.booking.retry.1000ms", "clinic.booking.retry.5000ms",
                              "clinic.booking.retry.30000ms")
    assert queues.dead_letters == "clinic.booking.dlq"


def test_one_retry_queue_per_delay_level_named_by_its_delay():
    queues = Topology(prefix="t1", delays_ms=(50, 100)).queues("Booking")
    assert queues.retries == ("t1.booking.retry.50ms", "t1.booking.retry.100ms")


@pytest.mark.parametrize("delays", [(), (0,), (100, -1)])
def test_delays_must_be_positive(delays):
    with pytest.raises(ValueError, match="positive"):
        Topology(delays_ms=delays)
