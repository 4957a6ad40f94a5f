"""A bound on how long a web request waits for a database that stopped answering.

libpq has no read timeout: a kept connection (``DB_CONN_MAX_AGE``) to a Postgres that hangs
(a frozen host or VM, a dead switch, a stopped backend) blocks the request until gunicorn
kills the worker, two minutes later. TCP keepalives and ``tcp_user_timeout`` (settings) catch
a peer that vanished, but not one whose kernel still acknowledges. So the web role runs
psycopg2 through a wait callback: every wait for the server (connect, query, fetch, commit)
gives up after ``DB_READ_TIMEOUT`` seconds of silence. psycopg2 then closes the connection
and raises ``OperationalError``, which the participant sees as the retry page
(``annotations/middleware.py``). A query that is slow but answering is not cut: the bound is
on silence, not on a whole query. Installed by ``mmeval/wsgi.py`` only: Celery workers and
management commands, whose long statements are expected, keep libpq's blocking waits.
"""

from __future__ import annotations

import select

import psycopg2
import psycopg2.extensions

_timeout_seconds: float | None = None


def wait_with_deadline(conn) -> None:
    """psycopg2's wait callback (as ``psycopg2.extras.wait_select``, with a bound)."""
    while True:
        state = conn.poll()
        if state == psycopg2.extensions.POLL_OK:
            return
        if state == psycopg2.extensions.POLL_READ:
            events = select.POLLIN
        elif state == psycopg2.extensions.POLL_WRITE:
            events = select.POLLOUT
        else:
            raise psycopg2.OperationalError(f"bad state from poll: {state}")
        poller = select.poll()
        poller.register(conn.fileno(), events | select.POLLERR | select.POLLHUP)
        if not poller.poll(None if _timeout_seconds is None else _timeout_seconds * 1000):
            raise psycopg2.OperationalError(
                f"the database sent nothing for {_timeout_seconds:g} s (DB_READ_TIMEOUT); connection closed"
            )


def database_read_timeout_install(*, seconds: float) -> None:
    """Bound every wait for Postgres in this process at ``seconds`` (0: no bound, libpq's own
    blocking waits). For the whole process: every thread's connections."""
    global _timeout_seconds
    if seconds > 0:
        _timeout_seconds = seconds
        psycopg2.extensions.set_wait_callback(wait_with_deadline)
    else:
        _timeout_seconds = None
        psycopg2.extensions.set_wait_callback(None)
