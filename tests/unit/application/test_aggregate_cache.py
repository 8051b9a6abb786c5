"""Which contexts keep aggregates in memory: never one whose events hold personal data (a decrypted
aggregate would outlive the patient's erasure), the others as the mode asks."""

from __future__ import annotations

from application.bootstrap import CONTEXTS, build_applications, cache_for
from application.settings import Settings


def test_contexts_holding_personal_data_never_cache_and_the_others_cache_as_asked():
    assert {cls.name: cache_for(cls.name, "private") for cls in CONTEXTS} == {
        "Registry": None, "Consultations": None, "Scheduling": "private", "Booking": "private"}
    assert {cls.name: cache_for(cls.name, None) for cls in CONTEXTS} == dict.fromkeys(
        ("Registry", "Consultations", "Scheduling", "Booking"))


def test_the_embedded_clinic_trusts_its_cache_and_the_tools_keep_none():
    embedded = build_applications(Settings(persistence="memory"), cache="private")
    tools = build_applications(Settings(persistence="memory"))
    try:
        assert embedded["Booking"].repository.cache is not None and not embedded["Booking"].repository.fastforward
        assert embedded["Consultations"].repository.cache is None
        assert all(app.repository.cache is None for app in tools.values())
    finally:
        for app in [*embedded.values(), *tools.values()]:
            app.close()
