"""The booking saga's table and its aggregate describe one state machine, and the table is whole."""

from __future__ import annotations

from domain.booking_saga_table import BOOKING_SAGA, OPEN_STATES, SagaState
from process_managers.booking_saga import SAGA_EVENT_BY_TOPIC, BookingSaga, SagaMove

BASES = {"Event", "Created"}
"""The event base classes the library makes for each aggregate."""


def saga_event_classes() -> dict[str, type]:
    """The events the saga records."""
    return {name: cls for name, cls in vars(BookingSaga).items()
            if isinstance(cls, type) and issubclass(cls, BookingSaga.Event) and name not in BASES}


def test_every_row_names_an_event_of_the_aggregate_and_every_event_has_a_row():
    assert BOOKING_SAGA.aggregate == BookingSaga.__qualname__
    assert set(saga_event_classes()) == BOOKING_SAGA.events


def test_moves_after_the_start_are_made_by_the_tables_mutator():
    for name, cls in saga_event_classes().items():
        assert issubclass(cls, SagaMove) != BOOKING_SAGA.starts(name), name


def test_the_timer_knows_every_stored_topic_of_the_saga():
    assert set(SAGA_EVENT_BY_TOPIC.values()) == BOOKING_SAGA.events
    assert all(topic.startswith("process_managers.booking_saga:BookingSaga.") for topic in SAGA_EVENT_BY_TOPIC)


def test_every_state_is_reached_from_the_start():
    reached = {move.target for move in BOOKING_SAGA.moves if move.source is None}
    while grown := {m.target for m in BOOKING_SAGA.moves if m.source in reached} - reached:
        reached |= grown
    assert reached == set(SagaState)


def test_every_open_state_can_be_compensated_and_releases_what_it_holds():
    rejections = {move.source: move for move in BOOKING_SAGA.moves_of("Rejected")}
    assert set(rejections) == OPEN_STATES
    assert not rejections[SagaState.HOLDING_SLOT].releases_slot
    assert all(rejections[state].releases_slot for state in OPEN_STATES - {SagaState.HOLDING_SLOT})


def test_one_row_per_state_and_event_and_rows_of_one_event_tell_apart_by_what_they_record():
    keys = [(move.source, move.event) for move in BOOKING_SAGA.moves]
    assert len(keys) == len(set(keys))
    for event in BOOKING_SAGA.events:
        moves = BOOKING_SAGA.moves_of(event)
        # The status read model does not know the state: several rows either append the same steps
        # (the state only decides the move) or each names a different step it fails or abandons (the
        # event says which).
        same_steps = len({move.steps for move in moves}) == 1
        ended_steps = [move.ended_step for move in moves]
        assert same_steps or len(set(ended_steps)) == len(moves), event


def test_only_open_states_are_left_and_final_states_only_by_compensation():
    for move in BOOKING_SAGA.moves:
        if move.source is not None and move.source not in OPEN_STATES:
            assert move.compensation and not move.command, move
