"""Event serialisation: the library's JSON mapper against a typed msgspec mapper.

Run from the repository root:  .venv/bin/python benchmarks/serialisation.py

Both mappers see the same events, from real aggregate commands, in the same run.
Compare the msgspec/json RATIOS, not the absolute rates: these machines are noisy.
Candidates:
  json     the application's own mapper: eventsourcing ``Mapper`` + ``JSONTranscoder``
           (UUIDAsHex, DatetimeAsISO, DecimalAsStr, our DateAsISO).
  msgspec  ``MsgspecMapper`` below: typed per event class, a faithful drop-in (class_version
           and upcasting, compressor and cipher hooks, id conversion, error type).
  msgspec-no-upcast  the same without the class_version check: NOT a drop-in, shown only
           to measure what keeping upcasting costs.
"""

from __future__ import annotations

import dataclasses
import gc
import importlib.metadata
import platform
import tempfile
import time
import typing
from collections.abc import Callable, Hashable, Sequence
from datetime import UTC, date, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any, cast
from uuid import uuid4

import msgspec
from eventsourcing.compressor import ZlibCompressor
from eventsourcing.cryptography import AESCipher
from eventsourcing.persistence import (
    Mapper,
    MapperDeserialisationError,
    StoredEvent,
    find_id_convertor,
)
from eventsourcing.utils import Environment, get_topic, resolve_topic

from application.bootstrap import build_applications
from application.registry import RegistryApplication
from application.settings import Settings
from domain.consultation import Consultation
from domain.metadata import caused_by, event_metadata
from domain.patient import Patient
from domain.slot import Slot, slot_id_for
from process_managers.booking_saga import BookingSaga

REPEATS = 5  # rounds; the best one counts
PASSES = 10  # passes over the events per round
CHUNK = 50  # events per turn when candidates take turns
IN_APP_CALLS = 1000
BOOKINGS = 200  # each booking contributes the 10 events of the happy path


# Candidate (b): a typed msgspec mapper --------------------------------------------

_NOT_STATE = ("originator_id", "originator_version")  # kept in StoredEvent's own columns


@cache
def _schema(cls: type) -> tuple[type[msgspec.Struct], msgspec.json.Decoder, int]:
    """A msgspec Struct of the event class's stored fields, its decoder, its class_version."""
    hints = typing.get_type_hints(cls)
    fields: list[tuple[Any, ...]] = []
    for f in dataclasses.fields(cls):
        if f.name in _NOT_STATE:
            continue
        if f.default is not dataclasses.MISSING:
            fields.append((f.name, hints[f.name], f.default))
        elif f.default_factory is not dataclasses.MISSING:
            fields.append((f.name, hints[f.name], msgspec.field(default_factory=f.default_factory)))
        else:
            fields.append((f.name, hints[f.name]))
    class_version = getattr(cls, "class_version", 1)
    if class_version > 1:
        fields.append(("class_version", int, 1))
    struct = msgspec.defstruct(f"{cls.__qualname__}.State", fields, kw_only=True)
    return struct, msgspec.json.Decoder(struct), class_version


class MsgspecMapper(Mapper):
    """``Mapper`` with typed msgspec JSON in place of the transcoder (which it ignores).

    Same StoredEvent columns, same class_version/upcast_vX_vY protocol, same compressor
    and cipher hooks, same MapperDeserialisationError. Differences: the JSON inside
    ``state`` (UUIDs as canonical strings, datetimes as RFC 3339, no ``_type_`` wrappers),
    and upcasters see JSON values (str for UUID/datetime/date), not Python objects.
    """

    upcasting = True
    _encoder = msgspec.json.Encoder()
    _untyped = msgspec.json.Decoder()

    def to_stored_event(self, domain_event: Any) -> StoredEvent:
        cls = type(domain_event)
        state = dict(vars(domain_event))
        originator_id = state.pop("originator_id")
        originator_version = state.pop("originator_version")
        class_version = getattr(cls, "class_version", 1)
        if class_version > 1:
            state["class_version"] = class_version
        stored_state = self._encoder.encode(state)
        if self.compressor:
            stored_state = self.compressor.compress(stored_state)
        if self.cipher:
            stored_state = self.cipher.encrypt(stored_state)
        return StoredEvent(originator_id=originator_id, originator_version=originator_version,
                           topic=get_topic(cls), state=stored_state)

    def to_domain_event(self, stored_event: StoredEvent) -> Any:
        cls = resolve_topic(stored_event.topic)
        originator_id = find_id_convertor(cls, cast(Hashable, type(stored_event.originator_id)))(stored_event.originator_id)
        stored_state = stored_event.state
        try:
            if self.cipher:
                stored_state = self.cipher.decrypt(stored_state)
            if self.compressor:
                stored_state = self.compressor.decompress(stored_state)
            event_state = self._decode(cls, stored_state, originator_id, stored_event.originator_version)
        except Exception as e:
            msg = (f"Failed to deserialise state of stored event with topic '{stored_event.topic}', "
                   f"originator_id '{stored_event.originator_id}' and "
                   f"originator_version {stored_event.originator_version}: {e}")
            raise MapperDeserialisationError(msg) from e
        domain_event = object.__new__(cls)
        object.__setattr__(domain_event, "__dict__", event_state)
        return domain_event

    def _decode(self, cls: type, data: bytes, originator_id: Any, originator_version: int) -> dict[str, Any]:
        struct, decoder, class_version = _schema(cls)
        if class_version == 1 or not self.upcasting:
            state = msgspec.structs.asdict(decoder.decode(data))
            state.pop("class_version", None)
        else:
            # Typed first (one parse for current events); an older version, or one that no
            # longer fits the current schema, is decoded untyped, upcast, then typed.
            try:
                state = msgspec.structs.asdict(decoder.decode(data))
            except msgspec.ValidationError:
                state = {"class_version": 0}
            if state.pop("class_version") >= class_version:
                state["originator_id"], state["originator_version"] = originator_id, originator_version
                return state
            state = self._untyped.decode(data)
            state["originator_id"], state["originator_version"] = originator_id, originator_version
            from_version = state.pop("class_version", 1)
            if from_version >= class_version:
                decoder.decode(data)  # current version yet invalid: raise the validation error
            while from_version < class_version:
                getattr(cls, f"upcast_v{from_version}_v{from_version + 1}")(state)
                from_version += 1
            state = msgspec.structs.asdict(msgspec.convert(state, type=struct))
            state.pop("class_version", None)
        state["originator_id"], state["originator_version"] = originator_id, originator_version
        return state


class MsgspecMapperNoUpcast(MsgspecMapper):
    """Reference only: typed decode with no class_version check (would break upcasting)."""

    upcasting = False


# A realistic mix of our events ------------------------------------------------------


def one_booking(t0: datetime) -> list[Any]:
    """The events of one happy-path booking, in the order the contexts record them."""
    doctor_id, admin = uuid4(), f"admin:{uuid4()}"
    start = t0 + timedelta(days=7)
    events: list[Any] = []
    with event_metadata(correlation_id=str(uuid4()), actor=admin):
        patient = Patient(name="Ada Lovelace", email="ada@example.org", birth_date=date(1985, 12, 10), consent=True)
        slot = Slot(doctor_id=doctor_id, start=start, duration_minutes=20)
    with event_metadata(correlation_id=str(uuid4()), actor=f"patient:{patient.id}"):
        consultation = Consultation(patient_id=patient.id, doctor_id=doctor_id, start=start,
                                    reason="Persistent cough for two weeks")
    [requested] = consultation.collect_events()
    with caused_by(requested, "service:booking"):
        saga = BookingSaga(consultation_id=consultation.id, patient_id=patient.id, doctor_id=doctor_id,
                           slot_id=slot_id_for(doctor_id, start), deadline=t0 + timedelta(seconds=30))
    [saga_started] = saga.collect_events()
    with caused_by(saga_started, "service:scheduling"):
        slot.hold(saga.id, expires_at=saga.deadline, now=t0)
    slot_opened, slot_held = slot.collect_events()
    with caused_by(slot_held, "service:booking"):
        saga.record_slot_held()
        saga.record_registrants_valid()
    saga_held, saga_validated = saga.collect_events()
    with caused_by(saga_validated, "service:scheduling"):
        slot.book(saga.id)
    [slot_booked] = slot.collect_events()
    with caused_by(slot_booked, "service:booking"):
        saga.record_slot_booked()
    [saga_completed] = saga.collect_events()
    with caused_by(saga_completed, "service:consultations"):
        consultation.confirm()
    [confirmed] = consultation.collect_events()
    events += patient.collect_events()
    events += [slot_opened, requested, saga_started, slot_held, saga_held, saga_validated, slot_booked,
               saga_completed, confirmed]
    return events


def build_events() -> list[Any]:
    t0 = datetime(2027, 1, 4, 8, 0, tzinfo=UTC)
    return [e for _ in range(BOOKINGS) for e in one_booking(t0)]


# Checks ---------------------------------------------------------------------------


def check_round_trips(name: str, mapper: Mapper, events: Sequence[Any]) -> None:
    for e in events:
        back = mapper.to_domain_event(mapper.to_stored_event(e))
        assert type(back) is type(e) and back == e, (name, e, back)
        assert vars(back) == vars(e), (name, vars(e), vars(back))  # every field, metadata included


def check_not_interchangeable(json_mapper: Mapper, msgspec_mapper: Mapper, events: Sequence[Any]) -> str:
    refused = misread = 0
    for e in events:
        as_json, as_msgspec = json_mapper.to_stored_event(e), msgspec_mapper.to_stored_event(e)
        assert as_json.state != as_msgspec.state, e
        for reader, stored in ((msgspec_mapper, as_json), (json_mapper, as_msgspec)):
            try:
                crossed = reader.to_domain_event(stored)
            except Exception:  # noqa: BLE001 - refusing the other format is the expected outcome
                refused += 1
                continue
            assert crossed != e, f"{type(reader).__name__} read the other format: {e}"
            misread += 1
    return f"cross-reading: {refused} refused, {misread} misread (unequal), 0 equal"


def legacy_patient_registered(mapper: Mapper, event: Patient.Registered) -> StoredEvent:
    """``event`` as version 1 stored it (no ``consent``, no ``class_version``), in mapper's format."""
    stored = mapper.to_stored_event(event)
    if isinstance(mapper, MsgspecMapper):
        state = msgspec.json.decode(stored.state)
        del state["consent"], state["class_version"]
        data = msgspec.json.encode(state)
    else:
        state = mapper.transcoder.decode(stored.state)
        del state["consent"], state["class_version"]
        data = mapper.transcoder.encode(state)
    return dataclasses.replace(stored, state=data)


def check_upcasting(mapper: Mapper, event: Patient.Registered) -> None:
    back = mapper.to_domain_event(legacy_patient_registered(mapper, event))
    assert type(back) is type(event) and vars(back) == vars(event) | {"consent": False}, (type(mapper).__name__, back)


# Timing ---------------------------------------------------------------------------


def best_rates(candidates: dict[str, tuple[Callable[[Any], object], Sequence[Any]]]) -> dict[str, float]:
    """Items per second for each candidate ``(fn, items)``: best of REPEATS rounds, timeit-style.

    A round is PASSES passes over the items. Candidates take turns every CHUNK items
    (json, msgspec, json, msgspec, ...), so a burst of load on a noisy machine hits
    every candidate alike and the ratios stay comparable. GC is off while timing, as in timeit.
    """
    count = len(next(iter(candidates.values()))[1])
    assert all(len(items) == count for _, items in candidates.values())
    chunks = [{name: items[i:i + CHUNK] for name, (_, items) in candidates.items()} for i in range(0, count, CHUNK)]
    best = dict.fromkeys(candidates, float("inf"))
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        for _ in range(REPEATS):
            spent = dict.fromkeys(candidates, 0.0)
            for _ in range(PASSES):
                for chunk in chunks:
                    for name, (fn, _) in candidates.items():
                        t = time.perf_counter()
                        fn(chunk[name])
                        spent[name] += time.perf_counter() - t
            best = {name: min(best[name], spent[name]) for name in candidates}
    finally:
        if gc_was_enabled:
            gc.enable()
    return {name: count * PASSES / seconds for name, seconds in best.items()}


class MsgspecRegistry(RegistryApplication):
    """The registry with candidate (b) as its mapper (same name, so the same env and tables)."""

    def construct_mapper(self) -> Mapper:
        return MsgspecMapper(transcoder=self.construct_transcoder())


def in_application(persistence: str) -> dict[str, dict[str, float]]:
    """Calls/s of RegistryApplication.save(new Patient) and repository.get(id), one event each.

    Context for the mapper figures: how much of a real save or load the mapper is.
    """
    best = {name: {"save": float("inf"), "get": float("inf")} for name in ("json", "msgspec")}
    with tempfile.TemporaryDirectory() as json_dir, tempfile.TemporaryDirectory() as msgspec_dir:
        apps = {name: cls(env=Settings(persistence=persistence, data_dir=Path(tmp)).eventsourcing_env(cls.name))
                for name, cls, tmp in (("json", RegistryApplication, json_dir),
                                       ("msgspec", MsgspecRegistry, msgspec_dir))}
        try:
            for _ in range(REPEATS):
                patients = {name: [Patient(name="Ada Lovelace", email="ada@example.org", birth_date=date(1985, 12, 10),
                                           consent=True) for _ in range(IN_APP_CALLS)] for name in apps}
                for op in ("save", "get"):
                    spent = dict.fromkeys(apps, 0.0)
                    for i in range(IN_APP_CALLS):  # the two applications take turns, call by call
                        for name, app in apps.items():
                            p = patients[name][i]
                            t = time.perf_counter()
                            app.save(p) if op == "save" else app.repository.get(p.id)
                            spent[name] += time.perf_counter() - t
                    for name in apps:
                        best[name][op] = min(best[name][op], spent[name])
        finally:
            for app in apps.values():
                app.close()
    return {name: {op: IN_APP_CALLS / seconds for op, seconds in ops.items()} for name, ops in best.items()}


def encoding(mapper: Mapper) -> Callable[[Sequence[Any]], list[StoredEvent]]:
    return lambda chunk: [mapper.to_stored_event(e) for e in chunk]


def decoding(mapper: Mapper) -> Callable[[Sequence[StoredEvent]], list[Any]]:
    return lambda chunk: [mapper.to_domain_event(x) for x in chunk]


def main() -> None:
    apps = build_applications(Settings(persistence="memory"))
    try:
        json_mapper = apps[RegistryApplication.name].mapper  # the application's own: JSONTranscoder
    finally:
        for app in apps.values():
            app.close()
    assert type(json_mapper) is Mapper, type(json_mapper)
    mappers: dict[str, Mapper] = {
        "json": json_mapper,
        "msgspec": MsgspecMapper(transcoder=json_mapper.transcoder),
        "msgspec-no-upcast": MsgspecMapperNoUpcast(transcoder=json_mapper.transcoder),
    }
    events = build_events()
    kinds = sorted({type(e).__qualname__ for e in events})

    for name in ("json", "msgspec"):
        check_round_trips(name, mappers[name], events)
        check_upcasting(mappers[name], events[0])
    cipher = AESCipher(Environment(env={"CIPHER_KEY": AESCipher.create_key(16)}))
    check_round_trips("msgspec+zlib+aes", MsgspecMapper(json_mapper.transcoder, ZlibCompressor(), cipher), events)
    check_round_trips("msgspec-no-upcast", mappers["msgspec-no-upcast"], events)
    crossed = check_not_interchangeable(json_mapper, mappers["msgspec"], events)
    print(f"checks passed: {len(events)} events of {len(kinds)} classes ({', '.join(kinds)}) round-trip equal "
          "through both mappers (metadata included); Patient.Registered v1 upcasts through both; "
          f"msgspec also through zlib+AES; every stored state differs between the formats; {crossed}.")

    stored = {name: [m.to_stored_event(e) for e in events] for name, m in mappers.items()}
    encode = best_rates({name: (encoding(m), events) for name, m in mappers.items()})
    decode = best_rates({name: (decoding(m), stored[name]) for name, m in mappers.items()})
    size = {name: sum(len(x.state) for x in s) / len(s) for name, s in stored.items()}
    legacy = best_rates({name: (decoding(mappers[name]),
                                [legacy_patient_registered(mappers[name], events[0])] * len(events))
                         for name in ("json", "msgspec")})
    in_app = {persistence: in_application(persistence) for persistence in ("memory", "sqlite")}

    print(f"\nPython {platform.python_version()}, eventsourcing {importlib.metadata.version('eventsourcing')}, "
          f"msgspec {msgspec.__version__}, {platform.machine()}; "
          f"{len(events)} events ({BOOKINGS} bookings x 10); best of {REPEATS} rounds of {PASSES} passes, "
          f"candidates taking turns every {CHUNK} events")
    print(f"{'mapper':<19}{'encode ev/s':>13}{'decode ev/s':>13}{'bytes/event':>13}")
    for name in mappers:
        print(f"{name:<19}{encode[name]:>13,.0f}{decode[name]:>13,.0f}{size[name]:>13.1f}")
    for name in ("msgspec", "msgspec-no-upcast"):
        print(f"RATIO {name}/json: encode {encode[name] / encode['json']:.2f}x  "
              f"decode {decode[name] / decode['json']:.2f}x  size {size[name] / size['json']:.2f}x")
    print(f"RATIO msgspec/msgspec-no-upcast decode (below 1 = what keeping upcasting costs): "
          f"{decode['msgspec'] / decode['msgspec-no-upcast']:.2f}x")
    print(f"legacy v1 Patient.Registered decode+upcast ev/s: json {legacy['json']:,.0f}  "
          f"msgspec {legacy['msgspec']:,.0f}  RATIO msgspec/json {legacy['msgspec'] / legacy['json']:.2f}x")
    print(f"in an application (RegistryApplication, 1-event Patient, {IN_APP_CALLS} calls taking turns, best of {REPEATS}):")
    for persistence, r in in_app.items():
        j, m = r["json"], r["msgspec"]
        print(f"  {persistence:<7} save/s json {j['save']:>8,.0f} msgspec {m['save']:>8,.0f} "
              f"RATIO {m['save'] / j['save']:.2f}x   get/s json {j['get']:>8,.0f} msgspec {m['get']:>8,.0f} "
              f"RATIO {m['get'] / j['get']:.2f}x")


if __name__ == "__main__":
    main()
