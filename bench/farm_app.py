"""The service's Celery app for the farm bench: beat ticks schedule_due_feeds every
BENCH_TICK_SECONDS instead of every minute, so a replayed farm is polled often enough.

    celery -A bench.farm_app beat
"""

from __future__ import annotations

import os

import workers.tasks  # noqa: F401  (registers the tasks on the app)
from workers.celery_app import app

app.conf.beat_schedule = {
    **app.conf.beat_schedule,
    "schedule-due-feeds": {
        "task": "workers.tasks.schedule_due_feeds",
        "schedule": float(os.environ.get("BENCH_TICK_SECONDS", "60")),
    },
}
