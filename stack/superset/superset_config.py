"""Superset settings for the Nibble stack (read by Superset through SUPERSET_CONFIG_PATH).

Everything that differs per machine comes from the environment the stack (or docker-compose.yml) sets:
NIBBLE_SUPERSET_HOME (metadata database and the 0600 secret key file) and NIBBLE_SUPERSET_REDIS_URL.
"""

import os
from datetime import timedelta
from pathlib import Path

_HOME = Path(os.environ["NIBBLE_SUPERSET_HOME"])
_REDIS_URL = os.environ["NIBBLE_SUPERSET_REDIS_URL"]

SECRET_KEY = (_HOME / "secret_key").read_text().strip()
SQLALCHEMY_DATABASE_URI = f"sqlite:///{_HOME / 'superset.db'}?check_same_thread=false"


def _redis_cache(prefix: str, timeout: timedelta) -> dict:
    return {
        "CACHE_TYPE": "nibble_superset_cache.RedisOrNoCache",
        "CACHE_REDIS_URL": _REDIS_URL,
        "CACHE_KEY_PREFIX": f"superset_{prefix}_",
        "CACHE_DEFAULT_TIMEOUT": int(timeout.total_seconds()),
        # A Redis that went away costs a cache miss (nibble_superset_cache.py), not a failed request.
        "CACHE_OPTIONS": {"socket_connect_timeout": 1, "socket_timeout": 1},
    }


CACHE_CONFIG = _redis_cache("metadata", timedelta(days=1))
# Live dashboards: chart results are cached briefly, so an auto-refresh a minute later asks Pinot again.
DATA_CACHE_CONFIG = _redis_cache("data", timedelta(seconds=50))
FILTER_STATE_CACHE_CONFIG = {**_redis_cache("filter_state", timedelta(days=90)), "REFRESH_TIMEOUT_ON_RETRIEVAL": True}
EXPLORE_FORM_DATA_CACHE_CONFIG = {
    **_redis_cache("explore_form_data", timedelta(days=7)),
    "REFRESH_TIMEOUT_ON_RETRIEVAL": True,
}

# Loopback only and no TLS in front of it: the session cookie must work over plain http.
TALISMAN_ENABLED = False
SESSION_COOKIE_SECURE = False
SESSION_COOKIE_SAMESITE = "Lax"
# Pinot answers in well under a minute; a dead broker must not hold a worker for long.
SUPERSET_WEBSERVER_TIMEOUT = 60
SQLLAB_TIMEOUT = 60
