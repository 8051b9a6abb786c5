"""OAuth2 clients and users, in ``clients.json`` and ``users.json`` under the auth directory.

Only hashes of client secrets and passwords are stored. The server re-reads a file when it
changes, so ``clinic auth client add`` takes effect without a restart.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from authlib.oauth2.rfc6749 import ClientMixin

from domain.values import Role
from infrastructure.security.scopes import Scope
from interfaces.auth.files import Watched, exclusive, read_json, write_private_json
from interfaces.auth.hashing import hash_secret, verify_secret

CLIENTS_FILE, USERS_FILE = "clients.json", "users.json"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,127}$")
SECRET_METHODS = ("client_secret_basic", "client_secret_post")


class AccountExistsError(ValueError):
    """A client or user of that name is registered already."""


@dataclass(frozen=True)
class Client(ClientMixin):
    """A registered client: confidential (has a secret) or public (a browser or native app)."""

    client_id: str
    scopes: tuple[str, ...]
    redirect_uris: tuple[str, ...] = ()
    roles: tuple[str, ...] = ()
    secret_hash: str | None = field(default=None, repr=False)

    @property
    def public(self) -> bool:
        return self.secret_hash is None

    def get_client_id(self) -> str:
        return self.client_id

    def get_default_redirect_uri(self) -> str | None:
        return self.redirect_uris[0] if len(self.redirect_uris) == 1 else None

    def get_allowed_scope(self, scope: str | None) -> str | None:
        """Requested ∩ allowed (all allowed when none requested); ``None`` when nothing is left."""
        granted = set(self.scopes) & set(scope.split()) if scope else set(self.scopes)
        return " ".join(sorted(granted)) if granted else None

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        return redirect_uri in self.redirect_uris  # exact match (RFC 9700 §4.1.3)

    def check_client_secret(self, client_secret: str) -> bool:
        return not self.public and verify_secret(self.secret_hash, client_secret)

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        return method == "none" if self.public else method in SECRET_METHODS

    def check_response_type(self, response_type: str) -> bool:
        return response_type == "code" and bool(self.redirect_uris)

    def check_grant_type(self, grant_type: str) -> bool:
        if grant_type == "authorization_code":
            return bool(self.redirect_uris)
        return grant_type == "client_credentials" and not self.public


@dataclass(frozen=True)
class User:
    """A person who signs in on the login page; ``sub`` is their patient, doctor or staff id."""

    username: str
    sub: str
    roles: tuple[str, ...]
    password_hash: str = field(repr=False)


class Accounts:
    """The clients and users files of one auth directory."""

    def __init__(self, auth_dir: Path) -> None:
        self.clients_path = auth_dir / CLIENTS_FILE
        self.users_path = auth_dir / USERS_FILE
        self._clients = Watched(self.clients_path, _load_clients)
        self._users = Watched(self.users_path, _load_users)

    def client(self, client_id: str) -> Client | None:
        return self._clients.get().get(client_id)

    def clients(self) -> list[Client]:
        return sorted(self._clients.get().values(), key=lambda c: c.client_id)

    def user(self, username: str) -> User | None:
        return self._users.get().get(username)

    def add_client(self, client_id: str, scopes: list[str], redirect_uris: list[str], roles: list[str],
                   secret: str | None) -> Client:
        """Register a client (public when ``secret`` is ``None``); only the secret's hash is kept."""
        client = Client(client_id=_name(client_id, "client id"), scopes=tuple(sorted(set(_scopes(scopes)))),
                        redirect_uris=tuple(_redirect_uri(u) for u in redirect_uris), roles=_roles(roles),
                        secret_hash=hash_secret(secret) if secret is not None else None)
        if client.public and not client.redirect_uris:
            raise ValueError("a public client needs --redirect-uri (it can only use the code flow)")
        self._add(self.clients_path, "clients", "client_id", asdict(client))
        return client

    def add_user(self, username: str, sub: str, roles: list[str], password: str) -> User:
        """Register a user; only the password's hash is kept."""
        if not sub.strip():
            raise ValueError("--sub must not be empty")
        user = User(username=_name(username, "username"), sub=sub, roles=_roles(roles),
                    password_hash=hash_secret(password))
        self._add(self.users_path, "users", "username", asdict(user))
        return user

    @staticmethod
    def _add(path: Path, kind: str, key: str, entry: dict[str, object]) -> None:
        with exclusive(path):
            document, entries = _document(path, kind)
            if any(existing[key] == entry[key] for existing in entries):
                raise AccountExistsError(f"{entry[key]!r} is registered already in {path}")
            entries.append(entry)
            write_private_json(path, document)


def _document(path: Path, kind: str) -> tuple[dict[str, Any], list[Any]]:
    """The accounts file at ``path`` (an empty one when there is none) and its ``kind`` entries."""
    document = read_json(path, {kind: []})
    if not isinstance(document, dict) or not isinstance(document.get(kind), list):
        raise ValueError(f"{path} holds no {kind!r} list")
    return document, document[kind]


def _load_clients(path: Path) -> dict[str, Client]:
    _, entries = _document(path, "clients")
    return {e["client_id"]: Client(**{**e, **{k: tuple(e[k]) for k in ("scopes", "redirect_uris", "roles")}})
            for e in entries}


def _load_users(path: Path) -> dict[str, User]:
    _, entries = _document(path, "users")
    return {e["username"]: User(**{**e, "roles": tuple(e["roles"])}) for e in entries}


def _name(text: str, what: str) -> str:
    if not _NAME.match(text):
        raise ValueError(f"{what} {text!r}: use letters, digits and . _ @ - (up to 128)")
    return text


def _scopes(scopes: list[str]) -> list[str]:
    unknown = set(scopes) - {str(s) for s in Scope}
    if unknown or not scopes:
        raise ValueError(f"unknown scopes {sorted(unknown)}; known: {', '.join(s.value for s in Scope)}"
                         if unknown else "give at least one --scope")
    return scopes


def _roles(roles: list[str]) -> tuple[str, ...]:
    unknown = set(roles) - set(Role.__members__)
    if unknown:
        raise ValueError(f"unknown roles {sorted(unknown)}; known: {', '.join(Role.__members__)}")
    return tuple(sorted(set(roles)))


def _redirect_uri(uri: str) -> str:
    """An absolute https URI, or http on a loopback address (RFC 8252 §7.3); no fragment."""
    parts = urlsplit(uri)
    loopback = parts.hostname == "localhost" or _is_loopback_ip(parts.hostname)
    if parts.fragment or not parts.hostname or not (parts.scheme == "https" or (parts.scheme == "http" and loopback)):
        raise ValueError(f"redirect URI {uri!r}: use https://..., or http:// on a loopback address; no #fragment")
    return uri


def _is_loopback_ip(host: str | None) -> bool:
    try:
        return host is not None and ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
