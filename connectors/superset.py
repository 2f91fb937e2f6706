"""Apache Superset's REST API: a logged-in session (JWT plus the CSRF token its write endpoints ask for) and
the few calls dashboards as code make. Every failure is a ServiceFailed naming Superset and the setting."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import requests

from pipeline.errors import NibbleError, ServiceFailed

PAGE_SIZE = 100


class Superset:
    def __init__(self, url: str, user: str, password: str, setting: str) -> None:
        self.url = url.rstrip("/")
        self.setting = setting
        self.session = requests.Session()
        self.session.headers["Referer"] = self.url
        token = self._call(
            "POST",
            "/api/v1/security/login",
            json={"username": user, "password": password, "provider": "db", "refresh": False},
        )
        self.session.headers["Authorization"] = f"Bearer {token['access_token']}"
        self.session.headers["X-CSRFToken"] = self._call("GET", "/api/v1/security/csrf_token/")["result"]

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self.session.request(method, self.url + path, timeout=120, **kwargs)
        except requests.RequestException as exc:
            raise ServiceFailed("Superset", self.url, self.setting, str(exc)) from None
        if response.status_code >= 400:
            detail = f"{method} {path}: {response.status_code} {response.text}"
            raise ServiceFailed("Superset", self.url, self.setting, detail)
        return response.json() if "json" in response.headers.get("content-type", "") else response.content

    def certified(self, resource: str, certified_by: str) -> dict[str, dict[str, Any]]:
        """The objects of `resource` (dashboard, chart, dataset) certified by `certified_by`, by uuid:
        {id, changed_on_utc}. A dataset keeps its certification in its `extra` JSON."""
        columns = "id,uuid,changed_on_utc," + ("extra" if resource == "dataset" else "certified_by")
        found: dict[str, dict[str, Any]] = {}
        for row in self._rows(resource, columns):
            by = (
                (json.loads(row.get("extra") or "{}").get("certification") or {}).get("certified_by")
                if resource == "dataset"
                else row.get("certified_by")
            )
            if by == certified_by:
                found[row["uuid"]] = {"id": row["id"], "changed_on_utc": row["changed_on_utc"]}
        return found

    def _rows(self, resource: str, columns: str) -> Iterator[dict[str, Any]]:
        page = 0
        while True:
            query = f"(columns:!({columns}),page:{page},page_size:{PAGE_SIZE})"
            result = self._call("GET", f"/api/v1/{resource}/", params={"q": query})["result"]
            yield from result
            if len(result) < PAGE_SIZE:
                return
            page += 1

    def import_bundle(self, bundle: bytes) -> None:
        """Import an export-format zip, overwriting (one transaction in Superset: all of it or nothing)."""
        files = {"formData": ("bundle.zip", bundle, "application/zip")}
        self._call("POST", "/api/v1/dashboard/import/", files=files, data={"overwrite": "true"})

    def delete(self, resource: str, object_id: int) -> None:
        self._call("DELETE", f"/api/v1/{resource}/{object_id}")

    def dashboard_id(self, slug: str) -> int:
        for row in self._rows("dashboard", "id,slug"):
            if row["slug"] == slug:
                return int(row["id"])
        raise NibbleError(f"Superset at {self.url} has no dashboard with slug {slug!r}")

    def export_dashboard(self, dashboard_id: int) -> bytes:
        """The dashboard, its charts, datasets and database as an export-format zip."""
        return self._call("GET", "/api/v1/dashboard/export/", params={"q": f"!({dashboard_id})"})
