"""Wiring crypto-shredding: which key store, which key-encryption key, the mappers that use them.

One ``SubjectKeys`` per process is shared by every context's application, so a follower
(the booking saga, the projections) opens what a leader sealed.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from eventsourcing.persistence import Mapper, Transcoder

from application.settings import Settings, SettingsError
from infrastructure.personal_data.keys import KeyEncryptionKey, MemoryKeyStore, SubjectKeys, SubjectKeyStore
from infrastructure.personal_data.mapper import PersonalDataMapper
from infrastructure.personal_data.postgres import PostgresKeyStore
from infrastructure.personal_data.sqlite import SQLiteKeyStore

DEV_KEK_FILE = "data-kek"
KEY_STORE_FILE = "keys.sqlite"

MapperFactory = Callable[[Transcoder], Mapper[Any]]


def open_subject_keys(settings: Settings, create_table: bool | None = None, watch: bool = False) -> SubjectKeys:
    """The process's data keys: the store for ``settings.persistence`` and the KEK. ``watch``: a serving
    process forgets a key the moment any process erases its subject (PostgreSQL tells it)."""
    store = key_store(settings)
    create = settings.create_tables if create_table is None else create_table
    if create or not isinstance(store, PostgresKeyStore):  # a local file or memory: no migration step
        store.create_tables()
    keys = SubjectKeys(store, key_encryption_key(settings), cache_seconds=settings.data_key_cache_seconds)
    if watch:
        keys.watch()
    return keys


def mapper_factory(keys: SubjectKeys) -> MapperFactory:
    """What each application builds its mapper (and its followers' mappers) with."""
    return lambda transcoder: PersonalDataMapper(transcoder, keys)


def key_store(settings: Settings) -> SubjectKeyStore:
    """SQLite file in the data dir (sqlite), a table beside the events (postgres), memory (memory)."""
    if settings.persistence == "memory":
        return MemoryKeyStore()
    if settings.persistence == "postgres":
        return PostgresKeyStore.for_database(settings.database)
    url = settings.database.get("SQLALCHEMY_URL", "")
    if settings.persistence == "sqlalchemy" and url.startswith("postgresql"):
        return PostgresKeyStore.for_sqlalchemy_url(url, settings.database.get("SQLALCHEMY_SCHEMA"))
    return SQLiteKeyStore(settings.data_dir / KEY_STORE_FILE)


def key_encryption_key(settings: Settings) -> KeyEncryptionKey:
    """``CLINIC_DATA_KEK`` (or ``_FILE``); else, for development, one generated into the data dir."""
    if settings.data_kek:
        try:
            return KeyEncryptionKey.from_text(settings.data_kek)
        except ValueError as error:
            raise SettingsError(f"CLINIC_DATA_KEK: {error}") from None
    if settings.persistence == "memory":
        return KeyEncryptionKey.from_text(KeyEncryptionKey.generate_text())  # nothing outlives the process
    return KeyEncryptionKey.from_text(load_or_create_dev_key(settings.data_dir))


def load_or_create_dev_key(data_dir: Path, file_name: str = DEV_KEK_FILE) -> str:
    """A development key (32 random bytes, URL-safe base64) in ``<data_dir>/<file_name>`` (the KEK:
    ``data-kek``), created once, readable by its owner only.

    Written to a temporary file and hard-linked into place, so processes starting together
    all read the same complete key.
    """
    path = data_dir / file_name
    if not path.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        temporary = data_dir / f".{file_name}.{os.getpid()}.{os.urandom(4).hex()}"
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as file:
            file.write(KeyEncryptionKey.generate_text())
        try:
            os.link(temporary, path)
        except FileExistsError:
            pass  # another process made it first: use theirs
        finally:
            temporary.unlink()
    return path.read_text().strip()
