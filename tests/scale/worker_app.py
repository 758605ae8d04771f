"""The service's own Celery app and tasks, with the live fault tests' configuration on top:

* a short Redis visibility timeout, swept every second, so the messages a killed worker held
  come back within seconds (production keeps Kombu's hour);
* beat ticks schedule_due_feeds every 2 s instead of every minute, and nothing else;
* with SCALE_DUPLICATE_TASKS=1 every task message published here is published a second time,
  with the same task id: each task is delivered twice;
* with SCALE_DIE_BEFORE=<task name>,… the first process about to publish each named task (so
  the task publishing it has committed its work) kills itself with SIGKILL, once per name;
* with SCALE_PUBLISH_RETRIES=<n> a publish gives up after n quick retries (about n / 2 s) instead
  of waiting out a two-minute broker outage, so a short outage makes it fail;
* with SCALE_SWEEP_SECONDS=<s> beat also sends resend_stalled_articles every s seconds.

Run as ``celery -A tests.scale.worker_app worker|beat``.
"""

from __future__ import annotations

import os
import signal
import threading
from datetime import datetime
from pathlib import Path
from typing import Any

from celery.signals import after_task_publish, before_task_publish

import workers.tasks  # noqa: F401  (registers the tasks on the app)
from aggregator.settings import get_settings
from workers.celery_app import app

VISIBILITY_TIMEOUT = 6

if get_settings().broker_is_redis:
    app.conf.broker_transport_options = {
        "visibility_timeout": VISIBILITY_TIMEOUT,
        "unacked_restore_interval": 1,
        "unacked_restore_throttle": 1,
    }
app.conf.beat_schedule = {
    "schedule-due-feeds": {"task": "workers.tasks.schedule_due_feeds", "schedule": 2.0}
}
app.conf.broker_connection_max_retries = None  # reconnect for ever (a restarted broker)
if publish_retries := os.environ.get("SCALE_PUBLISH_RETRIES"):
    app.conf.task_publish_retry_policy = {
        "max_retries": int(publish_retries),
        "interval_start": 0,
        "interval_step": 0.5,
        "interval_max": 0.5,
    }
if sweep_seconds := os.environ.get("SCALE_SWEEP_SECONDS"):
    app.conf.beat_schedule["resend-stalled-articles"] = {
        "task": "workers.tasks.resend_stalled_articles",
        "schedule": float(sweep_seconds),
    }

_republishing = threading.local()


@after_task_publish.connect
def _publish_twice(
    sender: str | None = None,
    body: Any = None,
    routing_key: str | None = None,
    headers: dict[str, Any] | None = None,
    **_: Any,
) -> None:
    if os.environ.get("SCALE_DUPLICATE_TASKS") != "1" or getattr(_republishing, "on", False):
        return
    args, kwargs = (body[0], body[1]) if isinstance(body, list | tuple) else ((), {})
    eta = (headers or {}).get("eta")
    _republishing.on = True
    try:
        app.send_task(
            str(sender),
            args=args,
            kwargs=kwargs,
            queue=routing_key,
            task_id=(headers or {}).get("id"),
            eta=datetime.fromisoformat(eta) if eta else None,
        )
    finally:
        _republishing.on = False


@before_task_publish.connect
def _die_before_publishing(sender: str | None = None, **_: Any) -> None:
    names = [n for n in os.environ.get("SCALE_DIE_BEFORE", "").split(",") if n]
    if sender not in names:
        return
    marker = Path(os.environ["AGGREGATOR_DATA_DIR"]) / f"died-before-{sender}"
    marker.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.close(os.open(marker, os.O_CREAT | os.O_EXCL))
    except FileExistsError:
        return
    os.kill(os.getpid(), signal.SIGKILL)
