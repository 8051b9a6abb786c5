"""The console's dead letters over HTTP, on the real RabbitMQ: each follower's count, a letter whole, re-drive
one or all, purge once confirmed; auditors read only; a broker that does not answer is a 503 page. The
browser test drives the same pages in Chromium (``test_console_browser.py``)."""

from __future__ import annotations

import re
from collections.abc import Iterator

import aiormq
import httpx
import pytest
import uvicorn

from application.bootstrap import bootstrap
from application.clinic import Clinic
from application.settings import Settings
from infrastructure.messaging.dlq import DeadLetterDesk
from interfaces.http.app import create_app
from interfaces.http.console.session import COOKIE, Console
from tests.integration.http_servers import uvicorn_server
from tests.kit.console import ISSUER
from tests.kit.dead_letters import Followers, followers_on_the_broker


@pytest.fixture
def followers() -> Iterator[Followers]:
    with followers_on_the_broker() as followers:
        yield followers


@pytest.fixture
def clinic() -> Iterator[Clinic]:
    clinic = bootstrap(Settings(persistence="memory"))
    yield clinic
    clinic.close()


def served(clinic: Clinic, desk: DeadLetterDesk | None) -> Iterator[str]:
    app = create_app(clinic, ISSUER.verifier(), console=Console(ISSUER, dead_letters=desk))
    with uvicorn_server(lambda port: uvicorn.Config(app, port=port, log_config=None, lifespan="on")) as port:
        yield f"http://127.0.0.1:{port}"


@pytest.fixture
def base(clinic, followers) -> Iterator[str]:
    yield from served(clinic, followers.desk())


def browser_of(base: str, role: str) -> httpx.Client:
    client = httpx.Client(base_url=base, timeout=20, follow_redirects=True)
    client.cookies.set(COOKIE, ISSUER.issue(f"{role.lower()}-1", [role]), path="/console")
    return client


def csrf(client: httpx.Client) -> str:
    return re.search(r'name="_csrf_token" value="([^"]+)"', client.get("/console/dead-letters/").text).group(1)


def test_each_follower_is_listed_with_its_count_and_a_letter_is_shown_whole(base, followers):
    followers.poison("booking", "poison-1", b'{"broken": ' + b"x" * 3000)
    with browser_of(base, "AUDITOR") as auditor:
        overview = auditor.get("/console/dead-letters/")
        assert overview.status_code == 200
        counts = dict(re.findall(r'data-follower="([a-z]+)">.*?<td>(?:<strong class="flag">)?(\d+)', overview.text,
                                 re.S))
        assert counts == {"booking": "1", "consultations": "0", "notifications": "0", "scheduling": "0"}
        page = auditor.get("/console/dead-letters/booking").text
    assert 'data-message-id="poison-1"' in page and "unreadable" in page and "ValueError: not an event" in page
    assert "consultations.Consultation.Requested" in page and "x-attempts" in page
    assert '{&#34;broken&#34;: xxx' in page and "…</pre>" in page  # the payload's start, escaped, cut
    assert "<button" not in page.split("<main")[1] and "Purge" not in page  # an auditor acts on nothing
    assert followers.depth("booking", dead=True) == 1  # reading lost nothing


def test_an_admin_redrives_one_then_all_back_to_the_followers_queue(base, followers):
    for message_id in ("poison-1", "poison-2", "poison-3"):
        followers.poison("booking", message_id)
    with browser_of(base, "ADMIN") as admin:
        token = csrf(admin)
        one = admin.post("/console/dead-letters/booking/poison-2/redrive", data={"_csrf_token": token})
        assert one.status_code == 200 and "Re-drove 1 message to booking" in one.text
        assert re.findall(r'data-message-id="([^"]+)"', one.text) == ["poison-1", "poison-3"]
        assert followers.depth("booking") == 1
        missing = admin.post("/console/dead-letters/booking/poison-2/redrive", data={"_csrf_token": token})
        assert missing.status_code == 404
        rest = admin.post("/console/dead-letters/booking/redrive", data={"_csrf_token": token})
        assert "Re-drove 2 messages to booking" in rest.text and 'id="none"' in rest.text
    assert (followers.depth("booking"), followers.depth("booking", dead=True)) == (3, 0)


def test_purging_asks_first_then_deletes_every_dead_letter(base, followers):
    followers.poison("scheduling", "poison-1")
    with browser_of(base, "ADMIN") as admin:
        confirm = admin.get("/console/dead-letters/scheduling/purge")
        assert confirm.status_code == 200 and "cannot be undone" in confirm.text
        assert followers.depth("scheduling", dead=True) == 1  # asking deleted nothing
        without_token = admin.post("/console/dead-letters/scheduling/purge")
        assert without_token.status_code == 403 and followers.depth("scheduling", dead=True) == 1
        purged = admin.post("/console/dead-letters/scheduling/purge", data={"_csrf_token": csrf(admin)})
        assert "Purged 1 dead letter." in purged.text
    assert followers.depth("scheduling", dead=True) == 0


def test_an_auditor_is_refused_every_action(base, followers):
    followers.poison("booking", "poison-1")
    with browser_of(base, "AUDITOR") as auditor:
        token = csrf(auditor)
        for path in ("booking/poison-1/redrive", "booking/redrive", "booking/purge"):
            assert auditor.post(f"/console/dead-letters/{path}", data={"_csrf_token": token}).status_code == 403
        assert auditor.get("/console/dead-letters/booking/purge").status_code == 403
    assert followers.depth("booking", dead=True) == 1


def test_an_unknown_follower_is_a_page_saying_so(base):
    with browser_of(base, "ADMIN") as admin:
        missing = admin.get("/console/dead-letters/registry")
    assert missing.status_code == 404 and "the followers are booking, consultations, notifications" in missing.text


def test_a_broker_that_does_not_answer_is_a_503_page_with_retry_after(clinic, followers):
    unreachable = DeadLetterDesk(connect_to_nothing, followers.desk().queues)
    for base in served(clinic, unreachable):
        with browser_of(base, "ADMIN") as admin:
            page = admin.get("/console/dead-letters/")
        assert page.status_code == 503 and page.headers["Retry-After"] and "not answering" in page.text


async def connect_to_nothing() -> aiormq.abc.AbstractConnection:
    return await aiormq.connect("amqp://guest:guest@127.0.0.1:9/")  # nothing listens on the discard port


def test_without_a_broker_there_is_no_dead_letters_page(clinic):
    for base in served(clinic, None):
        with browser_of(base, "ADMIN") as admin:
            assert admin.get("/console/dead-letters/").status_code == 404
            assert "Dead letters" not in admin.get("/console/sagas").text
