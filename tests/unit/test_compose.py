"""docker-compose.yml is as safe as the local stack: ports on loopback only, no password written in it (no service)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

COMPOSE_FILE = Path(__file__).resolve().parents[2] / "docker-compose.yml"
REFERENCE = re.compile(r"\$\{[A-Z0-9_]+(:?\?[^}]*)?\}")  # a variable with no default: `${X}` or `${X:?why}`
URL_PASSWORD = re.compile(r"://[^:/@\s]+:([^@\s]+)@")  # the password part of `scheme://user:password@host`


def services() -> dict[str, dict[str, Any]]:
    return yaml.safe_load(COMPOSE_FILE.read_text())["services"]


def host_ip(port: str | int | dict[str, Any]) -> str | None:
    """The host address a published port binds: `ip:host:container` (short syntax) or `host_ip` (long)."""
    if isinstance(port, dict):
        return port.get("host_ip")
    parts = str(port).split(":")
    return parts[0] if len(parts) == 3 else None


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {key: str(value) for key, value in env.items()}


def is_literal_secret(key: str, value: str) -> bool:
    """A password written in the file: a PASSWORD/SECRET value that is not one variable with no default, or a
    URL whose password part is not one."""
    if any(word in key.upper() for word in ("PASSWORD", "SECRET")) and not REFERENCE.fullmatch(value):
        return True
    return any(not REFERENCE.fullmatch(found) for found in URL_PASSWORD.findall(value))


def test_every_published_port_is_on_loopback() -> None:
    published = {name: service.get("ports", []) for name, service in services().items()}
    assert any(published.values())  # the check below means something only if ports are published
    exposed = {name: port for name, ports in published.items() for port in ports if host_ip(port) != "127.0.0.1"}
    assert exposed == {}


def test_no_password_is_written_in_the_file() -> None:
    literal = {
        (name, key): value
        for name, service in services().items()
        for key, value in environment(service).items()
        if is_literal_secret(key, value)
    }
    assert literal == {}


def test_the_secret_rule_catches_literals() -> None:
    assert is_literal_secret("POSTGRES_PASSWORD", "nibble")
    assert is_literal_secret("POSTGRES_PASSWORD", "${NIBBLE_POSTGRES_PASSWORD:-nibble}")  # a default is a literal
    assert is_literal_secret("NIBBLE_DATABASE_URL", "postgresql://nibble_relay:nibble_relay@postgres:5432/nibble")
    assert not is_literal_secret("POSTGRES_PASSWORD", "${NIBBLE_POSTGRES_PASSWORD:?set it in .env}")
    assert not is_literal_secret("NIBBLE_DATABASE_URL", "postgresql://nibble_relay:${NIBBLE_RELAY_PASSWORD}@postgres/n")
    assert host_ip("5432:5432") is None
    assert host_ip({"target": 5432, "published": 5432, "host_ip": "127.0.0.1"}) == "127.0.0.1"
