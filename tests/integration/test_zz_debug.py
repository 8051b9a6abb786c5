from datetime import UTC, date, datetime
import logging
import pytest
from application.runner import RunnerStalledError
START = datetime(2027, 1, 5, 9, 0, tzinfo=UTC)

def test_dbg(make_clinic):
    clinic = make_clinic("sqlalchemy")
    patient = clinic.registry.register_patient("Ana", "ana@example.org", date(1990, 1, 1), True)
    doctor = clinic.registry.register_doctor("Dr. Rui", "cardiology")
    clinic.open_slots(doctor, [(START, 30)])
    first = clinic.book(patient, doctor, START, "check-up")
    second = clinic.book(patient, doctor, START, "check-up again")
    try:
        clinic.wait_until_settled(3)
    except RunnerStalledError as e:
        print("STALLED", e)
    clinic.runner.stop()
    for app in clinic._apps():
        print("==", app.name)
        for n in app.recorder.select_notifications(start=1, limit=100):
            print(n.id, n.originator_id, n.originator_version, n.topic)
        for leader in ("Booking", "Consultations", "Scheduling"):
            try:
                print("tracking", leader, app.recorder.max_tracking_id(leader))
            except Exception as e:
                pass
