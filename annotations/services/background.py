"""Embedded mode (no broker configured): work that a Celery worker would do runs in a daemon
thread of this process instead, so a web request never computes.

The work is named like any published task (``workers.tasks.<name>``) and looked up in the
Celery app's registry when the thread starts, so services never import the workers' code: the
same one-way arrow as publishing to a broker by name.
"""

from __future__ import annotations

import logging
import threading

from django.db import connections

logger = logging.getLogger(__name__)

_threads: dict[str, threading.Thread] = {}
_threads_lock = threading.Lock()


def task_run_in_background(*, task_name: str, args: tuple, thread_name: str) -> None:
    """Run the task ``task_name`` with ``args`` in a daemon thread called ``thread_name`` (the
    runner's name a job records); a second call while that thread runs does nothing (one
    thread per job)."""
    key = thread_name
    with _threads_lock:
        running = _threads.get(key)
        if running is not None and running.is_alive():
            return

        def run() -> None:
            from mmeval.celery import app
            from mmeval.database import database_waits_unbounded

            try:
                app.loader.import_default_modules()  # the task modules, as a worker imports them at start
                with database_waits_unbounded():  # a worker's waits, not a web request's (mmeval/database.py)
                    app.tasks[task_name](*args)  # called, not published: runs here, now
            except Exception:
                logger.exception("background task %s%r crashed", task_name, args)
            finally:
                connections.close_all()  # this thread's connections only

        thread = threading.Thread(target=run, name=thread_name, daemon=True)
        _threads[key] = thread
        thread.start()
