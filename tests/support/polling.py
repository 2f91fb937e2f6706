"""Waiting for the pipeline to get somewhere, with a deadline and a message that says what did not happen."""

from __future__ import annotations

from collections.abc import Callable

from pipeline.polling import poll


def wait_until(condition: Callable[[], bool], timeout_s: float = 120, what: str = "condition") -> None:
    if not poll(condition, timeout_s, longest=0.2):  # tests wait on quick local services: no back-off
        raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
