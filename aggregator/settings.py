"""The service's settings: one typed object, the only reader of environment variables.

Values come, highest priority first, from init arguments, `AGGREGATOR_*` environment variables,
a `.env` file in the working folder, the TOML file named by `AGGREGATOR_CONFIG_FILE` (default
`config/aggregator.toml`, optional), and the defaults below. The defaults need no server: a SQLite
file and Celery's filesystem transport in the data folder.
"""

from __future__ import annotations

import ipaddress
import os
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

ENV_PREFIX = "AGGREGATOR_"
DEFAULT_CONFIG_FILE = Path("config/aggregator.toml")
IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class Settings(BaseSettings):
    """Every knob of the service. Each field is documented in config/.env.example."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_file=".env", extra="ignore", validate_default=True
    )

    data_dir: Path = Field(Path("data"), description="Folder for the SQLite file and queues.")
    database_url: str = Field("", description="SQLAlchemy URL; empty = SQLite in data_dir.")
    broker_url: str = Field(
        "", description="Celery broker (Redis or RabbitMQ); empty = filesystem queue in data_dir."
    )
    redis_url: str = Field(
        "",
        description="Redis for the counts every process shares (request budgets per host, API"
        " rate limits, task statistics); empty = the broker if it is Redis, else each process"
        " counts alone.",
    )
    sources_file: Path = Field(Path("config/sources.toml"), description="Default source list.")

    fetch_allow_networks: Annotated[list[IpNetwork], NoDecode] = Field(
        default_factory=list, description="CIDRs the fetcher may reach despite being private."
    )
    fetch_connect_timeout: float = Field(10.0, gt=0)
    fetch_timeout: float = Field(30.0, gt=0)
    fetch_max_feed_bytes: int = Field(15 * 1024 * 1024, gt=0)
    fetch_max_page_bytes: int = Field(5 * 1024 * 1024, gt=0)
    fetch_max_redirects: int = Field(5, ge=0)
    user_agent: str = Field("news-aggregator/0.1")
    contact_url: str = Field("https://github.com/news-aggregator/news-aggregator")

    poll_interval_min_seconds: int = Field(15 * 60, gt=0)
    poll_interval_max_seconds: int = Field(24 * 3600, gt=0)
    poll_batch_size: int = Field(100, gt=0)
    max_entries_per_poll: int = Field(100, gt=0)
    poll_jitter: float = Field(0.25, ge=0, le=1, description="Random extra share of an interval.")
    poll_lease_seconds: int = Field(600, gt=0, description="A poll in flight longer is re-queued.")
    poll_defer_seconds: int = Field(
        60, gt=0, description="Delay of a poll its host has no budget for."
    )
    poll_max_backoff_seconds: int = Field(7 * 24 * 3600, gt=0)
    poll_dead_after_days: float = Field(30.0, gt=0)
    fetch_unconditional_seconds: int = Field(12 * 3600, gt=0)
    feed_move_confirmations: int = Field(3, ge=1)
    host_requests_per_minute: int = Field(30, gt=0)
    host_max_concurrent: int = Field(2, gt=0)
    robots_cache_seconds: int = Field(3600, gt=0)
    fetch_retries: int = Field(
        3, ge=0, description="Task retries of an article fetch on transient errors."
    )
    fetch_retry_max_wait_seconds: float = Field(
        1200.0,
        gt=0,
        description="The longest wait before a fetch is tried again, whatever a server's"
        " Retry-After asks. A worker holds a waiting retry unacknowledged: on Redis the"
        " visibility timeout follows this setting; on RabbitMQ, keep the server's"
        " consumer_timeout (30 minutes by default) above it.",
    )

    cluster_window_days: float = Field(365.0, gt=0)
    cluster_settle_seconds: float = Field(
        60.0,
        ge=0,
        description="An article is clustered this long after its fetch, so that the articles"
        " fetched around the same time reach the clusterer in publication order.",
    )
    cluster_max_wait_seconds: float = Field(
        600.0,
        ge=0,
        description="Clustering waits at most this long (from its discovery) for an article"
        " published earlier that is still being fetched.",
    )
    cluster_repair_window_hours: float = Field(
        72.0, gt=0, description="Story repair looks at stories active this recently."
    )
    cluster_repair_max_stories: int = Field(
        500, gt=0, description="Story repair looks at most at this many (latest) stories."
    )
    cluster_regroup_max_articles: int = Field(
        2000,
        ge=0,
        description="Story repair clusters again at most this many of the latest articles of"
        " the repair window, all at once (0: it does not regroup).",
    )

    log_format: Literal["json", "text"] = Field(
        "json", description="Worker and beat logs: one JSON object per line, or plain text."
    )
    log_level: str = Field("INFO", pattern=r"^(?i:debug|info|warning|error|critical)$")

    stalled_article_seconds: int = Field(
        1800, gt=0, description="An article this long without its next task gets it again."
    )

    retention_days: float = Field(
        90.0, gt=0, description="Articles and quiet stories older than this are purged."
    )
    purge_batch_size: int = Field(1000, gt=0, description="Articles (and stories) per purge batch.")

    api_host: str = Field("127.0.0.1")
    api_port: int = Field(8000, gt=0, lt=65536)
    api_keys: Annotated[list[SecretStr], NoDecode] = Field(
        default_factory=list, description="Keys that allow API writes and full text; none = off."
    )
    api_rate_limit: str = Field(
        "", description='Requests per client, e.g. "120/minute"; empty = no limit.'
    )
    api_metrics_public: bool = Field(False, description="Serve /metrics beyond loopback clients.")

    # The daily digest (aggregator/digest.py, delivery.py, mail.py).
    secret_key: SecretStr = Field(
        SecretStr(""), description="Signs unsubscribe and confirmation links; required to mail."
    )
    public_url: str = Field(
        "http://127.0.0.1:8000", description="Address of the API as readers reach it (links)."
    )
    smtp_host: str = Field("localhost")
    smtp_port: int = Field(25, gt=0, lt=65536)
    smtp_tls: Literal["none", "starttls", "ssl"] = Field("none")
    smtp_user: str = Field("")
    smtp_password: SecretStr = Field(SecretStr(""))
    smtp_ca_file: str = Field(
        "", description="PEM CA bundle that verifies the SMTP server; empty = the system store."
    )
    smtp_timeout: float = Field(30.0, gt=0, description="Seconds for connecting and each reply.")
    mail_from: str = Field("News digest <digest@localhost>")
    digest_min_stories: int = Field(3, ge=1, description="Fewer qualifying stories: skip the day.")
    digest_max_stories: int = Field(10, ge=1, description="Default maximum for new subscribers.")
    digest_window_hours: float = Field(24.0, gt=0, description="Story window without a digest.")
    digest_max_window_hours: float = Field(72.0, gt=0, description="Longest window since one.")
    digest_resend_min_new_outlets: int = Field(2, ge=1)
    digest_lease_seconds: int = Field(900, gt=0, description="A claimed send older is retried.")
    digest_send_attempts: int = Field(5, ge=1, description="Tries on transient SMTP errors.")
    digest_max_bounces: int = Field(3, ge=1, description="Bounces in a row that pause a reader.")
    signup_per_client_per_hour: int = Field(5, ge=1)
    signup_confirm_hours: float = Field(48.0, gt=0, description="Life of a confirmation link.")
    signup_resend_minutes: float = Field(10.0, ge=0, description="Least gap between two mails.")

    @field_validator("fetch_allow_networks", mode="before")
    @classmethod
    def _split_networks(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("api_keys", mode="before")
    @classmethod
    def _split_keys(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("api_rate_limit")
    @classmethod
    def _check_rate_limit(cls, value: str) -> str:
        from limits import parse

        if value.strip():
            parse(value)  # raises ValueError on a malformed limit
        return value.strip()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        config_file = Path(os.environ.get(f"{ENV_PREFIX}CONFIG_FILE", DEFAULT_CONFIG_FILE))
        toml = TomlConfigSettingsSource(settings_cls, toml_file=config_file)
        return init_settings, env_settings, dotenv_settings, toml, file_secret_settings

    @property
    def effective_database_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.data_dir / 'aggregator.db').resolve()}"

    @property
    def effective_broker_url(self) -> str:
        return self.broker_url or "filesystem://localhost/"

    @property
    def broker_is_redis(self) -> bool:
        return self.effective_broker_url.startswith(("redis://", "rediss://"))

    @property
    def broker_is_amqp(self) -> bool:
        return self.effective_broker_url.startswith(("amqp://", "amqps://", "pyamqp://"))

    @property
    def shared_redis_url(self) -> str:
        """The Redis where every process keeps the counts they share: ``redis_url``, else the
        broker if it is Redis; "" when there is none (each process then counts alone)."""
        if self.redis_url:
            return self.redis_url
        return self.effective_broker_url if self.broker_is_redis else ""

    @property
    def shared_counter_uri(self) -> str:
        """Storage (a `limits` URI) for counters every process must see: the shared Redis, or
        this process's memory without one (the server-less default)."""
        return self.shared_redis_url or "memory://"

    @property
    def queue_dir(self) -> Path:
        return self.data_dir / "queue"

    @property
    def user_agent_header(self) -> str:
        return f"{self.user_agent} (+{self.contact_url})"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's settings, read once."""
    return Settings()
