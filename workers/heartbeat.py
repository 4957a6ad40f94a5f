"""The worker's side of a lease (``annotations.services.leases``): beat the heartbeat of the
work it holds from a side thread while the engine computes, so a long engine call is not
mistaken for a dead worker. Precompute chunks and model reports use it, as will the next job."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from django.conf import settings
from django.db import connections

logger = logging.getLogger(__name__)


@contextmanager
def heartbeat_kept(*, beat: Callable[[], object], name: str) -> Iterator[None]:
    """Call ``beat()`` every ``MMEVAL_CHUNK_HEARTBEAT_SECONDS`` from a side thread named
    ``name`` until the block ends. A failing beat is logged and the next one tried: when the
    database is away, the watchdog decides later whether the worker is dead."""
    stop = threading.Event()

    def run() -> None:
        try:
            while not stop.wait(settings.MMEVAL_CHUNK_HEARTBEAT_SECONDS):
                try:
                    beat()
                except Exception as exc:  # the database is away: the watchdog decides later
                    logger.warning("heartbeat %s failed: %s", name, exc)
        finally:
            connections.close_all()  # this thread's connections only

    thread = threading.Thread(target=run, name=name, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=10)
