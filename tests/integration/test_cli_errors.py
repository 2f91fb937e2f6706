"""Every command with a service down or misconfigured: one line naming the service and the setting to check,
a non-zero exit, and no traceback (unless --debug)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

CLOSED = "127.0.0.1:9"  # discard port: nothing listens there on this machine
DOWN = {
    "NIBBLE_DATABASE_URL": f"postgresql://postgres:secret@{CLOSED}/nibble",
    "NIBBLE_KAFKA_BOOTSTRAP_SERVERS": CLOSED,
    "NIBBLE_PINOT_CONTROLLER_URL": f"http://{CLOSED}",
    "NIBBLE_PINOT_BROKER_URL": f"http://{CLOSED}",
}


def nibble(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pipeline", *args],
        env={**os.environ, **DOWN, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize(
    ("args", "setting"),
    [
        (["migrate"], "NIBBLE_DATABASE_URL"),
        (["migrate", "--status"], "NIBBLE_DATABASE_URL"),
        (["relay", "status"], "NIBBLE_DATABASE_URL"),
        (["dlq", "list"], "NIBBLE_DATABASE_URL"),
        (["dlq", "replay", "--all"], "NIBBLE_DATABASE_URL"),
        (["generate", "--duration", "1"], "NIBBLE_DATABASE_URL"),
        (["pinot", "apply", "--dry-run"], "NIBBLE_PINOT_CONTROLLER_URL"),
        (["pinot", "status"], "NIBBLE_PINOT_CONTROLLER_URL"),  # asked first: segments and the minion
        (["query", "funnel"], "NIBBLE_PINOT_BROKER_URL"),
    ],
)
def test_a_service_down_is_one_line_naming_its_setting(args: list[str], setting: str) -> None:
    result = nibble(*args)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert setting in lines[0] and CLOSED in lines[0]
    assert "secret" not in result.stderr + result.stdout  # the password never appears


def test_kafka_down_names_its_setting() -> None:
    result = nibble("pinot", "apply", NIBBLE_PINOT_CONTROLLER_URL=os.environ.get("NIBBLE_PINOT_CONTROLLER_URL", ""))
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert "NIBBLE_KAFKA_BOOTSTRAP_SERVERS" in result.stderr.strip().splitlines()[-1]


def test_an_invalid_setting_is_named_with_exit_2() -> None:
    result = nibble("relay", "status", NIBBLE_RELAY_BATCH_SIZE="lots")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "nibble relay: invalid configuration: NIBBLE_RELAY_BATCH_SIZE: "
        "Input should be a valid integer, unable to parse string as an integer"
    ]


def test_debug_shows_the_traceback() -> None:
    result = nibble("--debug", "relay", "status")
    assert result.returncode != 0 and "Traceback" in result.stderr
