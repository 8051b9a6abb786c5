"""Private PostgreSQL, Redis and RabbitMQ servers on free ports, for tests that stop a dependency.

The shared servers of ``tests/services.py`` serve other tests at the same time: never stop
them. These are throwaway instances in a temporary directory of their own, stopped and
started again by the test, and removed afterwards. A missing binary skips the test loudly
(or fails it under ``CLINIC_REQUIRE_SERVICES=1``).

- PostgreSQL: ``initdb`` + ``pg_ctl`` (as the ``postgres`` OS user when we are root), trust auth,
  its socket in the temporary directory.
- Redis: ``redis-server --port P --save "" --appendonly no``.
- RabbitMQ: a second node (``ready-test-<n>@localhost``) with its own port, distribution port,
  mnesia and log directories, no plugins; it boots in ~4 s and stops in ~1 s here.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import services
from tests.kit import eventually

START_TIMEOUT = 30


def free_port() -> int:
    """A TCP port nobody listens on now (on 127.0.0.1)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def listening(port: int) -> bool:
    """Whether something accepts TCP connections on 127.0.0.1:``port``."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


def missing(message: str) -> None:
    """Skip the test loudly, or fail it under ``CLINIC_REQUIRE_SERVICES=1``."""
    if services.services_required():
        pytest.fail(message + " (CLINIC_REQUIRE_SERVICES is set)")
    pytest.skip(message)


class PrivatePostgres:
    """A PostgreSQL cluster of our own: ``initdb`` once, then ``stop()`` and ``start()`` at will."""

    def __init__(self, root: Path, port: int) -> None:
        self.bin = _postgres_bin()
        self.root = root
        self.data = root / "data"
        self.port = port
        self.user = "postgres"

    @property
    def env(self) -> dict[str, str]:
        """The eventsourcing variables a service needs to use this server."""
        return {"POSTGRES_HOST": "127.0.0.1", "POSTGRES_PORT": str(self.port), "POSTGRES_USER": self.user,
                "POSTGRES_PASSWORD": "", "POSTGRES_DBNAME": "postgres"}

    def init(self) -> None:
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres", "postgres")
        self._run("initdb", "-D", str(self.data), "-U", self.user, "-A", "trust", "--no-sync", "-E", "UTF8")

    def start(self) -> None:
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.root / "server.log"), "-o", options, "-w", "start")

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")

    def _run(self, program: str, *args: str) -> None:
        command = [str(self.bin / program), *args]
        if os.geteuid() == 0:  # PostgreSQL refuses to run as root
            command = ["runuser", "-u", "postgres", "--", *command]
        result = subprocess.run(command, capture_output=True, text=True, timeout=60, cwd=self.root)
        assert result.returncode == 0, f"{program} failed: {result.stdout}{result.stderr}"


class PrivateRedis:
    """A Redis server of our own, nothing persisted; ``stop()`` kills it, ``start()`` runs it again."""

    def __init__(self, root: Path, port: int) -> None:
        self.binary = services.require_binary("redis-server")
        self.root = root
        self.port = port
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        log = open(self.root / "redis.log", "ab")  # noqa: SIM115 - kept by the process
        self.process = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.root)], stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        eventually(lambda: listening(self.port), START_TIMEOUT, f"redis on port {self.port}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)
        self.process = None


class PrivateRabbitMQ:
    """A second RabbitMQ node of our own (no plugins), stopped with SIGTERM and started again."""

    def __init__(self, root: Path, port: int) -> None:
        self.binary = _rabbitmq_server()
        self.root = root
        self.port = port
        self.process: subprocess.Popen[bytes] | None = None
        (root / "home").mkdir(mode=0o700)
        (root / "plugins").write_text("")
        (root / "rabbitmq-env.conf").write_text("")
        (root / "rabbitmq.conf").write_text(f"listeners.tcp.1 = 127.0.0.1:{port}\nloopback_users = none\n")
        self.env = {
            **os.environ, "HOME": str(root / "home"), "RABBITMQ_NODENAME": f"ready-test-{uuid.uuid4().hex[:8]}@localhost",
            "RABBITMQ_NODE_PORT": str(port), "RABBITMQ_DIST_PORT": str(free_port()),
            "RABBITMQ_MNESIA_BASE": str(root / "mnesia"), "RABBITMQ_LOG_BASE": str(root / "log"),
            "RABBITMQ_CONFIG_FILE": str(root / "rabbitmq.conf"), "RABBITMQ_ENABLED_PLUGINS_FILE": str(root / "plugins"),
            "RABBITMQ_CONF_ENV_FILE": str(root / "rabbitmq-env.conf"),
            "RABBITMQ_PLUGINS_EXPAND_DIR": str(root / "plugins-expand"),
            "RUNNING_UNDER_SYSTEMD": "1",  # the script execs the VM: our child is the node, SIGTERM stops it
        }

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}/"

    def start(self) -> None:
        log = open(self.root / "rabbitmq.out", "ab")  # noqa: SIM115 - kept by the process
        self.process = subprocess.Popen([self.binary], env=self.env, stdin=subprocess.DEVNULL, stdout=log,
                                        stderr=subprocess.STDOUT, start_new_session=True)
        eventually(lambda: self._exited_early() or listening(self.port), START_TIMEOUT, f"rabbitmq on port {self.port}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self.process = None

    def _exited_early(self) -> bool:
        if self.process is not None and self.process.poll() is not None:
            raise AssertionError(f"rabbitmq-server exited: {(self.root / 'rabbitmq.out').read_text()[-2000:]}")
        return False


def _postgres_bin() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[4]))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    if initdb is None:
        missing("initdb/pg_ctl are not installed; install them with: apt-get install -y postgresql")
    return Path(initdb).parent


def _rabbitmq_server() -> str:
    # The script itself: /usr/sbin/rabbitmq-server is a wrapper that switches user and wraps signals.
    script = Path("/usr/lib/rabbitmq/bin/rabbitmq-server")
    if script.exists():
        return str(script)
    return services.require_binary("rabbitmq-server")


@contextlib.contextmanager
def scratch(prefix: str) -> Iterator[Path]:
    """A temporary directory under /tmp others may enter (the postgres user must), removed after."""
    root = Path(tempfile.mkdtemp(prefix=prefix))
    root.chmod(0o755)
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def private_postgres() -> Iterator[PrivatePostgres]:
    """A running PostgreSQL of this test's own (database ``postgres``, user ``postgres``, trust)."""
    with scratch("clinic-pg-") as root:
        server = PrivatePostgres(root, free_port())
        server.init()
        server.start()
        try:
            yield server
        finally:
            with contextlib.suppress(AssertionError):
                server.stop()


@pytest.fixture
def private_redis() -> Iterator[PrivateRedis]:
    """A running Redis of this test's own."""
    with scratch("clinic-redis-") as root:
        server = PrivateRedis(root, free_port())
        server.start()
        try:
            yield server
        finally:
            server.stop()


@pytest.fixture
def private_rabbitmq() -> Iterator[PrivateRabbitMQ]:
    """A running RabbitMQ node of this test's own (guest/guest, default vhost)."""
    with scratch("clinic-rabbitmq-") as root:
        server = PrivateRabbitMQ(root, free_port())
        server.start()
        try:
            yield server
        finally:
            server.stop()
