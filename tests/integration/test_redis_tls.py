"""The read models' Redis over TLS with client certificates, against a real second redis-server.

The shared Redis (port 6379) is not touched: each module run starts its own ``redis-server``
with ``--port 0`` (no plain TCP) and ``--tls-port`` on a free port, certificates from a fresh
development PKI (``infrastructure/tls.py``) and ``--tls-auth-clients yes``, and stops it after.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from application.bootstrap import view_store
from application.settings import Settings, SettingsError
from infrastructure.read_models.redis_store import RedisViewStore
from infrastructure.tls import Pki, create_dev_pki
from projections.ops import SetFields

WAIT = 10.0


def free_port() -> int:
    with socket.create_server(("127.0.0.1", 0)) as sock:
        return sock.getsockname()[1]


class TlsRedis:
    """A redis-server that speaks only TLS and demands a client certificate from ``pki``'s CA."""

    def __init__(self, pki: Pki, workdir: Path) -> None:
        self.pki = pki
        self.port = free_port()
        self.log = workdir / "redis.log"
        self.process = subprocess.Popen(
            ["redis-server", "--port", "0", "--tls-port", str(self.port), "--bind", "127.0.0.1",
             "--tls-cert-file", str(pki.cert_file("redis")), "--tls-key-file", str(pki.key_file("redis")),
             "--tls-ca-cert-file", str(pki.ca_file), "--tls-auth-clients", "yes",
             "--save", "", "--appendonly", "no", "--dir", str(workdir), "--logfile", str(self.log)],
            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)

    @property
    def url(self) -> str:
        return f"rediss://127.0.0.1:{self.port}/0"

    def client_files(self, pki: Pki | None = None) -> dict[str, Path]:
        pki = pki or self.pki
        return {"ca_file": self.pki.ca_file, "cert_file": pki.cert_file("projections"),
                "key_file": pki.key_file("projections")}

    def wait_until_serving(self) -> None:
        deadline = time.monotonic() + WAIT
        while True:  # bounded poll: the server accepts a TLS client with a certificate
            assert self.process.poll() is None, f"redis-server exited: {self.log.read_text()[-2000:]}"
            store = RedisViewStore.from_url(self.url, **self.client_files())
            try:
                if store.client.ping():
                    return
            except redis.exceptions.ConnectionError:
                assert time.monotonic() < deadline, f"redis-server not serving TLS: {self.log.read_text()[-2000:]}"
                time.sleep(0.05)
            finally:
                store.close()

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(WAIT)


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> Pki:
    return create_dev_pki(tmp_path_factory.mktemp("redis-tls") / "pki", services=("redis", "projections"))


@pytest.fixture(scope="module")
def other_pki(tmp_path_factory) -> Pki:
    return create_dev_pki(tmp_path_factory.mktemp("redis-tls-other") / "pki", services=("redis", "projections"))


@pytest.fixture(scope="module")
def server(pki, tmp_path_factory) -> Iterator[TlsRedis]:
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed")
    server = TlsRedis(pki, tmp_path_factory.mktemp("redis-tls-data"))
    try:
        server.wait_until_serving()
        yield server
    finally:
        server.stop()


def round_trip(store: RedisViewStore) -> dict[str, str]:
    """Write a view through the store's script and read it back."""
    name = f"tls-{uuid.uuid4().hex[:8]}"
    assert store.apply(name, 1, "Registry", 1, [SetFields("patient:1", {"name": "Ada"})])
    return store.get_fields(name, 1, "patient:1")


def test_a_client_certificate_from_the_ca_reads_and_writes_views(server):
    store = RedisViewStore.from_url(server.url, "test:tls:", **server.client_files())
    try:
        assert round_trip(store) == {"name": "Ada"}
    finally:
        store.close()


def test_the_settings_build_a_tls_store(server):
    files = server.client_files()
    settings = Settings.from_env({"CLINIC_REDIS_URL": server.url, "CLINIC_REDIS_PREFIX": "test:tls:",
                                  "CLINIC_REDIS_CA_FILE": str(files["ca_file"]),
                                  "CLINIC_REDIS_CERT_FILE": str(files["cert_file"]),
                                  "CLINIC_REDIS_KEY_FILE": str(files["key_file"])})
    store = view_store(settings)
    try:
        assert round_trip(store) == {"name": "Ada"}
    finally:
        store.close()


def test_redis_py_query_parameters_work_too(server):
    files = server.client_files()
    url = (f"{server.url}?ssl_ca_certs={files['ca_file']}&ssl_certfile={files['cert_file']}"
           f"&ssl_keyfile={files['key_file']}")
    store = RedisViewStore.from_url(url, "test:tls:")
    try:
        assert round_trip(store) == {"name": "Ada"}
    finally:
        store.close()


@pytest.mark.parametrize(("identity", "alert"), [("no certificate", "CERTIFICATE_REQUIRED"),
                                                 ("another CA", "UNKNOWN_CA")])
def test_a_client_without_a_certificate_from_the_ca_is_refused(server, other_pki, identity, alert):
    files = server.client_files(other_pki)
    if identity == "no certificate":
        files = {"ca_file": files["ca_file"]}
    store = RedisViewStore.from_url(server.url, "test:tls:", **files)
    try:
        # TLS 1.3: the alert may arrive before or after the client writes its first command
        with pytest.raises(redis.exceptions.ConnectionError, match=f"{alert}|EOF occurred in violation"):
            store.client.ping()
    finally:
        store.close()


def test_the_client_refuses_a_server_it_does_not_trust(server, other_pki):
    files = server.client_files() | {"ca_file": other_pki.ca_file}
    store = RedisViewStore.from_url(server.url, "test:tls:", **files)
    try:
        with pytest.raises(redis.exceptions.ConnectionError, match="certificate verify failed"):
            store.client.ping()
    finally:
        store.close()


def test_plain_tcp_is_not_served(server):
    with socket.create_connection(("127.0.0.1", server.port), timeout=WAIT) as sock:
        sock.sendall(b"PING\r\n")
        try:
            answer = sock.recv(64)
        except ConnectionResetError:
            answer = b""
    assert b"PONG" not in answer


def test_tls_files_without_a_rediss_url_are_a_settings_error(pki):
    with pytest.raises(SettingsError, match="CLINIC_REDIS_URL to start with rediss://"):
        Settings.from_env({"CLINIC_REDIS_URL": "redis://127.0.0.1:6379/0", "CLINIC_REDIS_CA_FILE": str(pki.ca_file)})
    with pytest.raises(ValueError, match="needs a rediss:// URL"):
        RedisViewStore.from_url("redis://127.0.0.1:6379/0", ca_file=pki.ca_file)
