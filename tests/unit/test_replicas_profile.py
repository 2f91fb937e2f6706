"""The high-availability profile as rules (issue 19 item 3; docs/operations.md): NIBBLE_PINOT_REPLICAS=2 gives
every table part two replicas (and a rebalance when a stored part differs), the local stack a second server
with ports and data of its own, the broker routing around a server it cannot reach; a library query some server
did not answer is asked once more. Pure: no service."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pinotdb.exceptions
import pytest

from pipeline.analytics import tables
from pipeline.analytics.queries import run_query
from pipeline.config import PinotSettings, Settings, StackSettings, load_settings
from pipeline.devstack import configs
from pipeline.devstack.stack import LocalStack
from pipeline.errors import ConfigError, QueryFailed


def _settings(**pinot: Any) -> Settings:
    settings = load_settings()
    return settings.model_copy(update={"pinot": settings.pinot.model_copy(update=pinot)})


def test_the_default_is_one_replica_on_the_default_tenant() -> None:
    for spec in tables.desired_specs(_settings()):
        assert spec.table["segmentsConfig"]["replicasPerPartition"] == "1"
        assert "server" not in spec.table["tenants"]
        assert tables.placement(spec.table) == "1 on DefaultTenant"


def test_two_replicas_reach_every_part_of_every_table() -> None:
    specs = tables.desired_specs(_settings(replicas=2, server_tenant="nibble_ha"))
    assert any(spec.offline is not None for spec in specs)
    for spec in specs:
        assert spec.table["segmentsConfig"]["replicasPerPartition"] == "2"
        assert tables.placement(spec.table) == "2 on nibble_ha"
        if spec.offline is not None:
            assert spec.offline["segmentsConfig"]["replication"] == "2"
            assert tables.placement(spec.offline) == "2 on nibble_ha"


@pytest.mark.parametrize("value", ["0", "3", "two"])
def test_replicas_beyond_the_profile_are_refused(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("NIBBLE_PINOT_REPLICAS", value)
    with pytest.raises(ConfigError, match="NIBBLE_PINOT_REPLICAS"):
        load_settings()


class Controller:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []

    def put_table(self, config: dict[str, Any], exists: bool) -> None:
        self.calls.append(("put", config["tableName"]))

    def rebalance(self, name_with_type: str) -> None:
        self.calls.append(("rebalance", name_with_type))


def _stored(replicas: str) -> dict[str, Any]:
    return {"tableName": "orders_REALTIME", "segmentsConfig": {"replicasPerPartition": replicas}, "tenants": {}}


def test_a_part_whose_replicas_change_is_rebalanced() -> None:
    controller, changes = Controller(), []
    desired = {"tableName": "orders", "segmentsConfig": {"replicasPerPartition": "2"}, "tenants": {}}
    tables._put_part(controller, changes, "REALTIME", "orders", desired, _stored("1"), dry_run=False)  # type: ignore[arg-type]
    assert controller.calls == [("put", "orders"), ("rebalance", "orders_REALTIME")]
    assert changes[-1] == "table orders: rebalance REALTIME from 1 on DefaultTenant to 2 on DefaultTenant"
    controller.calls.clear()
    tables._put_part(controller, [], "REALTIME", "orders", desired, _stored("2"), dry_run=False)  # type: ignore[arg-type]
    assert controller.calls == []


def test_the_second_server_is_a_service_of_the_profile_only(tmp_path: Path) -> None:
    stack = StackSettings(state_dir=tmp_path)
    single = LocalStack(Settings(stack=stack, endpoints=load_settings().endpoints, relay=load_settings().relay))
    assert "pinot-server-2" not in single.by_name
    profile = Settings(
        stack=stack, endpoints=load_settings().endpoints, relay=load_settings().relay, pinot=PinotSettings(replicas=2)
    )
    second = LocalStack(profile).service("pinot-server-2")
    assert list(second.ports.values()) == [8198, 8197]


def test_the_two_servers_have_ports_and_data_of_their_own(tmp_path: Path) -> None:
    stack = StackSettings()
    first = configs.pinot_config("pinot-server", stack, tmp_path)
    second = configs.pinot_config("pinot-server-2", stack, tmp_path)
    differ = {key for key in first if first[key] != second[key]}
    assert differ == {
        "pinot.server.netty.port",
        "pinot.server.adminapi.access.protocols.http.port",
        "pinot.server.instance.dataDir",
        "pinot.server.instance.segmentTarDir",
    }
    assert second["pinot.server.instance.dataDir"] == tmp_path / "server-2" / "data"
    broker = configs.pinot_config("pinot-broker", stack, tmp_path)
    assert broker["pinot.broker.failure.detector.type"] == "CONNECTION"


def test_only_a_replica_waits_for_its_consumption_to_catch_up_before_it_answers(tmp_path: Path) -> None:
    checker = "pinot.server.starter.enableRealtimeOffsetBasedConsumptionStatusChecker"
    assert checker not in configs.pinot_config("pinot-server", StackSettings(), tmp_path)
    assert configs.pinot_config("pinot-server", StackSettings(), tmp_path, replicas=2)[checker] == "true"


class PartialCursor:
    """pinotdb's cursor after answers from `responded` of 2 servers: it raises, keeping the broker's counts."""

    def __init__(self, responded: list[int]) -> None:
        self.responded, self.tries = responded, 0
        self.description = [("city",), ("status",), ("orders",)]
        self.timeUsedMs = 1
        self.query_stats: dict[str, int] = {}
        self.raw_query_response = {"response": {"exceptions": [{"errorCode": 427, "message": "not responded"}]}}

    def execute(self, sql: str, params: dict[str, Any]) -> None:
        responded = self.responded[self.tries]
        self.tries += 1
        self.query_stats = {"numServersQueried": 2, "numServersResponded": responded}
        if responded < 2:
            raise pinotdb.exceptions.DatabaseError("Query timed out: Out of 2, only 1 responded")

    def fetchall(self) -> list[list[Any]]:
        return [["Berlin", "placed", 3]]


def test_an_answer_some_server_missed_is_asked_once_more() -> None:
    cursor = PartialCursor([1, 2])
    assert run_query(cursor, "active_orders").rows == [["Berlin", "placed", 3]]
    assert cursor.tries == 2


def test_a_second_partial_answer_fails_the_query() -> None:
    cursor = PartialCursor([1, 1, 2])
    with pytest.raises(QueryFailed):
        run_query(cursor, "active_orders", settings=_settings())
    assert cursor.tries == 2
