"""Celery signal handlers: JSON logging for worker and beat processes, log fields that name the
task and what it works on, and task outcomes and durations for /metrics."""

from __future__ import annotations

import logging
import time
from contextvars import Token
from functools import cache
from typing import Any

import redis
from celery.signals import setup_logging, task_postrun, task_prerun

from aggregator import task_stats
from aggregator.logs import bind_fields, configure_logging, unbind_fields
from aggregator.queues import shared_redis
from aggregator.settings import get_settings

log = logging.getLogger(__name__)
# The log field named by each task's first argument.
ID_ARGUMENT = {
    "workers.tasks.poll_feed": "source_id",
    "workers.tasks.fetch_article": "article_id",
    "workers.tasks.cluster_article": "article_id",
    "workers.tasks.send_digest": "subscriber_id",
}
_running: dict[str, tuple[float, Token[dict[str, object]]]] = {}


@setup_logging.connect
def _configure_logging(**_: Any) -> None:
    # Connected, this replaces Celery's own logging set-up in worker and beat processes.
    settings = get_settings()
    configure_logging(json_lines=settings.log_format == "json", level=settings.log_level)


@task_prerun.connect
def _task_started(task_id: str, task: Any, args: tuple[Any, ...] = (), **_: Any) -> None:
    fields: dict[str, object] = {"task_id": task_id, "task": task.name}
    if task.name in ID_ARGUMENT and args:
        fields[ID_ARGUMENT[task.name]] = args[0]
    _running[task_id] = (time.perf_counter(), bind_fields(**fields))


@task_postrun.connect
def _task_finished(task_id: str, task: Any, state: str | None = None, **_: Any) -> None:
    started = _running.pop(task_id, None)
    if started is None:
        return
    began, token = started
    seconds = time.perf_counter() - began
    outcome = (state or "unknown").lower()
    log.info("task %s %s in %.3f s", task.name, outcome, seconds)
    unbind_fields(token)
    client = _stats_client()
    if client is not None:
        try:
            task_stats.record_task(client, task=task.name, outcome=outcome, seconds=seconds)
        except redis.RedisError as exc:  # statistics never fail a task
            log.warning("task statistics not recorded: %s", exc)


@cache
def _stats_client() -> redis.Redis | None:
    return shared_redis(get_settings(), timeout=2)
