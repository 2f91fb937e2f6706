"""dashboards/ as code: every asset is valid and every chart says which library query it means (no service)."""

from __future__ import annotations

import io
import shutil
import zipfile
from pathlib import Path

import pytest
import yaml

from pipeline.analytics.dashboards import MANAGED_BY, AssetError, bundle_zip, load_bundle, superset_login
from pipeline.analytics.queries import library
from pipeline.config import load_settings
from pipeline.errors import NibbleError
from pipeline.resources import DASHBOARDS


def test_the_folder_loads_and_every_object_is_managed() -> None:
    assets = load_bundle(DASHBOARDS)
    kinds = {kind: [a for a in assets if a.kind == kind] for kind in ("databases", "datasets", "charts", "dashboards")}
    assert len(kinds["databases"]) == 1 and len(kinds["dashboards"]) >= 3 and len(kinds["charts"]) >= 12
    for asset in kinds["charts"] + kinds["dashboards"]:
        assert asset.content["certified_by"] == MANAGED_BY, asset.path
    for asset in kinds["datasets"]:
        assert asset.content["extra"]["certification"]["certified_by"] == MANAGED_BY, asset.path
    for dashboard in kinds["dashboards"]:
        assert dashboard.content["metadata"]["refresh_frequency"] > 0, f"{dashboard.path}: not auto-refreshing"


def test_every_chart_means_the_library_query_of_its_name() -> None:
    queries = library()
    for chart in (a for a in load_bundle(DASHBOARDS) if a.kind == "charts"):
        name = Path(chart.path).stem
        assert name in queries, f"{chart.path}: no library query {name}.sql"
        assert f"{name}.sql" in chart.content["description"], chart.path


def test_epoch_millisecond_columns_are_temporal() -> None:
    for dataset in (a for a in load_bundle(DASHBOARDS) if a.kind == "datasets"):
        for column in dataset.content["columns"]:
            if column["column_name"].endswith("_at"):
                assert column["is_dttm"] and column["python_date_format"] == "epoch_ms", column["column_name"]


def test_the_bundle_points_every_database_at_the_given_uri() -> None:
    uri = "pinot+http://broker.example:8099/query/sql?controller=http://controller.example:9000/"
    with zipfile.ZipFile(io.BytesIO(bundle_zip(load_bundle(DASHBOARDS), uri))) as bundle:
        databases = [n for n in bundle.namelist() if n.startswith("bundle/databases/")]
        assert databases and all(yaml.safe_load(bundle.read(n))["sqlalchemy_uri"] == uri for n in databases)
        assert "bundle/metadata.yaml" in bundle.namelist()


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    return Path(shutil.copytree(DASHBOARDS, tmp_path / "dashboards"))


def _edit(path: Path, **changes: object) -> None:
    content = yaml.safe_load(path.read_text())
    for key, value in changes.items():
        if value is None:
            content.pop(key)
        else:
            content[key] = value
    path.write_text(yaml.safe_dump(content))


@pytest.mark.parametrize(
    ("file", "changes", "message"),
    [
        ("charts/funnel.yaml", {"viz_type": None}, "dashboards/charts/funnel.yaml: viz_type: missing"),
        ("charts/funnel.yaml", {"params": "text"}, "dashboards/charts/funnel.yaml: params: missing or not a dict"),
        ("datasets/Pinot/orders.yaml", {"database_uuid": "0b5e2cf4-3b4e-4d4c-9d3a-000000000000"}, "database_uuid"),
        ("dashboards/restaurants.yaml", {"slug": None}, "dashboards/dashboards/restaurants.yaml: slug: missing"),
    ],
)
def test_a_broken_file_is_named_with_its_field(folder: Path, file: str, changes: dict, message: str) -> None:
    _edit(folder / file, **changes)
    with pytest.raises(AssetError, match=message):
        load_bundle(folder)


def test_a_duplicate_uuid_is_refused(folder: Path) -> None:
    funnel = yaml.safe_load((folder / "charts" / "funnel.yaml").read_text())
    _edit(folder / "charts" / "gmv_by_city.yaml", uuid=funnel["uuid"])
    with pytest.raises(AssetError, match="uuid: also used by"):
        load_bundle(folder)


def test_a_dashboard_naming_a_missing_chart_is_refused(folder: Path) -> None:
    (folder / "charts" / "funnel.yaml").unlink()
    with pytest.raises(AssetError, match=r"orders_live.yaml: position\.CHART-funnel\.meta\.uuid"):
        load_bundle(folder)


def test_invalid_yaml_names_its_line(folder: Path) -> None:
    (folder / "charts" / "funnel.yaml").write_text("slice_name: ok\nparams: [unclosed\n")
    with pytest.raises(AssetError, match=r"charts/funnel.yaml: line \d+: not valid YAML"):
        load_bundle(folder)


def test_the_login_is_the_setting_else_the_password_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NIBBLE_SUPERSET_ADMIN_PASSWORD", raising=False)
    settings = load_settings()
    password_file = tmp_path / "admin_password"
    with pytest.raises(NibbleError, match=f"set NIBBLE_SUPERSET_ADMIN_PASSWORD, or .* writes {password_file}"):
        superset_login(settings, password_file)
    with pytest.raises(NibbleError, match=r"set NIBBLE_SUPERSET_ADMIN_PASSWORD$"):
        superset_login(settings)  # no local stack (the relay's image)
    password_file.write_text("generated\n")
    assert superset_login(settings, password_file).password == "generated"
    monkeypatch.setenv("NIBBLE_SUPERSET_ADMIN_PASSWORD", "chosen")
    assert superset_login(load_settings(), password_file).password == "chosen"
