"""docker-compose.yml, read as data (there is no Docker engine here): every queue has its own
consumer service, beat runs once, the services check their health, and the environment names
only settings that exist."""

from __future__ import annotations

import re
from typing import Any

import pytest
import yaml

from aggregator.queues import QUEUES
from aggregator.settings import ENV_PREFIX, Settings
from tests.conftest import REPO

COMPOSE = yaml.safe_load((REPO / "docker-compose.yml").read_text())
SERVICES: dict[str, Any] = COMPOSE["services"]


def _queues_of(service: dict[str, Any]) -> list[str]:
    command = service.get("command", [])
    return command[command.index("-Q") + 1].split(",") if "-Q" in command else []


@pytest.mark.parametrize("queue", QUEUES)
def test_each_queue_has_a_worker_service_of_its_own(queue: str) -> None:
    consumers = [name for name, service in SERVICES.items() if queue in _queues_of(service)]
    assert len(consumers) == 1 and _queues_of(SERVICES[consumers[0]]) == [queue]
    assert "healthcheck" in SERVICES[consumers[0]]


def test_clustering_runs_one_consumer_and_beat_runs_once() -> None:
    (clustering,) = [s for s in SERVICES.values() if _queues_of(s) == ["clustering"]]
    command = clustering["command"]
    assert command[command.index("--concurrency") + 1] == "1"
    beats = [s for s in SERVICES.values() if "beat" in s.get("command", [])]
    assert len(beats) == 1 and "deploy" not in beats[0]  # never scaled


def test_the_environment_names_only_real_settings() -> None:
    text = (REPO / "docker-compose.yml").read_text()
    names = set(re.findall(rf"\b{ENV_PREFIX}([A-Z_]+):", text))
    assert names, "the services are configured through AGGREGATOR_* variables"
    assert {name.lower() for name in names} <= set(Settings.model_fields)


def test_stateful_services_keep_their_data_in_volumes() -> None:
    for name in ("postgres", "redis"):
        assert SERVICES[name]["volumes"] and "healthcheck" in SERVICES[name]
    assert set(COMPOSE["volumes"]) >= {"postgres-data", "redis-data"}
