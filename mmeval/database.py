"""A bound on how long a web request waits for a database that stopped answering.

libpq has no read timeout: a kept connection (``DB_CONN_MAX_AGE``) to a Postgres that hangs
(a frozen host or VM, a dead switch, a stopped backend) blocks the request until gunicorn
kills the worker, two minutes later. TCP keepalives and ``tcp_user_timeout`` (settings) catch
a peer that vanished, but not one whose kernel still acknowledges. So the web role runs
psycopg2 through a wait callback: every wait for the server (connect, query, fetch, commit)
gives up after ``DB_READ_TIMEOUT`` seconds of silence. psycopg2 then closes the connection
and raises ``OperationalError``, which the participant sees as the retry page
(``annotations/middleware.py``). The bound is on silence, and Postgres sends nothing while a
statement runs or waits for a row lock: a web request must not run a statement that takes
longer. Installed by ``mmeval/wsgi.py`` only: Celery workers and management commands, whose long
statements and lock waits are expected, keep libpq's blocking waits, and so do the background
threads of embedded mode (``database_waits_unbounded``, used by ``services/background.py``),
whose claims wait for row locks on purpose.
"""

from __future__ import annotations

import contextlib
import select
import threading
from collections.abc import Iterator

import psycopg2
import psycopg2.extensions

_timeout_seconds: float | None = None
_this_thread = threading.local()  # .unbounded: this thread waits as long as it takes


@contextlib.contextmanager
def database_waits_unbounded() -> Iterator[None]:
    """Within the block, this thread's waits for Postgres are not bounded (a background job in
    a web process: its lock waits and long statements are expected)."""
    previous = getattr(_this_thread, "unbounded", False)
    _this_thread.unbounded = True
    try:
        yield
    finally:
        _this_thread.unbounded = previous


def wait_with_deadline(conn) -> None:
    """psycopg2's wait callback (as ``psycopg2.extras.wait_select``, with a bound)."""
    limit = None if getattr(_this_thread, "unbounded", False) else _timeout_seconds
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
        if not poller.poll(None if limit is None else limit * 1000):
            raise psycopg2.OperationalError(
                f"the database sent nothing for {limit:g} s (DB_READ_TIMEOUT); connection closed"
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
