"""Each saga's table and its aggregate describe one state machine, and the table is whole: the booking
saga's and the reschedule saga's, held to the same rules."""

from __future__ import annotations

import pytest

from domain.booking_saga_table import BOOKING_SAGA, OPEN_STATES, SagaState, SagaTable
from domain.reschedule_saga_table import RESCHEDULE_SAGA
from process_managers.booking_saga import SAGA_EVENT_BY_TOPIC, BookingSaga, SagaMove, TableSaga
from process_managers.reschedule_saga import RESCHEDULE_EVENT_BY_TOPIC, RescheduleSaga

BASES = {"Event", "Created"}
"""The event base classes the library makes for each aggregate."""
SAGAS = [(BookingSaga, BOOKING_SAGA, SAGA_EVENT_BY_TOPIC), (RescheduleSaga, RESCHEDULE_SAGA, RESCHEDULE_EVENT_BY_TOPIC)]
each_saga = pytest.mark.parametrize(("saga", "table", "topics"), SAGAS, ids=["booking", "reschedule"])


def saga_event_classes(saga: type[TableSaga]) -> dict[str, type]:
    """The events the saga records."""
    return {name: cls for name, cls in vars(saga).items()
            if isinstance(cls, type) and issubclass(cls, saga.Event) and name not in BASES}


@each_saga
def test_every_row_names_an_event_of_the_aggregate_and_every_event_has_a_row(saga, table, topics):
    assert table.aggregate == saga.__qualname__ and saga.table is table
    assert set(saga_event_classes(saga)) == table.events


@each_saga
def test_moves_after_the_start_are_made_by_the_tables_mutator(saga, table, topics):
    for name, cls in saga_event_classes(saga).items():
        assert issubclass(cls, SagaMove) != table.starts(name), name


@each_saga
def test_the_timer_knows_every_stored_topic_of_the_saga(saga, table, topics):
    assert set(topics.values()) == table.events
    assert all(topic.startswith(f"{saga.__module__}:{saga.__qualname__}.") for topic in topics)


@each_saga
def test_every_state_is_reached_from_the_start(saga, table, topics):
    reached = {move.target for move in table.moves if move.source is None}
    while grown := {m.target for m in table.moves if m.source in reached} - reached:
        reached |= grown
    assert reached == table.states


def test_only_the_reschedule_waits_for_a_move():
    assert BOOKING_SAGA.states == set(SagaState) - {SagaState.MOVING}
    assert RESCHEDULE_SAGA.states == set(SagaState)


@each_saga
def test_every_open_state_can_be_compensated_and_releases_what_it_holds(saga, table, topics):
    rejections = {move.source: move for move in table.moves_of("Rejected")}
    assert set(rejections) >= OPEN_STATES
    assert not rejections[SagaState.HOLDING_SLOT].releases_slot
    assert all(rejections[state].releases_slot for state in set(rejections) - {SagaState.HOLDING_SLOT})


@each_saga
def test_a_cancellation_stops_the_saga_in_every_state_it_waits_in(saga, table, topics):
    waiting = {move.source for move in table.moves if move.source is not None} - {
        SagaState.COMPLETED, SagaState.REJECTED}
    cancellations = {move.source: move for move in table.moves_of("Cancelled")}
    assert set(cancellations) == waiting
    assert all(move.releases_slot and move.target is SagaState.CANCELLED for move in cancellations.values())


@each_saga
def test_one_row_per_state_and_event_and_rows_of_one_event_tell_apart_by_what_they_record(saga, table, topics):
    keys = [(move.source, move.event) for move in table.moves]
    assert len(keys) == len(set(keys))
    for event in table.events:
        moves = table.moves_of(event)
        # The status read model does not know the state: several rows either append the same steps
        # (the state only decides the move) or each names a different step it fails or abandons (the
        # event says which).
        same_steps = len({move.steps for move in moves}) == 1
        ended_steps = [move.ended_step for move in moves]
        assert same_steps or len(set(ended_steps)) == len(moves), event


@each_saga
def test_final_states_are_left_only_by_compensation(saga, table: SagaTable, topics):
    for move in table.moves:
        if move.source in (SagaState.COMPLETED, SagaState.REJECTED, SagaState.CANCELLED):
            assert move.compensation and not move.command, move


def test_the_reschedule_touches_the_original_booking_only_once_the_consultation_moved():
    """Every row before the move releases only the new slot; the old one only after ``Completed``."""
    for move in RESCHEDULE_SAGA.moves:
        assert ("release_old_slot" in {step.name for step in move.steps}) == (move.event == "Completed"), move
