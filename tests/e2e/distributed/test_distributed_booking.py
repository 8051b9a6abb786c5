"""Distributed mode end to end: services as OS processes, nginx, PostgreSQL, RabbitMQ, mTLS.

The tests share one deployment (module scope) and run in file order; each makes its own
doctors, patients and slots, so they do not depend on each other's data.
"""

from __future__ import annotations

import asyncio
import json
import signal
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime

import aiormq
from selenium.webdriver.common.by import By
from selenium.webdriver.support.expected_conditions import url_contains
from selenium.webdriver.support.ui import WebDriverWait

from infrastructure.messaging.topology import Topology
from interfaces.local_deployment.deployment import PASSWORD
from tests import services
from tests.e2e.distributed.bookings import book, publish_poison, settled, setup, slot_events
from tests.e2e.distributed.conftest import DEADLINE_SECONDS, eventually
from tests.kit.browser import follow, headless_chromium
from tests.kit.webhooks import webhook_receiver


def test_a_booking_is_confirmed_across_the_services(cluster):
    admin, [patient], doctor, [start] = setup(cluster)
    accepted = book(cluster, admin, patient, doctor, start)
    assert settled(cluster, admin, accepted["consultation_id"])["status"] == "CONFIRMED"
    status, saga = cluster.call("GET", f"/v1/sagas/{accepted['saga_id']}", admin)
    assert (status, saga["state"]) == (200, "COMPLETED")
    assert slot_events(cluster, admin, doctor, start) == ["Opened", "Held", "Booked"]
    eventually(lambda: [s["saga_id"] for s in cluster.call("GET", f"/v1/sagas?patient_id={patient}", admin)[1]
                        .get("items", [])] == [accepted["saga_id"]], what="the saga in the booking service's list")


def test_a_confirmed_consultation_moves_to_another_slot_across_the_services(cluster):
    admin, [patient], doctor, [start, later] = setup(cluster, starts=2)
    consultation = book(cluster, admin, patient, doctor, start)["consultation_id"]
    assert settled(cluster, admin, consultation)["status"] == "CONFIRMED"
    status, accepted = cluster.call("POST", f"/v1/consultations/{consultation}/reschedule", admin, {"start": later})
    assert status == 202, accepted
    eventually(lambda: cluster.call("GET", f"/v1/sagas/{accepted['saga_id']}", admin)[1].get("state") == "COMPLETED",
               what="the reschedule saga completed")
    status, moved = cluster.call("GET", f"/v2/consultations/{consultation}", admin)
    assert (status, datetime.fromisoformat(moved["start"])) == (200, datetime.fromisoformat(later))
    eventually(lambda: slot_events(cluster, admin, doctor, start) == ["Opened", "Held", "Booked", "Released"],
               what="the old slot released")
    assert slot_events(cluster, admin, doctor, later) == ["Opened", "Held", "Booked"]


def test_a_patients_webhook_hears_of_the_confirmation_through_the_notifications_service(cluster):
    admin, [patient], doctor, [start] = setup(cluster)
    own = cluster.token(patient, "PATIENT")
    with webhook_receiver() as receiver:
        status, webhook = cluster.call("POST", "/v1/webhooks", own, {"url": receiver.url,
                                                                     "events": ["consultation.confirmed"]})
        assert status == 201, webhook
        consultation = book(cluster, admin, patient, doctor, start)["consultation_id"]
        sent = receiver.next(timeout=30)
    assert sent.verified(webhook["secret"])["data"]["consultation_id"] == consultation
    logged = eventually(lambda: [d for d in cluster.call("GET", f"/v1/webhooks/{webhook['webhook_id']}/deliveries",
                                                         own)[1]["items"] if d["status"] == "delivered"],
                        what="the delivery logged as delivered")
    assert [(d["delivery_id"], d["attempts"]) for d in logged] == [(sent.headers["webhook-id"], 1)]


def test_fifty_concurrent_requests_for_one_slot_confirm_exactly_one(cluster):
    admin, patients, doctor, [start] = setup(cluster, patients=50)
    with ThreadPoolExecutor(max_workers=50) as pool:
        accepted = list(pool.map(lambda p: book(cluster, admin, p, doctor, start), patients))
    outcomes = [settled(cluster, admin, a["consultation_id"], timeout=60) for a in accepted]
    statuses = sorted((o["status"], o["rejection_reason"]) for o in outcomes)
    assert statuses == [("CONFIRMED", None)] + [("REJECTED", "slot_unavailable")] * 49
    assert slot_events(cluster, admin, doctor, start).count("Booked") == 1


def test_one_idempotency_key_sent_to_both_api_replicas_at_once_books_once(cluster):
    admin, [patient], doctor, [start] = setup(cluster)
    body = {"patient_id": patient, "doctor_id": doctor, "start": start, "reason": "retried"}
    key = {"Idempotency-Key": '"retry-of-one-booking"'}
    with ThreadPoolExecutor(max_workers=20) as pool:  # nginx spreads them over both consultations replicas
        answers = list(pool.map(lambda _: cluster.call("POST", "/v1/consultations", admin, body, key), range(20)))
    assert {status for status, _ in answers} == {202}
    [consultation_id] = {answer["consultation_id"] for _, answer in answers}
    assert settled(cluster, admin, consultation_id)["status"] == "CONFIRMED"
    status, listed = cluster.call("GET", f"/v1/patients/{patient}/consultations", admin)
    assert (status, [c["consultation_id"] for c in listed["items"]]) == (200, [consultation_id])
    other = cluster.call("POST", "/v1/consultations", admin, {**body, "reason": "another"}, key)
    assert other[0] == 422 and other[1]["type"].endswith("idempotency-key-reused")


def test_a_poison_message_is_dead_lettered_while_the_bookings_behind_it_complete(cluster):
    admin, [patient], doctor, [start] = setup(cluster)
    asyncio.run(publish_poison(cluster.prefix))
    accepted = book(cluster, admin, patient, doctor, start)
    assert settled(cluster, admin, accepted["consultation_id"])["status"] == "CONFIRMED"
    dead = eventually(lambda: asyncio.run(_dead_letters(cluster.prefix, "Booking")), what="poison in the DLQ")
    assert any(headers.get("x-dead-letter-reason") for headers in dead)


def test_operators_list_show_redrive_and_purge_dead_letters_with_the_cli(cluster):
    # given the poison message of the test above in the booking DLQ
    listed = json.loads(cluster.clinic("dlq", "list", "booking", "--json"))
    assert [letter["message_id"] for letter in listed] == ["poison-1"] and listed[0]["reason"]
    assert json.loads(cluster.clinic("dlq", "show", "booking", "poison-1"))["body"].endswith("not an event")
    # when it is re-driven it is poison again, so it comes back; purge empties the queue
    assert "re-drove 1 message(s)" in cluster.clinic("dlq", "redrive", "booking", "poison-1")
    eventually(lambda: json.loads(cluster.clinic("dlq", "list", "booking", "--json")), what="poison back in the DLQ")
    assert "purged 1 message(s)" in cluster.clinic("dlq", "purge", "booking", "--yes")
    assert json.loads(cluster.clinic("dlq", "list", "booking", "--json")) == []


def test_an_admin_signs_in_to_the_console_behind_the_gateway_reads_a_saga_rebuilds_a_read_model_and_redrives_a_poison_message(
        cluster):
    admin, [patient], doctor, [start] = setup(cluster)
    accepted = book(cluster, admin, patient, doctor, start)
    assert settled(cluster, admin, accepted["consultation_id"])["status"] == "CONFIRMED"
    name, password = cluster.operator("ops-admin", "ADMIN")
    asyncio.run(publish_poison(cluster.prefix, "poison-console"))
    eventually(lambda: json.loads(cluster.clinic("dlq", "list", "booking", "--json")), what="the poison dead-lettered")
    with headless_chromium() as browser:
        browser.get(f"{cluster.base}/console/")
        WebDriverWait(browser, 10).until(url_contains(f"{cluster.issuer}/oauth/authorize"))  # the server's page
        browser.find_element(By.NAME, "username").send_keys(name)
        browser.find_element(By.NAME, "password").send_keys(password)
        follow(browser, browser.find_element(By.CSS_SELECTOR, "button[type=submit]"), "/console/sagas")
        assert browser.current_url == f"{cluster.base}/console/sagas"  # no code or token left in the URL
        session = {cookie["name"]: cookie for cookie in browser.get_cookies()}["clinic_console"]
        assert (session["httpOnly"], session["sameSite"], session["path"]) == (True, "Strict", "/console")
        # the sagas, through the booking service's API as this admin
        browser.get(f"{cluster.base}/console/sagas?patient={patient}")
        row = browser.find_element(By.CSS_SELECTOR, f'tr[data-saga="{accepted["saga_id"]}"]')
        follow(browser, row.find_element(By.TAG_NAME, "a"), f"/console/sagas/{accepted['saga_id']}")
        assert browser.find_element(By.ID, "state").text == "COMPLETED"
        assert "confirm_consultation" in browser.find_element(By.ID, "steps").text
        # a read model rebuilt by the projection worker, through its API, its progress followed to the end
        follow(browser, browser.find_element(By.LINK_TEXT, "Read models"), "/console/read-models")
        serving = browser.find_element(By.CSS_SELECTOR, 'tr[data-projection="saga_status"] td').text  # vN
        follow(browser, browser.find_element(By.ID, "rebuild-saga_status"), "#saga_status")
        WebDriverWait(browser, 30).until(
            lambda _: "rebuilt" in browser.find_element(By.ID, "progress-saga_status").text)
        assert browser.find_element(By.ID, "bar-saga_status").get_attribute("value") == "100"
        browser.refresh()  # readers switched to the new version
        rebuilt = browser.find_element(By.CSS_SELECTOR, 'tr[data-projection="saga_status"] td').text
        assert rebuilt == f"v{int(serving.removeprefix('v')) + 1}"
        follow(browser, browser.find_element(By.LINK_TEXT, "Dead letters"), "/console/dead-letters")
        row = browser.find_element(By.CSS_SELECTOR, 'tr[data-follower="booking"]')
        follow(browser, row.find_element(By.LINK_TEXT, "booking"), "/console/dead-letters/booking")
        letter = browser.find_element(By.CSS_SELECTOR, 'section[data-message-id="poison-console"]')
        assert "consultations.Consultation.Requested" in letter.text and "not an event" in letter.text
        follow(browser, letter.find_element(By.CSS_SELECTOR, "button.redrive"), "done=redrive")
        assert "Re-drove 1 message to booking" in browser.find_element(By.ID, "done").text

        def back_after_one_redrive() -> bool:  # still poison: booking dead-letters it again
            browser.refresh()
            again = browser.find_elements(By.CSS_SELECTOR, 'section[data-message-id="poison-console"] .redrives')
            return bool(again) and again[0].text == "1 time"

        eventually(back_after_one_redrive, what="the re-driven poison back, re-driven once")
    assert "purged 1 message(s)" in cluster.clinic("dlq", "purge", "booking", "--yes")


def test_a_patient_cannot_sign_in_to_the_console(cluster):
    with headless_chromium() as browser:
        browser.get(f"{cluster.base}/console/login")
        WebDriverWait(browser, 10).until(url_contains("/oauth/authorize"))
        cluster.token("00000000-0000-0000-0000-0000000000aa", "PATIENT")  # registers the patient's account
        browser.find_element(By.NAME, "username").send_keys("00000000-0000-0000-0000-0000000000aa-patient")
        browser.find_element(By.NAME, "password").send_keys(PASSWORD)
        follow(browser, browser.find_element(By.CSS_SELECTOR, "button[type=submit]"), "/console/callback")
        assert browser.find_element(By.TAG_NAME, "h1").text == "Not signed in"
        assert "invalid_scope" in browser.find_element(By.CSS_SELECTOR, "[role=alert]").text  # nothing to grant
        assert "clinic_console" not in {cookie["name"] for cookie in browser.get_cookies()}


def test_with_the_registry_down_bookings_are_accepted_then_compensated_or_withdrawn_and_confirmed_after_it_returns(cluster):
    admin, [patient], doctor, starts = setup(cluster, starts=3)
    cluster.stop("registry")
    try:
        # while it is down: accepted, held, then compensated at the deadline
        waiting = book(cluster, admin, patient, doctor, starts[0])
        # and a booking its patient cancels before the saga could decide stops at once, freeing its slot
        withdrawn = book(cluster, admin, patient, doctor, starts[2])
        status, cancelled = cluster.call("POST", f"/v1/consultations/{withdrawn['consultation_id']}/cancel", admin,
                                         {"reason": "found another time"})
        assert (status, cancelled["status"]) == (200, "CANCELLED")
        eventually(lambda: cluster.call("GET", f"/v1/sagas/{withdrawn['saga_id']}", admin)[1].get("state")
                   == "CANCELLED", what="the withdrawn booking's saga cancelled")
        eventually(lambda: slot_events(cluster, admin, doctor, starts[2])[-1] == "Released",
                   what="the withdrawn booking's slot released")
        outcome = settled(cluster, admin, waiting["consultation_id"], timeout=DEADLINE_SECONDS + 20)
        assert (outcome["status"], outcome["rejection_reason"]) == ("REJECTED", "validation_unavailable")
        assert slot_events(cluster, admin, doctor, starts[0])[-1] == "Released"
    finally:
        cluster.start("registry")
    after = book(cluster, admin, patient, doctor, starts[1])
    assert settled(cluster, admin, after["consultation_id"])["status"] == "CONFIRMED"


def test_killing_the_booking_worker_mid_load_loses_no_booking_and_books_no_slot_twice(cluster):
    admin, patients, doctor, starts = setup(cluster, patients=20, starts=10)
    with ThreadPoolExecutor(max_workers=4) as pool:
        futures = [pool.submit(book, cluster, admin, patients[i], doctor, starts[i % 10]) for i in range(20)]
        eventually(lambda: sum(f.done() for f in futures) >= 5, what="the first bookings accepted")
        assert cluster.stop("booking", signal.SIGKILL) == -signal.SIGKILL  # while requests keep coming
        accepted = [future.result() for future in futures]
    cluster.start("booking")
    outcomes = [settled(cluster, admin, a["consultation_id"], timeout=DEADLINE_SECONDS + 40) for a in accepted]
    confirmed_per_start: dict[str, int] = {}
    for request, outcome in zip(range(20), outcomes, strict=True):
        assert outcome["status"] in ("CONFIRMED", "REJECTED")
        if outcome["status"] == "CONFIRMED":
            confirmed_per_start[starts[request % 10]] = confirmed_per_start.get(starts[request % 10], 0) + 1
    assert all(n == 1 for n in confirmed_per_start.values())
    for start in starts:  # no slot is left held: each ends booked once or open
        history = slot_events(cluster, admin, doctor, start)
        assert history[-1] in ("Booked", "Released", "Opened")
        assert history.count("Booked") <= 1


async def _dead_letters(prefix: str, follower: str) -> list[dict]:
    connection = await aiormq.connect(services.amqp_url())
    channel = await connection.channel()
    queue = Topology(prefix=prefix).queues(follower).dead_letters
    headers = []
    while (message := await channel.basic_get(queue, no_ack=False)).delivery_tag is not None and \
            message.delivery.message_count is not None:
        headers.append(dict(message.header.properties.headers or {}))
        if not message.delivery.message_count:
            break
    await connection.close()  # unacked messages go back to the queue
    return headers


def test_a_worker_stops_gracefully_and_its_context_catches_up_when_it_returns(cluster):
    admin, [patient], doctor, [start] = setup(cluster)
    # given the consultations worker stopped with SIGTERM (exit 0: consumers stopped, in-flight acked)
    assert cluster.stop("consultations-worker") == 0
    # when a booking is accepted by an API replica meanwhile, it waits in the outbox
    accepted = book(cluster, admin, patient, doctor, start)
    path = f"/v1/consultations/{accepted['consultation_id']}"
    # (the read model shows it once the projection worker has applied it: tens of milliseconds)
    body = eventually(lambda: (lambda r: r[1] if r[0] == 200 else None)(cluster.call("GET", path, admin)),
                      what="the requested consultation in the read model")
    assert body["status"] == "REQUESTED"
    # then, once the worker is back, the relay publishes it and the saga confirms it
    cluster.start("consultations-worker")
    assert settled(cluster, admin, accepted["consultation_id"])["status"] == "CONFIRMED"
