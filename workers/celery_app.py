"""The Celery app: configuration, queues, the beat schedule, and the per-process runtime
(settings, one engine, one HTTP client), created after the worker forks."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from celery import Celery
from celery.signals import worker_init, worker_process_init
from sqlalchemy.engine import Engine

from aggregator import extract, pipeline
from aggregator.db import make_engine
from aggregator.fetch import Fetcher
from aggregator.settings import Settings, get_settings
from workers import signals  # noqa: F401  (connects logging and task statistics)
from workers.broker_guard import install as install_broker_guard

REDIS_VISIBILITY_TIMEOUT = 3600.0  # Kombu's default, kept unless a longer countdown needs more
# A task that committed must get its follow-ups out: publishing waits out a broker restart (about
# two minutes: 0, 1, 2, 3, 4, then 5 s between tries) instead of failing after Celery's 0.6 s.
PUBLISH_RETRY_POLICY = {
    "max_retries": 30,
    "interval_start": 0,
    "interval_step": 1,
    "interval_max": 5,
}
# Kombu opens a publisher's new channel through Connection.default_channel, which ignores the
# publish retry policy and gives up after the connect timeout (4 s; celery/kombu#735). With these
# failover options it waits as long as the policy does (its 30 tries take 135 s), so a follow-up
# publish on RabbitMQ waits out a restart, as it does on Redis, instead of failing.
AMQP_FAILOVER_OPTIONS = {**PUBLISH_RETRY_POLICY, "connect_retries_timeout": 150.0}


@dataclass
class Runtime:
    settings: Settings
    engine: Engine
    fetcher: Fetcher
    # Set by the in-process crawl: articles to cluster once the crawl's fetches are done, so
    # that its backlog reaches the clusterer in publication order rather than feed by feed.
    held_for_clustering: list[int] | None = None

    def close(self) -> None:
        self.fetcher.close()
        self.engine.dispose()


_runtime: Runtime | None = None


def runtime() -> Runtime:
    """This process's runtime, built from the settings on first use."""
    global _runtime
    if _runtime is None:
        _runtime = build_runtime(get_settings())
    return _runtime


def build_runtime(settings: Settings) -> Runtime:
    return Runtime(settings, make_engine(settings.effective_database_url), Fetcher(settings))


def use_runtime(new: Runtime | None) -> None:
    """Replace this process's runtime (the CLI and tests hand in their own settings)."""
    global _runtime
    if _runtime is not None and _runtime is not new:
        _runtime.close()
    _runtime = new


@worker_init.connect
def _load_models_before_fork(**_: Any) -> None:
    # Loaded once in the parent, the language model is shared by the forked pool processes.
    extract.warm_up()


@worker_process_init.connect
def _fresh_runtime_after_fork(**_: Any) -> None:
    # Connections and sockets must not be shared with the parent process.
    global _runtime
    _runtime = None


def celery_config(settings: Settings) -> dict[str, Any]:
    config: dict[str, Any] = {
        "broker_url": settings.effective_broker_url,
        "task_ignore_result": True,
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        "task_default_queue": "polling",
        "task_routes": {
            "workers.tasks.schedule_due_feeds": {"queue": "polling"},
            "workers.tasks.poll_feed": {"queue": "polling"},
            "workers.tasks.fetch_article": {"queue": "fetching"},
            "workers.tasks.cluster_article": {"queue": "clustering"},
            "workers.tasks.repair_stories": {"queue": "clustering"},
            "workers.tasks.purge_expired": {"queue": "clustering"},
            "workers.tasks.resend_stalled_articles": {"queue": "polling"},
            "workers.tasks.schedule_due_digests": {"queue": "digest"},
            "workers.tasks.send_digest": {"queue": "digest"},
        },
        "task_soft_time_limit": 120,
        "task_time_limit": 180,
        "broker_connection_retry_on_startup": True,
        "task_publish_retry_policy": PUBLISH_RETRY_POLICY,
        "beat_schedule": {
            "schedule-due-feeds": {"task": "workers.tasks.schedule_due_feeds", "schedule": 60.0},
            "repair-stories": {
                "task": "workers.tasks.repair_stories",
                "schedule": pipeline.REPAIR_EVERY.total_seconds(),
                "options": {"expires": 25 * 60},  # a late run is dropped, the next one comes
            },
            "resend-stalled-articles": {
                "task": "workers.tasks.resend_stalled_articles",
                "schedule": 600.0,
                "options": {"expires": 9 * 60},
            },
            "purge-expired": {
                "task": "workers.tasks.purge_expired",
                "schedule": 3600.0,
                "options": {"expires": 55 * 60},
            },
            "schedule-due-digests": {
                "task": "workers.tasks.schedule_due_digests",
                "schedule": 15 * 60.0,
                "options": {"expires": 14 * 60},
            },
        },
        "beat_schedule_filename": str(settings.data_dir / "celerybeat-schedule"),
        "timezone": "UTC",
    }
    config["broker_transport_options"] = _transport_options(settings, config["task_time_limit"])
    return config


def _transport_options(settings: Settings, time_limit: float) -> dict[str, Any]:
    if settings.broker_is_redis:
        return {"visibility_timeout": redis_visibility_timeout(settings, time_limit)}
    if settings.broker_is_amqp:
        return dict(AMQP_FAILOVER_OPTIONS)
    if settings.effective_broker_url.startswith("filesystem://"):
        return _filesystem_transport_options(settings.queue_dir)
    return {}


def redis_visibility_timeout(settings: Settings, time_limit: float) -> float:
    """Seconds after which Redis hands an unacknowledged task out again (Kombu's default is an
    hour). A task waiting out its countdown is unacknowledged, so this stays above the longest
    countdown the service asks for plus the run after it, or the task would run twice."""
    longest = max(settings.fetch_retry_max_wait_seconds, settings.cluster_max_wait_seconds)
    return max(REDIS_VISIBILITY_TIMEOUT, longest + 2 * time_limit)


def _filesystem_transport_options(queue_dir: Path) -> dict[str, object]:
    for sub in ("messages", "processed"):
        (queue_dir / sub).mkdir(parents=True, exist_ok=True)
    messages = str(queue_dir / "messages")
    return {
        "data_folder_in": messages,
        "data_folder_out": messages,
        "processed_folder": str(queue_dir / "processed"),
        "store_processed": False,
        "polling_interval": 0.1,  # the transport polls its folder; the default 1 s is sluggish
    }


install_broker_guard()  # a Redis outage must not kill the worker (see broker_guard)
app = Celery("aggregator", include=["workers.tasks"])
app.conf.update(celery_config(get_settings()))
