"""OAuth2 scopes: what a token lets its holder do, and what each role may be granted.

A request passes when its token carries the operation's scope (``REQUIRED_SCOPE`` in
``interfaces/http/authorization.py``) **and** the caller's roles and ownership allow it
(``interfaces/http/access.py``). The authorization server grants a person at most the scopes
of their roles (``ROLE_SCOPES``); a service client at most the scopes it was registered with.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum

from domain.values import Role


class Scope(StrEnum):
    """Every scope this system knows (RFC 6749 §3.3 scope tokens)."""

    PATIENTS_READ = "patients:read"
    PATIENTS_WRITE = "patients:write"
    DOCTORS_READ = "doctors:read"
    DOCTORS_WRITE = "doctors:write"
    SLOTS_READ = "slots:read"
    SLOTS_WRITE = "slots:write"
    CONSULTATIONS_READ = "consultations:read"
    CONSULTATIONS_WRITE = "consultations:write"
    CONSULTATIONS_ATTEND = "consultations:attend"
    """The doctor records how a consultation went: completed, or the patient did not come."""
    NOTES_READ = "notes:read"
    NOTES_WRITE = "notes:write"
    SAGAS_READ = "sagas:read"
    SAGAS_WRITE = "sagas:write"
    """An operator acts on a saga: retries its validation, or compensates it (admins)."""
    AUDIT_READ = "audit:read"
    READ_MODELS_READ = "read-models:read"
    READ_MODELS_REBUILD = "read-models:rebuild"
    """An operator rebuilds a read model from the event logs (admins)."""
    WEBHOOKS_READ = "webhooks:read"
    WEBHOOKS_WRITE = "webhooks:write"
    """Subscribe URLs to the outcomes of one's consultations (patients, doctors) or of all (admins)."""
    REGISTRY_ELIGIBILITY = "registry:eligibility"
    """Internal: the booking saga asks the registry whether a patient may book a doctor."""


PUBLIC_SCOPES = frozenset(s for s in Scope if s is not Scope.REGISTRY_ELIGIBILITY)

ROLE_SCOPES: dict[Role, frozenset[Scope]] = {
    Role.PATIENT: frozenset({Scope.PATIENTS_READ, Scope.DOCTORS_READ, Scope.SLOTS_READ, Scope.CONSULTATIONS_READ,
                             Scope.CONSULTATIONS_WRITE, Scope.WEBHOOKS_READ, Scope.WEBHOOKS_WRITE}),
    Role.DOCTOR: frozenset({Scope.DOCTORS_READ, Scope.SLOTS_READ, Scope.SLOTS_WRITE, Scope.CONSULTATIONS_READ, Scope.CONSULTATIONS_ATTEND,
                            Scope.NOTES_READ, Scope.NOTES_WRITE, Scope.WEBHOOKS_READ, Scope.WEBHOOKS_WRITE}),
    Role.AUDITOR: frozenset({Scope.DOCTORS_READ, Scope.SLOTS_READ, Scope.SAGAS_READ, Scope.AUDIT_READ,
                             Scope.READ_MODELS_READ}),
    Role.ADMIN: PUBLIC_SCOPES,
}
"""The most a person holding each role may be granted (a token may carry fewer)."""


def scopes_for_roles(roles: Iterable[str]) -> frozenset[str]:
    """The union of the scopes ``roles`` may be granted (unknown roles grant nothing)."""
    granted: set[str] = set()
    for role in roles:
        if role in Role.__members__:
            granted |= {str(s) for s in ROLE_SCOPES[Role(role)]}
    return frozenset(granted)
