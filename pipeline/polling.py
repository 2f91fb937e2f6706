"""Waiting for something to happen, with back-off and a deadline: the rebuild, the Pinot table apply and the
tests each wait this way, and say for themselves what did not happen."""

from __future__ import annotations

import time
from collections.abc import Callable


def poll(condition: Callable[[], bool], timeout_s: float, longest: float = 5.0) -> bool:
    """Call `condition` until it holds (True) or `timeout_s` passed (False), sleeping 0.2 s at first and
    doubling up to `longest` seconds."""
    deadline, delay = time.monotonic() + timeout_s, 0.2
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(delay)
        delay = min(delay * 2, longest)
    return True
