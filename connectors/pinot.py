"""Apache Pinot: the controller's REST API (schemas, tables) and DB-API connections to the broker."""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import urlsplit

import requests
from pinotdb import connect as pinotdb_connect
from pinotdb.db import Connection


class ControllerError(Exception):
    """The controller refused a request; the message carries its answer."""


class Controller:
    def __init__(self, url: str) -> None:
        self.url = url.rstrip("/")
        self.session = requests.Session()

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self.session.request(method, f"{self.url}{path}", timeout=60, **kwargs)
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
        answer = self._call("GET", f"/tables/{name}", params={"type": "realtime"})
        return (answer or {}).get("REALTIME")

    def put_table(self, config: dict[str, Any], exists: bool) -> None:
        if exists:
            self._call("PUT", f"/tables/{config['tableName']}", json=config)
        else:
            self._call("POST", "/tables", json=config)

    def delete_table(self, name: str) -> None:
        self._call("DELETE", f"/tables/{name}", params={"type": "realtime"})

    def hosted(self, name: str) -> bool:
        """Whether the realtime table still has an external view or any server still holds it: 0.11 lets a
        dropped table linger on its servers for seconds, and a table created again meanwhile misbehaves."""
        if self._call("GET", f"/tables/{name}/externalview") is not None:
            return True
        for instance in (self._call("GET", "/instances") or {}).get("instances", []):
            if instance.startswith("Server_"):
                server = self._call("GET", f"/instances/{instance}")
                response = self.session.get(f"http://{server['hostName']}:{server['adminPort']}/tables", timeout=10)
                response.raise_for_status()
                if f"{name}_REALTIME" in response.json().get("tables", []):
                    return True
        return False

    def consumed_offsets(self, name: str) -> dict[int, int]:
        """Each stream partition's offset the table's consuming segment has reached."""
        answer = self._call("GET", f"/tables/{name}/consumingSegmentsInfo") or {}
        offsets: dict[int, int] = {}
        for replicas in answer.get("_segmentToConsumingInfoMap", {}).values():
            for replica in replicas:
                for partition, offset in replica.get("partitionToOffsetMap", {}).items():
                    offsets[int(partition)] = max(offsets.get(int(partition), 0), int(offset))
        return offsets

    def wait_online(self, name: str, timeout_s: float = 60) -> None:
        """Wait until the server hosts every segment of the realtime table as the controller assigned it."""
        deadline = time.monotonic() + timeout_s
        while True:
            ideal = (self._call("GET", f"/tables/{name}/idealstate") or {}).get("REALTIME")
            external = (self._call("GET", f"/tables/{name}/externalview") or {}).get("REALTIME")
            if ideal and ideal == external:
                return
            if time.monotonic() > deadline:
                raise ControllerError(f"table {name}: segments not online {timeout_s} s after its creation")
            time.sleep(0.2)


def broker_connection(broker_url: str, timeout_ms: int | None = None) -> Connection:
    """A DB-API connection; with `timeout_ms`, Pinot stops each query then and the client waits a little longer."""
    parts = urlsplit(broker_url)
    limits = {}
    if timeout_ms is not None:
        limits = {"timeout": timeout_ms / 1000 + 2, "query_options": f"timeoutMs={timeout_ms}"}
    return pinotdb_connect(
        host=parts.hostname, port=parts.port or 80, path="/query/sql", scheme=parts.scheme or "http", **limits
    )
