"""Settings for every command, read from `NIBBLE_*` environment variables, grouped by concern.

- `settings.stack`: the local stack's state dir and ports (the same as docker-compose.yml);
- `settings.endpoints`: where the pipeline connects; each URL left empty points at the local stack;
- `settings.relay`: the relay daemon (`NIBBLE_RELAY_*`).
- `settings.pinot`: Pinot's realtime window, the minion's history moves and the replicas (`NIBBLE_PINOT_*`).
"""

from __future__ import annotations

import getpass
import os
from pathlib import Path
from typing import Self
from urllib.parse import quote, urlsplit, urlunsplit

from pydantic import BaseModel, Field, ValidationError, ValidationInfo, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from pipeline.contract import catalog
from pipeline.errors import ConfigError


def _default_state_dir() -> Path:
    """`.stack/` of the checkout the package runs from, else of the working directory (an installed package)."""
    checkout = Path(__file__).resolve().parents[1]
    return (checkout if (checkout / "pyproject.toml").exists() else Path.cwd()) / ".stack"


class StackSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="NIBBLE_", extra="ignore")

    state_dir: Path = Field(default_factory=_default_state_dir)
    postgres_port: int = Field(5432, ge=1, le=65535)
    kafka_port: int = Field(9092, ge=1, le=65535)
    kafka_controller_port: int = Field(9093, ge=1, le=65535)
    zookeeper_port: int = Field(2181, ge=1, le=65535)
    pinot_controller_port: int = Field(9000, ge=1, le=65535)
    pinot_broker_port: int = Field(8099, ge=1, le=65535)
    pinot_server_port: int = Field(8098, ge=1, le=65535)
    pinot_server_admin_port: int = Field(8097, ge=1, le=65535)
    pinot_server_grpc_port: int = Field(8090, ge=1, le=65535)
    # The second Pinot server of the high-availability profile (NIBBLE_PINOT_REPLICAS=2; docs/operations.md).
    pinot_server_2_port: int = Field(8198, ge=1, le=65535)
    pinot_server_2_admin_port: int = Field(8197, ge=1, le=65535)
    pinot_minion_port: int = Field(9514, ge=1, le=65535)
    redis_port: int = Field(6379, ge=1, le=65535)
    superset_port: int = Field(8088, ge=1, le=65535)
    schema_registry_port: int = Field(8081, ge=1, le=65535)
    # Its health and metrics; Apicurio's default (9000) is the Pinot controller's port.
    schema_registry_management_port: int = Field(9081, ge=1, le=65535)


class Endpoints(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="NIBBLE_", extra="ignore")

    database_url: str = ""
    kafka_bootstrap_servers: str = ""
    pinot_controller_url: str = ""
    pinot_broker_url: str = ""
    # A library query that takes longer is cancelled by Pinot and reported as a timeout.
    pinot_query_timeout_ms: int = Field(10_000, ge=1)
    # The Kafka address as Pinot's servers reach it (in docker-compose.yml: kafka:29092); default: as we do.
    pinot_kafka_broker_list: str = ""
    topic_prefix: str = ""  # prepended to every topic name; lets tests use topics of their own
    kafka_topic_partitions: int = Field(4, ge=1, le=1000)
    superset_url: str = ""
    superset_admin_password: str = ""  # default: the one the local stack generated (mode 0600 in its state dir)
    # Pinot as Superset reaches it (in docker-compose.yml: pinot-broker:8099); default: as we do.
    superset_pinot_uri: str = ""
    # Every event stays in Kafka at least this long; older ones are compacted to the newest per aggregate.
    kafka_history_retention_hours: int = Field(168, ge=1)
    # `nibble verify --watch` serves its gauges here (0: no endpoint); 0.0.0.0 for a Prometheus elsewhere.
    verify_metrics_port: int = Field(9474, ge=0, le=65535)
    verify_metrics_host: str = "127.0.0.1"
    # The schema registry's Confluent-compatible API (Apicurio: http://HOST:PORT/apis/ccompat/v7).
    schema_registry_url: str = ""
    # The registry as Pinot's servers reach it (in docker-compose.yml: schema-registry:8081); default: as we do.
    pinot_schema_registry_url: str = ""

    @field_validator("database_url")
    @classmethod
    def _postgres_scheme(cls, value: str) -> str:
        if value and not value.startswith(("postgresql://", "postgres://")):
            raise ValueError("must be a postgresql:// URL")
        return value

    @field_validator(
        "pinot_controller_url", "pinot_broker_url", "superset_url", "schema_registry_url", "pinot_schema_registry_url"
    )
    @classmethod
    def _http_scheme(cls, value: str) -> str:
        if value and not value.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL")
        return value.rstrip("/")

    @property
    def topic_config(self) -> dict[str, str]:
        """Every topic's Kafka configs: the state of each aggregate kept forever, its history for a while."""
        return {
            "cleanup.policy": "compact",
            "min.compaction.lag.ms": str(self.kafka_history_retention_hours * 3_600_000),
        }

    def defaults_from(self, stack: StackSettings) -> Self:
        """Fill every endpoint left empty with the local stack's address."""
        return self.model_copy(
            update={
                "database_url": self.database_url
                or f"postgresql://postgres:nibble@127.0.0.1:{stack.postgres_port}/nibble",
                "kafka_bootstrap_servers": self.kafka_bootstrap_servers or f"127.0.0.1:{stack.kafka_port}",
                "pinot_controller_url": self.pinot_controller_url or f"http://127.0.0.1:{stack.pinot_controller_port}",
                "pinot_broker_url": self.pinot_broker_url or f"http://127.0.0.1:{stack.pinot_broker_port}",
                "superset_url": self.superset_url or f"http://127.0.0.1:{stack.superset_port}",
                "schema_registry_url": self.schema_registry_url
                or f"http://127.0.0.1:{stack.schema_registry_port}/apis/ccompat/v7",
                "pinot_schema_registry_url": self.pinot_schema_registry_url
                or self.schema_registry_url
                or f"http://127.0.0.1:{stack.schema_registry_port}/apis/ccompat/v7",
                "pinot_kafka_broker_list": self.pinot_kafka_broker_list
                or self.kafka_bootstrap_servers
                or f"127.0.0.1:{stack.kafka_port}",
            }
        )


SPAN_UNITS = {"d": 86_400, "h": 3_600, "m": 60, "s": 1}
# Pinot 0.11's broker puts the time boundary of a hybrid table one hour before the newest offline row (our
# offline tables push HOURLY): the realtime part must still hold that hour.
BOUNDARY_OFFSET_S = 3_600


def span_seconds(text: str) -> int:
    """'3d', '12h', '30m' or '10s' (Pinot's period format, one unit) in seconds."""
    if len(text) < 2 or text[-1] not in SPAN_UNITS or not text[:-1].isdigit() or int(text[:-1]) <= 0:
        raise ValueError(f"{text!r} is not a span like 3d, 12h, 30m or 10s")
    return int(text[:-1]) * SPAN_UNITS[text[-1]]


def schedule_cron(text: str) -> str:
    """A span as the Quartz cron expression that fires every span, on the clock ('10m' -> '0 0/10 * * * ?'):
    the span must divide a minute, an hour or a day evenly."""
    seconds = span_seconds(text)
    if seconds < 60 and 60 % seconds == 0:
        return f"0/{seconds} * * * * ?"
    if seconds < 3_600 and seconds % 60 == 0 and 3_600 % seconds == 0:
        return f"0 0/{seconds // 60} * * * ?"
    if seconds < 86_400 and seconds % 3_600 == 0 and 86_400 % seconds == 0:
        return f"0 0 0/{seconds // 3_600} * * ?"
    if seconds == 86_400:
        return "0 0 0 * * ?"
    raise ValueError(f"{text!r} does not divide a minute, an hour or a day evenly (e.g. 10s, 5m, 1h, 1d)")


class PinotSettings(BaseSettings):
    """How long Pinot's realtime tables keep their rows, and how the minion moves history to offline tables
    (docs/pinot.md, "Bounded by a window"). Spans are written like Pinot's periods: 3d, 12h, 30m, 10s."""

    model_config = SettingsConfigDict(env_prefix="NIBBLE_PINOT_", extra="ignore")

    # Prepended to every Pinot table and schema name: a test's own set of tables beside the stack's.
    table_prefix: str = Field("", pattern=r"^[a-z0-9_]*$")
    # The minion moves one bucket of event time per run, once the bucket ended this long ago (the buffer: how
    # late an event may reach Pinot and still be moved with its bucket).
    history_bucket: str = "1d"
    history_buffer: str = "12h"
    # How often the controller asks the minion to move the next bucket.
    minion_schedule: str = "10m"
    # Realtime segments whose newest event is older than this are deleted, their dedup and upsert keys with
    # them: the window bounds the server's heap and restart time.
    realtime_window: str = "3d"
    # Realtime segments commit at this many rows / this age; 0 and "" keep each table's own (pinot/tables/).
    segment_rows: int = Field(0, ge=0)
    segment_time: str = ""
    # Copies of every segment, each on a server of its own: 2 is the high-availability profile (the local stack
    # then starts a second server; docs/operations.md). The default stays 1: a 2-core machine runs one server.
    replicas: int = Field(1, ge=1, le=2)
    # The server tenant the tables are placed on ("": Pinot's DefaultTenant): a test's tables on servers of
    # its own tag.
    server_tenant: str = Field("", pattern=r"^[A-Za-z0-9_]*$")

    @field_validator("history_bucket", "history_buffer", "minion_schedule", "realtime_window")
    @classmethod
    def _span(cls, value: str) -> str:
        span_seconds(value)
        return value

    @field_validator("minion_schedule")
    @classmethod
    def _cron(cls, value: str) -> str:
        schedule_cron(value)
        return value

    @field_validator("segment_time")
    @classmethod
    def _optional_span(cls, value: str) -> str:
        if value:
            span_seconds(value)
        return value

    @field_validator("realtime_window")
    @classmethod
    def _window_outlives_the_boundary(cls, value: str, info: ValidationInfo) -> str:
        """A realtime row is queried until the minion's boundary passes it: the window must outlast a bucket,
        the buffer, the boundary's hour and one schedule (the fields above, validated first)."""
        spans = [info.data.get(name) for name in ("history_bucket", "history_buffer", "minion_schedule")]
        if None not in spans and span_seconds(value) < sum(map(span_seconds, spans)) + BOUNDARY_OFFSET_S:
            bucket, buffer, schedule = spans
            raise ValueError(
                f"{value} is shorter than the history bucket ({bucket}) + buffer ({buffer}) + minion schedule "
                f"({schedule}) + 1h: rows would leave the realtime table before the minion moves them"
            )
        return value


class RelaySettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="NIBBLE_RELAY_", extra="ignore")

    outboxes: str = Field(default_factory=lambda: ",".join(catalog.outboxes(catalog.load())))  # every stream's
    batch_size: int = Field(5000, ge=1, le=100_000)
    poll_interval_s: float = Field(1.0, gt=0, le=60)
    delivery_timeout_ms: int = Field(30_000, ge=1000)
    max_message_bytes: int = Field(1_000_000, ge=1024)
    metrics_port: int = Field(9464, ge=0, le=65535)  # 0: no metrics endpoint
    metrics_host: str = "127.0.0.1"  # the interface /metrics listens on; 0.0.0.0 for a Prometheus elsewhere

    @field_validator("outboxes")
    @classmethod
    def _schema_names(cls, value: str) -> str:
        names = [name.strip() for name in value.split(",")]
        if not all(name.isidentifier() for name in names):
            raise ValueError("must be a comma-separated list of schema names")
        return ",".join(names)

    @property
    def outbox_schemas(self) -> list[str]:
        return self.outboxes.split(",")


class Settings(BaseModel):
    stack: StackSettings
    endpoints: Endpoints
    relay: RelaySettings
    pinot: PinotSettings = Field(default_factory=PinotSettings)

    @model_validator(mode="after")
    def _endpoint_defaults(self) -> Settings:
        self.endpoints = self.endpoints.defaults_from(self.stack)
        return self


def load_settings() -> Settings:
    """Read the settings, turning pydantic's error into one that names each bad `NIBBLE_*` variable."""
    groups: dict[str, BaseSettings] = {}
    problems = []
    named = (("stack", StackSettings), ("endpoints", Endpoints), ("relay", RelaySettings), ("pinot", PinotSettings))
    for name, group in named:
        try:
            groups[name] = group()
        except ValidationError as exc:
            prefix = group.model_config["env_prefix"]
            problems += [f"{prefix}{'_'.join(map(str, e['loc'])).upper()}: {e['msg']}" for e in exc.errors()]
    if problems:
        raise ConfigError("invalid configuration: " + "; ".join(problems))
    return Settings(**groups)


# The logins of migrations 0008 and 0021 (docs/security.md): one per service, named like its schema, and one
# per tool. The superuser of NIBBLE_DATABASE_URL is for `nibble migrate` and the stack only.
SERVICE_LOGINS = ("user_service", "restaurant_service", "order_service", "driver_service", "admin_service")
TOOL_LOGINS = ("nibble_relay", "nibble_backfill", "nibble_dlq", "nibble_verify")


def password_variable(role: str) -> str:
    """Where a login's password may be given: NIBBLE_RELAY_PASSWORD, NIBBLE_ORDER_SERVICE_PASSWORD, ..."""
    return f"NIBBLE_{role.removeprefix('nibble_').upper()}_PASSWORD"


def password_file(state_dir: Path, role: str) -> Path:
    """Where the local stack keeps the password it generated for `role` (mode 0600)."""
    return state_dir.resolve() / "secrets" / f"{role}.password"


def login_url(database_url: str, role: str) -> str:
    """`database_url` (the superuser's) as the login `role`, with its password from NIBBLE_<ROLE>_PASSWORD
    (docker-compose.yml's .env, a secret store), else from the local stack's file, else none."""
    password = os.environ.get(password_variable(role))
    if password is None:
        path = password_file(StackSettings().state_dir, role)
        password = path.read_text().strip() if path.exists() else ""
    parts = urlsplit(database_url)
    user = quote(role, safe="") + (f":{quote(password, safe='')}" if password else "")
    return urlunsplit(parts._replace(netloc=f"{user}@{parts.netloc.rpartition('@')[2]}"))


def data_key_path() -> Path:
    """The data key file (docs/security.md §8): NIBBLE_DATA_KEY_FILE, else the local stack's (mode 0600, generated
    on first use)."""
    configured = os.environ.get("NIBBLE_DATA_KEY_FILE")
    return Path(configured) if configured else StackSettings().state_dir.resolve() / "secrets" / "data.key"


def acting_user() -> str:
    """Who a `nibble` command acts for, as the audit records it (`nibble.actor`): NIBBLE_ACTOR, else the OS
    user."""
    return os.environ.get("NIBBLE_ACTOR") or getpass.getuser()
