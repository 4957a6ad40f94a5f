"""Limits on participant entry, so that one client cannot take a study's places.

Counted in the shared cache (Redis, which every web process sees; a per-process cache
without one), per fixed window of ``MMEVAL_ENTRY_WINDOW_SECONDS``:

- **per address**: at most ``MMEVAL_ENTRY_ADDRESS_LIMIT`` new participants from one client
  address (``mmeval.auth.client_ip``) across all studies. Generous by default (30 per 10
  minutes), so a lab or a classroom behind one NAT address gets in;
- **per platform ID**: at most ``MMEVAL_ENTRY_PLATFORM_ID_LIMIT`` entries under one
  Prolific or MTurk ID (following the study link, consenting): strict, since a real worker
  enters a few times at most, while guessing another worker's platform session, or
  hammering with one ID, takes many;
- **share of a study**: one address takes at most ``MMEVAL_ENTRY_ADDRESS_SHARE_PERCENT`` % of
  a study's places (rounded up, at least one), however slowly it asks.

A refused entry creates nothing and gets a 429 page with ``Retry-After``. A limit of 0 (or a
share of 100) turns that limit off. When Redis fails, the counters read as zero: a broken
cache must not lock the crowd out (``annotations/cache.py``).
"""

from __future__ import annotations

import math
import time

from django.conf import settings
from django.core.cache import cache

from annotations.models import Slot, Study

SHARE_SECONDS = 60 * 60 * 24 * 90  # how long a study's per-address count is kept


class EntryThrottled(Exception):
    """An entry over a limit: the message for the participant and when to try again."""

    code = "busy"

    def __init__(self, message: str, *, retry_after: int):
        self.retry_after = retry_after
        super().__init__(message)


def _window() -> tuple[int, int]:
    """The current window's number and the seconds left in it."""
    seconds = settings.MMEVAL_ENTRY_WINDOW_SECONDS
    now = time.time()
    return int(now // seconds), max(1, math.ceil(seconds - now % seconds))


def _count(key: str, *, timeout: int) -> int:
    """Add one to ``key`` and return the new count (atomic in Redis)."""
    cache.add(key, 0, timeout)
    try:
        return cache.incr(key)
    except ValueError:  # expired between add and incr
        cache.add(key, 1, timeout)
        return 1


def entry_platform_id_admit(*, platform: str, platform_id: str) -> None:
    """Count an entry under a crowd platform's worker ID; refuse one over the limit."""
    limit = settings.MMEVAL_ENTRY_PLATFORM_ID_LIMIT
    if not limit or not platform_id:
        return
    window, left = _window()
    if _count(f"entry:platform-id:{platform}:{platform_id}:{window}", timeout=left + 1) > limit:
        raise EntryThrottled(
            "This worker ID has opened the study too many times in a short while. "
            f"Please wait {_minutes(left)} and open your study link again.",
            retry_after=left,
        )


def study_places(*, study: Study) -> int:
    """How many participants the study's test places make room for (kept for a few minutes:
    a launched design does not change)."""

    def count() -> int:
        slots = Slot.objects.filter(condition__study=study).count()
        return max(1, math.ceil(slots / max(1, study.items_per_participant)))

    return cache.get_or_set(f"entry:places:{study.public_id}", count, 300)


def entry_address_admit(*, study: Study, address: str | None) -> None:
    """Count a new participant from ``address``; refuse one over the window's limit or the
    address's share of the study. Call only when a participant is about to be created."""
    if not address:
        return
    limit = settings.MMEVAL_ENTRY_ADDRESS_LIMIT
    if limit:
        window, left = _window()
        if _count(f"entry:address:{address}:{window}", timeout=left + 1) > limit:
            raise EntryThrottled(
                "Too many people have joined from your network in the last few minutes. "
                f"Please try again in {_minutes(left)}.",
                retry_after=left,
            )
    share = settings.MMEVAL_ENTRY_ADDRESS_SHARE_PERCENT
    if share < 100:
        cap = max(1, math.ceil(study_places(study=study) * share / 100))
        if _count(f"entry:share:{study.public_id}:{address}", timeout=SHARE_SECONDS) > cap:
            raise EntryThrottled(
                "This study has taken as many people from your network as it can. Thank you for your interest!",
                retry_after=settings.MMEVAL_ENTRY_WINDOW_SECONDS,
            )


def _minutes(seconds: int) -> str:
    minutes = max(1, math.ceil(seconds / 60))
    return f"{minutes} minute{'s' if minutes != 1 else ''}"
