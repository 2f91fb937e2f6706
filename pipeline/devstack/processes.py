"""Process helpers for the local stack: run a command, spawn a daemon, probe and stop a pid, read a log."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

from pipeline.errors import NibbleError


class StackError(NibbleError):
    """A service could not be set up, started or stopped; the message says which and why."""


def run(command: list[str], what: str, env: dict[str, str] | None = None) -> None:
    result = subprocess.run(command, capture_output=True, text=True, check=False, env=env)
    if result.returncode != 0:
        raise StackError(f"{what} failed (exit {result.returncode}):\n{(result.stdout + result.stderr)[-3000:]}")


def spawn(command: list[str], log_file: Path, pid_file: Path, cwd: Path, env: dict[str, str] | None = None) -> int:
    """Start a daemon in its own process group, output appended to its log; its pid goes to `pid_file`."""
    with log_file.open("ab") as log:
        process = subprocess.Popen(
            command,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=cwd,
            env=env,
            start_new_session=True,
        )
    pid_file.write_text(f"{process.pid}\n")
    return process.pid


def read_pid(pid_file: Path) -> int | None:
    """The live pid a pid file names (its first word), or None."""
    try:
        pid = int(pid_file.read_text().split()[0])
    except (FileNotFoundError, ValueError, IndexError):
        return None
    return pid if alive(pid) else None


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (exited, not yet reaped) counts as gone.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0] != "Z"
    except (FileNotFoundError, IndexError):
        return False


def terminate(pid: int, grace_s: float = 30) -> None:
    """SIGTERM the process group, SIGKILL it if it is still there after `grace_s`."""
    os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    if alive(pid):
        os.killpg(pid, signal.SIGKILL)


def make_traversable(path: Path) -> None:
    """Let another user (postgres) reach a directory inside a checkout that root owns."""
    for parent in [path, *path.parents]:
        mode = parent.stat().st_mode
        if mode & 0o001 == 0:
            parent.chmod(mode | 0o001)


def tail(path: Path, lines: int) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no log)"
