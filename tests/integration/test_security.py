"""The local stack's security settings (docs/security.md): loopback-only listeners, a generated relay-role
password kept 0600, and no password in `nibble stack status` or any log."""

from __future__ import annotations

import os
import stat
import subprocess
import sys

import psycopg

from pipeline.config import load_settings
from pipeline.devstack.postgres_cluster import relay_password
from pipeline.devstack.stack import LocalStack
from tests.support.services import Services

NIBBLE = [sys.executable, "-m", "pipeline"]
LOOPBACK = ("127.0.0.1:", "[::ffff:127.0.0.1]:", "[::1]:")


def listening() -> dict[int, set[str]]:
    """port -> local addresses something listens on (TCP), from `ss`."""
    out = subprocess.run(["ss", "-ltnH"], capture_output=True, text=True, check=True).stdout
    addresses: dict[int, set[str]] = {}
    for line in out.splitlines():
        local = line.split()[3]
        addresses.setdefault(int(local.rsplit(":", 1)[1]), set()).add(local)
    return addresses


def test_every_stack_port_listens_on_loopback_only(services: Services) -> None:
    s = load_settings().stack
    ports = listening()
    own = {
        "postgres_port": s.postgres_port,
        "kafka_port": s.kafka_port,
        "kafka_controller_port": s.kafka_controller_port,
        "zookeeper_port": s.zookeeper_port,
        "pinot_controller_port": s.pinot_controller_port,
        "pinot_broker_port": s.pinot_broker_port,
        "pinot_server_admin_port": s.pinot_server_admin_port,
        "redis_port": s.redis_port,
        "superset_port": s.superset_port,
    }
    for setting, port in own.items():
        assert ports.get(port), f"nothing listens on {setting}={port}"
        assert all(a.startswith(LOOPBACK) for a in ports[port]), f"{setting}={port} listens on {ports[port]}"
    # gRPC is off; the Netty query port cannot be bound to loopback in Pinot 0.11 (docs/security.md).
    assert s.pinot_server_grpc_port not in ports


def test_the_relay_password_is_generated_kept_0600_and_set_on_the_role(services: Services) -> None:
    settings = load_settings()
    password = relay_password(settings)
    path = settings.stack.state_dir.resolve() / "secrets" / "nibble_relay.password"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert password != "nibble_relay" and len(password) >= 32
    with psycopg.connect(services.database_url) as conn:
        (verifier,) = conn.execute("SELECT rolpassword FROM pg_authid WHERE rolname = 'nibble_relay'").fetchone()
    assert verifier.startswith("SCRAM-SHA-256$")
    with psycopg.connect(services.relay_url_for("nibble")) as conn:
        assert conn.execute("SELECT current_user").fetchone() == ("nibble_relay",)


def test_no_password_in_status_or_logs(services: Services) -> None:
    settings = load_settings()
    superuser_password = settings.endpoints.database_url.split(":")[2].split("@")[0]
    secrets = [relay_password(settings), f":{superuser_password}@"]
    env = {**os.environ, **services.environ()}
    for command in (["stack", "status"], ["stack", "status", "--json"]):
        out = subprocess.run([*NIBBLE, *command], capture_output=True, text=True, env=env, timeout=120)
        assert "***@" in out.stdout
        assert not any(secret in out.stdout + out.stderr for secret in secrets), command
    stack = LocalStack(settings)
    for service in stack.services:
        if service.log_file.exists():
            text = service.log_file.read_text(errors="replace")
            assert not any(secret in text for secret in secrets), f"a password is in {service.log_file}"
