"""Who may do what: role guards and the resource-level rules of the API."""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from litestar.connection import ASGIConnection
from litestar.exceptions import PermissionDeniedException
from litestar.handlers.base import BaseRouteHandler

from application.views import ConsultationView
from domain.base import NotFoundError
from domain.values import Role
from infrastructure.security.tokens import Principal

Guard = Callable[[ASGIConnection[Any, Any, Any, Any], BaseRouteHandler], Coroutine[Any, Any, None]]
"""A Litestar guard; a coroutine function, so Litestar runs it on the event loop (a plain function would
take a worker thread for every request)."""
T = TypeVar("T")


def requires_role(*roles: Role) -> Guard:
    """A guard that lets through callers holding any of ``roles``."""

    async def guard(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
        principal = connection.user
        if not isinstance(principal, Principal) or not principal.has_role(*roles):
            raise PermissionDeniedException(f"requires one of the roles: {', '.join(roles)}")

    return guard


def allow(condition: bool, why: str) -> None:
    if not condition:
        raise PermissionDeniedException(why)


@contextmanager
def masking(principal: Principal, why: str) -> Iterator[None]:
    """Refuse a missing resource, to a caller who may not see every such resource, exactly like someone
    else's, so a 403 never tells whether it exists."""
    try:
        yield
    except NotFoundError:
        if principal.has_role(Role.ADMIN):
            raise
        raise PermissionDeniedException(why) from None


def is_self_or_admin(principal: Principal, subject_id: str, role: Role) -> bool:
    """``principal`` is this patient (or doctor) themself, or an admin."""
    return principal.has_role(Role.ADMIN) or (principal.has_role(role) and principal.sub == subject_id)


def may_book_for(principal: Principal, patient_id: str) -> bool:
    """The patient for themself, or an admin."""
    return is_self_or_admin(principal, patient_id, Role.PATIENT)


def may_read(principal: Principal, consultation: ConsultationView) -> bool:
    """Its patient, its doctor, or an admin."""
    return (
        principal.has_role(Role.ADMIN)
        or (principal.has_role(Role.PATIENT) and principal.sub == str(consultation.patient_id))
        or (principal.has_role(Role.DOCTOR) and principal.sub == str(consultation.doctor_id))
    )


def may_cancel(principal: Principal, consultation: ConsultationView) -> bool:
    """Its patient, or an admin (who cancels on the clinic's behalf)."""
    return principal.has_role(Role.ADMIN) or (
        principal.has_role(Role.PATIENT) and principal.sub == str(consultation.patient_id)
    )


def may_reschedule(principal: Principal, consultation: ConsultationView) -> bool:
    """Its patient, or an admin: whoever may cancel it may move it."""
    return may_cancel(principal, consultation)


def may_attend(principal: Principal, consultation: ConsultationView) -> bool:
    """Recording how it went (completed, no-show): its doctor or an admin."""
    return may_use_notes(principal, consultation)


def may_use_notes(principal: Principal, consultation: ConsultationView) -> bool:
    """Clinical notes: its doctor or an admin only."""
    return principal.has_role(Role.ADMIN) or (
        principal.has_role(Role.DOCTOR) and principal.sub == str(consultation.doctor_id)
    )
