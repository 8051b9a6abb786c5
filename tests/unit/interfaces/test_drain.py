"""After SIGTERM an API process, the authorization server and ``clinic serve`` go on serving for
``CLINIC_DRAIN_SECONDS`` (readiness already 503) before they close their port; tests/e2e/test_zero_downtime_switch.py
shows what that buys under load, tests/integration/test_drain_processes.py the real processes."""

from __future__ import annotations

import asyncio
import logging
import socket
import time

import pytest
import uvicorn
from litestar.testing import TestClient

from application.settings import Settings, SettingsError
from interfaces.auth.app import create_auth_app
from interfaces.auth.keyring import KeyRingFile, utc_now
from interfaces.auth.service import AuthService
from interfaces.cli.graceful import Server, serve_until_stopped
from interfaces.cli.run import drain


def serving_forever() -> list[asyncio.Task[object]]:
    return [asyncio.create_task(asyncio.Event().wait())]


async def elapsed(serving: list[asyncio.Task[object]], seconds: float) -> float:
    started = time.monotonic()
    await drain(serving, seconds)
    return time.monotonic() - started


def test_given_servers_running_when_draining_then_they_go_on_for_the_drain_time():
    async def scenario() -> tuple[float, bool]:
        serving = serving_forever()
        took = await elapsed(serving, 0.2)
        still_serving = not serving[0].done()
        serving[0].cancel()
        return took, still_serving

    took, still_serving = asyncio.run(scenario())
    assert took >= 0.2 and still_serving


def test_given_no_drain_time_when_draining_then_it_returns_at_once():
    async def scenario() -> float:
        serving = serving_forever()
        took = await elapsed(serving, 0)
        serving[0].cancel()
        return took

    assert asyncio.run(scenario()) < 0.05


def test_given_a_server_that_ends_by_itself_when_draining_then_the_drain_ends_with_it():
    async def scenario() -> float:
        return await elapsed([asyncio.create_task(asyncio.sleep(0.01))], 10)

    assert asyncio.run(scenario()) < 1


def test_drain_seconds_come_from_clinic_drain_seconds():
    assert Settings.from_env({}).drain_seconds == 0
    assert Settings.from_env({"CLINIC_DRAIN_SECONDS": "10"}).drain_seconds == 10
    with pytest.raises(SettingsError, match="CLINIC_DRAIN_SECONDS"):
        Settings.from_env({"CLINIC_DRAIN_SECONDS": "-1"})


async def hello(scope, receive, send) -> None:
    """The smallest ASGI app: 200 to every request (lifespan unsupported, which uvicorn's "auto" accepts)."""
    if scope["type"] != "http":
        raise RuntimeError("only http")
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
    await send({"type": "http.response.body", "body": b"ok"})


def loopback_server(port: int) -> Server:
    return Server(uvicorn.Config(hello, host="127.0.0.1", port=port, log_level="warning", log_config=None))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def answers(port: int) -> bool:
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        return False
    writer.write(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    line = await reader.readline()
    writer.close()
    return line.startswith(b"HTTP/1.1 200")


async def until_answers(port: int, deadline: float = 5) -> None:
    give_up = time.monotonic() + deadline
    while not await answers(port):
        assert time.monotonic() < give_up, "the server never answered"
        await asyncio.sleep(0.02)  # polling the condition, with a deadline


async def until_draining(caplog: pytest.LogCaptureFixture, deadline: float = 5) -> None:
    give_up = time.monotonic() + deadline
    while not any(record.getMessage().startswith("draining") for record in caplog.records):
        assert time.monotonic() < give_up, "the drain never began"
        await asyncio.sleep(0.01)


def test_given_a_stop_when_serving_until_stopped_then_it_answers_through_the_drain_and_exits_0(caplog):
    caplog.set_level("INFO", logger="clinic.service")

    async def scenario() -> tuple[bool, bool, float, int, bool]:
        port, stop = free_port(), asyncio.Event()
        running = asyncio.create_task(serve_until_stopped(loopback_server(port), stop, 0.5))
        await until_answers(port)
        stop.set()
        stopped = time.monotonic()
        await until_draining(caplog)
        during = await answers(port)
        code = await running
        return stop.is_set(), during, time.monotonic() - stopped, code, await answers(port)

    still_stopped, during, took, code, after = asyncio.run(scenario())
    assert still_stopped and during and took >= 0.5 and code == 0 and not after


class EndsAtOnce(Server):
    """A server whose serving ends by itself (uvicorn's own exit, a crash surfaces as the task's exception)."""

    async def serve(self, sockets: list[socket.socket] | None = None) -> None:
        return None


def test_given_a_server_that_ends_by_itself_when_serving_until_stopped_then_it_fails_without_draining():
    async def scenario() -> tuple[int, float, bool]:
        stop, started = asyncio.Event(), time.monotonic()
        code = await serve_until_stopped(EndsAtOnce(uvicorn.Config(hello)), stop, 10)
        return code, time.monotonic() - started, stop.is_set()

    code, took, stop_set = asyncio.run(scenario())
    assert code == 1 and took < 5 and stop_set  # readiness turned false too


def test_given_a_port_in_use_when_serving_until_stopped_then_uvicorn_exits_the_process_non_zero():
    async def scenario() -> None:
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            await serve_until_stopped(loopback_server(taken.getsockname()[1]), asyncio.Event(), 10)

    with pytest.raises(SystemExit) as exited:
        asyncio.run(scenario())
    assert exited.value.code != 0


def test_given_the_auth_server_not_accepting_then_readiness_is_503_and_liveness_200(tmp_path):
    KeyRingFile(tmp_path).init(utc_now())
    service = AuthService.from_settings(Settings(jwt_issuer="http://127.0.0.1:9000"), auth_dir=tmp_path)
    accepting = [True]
    service.checks["accepting"] = lambda: accepting[0]
    with TestClient(create_auth_app(service)) as client:
        before = client.get("/health/ready")
        accepting[0] = False
        ready, live = client.get("/health/ready"), client.get("/health/live")
    assert before.status_code == 200
    assert (ready.status_code, ready.json()) == (503, {"status": "unavailable",
                                                       "checks": {"key_ring": True, "accepting": False}})
    assert live.status_code == 200


def test_given_one_app_on_two_ports_when_serving_until_stopped_then_its_lifespan_runs_once_and_ends_cleanly(
        tmp_path, caplog):
    """The authorization server serves one app on its public and its internal port: two lifespans of one app
    would enter and leave its task group from different tasks."""
    KeyRingFile(tmp_path).init(utc_now())
    service = AuthService.from_settings(Settings(jwt_issuer="http://127.0.0.1:9000"), auth_dir=tmp_path)
    app = create_auth_app(service)
    ports = [free_port(), free_port()]
    servers = [Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="info", log_config=None))
               for port in ports]

    async def scenario() -> int:
        stop = asyncio.Event()
        running = asyncio.create_task(serve_until_stopped(servers, stop, 0))
        for port in ports:
            await until_port_open(port)
        stop.set()
        return await running

    assert asyncio.run(scenario()) == 0
    assert [r.getMessage() for r in caplog.records if r.name.startswith("uvicorn") and r.levelno >= logging.ERROR] == []


async def until_port_open(port: int, deadline: float = 5) -> None:
    give_up = time.monotonic() + deadline
    while True:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            assert time.monotonic() < give_up, f"nothing listens on {port}"
            await asyncio.sleep(0.02)  # polling the condition, with a deadline
            continue
        writer.close()
        return
