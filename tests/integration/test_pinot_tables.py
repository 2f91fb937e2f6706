"""`nibble pinot apply` against the real Pinot: idempotent, a dry run changes nothing, changes are shown.

The checked-in tables are shared with the rest of the suite, so the change-tracking test works on a copy of
one table under a name and topics of its own (a random prefix), dropped at the end.
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
from pipeline.analytics.tables import apply
from pipeline.config import Settings
from pipeline.contract.codec import Codec
from pipeline.resources import PINOT
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
        AdminClient({"bootstrap.servers": services.kafka_bootstrap}).delete_topics(Codec(prefix).topics)


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

    table.streams["realtime.segment.flush.threshold.rows"] = "100000"
    table.write()
    updated = [f"table {table.name}: update tableIndexConfig.streamConfigs.realtime.segment.flush.threshold.rows"]
    assert apply(settings, dry_run=True, pinot_dir=table.dir) == updated
    assert controller.realtime_table(table.name)["tableIndexConfig"]["streamConfigs"][
        "realtime.segment.flush.threshold.rows"
    ] == ("500000")
    assert apply(settings, pinot_dir=table.dir) == updated
    assert apply(settings, pinot_dir=table.dir) == []
