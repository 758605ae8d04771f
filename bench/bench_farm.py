"""Scale-out proof on the feed farm (bench/farm.py): real Celery worker processes and one beat on
Redis (or RabbitMQ: --broker rabbitmq) and PostgreSQL crawl the NeuS file served as ~145 news
sites on loopback, to completion.

The farm replays the file: its entries appear in their feeds in publication order over --replay
seconds (0: all at once, a backfill), and the scheduler ticks every --tick seconds, so the
stream reaches the clusterer in roughly the order it was published, as it would in production.
Runs, each into a new PostgreSQL database and an emptied Redis database (or a new RabbitMQ
virtual host, deleted after the run):

* ``0``: the single-process reference (workers/inprocess.py: the same tasks, eager, in here,
  one crawl of the due feeds per tick);
* ``1``, ``2``, …: that many ``aggregator worker --no-beat`` processes plus one beat
  (``celery -A bench.farm_app beat``: the service's app with the tick as its polling interval).

Checks per run (exit status 1 and a FAILED line naming the check otherwise): every article of
the farm stored exactly once, nothing pending or unclustered, queues drained and nothing
unacked, no task failed for good, story counts consistent with their articles, misbehaving
hosts in the health they deserve; and each multi-worker run's pairwise F1 against the file's
gold stories no more than --tolerance below the (first) single-process run's. Prints feed polls and
articles stored per minute, the delay from an entry's appearance in its feed (and from the poll
that stored it) to its story, and where the workers' time went (task durations from their logs).

    .venv/bin/python bench/bench_farm.py [--feeds N] [--runs 0,1,2] [--replay 120] [--tick 10]
        [--broker redis|rabbitmq]

Settings for the farm (bench_farm.tuning): politeness raised (every host is this machine),
retention ten years (the file's dates span six months before today), polling interval and
clustering settle time = tick.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import random
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import redis
from celery import Celery
from farm import DATA, Farm, Replay, load_outlets, serve_farm
from sqlalchemy import create_engine, func, text
from sqlalchemy import select as sql_select
from sqlalchemy.engine import Engine, make_url
from sqlmodel import col, select

from aggregator import store
from aggregator.db import make_engine, session_scope, upgrade_database
from aggregator.metrics import pairwise_scores
from aggregator.models import Article, ExtractionStatus, Source, Story
from aggregator.queues import redis_backlog
from aggregator.settings import Settings
from workers.celery_app import build_runtime, use_runtime
from workers.inprocess import crawl_due_sources

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from tests.conftest import new_rabbitmq_vhost, rabbitmq_messages  # noqa: E402

Backlog = Callable[[], int]  # messages in the broker's queues, ready or not yet acknowledged
FINAL_WITHOUT_STORY = {ExtractionStatus.FAILED.value, ExtractionStatus.BOILERPLATE.value}
TASK_LINE = re.compile(
    r"Task (workers\.tasks\.\w+)\[[^\]]+\] (succeeded in ([\d.]+)s|retry|raised)"
)


@dataclass
class RunResult:
    label: str
    seconds: float = 0.0
    polls: int = 0  # feed polls (each due feed, every tick)
    articles: int = 0
    f1: float = 0.0
    delays: list[float] = field(default_factory=list)  # entry in its feed -> story, seconds
    pipeline_delays: list[float] = field(default_factory=list)  # stored by a poll -> story
    task_seconds: dict[str, float] = field(default_factory=dict)
    task_counts: dict[str, int] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)


# ---------------------------------------------------------------- stores


@contextmanager
def new_database(admin_url: str) -> Iterator[str]:
    name = f"bench_farm_{uuid.uuid4().hex[:10]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def register_feeds(engine: Engine, farm: Farm, shuffle: int | None = None) -> None:
    """The farm's feeds as sources, in the farm's order or shuffled with the given seed (the
    order sources are polled in, and so the order the streaming clusterer sees articles in)."""
    feeds = list(farm.feed_urls.items())
    if shuffle is not None:
        random.Random(shuffle).shuffle(feeds)
    with session_scope(engine) as session:
        for name, url in feeds:
            store.add_source(session=session, url=url, title=name, now=datetime.now(UTC))


# ---------------------------------------------------------------- checks


Row = tuple[int, str, str, int | None, datetime]  # id, url, extraction status, story, discovered


def article_rows(engine: Engine) -> list[Row]:
    with session_scope(engine) as session:
        query = sql_select(  # five columns: more than sqlmodel's select is typed for
            col(Article.id),
            col(Article.url),
            col(Article.extraction_status),
            col(Article.story_id),
            col(Article.discovered_at),
        )
        return [(i or 0, u, s, story, d) for i, u, s, story, d in session.execute(query).all()]


def unfinished(rows: Sequence[Row]) -> int:
    """Articles still on their way: pending, or clusterable and without a story."""
    return sum(
        1 for _, _, status, story, _ in rows if story is None and status not in FINAL_WITHOUT_STORY
    )


def check_store(engine: Engine, farm: Farm) -> list[str]:
    """Exactly once, nothing pending, stories consistent; the failures, if any."""
    failures = []
    expected = set(farm.gold) | set(farm.extra_articles)
    rows = article_rows(engine)
    urls = [url for _, url, _, _, _ in rows]
    if len(urls) != len(set(urls)):
        failures.append(f"{len(urls) - len(set(urls))} article URLs stored more than once")
    if missing := expected - set(urls):
        failures.append(f"{len(missing)} farm articles never stored, e.g. {sorted(missing)[:3]}")
    if extra := set(urls) - expected:
        failures.append(
            f"{len(extra)} stored articles the farm never served, e.g. {sorted(extra)[:3]}"
        )
    if waiting := unfinished(rows):
        failures.append(f"{waiting} articles pending or clusterable without a story")
    with session_scope(engine) as session:
        counted = dict(
            session.exec(
                select(Article.story_id, func.count())
                .where(col(Article.story_id).is_not(None))
                .group_by(col(Article.story_id))
            ).all()
        )
        stories = session.exec(select(Story).where(col(Story.merged_into_id).is_(None))).all()
        wrong = [s.id for s in stories if s.article_count != counted.get(s.id, 0)]
        unpolled = session.exec(
            select(func.count()).where(col(Source.last_polled_at).is_(None))
        ).one()
    if wrong:
        failures.append(f"{len(wrong)} stories whose article_count disagrees with their articles")
    if unpolled:
        failures.append(f"{unpolled} sources never polled")
    return failures


def check_misbehaving(engine: Engine, farm: Farm) -> list[str]:
    """The misbehaving hosts end in the health the crawling rules give them."""
    expected = {
        "error500": {"backing_off"},
        "ratelimited": {"backing_off"},
        "slow": {"ok"},
        "malformed": {"backing_off", "degraded"},
    }
    with session_scope(engine) as session:
        health = {s.url: s.health for s in store.list_sources(session=session)}
    return [
        f"misbehaving host {kind}: health {health.get(url)}, expected {sorted(expected[kind])}"
        for kind, url in farm.misbehaving.items()
        if health.get(url) not in expected[kind]
    ]


def f1_of(engine: Engine, farm: Farm) -> float:
    with session_scope(engine) as session:
        predicted = store.story_of_urls(session=session, urls=list(farm.gold))
    return pairwise_scores(farm.gold, predicted).f1


# ---------------------------------------------------------------- runs


def tuning(tick: float) -> dict[str, object]:
    """Settings the farm needs: every host is this machine, so politeness is no limit; the
    file's dates span six months, so retention keeps everything; a replayed feed is polled
    every tick (no jitter, no rate-based interval); clustering settles for one tick and waits for
    earlier articles' fetches for at most ten, as for beat's ticks in production."""
    return {
        "host_requests_per_minute": 100_000,
        "host_max_concurrent": 8,
        "retention_days": 3650.0,
        "poll_interval_min_seconds": int(tick),
        "poll_interval_max_seconds": int(tick),
        "poll_jitter": 0.0,
        "cluster_settle_seconds": tick,
        "cluster_max_wait_seconds": 10 * tick,
    }


def settings_for(data_dir: Path, database_url: str, broker_url: str, tick: float) -> Settings:
    return Settings(
        _env_file=None,
        data_dir=data_dir,
        database_url=database_url,
        broker_url=broker_url,
        fetch_allow_networks=[ipaddress.ip_network("127.0.0.0/8")],
        **tuning(tick),  # type: ignore[arg-type]
    )


def run_single(
    farm: Farm, engine: Engine, settings: Settings, args: argparse.Namespace, result: RunResult
) -> None:
    """The reference: the same tasks in this process (Celery's eager mode), no broker; every
    tick, each due feed is polled and its new articles fetched and clustered at once."""
    use_runtime(build_runtime(settings))
    started = time.monotonic()
    assigned: dict[int, float] = {}
    while not finished(farm, article_rows(engine)):
        if time.monotonic() - started > args.timeout:
            left = unfinished(article_rows(engine))
            result.failures.append(f"not finished after {args.timeout:.0f} s ({left} unfinished)")
            break
        tick_started = time.monotonic()
        result.polls += crawl_due_sources().sources_polled
        note_assigned(article_rows(engine), assigned)
        time.sleep(max(0.0, args.tick - (time.monotonic() - tick_started)))
    result.seconds = time.monotonic() - started
    use_runtime(None)
    delays(farm, engine, assigned, result)


def finished(farm: Farm, rows: Sequence[Row]) -> bool:
    expected = len(farm.gold) + len(farm.extra_articles)
    return farm.all_appeared() and len(rows) >= expected and not unfinished(rows)


def note_assigned(rows: Sequence[Row], assigned: dict[int, float]) -> None:
    """When (wall clock) each article was first seen with its story."""
    now = time.time()
    for article_id, _, _, story, _ in rows:
        if story is not None:
            assigned.setdefault(article_id, now)


def delays(farm: Farm, engine: Engine, assigned: dict[int, float], result: RunResult) -> None:
    rows = {i: (url, discovered) for i, url, _, _, discovered in article_rows(engine)}
    for article_id, at in assigned.items():
        url, discovered = rows[article_id]
        result.delays.append(at - farm.appeared_at(url))
        result.pipeline_delays.append(at - store_utc(discovered).timestamp())


def child_env(settings: Settings, tick: float) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGGREGATOR_")}
    return (
        env
        | {f"AGGREGATOR_{key.upper()}": str(value) for key, value in tuning(tick).items()}
        | {
            "AGGREGATOR_DATA_DIR": str(settings.data_dir),
            "AGGREGATOR_DATABASE_URL": settings.database_url,
            "AGGREGATOR_BROKER_URL": settings.broker_url,
            "AGGREGATOR_FETCH_ALLOW_NETWORKS": "127.0.0.0/8",
            "BENCH_TICK_SECONDS": str(tick),
        }
    )


def start(command: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(
            command, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )


def stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM (warm shutdown) to the process group, SIGKILL if it lingers."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        with suppress(subprocess.TimeoutExpired):
            process.wait(timeout=30)
    with suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def run_workers(
    farm: Farm,
    engine: Engine,
    settings: Settings,
    workers: int,
    args: argparse.Namespace,
    result: RunResult,
    backlog: Backlog,
) -> None:
    env = child_env(settings, args.tick)
    logs = [settings.data_dir / f"worker{i}.log" for i in range(workers)]
    worker = [str(Path(sys.executable).with_name("aggregator")), "worker", "--no-beat"]
    worker += ["-c", str(args.concurrency), "-n"]
    processes = [start([*worker, f"bench{i}@%h"], env, log) for i, log in enumerate(logs)]
    beat = [sys.executable, "-m", "celery", "-A", "bench.farm_app", "beat", "--loglevel", "INFO"]
    beat += ["-s", str(settings.data_dir / "beat")]
    processes.append(start(beat, env, settings.data_dir / "beat.log"))
    try:
        wait_for_workers(logs, processes, timeout=120)
        farm.restart()
        started = time.monotonic()
        Celery("bench", broker=settings.broker_url).send_task(
            "workers.tasks.schedule_due_feeds", queue="polling"
        )
        monitor(farm, engine, backlog, started, processes, args.timeout, result)
    finally:
        for process in processes:
            stop(process)
    for log in logs:
        tally_tasks(log.read_text(errors="replace"), result)
    result.polls = result.task_counts.get("poll_feed", 0)
    for log in logs:
        if failed := log.read_text(errors="replace").count("raised unexpected"):
            result.failures.append(f"{failed} tasks failed (not retried) in {log.name}")


def wait_for_workers(
    logs: list[Path], processes: list[subprocess.Popen[bytes]], timeout: float
) -> None:
    deadline = time.monotonic() + timeout
    while not all("ready." in log.read_text(errors="replace") for log in logs):
        if time.monotonic() > deadline or any(p.poll() is not None for p in processes):
            raise SystemExit(f"workers did not start; see {logs[0].parent}")
        time.sleep(0.5)


def monitor(
    farm: Farm,
    engine: Engine,
    backlog: Backlog,
    started: float,
    processes: list[subprocess.Popen[bytes]],
    timeout: float,
    result: RunResult,
) -> None:
    """Until every article has its end state, every feed was polled and the queues are empty;
    notes when each article got its story."""
    assigned: dict[int, float] = {}
    settled = 0
    while settled < 2:
        if time.monotonic() - started > timeout:
            left = backlog()
            result.failures.append(f"not finished after {timeout:.0f} s ({left} messages left)")
            break
        if any(p.poll() is not None for p in processes):
            result.failures.append("a worker or beat process exited during the run")
            break
        rows = article_rows(engine)
        note_assigned(rows, assigned)
        with session_scope(engine) as session:
            query = select(func.count()).where(col(Source.last_polled_at).is_(None))
            unpolled = session.exec(query).one()
        done = finished(farm, rows) and not unpolled
        settled = settled + 1 if done and backlog() == 0 else 0
        time.sleep(0.5)
    # Done means every article in its end state with the queues empty and nothing unacked, twice
    # in a row. Not checked again after: beat goes on, and its next tick queues polls of feeds
    # that are due again (a run once failed on such a burst of 57 polls).
    result.seconds = time.monotonic() - started
    delays(farm, engine, assigned, result)


def tally_tasks(log: str, result: RunResult) -> None:
    """Count and time each task from the worker's log ("Task x[id] succeeded in 0.1s")."""
    for name, outcome, seconds in TASK_LINE.findall(log):
        short = name.rsplit(".", 1)[1] + ("" if seconds else f" ({outcome})")
        result.task_counts[short] = result.task_counts.get(short, 0) + 1
        result.task_seconds[short] = result.task_seconds.get(short, 0.0) + float(seconds or 0)


def run(
    label: str, workers: int, farm: Farm, args: argparse.Namespace, shuffle: int | None = None
) -> RunResult:
    result = RunResult(label)
    with (
        run_broker(args, workers) as (broker_url, backlog),
        new_database(args.postgres_url) as url,
        tempfile.TemporaryDirectory(prefix="farm-") as tmp,
    ):
        settings = settings_for(Path(tmp), url, broker_url, args.tick)
        engine = make_engine(url)
        upgrade_database(engine)
        register_feeds(engine, farm, shuffle)
        farm.restart()
        if workers == 0:
            run_single(farm, engine, settings, args, result)
        else:
            run_workers(farm, engine, settings, workers, args, result, backlog)
        result.failures += check_store(engine, farm) + check_misbehaving(engine, farm)
        result.articles = len(article_rows(engine))
        result.f1 = f1_of(engine, farm)
        engine.dispose()
    return result


@contextmanager
def run_broker(args: argparse.Namespace, workers: int) -> Iterator[tuple[str, Backlog]]:
    """The broker of one run, empty, and its backlog: none for the single process; Redis's
    database emptied before and after; or a RabbitMQ virtual host of its own."""
    if workers == 0:
        yield "", lambda: 0
    elif args.broker == "rabbitmq":
        with new_rabbitmq_vhost() as url:
            yield url, lambda: rabbitmq_messages(url)
    else:
        client = redis.Redis.from_url(args.redis_url)
        client.flushdb()
        try:
            yield args.redis_url, lambda: redis_backlog(client)
        finally:
            client.flushdb()
            client.close()


def store_utc(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


# ---------------------------------------------------------------- report


def percentile(values: Sequence[float], share: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def print_result(result: RunResult) -> None:
    minutes = result.seconds / 60
    print(
        f"{result.label:<22} {result.seconds:6.1f} s  {result.polls:5d} polls "
        f"({result.polls / minutes:5.0f}/min)  {result.articles:5d} articles "
        f"({result.articles / minutes:4.0f}/min)  pairwise F1 {result.f1:.4f}"
    )
    for label, values in (
        ("entry in its feed -> story", result.delays),
        ("stored by a poll -> story", result.pipeline_delays),
    ):
        if values:
            print(
                f"{'':<22} {label}: p50 {statistics.median(values):5.1f} s, "
                f"p95 {percentile(values, 0.95):5.1f} s, max {max(values):5.1f} s"
            )
    busy = sum(result.task_seconds.values())
    for name, seconds in sorted(result.task_seconds.items(), key=lambda kv: -kv[1]):
        count = result.task_counts[name]
        print(
            f"{'':<22} {name:<26} {count:5d} tasks {seconds:7.1f} s "
            f"({100 * seconds / busy if busy else 0:4.1f} %, {1000 * seconds / count:6.1f} ms each)"
        )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--feeds", type=int, default=None, help="only the N largest outlets")
    parser.add_argument("--runs", default="0,1,2", help="0 = single process; N = N workers")
    parser.add_argument("--concurrency", type=int, default=1, help="pool size of each worker")
    parser.add_argument(
        "--replay",
        type=float,
        default=120.0,
        help="seconds over which the entries appear in their feeds, oldest first (0: all at once)",
    )
    parser.add_argument("--tick", type=float, default=10.0, help="seconds between scheduler ticks")
    parser.add_argument("--tolerance", type=float, default=0.01)
    parser.add_argument(
        "--shuffle", action="store_true", help="register the feeds in another order each run"
    )
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds per run")
    parser.add_argument("--broker", choices=("redis", "rabbitmq"), default="redis")
    parser.add_argument(
        "--redis-url", default=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/7")
    )
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get(
            "AGGREGATOR_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
        ),
    )
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stop the workers on the way out
    runs = [int(n) for n in args.runs.split(",")]
    today = datetime.now(UTC).date()
    outlets = load_outlets(args.data, today=today, feeds=args.feeds)
    print(
        f"farm: {len(outlets)} outlet feeds + 4 misbehaving hosts, "
        f"{sum(len(o.articles) for o in outlets)} articles; {os.cpu_count()} CPUs, "
        f"load {os.getloadavg()[0]:.1f}; worker pool size {args.concurrency}; entries appear "
        f"over {args.replay:.0f} s, scheduler tick {args.tick:.0f} s; broker {args.broker}",
        flush=True,
    )
    results: list[RunResult] = []
    with serve_farm(outlets, today=today, replay=Replay(args.replay)) as farm:
        for index, workers in enumerate(runs):
            label = "single process" if workers == 0 else f"{workers} worker{'s' * (workers > 1)}"
            shuffle = index if args.shuffle and index else None
            label += "" if shuffle is None else f" (order {shuffle})"
            result = run(label, workers, farm, args, shuffle)
            print_result(result)
            results.append(result)
            sys.stdout.flush()
    return verdict(results, runs, args.tolerance)


def verdict(results: list[RunResult], runs: list[int], tolerance: float) -> int:
    """Every run's own checks, and each multi-worker run's F1 against the first single-process
    run's: no more than `tolerance` below it (many workers must cluster as well as one; a streaming
    clusterer's F1 moves both ways with the order articles reach it, and two single-process runs
    differ too). Prints the differences, the 1-vs-2-worker speed ratio and the spread between
    single-process runs."""
    failures = [f"{r.label}: {failure}" for r in results for failure in r.failures]
    singles = [r for r, n in zip(results, runs, strict=True) if n == 0]
    for r, n in zip(results, runs, strict=True):
        if not (n and singles):
            continue
        print(f"{r.label}: pairwise F1 {r.f1 - singles[0].f1:+.4f} against the single process")
        if r.f1 < singles[0].f1 - tolerance:
            failures.append(
                f"{r.label}: pairwise F1 {r.f1:.4f} is more than {tolerance} below the "
                f"single-process {singles[0].f1:.4f}"
            )
    if len(singles) > 1:
        spread = max(r.f1 for r in singles) - min(r.f1 for r in singles)
        orders = "different feed orders" if "order" in singles[-1].label else "the same feed order"
        print(f"single-process runs in {orders}: F1 spread {spread:.4f}")
    by_workers = {n: r for r, n in zip(results, runs, strict=True)}
    if 1 in by_workers and 2 in by_workers and by_workers[2].seconds:
        print(f"2 workers vs 1: {by_workers[1].seconds / by_workers[2].seconds:.2f}x the speed")
    for failure in failures:
        print(f"FAILED {failure}")
    print("farm bench: " + ("FAILED" if failures else "all checks hold"))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
