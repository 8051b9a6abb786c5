"""uvicorn's per-request access line is off on the public API servers unless CLINIC_ACCESS_LOG=on."""

from __future__ import annotations

import argparse
import dataclasses
import logging

import pytest

from application.bootstrap import build_applications
from application.clinic import Clinic
from application.settings import Settings, SettingsError
from interfaces.cli.run import _servers


@pytest.fixture
def clinic(tmp_path):
    apps = build_applications(Settings(persistence="memory", data_dir=tmp_path))
    yield Clinic(consultations=apps["Consultations"])
    for app in apps.values():
        app.close()


def test_the_access_line_is_off_by_default_and_on_when_asked():
    assert Settings.from_env({}).access_log is False
    assert Settings.from_env({"CLINIC_ACCESS_LOG": "on"}).access_log is True
    assert Settings.from_env({"CLINIC_ACCESS_LOG": "OFF"}).access_log is False
    with pytest.raises(SettingsError, match="CLINIC_ACCESS_LOG must be one of on, off"):
        Settings.from_env({"CLINIC_ACCESS_LOG": "sampled"})


@pytest.mark.parametrize("role", ["api", "all", "worker"])
@pytest.mark.parametrize("access_log", [False, True])
def test_a_service_api_server_follows_the_setting(clinic, tmp_path, role, access_log):
    settings = dataclasses.replace(Settings(persistence="memory", data_dir=tmp_path), access_log=access_log)
    args = argparse.Namespace(service="consultations", role=role, host="127.0.0.1", port=0)
    [server] = _servers(args, settings, clinic)
    assert server.config.access_log is access_log


def test_the_registrys_internal_endpoint_logs_its_calls_while_its_public_api_does_not(tmp_path):
    from infrastructure.tls import create_dev_pki

    create_dev_pki(tmp_path / "pki")
    settings = Settings(persistence="memory", data_dir=tmp_path, pki_dir=tmp_path / "pki")
    apps = build_applications(settings)
    try:
        args = argparse.Namespace(service="registry", role="all", host="127.0.0.1", port=0, internal_port=0)
        public, internal = _servers(args, settings, Clinic(registry=apps["Registry"]))
        assert (public.config.access_log, internal.config.access_log) == (False, True)
        # uvicorn's Config(access_log=False) had silenced the logger for the whole process
        assert logging.getLogger("uvicorn.access").propagate is True
    finally:
        for app in apps.values():
            app.close()


def test_forwarded_headers_are_read_only_from_the_configured_proxies(clinic, tmp_path):
    args = argparse.Namespace(service="consultations", role="api", host="127.0.0.1", port=0)
    [untrusting] = _servers(args, Settings(persistence="memory", data_dir=tmp_path), clinic)
    assert untrusting.config.proxy_headers is False  # uvicorn's default trusts X-Forwarded-For from 127.0.0.1
    settings = Settings.from_env({"CLINIC_TRUSTED_PROXIES": "10.0.0.7, 10.1.0.0/16"})
    [trusting] = _servers(args, dataclasses.replace(settings, persistence="memory", data_dir=tmp_path), clinic)
    assert trusting.config.proxy_headers is True
    assert trusting.config.forwarded_allow_ips == ["10.0.0.7", "10.1.0.0/16"]
    with pytest.raises(SettingsError, match="CLINIC_TRUSTED_PROXIES: 'gateway' is not an IP address or network"):
        Settings.from_env({"CLINIC_TRUSTED_PROXIES": "gateway"})
