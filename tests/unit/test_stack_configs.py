"""The local stack's rendered configuration (pipeline/devstack/configs.py): the settings' ports, and every
listener on 127.0.0.1 but the two Pinot 0.11 binds on every interface (docs/security.md)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.config import StackSettings
from pipeline.devstack import configs

ROLES = ["zookeeper", "pinot-controller", "pinot-broker", "pinot-server", "pinot-minion"]


@pytest.fixture
def stack() -> StackSettings:
    return StackSettings(pinot_broker_port=18099, kafka_port=19092, postgres_port=15432)


@pytest.mark.parametrize("role", ROLES)
def test_every_pinot_listener_is_on_loopback(stack: StackSettings, role: str, tmp_path: Path) -> None:
    config = configs.pinot_config(role, stack, tmp_path)
    hosts = {key: value for key, value in config.items() if key.endswith(("host", "hostname", "Address"))}
    assert hosts and set(hosts.values()) == {"127.0.0.1"}, hosts
    assert all(str(path).startswith(str(tmp_path)) for path in config.values() if isinstance(path, Path))


def test_the_settings_ports_reach_the_files(stack: StackSettings, tmp_path: Path) -> None:
    broker = configs.properties(configs.pinot_config("pinot-broker", stack, tmp_path))
    assert "pinot.broker.client.access.protocols.http.port=18099\n" in broker
    assert "19092" in configs.kafka_properties(stack, tmp_path / "data")
    assert configs.postgres_conf(stack, tmp_path).endswith(f"port = 15432\nunix_socket_directories = '{tmp_path}'\n")
    registry = configs.registry_properties(stack, tmp_path)
    assert registry["quarkus.http.host"] == registry["quarkus.management.host"] == "127.0.0.1"
    assert "WRITE_DELAY=0" in str(registry["apicurio.datasource.url"])  # a killed registry keeps its schemas
