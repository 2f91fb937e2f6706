"""Plain HTTP probes."""

from __future__ import annotations

import requests


def ok(url: str, timeout_s: float = 2) -> bool:
    """Whether `url` answers 200 (a health endpoint)."""
    try:
        return requests.get(url, timeout=timeout_s).status_code == 200
    except requests.RequestException:
        return False
