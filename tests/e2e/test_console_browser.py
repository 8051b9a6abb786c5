"""The operations console in a real browser: headless Chromium (Debian's, driven by its chromedriver through
Selenium) against the product served by uvicorn, as an operator uses it.

With ``CLINIC_UPDATE_SCREENSHOTS=1`` the tests write the screenshots docs/console.md shows.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from uuid import UUID

import pytest
import uvicorn
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import Select, WebDriverWait

from application.clinic import Clinic
from application.consultations import ConsultationsApplication
from interfaces.http.app import create_app
from interfaces.http.console.session import Console
from tests.integration.http_servers import uvicorn_server
from tests.kit.bookings import a_saga
from tests.kit.browser import follow, headless_chromium, screenshot
from tests.kit.console import ISSUER, clinic_with_the_registry_down
from tests.kit.dead_letters import followers_on_the_broker
from tests.kit.eventually import eventually


@pytest.fixture
def clinic() -> Iterator[Clinic]:
    with clinic_with_the_registry_down() as clinic:
        yield clinic


@pytest.fixture
def console(clinic: Clinic) -> Iterator[str]:
    app = create_app(clinic, ISSUER.verifier(), console=Console(ISSUER, stuck_after=timedelta(seconds=1)))
    config = lambda port: uvicorn.Config(app, port=port, log_config=None, lifespan="on")  # noqa: E731
    with uvicorn_server(config) as port:
        yield f"http://127.0.0.1:{port}/console"


@pytest.fixture
def browser() -> Iterator[WebDriver]:
    with headless_chromium() as browser:
        yield browser


def sign_in(browser: WebDriver, console: str, role: str = "ADMIN") -> None:
    browser.get(console)
    assert browser.current_url.endswith("/console/login")  # sent to sign in first
    browser.find_element(By.ID, "operator").send_keys("ops-1")
    Select(browser.find_element(By.ID, "role")).select_by_value(role)
    follow(browser, browser.find_element(By.CSS_SELECTOR, "form.stack button"), "/console/sagas")
    assert browser.find_element(By.TAG_NAME, "h1").text == "Sagas"


def consultation_of(clinic: Clinic, saga_id: str) -> UUID:
    return clinic.saga(UUID(saga_id)).consultation_id


def a_booking_waiting_on_the_registry(clinic: Clinic) -> str:
    return a_saga(clinic)  # the fixture's registry is down


def test_an_operator_finds_a_saga_stuck_on_the_registry_and_reads_why(clinic, console, browser):
    saga_id = a_booking_waiting_on_the_registry(clinic)
    sign_in(browser, console)

    def listed_as_stuck() -> bool:
        browser.get(f"{console}/sagas?state=stuck")
        return bool(browser.find_elements(By.CSS_SELECTOR, f'tr[data-saga="{saga_id}"]'))

    eventually(listed_as_stuck, timeout=15, what="the saga listed as stuck")
    row = browser.find_element(By.CSS_SELECTOR, f'tr[data-saga="{saga_id}"]')
    assert "VALIDATING" in row.text and "stuck" in row.text
    screenshot(browser, "sagas-stuck")
    follow(browser, row.find_element(By.TAG_NAME, "a"), f"/console/sagas/{saga_id}")

    assert browser.current_url.endswith(f"/console/sagas/{saga_id}")
    assert browser.find_element(By.ID, "state").text == "VALIDATING"
    waiting = browser.find_element(By.ID, "waiting").text
    assert "Stuck: waiting on validate_registrants" in waiting and "unavailable" in waiting
    assert "registry down: connection refused" in waiting
    steps = [(item.find_element(By.CLASS_NAME, "step-name").text, item.find_element(By.CLASS_NAME, "step-status").text)
             for item in browser.find_elements(By.CSS_SELECTOR, "#steps li")]
    assert steps[:4] == [("hold_slot", "requested"), ("hold_slot", "succeeded"), ("validate_registrants", "requested"),
                         ("validate_registrants", "unavailable")]
    events = browser.find_element(By.ID, "events").text
    assert "BookingSaga.Started" in events and "BookingSaga.ValidationUnavailable" in events
    screenshot(browser, "saga-stuck")
    assert not [entry for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]  # no CSP refusal

    follow(browser, browser.find_element(By.ID, "compensate"), f"/console/sagas/{saga_id}/compensate")
    assert browser.find_element(By.TAG_NAME, "h1").text == "Compensate now?"
    screenshot(browser, "compensate-confirm")
    follow(browser, browser.find_element(By.ID, "confirm"), "?done=compensate")
    assert browser.find_element(By.ID, "done").text.startswith("Done: compensate now")
    assert browser.find_element(By.ID, "state").text == "REJECTED"
    assert "compensated_by_operator" in browser.find_element(By.CSS_SELECTOR, "dl.facts").text
    assert "operator:ops-1" in browser.find_element(By.ID, "events").text  # the operator is the actor
    assert clinic.require(ConsultationsApplication).consultation(consultation_of(clinic, saga_id)).status == "REJECTED"
    assert not browser.find_elements(By.ID, "compensate")  # an ended saga offers nothing more

    consultation = str(consultation_of(clinic, saga_id))
    follow(browser, browser.find_element(By.ID, "consultation"), f"/console/streams/consultation/{consultation}")
    assert "Consultation.Rejected" in browser.find_element(By.ID, "events").text
    changed = browser.find_element(By.ID, "diff").text  # the latest version, against the one before
    assert "Changed from version 1 to 2" in browser.find_element(By.ID, "diff-title").text
    assert "REQUESTED" in changed and "REJECTED" in changed and "compensated_by_operator" in changed
    screenshot(browser, "stream-diff")
    follow(browser, browser.find_element(By.LINK_TEXT, "1"), "?version=1")
    assert browser.find_element(By.ID, "diff-title").text == "Created at version 1"
    assert "REQUESTED" in browser.find_element(By.ID, "state").text


def test_an_auditor_reads_the_console_and_a_missing_saga_is_a_page_saying_so(clinic, console, browser):
    sign_in(browser, console, role="AUDITOR")
    saga_id = a_booking_waiting_on_the_registry(clinic)
    browser.get(f"{console}/sagas/{saga_id}")
    assert browser.find_element(By.ID, "state").text == "VALIDATING"
    assert not browser.find_elements(By.ID, "compensate")  # auditors read, never act
    browser.get(f"{console}/sagas/{saga_id}/compensate")
    assert browser.find_element(By.TAG_NAME, "h1").text == "Not allowed"
    browser.get(f"{console}/sagas/00000000-0000-4000-8000-000000000000")
    assert browser.find_element(By.TAG_NAME, "h1").text == "Not found"
    follow(browser, browser.find_element(By.LINK_TEXT, "Back to the console"), "/console/sagas")
    assert "ops-1 · AUDITOR" in browser.find_element(By.CLASS_NAME, "who").text
    follow(browser, browser.find_element(By.CSS_SELECTOR, "header form button"), "/console/login")  # sign out
    browser.get(f"{console}/sagas")
    assert browser.current_url.endswith("/console/login")


def test_the_list_follows_the_sagas_without_a_reload(clinic, console, browser):
    sign_in(browser, console)
    assert browser.find_elements(By.CSS_SELECTOR, "#saga-rows tr[data-saga]") == []
    browser.execute_script("window.notReloaded = true")  # gone if the page is loaded again
    saga_id = a_booking_waiting_on_the_registry(clinic)  # meanwhile, a booking starts a saga
    WebDriverWait(browser, 10).until(
        lambda _: browser.find_elements(By.CSS_SELECTOR, f'#saga-rows tr[data-saga="{saga_id}"]'))
    assert browser.execute_script("return window.notReloaded") is True
    assert "VALIDATING" in browser.find_element(By.CSS_SELECTOR, f'tr[data-saga="{saga_id}"]').text


def test_a_sagas_page_follows_the_saga_without_a_reload(clinic, console, browser):
    saga_id = a_booking_waiting_on_the_registry(clinic)
    sign_in(browser, console)
    browser.get(f"{console}/sagas/{saga_id}")
    WebDriverWait(browser, 10, ignored_exceptions=[StaleElementReferenceException]).until(  # told once on connecting
        lambda _: browser.find_element(By.ID, "state").text == "VALIDATING")
    browser.execute_script("window.notReloaded = true")  # gone if the page is loaded again
    clinic.compensate_saga(UUID(saga_id), "operator:someone-else")  # meanwhile, another admin compensates it
    WebDriverWait(browser, 10, ignored_exceptions=[StaleElementReferenceException]).until(  # swapped meanwhile
        lambda _: browser.find_element(By.ID, "state").text == "REJECTED")
    assert browser.execute_script("return window.notReloaded") is True
    assert "operator:someone-else" in browser.find_element(By.ID, "steps").text


def test_an_admin_finds_a_poison_message_in_dead_letters_and_redrives_it(clinic, browser):
    with followers_on_the_broker() as followers:
        followers.poison("booking", "poison-1")
        app = create_app(clinic, ISSUER.verifier(), console=Console(ISSUER, dead_letters=followers.desk()))
        with uvicorn_server(lambda port: uvicorn.Config(app, port=port, log_config=None, lifespan="on")) as port:
            sign_in(browser, f"http://127.0.0.1:{port}/console")
            follow(browser, browser.find_element(By.LINK_TEXT, "Dead letters"), "/console/dead-letters")
            row = browser.find_element(By.CSS_SELECTOR, 'tr[data-follower="booking"]')
            assert row.text.split() == ["booking", "1"]
            follow(browser, row.find_element(By.LINK_TEXT, "booking"), "/console/dead-letters/booking")
            letter = browser.find_element(By.CSS_SELECTOR, 'section[data-message-id="poison-1"]')
            assert "unreadable" in letter.text and "not an event" in letter.text  # why, and what it carried
            screenshot(browser, "dead-letters")
            follow(browser, letter.find_element(By.CSS_SELECTOR, "button.redrive"), "done=redrive")
            assert "Re-drove 1 message to booking" in browser.find_element(By.ID, "done").text
            assert browser.find_element(By.ID, "total").text == "0"
        assert (followers.depth("booking"), followers.depth("booking", dead=True)) == (1, 0)  # back to booking


def test_an_admin_rebuilds_a_read_model_and_watches_it_reach_100_percent(clinic, console, browser):
    a_booking_waiting_on_the_registry(clinic)
    sign_in(browser, console)
    follow(browser, browser.find_element(By.LINK_TEXT, "Read models"), "/console/read-models")
    row = browser.find_element(By.CSS_SELECTOR, 'tr[data-projection="saga_status"]')
    assert "v1" in row.text and "Booking" in row.text
    follow(browser, browser.find_element(By.ID, "rebuild-saga_status"), "#saga_status")
    WebDriverWait(browser, 15).until(
        lambda _: "rebuilt" in browser.find_element(By.ID, "progress-saga_status").text)
    assert browser.find_element(By.ID, "bar-saga_status").get_attribute("value") == "100"
    screenshot(browser, "read-model-rebuilt")
    browser.refresh()  # readers switched to the new version
    assert "v2" in browser.find_element(By.CSS_SELECTOR, 'tr[data-projection="saga_status"]').text
