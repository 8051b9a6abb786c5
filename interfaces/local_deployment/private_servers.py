"""PostgreSQL, Redis and RabbitMQ servers of our own, on free ports, to stop and start at will.

Shared servers serve others at the same time: never stop them. These are throwaway instances in a
temporary directory of their own, for whatever must take a dependency away (``clinic chaos``, the
outage tests), removed afterwards.

- PostgreSQL: ``initdb`` + ``pg_ctl`` (as the ``postgres`` OS user when we are root), trust auth,
  its socket in the temporary directory.
- Redis: ``redis-server --port P --save "" --appendonly no``.
- RabbitMQ: a second node (``private-<n>@localhost``) with its own port, distribution port, mnesia and
  log directories, no plugins; it boots in ~4 s and stops in ~1 s here.

With ``ServerTls`` PostgreSQL accepts TLS connections only (``hostssl``) from clients presenting a
certificate of the CA, and RabbitMQ listens for ``amqps`` only, with ``verify_peer`` and
``fail_if_no_peer_cert``: the servers a production deployment runs, for tests that prove the
services verify them fully and refuse one presenting a foreign certificate.
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
from dataclasses import dataclass
from pathlib import Path

from infrastructure.tls import Pki
from interfaces.local_deployment.servers import DeploymentError, Servers, free_port, program, wait_for

START_TIMEOUT = 30


def listening(port: int) -> bool:
    """Whether something accepts TCP connections on 127.0.0.1:``port``."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


@dataclass(frozen=True)
class ServerTls:
    """A server's certificate and key, and the CA whose certificates it demands of clients (PEM files)."""

    cert_file: Path
    key_file: Path
    ca_file: Path

    @classmethod
    def of(cls, pki: Pki, server: str) -> ServerTls:
        """``server``'s pair in ``pki`` (``clinic certs init`` issues it), and ``pki``'s CA."""
        return cls(pki.cert_file(server), pki.key_file(server), pki.ca_file)


class PrivatePostgres:
    """A PostgreSQL cluster of our own: ``init()`` once, then ``stop()`` and ``start()`` at will."""

    def __init__(self, root: Path, port: int, tls: ServerTls | None = None) -> None:
        self.bin = _postgres_bin()
        self.root = root
        self.data = root / "data"
        self.port = port
        self.user = "postgres"
        self.tls = tls

    @property
    def env(self) -> dict[str, str]:
        """The eventsourcing variables a service needs to use this server."""
        return {"POSTGRES_HOST": "127.0.0.1", "POSTGRES_PORT": str(self.port), "POSTGRES_USER": self.user,
                "POSTGRES_PASSWORD": "", "POSTGRES_DBNAME": "postgres"}

    def init(self) -> None:
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres", "postgres")
        self._run("initdb", "-D", str(self.data), "-U", self.user, "-A", "trust", "--no-sync", "-E", "UTF8")
        if self.tls is not None:
            self._install_tls(self.tls)
            (self.data / "pg_hba.conf").write_text(  # TLS with a certificate of the CA, or nothing (over TCP)
                "local all all trust\nhostssl all all 127.0.0.1/32 trust clientcert=verify-ca\n")

    def start(self) -> None:
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off"
        if self.tls is not None:
            tls = self.root / "tls"
            options += (f" -c ssl=on -c ssl_cert_file={tls / 'server.pem'} -c ssl_key_file={tls / 'server-key.pem'}"
                        f" -c ssl_ca_file={tls / 'ca.pem'}")
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.root / "server.log"), "-o", options, "-w", "start")

    def present(self, tls: ServerTls) -> None:
        """Serve with another certificate from now on (new connections; the server reloads its files)."""
        self._install_tls(tls)
        self._run("pg_ctl", "-D", str(self.data), "-w", "reload")

    def _install_tls(self, tls: ServerTls) -> None:
        """The files where the server reads them, its key readable by it only (PostgreSQL insists)."""
        directory = self.root / "tls"
        directory.mkdir(exist_ok=True)
        for source, name in ((tls.cert_file, "server.pem"), (tls.key_file, "server-key.pem"), (tls.ca_file, "ca.pem")):
            target = directory / name
            shutil.copyfile(source, target)
            target.chmod(0o600)
            if os.geteuid() == 0:
                shutil.chown(target, "postgres", "postgres")

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")

    def _run(self, name: str, *args: str) -> None:
        command = [str(self.bin / name), *args]
        if os.geteuid() == 0:  # PostgreSQL refuses to run as root
            command = ["runuser", "-u", "postgres", "--", *command]
        result = subprocess.run(command, capture_output=True, text=True, timeout=60, cwd=self.root)
        if result.returncode != 0:
            raise DeploymentError(f"{name} failed: {result.stdout}{result.stderr}")


class PrivateRedis:
    """A Redis server of our own, nothing persisted; ``stop()`` kills it, ``start()`` runs it again."""

    def __init__(self, root: Path, port: int) -> None:
        self.binary = _required("redis-server", "redis-server")
        self.root = root
        self.port = port
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        with open(self.root / "redis.log", "ab") as log:  # the child keeps its own descriptor
            self.process = subprocess.Popen(
                [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                 "--dir", str(self.root)], stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        wait_for(lambda: listening(self.port), START_TIMEOUT, f"redis on port {self.port}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)
        self.process = None


class PrivateRabbitMQ:
    """A second RabbitMQ node of our own, stopped with SIGTERM and started again. No plugins, unless
    ``metrics_port``: then ``rabbitmq_prometheus`` serves the broker's own metrics there (plain HTTP on
    loopback), its queue statistics refreshed every second."""

    def __init__(self, root: Path, port: int, tls: ServerTls | None = None, metrics_port: int | None = None) -> None:
        self.binary = _rabbitmq_server()
        self.root = root
        self.port = port
        self.tls = tls
        self.metrics_port = metrics_port
        self.process: subprocess.Popen[bytes] | None = None
        (root / "home").mkdir(mode=0o700)
        (root / "plugins").write_text("[rabbitmq_prometheus]." if metrics_port is not None else "")
        (root / "rabbitmq-env.conf").write_text("")
        self._configure()
        self.env = {
            **os.environ, "HOME": str(root / "home"), "RABBITMQ_NODENAME": f"private-{uuid.uuid4().hex[:8]}@localhost",
            "RABBITMQ_NODE_PORT": str(port), "RABBITMQ_DIST_PORT": str(free_port()),
            "RABBITMQ_MNESIA_BASE": str(root / "mnesia"), "RABBITMQ_LOG_BASE": str(root / "log"),
            "RABBITMQ_CONFIG_FILE": str(root / "rabbitmq.conf"), "RABBITMQ_ENABLED_PLUGINS_FILE": str(root / "plugins"),
            "RABBITMQ_CONF_ENV_FILE": str(root / "rabbitmq-env.conf"),
            "RABBITMQ_PLUGINS_EXPAND_DIR": str(root / "plugins-expand"),
            "RUNNING_UNDER_SYSTEMD": "1",  # the script execs the VM: our child is the node, SIGTERM stops it
        }

    @property
    def url(self) -> str:
        scheme = "amqps" if self.tls is not None else "amqp"
        return f"{scheme}://guest:guest@127.0.0.1:{self.port}/"

    def start(self) -> None:
        with open(self.root / "rabbitmq.out", "ab") as log:
            self.process = subprocess.Popen([self.binary], env=self.env, stdin=subprocess.DEVNULL, stdout=log,
                                            stderr=subprocess.STDOUT, start_new_session=True)
        wait_for(lambda: self._exited_early() or listening(self.port), START_TIMEOUT, f"rabbitmq on port {self.port}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self.process = None

    def present(self, tls: ServerTls) -> None:
        """Serve AMQPS with another certificate (a restart: RabbitMQ reads its TLS options at boot)."""
        self.stop()
        self.tls = tls
        self._configure()
        self.start()

    def _configure(self) -> None:
        metrics = ("" if self.metrics_port is None else
                   f"prometheus.tcp.ip = 127.0.0.1\nprometheus.tcp.port = {self.metrics_port}\n"
                   "collect_statistics_interval = 1000\n")
        (self.root / "rabbitmq.conf").write_text(_rabbitmq_listeners(self.port, self.tls) + "loopback_users = none\n"
                                                 + metrics)

    def _exited_early(self) -> bool:
        if self.process is not None and self.process.poll() is not None:
            raise DeploymentError(f"rabbitmq-server exited: {(self.root / 'rabbitmq.out').read_text()[-2000:]}")
        return False


def _rabbitmq_listeners(port: int, tls: ServerTls | None) -> str:
    """``rabbitmq.conf``: plain AMQP on ``port``, or (``tls``) AMQPS only, demanding a client certificate."""
    if tls is None:
        return f"listeners.tcp.1 = 127.0.0.1:{port}\n"
    return (f"listeners.tcp = none\nlisteners.ssl.1 = 127.0.0.1:{port}\n"
            f"ssl_options.cacertfile = {tls.ca_file}\nssl_options.certfile = {tls.cert_file}\n"
            f"ssl_options.keyfile = {tls.key_file}\nssl_options.verify = verify_peer\n"
            "ssl_options.fail_if_no_peer_cert = true\n")


class PrivateServers:
    """One private PostgreSQL, Redis and RabbitMQ, running, and the ``Servers`` a deployment uses them by."""

    def __init__(self, root: Path, broker_metrics: bool = False) -> None:
        for name in ("postgres", "redis", "rabbitmq"):
            (root / name).mkdir()
            (root / name).chmod(0o755)
        self.postgres = PrivatePostgres(root / "postgres", free_port())
        self.redis = PrivateRedis(root / "redis", free_port())
        self.rabbitmq = PrivateRabbitMQ(root / "rabbitmq", free_port(), metrics_port=free_port() if broker_metrics else None)

    @property
    def servers(self) -> Servers:
        return Servers(postgres_port=self.postgres.port, postgres_db="postgres", amqp_url=self.rabbitmq.url,
                       redis_url=self.redis.url, rabbitmqctl=False)  # rabbitmqctl would reach the shared node

    def start(self) -> None:
        self.postgres.init()
        self.postgres.start()
        self.redis.start()
        self.rabbitmq.start()

    def stop(self) -> None:
        self.rabbitmq.stop()
        self.redis.stop()
        with contextlib.suppress(DeploymentError):  # already stopped
            self.postgres.stop()


@contextlib.contextmanager
def private_servers(broker_metrics: bool = False) -> Iterator[PrivateServers]:
    """Private PostgreSQL, Redis and RabbitMQ servers, running; stopped and removed on exit. With
    ``broker_metrics``, RabbitMQ serves its own metrics (``rabbitmq.metrics_port``)."""
    with scratch("clinic-servers-") as root:
        servers = PrivateServers(root, broker_metrics)
        try:
            servers.start()
            yield servers
        finally:
            servers.stop()


@contextlib.contextmanager
def scratch(prefix: str) -> Iterator[Path]:
    """A temporary directory under /tmp others may enter (the postgres user must), removed after."""
    root = Path(tempfile.mkdtemp(prefix=prefix))
    root.chmod(0o755)
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _required(name: str, package: str) -> str:
    found = program(name)
    if found is None:
        raise DeploymentError(f"{name} is not installed; install it with: apt-get install -y {package}")
    return found


def _postgres_bin() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[4]))
    if found:
        return Path(found[-1]).parent
    return Path(_required("initdb", "postgresql")).parent


def _rabbitmq_server() -> str:
    # The script itself: /usr/sbin/rabbitmq-server is a wrapper that switches user and wraps signals.
    script = Path("/usr/lib/rabbitmq/bin/rabbitmq-server")
    if script.exists():
        return str(script)
    return _required("rabbitmq-server", "rabbitmq-server")
