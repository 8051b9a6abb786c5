"""The read side over HTTP: lists from the projections, freshness, read-your-writes."""

from __future__ import annotations

from tests.e2e.conftest import START, assert_problem, book, open_slot, register_patient

DAY = START[:10]


def test_a_command_returns_its_position_and_a_query_passing_it_sees_the_write(api, admin, world):
    # given a booking just accepted, with the position its events reached
    accepted = book(api, admin, world.patient_id, world.doctor_id)
    position = accepted.headers["x-event-position"]
    assert position.startswith("Consultations:")
    # when its consultation is read passing that position (no other synchronisation)
    response = api.get(f"/v1/consultations/{accepted.json()['consultation_id']}",
                       headers=admin | {"X-Min-Position": position})
    # then the write is visible and the answer says how fresh it is
    assert response.status_code == 200
    assert "x-projection-stale" not in response.headers
    assert int(response.headers["x-projection-position"]) >= int(position.split(":")[1])


def test_a_position_the_views_cannot_reach_in_time_is_answered_stale(api, admin, world):
    response = api.get(f"/v1/doctors/{world.doctor_id}/slots?date={DAY}",
                       headers=admin | {"X-Min-Position": "Scheduling:999999"})
    assert (response.status_code, response.headers["x-projection-stale"]) == (200, "true")


def test_a_malformed_position_is_400(api, admin, world):
    response = api.get(f"/v1/doctors/{world.doctor_id}/slots?date={DAY}", headers=admin | {"X-Min-Position": "x"})
    assert_problem(response, 400, "invalid-parameter")


def test_a_patients_consultations_come_newest_first_in_cursor_pages(api, admin, clinic, world, token):
    # given three bookings of the patient at three starts
    later = [START.replace("09:00", "10:00"), START.replace("09:00", "11:00")]
    for start in later:
        open_slot(api, admin, world.doctor_id, start)
    for start in [START, *later]:
        book(api, admin, world.patient_id, world.doctor_id, start)
    clinic.wait_until_settled()
    patient = token(world.patient_id, "PATIENT")
    # when the patient reads two per page
    first = api.get(f"/v1/patients/{world.patient_id}/consultations?limit=2", headers=patient).json()
    second = api.get(f"/v1/patients/{world.patient_id}/consultations?limit=2&cursor={first['next_cursor']}",
                     headers=patient).json()
    # then they come newest first, with no repeat, and the last page has no cursor
    starts = [c["start"][11:16] for c in first["items"] + second["items"]]
    assert (starts, second["next_cursor"]) == (["11:00", "10:00", "09:00"], None)


def test_a_patients_consultations_filter_by_status_and_are_private(api, admin, clinic, world, token):
    book(api, admin, world.patient_id, world.doctor_id)
    book(api, admin, world.patient_id, world.doctor_id)  # the same slot again: rejected
    clinic.wait_until_settled()
    path = f"/v1/patients/{world.patient_id}/consultations"
    rejected = api.get(f"{path}?status=REJECTED", headers=admin).json()["items"]
    assert [c["rejection_reason"] for c in rejected] == ["slot_unavailable"]
    other = register_patient(api, admin, "Rui")
    assert_problem(api.get(path, headers=token(other, "PATIENT")), 403)
    assert_problem(api.get(f"{path}?cursor=nonsense", headers=admin), 400)


def test_a_doctors_agenda_lists_the_days_consultations_for_the_doctor_only(api, admin, clinic, world, token):
    book(api, admin, world.patient_id, world.doctor_id)
    clinic.wait_until_settled()
    doctor = token(world.doctor_id, "DOCTOR")
    agenda = api.get(f"/v1/doctors/{world.doctor_id}/agenda?date={DAY}", headers=doctor).json()
    assert [c["status"] for c in agenda["consultations"]] == ["CONFIRMED"]
    assert api.get(f"/v1/doctors/{world.doctor_id}/agenda?date=2027-02-01", headers=doctor).json()[
        "consultations"] == []
    assert_problem(api.get(f"/v1/doctors/{world.doctor_id}/agenda?date={DAY}",
                           headers=token(world.patient_id, "PATIENT")), 403)


def test_free_slots_are_the_open_ones_and_any_caller_may_list_them(api, admin, clinic, world, token):
    open_slot(api, admin, world.doctor_id, START.replace("09:00", "10:00"))
    book(api, admin, world.patient_id, world.doctor_id)
    clinic.wait_until_settled()
    patient = token(world.patient_id, "PATIENT")
    every = api.get(f"/v1/doctors/{world.doctor_id}/slots?date={DAY}", headers=patient).json()["slots"]
    free = api.get(f"/v1/doctors/{world.doctor_id}/slots?date={DAY}&status=available", headers=patient).json()
    assert [s["status"] for s in every] == ["BOOKED", "OPEN"]
    assert [s["start"][11:16] for s in free["slots"]] == ["10:00"]
