"""What the console's tests share: the issuer operators' sessions are signed by, and a clinic whose registry
is down, so the sagas it starts stay open for operators to look at and act on."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

from joserfc.jwk import ECKey

from application.bootstrap import bootstrap
from application.clinic import Clinic
from application.settings import Settings
from infrastructure.security.tokens import TokenIssuer
from process_managers.ports import RegistryUnavailableError
from tests.kit import FakeRegistry

ISSUER = TokenIssuer(ECKey.generate_key("P-256", auto_kid=True), "clinic-dev", "clinic-api")


@contextmanager
def clinic_with_the_registry_down() -> Iterator[Clinic]:
    """An embedded clinic (in memory) whose registry answers nothing: its sagas wait on validation."""
    clinic = bootstrap(Settings(persistence="memory", runner_tick_seconds=0.05, saga_timeout=timedelta(hours=1)))
    clinic.booking.registry = FakeRegistry(RegistryUnavailableError("registry down: connection refused"))
    try:
        yield clinic
    finally:
        clinic.close()
