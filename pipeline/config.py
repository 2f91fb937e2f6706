"""Settings for every command, read from `NIBBLE_*` environment variables.

The defaults point at the embedded local stack (`nibble stack up`) on its standard ports.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from pipeline import PROJECT_ROOT


class ConfigError(Exception):
    """A setting is missing or invalid; the message names it."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="NIBBLE_", extra="ignore")

    state_dir: Path = PROJECT_ROOT / ".stack"

    # Local stack ports (the same as docker-compose.yml).
    postgres_port: int = Field(5432, ge=1, le=65535)
    kafka_port: int = Field(9092, ge=1, le=65535)
    kafka_controller_port: int = Field(9093, ge=1, le=65535)
    zookeeper_port: int = Field(2181, ge=1, le=65535)
    pinot_controller_port: int = Field(9000, ge=1, le=65535)
    pinot_broker_port: int = Field(8099, ge=1, le=65535)
    pinot_server_port: int = Field(8098, ge=1, le=65535)
    pinot_server_admin_port: int = Field(8097, ge=1, le=65535)
    pinot_server_grpc_port: int = Field(8090, ge=1, le=65535)

    # Where the pipeline connects; empty means "the local stack".
    database_url: str = ""
    kafka_bootstrap_servers: str = ""
    pinot_controller_url: str = ""
    pinot_broker_url: str = ""
    # The Kafka address as Pinot's servers reach it (in docker-compose.yml: kafka:29092); default: as we do.
    pinot_kafka_broker_list: str = ""

    # The relay.
    relay_outboxes: str = "order_service,driver_service,restaurant_service"
    relay_batch_size: int = Field(5000, ge=1, le=100_000)
    relay_poll_interval_s: float = Field(1.0, gt=0, le=60)
    relay_delivery_timeout_ms: int = Field(30_000, ge=1000)
    relay_max_message_bytes: int = Field(1_000_000, ge=1024)
    relay_metrics_port: int = Field(9464, ge=0, le=65535)  # 0: no metrics endpoint
    topic_prefix: str = ""  # prepended to every topic name; lets tests use topics of their own
    kafka_topic_partitions: int = Field(4, ge=1, le=1000)

    @field_validator("database_url")
    @classmethod
    def _postgres_scheme(cls, value: str) -> str:
        if value and not value.startswith(("postgresql://", "postgres://")):
            raise ValueError("must be a postgresql:// URL")
        return value

    @field_validator("pinot_controller_url", "pinot_broker_url")
    @classmethod
    def _http_scheme(cls, value: str) -> str:
        if value and not value.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL")
        return value.rstrip("/")

    @field_validator("relay_outboxes")
    @classmethod
    def _schema_names(cls, value: str) -> str:
        names = [name.strip() for name in value.split(",")]
        if not all(name.isidentifier() for name in names):
            raise ValueError("must be a comma-separated list of schema names")
        return ",".join(names)

    @property
    def outbox_schemas(self) -> list[str]:
        return self.relay_outboxes.split(",")

    @property
    def postgres_url(self) -> str:
        return self.database_url or f"postgresql://postgres:nibble@127.0.0.1:{self.postgres_port}/nibble"

    @property
    def kafka_bootstrap(self) -> str:
        return self.kafka_bootstrap_servers or f"127.0.0.1:{self.kafka_port}"

    @property
    def pinot_controller(self) -> str:
        return self.pinot_controller_url or f"http://127.0.0.1:{self.pinot_controller_port}"

    @property
    def pinot_kafka_brokers(self) -> str:
        return self.pinot_kafka_broker_list or self.kafka_bootstrap

    @property
    def pinot_broker(self) -> str:
        return self.pinot_broker_url or f"http://127.0.0.1:{self.pinot_broker_port}"


def load_settings() -> Settings:
    """Read the settings, turning pydantic's error into one that names each bad `NIBBLE_*` variable."""
    try:
        return Settings()
    except ValidationError as exc:
        problems = [
            f"NIBBLE_{'_'.join(str(part) for part in err['loc']).upper()}: {err['msg']}" for err in exc.errors()
        ]
        raise ConfigError("invalid configuration: " + "; ".join(problems)) from None
