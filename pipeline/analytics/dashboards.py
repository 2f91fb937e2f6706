"""Dashboards as code: dashboards/ holds Superset's own asset format, applied and exported through its REST API
(connectors/superset.py). The checks of the folder are pure; `apply` and `export` are the only I/O.

The folder is what `superset export` writes (metadata.yaml, databases/, datasets/, charts/, dashboards/, one
YAML file per object, fixed UUIDs), so an analyst can edit in the UI and `export` back. Every chart, dataset
and dashboard of the folder is certified by MANAGED_BY: that is how `apply` tells the objects it manages
from the analysts' own, and removes the managed ones that were deleted from the folder.

`apply` checks the whole folder before it asks Superset anything (a broken file fails naming file and
field, and nothing changes), then imports it in one request (Superset's import is one transaction), so a
failed import changes nothing either. A stamp of what was applied makes a second `apply` a no-op.
"""

from __future__ import annotations

import hashlib
import io
import json
import uuid
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from connectors.superset import Superset
from pipeline.config import Settings
from pipeline.errors import NibbleError

MANAGED_BY = "nibble dashboards/"
ADMIN_USER = "admin"
KINDS = ("databases", "datasets", "charts", "dashboards")
# The keys each kind of asset must have, with their type; Superset's import checks the rest.
REQUIRED: dict[str, dict[str, type]] = {
    "databases": {"database_name": str, "sqlalchemy_uri": str, "uuid": str},
    "datasets": {"table_name": str, "database_uuid": str, "uuid": str, "columns": list, "metrics": list},
    "charts": {"slice_name": str, "viz_type": str, "params": dict, "dataset_uuid": str, "uuid": str},
    "dashboards": {"dashboard_title": str, "slug": str, "position": dict, "metadata": dict, "uuid": str},
}
# REST resource of each managed kind, in the order they are deleted (dependents first).
RESOURCES = {"dashboards": "dashboard", "charts": "chart", "datasets": "dataset"}


class AssetError(NibbleError):
    """A file of dashboards/ is not a valid asset; the message names the file and the field."""


@dataclass(frozen=True)
class Asset:
    path: str  # relative to the folder, e.g. charts/funnel.yaml
    content: dict[str, Any]

    @property
    def kind(self) -> str:
        return self.path.split("/", 1)[0]

    @property
    def uuid(self) -> str:
        return str(self.content["uuid"])


@dataclass(frozen=True)
class SupersetLogin:
    url: str
    user: str
    password: str


def superset_login(settings: Settings, password_file: Path | None = None) -> SupersetLogin:
    """Superset's URL and admin login: NIBBLE_SUPERSET_ADMIN_PASSWORD if set, else `password_file` (where the
    local stack keeps the password it generated, pipeline.devstack.superset)."""
    e = settings.endpoints
    if e.superset_admin_password:
        return SupersetLogin(e.superset_url, ADMIN_USER, e.superset_admin_password)
    try:
        if password_file is None:
            raise FileNotFoundError
        return SupersetLogin(e.superset_url, ADMIN_USER, password_file.read_text().strip())
    except FileNotFoundError:
        stack = f", or start the local stack (`nibble stack up` writes {password_file})" if password_file else ""
        raise NibbleError(f"no Superset admin password: set NIBBLE_SUPERSET_ADMIN_PASSWORD{stack}") from None


def connect(login: SupersetLogin) -> Superset:
    """A logged-in client of Superset's REST API."""
    return Superset(login.url, login.user, login.password, "NIBBLE_SUPERSET_URL")


def managed(superset: Superset, resource: str) -> dict[str, dict[str, Any]]:
    """The objects of `resource` this folder manages (certified by MANAGED_BY), by uuid: {id, changed_on_utc}."""
    return superset.certified(resource, MANAGED_BY)


# --- the folder ------------------------------------------------------------------------------------------


def load_bundle(root: Path) -> list[Asset]:
    """Every asset of the folder, checked: YAML, required keys and types, UUIDs, and references between them."""
    metadata = _read(root, root / "metadata.yaml")
    if metadata.get("type") != "Dashboard":
        raise AssetError(f"{root.name}/metadata.yaml: type: must be Dashboard")
    assets = []
    for kind in KINDS:
        for path in sorted((root / kind).rglob("*.yaml")):
            asset = Asset(path.relative_to(root).as_posix(), _read(root, path))
            for key, expected in REQUIRED[kind].items():
                if not isinstance(asset.content.get(key), expected):
                    raise AssetError(f"{_name(root, asset)}: {key}: missing or not a {expected.__name__}")
            try:
                uuid.UUID(asset.uuid)
            except ValueError:
                raise AssetError(f"{_name(root, asset)}: uuid: {asset.uuid!r} is not a UUID") from None
            assets.append(asset)
    _check_references(root, assets)
    return assets


def _read(root: Path, path: Path) -> dict[str, Any]:
    name = f"{root.name}/{path.relative_to(root).as_posix()}"
    try:
        content = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise AssetError(f"{name}: missing") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark else "YAML"
        raise AssetError(f"{name}: {where}: not valid YAML ({getattr(exc, 'problem', exc)})") from None
    if not isinstance(content, dict):
        raise AssetError(f"{name}: (top level): must be a mapping of keys to values")
    return content


def _name(root: Path, asset: Asset) -> str:
    return f"{root.name}/{asset.path}"


def _check_references(root: Path, assets: list[Asset]) -> None:
    seen: dict[str, Asset] = {}
    for asset in assets:
        if asset.uuid in seen:
            raise AssetError(f"{_name(root, asset)}: uuid: also used by {_name(root, seen[asset.uuid])}")
        seen[asset.uuid] = asset
    uuids = {kind: {a.uuid for a in assets if a.kind == kind} for kind in KINDS}
    references = {"datasets": ("database_uuid", "databases"), "charts": ("dataset_uuid", "datasets")}
    for asset in assets:
        if asset.kind in references:
            key, target = references[asset.kind]
            if str(asset.content[key]) not in uuids[target]:
                raise AssetError(f"{_name(root, asset)}: {key}: no file in {target}/ has uuid {asset.content[key]}")
        if asset.kind == "dashboards":
            for item_id, item in asset.content["position"].items():
                chart = item.get("meta", {}).get("uuid") if isinstance(item, dict) else None
                if item_id.startswith("CHART-") and chart not in uuids["charts"]:
                    raise AssetError(f"{_name(root, asset)}: position.{item_id}.meta.uuid: no chart has uuid {chart}")


def pinot_uri(settings: Settings) -> str:
    """Pinot as Superset reaches it: NIBBLE_SUPERSET_PINOT_URI, else the broker and controller we use."""
    e = settings.endpoints
    if e.superset_pinot_uri:
        return e.superset_pinot_uri
    broker = urlsplit(e.pinot_broker_url)
    return f"pinot+{broker.scheme}://{broker.netloc}/query/sql?controller={e.pinot_controller_url}/"


def bundle_zip(assets: list[Asset], database_uri: str) -> bytes:
    """The import bundle: the folder as a zip, every database pointed at `database_uri`."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as bundle:
        bundle.writestr("bundle/metadata.yaml", yaml.safe_dump({"version": "1.0.0", "type": "Dashboard"}))
        for asset in assets:
            content = asset.content
            if asset.kind == "databases":
                content = {**content, "sqlalchemy_uri": database_uri}
            bundle.writestr(f"bundle/{asset.path}", yaml.safe_dump(content, sort_keys=True))
    return buffer.getvalue()


def _fingerprint(assets: list[Asset], database_uri: str) -> str:
    canonical = json.dumps([[a.path, a.content] for a in assets] + [database_uri], sort_keys=True, default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


# --- apply and export ------------------------------------------------------------------------------------


def _stamp_file(settings: Settings, superset_url: str) -> Path:
    key = hashlib.sha256(superset_url.encode()).hexdigest()[:12]
    return settings.stack.state_dir.resolve() / "dashboards" / f"applied-{key}.json"


def apply(settings: Settings, superset: Superset, root: Path) -> list[str]:
    """Import the folder (overwriting), remove managed objects deleted from it; the changes made, one a line."""
    assets = load_bundle(root)
    database_uri = pinot_uri(settings)
    fingerprint = _fingerprint(assets, database_uri)
    stamp_file = _stamp_file(settings, superset.url)
    stamp = json.loads(stamp_file.read_text()) if stamp_file.exists() else {}
    managed_now = {resource: managed(superset, resource) for resource in RESOURCES.values()}
    current = {u: row["changed_on_utc"] for rows in managed_now.values() for u, row in rows.items()}
    if stamp.get("fingerprint") == fingerprint and stamp.get("objects") == current:
        return []
    changes = []
    wanted = {a.uuid for a in assets}
    for resource in RESOURCES.values():
        for object_uuid, row in managed_now[resource].items():
            if object_uuid not in wanted:
                superset.delete(resource, row["id"])
                changes.append(f"deleted {resource} {object_uuid} (no longer in {root.name}/)")
    superset.import_bundle(bundle_zip(assets, database_uri))
    changes.append(f"imported {len(assets)} assets from {root.name}/ (Pinot at {database_uri})")
    applied = {u: row["changed_on_utc"] for r in RESOURCES.values() for u, row in managed(superset, r).items()}
    stamp_file.parent.mkdir(parents=True, exist_ok=True)
    stamp_file.write_text(json.dumps({"fingerprint": fingerprint, "objects": applied}, indent=2))
    return changes


def export(superset: Superset, slug: str, root: Path) -> list[str]:
    """Write dashboard `slug`, its charts and datasets from Superset back into the folder; the files written.

    A file keeps its path when its uuid is already in the folder; a new chart is named after its title.
    Databases stay as they are: their URI is the machine's, set by `apply`.
    """
    existing = {a.uuid: a.path for a in load_bundle(root)}
    written = []
    with zipfile.ZipFile(io.BytesIO(superset.export_dashboard(superset.dashboard_id(slug)))) as bundle:
        for member in bundle.namelist():
            relative = member.split("/", 1)[1]
            kind = relative.split("/", 1)[0]
            if kind not in ("datasets", "charts", "dashboards"):
                continue
            content = _portable(yaml.safe_load(bundle.read(member)))
            path = existing.get(str(content.get("uuid"))) or _new_path(kind, content)
            (root / path).parent.mkdir(parents=True, exist_ok=True)
            (root / path).write_text(yaml.safe_dump(content, sort_keys=True, allow_unicode=True, width=120))
            written.append(f"{root.name}/{path}")
    return written


def _portable(content: dict[str, Any]) -> dict[str, Any]:
    """Without the ids of one Superset's metadata database (the import maps UUIDs to its own ids)."""
    params = content.get("params")
    if isinstance(params, dict):
        for key in ("datasource", "slice_id", "dashboards"):
            params.pop(key, None)
    for item in (content.get("position") or {}).values():
        if isinstance(item, dict) and "chartId" in item.get("meta", {}):
            item["meta"]["chartId"] = 0
    return content


def _new_path(kind: str, content: dict[str, Any]) -> str:
    title = content.get("slice_name") or content.get("slug") or content.get("table_name") or content["uuid"]
    stem = "".join(c if c.isalnum() else "_" for c in str(title).lower()).strip("_")
    return f"{kind}/{stem}.yaml"
