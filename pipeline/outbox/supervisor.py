"""`nibble relay --processes N`: N relay processes under one command.

Each child is a plain `nibble relay --processes 1`: its own single-threaded loop, connection and producer,
sharing the outboxes' lanes with its siblings (and with relays elsewhere) exactly as separate commands would.
The supervisor only starts them, restarts one that dies, and passes SIGTERM/SIGINT on; a child whose
supervisor dies (even by kill -9) gets SIGTERM from the kernel (PR_SET_PDEATHSIG), so none is orphaned.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import subprocess
import sys
import time
from types import FrameType

log = logging.getLogger("nibble.relay.supervisor")

RESTART_DELAY_S = 1.0
_PR_SET_PDEATHSIG = 1


def default_processes() -> int:
    """One relay process per core: each is one single-threaded loop."""
    return len(os.sched_getaffinity(0))


def _die_with_parent() -> None:
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def _start(index: int, metrics_port: int) -> subprocess.Popen:
    # Each child serves its own metrics port: base, base + 1, ... (0 keeps them all off).
    env = {**os.environ, "NIBBLE_RELAY_METRICS_PORT": str(metrics_port + index if metrics_port else 0)}
    command = [sys.executable, "-m", "pipeline", "relay", "--processes", "1"]
    # preexec_fn is safe here: the supervisor has started no threads.
    return subprocess.Popen(command, env=env, preexec_fn=_die_with_parent)


def supervise(processes: int, metrics_port: int) -> int:
    stopping = False

    def stop(signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True
        log.info("stopping relay processes", extra={"signal": signal.Signals(signum).name})

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    children = [_start(index, metrics_port) for index in range(processes)]
    log.info("relay processes started", extra={"pids": [child.pid for child in children]})
    while not stopping:
        time.sleep(0.2)
        for index, child in enumerate(children):
            if child.poll() is not None and not stopping:
                log.warning("relay process exited; restarting it", extra={"pid": child.pid, "code": child.returncode})
                time.sleep(RESTART_DELAY_S)
                children[index] = _start(index, metrics_port)
    for child in children:
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
    codes = [child.wait() for child in children]
    return max(codes, default=0)
