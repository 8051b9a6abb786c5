"""Reads of one patient's record never fail because they are audited: concurrent reads do not contend."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import date

from application.bootstrap import build_applications
from application.record_access import PatientRecords
from application.settings import Settings

READS = 100


def test_a_hundred_concurrent_reads_of_one_record_all_succeed_and_are_all_logged(tmp_path):
    apps = build_applications(Settings(persistence="sqlite", data_dir=tmp_path), create_table=True)
    registry = apps["Registry"]
    try:
        patient_id = registry.register_patient("Ana", "ana@example.org", date(1990, 1, 1), True)
        records = PatientRecords(registry)
        with ThreadPoolExecutor(max_workers=32) as pool:
            views = list(pool.map(lambda n: records.read(patient_id, f"reader-{n}", ["ADMIN"], "getPatient"),
                                  range(READS)))
        assert {view.name for view in views} == {"Ana"}
        reads = records.accesses(patient_id)
        assert sorted(r.reader for r in reads) == sorted(f"reader-{n}" for n in range(READS))
    finally:
        for app in apps.values():
            app.close()


def test_reads_from_two_processes_views_of_one_store_both_land(tmp_path):
    settings = Settings(persistence="sqlite", data_dir=tmp_path)
    first, second = build_applications(settings, create_table=True), build_applications(settings)
    try:
        patient_id = first["Registry"].register_patient("Ana", "ana@example.org", date(1990, 1, 1), True)
        one, other = PatientRecords(first["Registry"]), PatientRecords(second["Registry"])
        with ThreadPoolExecutor(max_workers=8) as pool:
            list(pool.map(lambda n: (one if n % 2 else other).record_read(patient_id, f"r{n}", [], "getPatient"),
                          range(40)))
        assert len(one.accesses(patient_id)) == 40
    finally:
        for app in (*first.values(), *second.values()):
            app.close()
