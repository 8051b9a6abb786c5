"""Which contexts keep aggregates in memory: only followers whose events hold no personal data (a
decrypted aggregate would outlive the patient's erasure), and only in the embedded clinic."""

from __future__ import annotations

from application.bootstrap import CONTEXTS, build_applications, cached
from application.settings import Settings


def test_only_followers_without_personal_data_keep_aggregates():
    assert {cls.name: cached(cls.name) for cls in CONTEXTS} == {
        "Registry": False, "Consultations": False, "Scheduling": True, "Booking": True, "Notifications": True}


def test_the_embedded_clinic_trusts_its_cache_and_the_tools_keep_none():
    embedded = build_applications(Settings(persistence="memory"), cache=True)
    tools = build_applications(Settings(persistence="memory"))
    try:
        assert embedded["Booking"].repository.cache is not None and not embedded["Booking"].repository.fastforward
        assert embedded["Consultations"].repository.cache is None
        assert all(app.repository.cache is None for app in tools.values())
    finally:
        for app in [*embedded.values(), *tools.values()]:
            app.close()
