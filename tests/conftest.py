"""Shared fixtures: real databases (SQLite files and the local PostgreSQL), a real HTTP server on
loopback, and settings that allow only loopback fetches."""

from __future__ import annotations

import ipaddress
import os
import socket
import subprocess
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine, make_url

from aggregator.cli import main
from aggregator.db import make_engine, upgrade_database
from aggregator.settings import Settings, get_settings
from tests.netguard.sitecustomize import local_only

REPO = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures"
NETGUARD = Path(__file__).resolve().parent / "netguard"
POSTGRES_URL = os.environ.get(
    "AGGREGATOR_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
LOOPBACK = ipaddress.ip_network("127.0.0.0/8")


RABBITMQ = os.environ.get("AGGREGATOR_TEST_RABBITMQ", "guest:guest@127.0.0.1:5672")


def rabbitmqctl(*args: str, node: str = "") -> str:
    """rabbitmqctl on the local RabbitMQ, or on the node named (a test's throwaway one)."""
    command = ["rabbitmqctl", "-q", *(["-n", node] if node else []), *args]
    return subprocess.run(command, capture_output=True, text=True, check=True).stdout


@contextmanager
def new_rabbitmq_vhost() -> Iterator[str]:
    """The AMQP URL of a new, empty virtual host on the local RabbitMQ, deleted afterwards."""
    name = f"aggregator_test_{uuid.uuid4().hex[:12]}"
    user = RABBITMQ.split(":", 1)[0]
    rabbitmqctl("add_vhost", name)
    try:
        rabbitmqctl("set_permissions", "-p", name, user, ".*", ".*", ".*")
        yield f"amqp://{RABBITMQ}/{name}"
    finally:
        rabbitmqctl("delete_vhost", name)


def rabbitmq_messages(broker_url: str, node: str = "") -> int:
    """Messages in the virtual host's queues, ready or delivered and not yet acknowledged."""
    vhost = broker_url.rsplit("/", 1)[1] or "/"  # amqp://host// is the default virtual host
    listing = rabbitmqctl("list_queues", "-p", vhost, "--no-table-headers", "messages", node=node)
    return sum(int(count) for count in listing.split())


@contextmanager
def new_postgres_database() -> Iterator[str]:
    """A new, empty PostgreSQL database on the local server, dropped afterwards."""
    name = f"aggregator_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture
def postgres_url() -> Iterator[str]:
    with new_postgres_database() as url:
        yield url


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'store.db'}"


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each storage test runs on SQLite and on PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    engine = make_engine(database_url)
    upgrade_database(engine)
    yield engine
    engine.dispose()


Invoke = Callable[..., Result]


@pytest.fixture
def run(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, database_url: str) -> Iterator[Invoke]:
    """The `aggregator` command, run in-process on this test's store with a clean environment."""
    for name in list(os.environ):
        if name.startswith("AGGREGATOR_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AGGREGATOR_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("AGGREGATOR_DATABASE_URL", database_url)
    monkeypatch.chdir(tmp_path)
    get_settings.cache_clear()

    def invoke(*args: str) -> Result:
        return CliRunner().invoke(main, list(args), catch_exceptions=False)

    yield invoke
    get_settings.cache_clear()


def make_test_settings(data_dir: Path, database_url: str) -> Settings:
    """Settings for a test store; fetches may reach loopback only."""
    return Settings(
        _env_file=None,
        data_dir=data_dir,
        database_url=database_url,
        fetch_allow_networks=[LOOPBACK],
        fetch_timeout=5,
        fetch_connect_timeout=2,
    )


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    return make_test_settings(tmp_path / "data", database_url)


@dataclass
class Route:
    body: bytes
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class FixtureSite:
    """A real HTTP server on a loopback address that serves the routes put into it."""

    host: str
    port: int
    routes: dict[str, Route] = field(default_factory=dict)
    hits: list[str] = field(default_factory=list)
    user_agents: list[str] = field(default_factory=list)

    def url(self, path: str) -> str:
        return f"http://{self.host}:{self.port}{path}"

    def serve(self, path: str, body: bytes | str, **kwargs: object) -> str:
        data = body.encode("utf-8") if isinstance(body, str) else body
        self.routes[path] = Route(data, **kwargs)  # type: ignore[arg-type]
        return self.url(path)


def _handler_for(site: FixtureSite) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            site.hits.append(self.path)
            site.user_agents.append(self.headers.get("User-Agent", ""))
            route = site.routes.get(self.path) or site.routes.get(self.path.split("?")[0])
            if route is None:
                self.send_error(404)
                return
            etag = route.headers.get("ETag")
            if etag and self.headers.get("If-None-Match") == etag:
                self.send_response(304)
                self.end_headers()
                return
            self.send_response(route.status)
            for name, value in route.headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(route.body)))
            self.end_headers()
            self.wfile.write(route.body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    return Handler


@pytest.fixture
def site() -> Iterator[FixtureSite]:
    server = ThreadingHTTPServer(("127.0.0.9", 0), BaseHTTPRequestHandler)
    fixture = FixtureSite("127.0.0.9", int(server.server_address[1]))
    server.RequestHandlerClass = _handler_for(fixture)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield fixture
    server.shutdown()
    server.server_close()


@pytest.fixture(autouse=True, scope="session")
def no_name_lookups_off_this_machine() -> Iterator[None]:
    """Tests never ask a DNS server: a host name other than localhost fails to resolve, here and
    in the Python processes tests start (see tests/netguard/sitecustomize.py)."""
    paths = [str(NETGUARD), *filter(None, [os.environ.get("PYTHONPATH")])]
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(socket, "getaddrinfo", local_only(socket.getaddrinfo))
        patch.setenv("PYTHONPATH", os.pathsep.join(paths))
        yield
