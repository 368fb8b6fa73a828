"""The one typed settings object, read from the environment and `.env`.

Every component takes its configuration from here; nothing else in the project reads
`os.environ`. Field names map to upper-case environment variables (`kafka_brokers` is
`KAFKA_BROKERS`). The same settings drive the clients and the native stack (`make up`): the
broker, search and Redis addresses are where the clients connect *and* where the native
services bind.

Two classes in one module: `Settings`, what the pipeline's processes run with, and
`StackSettings`, the same plus the native stack's own settings (`make up` alone reads those).
Every setting, its default, its bounds and its description stay in this one place, which
`docs/configuration.md` and `.env` are checked against.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from datetime import date
from functools import lru_cache
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

_HOST_PORT = re.compile(r"^[A-Za-z0-9._-]+:\d{1,5}$")
_INDEX_PREFIX = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
_TOPIC_NAME = re.compile(r"^[A-Za-z0-9._-]{1,249}$")
_PLACEHOLDER_SECRETS = {"changeme", "changethis", "password", "admin", "secret"}


def split_host_port(address: str, default_port: int) -> tuple[str, int]:
    """Split `host:port` (or a URL) into its host and port."""
    parsed = urlsplit(address if "//" in address else f"//{address}")
    return parsed.hostname or "127.0.0.1", parsed.port or default_port


class Settings(BaseSettings):
    """Configuration of every component, from environment variables and `.env`."""

    model_config = SettingsConfigDict(
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        case_sensitive=False,
    )

    app_env: Literal["local", "test", "production"] = Field(
        "local", description="Deployment kind; outside `local`, placeholder secrets are refused."
    )

    log_format: Literal["json", "text"] = Field(
        "json", description="Process logs: one JSON object per line, or plain text."
    )

    # Kafka
    kafka_brokers: str = Field(
        "127.0.0.1:9092", description="Comma-separated bootstrap servers (host:port)."
    )
    kafka_sensor_data_topic: str = Field(
        "iot_sensor_data", description="Topic the sensor readings are produced to."
    )
    kafka_dlq_topic: str = Field(
        "", description="Dead-letter topic; empty means `<KAFKA_SENSOR_DATA_TOPIC>.dlq`."
    )
    kafka_topics_file: Path = Field(
        Path("kafka/topics.json"), description="Topic definitions (partitions, retention)."
    )

    # Simulator
    data_generator_interval_seconds: float = Field(
        5.0, gt=0, description="Seconds between two rounds of readings in live mode."
    )
    data_generator_stations_per_district: int = Field(
        2, ge=1, le=50, description="Stations per district (7 sensors each; 14 districts)."
    )
    data_generator_heartbeat_file: Path | None = Field(
        None, description="File the simulator touches every round (container health); unset: none."
    )

    # Search engine
    search_engine: Literal["opensearch", "elasticsearch"] = Field(
        "opensearch", description="Which engine adapter to use."
    )
    search_url: str = Field("http://127.0.0.1:9200", description="Search engine HTTP endpoint.")
    search_username: str = Field("", description="Search user; empty for no authentication.")
    search_password: SecretStr = Field(
        SecretStr(""), description="Search password; never commit a real one."
    )
    search_writer_password: SecretStr = Field(
        SecretStr(""),
        description="Container setup job only: password it gives the search user `iot_writer`.",
    )
    search_reader_password: SecretStr = Field(
        SecretStr(""),
        description="Container setup job only: password it gives the search user `iot_reader`.",
    )
    search_api_password: SecretStr = Field(
        SecretStr(""),
        description="Container setup job only: password it gives the search user `iot_api`.",
    )
    search_index_prefix: str = Field(
        "iot", description="Prefix of every index and template the pipeline creates."
    )
    search_templates_dir: Path = Field(
        Path("elasticsearch"), description="Folder of the index templates (JSON)."
    )

    # Redis (Celery broker)
    redis_url: str = Field("redis://127.0.0.1:6379/0", description="Redis URL (Celery broker).")

    # Processing
    sensor_sample_interval_seconds: float = Field(
        5.0,
        gt=0,
        description="Expected seconds between readings of a sensor whose interval is neither "
        "declared nor learned yet (completeness).",
    )
    allowed_lateness_hours: float = Field(
        0.0,
        ge=0,
        description="Readings more than this behind their sensor's newest are flagged "
        "`too_late`; 0 (the default) sets no limit: late data is data, and updates exactly its "
        "windows.",
    )

    event_time_earliest: date = Field(
        date(2000, 1, 1),
        description="Earliest plausible event time (UTC day); earlier ones are dead letters.",
    )
    event_time_max_ahead_hours: float = Field(
        24.0,
        gt=0,
        description="Event times further than this ahead of the record's Kafka time are "
        "dead letters (`time_out_of_range`); a few minutes ahead is flagged `future_timestamp`.",
    )

    retention_days: int = Field(
        30, ge=1, description="Days of raw readings kept (whole daily indices are deleted)."
    )
    aggregate_retention_days_1m: int = Field(
        30, ge=1, description="Days of 1-minute aggregates kept (daily indices)."
    )
    airflow_history_days: int = Field(
        14,
        ge=1,
        description="Days of Airflow history (metadata DB rows, task log files) kept by the "
        "daily `iot_housekeeping` DAG.",
    )
    aggregate_retention_days_1h: int = Field(
        366, ge=1, description="Days of 1-hour aggregates kept (whole monthly indices)."
    )
    aggregate_retention_days_1d: int = Field(
        3660, ge=1, description="Days of 1-day aggregates kept (whole yearly indices)."
    )

    # Celery worker
    worker_concurrency: int = Field(
        default_factory=lambda: max(1, min(4, os.cpu_count() or 1)),
        ge=1,
        le=64,
        description="Processes of the native Celery worker (default: the CPU count, at most 4).",
    )
    worker_task_time_limit_seconds: int = Field(
        600, ge=30, description="Hard time limit of one processing task."
    )

    # Orchestration (Airflow)
    etl_schedule: str = Field(
        "* * * * *",
        description="When `iot_sensor_etl` runs: a cron expression or preset (`@hourly`).",
    )
    etl_consumer_group: str = Field(
        "iot-etl", description="Kafka consumer group whose offsets the DAG commits."
    )
    etl_max_records_per_partition: int = Field(
        1_000_000,
        ge=1,
        description="Cap of the records one run plans per partition (split into ranges of "
        "`ETL_RANGE_RECORDS`).",
    )
    etl_range_records: int = Field(
        50_000, ge=1, description="Records per range task (a partition's ranges run in order)."
    )
    etl_run_budget_seconds: float = Field(
        120.0,
        gt=0,
        description="A run starts no new range after this long; what it did is committed and "
        "the rest is left to the next run.",
    )
    etl_catch_up_min_lag: int = Field(
        5_000,
        ge=1,
        description="A run that ends with at least this lag triggers the next run at once "
        "(catch-up) instead of waiting for the schedule.",
    )
    etl_max_bytes_per_range: int = Field(
        64 * 1024 * 1024,
        ge=1024 * 1024,
        description="Cap of the record bytes one range task holds; a larger range is cut short "
        "and the rest left to the next run.",
    )
    etl_quarantine_after_failures: int = Field(
        3,
        ge=1,
        description="Failed attempts after which a range is narrowed to the records that "
        "fail and those are quarantined (dead-lettered as `range_failed`) so that its "
        "partition moves on.",
    )
    etl_stall_seconds: int = Field(
        300,
        ge=10,
        description="A partition with lag whose last commit is older than this is stalled "
        "(`make status`, `/health/pipeline`, `/pipeline/status`).",
    )
    worker_max_deliveries: int = Field(
        3,
        ge=1,
        description="Times a range task may be started (redelivered after its worker died) "
        "before it fails for good and counts as a failed attempt.",
    )
    fault_injection_marker: str = Field(
        "",
        max_length=200,
        description="Tests and drills only: a range task fails while one of its records "
        "contains this text (empty: off).",
    )
    etl_task_timeout_seconds: int = Field(
        900, ge=30, description="How long the DAG waits for a batch's processing tasks."
    )
    airflow_port: int = Field(
        8080, ge=1, le=65535, description="Port of the native Airflow API server and web UI."
    )

    # REST API
    api_port: int = Field(8000, ge=1, le=65535, description="Port of the REST API.")
    api_key: SecretStr = Field(
        SecretStr(""),
        description="When set, every route but /health, /health/pipeline, /ready and the docs "
        "needs it in `X-API-Key`.",
    )
    api_cors_origins: str = Field(
        "", description="Comma-separated origins allowed by CORS; empty allows none."
    )
    api_max_limit: int = Field(1000, ge=1, le=10_000, description="Largest page size (`limit`).")
    api_max_body_bytes: int = Field(
        65_536,
        ge=1024,
        description="Largest request body; a larger one is answered 413 before anything reads "
        "it (the key check included).",
    )
    api_allowed_hosts: str = Field(
        "127.0.0.1,localhost",
        description="Comma-separated Host names the API answers to (others get 400); `*` "
        "allows any. Add the name users reach the API by behind a proxy.",
    )
    api_max_header_bytes: int = Field(
        16_384,
        ge=4096,
        description="Largest request head (request line and headers); a larger one is "
        "refused before it is parsed.",
    )
    api_header_timeout_seconds: float = Field(
        10.0,
        gt=0,
        description="A connection that has not sent a complete request head this long after "
        "it opened (or after its last response) is closed.",
    )
    api_limit_concurrency: int = Field(
        1000,
        ge=10,
        description="Requests the API serves at once (streams included); beyond, 503 with "
        "Retry-After. Idle connections do not count (they close when their head is overdue).",
    )
    api_live_enabled: bool = Field(
        True,
        description="Whether the API runs the live path (one Kafka consumer from the topic's "
        "end and one Redis subscription per process) that feeds /stream/readings.",
    )
    api_stream_max_clients: int = Field(
        200, ge=1, description="SSE clients one API process serves; beyond, 429 with Retry-After."
    )
    api_stream_max_seconds: float = Field(
        3600.0, gt=0, description="A stream ends after this long (the client reconnects)."
    )
    api_stream_send_timeout_seconds: float = Field(
        30.0,
        gt=0,
        description="A stream whose client has not taken one write for this long is closed "
        "(its slot freed).",
    )
    api_stream_heartbeat_seconds: float = Field(
        15.0, gt=0, description="A quiet stream sends a keep-alive comment this often."
    )
    api_stream_buffer: int = Field(
        50_000, ge=100, description="Recent live events kept for resuming with Last-Event-ID."
    )
    api_stream_idle_seconds: float = Field(
        60.0,
        ge=0,
        description="With no SSE client for this long, the live hub stops cleaning and "
        "buffering upstream readings (a stream resumed later gets `event: gap`); 0: never.",
    )
    api_stream_client_queue: int = Field(
        10_000,
        ge=10,
        description="Events waiting for one client; a client that falls this far behind is "
        "disconnected and resumes from its last id.",
    )
    api_status_cache_seconds: float = Field(
        2.0,
        ge=0,
        description="How long an API process reuses the Kafka positions behind "
        "/pipeline/status, /health/pipeline and /metrics.",
    )
    live_publish: bool = Field(
        True,
        description="Whether workers publish each stored slice of readings on the Redis "
        "channel `<SEARCH_INDEX_PREFIX>:live` (the durable half of the live stream).",
    )
    sensor_offline_after_seconds: float = Field(
        60.0, gt=0, description="A sensor not heard from for this long is `offline`."
    )

    @field_validator("kafka_brokers")
    @classmethod
    def _check_brokers(cls, value: str) -> str:
        brokers = [b.strip() for b in value.split(",") if b.strip()]
        bad = [b for b in brokers if not _HOST_PORT.match(b)]
        if not brokers or bad:
            raise ValueError(
                f"KAFKA_BROKERS must be a comma-separated list of host:port, got {value!r}"
            )
        return ",".join(brokers)

    @field_validator("kafka_sensor_data_topic", "kafka_dlq_topic")
    @classmethod
    def _check_topic(cls, value: str) -> str:
        if value and not _TOPIC_NAME.match(value):
            raise ValueError(f"invalid Kafka topic name {value!r}: use letters, digits, . _ -")
        return value

    @field_validator("etl_consumer_group")
    @classmethod
    def _check_group(cls, value: str) -> str:
        if not _TOPIC_NAME.match(value):
            raise ValueError(f"invalid consumer group {value!r}: use letters, digits, . _ -")
        return value

    @field_validator("search_index_prefix")
    @classmethod
    def _check_prefix(cls, value: str) -> str:
        if not _INDEX_PREFIX.match(value):
            raise ValueError(
                f"SEARCH_INDEX_PREFIX {value!r} must be lower-case letters, digits, _ or -"
            )
        return value

    @field_validator("search_url", "redis_url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if not parts.scheme or not parts.hostname:
            raise ValueError(f"{value!r} is not a URL (expected scheme://host:port)")
        return value.rstrip("/")

    @model_validator(mode="after")
    def _refuse_placeholder_secrets(self) -> Settings:
        for name, secret in (("SEARCH_PASSWORD", self.search_password), ("API_KEY", self.api_key)):
            value = secret.get_secret_value()
            if self.app_env != "local" and value.lower() in _PLACEHOLDER_SECRETS:
                raise ValueError(
                    f"{name} is a placeholder; set a real secret when APP_ENV={self.app_env}"
                )
        return self

    @model_validator(mode="after")
    def _coarser_aggregates_live_longer(self) -> Settings:
        kept = (
            self.aggregate_retention_days_1m,
            self.aggregate_retention_days_1h,
            self.aggregate_retention_days_1d,
        )
        if list(kept) != sorted(kept):
            raise ValueError(
                "AGGREGATE_RETENTION_DAYS_1M <= _1H <= _1D is required (coarser windows are "
                f"merged from finer ones), got {kept}"
            )
        return self

    @property
    def aggregate_retention_days(self) -> dict[str, int]:
        """Days kept per aggregate resolution."""
        return {
            "1m": self.aggregate_retention_days_1m,
            "1h": self.aggregate_retention_days_1h,
            "1d": self.aggregate_retention_days_1d,
        }

    @property
    def recompute_horizon_days(self) -> int:
        """How far back (in days, today included) a reading may still update its windows:
        while both its raw readings and its 1-minute windows are kept. Older readings are
        dead-lettered as `beyond_retention`, so partial data never rewrites kept windows."""
        return min(self.retention_days, self.aggregate_retention_days_1m)

    @property
    def dead_letter_topic(self) -> str:
        """The dead-letter topic: explicit, or derived from the data topic."""
        return self.kafka_dlq_topic or f"{self.kafka_sensor_data_topic}.dlq"

    @property
    def kafka_bootstrap(self) -> tuple[str, int]:
        """Host and port of the first bootstrap server (where the native broker listens)."""
        return split_host_port(self.kafka_brokers.split(",")[0], 9092)

    @property
    def search_address(self) -> tuple[str, int]:
        """Host and port of the search endpoint."""
        return split_host_port(self.search_url, 9200)

    @property
    def redis_address(self) -> tuple[str, int]:
        """Host and port of Redis."""
        return split_host_port(self.redis_url, 6379)


class StackSettings(Settings):
    """The runtime settings plus those of the native stack alone (`make up`, `make status`,
    the benches that read its files): which services it starts, where it keeps their files,
    their memory. No pipeline process reads these; the same environment and `.env` set them.
    """

    kafka_controller_port: int = Field(
        9093, ge=1, le=65535, description="KRaft controller port of the native broker."
    )
    data_generator_enabled: bool = Field(
        True, description="Whether `make up` runs the simulator in live mode."
    )
    airflow_enabled: bool = Field(
        True, description="Whether `make up` starts Airflow (scheduler, UI, dag-processor...)."
    )
    api_enabled: bool = Field(True, description="Whether `make up` starts the REST API.")
    stack_dir: Path = Field(
        Path(".stack"), description="Data, logs, jars and run files of the native stack."
    )
    stack_ready_timeout_seconds: float = Field(
        90.0, gt=0, description="How long `make up` waits for each service to become ready."
    )
    kafka_heap: str = Field("512m", description="JVM heap (-Xmx) of the native Kafka broker.")
    redis_maxmemory: str = Field(
        "256mb",
        pattern=r"^[1-9][0-9]*(kb|mb|gb)$",
        description="Memory cap of the native Redis (`maxmemory`, policy `noeviction`: a full "
        "Redis refuses writes instead of dropping queued tasks).",
    )
    opensearch_heap: str = Field("512m", description="JVM heap of the native OpenSearch node.")
    java_home: Path | None = Field(
        None, description="JDK used by the native stack; empty means `java` on PATH."
    )

    @field_validator("kafka_heap", "opensearch_heap")
    @classmethod
    def _check_heap(cls, value: str) -> str:
        if not re.fullmatch(r"\d+[kKmMgG]", value):
            raise ValueError(f"JVM heap {value!r} must look like 512m or 1g")
        return value.lower()


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once."""
    return Settings()


def child_environment(extra: Mapping[str, str]) -> dict[str, str]:
    """The environment of a child process: ours, plus or overridden by `extra`."""
    return {**os.environ, **extra}
