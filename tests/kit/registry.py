"""One fake of the booking saga's ``RegistryPort``, configured per test.

Each ``booking_eligibility(patient_id, doctor_id)`` call, in this order:

1. waits for ``gate`` (open unless built with ``gated=True``; ``open()`` opens it) — to hold a
   booking in flight until the test lets the saga decide;
2. is counted (``calls``) and recorded (``asked``);
3. fails with ``failure`` (a ``RuntimeError`` unless told otherwise) while ``failures_left`` > 0
   (each failure uses one up), while ``failing`` is set, or for a patient in ``failing_patients``
   — a registry or a worker that crashes mid-call;
4. answers: a refusal for a patient in ``refused`` (a set of patients, refused as not eligible, or
   a mapping of patient to reason); else the real registry's answer when built with ``inner=``;
   else ``answer`` (allowed unless told otherwise), raised if it is an exception (e.g.
   ``RegistryUnavailableError``).

Every attribute may be changed while a test runs; calls from several threads are counted safely.
"""

from __future__ import annotations

import threading
from collections.abc import Collection, Mapping
from uuid import UUID

from domain.values import RejectionReason
from process_managers.ports import Eligibility, RegistryPort

GATE_TIMEOUT = 10.0


class FakeRegistry:
    """A ``RegistryPort``: allows everyone unless configured otherwise (see the module's docstring)."""

    def __init__(self, answer: Eligibility | Exception | None = None, *, inner: RegistryPort | None = None,
                 refused: Collection[UUID] | Mapping[UUID, RejectionReason] = (), gated: bool = False,
                 failure: Exception | None = None) -> None:
        self.answer: Eligibility | Exception = answer if answer is not None else Eligibility.ok()
        self.inner = inner
        self.refused = refused
        self.failure = failure or RuntimeError("scripted registry failure")
        self.failures_left = 0
        self.failing = False
        self.failing_patients: set[UUID] = set()
        self.gate = threading.Event()
        if not gated:
            self.gate.set()
        self.asked: list[tuple[UUID, UUID]] = []
        self.calls = 0
        self._lock = threading.Lock()

    # Configuring ----------------------------------------------------------------------------

    def fail_next(self, count: int = 1, failure: Exception | None = None) -> FakeRegistry:
        """The next ``count`` calls fail (then it answers again)."""
        self.failures_left = count
        if failure is not None:
            self.failure = failure
        return self

    def open(self) -> None:
        """Let held and future calls through."""
        self.gate.set()

    def reset(self) -> None:
        """Forget the calls and the scripted failures (for a fake shared by several tests)."""
        with self._lock:
            self.asked.clear()
            self.calls = 0
            self.failures_left = 0
            self.failing = False
            self.failing_patients = set()

    # The port ------------------------------------------------------------------------------

    def booking_eligibility(self, patient_id: UUID, doctor_id: UUID) -> Eligibility:
        assert self.gate.wait(GATE_TIMEOUT), "the test never opened the registry's gate"
        with self._lock:
            self.calls += 1
            self.asked.append((patient_id, doctor_id))
            scripted = self.failures_left > 0
            self.failures_left -= scripted
        if scripted or self.failing or patient_id in self.failing_patients:
            raise self.failure
        if patient_id in self.refused:
            reason = (self.refused[patient_id] if isinstance(self.refused, Mapping)
                      else RejectionReason.PATIENT_NOT_ELIGIBLE)
            return Eligibility.refused(reason)
        if self.inner is not None:
            return self.inner.booking_eligibility(patient_id, doctor_id)
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer

    def __repr__(self) -> str:
        return f"FakeRegistry(calls={self.calls}, answer={self.answer!r}, inner={self.inner!r})"

