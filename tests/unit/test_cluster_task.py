"""How long a clustering task waiting for earlier fetches stays away before it looks again."""

from __future__ import annotations

from pathlib import Path

from aggregator.settings import Settings
from workers import tasks
from workers.celery_app import build_runtime, use_runtime


def test_a_waiting_clustering_task_backs_off_up_to_the_longest_wait(tmp_path: Path) -> None:
    settings = Settings(
        _env_file=None,
        data_dir=tmp_path,
        database_url=f"sqlite:///{tmp_path / 'store.db'}",
        cluster_settle_seconds=60,
        cluster_max_wait_seconds=600,
    )
    use_runtime(build_runtime(settings))
    try:
        waits = [tasks._wait_before_clustering(waited) for waited in range(6)]
        use_runtime(build_runtime(settings.model_copy(update={"cluster_settle_seconds": 0})))
        without_settling = tasks._wait_before_clustering(0)
    finally:
        use_runtime(None)
    assert waits == [60, 120, 240, 480, 600, 600]
    assert without_settling == 1  # never a busy loop
