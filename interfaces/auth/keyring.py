"""The authorization server's signing keys: published before they sign, published after they stop.

Each key is in one state:

- ``next``: published in the JWKS, not signing yet. Resource servers that fetch the JWKS
  learn it before any token carries its ``kid``;
- ``current``: signs every new token (exactly one);
- ``retired``: signs nothing, still published until the last token it signed has expired
  (``retired_at`` + token lifetime + leeway); then pruned.

A rotation moves current → retired, next → current, and creates a new next. Because the
new current key was already published, a resource server with a cached JWKS verifies the
first token it signs without fetching anything.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from joserfc.jwk import ECKey

from interfaces.auth.files import Watched, exclusive, read_json, write_private_json

NEXT, CURRENT, RETIRED = "next", "current", "retired"
ALGORITHM = "ES256"
KEY_RING_FILE = "signing-keys.json"
Jwk = dict[str, str | list[str]]
"""A key as a JWK (RFC 7517) document: string members, and lists (``key_ops``)."""


class KeyRingMissingError(ValueError):
    """There is no key ring yet (``clinic keys init`` creates it)."""


@dataclass(frozen=True)
class SigningKey:
    """One ES256 key pair and where it is in its life."""

    kid: str
    state: str
    created_at: datetime
    jwk: Jwk = field(repr=False)
    activated_at: datetime | None = None
    retired_at: datetime | None = None

    @classmethod
    def generate(cls, now: datetime, state: str) -> SigningKey:
        key = ECKey.generate_key("P-256", auto_kid=True)
        if key.kid is None:
            raise RuntimeError("joserfc generated a key without a kid (auto_kid=True)")
        return cls(kid=key.kid, state=state, created_at=now, jwk=key.as_dict(private=True),
                   activated_at=now if state == CURRENT else None)

    def private_key(self) -> ECKey:
        return ECKey.import_key(self.jwk)

    def public_jwk(self) -> Jwk:
        """The public half, as a JWKS entry (``kid``, ``alg``, ``use``)."""
        public = self.private_key().as_dict(private=False)
        return {**public, "kid": self.kid, "alg": ALGORITHM, "use": "sig"}

    def published_until(self, keep: timedelta) -> datetime | None:
        """When a retired key may be dropped from the JWKS (``None``: not retired)."""
        return self.retired_at + keep if self.retired_at is not None else None


@dataclass(frozen=True)
class KeyRing:
    """Every signing key, in a consistent state: one current, at most one next."""

    keys: tuple[SigningKey, ...]

    def __post_init__(self) -> None:
        states = [key.state for key in self.keys]
        if states.count(CURRENT) != 1 or states.count(NEXT) > 1 or set(states) - {NEXT, CURRENT, RETIRED}:
            raise ValueError(f"a key ring needs one current key and at most one next key, not {states}")

    @classmethod
    def create(cls, now: datetime) -> KeyRing:
        """A new ring: a current key, and the next one already published."""
        return cls((SigningKey.generate(now, CURRENT), SigningKey.generate(now, NEXT)))

    def current(self) -> SigningKey:
        return next(key for key in self.keys if key.state == CURRENT)

    def published(self) -> dict[str, list[Jwk]]:
        """The JWKS document: current, next and retired keys' public halves."""
        order = {CURRENT: 0, NEXT: 1, RETIRED: 2}
        return {"keys": [key.public_jwk() for key in sorted(self.keys, key=lambda k: order[k.state])]}

    def rotated(self, now: datetime, keep: timedelta) -> KeyRing:
        """current → retired, next → current, a new next; retired keys past ``keep`` pruned."""
        upcoming = [key for key in self.keys if key.state == NEXT]
        if not upcoming:
            raise ValueError("the key ring has no next key to promote (it was never published)")
        moved = [replace(key, state=RETIRED, retired_at=now) if key.state == CURRENT
                 else replace(key, state=CURRENT, activated_at=now) if key.state == NEXT
                 else key for key in self.keys]
        return KeyRing((*moved, SigningKey.generate(now, NEXT))).pruned(now, keep)

    def pruned(self, now: datetime, keep: timedelta) -> KeyRing:
        """Without the retired keys whose last token has expired (``retired_at + keep`` passed)."""
        return KeyRing(tuple(key for key in self.keys
                             if key.state != RETIRED or key.published_until(keep) > now))  # type: ignore[operator]

    def to_json(self) -> dict[str, object]:
        return {"keys": [{"kid": k.kid, "state": k.state, "created_at": _iso(k.created_at),
                          "activated_at": _iso(k.activated_at), "retired_at": _iso(k.retired_at),
                          "jwk": k.jwk} for k in self.keys]}

    @classmethod
    def from_json(cls, document: object) -> KeyRing:
        if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
            raise ValueError("a key ring file holds {\"keys\": [...]}")
        try:
            return cls(tuple(SigningKey(kid=k["kid"], state=k["state"], created_at=datetime.fromisoformat(k["created_at"]),
                                        jwk=k["jwk"], activated_at=_moment(k.get("activated_at")),
                                        retired_at=_moment(k.get("retired_at"))) for k in document["keys"]))
        except (KeyError, TypeError) as error:
            raise ValueError(f"a key ring entry is malformed ({error})") from None


class KeyRingFile:
    """The key ring in ``<auth dir>/signing-keys.json`` (owner-only), re-read when it changes."""

    def __init__(self, auth_dir: Path) -> None:
        self.path = auth_dir / KEY_RING_FILE
        self._watched = Watched(self.path, _load)

    def ring(self) -> KeyRing:
        """The ring as the file holds it now (one ``stat`` per call; re-read after a rotation)."""
        return self._watched.get()

    def init(self, now: datetime) -> bool:
        """Create the ring (current + next) unless it exists; ``True`` when it was created."""
        with exclusive(self.path):
            if self.path.exists():
                return False
            write_private_json(self.path, KeyRing.create(now).to_json())
            return True

    def rotate(self, now: datetime, keep: timedelta) -> KeyRing:
        """Rotate the ring on disk (the running server notices on its next request)."""
        with exclusive(self.path):
            ring = _load(self.path).rotated(now, keep)
            write_private_json(self.path, ring.to_json())
            return ring


def utc_now() -> datetime:
    return datetime.now(UTC)


def _load(path: Path) -> KeyRing:
    document = read_json(path, None)
    if document is None:
        raise KeyRingMissingError(f"no signing keys at {path}: run `clinic keys init`")
    return KeyRing.from_json(document)


def _iso(moment: datetime | None) -> str | None:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z") if moment is not None else None


def _moment(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text is not None else None
