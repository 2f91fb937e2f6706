"""Faults, one service at a time (`nibble stack kill | restart`, the fault tests, the soak): kill -9, and a
stop (graceful or not) followed by a start and the wait until the service is healthy again."""

from __future__ import annotations

import os
import signal
import time
from typing import TYPE_CHECKING

from pipeline.devstack import processes
from pipeline.devstack.processes import StackError

if TYPE_CHECKING:  # the stack calls these; they need its table and its start and wait steps
    from pipeline.devstack.stack import LocalStack


def kill(stack: LocalStack, name: str) -> None:
    """`kill -9` a service (PostgreSQL: its postmaster); it stays down until `restart` or `up`."""
    service = stack.service(name)
    pid = stack.pid(name)
    if pid is None:
        raise StackError(f"{name} is not running")
    stack.report(f"{name}: kill -9 pid {pid}")
    if name == "postgres":
        os.kill(pid, signal.SIGKILL)  # its backends notice and exit; the group holds no one else of ours
    else:
        os.killpg(pid, signal.SIGKILL)
    # A JVM's main thread is a zombie before its other threads have closed its sockets: wait for both.
    deadline = time.monotonic() + 30
    while (processes.alive(pid) or service.answering()) and time.monotonic() < deadline:
        time.sleep(0.05)


def restart(stack: LocalStack, name: str, hard: bool = False) -> float:
    """Stop a service (gracefully; `hard`: kill -9, PostgreSQL `pg_ctl restart -m immediate`), start it again
    and wait until it is healthy; a service that is down is just started. Returns the seconds it took."""
    service = stack.service(name)
    started = time.monotonic()
    pid = stack.pid(name)
    if name == "postgres" and pid is not None:
        mode = "immediate" if hard else "fast"
        stack.report(f"postgres: pg_ctl restart -m {mode}")
        stack.postgres.pg_ctl("restart", "-m", mode, "-l", str(service.log_file))
    else:
        if pid is not None and hard:
            kill(stack, name)
        elif pid is not None:
            stack.report(f"{name}: stopping pid {pid}")
            service.stop(pid)
        stack.check_ports_free(service)
        stack.report(f"{name}: starting on port {service.port}")
        service.start()
    stack.wait_healthy(service)
    return time.monotonic() - started
