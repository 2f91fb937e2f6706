"""Settings for every command, read from `NIBBLE_*` environment variables, grouped by concern.

- `settings.stack`: the local stack's state dir and ports (the same as docker-compose.yml);
- `settings.endpoints`: where the pipeline connects; each URL left empty points at the local stack;
- `settings.relay`: the relay daemon (`NIBBLE_RELAY_*`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Self

from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

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
    redis_port: int = Field(6379, ge=1, le=65535)
    superset_port: int = Field(8088, ge=1, le=65535)


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

    @field_validator("database_url")
    @classmethod
    def _postgres_scheme(cls, value: str) -> str:
        if value and not value.startswith(("postgresql://", "postgres://")):
            raise ValueError("must be a postgresql:// URL")
        return value

    @field_validator("pinot_controller_url", "pinot_broker_url", "superset_url")
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
                "pinot_kafka_broker_list": self.pinot_kafka_broker_list
                or self.kafka_bootstrap_servers
                or f"127.0.0.1:{stack.kafka_port}",
            }
        )


class RelaySettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="NIBBLE_RELAY_", extra="ignore")

    outboxes: str = "order_service,driver_service,restaurant_service"
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

    @model_validator(mode="after")
    def _endpoint_defaults(self) -> Settings:
        self.endpoints = self.endpoints.defaults_from(self.stack)
        return self


def load_settings() -> Settings:
    """Read the settings, turning pydantic's error into one that names each bad `NIBBLE_*` variable."""
    groups: dict[str, BaseSettings] = {}
    problems = []
    for name, group in (("stack", StackSettings), ("endpoints", Endpoints), ("relay", RelaySettings)):
        try:
            groups[name] = group()
        except ValidationError as exc:
            prefix = group.model_config["env_prefix"]
            problems += [f"{prefix}{'_'.join(map(str, e['loc'])).upper()}: {e['msg']}" for e in exc.errors()]
    if problems:
        raise ConfigError("invalid configuration: " + "; ".join(problems))
    return Settings(**groups)
