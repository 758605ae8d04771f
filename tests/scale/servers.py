"""Throwaway Redis, PostgreSQL and RabbitMQ servers for the live fault tests: each on its own free
port and folder, started by the test, restartable, and always stopped afterwards (never the shared
127.0.0.1:6379, :5432 and :5672 servers)."""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Protocol, TypeVar

import amqp
import psycopg
import redis

PG_BIN = Path(
    os.environ.get("AGGREGATOR_TEST_PG_BIN")
    or next(iter(sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)), "/usr/bin")
)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_for(ready: Callable[[], bool], *, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not ready after {timeout} s")
        time.sleep(0.05)


def stop_process(
    process: subprocess.Popen[bytes], sig: int = signal.SIGTERM, wait: float = 20
) -> None:
    """Signal the process's group, then SIGKILL the group if it is still there."""
    if process.poll() is None:
        with suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
        with suppress(subprocess.TimeoutExpired):
            process.wait(timeout=wait)
    with suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


class RedisServer:
    """redis-server with an fsync-always append-only file, so a restart keeps the queues."""

    def __init__(self, folder: Path) -> None:
        self.folder, self.port = folder, free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        command = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1"]
        command += ["--dir", str(self.folder), "--save", "", "--appendonly", "yes"]
        command += ["--appendfsync", "always", "--logfile", str(self.folder / "redis.log")]
        self.process = subprocess.Popen(command, start_new_session=True)
        wait_for(self._pings, timeout=15, what="throwaway redis")

    def _pings(self) -> bool:
        client = redis.Redis(port=self.port, socket_connect_timeout=0.2)
        try:
            return bool(client.ping())
        except redis.RedisError:
            return False
        finally:
            client.close()

    def stop(self) -> None:
        if self.process is not None:
            stop_process(self.process)  # SIGTERM: Redis flushes its append-only file and exits
            self.process = None

    def remove(self) -> None:
        self.stop()  # its folder is the test's own

    def restart(self) -> None:
        self.stop()
        self.start()

    def forget(self) -> None:
        """Drop the stopped server's data: it starts again empty, like a Redis that lost its disk
        or ran without persistence."""
        assert self.process is None, "stop the server first"
        shutil.rmtree(self.folder / "appendonlydir")


class PostgresServer:
    """A new cluster (initdb) in a temporary folder, run as the postgres user when we are root
    (PostgreSQL refuses to run as root); fsync off, it is thrown away."""

    def __init__(self) -> None:
        self.port = free_port()
        self.folder = Path(tempfile.mkdtemp(prefix="scale-pg-"))
        self.process: subprocess.Popen[bytes] | None = None
        self._user = "postgres" if os.geteuid() == 0 else None
        if self._user is not None:
            entry = pwd.getpwnam(self._user)
            os.chown(self.folder, entry.pw_uid, entry.pw_gid)
        initdb = [str(PG_BIN / "initdb"), "-D", str(self.folder / "data"), "-A", "trust"]
        self._run([*initdb, "-U", "postgres", "-E", "UTF8", "--no-sync"])

    def _run(self, command: list[str]) -> None:
        subprocess.run(command, check=True, capture_output=True, user=self._user)

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def start(self) -> None:
        command = [str(PG_BIN / "postgres"), "-D", str(self.folder / "data"), "-p", str(self.port)]
        command += [
            "-c",
            "listen_addresses=127.0.0.1",
            "-c",
            f"unix_socket_directories={self.folder}",
        ]
        command += ["-c", "fsync=off", "-c", "full_page_writes=off", "-c", "max_connections=60"]
        log = (self.folder / "postgres.log").open("ab")
        self.process = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, user=self._user, start_new_session=True
        )
        wait_for(self._accepts, timeout=30, what="throwaway postgres")

    def _accepts(self) -> bool:
        try:
            psycopg.connect(
                host="127.0.0.1",
                port=self.port,
                user="postgres",
                dbname="postgres",
                connect_timeout=1,
            ).close()
        except psycopg.OperationalError:
            return False
        return True

    def create_database(self, name: str) -> str:
        with psycopg.connect(
            host="127.0.0.1", port=self.port, user="postgres", dbname="postgres", autocommit=True
        ) as connection:
            connection.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def stop(self) -> None:
        if self.process is not None:
            stop_process(self.process, signal.SIGINT)  # fast shutdown: connections are cut
            self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.folder, ignore_errors=True)


RABBITMQ_SERVER = Path(
    os.environ.get("AGGREGATOR_TEST_RABBITMQ_SERVER", "/usr/lib/rabbitmq/bin/rabbitmq-server")
)


class RabbitServer:
    """A RabbitMQ node of its own (node name, ports, data folder), run as the rabbitmq user when
    we are root, as the Debian package runs it. Its durable queues and persistent messages, the
    unacknowledged ones included, survive a restart, as on a real server."""

    def __init__(self) -> None:
        self.port, self.dist_port = free_port(), free_port()
        self.node = f"scale{self.port}@localhost"
        self.folder = Path(tempfile.mkdtemp(prefix="scale-rabbit-"))
        self.process: subprocess.Popen[bytes] | None = None
        self._user = "rabbitmq" if os.geteuid() == 0 else None
        (self.folder / "rabbitmq.conf").write_text(f"listeners.tcp.local = 127.0.0.1:{self.port}\n")
        (self.folder / "rabbitmq-env.conf").write_text("")  # not the system node's settings
        (self.folder / "enabled_plugins").write_text("[].\n")  # no management listener
        self._home = os.environ.get("HOME", str(self.folder))
        if self._user is not None:
            entry = pwd.getpwnam(self._user)
            self._home = entry.pw_dir  # the Erlang cookie rabbitmqctl also uses
            for path in (self.folder, *self.folder.iterdir()):
                os.chown(path, entry.pw_uid, entry.pw_gid)

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}//"

    def _env(self) -> dict[str, str]:
        folder = self.folder
        return {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": self._home,
            "RABBITMQ_NODENAME": self.node,
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_CONF_ENV_FILE": str(folder / "rabbitmq-env.conf"),
            "RABBITMQ_CONFIG_FILE": str(folder / "rabbitmq.conf"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(folder / "enabled_plugins"),
            "RABBITMQ_MNESIA_BASE": str(folder / "mnesia"),
            "RABBITMQ_LOG_BASE": str(folder / "log"),
            "ERL_EPMD_ADDRESS": "127.0.0.1",
            "ERL_FLAGS": "-kernel inet_dist_use_interface {127,0,0,1}",
        }

    def start(self) -> None:
        log = (self.folder / "server.log").open("ab")
        self.process = subprocess.Popen(
            [str(RABBITMQ_SERVER)],
            cwd=self.folder,
            env=self._env(),
            stdout=log,
            stderr=subprocess.STDOUT,
            user=self._user,
            start_new_session=True,
        )
        wait_for(self._accepts, timeout=60, what="throwaway rabbitmq")

    def _accepts(self) -> bool:
        if self.process is not None and self.process.poll() is not None:
            raise RuntimeError(f"rabbitmq exited: see {self.folder / 'server.log'}")
        connection = amqp.Connection(f"127.0.0.1:{self.port}", connect_timeout=0.5)
        try:
            connection.connect()
        except (OSError, amqp.exceptions.AMQPError):
            return False
        connection.close()
        return True

    def stop(self) -> None:
        if self.process is not None:
            stop_process(self.process, wait=60)  # SIGTERM: the node shuts down cleanly
            self.process = None

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.folder, ignore_errors=True)


class Throwaway(Protocol):
    def start(self) -> None: ...

    def remove(self) -> None: ...


ServerT = TypeVar("ServerT", bound=Throwaway)


@contextmanager
def running(server: ServerT) -> Iterator[ServerT]:
    """``server`` started, and stopped and removed afterwards, whatever happens."""
    try:
        server.start()
        yield server
    finally:
        server.remove()
