"""`nibble pinot apply` against the real Pinot: idempotent, a dry run changes nothing, changes are shown.

The checked-in tables are shared with the rest of the suite, so the change-tracking and migration tests work
on a copy of one table under a name and topics of their own (a random prefix), dropped at the end.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka.admin import AdminClient

from connectors.pinot import Controller
from pipeline.analytics.rebuild import rebuild
from pipeline.analytics.tables import apply, desired_specs
from pipeline.config import Settings
from pipeline.contract.codec import Codec
from pipeline.contract.topics import ensure_stream_topics
from pipeline.resources import PINOT
from tests.support.polling import wait_until
from tests.support.services import Services


def test_the_checked_in_tables_apply_idempotently(services: Services) -> None:
    settings = services.settings()
    apply(settings)
    assert apply(settings) == []
    assert apply(settings, dry_run=True) == []


def test_the_cli_dry_run_reports_nothing_to_do_once_applied(services: Services) -> None:
    apply(services.settings())
    result = subprocess.run(
        [sys.executable, "-m", "pipeline", "pinot", "apply", "--dry-run"],
        env={**os.environ, **services.environ()},
        capture_output=True,
        text=True,
        check=True,
    )
    assert result.stdout.strip().splitlines()[-1] == "0 change(s) (dry run)"


class ScratchTable:
    """A copy of the checked-in `deliveries` table named `<prefix>deliveries`, on topics of its own."""

    def __init__(self, root: Path, prefix: str) -> None:
        self.name = f"{prefix}deliveries"
        self.dir = root
        (root / "schemas").mkdir()
        (root / "tables").mkdir()
        self.schema = json.loads((PINOT / "schemas" / "deliveries.json").read_text())
        self.table = json.loads((PINOT / "tables" / "deliveries.json").read_text())
        self.schema["schemaName"] = self.table["tableName"] = self.table["segmentsConfig"]["schemaName"] = self.name
        self.write()

    def write(self) -> None:
        (self.dir / "schemas" / f"{self.name}.json").write_text(json.dumps(self.schema))
        (self.dir / "tables" / f"{self.name}.json").write_text(json.dumps(self.table))

    @property
    def streams(self) -> dict[str, Any]:
        return self.table["tableIndexConfig"]["streamConfigs"]


@pytest.fixture
def scratch(services: Services, tmp_path: Path) -> Iterator[tuple[ScratchTable, Settings]]:
    prefix = f"t{uuid.uuid4().hex[:8]}_"
    settings = services.settings(topic_prefix=prefix)
    table = ScratchTable(tmp_path, prefix)
    controller = Controller(services.pinot_controller_url)
    try:
        yield table, settings
    finally:
        if controller.realtime_table(table.name) is not None:
            controller._call("DELETE", f"/tables/{table.name}", params={"type": "realtime"})
        controller._call("DELETE", f"/schemas/{table.name}")
        admin = AdminClient({"bootstrap.servers": services.kafka_bootstrap})  # alive until its futures are done
        for deleted in admin.delete_topics(Codec(prefix).topics).values():
            deleted.result(30)


def test_apply_creates_and_updates_only_what_differs(
    services: Services, scratch: tuple[ScratchTable, Settings]
) -> None:
    table, settings = scratch
    controller = Controller(services.pinot_controller_url)
    created = [f"schema {table.name}: create", f"table {table.name}: create"]

    assert apply(settings, dry_run=True, pinot_dir=table.dir) == created
    assert controller.schema(table.name) is None and controller.realtime_table(table.name) is None

    assert apply(settings, pinot_dir=table.dir) == created
    stored = controller.realtime_table(table.name)
    assert stored is not None
    streams = stored["tableIndexConfig"]["streamConfigs"]
    assert streams["stream.kafka.topic.name"] == settings.endpoints.topic_prefix + "nibble.deliveries"
    assert json.loads(streams["stream.kafka.decoder.prop.schema"])["name"] == "DeliveryEvent"
    assert apply(settings, pinot_dir=table.dir) == []
    assert apply(settings, dry_run=True, pinot_dir=table.dir) == []

    checked_in = table.streams["realtime.segment.flush.threshold.rows"]
    table.streams["realtime.segment.flush.threshold.rows"] = "100000"
    table.write()
    updated = [f"table {table.name}: update tableIndexConfig.streamConfigs.realtime.segment.flush.threshold.rows"]
    assert apply(settings, dry_run=True, pinot_dir=table.dir) == updated
    assert (
        controller.realtime_table(table.name)["tableIndexConfig"]["streamConfigs"][
            "realtime.segment.flush.threshold.rows"
        ]
        == checked_in
    )
    assert apply(settings, pinot_dir=table.dir) == updated
    assert apply(settings, pinot_dir=table.dir) == []


def test_a_table_whose_time_column_changed_is_left_to_a_rebuild_which_migrates_it(
    services: Services, db: str, tmp_path: Path
) -> None:
    """A stack created before the window holds order_ledger split on `placed_at`, realtime only: apply leaves it
    (its segments keep the old time ranges, and Pinot refuses an offline part split on another column) and says
    to rebuild it; the rebuild migrates it with its offline part, and apply then has nothing left to do."""
    prefix = f"t{uuid.uuid4().hex[:8]}_"
    base = services.settings(topic_prefix=prefix)
    # The rebuild audits its run (migration 0022) in a migrated database of the test's own.
    endpoints = base.endpoints.model_copy(update={"database_url": db})
    pinot = base.pinot.model_copy(update={"table_prefix": prefix})
    settings = base.model_copy(update={"pinot": pinot, "endpoints": endpoints})
    old, new = tmp_path / "old", tmp_path / "new"
    for root in (old, new):
        for part in ("schemas", "tables", "offline"):
            (root / part).mkdir(parents=True)
            if (PINOT / part / "order_ledger.json").exists() and not (root == old and part == "offline"):
                (root / part / "order_ledger.json").write_text((PINOT / part / "order_ledger.json").read_text())
    before = json.loads((old / "tables" / "order_ledger.json").read_text())
    before["segmentsConfig"]["timeColumnName"] = "placed_at"
    (old / "tables" / "order_ledger.json").write_text(json.dumps(before))
    name = f"{prefix}order_ledger"
    controller = Controller(services.pinot_controller_url)
    admin = AdminClient({"bootstrap.servers": services.kafka_bootstrap})
    topic = f"{prefix}nibble.order_ledger"
    try:
        # Pinot's controller reads the new topic's partitions at once; Kafka may not list it for a moment yet.
        ensure_stream_topics(settings.endpoints, Codec(prefix))
        wait_until(lambda: not admin.list_topics(topic, timeout=10).topics[topic].error, 30, what=f"Kafka: {topic}")
        apply(settings, pinot_dir=old)
        assert apply(settings, pinot_dir=new) == [
            f"table {name}: time column placed_at -> occurred_at needs `nibble pinot rebuild {name}`"
        ]
        assert controller.realtime_table(name)["segmentsConfig"]["timeColumnName"] == "placed_at"
        assert controller.offline_table(name) is None  # Pinot refuses parts split on different columns
        [spec] = desired_specs(settings, new)
        rebuild(settings, spec, timeout_s=300)
        assert controller.realtime_table(name)["segmentsConfig"]["timeColumnName"] == "occurred_at"
        assert apply(settings, pinot_dir=new) == []
    finally:
        for kind in ("REALTIME", "OFFLINE"):
            if controller.table(name, kind) is not None:
                controller.delete_table(name, kind)
        controller._call("DELETE", f"/schemas/{name}")
        for deleted in admin.delete_topics(Codec(prefix).topics).values():
            deleted.result(30)  # sent and done before this process may exit
