"""Expected failures. Each derives from NibbleError; the CLI prints its message on one line and exits non-zero.

Each connector turns its client library's own failures into a ServiceFailed that names the service, its
address and the setting to check (e.g. `connectors.postgres.errors`), so no command catches them one by one.
"""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit


class NibbleError(Exception):
    """An expected failure; the message is the whole story for the user."""

    exit_code = 1


class ConfigError(NibbleError):
    """A setting is missing or invalid; the message names it."""

    exit_code = 2


class UsageError(NibbleError):
    """The command line asks for something that cannot be done as asked."""

    exit_code = 2


class QueryFailed(NibbleError):
    """Pinot could not answer a library query: unreachable, out of time, or its tables differ from ours."""


class ServiceFailed(NibbleError):
    """A service the command needs did not answer, or refused what was asked of it."""

    def __init__(self, service: str, address: str, setting: str, detail: str) -> None:
        detail = " ".join(detail.split())[:300]
        super().__init__(f"{service} at {address}: {detail} (check that it runs and that {setting} points at it)")


def redact(url: str) -> str:
    """A URL without its password, fit for messages and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = f"{parts.username}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))
