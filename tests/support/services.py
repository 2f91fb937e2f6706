"""Back ends for the `services` fixture: the local stack, or testcontainers when Docker answers."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from urllib.parse import quote, urlsplit, urlunsplit

from pipeline.config import Settings, load_settings
from pipeline.devstack.postgres_cluster import relay_password
from pipeline.devstack.stack import LocalStack


@dataclass(frozen=True)
class Services:
    database_url: str  # superuser URL of the `nibble` database
    kafka_bootstrap: str
    pinot_controller_url: str
    pinot_broker_url: str
    relay_password: str = "nibble_relay"  # migration 0001's; the local stack generates its own

    @classmethod
    def from_settings(cls, settings: Settings) -> Services:
        e = settings.endpoints
        return cls(
            e.database_url,
            e.kafka_bootstrap_servers,
            e.pinot_controller_url,
            e.pinot_broker_url,
            relay_password(settings),
        )

    def database_url_for(self, database: str) -> str:
        parts = urlsplit(self.database_url)
        return urlunsplit(parts._replace(path=f"/{database}"))

    def relay_url_for(self, database: str) -> str:
        """The URL of `database` as the least-privileged `nibble_relay` role, which the relay runs as."""
        parts = urlsplit(self.database_url_for(database))
        netloc = f"nibble_relay:{quote(self.relay_password, safe='')}@{parts.hostname}:{parts.port}"
        return urlunsplit(parts._replace(netloc=netloc))

    def environ(self) -> dict[str, str]:
        """The NIBBLE_* variables that point a `nibble` subprocess at these services."""
        return {
            "NIBBLE_DATABASE_URL": self.database_url,
            "NIBBLE_KAFKA_BOOTSTRAP_SERVERS": self.kafka_bootstrap,
            "NIBBLE_PINOT_CONTROLLER_URL": self.pinot_controller_url,
            "NIBBLE_PINOT_BROKER_URL": self.pinot_broker_url,
        }

    def settings(self, topic_prefix: str = "") -> Settings:
        """Settings pointing at these services (what a `nibble` command run with `environ()` would read)."""
        base = load_settings()
        endpoints = base.endpoints.model_copy(
            update={
                "database_url": self.database_url,
                "kafka_bootstrap_servers": self.kafka_bootstrap,
                "pinot_kafka_broker_list": self.kafka_bootstrap,
                "pinot_controller_url": self.pinot_controller_url,
                "pinot_broker_url": self.pinot_broker_url,
                "topic_prefix": topic_prefix,
            }
        )
        return base.model_copy(update={"endpoints": endpoints})


def docker_available() -> bool:
    try:
        import docker

        docker.from_env().ping()
    except Exception:
        return False
    return True


@contextmanager
def start_services() -> Iterator[Services]:
    if docker_available() and os.environ.get("NIBBLE_TEST_BACKEND", "") != "local":
        from tests.support.containers import container_services

        with container_services() as running:
            yield running
    else:
        yield local_services()


def local_services() -> Services:
    """Bring up (idempotently) the embedded stack and point at it; raises if a service cannot start."""
    settings = load_settings()
    LocalStack(settings).up()
    return Services.from_settings(settings)
