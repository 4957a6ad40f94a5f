"""Leases on background work: the one mechanism behind precompute chunks and model reports,
and whatever job comes next (docs/DESIGN.md, "Background jobs").

A row of a :class:`annotations.models.LeasedWork` model is a piece of work that waits
(``WAITING``), is held by one worker (``running``) or is closed. The rules:

* a claim (:func:`lease_claim`) takes a waiting row, or a running one whose heartbeat stopped
  for ``MMEVAL_CHUNK_STALE_SECONDS`` (its worker died), with a fresh ``claim`` token. It waits
  for the row lock instead of skipping the row: the dispatcher stamps ``dispatched_at`` right
  after publishing (:func:`lease_dispatch_stamp`), and a claim that skipped a waiting row would
  acknowledge its message and leave the work to the watchdog;
* a row claimed ``MMEVAL_CHUNK_MAX_ATTEMPTS`` times without finishing is given up (the caller
  says how: it knows what failed);
* only the holder of the token beats the heartbeat (:func:`lease_heartbeat`; the worker beats
  from a side thread, ``workers.heartbeat``), saves, releases or finishes the row
  (:func:`lease_update`, :func:`lease_release`, :func:`lease_finish`): a worker whose claim was
  taken over changes nothing;
* the watchdog and a process that takes the work over hand stale rows out again
  (:func:`lease_stale_reset`); a crash spends an attempt, a release does not.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from typing import Any, TypeVar

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q, QuerySet
from django.db.models.functions import Greatest
from django.utils import timezone

from annotations.models import LeasedWork

Work = TypeVar("Work", bound=LeasedWork)


def lease_stale_before(*, now: datetime) -> datetime:
    """Heartbeats older than this belong to a dead worker."""
    return now - timedelta(seconds=settings.MMEVAL_CHUNK_STALE_SECONDS)


def lease_takeable(*, model: type[LeasedWork], now: datetime) -> Q:
    """Rows a claim may take: waiting ones, and running ones whose heartbeat stopped."""
    return Q(status=model.WAITING) | Q(status=LeasedWork.RUNNING, heartbeat_at__lt=lease_stale_before(now=now))


def lease_claim(
    *,
    model: type[Work],
    pk: int,
    worker: str,
    where: Q | None = None,
    related: Iterable[str] = (),
    on_exhausted: Callable[[Work, datetime], None],
    on_claimed: Callable[[Work], None] | None = None,
) -> Work | None:
    """Claim row ``pk`` of ``model`` for ``worker`` (with the extra condition ``where``) with a
    fresh token. Returns it running, or None when it is closed, held by a live worker or given
    up: a row already claimed ``MMEVAL_CHUNK_MAX_ATTEMPTS`` times is handed to
    ``on_exhausted(row, now)`` (which closes it) instead. ``on_claimed(row)`` runs in the
    claim's transaction."""
    now = timezone.now()
    claim = uuid.uuid4().hex
    with transaction.atomic():
        row = (
            model.objects.select_for_update(of=("self",))  # waits for the lock: see the module's docstring
            .select_related(*related)
            .filter(lease_takeable(model=model, now=now), where or Q(), pk=pk)
            .first()
        )
        if row is None:
            return None
        if row.attempts >= settings.MMEVAL_CHUNK_MAX_ATTEMPTS:
            on_exhausted(row, now)
            return None
        model.objects.filter(pk=row.pk).update(
            status=LeasedWork.RUNNING,
            claim=claim,
            worker=worker[:200],
            attempts=row.attempts + 1,
            started_at=now,
            heartbeat_at=now,
            error="",
        )
        row.status, row.claim, row.worker, row.attempts = LeasedWork.RUNNING, claim, worker, row.attempts + 1
        row.started_at = row.heartbeat_at = now
        if on_claimed is not None:
            on_claimed(row)
    return row


def _held(*, model: type[LeasedWork], pk: int, claim: str) -> QuerySet:
    return model.objects.filter(pk=pk, claim=claim, status=LeasedWork.RUNNING)


def lease_heartbeat(*, model: type[LeasedWork], pk: int, claim: str, **fields: Any) -> bool:
    """Mark the row alive (with ``fields``, e.g. progress). False when the claim was lost."""
    return bool(_held(model=model, pk=pk, claim=claim).update(heartbeat_at=timezone.now(), **fields))


def lease_update(*, row: LeasedWork, **fields: Any) -> bool:
    """Save ``fields`` of a held row (and beat its heartbeat). False when the claim was lost."""
    return lease_heartbeat(model=type(row), pk=row.pk, claim=row.claim, **fields)


def lease_finish(*, row: LeasedWork, status: str, **fields: Any) -> bool:
    """Close a held row with ``status`` (and ``fields``). False when the claim was lost: the
    new holder finishes the work."""
    return bool(
        _held(model=type(row), pk=row.pk, claim=row.claim).update(status=status, finished_at=timezone.now(), **fields)
    )


def lease_release(*, row: LeasedWork) -> bool:
    """Give a held row back unfinished (a transient error, a time limit after progress): it
    waits again, and the attempt is not spent (it was no crash)."""
    released = _held(model=type(row), pk=row.pk, claim=row.claim).update(
        status=type(row).WAITING, claim="", attempts=Greatest(F("attempts") - 1, 0)
    )
    if released:
        row.status, row.claim = type(row).WAITING, ""
    return bool(released)


def lease_stale_reset(*, rows: QuerySet, now: datetime) -> list[int]:
    """Running rows among ``rows`` whose heartbeat stopped wait again (their worker died; the
    attempt stays spent). Returns their IDs."""
    stale = lease_stale_before(now=now)
    found = list(rows.filter(status=LeasedWork.RUNNING, heartbeat_at__lt=stale).values_list("pk", flat=True))
    if not found:
        return []
    model = rows.model
    return [
        pk
        for pk in found
        if model.objects.filter(pk=pk, status=LeasedWork.RUNNING, heartbeat_at__lt=stale).update(
            status=model.WAITING, claim=""
        )
    ]


def lease_dispatch_stamp(*, model: type[LeasedWork], pks: Iterable[int], **fields: Any) -> None:
    """Record that the rows' tasks were published now (the watchdog republishes rows not
    heard of since)."""
    pks = list(pks)
    if pks:
        model.objects.filter(pk__in=pks).update(dispatched_at=timezone.now(), **fields)
