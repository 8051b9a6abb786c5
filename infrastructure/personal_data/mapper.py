"""An eventsourcing ``Mapper`` that stores personal fields sealed with their subject's key.

Each field an event class lists in ``personal_data`` is stored as a ``Sealed`` envelope:
AES-256-GCM of the field's transcoded value, under the data subject's key, with the
originator id and the field name as associated data (an envelope moved to another event
or field does not open). Reading opens it; once the subject is erased it reads as
``[erased]`` (text) or ``None`` (other types). Events stored before this mapper, in
plain text, still load as they are. Upcasters run before opening: they must not read
personal fields.
"""

from __future__ import annotations

import base64
import dataclasses
import os
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from eventsourcing.persistence import (
    Cipher,
    Compressor,
    JSONTranscoder,
    Mapper,
    MapperDeserialisationError,
    StoredEvent,
    Transcoder,
    Transcoding,
)
from eventsourcing.utils import resolve_topic

from domain.personal_data import SUBJECT_IS_ORIGINATOR, erased_value, personal_fields, subject_field
from infrastructure.personal_data.keys import NONCE_BYTES, SubjectKeys


class DataSubjectUnknownError(RuntimeError):
    """An event with personal data whose aggregate has no linked data subject."""


@dataclass(frozen=True)
class Sealed:
    """One personal field as stored: whose key sealed it, the nonce and the ciphertext."""

    subject_id: str
    nonce: bytes
    ciphertext: bytes


class SealedAsJSON(Transcoding):
    """``{"_type_": "sealed_v1", "_data_": {"s": subject, "n": nonce, "c": ciphertext}}`` (base64)."""

    type = Sealed
    name = "sealed_v1"

    def encode(self, obj: Sealed) -> dict[str, str]:
        return {"s": obj.subject_id, "n": _b64(obj.nonce), "c": _b64(obj.ciphertext)}

    def decode(self, data: dict[str, str]) -> Sealed:
        return Sealed(data["s"], base64.b64decode(data["n"]), base64.b64decode(data["c"]))


class PersonalDataMapper(Mapper[Any]):
    """Seals personal fields on the way to the store and opens them on the way back."""

    def __init__(self, transcoder: Transcoder, keys: SubjectKeys, compressor: Compressor | None = None,
                 cipher: Cipher | None = None) -> None:
        super().__init__(transcoder, compressor=compressor, cipher=cipher)
        if not isinstance(transcoder, JSONTranscoder):
            raise TypeError("PersonalDataMapper needs a JSONTranscoder (it registers the sealed envelope)")
        transcoder.register(SealedAsJSON())
        self.keys = keys

    def to_stored_event(self, domain_event: Any) -> StoredEvent:
        """The stored event, its personal fields sealed (or the erased marker, for an erased subject)."""
        fields = personal_fields(type(domain_event))
        if not fields:
            return super().to_stored_event(domain_event)
        subject = self._subject_for_writing(domain_event)
        key = self.keys.key_for_writing(subject)
        state = dict(vars(domain_event))
        for name in fields:
            state[name] = (self._seal(key, subject, domain_event.originator_id, name, state[name]) if key
                           else _erased(type(domain_event), name))
        sealed = object.__new__(type(domain_event))
        object.__setattr__(sealed, "__dict__", state)
        return super().to_stored_event(sealed)

    def to_domain_event(self, stored_event: StoredEvent) -> Any:
        """The domain event, its sealed fields opened (or erased); plain-text fields as stored."""
        domain_event = super().to_domain_event(stored_event)
        state = vars(domain_event)
        sealed = [name for name, value in state.items() if isinstance(value, Sealed)]
        for name in sealed:
            state[name] = self._open(state[name], stored_event, name, type(domain_event))
        if not sealed and personal_fields(type(domain_event)):
            self._link_subject(domain_event)  # stored in plain text before this mapper: link it now
        return domain_event

    def stored_in_plain_text(self, stored_event: StoredEvent) -> bool:
        """Whether ``stored_event`` holds personal fields unsealed (stored before this mapper existed)."""
        fields = personal_fields(resolve_topic(stored_event.topic))
        if not fields:
            return False
        state = self.transcoder.decode(self._bytes(stored_event.state))
        return any(name in state and not isinstance(state[name], Sealed) for name in fields)

    def _bytes(self, state: bytes) -> bytes:
        """The transcoded bytes of a stored state (after the library's cipher and compressor, if any)."""
        if self.cipher:
            state = self.cipher.decrypt(state)
        if self.compressor:
            state = self.compressor.decompress(state)
        return state

    def close(self) -> None:
        """Release the key store's connections."""
        self.keys.close()

    def link_subjects(self, domain_events: Iterable[Any]) -> None:
        """Link every aggregate these events open about a subject, in one transaction of the key store.

        Group commit calls it for a batch before recording it, so each new consultation's link is not
        a transaction of its own; ``to_stored_event`` then finds the links known.
        """
        links = []
        for domain_event in domain_events:
            field = subject_field(type(domain_event))
            if field is not None and field != SUBJECT_IS_ORIGINATOR and field in vars(domain_event):
                links.append((str(domain_event.originator_id), str(getattr(domain_event, field))))
        if links:
            self.keys.link_many(links)

    def _subject_for_writing(self, domain_event: Any) -> str:
        subject = self._link_subject(domain_event)
        if subject is None:
            subject = self.keys.subject_of(str(domain_event.originator_id))
        if subject is None:
            raise DataSubjectUnknownError(f"{type(domain_event).__qualname__} of {domain_event.originator_id} "
                                          "has personal data but its aggregate has no data subject")
        return subject

    def _link_subject(self, domain_event: Any) -> str | None:
        """The subject an event names; an aggregate opened about a subject is linked to them."""
        field = subject_field(type(domain_event))
        if field is None or field not in vars(domain_event):
            return None
        subject = str(getattr(domain_event, field))
        if field != SUBJECT_IS_ORIGINATOR:
            self.keys.link(str(domain_event.originator_id), subject)
        return subject

    def _seal(self, key: bytes, subject: str, originator_id: Any, name: str, value: Any) -> Sealed:
        nonce = os.urandom(NONCE_BYTES)
        plaintext = self.transcoder.encode(value)
        return Sealed(subject, nonce, AESGCM(key).encrypt(nonce, plaintext, _aad(originator_id, name)))

    def _open(self, sealed: Sealed, stored_event: StoredEvent, name: str, cls: type) -> Any:
        key = self.keys.key_for_reading(sealed.subject_id)
        if key is None:
            return _erased(cls, name)
        try:
            plaintext = AESGCM(key).decrypt(sealed.nonce, sealed.ciphertext, _aad(stored_event.originator_id, name))
        except InvalidTag:
            raise MapperDeserialisationError(
                f"sealed field {name!r} of {stored_event.originator_id} v{stored_event.originator_version} "
                "does not open (tampered, or moved from another event)") from None
        return self.transcoder.decode(plaintext)


def _aad(originator_id: Any, name: str) -> bytes:
    return f"clinic-personal-data|{originator_id}|{name}".encode()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _erased(cls: type, name: str) -> Any:
    return erased_value(_annotations(cls).get(name))


@cache
def _annotations(cls: type) -> dict[str, Any]:
    if not dataclasses.is_dataclass(cls):
        return {}
    return {f.name: f.type for f in dataclasses.fields(cls)}
