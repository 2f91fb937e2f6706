"""A schema registry through Confluent's REST API (Apicurio's /apis/ccompat/v7, or Confluent's own): the few calls
the pipeline makes. Every failure, a registry that does not answer included, is a RegistryError."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import requests

from pipeline.errors import ServiceFailed

CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"
# Confluent's error codes for "no such subject" and "no such schema under the subject".
SUBJECT_NOT_FOUND = 40401
SCHEMA_NOT_FOUND = 40403


class RegistryError(Exception):
    """The registry did not answer, or answered with an error; the message carries its answer."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


@contextmanager
def errors(url: str, setting: str) -> Iterator[None]:
    """A RegistryError as a ServiceFailed naming the registry's address and `setting`. Opt-in: the schema
    commands read a refusal's status, and the relay waits for a registry that does not answer."""
    try:
        yield
    except RegistryError as exc:
        raise ServiceFailed("the schema registry", url, setting, str(exc)) from exc


@dataclass(frozen=True)
class Registered:
    version: int  # the subject's version number
    id: int  # the schema's id, what Confluent's wire format carries


class Registry:
    def __init__(self, url: str, timeout_s: float = 10) -> None:
        self.url = url.rstrip("/")
        self.timeout_s = timeout_s
        self.session = requests.Session()
        self.session.headers["Content-Type"] = CONTENT_TYPE

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        """The answer's JSON; None when the registry says the subject or schema does not exist."""
        try:
            response = self.session.request(method, f"{self.url}{path}", json=body, timeout=self.timeout_s)
        except requests.RequestException as exc:
            raise RegistryError(str(exc)) from None
        try:
            answer = response.json()
        except ValueError:
            answer = {"message": response.text[:300]}
        if response.ok:
            return answer
        code = answer.get("error_code") if isinstance(answer, dict) else None
        if response.status_code == 404 and code in (SUBJECT_NOT_FOUND, SCHEMA_NOT_FOUND):
            return None
        message = answer.get("message", answer) if isinstance(answer, dict) else answer
        raise RegistryError(f"{method} {path}: HTTP {response.status_code}: {message}", response.status_code)

    def versions(self, subject: str) -> list[int]:
        """The subject's version numbers, oldest first; empty when it does not exist."""
        return self._call("GET", f"/subjects/{quote(subject, safe='')}/versions") or []

    def lookup(self, subject: str, schema: str) -> Registered | None:
        """The version and id of `schema` (Avro JSON) under the subject, if it is registered there."""
        found = self._call("POST", f"/subjects/{quote(subject, safe='')}", {"schema": schema})
        return Registered(found["version"], found["id"]) if found else None

    def compatible(self, subject: str, schema: str) -> bool:
        """Whether the subject's compatibility rule accepts `schema` after its latest version."""
        path = f"/compatibility/subjects/{quote(subject, safe='')}/versions/latest"
        answer = self._call("POST", path, {"schema": schema})
        return answer is None or bool(answer["is_compatible"])

    def compatibility(self, subject: str) -> str | None:
        """The subject's own compatibility rule, None when it has none."""
        answer = self._call("GET", f"/config/{quote(subject, safe='')}")
        return answer["compatibilityLevel"] if answer else None

    def set_compatibility(self, subject: str, level: str) -> None:
        self._call("PUT", f"/config/{quote(subject, safe='')}", {"compatibility": level})

    def register(self, subject: str, schema: str) -> int:
        """Register `schema` as the subject's next version (a no-op if it is registered); its id. A schema the
        compatibility rule refuses raises RegistryError with status 409."""
        return self._call("POST", f"/subjects/{quote(subject, safe='')}/versions", {"schema": schema})["id"]

    def delete_subject(self, subject: str) -> None:
        """Delete the subject and every version, for good (soft delete first, as the API requires)."""
        self._call("DELETE", f"/subjects/{quote(subject, safe='')}")
        self._call("DELETE", f"/subjects/{quote(subject, safe='')}?permanent=true")
