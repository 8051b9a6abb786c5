"""What every subject key store promises, on SQLite, PostgreSQL (a real server) and memory."""

from __future__ import annotations

import threading
import uuid
from datetime import UTC, datetime

import pytest

from infrastructure.personal_data.keys import KeyEncryptionKey, MemoryKeyStore, SubjectKeys
from infrastructure.personal_data.postgres import PostgresKeyStore
from infrastructure.personal_data.sqlite import SQLiteKeyStore
from tests import services

NOW = datetime(2027, 1, 4, 9, tzinfo=UTC)


def postgres_conninfo() -> str:
    return (f"host={services.POSTGRES_HOST} port={services.POSTGRES_PORT} dbname={services.POSTGRES_DB} "
            f"user={services.POSTGRES_USER}")


@pytest.fixture(params=["sqlite", "postgres", "memory"])
def make_store(request, tmp_path):
    """Stores of one kind over the same data (two processes' views of it), tables created."""
    made = []

    def make():
        if request.param == "sqlite":
            store = SQLiteKeyStore(tmp_path / "keys.sqlite")
        elif request.param == "postgres":
            store = PostgresKeyStore(postgres_conninfo(), request.getfixturevalue("postgres_schema"))
        else:
            store = made[0] if made else MemoryKeyStore()
        store.create_tables()
        made.append(store)
        return store

    yield make
    for store in made:
        store.close()


@pytest.fixture
def store(make_store):
    return make_store()


def test_a_subjects_first_key_is_kept_and_a_second_one_ignored(store):
    store.add_key("s1", "kek-a", b"wrapped-1", NOW)
    store.add_key("s1", "kek-a", b"wrapped-2", NOW)
    record = store.record("s1")
    assert (record.kek_id, record.wrapped_key, record.erased) == ("kek-a", b"wrapped-1", False)
    assert store.record("nobody") is None


def test_erasing_destroys_the_key_once_and_leaves_a_tombstone(store):
    store.add_key("s1", "kek-a", b"wrapped-1", NOW)
    assert store.erase("s1", NOW) is True
    assert store.erase("s1", NOW) is False
    record = store.record("s1")
    assert (record.kek_id, record.wrapped_key, record.erased_at) == (None, None, NOW)


def test_no_key_is_made_for_an_erased_subject(store):
    assert store.erase("never-had-one", NOW) is True  # registered before encryption: the tombstone still counts
    store.add_key("never-had-one", "kek-a", b"late", NOW)
    assert store.record("never-had-one").wrapped_key is None


def test_links_are_kept_first_come(store):
    store.link("agg-1", "s1")
    store.link("agg-1", "s2")
    assert (store.subject_of("agg-1"), store.subject_of("agg-2")) == ("s1", None)


def test_many_links_at_once_are_kept_first_come_too(store):
    store.link("c-1", "p-1")
    store.link_many([("c-1", "p-9"), ("c-2", "p-2"), ("c-3", "p-3"), ("c-2", "p-8")])
    assert [store.subject_of(c) for c in ("c-1", "c-2", "c-3")] == ["p-1", "p-2", "p-3"]
    store.link_many([])
    assert store.subject_of("c-4") is None


def test_a_second_connection_sees_what_the_first_wrote_and_an_erasure_through_it(make_store):
    first, second = make_store(), make_store()
    kek = KeyEncryptionKey.from_text(KeyEncryptionKey.generate_text())
    writer, reader = SubjectKeys(first, kek, cache_seconds=0), SubjectKeys(second, kek, cache_seconds=0)
    key = writer.key_for_writing("s1")
    assert reader.key_for_reading("s1") == key
    reader.erase("s1")
    assert writer.key_for_reading("s1") is None and writer.key_for_writing("s1") is None


def test_concurrent_first_writes_agree_on_one_key(make_store):
    kek = KeyEncryptionKey.from_text(KeyEncryptionKey.generate_text())
    stores = [make_store() for _ in range(4)]
    subject, keys, barrier = uuid.uuid4().hex, [], threading.Barrier(len(stores))

    def write(store):
        barrier.wait()
        keys.append(SubjectKeys(store, kek, cache_seconds=0).key_for_writing(subject))

    threads = [threading.Thread(target=write, args=(s,)) for s in stores]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(keys) == 4 and len(set(keys)) == 1


def test_the_store_reopens_after_close(store):
    store.add_key("s1", "kek-a", b"wrapped-1", NOW)
    store.close()
    assert store.record("s1").wrapped_key == b"wrapped-1"


def test_sqlite_erasure_leaves_no_copy_of_the_wrapped_key_in_its_files(tmp_path):
    store = SQLiteKeyStore(tmp_path / "keys.sqlite")
    store.create_tables()
    wrapped = bytes(range(256)) * 2  # distinctive bytes
    for n in range(50):
        store.add_key(f"other-{n}", "kek-a", b"x" * 60, NOW)
    store.add_key("s1", "kek-a", wrapped, NOW)
    assert any(wrapped in p.read_bytes() for p in tmp_path.iterdir())
    store.erase("s1", NOW)
    assert [p.name for p in tmp_path.iterdir() if wrapped in p.read_bytes()] == []
    store.close()


def test_an_erasure_in_one_process_is_unreadable_in_another_within_a_second(request):
    """Two processes' views of one PostgreSQL key store: the reader's cached key goes as the erasure commits
    (told by ``NOTIFY``), long before its cache would expire."""
    from tests.kit import eventually

    schema = request.getfixturevalue("postgres_schema")
    kek = KeyEncryptionKey(b"k" * 32)
    reading_store, erasing_store = PostgresKeyStore(postgres_conninfo(), schema), PostgresKeyStore(
        postgres_conninfo(), schema)
    reading_store.create_tables()
    reader = SubjectKeys(reading_store, kek, cache_seconds=3600)
    eraser = SubjectKeys(erasing_store, kek, cache_seconds=3600)
    try:
        reader.watch()
        assert reading_store.hearing_erasures.wait(10), "the reader listening for erasures"
        subject = str(uuid.uuid4())
        assert reader.key_for_writing(subject) is not None  # cached for an hour
        eraser.erase(subject)
        eventually(lambda: reader.key_for_reading(subject) is None, timeout=1.0,
                   what="the reader to forget the erased subject's key")
    finally:
        reader.close()
        eraser.close()

