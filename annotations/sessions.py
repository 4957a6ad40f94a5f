"""The database is the authority on a session; a shared cache in front of it is a hint.

Sessions are read from Redis first (``cached_db``) and written through to the database. A
write that Redis dropped (``TolerantRedisCache`` while Redis stalls) or a Redis restarted from
an old snapshot leaves an older copy in the cache, and that copy would win: a participant
whose session the database holds would be told their session has ended. So before a page
concludes that a browser has no participant, it reads the session from the database; when
that differs from the cached copy, the database's copy replaces it (and is written back to
the cache when the response saves the session). Only this negative case costs a query, so a
participant's pages still read no session row.
"""

from __future__ import annotations

from django.contrib.sessions.backends.base import SessionBase
from django.contrib.sessions.backends.cached_db import SessionStore as CachedDatabaseSessionStore
from django.contrib.sessions.backends.db import SessionStore as DatabaseSessionStore


def session_value_authoritative(*, session: SessionBase, key: str):
    """``session[key]``, or, when the session in hand lacks it, the database's value (the
    cached copy is then replaced by the database's). None when neither has it."""
    value = session.get(key)
    if value is not None or not isinstance(session, CachedDatabaseSessionStore):
        return value
    if session.session_key is None or session.modified:
        return None  # a new session, or one this request changed: nothing older to prefer
    stored = DatabaseSessionStore(session_key=session.session_key).load()
    if stored.get(key) is None:
        return None
    session.clear()
    session.update(stored)  # modified: the response writes it through, repairing the cache
    return stored[key]
