"""Render and send digests for many subscribers with varied preferences to a local SMTP server
(aiosmtpd on 127.0.0.1), and print digests per second and the time spent in selection,
rendering and SMTP.

    .venv/bin/python bench/bench_digest.py [--subscribers 10000] [--stories 400] [--full 500]

A temporary SQLite store holds `--stories` stories (2 to 12 outlets each) of the last day. Each
subscriber goes through the stages of delivery.send_digest: selection (candidate stories of the
window, cached per window like a worker would not, so it is timed once and reported apart,
then the reader's filter and ranking, then the selected stories' texts), rendering (templates and
MIME message) and SMTP (one connection per message). `--full` more subscribers then run the
real delivery.send_digest end to end (claim, build, send, record) for the digests/s a worker
sees.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from pydantic import SecretStr

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy.engine import Engine

from aggregator import delivery, digest, digest_store, mail, subscribers
from aggregator.db import make_engine, session_scope, upgrade_database
from aggregator.settings import Settings
from tests.digest_stories import add_story
from tests.smtp import smtp_server

WORDS = [
    "harbour",
    "bridge",
    "ferry",
    "council",
    "election",
    "storm",
    "alps",
    "ukraine",
    "markets",
    "choir",
    "court",
    "vote",
]
ZONES = ["UTC", "Europe/Paris", "America/New_York", "Asia/Tokyo", "Pacific/Kiritimati"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--subscribers", type=int, default=10_000)
    parser.add_argument("--stories", type=int, default=400)
    parser.add_argument("--full", type=int, default=500)
    args = parser.parse_args()
    rng = random.Random(7)
    now = datetime.now(UTC)
    with tempfile.TemporaryDirectory() as folder, smtp_server() as mailbox:
        settings = Settings(
            _env_file=None,
            data_dir=Path(folder),
            smtp_host="127.0.0.1",
            smtp_port=mailbox.port,
            secret_key=SecretStr("bench"),
            digest_min_stories=1,
        )
        engine = make_engine(settings.effective_database_url)
        upgrade_database(engine)
        _fill(engine, args.stories, rng, now)
        _add_subscribers(engine, settings, args.subscribers + args.full, rng, now)
        _staged(engine, settings, args.subscribers, now)
        _end_to_end(engine, settings, args.subscribers, args.full, now)
        print(f"mails received by the SMTP server: {len(mailbox.messages)}")


def _fill(engine: object, count: int, rng: random.Random, now: datetime) -> None:
    outlets = [f"outlet{i}" for i in range(40)]
    with session_scope(engine) as session:  # type: ignore[arg-type]
        for i in range(count):
            words = " ".join(rng.sample(WORDS, 3))
            add_story(
                session,
                f"Story {i}: {words}",
                rng.sample(outlets, rng.randint(2, 12)),
                now=now,
                hours_ago=rng.uniform(0, 23),
            )


def _add_subscribers(
    engine: object, settings: Settings, count: int, rng: random.Random, now: datetime
) -> None:
    with session_scope(engine) as session:  # type: ignore[arg-type]
        for i in range(count):
            keywords = tuple(rng.sample(WORDS, rng.choice([0, 0, 1, 2])))
            excluded = tuple(rng.sample(range(1, 41), rng.choice([0, 0, 3])))
            fields = subscribers.SubscriberFields(
                f"reader{i}@example.org",
                rng.choice(ZONES),
                rng.randint(0, 23),
                keywords,
                (),
                excluded,
                rng.choice([5, 10, 15]),
            )
            subscribers.add_subscriber(
                fields, session=session, settings=settings, now=now, confirmed=True
            )


def _staged(engine: object, settings: Settings, count: int, now: datetime) -> None:
    timings = {"candidates": 0.0, "selection": 0.0, "rendering": 0.0, "smtp": 0.0}
    with session_scope(engine) as session:  # type: ignore[arg-type]
        readers = list(digest_store.list_subscribers(session=session))[:count]
        started = time.perf_counter()
        since = now - timedelta(hours=settings.digest_window_hours)
        candidates = digest_store.candidate_stories(session=session, since=since, now=now)
        timings["candidates"] = time.perf_counter() - started
        began, sent = time.perf_counter(), 0
        for reader in readers:
            t0 = time.perf_counter()
            selection = digest.select_stories(
                candidates,
                prefs=delivery.preferences(reader),
                sent_outlets={},
                now=now,
                min_stories=settings.digest_min_stories,
            )
            headlines = {s.id: s.headline for s in selection.stories}
            texts = digest_store.story_texts(session=session, stories=headlines)
            stories = [digest.digest_story(s, texts[s.id]) for s in selection.stories]
            t1 = time.perf_counter()
            if not stories:
                timings["selection"] += t1 - t0
                continue
            day = digest.local_day(reader.timezone, now)
            page = digest.DigestPage(
                day,
                reader.timezone,
                subscribers.unsubscribe_url(reader, settings),
                settings.public_url,
                reader.email,
            )
            rendered = digest.render_digest(stories, page)
            message_id = digest.message_id(reader.id or 0, reader.email, day, domain="bench")
            message = delivery.digest_message(reader, rendered, message_id, settings, now)
            t2 = time.perf_counter()
            mail.send_message(message, settings=settings)
            t3 = time.perf_counter()
            timings["selection"] += t1 - t0
            timings["rendering"] += t2 - t1
            timings["smtp"] += t3 - t2
            sent += 1
        elapsed = time.perf_counter() - began
    print(
        f"staged: {sent} digests to {len(readers)} subscribers in {elapsed:.1f} s "
        f"= {sent / elapsed:.0f} digests/s ({len(candidates)} candidate stories, "
        f"loaded once in {timings['candidates'] * 1000:.0f} ms)"
    )
    for stage in ("selection", "rendering", "smtp"):
        per = timings[stage] / max(sent, 1) * 1000
        print(
            f"  {stage:<10} {timings[stage]:7.1f} s  {per:6.2f} ms/digest  "
            f"{timings[stage] / elapsed:5.1%}"
        )


def _end_to_end(engine: Engine, settings: Settings, skip: int, count: int, now: datetime) -> None:
    if count <= 0:
        return
    with session_scope(engine) as session:
        ids = [s.id or 0 for s in digest_store.list_subscribers(session=session)][skip:]
    started, statuses = time.perf_counter(), dict[str, int]()
    for subscriber_id in ids[:count]:
        outcome = delivery.send_digest(
            subscriber_id,
            now.date(),
            engine=engine,
            settings=settings,
            now=now,
        )
        statuses[outcome.status] = statuses.get(outcome.status, 0) + 1
    elapsed = time.perf_counter() - started
    print(
        f"end to end (delivery.send_digest: claim, build, send, record): {count} in "
        f"{elapsed:.1f} s = {count / elapsed:.0f} digests/s {statuses}"
    )


if __name__ == "__main__":
    main()
