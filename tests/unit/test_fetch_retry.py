import pytest

from aggregator.settings import Settings
from workers.celery_app import REDIS_VISIBILITY_TIMEOUT, celery_config
from workers.tasks import fetch_retry_countdown

LONGEST = 1200.0


@pytest.mark.parametrize(
    ("asked", "retries", "expected"),
    [
        (None, 0, 30.0),
        (None, 2, 120.0),
        (0.0, 1, 60.0),  # "Retry-After: 0" or a date in the past: the usual back-off
        (90.0, 5, 90.0),  # what the server asked for
        (86_400.0, 0, LONGEST),  # a day: capped below the broker's redelivery
        (None, 10**6, LONGEST),  # a huge retry budget never overflows
    ],
)
def test_fetch_retry_countdown(asked: float | None, retries: int, expected: float) -> None:
    assert fetch_retry_countdown(asked, retries, LONGEST) == expected


def _redis_settings(**values: float) -> Settings:
    redis = Settings(_env_file=None, broker_url="redis://127.0.0.1:6379/0")
    return redis.model_copy(update=values)


def test_the_default_cap_keeps_the_redis_visibility_timeout_of_an_hour() -> None:
    settings = _redis_settings()
    config = celery_config(settings)
    assert settings.fetch_retry_max_wait_seconds == 1200.0
    assert config["broker_transport_options"] == {"visibility_timeout": REDIS_VISIBILITY_TIMEOUT}


def test_a_longer_wait_moves_the_redis_visibility_timeout_beyond_it() -> None:
    """A retry waiting longer than the visibility timeout would be handed out twice."""
    for longest in ("fetch_retry_max_wait_seconds", "cluster_max_wait_seconds"):
        config = celery_config(_redis_settings(**{longest: 7200.0}))
        timeout = config["broker_transport_options"]["visibility_timeout"]
        assert timeout >= 7200.0 + config["task_time_limit"]


def test_operators_set_the_cap_in_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGGREGATOR_FETCH_RETRY_MAX_WAIT_SECONDS", "3000")
    longest = Settings(_env_file=None).fetch_retry_max_wait_seconds
    assert fetch_retry_countdown(86_400.0, 0, longest) == 3000.0
    monkeypatch.setenv("AGGREGATOR_FETCH_RETRY_MAX_WAIT_SECONDS", "0")
    with pytest.raises(ValueError, match="greater than 0"):
        Settings(_env_file=None)
