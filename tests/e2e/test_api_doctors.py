"""Doctors and their schedules over HTTP: finding a doctor, closing and reopening slots, opening
recurring availability, and recording how a consultation went."""

from __future__ import annotations

import uuid
from datetime import datetime

import pytest

from tests.e2e.conftest import START, assert_problem, book, open_slot, register_doctor

DAY = START[:10]
AVAILABILITY = {"weekdays": ["MON", "WED"], "opens": "09:00", "closes": "11:00", "slot_minutes": 30,
                "first_day": "2027-03-22", "weeks": 2, "time_zone": "Europe/Lisbon"}


@pytest.fixture
def doctor(token, world):
    return token(world.doctor_id, "DOCTOR")


@pytest.fixture
def patient(token, world):
    return token(world.patient_id, "PATIENT")


# Finding a doctor ------------------------------------------------------------------------------------


def doctors(api, headers, query=""):
    response = api.get(f"/v1/doctors{query}", headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


def test_a_patient_finds_doctors_by_specialty_newest_first(api, admin, clinic, patient):
    cardio = [api.post("/v1/doctors", json={"name": f"Dr C{i}", "specialty": "Cardiology"}, headers=admin).json()[
        "doctor_id"] for i in range(3)]
    api.post("/v1/doctors", json={"name": "Dr D", "specialty": "dermatology"}, headers=admin)
    clinic.wait_until_settled()
    listed = doctors(api, patient, "?specialty=cardiology")
    assert [d["doctor_id"] for d in listed["items"]] == cardio[::-1]
    assert listed["items"][0] | {"doctor_id": None} == {"doctor_id": None, "name": "Dr C2",
                                                        "specialty": "Cardiology", "active": True}


def test_the_directory_pages_with_a_cursor_and_filters_on_active(api, admin, clinic, world, patient):
    ids = [register_doctor(api, admin, f"Dr {i}") for i in range(5)]
    api.post(f"/v1/doctors/{ids[1]}/deactivate", headers=admin)
    clinic.wait_until_settled()
    first = doctors(api, patient, "?limit=2&active=true")
    second = doctors(api, patient, f"?limit=2&active=true&cursor={first['next_cursor']}")
    third = doctors(api, patient, f"?limit=2&active=true&cursor={second['next_cursor']}")
    seen = [d["doctor_id"] for page in (first, second, third) for d in page["items"]]
    assert seen == [ids[4], ids[3], ids[2], ids[0], world.doctor_id] and third["next_cursor"] is None
    inactive = doctors(api, patient, "?active=false")["items"]
    assert [(d["doctor_id"], d["active"]) for d in inactive] == [(ids[1], False)]


def test_anyone_signed_in_reads_a_doctor_and_an_unknown_one_is_404(api, clinic, token, world):
    clinic.wait_until_settled()
    for role in ("PATIENT", "DOCTOR", "AUDITOR", "ADMIN"):
        read = api.get(f"/v1/doctors/{world.doctor_id}", headers=token("someone", role))
        assert (read.status_code, read.json()["name"]) == (200, "Dr Rui"), role
    assert_problem(api.get(f"/v1/doctors/{uuid.uuid4()}", headers=token("someone", "PATIENT")), 404, "not-found")


def test_a_bad_cursor_is_400(api, patient):
    assert_problem(api.get("/v1/doctors?cursor=nonsense", headers=patient), 400, "invalid-parameter")


# Closing and reopening a slot ------------------------------------------------------------------------


def available(api, headers, world):
    listed = api.get(f"/v1/doctors/{world.doctor_id}/slots?date={DAY}&status=available", headers=headers)
    return [slot["start"] for slot in listed.json()["slots"]]


def test_a_doctor_closes_an_open_slot_and_reopens_it(api, clinic, world, doctor, patient):
    closed = api.post(f"/v1/doctors/{world.doctor_id}/slots/{world.slot_id}/close", headers=doctor)
    assert closed.status_code == 200, closed.text
    assert closed.json() == {"slot_id": world.slot_id, "status": "CLOSED"}
    clinic.wait_until_settled()
    assert available(api, patient, world) == []
    refused = book(api, patient, world.patient_id, world.doctor_id).json()["consultation_id"]
    clinic.wait_until_settled()
    assert api.get(f"/v1/consultations/{refused}", headers=patient).json()["rejection_reason"] == "slot_unavailable"
    reopened = api.post(f"/v1/doctors/{world.doctor_id}/slots/{world.slot_id}/reopen", headers=doctor)
    assert reopened.json() == {"slot_id": world.slot_id, "status": "OPEN"}
    clinic.wait_until_settled()
    assert available(api, patient, world) == [START]
    events = clinic.auditor.trail("slot", uuid.UUID(world.slot_id)).events
    assert [e.type for e in events][-2:] == ["Slot.Closed", "Slot.Reopened"]


def test_a_booked_slot_cannot_be_closed(api, clinic, world, doctor, patient):
    book(api, patient, world.patient_id, world.doctor_id)
    clinic.wait_until_settled()
    response = api.post(f"/v1/doctors/{world.doctor_id}/slots/{world.slot_id}/close", headers=doctor)
    assert_problem(response, 409, "slot-in-use")


def test_another_doctor_may_not_close_the_slot_and_a_slot_of_another_doctor_is_404(api, admin, token, world):
    other = register_doctor(api, admin, "Dr Leo")
    response = api.post(f"/v1/doctors/{world.doctor_id}/slots/{world.slot_id}/close", headers=token(other, "DOCTOR"))
    assert_problem(response, 403, "forbidden")
    theirs = open_slot(api, admin, other)
    response = api.post(f"/v1/doctors/{world.doctor_id}/slots/{theirs}/close", headers=admin)
    assert_problem(response, 404, "not-found")


# Recurring availability -------------------------------------------------------------------------------


def test_a_doctor_opens_weeks_of_slots_in_one_call_and_asking_again_opens_nothing(api, clinic, world, doctor):
    first = api.post(f"/v1/doctors/{world.doctor_id}/availability", json=AVAILABILITY, headers=doctor)
    assert first.status_code == 201, first.text
    assert (len(first.json()["slot_ids"]), first.json()["already_open"]) == (16, 0)  # 2 days x 2 weeks x 4 slots
    again = api.post(f"/v1/doctors/{world.doctor_id}/availability", json=AVAILABILITY, headers=doctor)
    assert (again.status_code, again.json()) == (201, {"slot_ids": [], "already_open": 16})
    clinic.wait_until_settled()
    monday = api.get(f"/v1/doctors/{world.doctor_id}/slots?date=2027-03-22", headers=doctor).json()["slots"]
    assert [s["start"] for s in monday] == ["2027-03-22T09:00:00Z", "2027-03-22T09:30:00Z",
                                            "2027-03-22T10:00:00Z", "2027-03-22T10:30:00Z"]


def test_local_times_stay_put_across_a_daylight_saving_change(api, clinic, world, doctor):
    # Lisbon moves to summer time on Sunday 2027-03-28: 09:00 is 09:00Z before and 08:00Z after
    body = AVAILABILITY | {"weekdays": ["MON"], "closes": "09:30"}
    opened = api.post(f"/v1/doctors/{world.doctor_id}/availability", json=body, headers=doctor).json()["slot_ids"]
    clinic.wait_until_settled()
    starts = [clinic.scheduling.slot(uuid.UUID(slot)).start for slot in opened]
    assert starts == [datetime.fromisoformat("2027-03-22T09:00:00+00:00"),
                      datetime.fromisoformat("2027-03-29T08:00:00+00:00")]


@pytest.mark.parametrize(("change", "field"), [
    ({"time_zone": "Mars/Olympus"}, "$.time_zone"),
    ({"closes": "08:00"}, "$"),
    ({"slot_minutes": 180}, "$"),
    ({"weeks": 13}, "$.weeks"),
    ({"weekdays": ["FUNDAY"]}, "$.weekdays[0]"),
    ({"opens": "9:00"}, "$.opens"),
], ids=["unknown zone", "closes before it opens", "slot longer than the window", "too many weeks",
        "no such weekday", "not HH:MM"])
def test_an_availability_that_cannot_be_opened_is_422_naming_why(api, world, doctor, change, field):
    response = api.post(f"/v1/doctors/{world.doctor_id}/availability", json=AVAILABILITY | change, headers=doctor)
    problem = assert_problem(response, 422, "invalid-input")
    assert problem["errors"][0]["field"] == field


def test_more_than_500_slots_in_one_call_is_422(api, world, doctor):
    body = AVAILABILITY | {"weekdays": ["MON", "TUE", "WED", "THU", "FRI", "SAT", "SUN"], "opens": "00:00",
                           "closes": "23:55", "slot_minutes": 5, "weeks": 1}
    problem = assert_problem(api.post(f"/v1/doctors/{world.doctor_id}/availability", json=body, headers=doctor),
                             422, "invalid-input")
    assert "at most 500" in problem["detail"]


# Completing a consultation and marking a no-show --------------------------------------------------------


@pytest.fixture
def confirmed(api, clinic, world, patient):
    consultation_id = book(api, patient, world.patient_id, world.doctor_id).json()["consultation_id"]
    clinic.wait_until_settled()
    return consultation_id


@pytest.mark.parametrize(("ending", "status"), [("complete", "COMPLETED"), ("no-show", "NO_SHOW")])
def test_its_doctor_records_how_a_consultation_went(api, clinic, world, doctor, patient, confirmed, ending, status):
    response = api.post(f"/v1/consultations/{confirmed}/{ending}", headers=doctor)
    assert (response.status_code, response.json()) == (200, {"consultation_id": confirmed, "status": status})
    clinic.wait_until_settled()
    assert api.get(f"/v1/consultations/{confirmed}", headers=patient).json()["status"] == status
    again = api.post(f"/v1/consultations/{confirmed}/{ending}", headers=doctor)
    assert_problem(again, 409, "invalid-state")


@pytest.mark.parametrize("who", ["its patient", "another doctor", "an auditor"])
def test_only_its_doctor_or_an_admin_records_how_it_went(api, admin, token, world, confirmed, who):
    headers = {"its patient": token(world.patient_id, "PATIENT"),
               "another doctor": token(register_doctor(api, admin, "Dr Leo"), "DOCTOR"),
               "an auditor": token("auditor-1", "AUDITOR")}[who]
    assert_problem(api.post(f"/v1/consultations/{confirmed}/complete", headers=headers), 403)
