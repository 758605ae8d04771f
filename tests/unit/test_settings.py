import ipaddress
import re
from pathlib import Path

import pytest

from aggregator.settings import Settings

ENV_EXAMPLE = Path(__file__).resolve().parents[2] / "config" / ".env.example"


def test_every_setting_is_documented_in_env_example() -> None:
    documented = set(re.findall(r"^AGGREGATOR_([A-Z0-9_]+)=", ENV_EXAMPLE.read_text(), re.M))
    expected = {name.upper() for name in Settings.model_fields}
    assert expected - documented == set(), "settings missing from config/.env.example"
    assert documented - expected == set(), "config/.env.example names unknown settings"


def test_env_example_defaults_parse_to_the_same_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in re.findall(r"^(AGGREGATOR_[A-Z0-9_]+)=(.*)$", ENV_EXAMPLE.read_text(), re.M):
        monkeypatch.setenv(name, value)
    assert Settings(_env_file=None) == Settings.model_construct(**Settings(_env_file=None).__dict__)
    from_example = Settings(_env_file=None)
    monkeypatch.delenv("AGGREGATOR_FETCH_ALLOW_NETWORKS")
    for name in Settings.model_fields:
        monkeypatch.delenv(f"AGGREGATOR_{name.upper()}", raising=False)
    assert from_example == Settings(_env_file=None)


def test_environment_overrides_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGGREGATOR_DATABASE_URL", "postgresql+psycopg://db/x")
    monkeypatch.setenv("AGGREGATOR_FETCH_ALLOW_NETWORKS", "10.1.0.0/16, 127.0.0.0/8")
    settings = Settings(_env_file=None)
    assert settings.effective_database_url == "postgresql+psycopg://db/x"
    assert settings.fetch_allow_networks == [
        ipaddress.ip_network("10.1.0.0/16"),
        ipaddress.ip_network("127.0.0.0/8"),
    ]


def test_defaults_need_no_server(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    settings = Settings(_env_file=None)
    assert settings.effective_database_url.startswith("sqlite:///")
    assert settings.effective_database_url.endswith("/data/aggregator.db")
    assert settings.effective_broker_url.startswith("filesystem://")
    assert settings.fetch_allow_networks == []


def test_toml_file_is_read_below_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    config = tmp_path / "aggregator.toml"
    config.write_text('cluster_window_days = 30\nuser_agent = "from-toml"\n')
    monkeypatch.setenv("AGGREGATOR_CONFIG_FILE", str(config))
    monkeypatch.setenv("AGGREGATOR_USER_AGENT", "from-env")
    settings = Settings(_env_file=None)
    assert settings.cluster_window_days == 30
    assert settings.user_agent == "from-env"


def test_invalid_values_are_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGGREGATOR_FETCH_ALLOW_NETWORKS", "not-a-network")
    with pytest.raises(ValueError, match="fetch_allow_networks"):
        Settings(_env_file=None)


@pytest.mark.parametrize(
    ("broker_url", "redis_url", "shared"),
    [
        ("", "", ""),  # the server-less default: each process counts alone
        ("redis://broker:6379/0", "", "redis://broker:6379/0"),
        ("amqp://guest:guest@rabbit:5672//", "", ""),
        ("amqp://guest:guest@rabbit:5672//", "redis://counts:6379/1", "redis://counts:6379/1"),
        ("redis://broker:6379/0", "redis://counts:6379/1", "redis://counts:6379/1"),
    ],
)
def test_the_shared_counts_live_in_redis_beside_any_broker(
    broker_url: str, redis_url: str, shared: str
) -> None:
    settings = Settings(_env_file=None, broker_url=broker_url, redis_url=redis_url)
    assert settings.shared_redis_url == shared
    assert settings.shared_counter_uri == (shared or "memory://")
