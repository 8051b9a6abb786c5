"""Group commit: the saves of concurrent commands recorded in one transaction.

On PostgreSQL every save takes the application's event-table lock until its commit, so
concurrent single-aggregate saves queue behind each other and each pays its own commit
(docs/performance.md: 10 aggregates per save reached 4.86x the single-save rate). With
``CLINIC_GROUP_COMMIT=on`` a context's ``save`` goes through :class:`GroupCommit`:

- the first caller to find no commit under way becomes the *leader*: it takes every save
  waiting at that moment (at most ``max_batch``), its own included, and records them in one
  transaction (one ``ProcessingEvent``); nobody waits for a timer, so an idle system commits
  each save at once;
- callers arriving meanwhile wait; when the leader is done it wakes each of its batch with its
  own result, and hands the lead to the oldest waiting caller, which commits the next batch;
- if the batch's transaction fails (one command's aggregate conflicts, say), nothing of it was
  recorded: each save of the batch is then recorded alone, so only the failing one raises, in
  its own caller, and the others succeed as if they had never been grouped.

The crypto-shredding mapper's subject links of a batch are written in one transaction before its
events (a link without its events is harmless; events without their link are not). Each caller's
pending events are collected in its own thread before it waits, exactly as
``Application.save`` would, and each gets the recordings of its own events only. The batch is
one append span and one ``store_observer`` call, in the leader's trace. Saves with keyword
arguments (none of ours) bypass the group.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from eventsourcing.application import ProcessingEvent
from eventsourcing.persistence import Recording

DEFAULT_MAX_BATCH = 64


@dataclass(eq=False)
class _Save:
    """One caller's save: its events, its result, and the event it waits on."""

    processing_event: ProcessingEvent[Any]
    woken: threading.Event = field(default_factory=threading.Event)
    leads: bool = False
    done: bool = False
    recordings: list[Recording[Any]] = field(default_factory=list)
    error: BaseException | None = None


class GroupCommit:
    """Records the saves of concurrent callers of one application in shared transactions."""

    def __init__(self, app: Any, max_batch: int = DEFAULT_MAX_BATCH) -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        self.app = app
        self.max_batch = max_batch
        self._lock = threading.Lock()
        self._waiting: list[_Save] = []
        self._committing = False
        self.batches = 0
        """Transactions committed or attempted (tests and benchmarks read it)."""
        self.largest_batch = 0

    def save(self, *objs: Any) -> list[Recording[Any]]:
        """``Application.save(*objs)``, recorded with whatever other saves are waiting."""
        processing_event: ProcessingEvent[Any] = ProcessingEvent()
        processing_event.collect_events(*objs)
        mine = _Save(processing_event)
        batch: list[_Save] | None = None
        with self._lock:
            self._waiting.append(mine)
            if not self._committing:
                self._committing = mine.leads = True
                batch = self._take()  # no leader means nothing else waits: a batch of itself, at once
        while not mine.done:
            if mine.leads:
                self._lead(batch)
            else:
                mine.woken.wait()
                mine.woken.clear()
        if mine.error is not None:
            raise mine.error
        return mine.recordings

    def _take(self) -> list[_Save]:
        """The oldest waiting saves, at most ``max_batch`` (called holding the lock)."""
        batch, self._waiting = self._waiting[:self.max_batch], self._waiting[self.max_batch:]
        return batch

    def _lead(self, batch: list[_Save] | None = None) -> None:
        """Commit one batch (the leader's own save is in it), then pass the lead on or give it up.

        A successor takes its batch when it wakes: whatever queued while the last batch committed."""
        if batch is None:
            with self._lock:
                batch = self._take()
        try:
            self._commit(batch)
        except BaseException as error:  # e.g. KeyboardInterrupt mid-commit: no save of it may look successful
            for save in batch:
                if save.error is None and not save.recordings:
                    save.error = error
            raise
        finally:  # even on a BaseException, wake the batch and pass the lead on: nobody waits forever
            self._hand_over(batch)

    def _hand_over(self, batch: list[_Save]) -> None:
        with self._lock:
            successor = self._waiting[0] if self._waiting else None
            if successor is None:
                self._committing = False
            else:
                successor.leads = True
        for save in batch:
            save.done = True
            save.woken.set()
        if successor is not None:
            successor.woken.set()

    def _commit(self, batch: list[_Save]) -> None:
        self.batches += 1
        self.largest_batch = max(self.largest_batch, len(batch))
        if len(batch) == 1:
            self._record_alone(batch[0])
            return
        merged = _merged([save.processing_event for save in batch])
        try:
            self._link_subjects(merged)
            recordings = self._record(merged)
        except Exception:  # noqa: BLE001 - nothing of the batch was recorded: each save alone, below
            for save in batch:
                self._record_alone(save)
            return
        owner = {id(event): save for save in batch for event in save.processing_event.events}
        for recording in recordings:
            owner[id(recording.domain_event)].recordings.append(recording)

    def _link_subjects(self, processing_event: ProcessingEvent[Any]) -> None:
        """The crypto-shredding mapper's links (consultation → patient) of the whole batch in one
        transaction, before its events: else each is a transaction of its own, one after the other."""
        link_subjects = getattr(self.app.mapper, "link_subjects", None)
        if link_subjects is not None:
            link_subjects(processing_event.events)

    def _record_alone(self, save: _Save) -> None:
        try:
            save.recordings = self._record(save.processing_event)
        except Exception as error:  # noqa: BLE001 - handed to its own caller, raised there
            save.error = error

    def _record(self, processing_event: ProcessingEvent[Any]) -> list[Recording[Any]]:
        """What ``Application.save`` does once the events are collected."""
        recordings = self.app._record(processing_event)  # noqa: SLF001 - the library's own step
        self.app._take_snapshots(processing_event)  # noqa: SLF001
        self.app._notify(recordings)  # noqa: SLF001
        return recordings


def _merged(processing_events: list[ProcessingEvent[Any]]) -> ProcessingEvent[Any]:
    merged: ProcessingEvent[Any] = ProcessingEvent()
    for processing_event in processing_events:
        merged.events.extend(processing_event.events)
        merged.aggregates.update(processing_event.aggregates)
    return merged
