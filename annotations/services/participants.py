"""The participant flow: entry, arm assignment, item leases and responses.

Caps hold under concurrency because every (arm, item) has exactly ``raters_per_item`` slot
rows and an assignment must take one under ``SELECT … FOR UPDATE SKIP LOCKED``. A
participant never gets an item twice because (participant, item) is unique.
"""

from __future__ import annotations

import random
from datetime import timedelta

from django.db import IntegrityError, transaction
from django.db.models import Count, Q
from django.utils import timezone

from annotations.models import (
    Assignment,
    Condition,
    InviteToken,
    Participant,
    Prediction,
    Response,
    Slot,
    Study,
)
from annotations.selectors import study_candidates


class ParticipantError(Exception):
    """A polite refusal shown to the participant. ``code`` lets the page pick its wording."""

    def __init__(self, code: str, message: str):
        self.code = code
        super().__init__(message)


class SubmissionRefused(Exception):
    """A forged, stale or malformed submission. Nothing was stored."""


def _rng(*parts) -> random.Random:
    return random.Random(":".join(str(p) for p in parts))


def participant_enter(
    *, study: Study, platform: str, platform_id: str = "", platform_data: dict | None = None,
    invite_token: str | None = None,
) -> Participant:
    """Return the participant for this entry, creating one in the least-filled arm.

    A returning platform ID or invite resumes the same participant; one who finished is
    refused politely.
    """
    with transaction.atomic():
        # One lock per study serialises arm balancing; it is held for a few queries only.
        study = Study.objects.select_for_update().get(pk=study.pk)
        if study.status != Study.Status.LIVE:
            raise ParticipantError("closed", "This study is not open at the moment.")

        invite = None
        if invite_token is not None:
            invite = InviteToken.objects.select_for_update().filter(study=study, token=invite_token).first()
            if invite is None:
                raise ParticipantError("invalid", "This invitation link is not valid.")
            if invite.participant_id is not None:
                return _resume(invite.participant)
            platform, platform_id = Participant.Platform.INVITE, ""

        if platform_id:
            existing = Participant.objects.filter(study=study, platform=platform, platform_id=platform_id).first()
            if existing is not None:
                return _resume(existing)

        condition = _least_filled_condition(study=study)
        participant = Participant.objects.create(
            study=study, condition=condition, platform=platform, platform_id=platform_id,
            platform_data=platform_data or {},
        )
        if invite is not None:
            invite.participant = participant
            invite.used_at = timezone.now()
            invite.save(update_fields=["participant", "used_at"])
        return participant


def _resume(participant: Participant) -> Participant:
    if participant.phase == Participant.Phase.DONE:
        raise ParticipantError("finished", "You have already completed this study. Thank you!")
    return participant


def _least_filled_condition(*, study: Study) -> Condition:
    """Balanced random assignment: the arm with the fewest participants among arms that still
    have free slots; ties are broken by the study's seed."""
    arms = list(
        study.conditions.annotate(
            n_participants=Count("participants", filter=~Q(participants__platform=Participant.Platform.PREVIEW)),
        ).order_by("id")
    )
    open_arms = [c for c in arms if Slot.objects.filter(condition=c, assignment__isnull=True).exists()]
    if not open_arms:
        raise ParticipantError("full", "This study is full. Thank you for your interest!")
    fewest = min(c.n_participants for c in open_arms)
    tied = [c for c in open_arms if c.n_participants == fewest]
    total = sum(c.n_participants for c in arms)
    return _rng(study.seed, "arm", total).choice(tied)


def participant_consent(*, participant: Participant) -> Participant:
    if participant.phase == Participant.Phase.CONSENT:
        Participant.objects.filter(pk=participant.pk, phase=Participant.Phase.CONSENT).update(
            phase=Participant.Phase.INSTRUCTIONS)
        participant.phase = Participant.Phase.INSTRUCTIONS
    return participant


def participant_start_test(*, participant: Participant) -> Participant:
    """Leave the instructions and lease this participant's test items."""
    if participant.phase in (Participant.Phase.CONSENT, Participant.Phase.INSTRUCTIONS):
        assignments_allocate(participant=participant)
        Participant.objects.filter(pk=participant.pk).update(phase=Participant.Phase.TEST)
        participant.phase = Participant.Phase.TEST
    return participant


def assignments_allocate(*, participant: Participant) -> list[Assignment]:
    """Lease up to ``items_per_participant`` distinct items the participant has not seen,
    each holding a free slot of their arm. Raises ParticipantError when none is free."""
    study = participant.study
    now = timezone.now()
    with transaction.atomic():
        # Serialise a double click on "Start": the second call then finds nothing to lease.
        Participant.objects.select_for_update().filter(pk=participant.pk).first()
        held = participant.assignments.filter(status=Assignment.Status.ACTIVE).count()
        answered = participant.assignments.filter(status=Assignment.Status.ANSWERED).count()
        need = study.items_per_participant - held - answered
        if need <= 0:
            return []
        seen = list(participant.assignments.values_list("item_id", flat=True))
        # Lowest slot index first, so every item gets its n-th rater before any gets its (n+1)-th.
        free = list(
            Slot.objects.select_for_update(skip_locked=True)
            .filter(condition_id=participant.condition_id, assignment__isnull=True)
            .exclude(item_id__in=seen)
            .order_by("index", "sort_key")[: need * study.raters_per_item]
        )
        chosen: dict[int, Slot] = {}
        for slot in free:
            if slot.item_id not in chosen:
                chosen[slot.item_id] = slot
            if len(chosen) == need:
                break
        if not chosen and held == 0:
            raise ParticipantError("full", "This study is full. Thank you for your interest!")

        predictions = {p.item_id: p for p in Prediction.objects.filter(model=study.model, item_id__in=list(chosen))}
        rng = _rng(study.seed, "order", participant.public_id)
        items = list(chosen)
        rng.shuffle(items)
        start = participant.assignments.count()
        lease_until = now + timedelta(minutes=study.lease_minutes)
        created = []
        for offset, item_id in enumerate(items):
            candidates = study_candidates(study=study, prediction=predictions[item_id])
            _rng(study.seed, "candidates", participant.public_id, item_id).shuffle(candidates)
            created.append(Assignment(
                participant=participant, item_id=item_id, condition_id=participant.condition_id,
                position=start + offset, candidate_order=candidates, lease_expires_at=lease_until,
            ))
        Assignment.objects.bulk_create(created)
        for assignment in created:
            slot = chosen[assignment.item_id]
            slot.assignment = assignment
        Slot.objects.bulk_update(list(chosen.values()), ["assignment"])
        return created


def assignment_current(*, participant: Participant) -> Assignment | None:
    """The next unanswered item, or None when the participant has answered all they hold."""
    return (
        participant.assignments.filter(status=Assignment.Status.ACTIVE, lease_expires_at__gt=timezone.now())
        .select_related("item")
        .order_by("position")
        .first()
    )


def assignment_serve(*, assignment: Assignment) -> Assignment:
    """Record the first time an item page is served: the start of its response time."""
    if assignment.served_at is None:
        now = timezone.now()
        Assignment.objects.filter(pk=assignment.pk, served_at__isnull=True).update(served_at=now)
        assignment.refresh_from_db(fields=["served_at"])
    return assignment


def response_submit(
    *, participant: Participant, assignment_public_id, guess: str, confidence,
) -> Response:
    """Store the answer to one assignment. Idempotent: a repeat returns the stored response.

    Refuses (``SubmissionRefused``) an assignment of someone else, an expired or unknown
    one, a guess outside the candidates shown, or a confidence outside 1–5.
    """
    now = timezone.now()
    with transaction.atomic():
        assignment = (
            Assignment.objects.select_for_update().select_related("item").filter(public_id=assignment_public_id).first()
        )
        if assignment is None or assignment.participant_id != participant.pk:
            raise SubmissionRefused("this item is not assigned to you")
        existing = Response.objects.filter(assignment=assignment).first()
        if existing is not None:
            return existing
        if assignment.status != Assignment.Status.ACTIVE or assignment.lease_expires_at <= now:
            raise SubmissionRefused("the time for this item has run out")
        if assignment.served_at is None:
            raise SubmissionRefused("this item was never shown")
        if guess not in assignment.candidate_order:
            raise SubmissionRefused("the answer is not one of the choices shown")
        try:
            confidence = int(confidence)
        except (TypeError, ValueError):
            raise SubmissionRefused("confidence must be a number from 1 to 5") from None
        if not 1 <= confidence <= 5:
            raise SubmissionRefused("confidence must be a number from 1 to 5")
        prediction = Prediction.objects.get(model_id=participant.study.model_id, item_id=assignment.item_id)
        try:
            with transaction.atomic():
                response = Response.objects.create(
                    assignment=assignment, participant=participant, item_id=assignment.item_id,
                    condition_id=assignment.condition_id, guess=guess, confidence=confidence,
                    rt_ms=max(0, int((now - assignment.served_at).total_seconds() * 1000)),
                    candidate_order=assignment.candidate_order, model_prediction=prediction.label,
                    gold_label=assignment.item.gold_label,
                )
        except IntegrityError:
            return Response.objects.get(assignment=assignment)
        Assignment.objects.filter(pk=assignment.pk).update(status=Assignment.Status.ANSWERED)
        if not participant.assignments.filter(status=Assignment.Status.ACTIVE).exclude(pk=assignment.pk).exists():
            Participant.objects.filter(pk=participant.pk).update(phase=Participant.Phase.DONE, finished_at=now)
            participant.phase = Participant.Phase.DONE
        return response


def participant_sync_phase(*, participant: Participant) -> Participant:
    """A test-phase participant whose leases all ran out is done with what they answered."""
    if participant.phase == Participant.Phase.TEST and assignment_current(participant=participant) is None:
        if participant.responses.exists():
            Participant.objects.filter(pk=participant.pk).update(phase=Participant.Phase.DONE, finished_at=timezone.now())
            participant.phase = Participant.Phase.DONE
    return participant


def leases_reclaim(*, now=None) -> int:
    """Expire unanswered leases past their time and return their slots to the pool."""
    now = now or timezone.now()
    with transaction.atomic():
        expired = list(
            Assignment.objects.select_for_update(skip_locked=True)
            .filter(status=Assignment.Status.ACTIVE, lease_expires_at__lte=now)
            .values_list("pk", flat=True)
        )
        if not expired:
            return 0
        Slot.objects.filter(assignment_id__in=expired).update(assignment=None)
        Assignment.objects.filter(pk__in=expired).update(status=Assignment.Status.EXPIRED)
    return len(expired)


def invites_create(*, study: Study, count: int) -> list[InviteToken]:
    return InviteToken.objects.bulk_create([InviteToken(study=study) for _ in range(count)])
