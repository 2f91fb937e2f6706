"""A Redis cache for Superset that turns Redis being down into cache misses, so dashboards keep working uncached.

Named by CACHE_TYPE in superset_config.py; the stack puts this folder on Superset's PYTHONPATH.
"""

import logging
import time

from flask_caching.backends.rediscache import RedisCache
from redis.exceptions import RedisError

log = logging.getLogger(__name__)
_MISS = {
    "get": None,
    "get_many": None,
    "has": False,
    "add": False,
    "set": False,
    "set_many": [],
    "delete": False,
    "delete_many": [],
    "clear": False,
    "inc": None,
    "dec": None,
}
_last_warning = [0.0]


class RedisOrNoCache(RedisCache):
    """RedisCache whose every call answers "not cached" while Redis does not answer (one warning a minute)."""

    def __getattribute__(self, name):
        method = super().__getattribute__(name)
        if name not in _MISS:
            return method

        def guarded(*args, **kwargs):
            try:
                return method(*args, **kwargs)
            except RedisError as exc:
                if time.monotonic() - _last_warning[0] > 60:
                    _last_warning[0] = time.monotonic()
                    log.warning("Redis cache unavailable, serving uncached: %s", exc)
                if name == "get_many":
                    return [None] * len(args)
                return _MISS[name]

        return guarded
