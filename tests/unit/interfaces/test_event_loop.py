"""Every server process runs on uvloop, the loop ``uvicorn.run`` picks: ``clinic run <context>``, ``clinic run
auth`` (the same entry point) and ``clinic serve``. On asyncio's own loop the read API served 0.8x the requests
(docs/performance.md), and nothing would say so."""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

import pytest
import uvloop

from application.settings import Settings
from interfaces.cli import run, serve
from interfaces.cli.graceful import run as run_on_uvicorn_loop


async def loop_type() -> type[asyncio.AbstractEventLoop]:
    return type(asyncio.get_running_loop())


def test_the_servers_loop_is_uvloop():
    assert run_on_uvicorn_loop(loop_type()) is uvloop.Loop


@pytest.mark.parametrize("service", ["consultations", "auth"])
def test_clinic_run_serves_on_uvloop(monkeypatch, service):
    loops: list[type[asyncio.AbstractEventLoop]] = []

    async def serving(*_: Any) -> int:
        loops.append(await loop_type())
        return 0

    monkeypatch.setattr(run, "settings", lambda: Settings.from_env({}))
    monkeypatch.setattr(run, "configure_logging", lambda *_, **__: None)
    monkeypatch.setattr(run, "configure_tracing", lambda *_: None)
    monkeypatch.setattr(run, "_run", serving)

    assert run.run_service(argparse.Namespace(service=service)) == 0
    assert loops == [uvloop.Loop]


def test_clinic_serve_serves_on_uvloop(monkeypatch):
    loops: list[type[asyncio.AbstractEventLoop]] = []

    async def serving(*_: Any) -> int:
        loops.append(await loop_type())
        return 0

    monkeypatch.setattr(serve, "settings", lambda: Settings.from_env({}))
    monkeypatch.setattr(serve, "configure_logging", lambda *_, **__: None)
    monkeypatch.setattr(serve, "configure_tracing", lambda *_: None)
    monkeypatch.setattr(serve, "bootstrap", lambda *_, **__: None)
    monkeypatch.setattr(serve, "create_app", lambda *_, **__: None)
    monkeypatch.setattr(serve, "_serve", serving)

    assert serve.run_serve(argparse.Namespace(host="127.0.0.1", port=0)) == 0
    assert loops == [uvloop.Loop]
