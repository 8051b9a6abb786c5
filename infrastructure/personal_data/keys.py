"""Per-subject data keys: the store port, wrapping with the key-encryption key, a cache.

A data key (AES-256) is made for a subject the first time one of their events is stored;
it is kept only wrapped by the key-encryption key (KEK). Erasing a subject destroys the
wrapped key and leaves a tombstone row (the pseudonymous id and when), so no key is ever
made for them again. A subject with no row at all is not "erased": it is a missing key
(a wrong or restored key store) and reading their data fails loudly.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

KEY_BYTES = 32
NONCE_BYTES = 12
CACHE_LIMIT = 100_000


class KeyStoreError(RuntimeError):
    """The key store cannot give a subject's key (misconfigured, wrong KEK, lost rows)."""


class DataKeyMissingError(KeyStoreError):
    """Data sealed for a subject the key store has never heard of (neither a key nor a tombstone)."""


class WrongKekError(KeyStoreError):
    """A data key was wrapped by another key-encryption key than this process has."""


@dataclass(frozen=True)
class KeyRecord:
    """One subject's row: the wrapped data key, or the tombstone of an erasure."""

    kek_id: str | None
    wrapped_key: bytes | None
    erased_at: datetime | None

    @property
    def erased(self) -> bool:
        """The key was destroyed."""
        return self.erased_at is not None


class SubjectKeyStore(Protocol):
    """Where wrapped data keys, erasure tombstones and aggregate → subject links persist."""

    def create_tables(self) -> None:
        """Create the tables if missing (idempotent)."""
        ...

    def add_key(self, subject_id: str, kek_id: str, wrapped_key: bytes, now: datetime) -> None:
        """Store a subject's first key; does nothing if the subject has a row (a key or a tombstone)."""
        ...

    def record(self, subject_id: str) -> KeyRecord | None:
        """The subject's row, or ``None`` if there is none."""
        ...

    def erase(self, subject_id: str, now: datetime) -> bool:
        """Destroy the subject's key, leaving a tombstone; ``False`` if it was already erased."""
        ...

    def link(self, aggregate_id: str, subject_id: str) -> None:
        """Remember that ``aggregate_id``'s events are about ``subject_id`` (idempotent)."""
        ...

    def link_many(self, links: Sequence[tuple[str, str]]) -> None:
        """``link`` each ``(aggregate_id, subject_id)``, all in one transaction (idempotent)."""
        ...

    def subject_of(self, aggregate_id: str) -> str | None:
        """The subject linked to ``aggregate_id``, or ``None``."""
        ...

    def close(self) -> None:
        """Release connections; the store reopens them if used again."""
        ...


class KeyEncryptionKey:
    """The secret that wraps every data key (``CLINIC_DATA_KEK``), with a short public id."""

    def __init__(self, secret: bytes) -> None:
        if len(secret) != KEY_BYTES:
            raise ValueError(f"a key-encryption key is {KEY_BYTES} bytes, not {len(secret)}")
        self._aead = AESGCM(secret)
        self.id = hashlib.sha256(b"clinic-kek-id|" + secret).hexdigest()[:16]

    @classmethod
    def from_text(cls, text: str) -> KeyEncryptionKey:
        """From 32 bytes as URL-safe base64 (what ``generate_text`` makes) or 64 hex digits."""
        text = text.strip()
        try:
            secret = bytes.fromhex(text) if len(text) == 2 * KEY_BYTES else base64.urlsafe_b64decode(text)
        except (ValueError, binascii.Error):
            raise ValueError("a key-encryption key is 32 bytes in URL-safe base64 or hex") from None
        return cls(secret)

    @staticmethod
    def generate_text() -> str:
        """A new random KEK, as URL-safe base64."""
        return base64.urlsafe_b64encode(os.urandom(KEY_BYTES)).decode()

    def wrap(self, subject_id: str, data_key: bytes) -> bytes:
        """``nonce || AES-GCM(data_key)``, bound to the subject."""
        nonce = os.urandom(NONCE_BYTES)
        return nonce + self._aead.encrypt(nonce, data_key, _wrap_aad(subject_id))

    def unwrap(self, subject_id: str, wrapped: bytes) -> bytes:
        """The data key inside ``wrapped``; ``KeyStoreError`` if it was not wrapped for this subject."""
        try:
            return self._aead.decrypt(wrapped[:NONCE_BYTES], wrapped[NONCE_BYTES:], _wrap_aad(subject_id))
        except InvalidTag:
            raise KeyStoreError(f"the data key of subject {subject_id} does not unwrap (tampered?)") from None


def _wrap_aad(subject_id: str) -> bytes:
    return b"clinic-data-key|" + subject_id.encode()


class SubjectKeys:
    """The data keys the mapper uses: made on first write, unwrapped, cached for ``cache_seconds``.

    A cached key lets this process read a subject's data for at most ``cache_seconds`` after
    another process erased them (this process's own erasures drop it at once); where the store tells
    erasures (PostgreSQL), ``watch`` drops it as soon as the erasure commits. Erasures and links never
    change back, so they are cached for good.
    """

    def __init__(self, store: SubjectKeyStore, kek: KeyEncryptionKey, cache_seconds: float = 5.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.store = store
        self.kek = kek
        self.cache_seconds = cache_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._keys: dict[str, tuple[bytes, float]] = {}
        self._erased: set[str] = set()
        self._links: dict[str, str] = {}
        self._stop_watching: Callable[[], None] | None = None

    def watch(self) -> None:
        """Forget a subject's key the moment any process erases them, if the store can tell (else the
        cache's ``cache_seconds`` bound it)."""
        watch_erasures = getattr(self.store, "watch_erasures", None)
        if watch_erasures is not None and self._stop_watching is None:
            self._stop_watching = watch_erasures(self.forget)

    def forget(self, subject_id: str | None) -> None:
        """Drop the subject's cached key, now erased (``None``: every cached key, erasures unknown)."""
        with self._lock:
            if subject_id is None:
                self._keys.clear()
            else:
                self._keys.pop(subject_id, None)
                self._erased.add(subject_id)

    def key_for_writing(self, subject_id: str) -> bytes | None:
        """The subject's data key, made now if they have none; ``None`` if they were erased."""
        key = self._cached(subject_id)
        if key is not None or subject_id in self._erased:
            return key
        if self.store.record(subject_id) is None:
            self.store.add_key(subject_id, self.kek.id, self.kek.wrap(subject_id, os.urandom(KEY_BYTES)),
                               datetime.now(UTC))
        return self.key_for_reading(subject_id)

    def key_for_reading(self, subject_id: str) -> bytes | None:
        """The subject's data key; ``None`` if they were erased; ``DataKeyMissingError`` if unknown."""
        key = self._cached(subject_id)
        if key is not None or subject_id in self._erased:
            return key
        record = self.store.record(subject_id)
        if record is None:
            raise DataKeyMissingError(f"no data key and no erasure recorded for subject {subject_id}: "
                                      "is this the key store of these events?")
        if record.erased:
            with self._lock:
                self._erased.add(subject_id)
            return None
        return self._remember(subject_id, self._unwrap(subject_id, record))

    def erase(self, subject_id: str) -> bool:
        """Destroy the subject's key for good; ``False`` if it already was."""
        erased = self.store.erase(subject_id, datetime.now(UTC))
        with self._lock:
            self._keys.pop(subject_id, None)
            self._erased.add(subject_id)
        return erased

    def is_erased(self, subject_id: str) -> bool:
        """Whether the subject's key was destroyed (asks the store unless known)."""
        if subject_id in self._erased:
            return True
        record = self.store.record(subject_id)
        return record is not None and record.erased

    def link(self, aggregate_id: str, subject_id: str) -> None:
        """Remember the subject of ``aggregate_id`` (written once per process and aggregate)."""
        if self._links.get(aggregate_id) == subject_id:
            return
        self.store.link(aggregate_id, subject_id)
        self._cache_link(aggregate_id, subject_id)

    def link_many(self, links: Sequence[tuple[str, str]]) -> None:
        """``link`` each pair not known yet, in one transaction of the store (group commit's batches)."""
        first: dict[str, str] = {}
        for aggregate_id, subject_id in links:
            first.setdefault(aggregate_id, subject_id)  # first come, as the stores keep them
        new = [(aggregate, subject) for aggregate, subject in first.items() if self._links.get(aggregate) != subject]
        if not new:
            return
        self.store.link_many(new)
        for aggregate_id, subject_id in new:
            self._cache_link(aggregate_id, subject_id)

    def subject_of(self, aggregate_id: str) -> str | None:
        """The subject linked to ``aggregate_id``, or ``None``."""
        subject = self._links.get(aggregate_id)
        if subject is None:
            subject = self.store.subject_of(aggregate_id)
            if subject is not None:
                self._cache_link(aggregate_id, subject)
        return subject

    def close(self) -> None:
        """Stop watching erasures; close the store's connections (reopened if used again)."""
        if self._stop_watching is not None:
            self._stop_watching()
            self._stop_watching = None
        self.store.close()

    def _unwrap(self, subject_id: str, record: KeyRecord) -> bytes:
        if record.kek_id != self.kek.id:
            raise WrongKekError(f"the data key of subject {subject_id} is wrapped by KEK {record.kek_id}, "
                                f"this process has KEK {self.kek.id}: check CLINIC_DATA_KEK")
        return self.kek.unwrap(subject_id, record.wrapped_key or b"")

    def _cached(self, subject_id: str) -> bytes | None:
        entry = self._keys.get(subject_id)
        if entry is None or entry[1] < self._clock():
            return None
        return entry[0]

    def _remember(self, subject_id: str, key: bytes) -> bytes:
        if self.cache_seconds > 0:
            with self._lock:
                if len(self._keys) >= CACHE_LIMIT:
                    self._keys.clear()
                self._keys[subject_id] = (key, self._clock() + self.cache_seconds)
        return key

    def _cache_link(self, aggregate_id: str, subject_id: str) -> None:
        with self._lock:
            if len(self._links) >= CACHE_LIMIT:
                self._links.clear()
            self._links[aggregate_id] = subject_id


class MemoryKeyStore:
    """A ``SubjectKeyStore`` in dictionaries (``CLINIC_PERSISTENCE=memory`` and tests)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._records: dict[str, KeyRecord] = {}
        self._links: dict[str, str] = {}

    def create_tables(self) -> None:
        """Nothing to create."""

    def add_key(self, subject_id: str, kek_id: str, wrapped_key: bytes, now: datetime) -> None:
        """Store the subject's first key unless they have a row."""
        with self._lock:
            self._records.setdefault(subject_id, KeyRecord(kek_id, wrapped_key, None))

    def record(self, subject_id: str) -> KeyRecord | None:
        """The subject's row, or ``None``."""
        with self._lock:
            return self._records.get(subject_id)

    def erase(self, subject_id: str, now: datetime) -> bool:
        """Replace the subject's key by a tombstone; ``False`` if already erased."""
        with self._lock:
            existing = self._records.get(subject_id)
            if existing is not None and existing.erased:
                return False
            self._records[subject_id] = KeyRecord(None, None, now)
            return True

    def link(self, aggregate_id: str, subject_id: str) -> None:
        """Remember the subject of ``aggregate_id``."""
        with self._lock:
            self._links.setdefault(aggregate_id, subject_id)

    def link_many(self, links: Sequence[tuple[str, str]]) -> None:
        """Remember the subject of each aggregate."""
        with self._lock:
            for aggregate_id, subject_id in links:
                self._links.setdefault(aggregate_id, subject_id)

    def subject_of(self, aggregate_id: str) -> str | None:
        """The subject linked to ``aggregate_id``, or ``None``."""
        with self._lock:
            return self._links.get(aggregate_id)

    def close(self) -> None:
        """Nothing to release (the data lives as long as the object)."""
