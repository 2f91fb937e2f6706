"""Apache Pinot: the controller's REST API (schemas, tables), DB-API connections to the broker, and the
failures of each as one line."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import quote, urlsplit

import httpx
import pinotdb.exceptions
import requests
from pinotdb import connect as pinotdb_connect
from pinotdb.db import Connection

from pipeline.errors import ServiceFailed


class ControllerError(Exception):
    """The controller did not answer or refused a request; the message carries its answer."""


@contextmanager
def controller_errors(url: str, setting: str) -> Iterator[None]:
    """A ControllerError (the controller out of reach or refusing) as a ServiceFailed naming its address and
    `setting`."""
    try:
        yield
    except ControllerError as exc:
        raise ServiceFailed("the Pinot controller", url, setting, str(exc)) from exc


@contextmanager
def broker_errors(url: str, setting: str) -> Iterator[None]:
    """A broker call failing (pinotdb's errors, or those of httpx, the HTTP client it and `time_boundary` use) as
    a ServiceFailed naming the broker's address and `setting`. Opt-in: loops that wait for the broker catch the
    driver's own errors."""
    try:
        yield
    except (pinotdb.exceptions.Error, httpx.HTTPError) as exc:
        raise ServiceFailed("the Pinot broker", url, setting, str(exc)) from exc


class Controller:
    def __init__(self, url: str) -> None:
        self.url = url.rstrip("/")
        self.session = requests.Session()

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self.session.request(method, f"{self.url}{path}", timeout=60, **kwargs)
        except requests.RequestException as exc:
            raise ControllerError(f"{method} {path}: {exc}") from exc
        if response.status_code == 404:
            return None
        if not response.ok:
            raise ControllerError(f"{method} {path}: HTTP {response.status_code}: {response.text[:1000]}")
        return response.json() if response.content else {}

    def schema(self, name: str) -> dict[str, Any] | None:
        return self._call("GET", f"/schemas/{name}")

    def put_schema(self, schema: dict[str, Any], exists: bool) -> None:
        if exists:
            self._call("PUT", f"/schemas/{schema['schemaName']}", json=schema)
        else:
            self._call("POST", "/schemas", json=schema)

    def realtime_table(self, name: str) -> dict[str, Any] | None:
        return self.table(name, "REALTIME")

    def offline_table(self, name: str) -> dict[str, Any] | None:
        return self.table(name, "OFFLINE")

    def table(self, name: str, kind: str) -> dict[str, Any] | None:
        """The stored config of one part (REALTIME or OFFLINE) of a table, or None."""
        answer = self._call("GET", f"/tables/{name}", params={"type": kind.lower()})
        return (answer or {}).get(kind)

    def put_table(self, config: dict[str, Any], exists: bool) -> None:
        if exists:
            self._call("PUT", f"/tables/{config['tableName']}", json=config)
        else:
            self._call("POST", "/tables", json=config)

    def rebalance(self, name_with_type: str) -> None:
        """Move one part's segments (consuming ones too) to where its config places them now, with no downtime:
        one replica of each segment answers throughout. Runs in the controller's background."""
        name, kind = name_with_type.rsplit("_", 1)
        params = {
            "type": kind,
            "reassignInstances": "true",  # the servers of its tenant as they are now
            "includeConsuming": "true",
            "downtime": "false",
            "minAvailableReplicas": "1",
        }
        self._call("POST", f"/tables/{name}/rebalance", params=params)

    def delete_table(self, name: str, kind: str = "REALTIME") -> None:
        self._call("DELETE", f"/tables/{name}", params={"type": kind.lower()})

    def delete_schema(self, name: str) -> None:
        self._call("DELETE", f"/schemas/{name}")

    def hosted(self, name: str, kind: str = "REALTIME") -> bool:
        """Whether one part of the table still has an external view or any server still holds it: 0.11 lets a
        dropped table linger on its servers for seconds, and a table created again meanwhile misbehaves."""
        if (self._call("GET", f"/tables/{name}/externalview") or {}).get(kind) is not None:
            return True
        for instance in (self._call("GET", "/instances") or {}).get("instances", []):
            if instance.startswith("Server_"):
                server = self._call("GET", f"/instances/{instance}")
                admin = f"http://{server['hostName']}:{server['adminPort']}/tables"
                try:
                    response = self.session.get(admin, timeout=10)
                    response.raise_for_status()
                except requests.RequestException as exc:
                    raise ControllerError(
                        f"server {instance} (its admin port, as the controller lists it): {exc}"
                    ) from exc
                if f"{name}_{kind}" in response.json().get("tables", []):
                    return True
        return False

    def instance(self, name: str) -> dict[str, Any] | None:
        """One instance's config (host, ports, tags), or None when it is not registered."""
        return self._call("GET", f"/instances/{name}")

    def add_server(self, host: str, port: int, admin_port: int, tags: list[str]) -> None:
        """Register a server before it first starts: it keeps these tags, not the DefaultTenant ones it would
        give itself when it joins untagged."""
        body = {"host": host, "port": port, "adminPort": admin_port, "type": "SERVER", "tags": tags}
        self._call("POST", "/instances", json=body)

    def set_tags(self, name: str, tags: list[str]) -> None:
        self._call("PUT", f"/instances/{name}/updateTags", params={"tags": ",".join(tags)})

    def delete_instance(self, name: str) -> None:
        """Forget a stopped instance (refused while it is live or an ideal state still names it)."""
        self._call("DELETE", f"/instances/{name}")

    def segments(self, name_with_type: str) -> list[dict[str, Any]]:
        """The ZooKeeper metadata of each segment of one part (e.g. orders_REALTIME): its start and end time
        (segment.start.time, segment.end.time, in segment.time.unit), status, creation time."""
        return [metadata for metadata in self._segment_metadata(name_with_type).values() if metadata is not None]

    def completed_segment_ends(self, name: str) -> dict[str, int]:
        """Each completed segment of a realtime table, by name, with its end time (in its time unit)."""
        return {
            segment: int(metadata["segment.end.time"])
            for segment, metadata in self._segment_metadata(f"{name}_REALTIME").items()
            if metadata is not None and metadata.get("segment.realtime.status") == "DONE"
        }

    def _segment_metadata(self, name_with_type: str) -> dict[str, Any]:
        name, kind = name_with_type.rsplit("_", 1)
        listed = self._call("GET", f"/segments/{name}", params={"type": kind}) or []
        names = [segment for part in listed for segment in part.get(kind, [])]
        return {s: self._call("GET", f"/segments/{name_with_type}/{quote(s, safe='')}/metadata") for s in names}

    def task_watermark_ms(self, task_type: str, name_with_type: str) -> int | None:
        """Where a minion task has got to on a table: the end of the last time bucket it moved, or None."""
        answer = self._call("GET", f"/tasks/{task_type}/{name_with_type}/metadata")
        fields = (answer or {}).get("simpleFields", {}) if isinstance(answer, dict) else {}
        return int(fields["watermarkMs"]) if "watermarkMs" in fields else None

    def set_task_watermark_ms(self, task_type: str, name_with_type: str, watermark_ms: int) -> None:
        """Set where a minion task continues on a table (its metadata ZNode, as the minion itself writes it)."""
        cluster = self._call("GET", "/cluster/info")["clusterName"]
        record = {"id": name_with_type, "simpleFields": {"watermarkMs": str(watermark_ms)}}
        path = f"/{cluster}/PROPERTYSTORE/MINION_TASK_METADATA/{name_with_type}/{task_type}"
        self._call("PUT", "/zk/put", params={"path": path, "expectedVersion": -1, "accessOption": 1}, json=record)

    def schedule_task(self, task_type: str, name_with_type: str) -> None:
        """Ask the controller to generate the task for the table now, not at its next scheduled time."""
        self._call("POST", "/tasks/schedule", params={"taskType": task_type, "tableName": name_with_type})

    def run_periodic_task(self, task: str, name: str, kind: str) -> None:
        """Run one of the controller's periodic tasks (e.g. RetentionManager) on one table now."""
        self._call("GET", "/periodictask/run", params={"taskname": task, "tableName": name, "type": kind})

    def consuming_segments(self, name: str) -> list[str]:
        """The realtime table's segments that are consuming now (one per stream partition)."""
        ideal = (self._call("GET", f"/tables/{name}/idealstate") or {}).get("REALTIME") or {}
        return [segment for segment, replicas in ideal.items() if "CONSUMING" in replicas.values()]

    def reset_segment(self, name_with_type: str, segment: str) -> None:
        """Disable one segment, wait for the server to drop it, enable it again: a consuming segment starts
        again from its first offset, with the table config as it is now."""
        self._call("POST", f"/segments/{name_with_type}/{quote(segment, safe='')}/reset")

    def consumed_offsets(self, name: str) -> dict[int, int]:
        """Each stream partition's offset the table's consuming segment has reached."""
        answer = self._call("GET", f"/tables/{name}/consumingSegmentsInfo") or {}
        offsets: dict[int, int] = {}
        for replicas in answer.get("_segmentToConsumingInfoMap", {}).values():
            for replica in replicas:
                for partition, offset in replica.get("partitionToOffsetMap", {}).items():
                    offsets[int(partition)] = max(offsets.get(int(partition), 0), int(offset))
        return offsets

    def consuming_replicas(self, name: str) -> dict[str, dict[str, dict[str, Any]]]:
        """Each consuming segment of the realtime table, by server: its consumer state and offsets reached."""
        answer = self._call("GET", f"/tables/{name}/consumingSegmentsInfo") or {}
        return {
            segment: {replica["serverName"]: replica for replica in replicas}
            for segment, replicas in answer.get("_segmentToConsumingInfoMap", {}).items()
        }

    def online(self, name: str) -> bool:
        """Whether the servers host every segment of the realtime table as the controller assigned it."""
        ideal = (self._call("GET", f"/tables/{name}/idealstate") or {}).get("REALTIME")
        external = (self._call("GET", f"/tables/{name}/externalview") or {}).get("REALTIME")
        return bool(ideal) and ideal == external

    def wait_online(self, name: str, timeout_s: float = 60) -> None:
        """Wait until the server hosts every segment of the realtime table as the controller assigned it."""
        deadline = time.monotonic() + timeout_s
        while True:
            if self.online(name):
                return
            if time.monotonic() > deadline:
                raise ControllerError(f"table {name}: segments not online {timeout_s} s after its creation")
            time.sleep(0.2)


def time_boundary(broker_url: str, name: str) -> int | None:
    """Where the broker splits a hybrid table (epoch ms of its time column: offline rows at or before it, realtime
    rows after it), or None while it has no offline segment."""
    response = httpx.get(f"{broker_url.rstrip('/')}/debug/timeBoundary/{name}", timeout=10)
    if response.status_code == 404:  # 0.11 answers 404 with no body
        return None
    response.raise_for_status()
    return int(response.json()["timeValue"])


def count(cursor: Any, query: str) -> int:
    """The answer of a `SELECT COUNT(*)` query; 0 when it has no row at all, as Pinot answers for a table (or
    part of one) with no segment to answer from, just created or reconfigured."""
    cursor.execute(query)
    row = cursor.fetchone()
    return int(row[0]) if row else 0


def broker_connection(broker_url: str, timeout_ms: int | None = None) -> Connection:
    """A DB-API connection; with `timeout_ms`, Pinot stops each query then and the client waits a little longer."""
    parts = urlsplit(broker_url)
    limits = {}
    if timeout_ms is not None:
        limits = {"timeout": timeout_ms / 1000 + 2, "query_options": f"timeoutMs={timeout_ms}"}
    return pinotdb_connect(
        host=parts.hostname, port=parts.port or 80, path="/query/sql", scheme=parts.scheme or "http", **limits
    )
