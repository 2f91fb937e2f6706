"""`nibble dashboards apply | export` against the real Superset of the local stack, and Superset without Redis."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import yaml

from connectors.pinot import broker_connection
from connectors.superset import Superset
from pipeline.analytics import dashboards
from pipeline.config import Settings
from pipeline.devstack.stack import LocalStack
from pipeline.devstack.superset import login as superset_login
from pipeline.resources import DASHBOARDS
from tests.support.polling import wait_until
from tests.support.services import Services


@pytest.fixture
def settings(services: Services) -> Settings:
    return services.settings()


@pytest.fixture
def superset(settings: Settings) -> Iterator[Superset]:
    login = superset_login(settings)
    client = dashboards.connect(login)
    yield client
    dashboards.apply(settings, client, DASHBOARDS)  # whatever a test changed, the repository's state again


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """A copy of dashboards/ to change."""
    return Path(shutil.copytree(DASHBOARDS, tmp_path / "dashboards"))


def managed_state(superset: Superset) -> dict[str, dict[str, object]]:
    return {resource: dashboards.managed(superset, resource) for resource in dashboards.RESOURCES.values()}


def nibble(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "NIBBLE_STATE_DIR": str(settings.stack.state_dir)}
    return subprocess.run([sys.executable, "-m", "pipeline", *args], env=env, capture_output=True, text=True)


def test_apply_twice_changes_nothing_the_second_time(settings: Settings, superset: Superset) -> None:
    dashboards.apply(settings, superset, DASHBOARDS)
    before = managed_state(superset)
    assert dashboards.apply(settings, superset, DASHBOARDS) == []
    assert managed_state(superset) == before
    slugs = {a.content["slug"] for a in dashboards.load_bundle(DASHBOARDS) if a.kind == "dashboards"}
    assert {"orders_live", "deliveries", "restaurants"} <= slugs
    assert len(before["dashboard"]) == len(slugs) and len(before["chart"]) >= 12
    second = nibble(settings, "dashboards", "apply")
    assert second.returncode == 0, second.stderr
    assert second.stdout.startswith("0 change(s)")


def test_a_chart_deleted_from_the_folder_is_deleted_from_superset(
    settings: Settings, superset: Superset, folder: Path
) -> None:
    extra = yaml.safe_load((folder / "charts" / "funnel.yaml").read_text())
    extra |= {"uuid": str(uuid.uuid4()), "slice_name": "Funnel, a copy"}
    (folder / "charts" / "funnel_copy.yaml").write_text(yaml.safe_dump(extra))
    dashboards.apply(settings, superset, folder)
    assert extra["uuid"] in dashboards.managed(superset, "chart")

    (folder / "charts" / "funnel_copy.yaml").unlink()
    changes = dashboards.apply(settings, superset, folder)
    assert any(extra["uuid"] in change and change.startswith("deleted chart") for change in changes)
    assert extra["uuid"] not in dashboards.managed(superset, "chart")


@pytest.mark.parametrize(
    ("break_it", "message"),
    [
        (lambda chart: chart.pop("dataset_uuid"), "charts/funnel.yaml: dataset_uuid: missing"),
        (lambda chart: chart.update(dataset_uuid=str(uuid.uuid4())), "charts/funnel.yaml: dataset_uuid: no file"),
        (lambda chart: chart.update(uuid="not-a-uuid"), "charts/funnel.yaml: uuid:"),
    ],
)
def test_a_broken_asset_fails_naming_file_and_field_and_changes_nothing(
    settings: Settings, superset: Superset, folder: Path, break_it: object, message: str
) -> None:
    dashboards.apply(settings, superset, DASHBOARDS)
    before = managed_state(superset)
    chart_file = folder / "charts" / "funnel.yaml"
    chart = yaml.safe_load(chart_file.read_text())
    chart["slice_name"] = "Changed, but the folder is broken"
    break_it(chart)  # type: ignore[operator]
    chart_file.write_text(yaml.safe_dump(chart))
    result = nibble(settings, "dashboards", "apply", "--dir", str(folder))
    assert result.returncode != 0
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert managed_state(superset) == before


def test_invalid_yaml_is_reported_with_its_line(settings: Settings, folder: Path) -> None:
    (folder / "charts" / "funnel.yaml").write_text("slice_name: [unclosed\nviz_type: funnel\n")
    result = nibble(settings, "dashboards", "apply", "--dir", str(folder))
    assert result.returncode != 0
    assert "charts/funnel.yaml: line" in result.stderr and "not valid YAML" in result.stderr, result.stderr


def test_export_writes_a_ui_edit_back_into_the_folder(settings: Settings, superset: Superset, folder: Path) -> None:
    dashboards.apply(settings, superset, DASHBOARDS)
    dashboard_id = superset.dashboard_id("restaurants")
    superset._call("PUT", f"/api/v1/dashboard/{dashboard_id}", json={"dashboard_title": "Restaurants (edited)"})
    written = dashboards.export(superset, "restaurants", folder)
    assert "dashboards/dashboards/restaurants.yaml" in written
    assert yaml.safe_load((folder / "dashboards" / "restaurants.yaml").read_text())["dashboard_title"] == (
        "Restaurants (edited)"
    )
    # Only the edited field differs from the repository's file: the round trip is otherwise exact.
    for path in written:
        relative = path.split("/", 1)[1]
        exported = yaml.safe_load((folder / relative).read_text())
        original = yaml.safe_load((DASHBOARDS / relative).read_text())
        exported.pop("dashboard_title", None), original.pop("dashboard_title", None)
        assert exported == original, relative


def pinot_orders(services: Services) -> int:
    """The orders Pinot holds now, asked of the broker directly."""
    cursor = broker_connection(services.pinot_broker_url).cursor()
    cursor.execute("SELECT COUNT(*) FROM orders")
    return int(cursor.fetchall()[0][0])


def test_superset_answers_uncached_while_redis_is_down(
    services: Services, settings: Settings, superset: Superset
) -> None:
    dashboards.apply(settings, superset, DASHBOARDS)
    stack = LocalStack(settings)
    dataset = dashboards.managed(superset, "dataset")[
        next(a.uuid for a in dashboards.load_bundle(DASHBOARDS) if a.path.endswith("/orders.yaml"))
    ]
    query = {
        "datasource": {"id": dataset["id"], "type": "table"},
        "force": True,
        "queries": [{"columns": [], "metrics": ["orders"], "filters": [], "row_limit": 1}],
        "result_format": "json",
        "result_type": "full",
    }
    redis_pid = stack.pid("redis")
    assert redis_pid is not None
    stack.by_name["redis"].stop(redis_pid)
    try:
        assert requests.get(f"{superset.url}/health", timeout=10).status_code == 200
        # Other tests' orders may arrive meanwhile: Pinot's count before and after bracket Superset's answer.
        before = pinot_orders(services)
        result = superset._call("POST", "/api/v1/chart/data", json=query)["result"][0]
        after = pinot_orders(services)
        assert result["status"] == "success", result
        assert before <= result["data"][0]["orders"] <= after, (before, result["data"], after)
    finally:
        stack.up()
        wait_until(lambda: stack.by_name["redis"].healthy(), 30, what="Redis to be back")
