"""The scope each operation requires: one table, checked for every routed request by one check.

Authorization is two checks, both needed: the token carries the operation's scope (what
the *client* was granted, checked here before the handler runs), and the caller's roles
and ownership allow it (what the *person* may do, checked in ``access.py`` where the
resource is known). An operation missing from the table is refused (fail closed), and
``tests/e2e/test_authorization_matrix.py`` fails when the OpenAPI document names an
operation without a row.
"""

from __future__ import annotations

from litestar.exceptions import PermissionDeniedException
from litestar.handlers import HTTPRouteHandler
from litestar.types import Scope as AsgiScope

from infrastructure.security.scopes import Scope
from infrastructure.security.tokens import Principal

DOCUMENTATION = "/schema"
PUBLIC = ()
"""No token needed (health probes)."""

REQUIRED_SCOPE: dict[str, tuple[Scope, ...]] = {
    "live": PUBLIC,
    "ready": PUBLIC,
    "registerPatient": (Scope.PATIENTS_WRITE,),
    "getPatient": (Scope.PATIENTS_READ,),
    "listPatientRecordAccess": (Scope.PATIENTS_READ, Scope.AUDIT_READ),
    "listDoctors": (Scope.DOCTORS_READ,),
    "getDoctor": (Scope.DOCTORS_READ,),
    "registerDoctor": (Scope.DOCTORS_WRITE,),
    "deactivateDoctor": (Scope.DOCTORS_WRITE,),
    "listDoctorSlots": (Scope.SLOTS_READ,),
    "openSlots": (Scope.SLOTS_WRITE,),
    "closeSlot": (Scope.SLOTS_WRITE,),
    "openAvailability": (Scope.SLOTS_WRITE,),
    "reopenSlot": (Scope.SLOTS_WRITE,),
    "bookConsultation": (Scope.CONSULTATIONS_WRITE,),
    "getConsultation": (Scope.CONSULTATIONS_READ,),
    "getConsultationV2": (Scope.CONSULTATIONS_READ,),
    "streamConsultationEvents": (Scope.CONSULTATIONS_READ,),
    "cancelConsultation": (Scope.CONSULTATIONS_WRITE,),
    "rescheduleConsultation": (Scope.CONSULTATIONS_WRITE,),
    "listPatientConsultations": (Scope.CONSULTATIONS_READ,),
    "getDoctorAgenda": (Scope.CONSULTATIONS_READ,),
    "completeConsultation": (Scope.CONSULTATIONS_ATTEND,),
    "markConsultationNoShow": (Scope.CONSULTATIONS_ATTEND,),
    "addClinicalNote": (Scope.NOTES_WRITE,),
    "listClinicalNotes": (Scope.NOTES_READ,),
    "listSagas": (Scope.SAGAS_READ,),
    "getSaga": (Scope.SAGAS_READ,),
    "streamSagaChanges": (Scope.SAGAS_READ,),
    "streamSagaEvents": (Scope.SAGAS_READ,),
    "retrySagaValidation": (Scope.SAGAS_WRITE,),
    "compensateSaga": (Scope.SAGAS_WRITE,),
    "auditAggregate": (Scope.AUDIT_READ,),
    "listReadModels": (Scope.READ_MODELS_READ,),
    "getReadModel": (Scope.READ_MODELS_READ,),
    "streamReadModelRebuild": (Scope.READ_MODELS_READ,),
    "rebuildReadModel": (Scope.READ_MODELS_REBUILD,),
    "createWebhook": (Scope.WEBHOOKS_WRITE,),
    "listWebhooks": (Scope.WEBHOOKS_READ,),
    "getWebhook": (Scope.WEBHOOKS_READ,),
    "deleteWebhook": (Scope.WEBHOOKS_WRITE,),
    "listWebhookDeliveries": (Scope.WEBHOOKS_READ,),
}
"""operationId -> the scopes any one of which lets a token call it (empty: public)."""


class InsufficientScopeError(PermissionDeniedException):
    """The token was not granted the scope this operation requires (RFC 6750 ``insufficient_scope``)."""

    def __init__(self, scopes: tuple[Scope, ...]) -> None:
        super().__init__(f"the token lacks the scope this operation requires: {' or '.join(scopes)}")
        self.scopes = scopes


def require_scope(scope: AsgiScope) -> None:
    """App-wide check of a routed, authenticated request (``middleware.RoutedRequestMiddleware``): the
    handler's operation must be in the table and the token hold its scope. Plain and synchronous: nothing in
    it waits, so it runs on the event loop, never on a worker thread."""
    if scope["path"].startswith(DOCUMENTATION):  # the OpenAPI document: public, no operation id
        return
    handler = scope["route_handler"]
    if handler.opt.get("public") is True:  # undocumented and public: /metrics (interfaces/http/metrics.py)
        return
    operation = handler.operation_id if isinstance(handler, HTTPRouteHandler) and isinstance(handler.operation_id, str) \
        else None
    if operation not in REQUIRED_SCOPE:
        raise PermissionDeniedException(f"operation {operation or handler.handler_name} has no authorization rule")
    scopes = REQUIRED_SCOPE[operation]
    if not scopes:
        return
    principal = scope.get("user")
    if not isinstance(principal, Principal) or not any(principal.has_scope(s) for s in scopes):
        raise InsufficientScopeError(scopes)
