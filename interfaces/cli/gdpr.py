"""``clinic gdpr erase|reapply``: crypto-shredding a patient's personal data, for operators.

Opens the stores like ``clinic audit`` (no runner); with ``CLINIC_PERSISTENCE=postgres`` it
uses the key store every service shares. See docs/gdpr.md (runbook).
"""

from __future__ import annotations

import argparse
import getpass
import sys
from collections.abc import Callable
from uuid import UUID, uuid4

from application.bootstrap import build_applications, require_tables
from application.registry import RegistryApplication
from domain.metadata import event_metadata
from interfaces.cli.main import settings


def run_erase(args: argparse.Namespace) -> int:
    """Erase one patient after confirmation (``--yes`` or typing the id); 1 if unknown."""
    if not args.yes and not _confirmed(args.patient_id):
        print("clinic: not erased (confirm with --yes, or type the patient id)", file=sys.stderr)
        return 2
    registry, close = open_registry()
    try:
        with event_metadata(actor=operator(), correlation_id=f"gdpr-erase:{uuid4()}"):
            done = registry.erase_patient(args.patient_id)
        unsealed = registry.events_in_plain_text(args.patient_id)
    finally:
        close()
    if done:
        print(f"erased patient {args.patient_id}: data key destroyed, Patient.PersonalDataErased recorded")
    else:
        print(f"patient {args.patient_id} was already erased: nothing to do")
    if unsealed:
        print(f"clinic: warning: {unsealed} of this patient's events were stored before crypto-shredding and "
              "still hold their personal data in plain text; see docs/gdpr.md (events stored before this change)",
              file=sys.stderr)
        return 3
    return 0


def run_reapply(args: argparse.Namespace) -> int:
    """Destroy again the keys of every erased patient (after restoring a key store backup)."""
    registry, close = open_registry()
    try:
        erased = registry.erased_patients()
        with event_metadata(actor=operator(), correlation_id=f"gdpr-reapply:{uuid4()}"):
            redone = [patient_id for patient_id in erased if registry.erase_patient(patient_id)]
    finally:
        close()
    print(f"{len(erased)} erased patients; {len(redone)} keys found again and destroyed")
    for patient_id in redone:
        print(f"  {patient_id}")
    return 0


def open_registry() -> tuple[RegistryApplication, Callable[[], None]]:
    """The registry over its store and the shared key store, and a closer for everything opened."""
    apps = build_applications(settings(), create_table=False)

    def close() -> None:
        for app in apps.values():
            app.close()

    try:
        require_tables(apps)
    except Exception:
        close()
        raise
    return apps[RegistryApplication.name], close


def operator() -> str:
    """Who the erasure's event names as its actor: the operating system user running the CLI."""
    return f"cli:{getpass.getuser()}"


def _confirmed(patient_id: UUID) -> bool:
    if not sys.stdin.isatty():
        return False
    answer = input(f"This destroys the personal data of patient {patient_id} for good. Type the id to confirm: ")
    return answer.strip() == str(patient_id)
