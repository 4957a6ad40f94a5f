"""A Redis cache that degrades to a miss when Redis is down or slow.

Sessions are read from the cache first (``cached_db``) and the analysis keeps its reports
there. Redis is also the broker; when it refuses or hangs, participants must be unaffected
(pages come from the database instead) rather than get a 500. So every failed cache call is
logged and answered as a cache miss, and the socket timeouts (settings) keep a hung Redis
from holding a request for long. A dropped write can leave an older value behind: the
database stays the authority on sessions (``annotations/sessions.py``), and a counter that
cannot count (``incr``) counts nothing (participant entry limits).
"""

from __future__ import annotations

import logging

from django.core.cache.backends.redis import RedisCache
from redis.exceptions import RedisError

logger = logging.getLogger(__name__)


def _tolerant(name: str, fallback):
    """``RedisCache.<name>``, answering ``fallback(*args, **kwargs)`` when Redis fails."""
    method = getattr(RedisCache, name)

    def call(self, *args, **kwargs):
        try:
            return method(self, *args, **kwargs)
        except RedisError as exc:
            logger.warning("cache %s failed, treated as a miss: %s", name, exc)
            return fallback(*args, **kwargs)

    call.__name__ = name
    return call


def _default(key, default=None, *args, **kwargs):
    return default


class TolerantRedisCache(RedisCache):
    """Django's built-in ``RedisCache``; a Redis failure reads as a miss and writes are dropped."""

    get = _tolerant("get", _default)
    get_many = _tolerant("get_many", lambda *a, **k: {})
    has_key = _tolerant("has_key", lambda *a, **k: False)
    set = _tolerant("set", lambda *a, **k: None)
    set_many = _tolerant("set_many", lambda keys, *a, **k: list(keys))  # the keys that were not stored
    add = _tolerant("add", lambda *a, **k: False)
    touch = _tolerant("touch", lambda *a, **k: False)
    delete = _tolerant("delete", lambda *a, **k: False)
    delete_many = _tolerant("delete_many", lambda *a, **k: None)
    incr = _tolerant("incr", lambda *a, **k: 0)  # a counter that cannot count counts nothing (entry limits)
