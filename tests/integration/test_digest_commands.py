"""The digest through its entry points: the Celery task (retried, redelivered) and the
`aggregator subscribers` / `aggregator digest` commands, on a real store and SMTP server."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from pydantic import SecretStr

from aggregator import subscribers
from aggregator.cli import main
from aggregator.db import make_engine, session_scope, upgrade_database
from aggregator.digest import local_day
from aggregator.settings import Settings, get_settings
from tests.conftest import make_test_settings
from tests.digest_stories import add_story
from tests.smtp import Mailbox, smtp_server
from workers import tasks
from workers.celery_app import build_runtime, runtime, use_runtime
from workers.inprocess import eager_tasks

Invoke = Callable[..., Result]


@pytest.fixture
def mailbox() -> Iterator[Mailbox]:
    with smtp_server() as server:
        yield server


def _seed_stories(database_url: str, count: int = 3) -> None:
    engine = make_engine(database_url)
    upgrade_database(engine)
    with session_scope(engine) as session:
        for i in range(count):
            add_story(
                session, f"Story number {i}", ["wire", "herald"][: 1 + i % 2], now=datetime.now(UTC)
            )
    engine.dispose()


def test_a_retried_and_redelivered_task_sends_once(
    tmp_path: Path, database_url: str, mailbox: Mailbox
) -> None:
    settings: Settings = make_test_settings(tmp_path / "data", database_url).model_copy(
        update={
            "smtp_host": "127.0.0.1",
            "smtp_port": mailbox.port,
            "smtp_timeout": 5.0,
            "secret_key": SecretStr("k"),
        }
    )
    _seed_stories(database_url)
    use_runtime(build_runtime(settings))
    try:
        with session_scope(runtime().engine) as session:
            subscriber, _ = subscribers.add_subscriber(
                subscribers.SubscriberFields("reader@example.org", send_hour=0),
                session=session,
                settings=settings,
                now=datetime.now(UTC),
                confirmed=True,
            )
        mailbox.data_replies.append("421 4.7.0 Too busy, come back later")
        with eager_tasks():
            assert tasks.schedule_due_digests.delay().get() == 1  # fails once, retried, sent
            day = local_day("UTC", datetime.now(UTC)).isoformat()
            assert tasks.send_digest.delay(subscriber.id, day).get() == "sent"  # redelivered
            assert tasks.schedule_due_digests.delay().get() == 0  # the day is done
    finally:
        use_runtime(None)
    assert len(mailbox.messages) == 1


@pytest.fixture
def run(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, database_url: str, mailbox: Mailbox
) -> Iterator[Invoke]:
    for name in list(os.environ):
        if name.startswith("AGGREGATOR_"):
            monkeypatch.delenv(name)
    environment = {
        "DATA_DIR": str(tmp_path / "data"),
        "DATABASE_URL": database_url,
        "SMTP_HOST": "127.0.0.1",
        "SMTP_PORT": str(mailbox.port),
        "SECRET_KEY": "cli-secret",
    }
    for name, value in environment.items():
        monkeypatch.setenv(f"AGGREGATOR_{name}", value)
    monkeypatch.chdir(tmp_path)
    get_settings.cache_clear()

    def invoke(*args: str) -> Result:
        return CliRunner().invoke(main, list(args))

    yield invoke
    get_settings.cache_clear()


def test_subscribers_and_digest_commands(
    run: Invoke, database_url: str, mailbox: Mailbox, tmp_path: Path
) -> None:
    added = run(
        "subscribers",
        "add",
        "reader@example.org",
        "--timezone",
        "Asia/Tokyo",
        "--hour",
        "6",
        "--keywords",
        "story, number",
    )
    assert added.exit_code == 0 and added.output.startswith("added  #")
    assert run("subscribers", "add", "x@example.org", "--timezone", "Nowhere/X").exit_code == 2
    listed = run("subscribers", "list")
    assert "receiving" in listed.output and "Asia/Tokyo 06:00" in listed.output
    assert "keywords: story, number" in listed.output

    _seed_stories(database_url, 2)
    skipped = run("digest", "send", "--email", "reader@example.org")
    assert skipped.exit_code == 1
    assert "nothing sent: only 2 stories qualified (minimum 3)" in skipped.output
    assert mailbox.messages == []

    run("subscribers", "remove", "reader@example.org")
    run("subscribers", "add", "reader@example.org")
    _seed_stories(database_url, 3)
    preview = run("digest", "preview", "--email", "reader@example.org", "--output-dir", "out")
    assert preview.exit_code == 0, preview.output
    html = (tmp_path / "out" / "digest-reader_at_example.org.html").read_text()
    text = (tmp_path / "out" / "digest-reader_at_example.org.txt").read_text()
    assert "Story number 0" in html and "Story number 0" in text
    assert len(mailbox.messages) == 0  # a preview sends nothing
    sent = run("digest", "send", "--email", "reader@example.org")
    assert sent.exit_code == 0, sent.output
    assert sent.output.startswith("sent 5 stories to reader@example.org")
    again = run("digest", "send", "--email", "reader@example.org")
    assert again.exit_code == 1 and "was sent already" in again.output
    assert len(mailbox.messages) == 1
    nothing_new = run("digest", "preview", "--email", "reader@example.org")
    assert nothing_new.exit_code == 1 and "only 0 stories qualified" in nothing_new.output

    assert run("digest", "send", "--email", "nobody@example.org").exit_code == 1
    assert run("subscribers", "remove", "reader@example.org").exit_code == 0
    assert "reader@example.org" not in run("subscribers", "list").output
