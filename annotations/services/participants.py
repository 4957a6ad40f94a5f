"""The participant flow: entry, arm assignment, phases, item leases, responses.

Phases: consent -> instructions -> [pre-test] -> [learning] -> test -> [survey] -> done.
The pre-test comes before learning, as in Hase & Bansal (2020): it measures how well people
simulate the model before they have seen any explanation or any of its answers.

Leaving the instructions leases everything at once, with one expiry (the study's time
limit): the test items, each holding one of its arm's rater slots, plus pre-test copies of
them, the learning items and the attention checks, none of which take a slot. Positions are
laid out in phase order, so the participant's next item is simply their lowest-position
active lease.

Caps hold under concurrency because every (arm, item) has exactly ``raters_per_item`` slot
rows and a test assignment must take one under ``SELECT … FOR UPDATE SKIP LOCKED``. A
participant never gets an item twice in a phase because (participant, item, phase) is unique.

A participant's request locks only that participant's rows (their participant row and
assignments) and the slots it takes. No ``select_for_update`` joins another table, or it
locks its own table only (``of=("self",)``); arm assignment needs no study lock (see
``participant_enter``); other participants' expired leases are reclaimed by beat every
minute, and inside a request only when the request found no free slot.

Caps, idempotency and nothing lost: docs/DESIGN.md, "Invariants and where they are held".
"""

from __future__ import annotations

import json
import random
from collections.abc import Mapping
from datetime import datetime, timedelta

from django.core.cache import cache
from django.core.exceptions import ValidationError
from django.db import IntegrityError, connection, transaction
from django.db.models import Count, Exists, Max, OuterRef, Q, Subquery
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
    StudyEntryCounter,
    StudyItem,
)
from annotations.selectors.counterfactual import counterfactual_candidates
from annotations.selectors.participants import participant_quality, participant_title_cache_key
from annotations.selectors.rationales import rationale_instructed_marks
from annotations.selectors.studies import study_candidates
from annotations.services.client_timing import client_timing_validate
from annotations.services.counterfactual import counterfactual_response_fields
from annotations.services.dashboard import dashboard_response_stored
from annotations.services.entry_limits import entry_address_admit, entry_platform_id_admit
from annotations.services.judging import RATING_FIELDS, SIDES, JudgementRefused, judgement_fields, preview_pair
from annotations.services.rationales import MarksError, rationale_marks_check
from annotations.study_tasks import COUNTERFACTUAL, PREFERENCE, RATING, RATIONALE, study_task

# The item phases, in the order a participant goes through them.
ITEM_PHASES = (Participant.Phase.PRETEST, Participant.Phase.LEARNING, Participant.Phase.TEST)
MAX_COMMENT = 5000


CROWD_PLATFORMS = (Participant.Platform.PROLIFIC, Participant.Platform.MTURK)


class ParticipantError(Exception):
    """A polite refusal shown to the participant. ``code`` lets the page pick its wording."""

    def __init__(self, code: str, message: str):
        self.code = code
        super().__init__(message)


class SubmissionRefused(Exception):
    """A forged, stale or malformed submission. Nothing was stored."""


class MarksRefused(SubmissionRefused):
    """A rationale whose marks do not fit the item (``services.rationales``). Nothing was stored."""


def _rng(*parts) -> random.Random:
    return random.Random(":".join(str(p) for p in parts))


# --------------------------------------------------------------------------- entry


def participant_title_remember(*, study: Study) -> None:
    """Keep the study's public title in the cache, for the page a participant gets while the
    database is unreachable (``participant_title_cached``)."""
    cache.set(participant_title_cache_key(study_public_id=study.public_id), study.title_for_participants, None)


def participant_enter(
    *,
    study: Study,
    platform: str,
    platform_id: str = "",
    platform_data: dict | None = None,
    invite_token: str | None = None,
    address: str | None = None,
) -> Participant:
    """Return the participant for this entry, creating one in an arm chosen by
    ``_entry_condition`` (balanced, seeded, reproducible). Entry limits per client
    ``address`` and platform ID (``entry_limits.py``) raise ``EntryThrottled``.

    A returning platform ID or invite resumes the same participant; one who finished is
    refused politely. Two entries racing with the same platform ID end up as one participant
    (the unique constraint refuses the second row, which then resumes the first). No study
    row is locked: only the invite row, when there is one.
    """
    if platform == Participant.Platform.PREVIEW:
        raise ParticipantError("invalid", "Previews start from the researcher's study page.")
    if study.status != Study.Status.LIVE:
        raise ParticipantError("closed", "This study is not open at the moment.")
    if invite_token is not None:
        return _enter_with_invite(study=study, invite_token=invite_token)
    if platform in CROWD_PLATFORMS:
        entry_platform_id_admit(platform=platform, platform_id=platform_id)
    if platform_id:
        existing = Participant.objects.filter(study=study, platform=platform, platform_id=platform_id).first()
        if existing is not None:
            return participant_resume(participant=existing, platform_data=platform_data)
    entry_address_admit(study=study, address=address)
    condition = _entry_condition(study=study)
    try:
        with transaction.atomic():
            return Participant.objects.create(
                study=study,
                condition=condition,
                platform=platform,
                platform_id=platform_id,
                platform_data=platform_data or {},
            )
    except IntegrityError:
        existing = Participant.objects.filter(study=study, platform=platform, platform_id=platform_id).first()
        if existing is None:
            raise
        return participant_resume(participant=existing, platform_data=platform_data)


def _enter_with_invite(*, study: Study, invite_token: str) -> Participant:
    invite = InviteToken.objects.select_related("participant").filter(study=study, token=invite_token).first()
    if invite is None:
        raise ParticipantError("invalid", "This invitation link is not valid.")
    if invite.participant_id is not None:
        return participant_resume(participant=invite.participant)
    condition = _entry_condition(study=study)  # before the transaction: the invite row is its only lock
    with transaction.atomic():
        # The invite row serialises two uses of one link: the second resumes the first.
        invite = InviteToken.objects.select_for_update().get(pk=invite.pk)
        if invite.participant_id is not None:
            return participant_resume(participant=invite.participant)
        participant = Participant.objects.create(
            study=study, condition=condition, platform=Participant.Platform.INVITE, platform_id=""
        )
        invite.participant = participant
        invite.used_at = timezone.now()
        invite.save(update_fields=["participant", "used_at"])
        return participant


# The platform's per-attempt ID: knowing a worker's platform ID alone must not resume their
# session (MTurk worker IDs are semi-public).
PLATFORM_SESSION_KEYS = {Participant.Platform.PROLIFIC: "SESSION_ID", Participant.Platform.MTURK: "assignmentId"}


def participant_resume(*, participant: Participant, platform_data: dict | None = None) -> Participant:
    """A returning participant carries on where they stopped; a finished one is refused.

    A crowd worker coming back through the platform link must bring the same platform
    session (Prolific SESSION_ID, MTurk assignmentId) as when they started."""
    if participant.phase == Participant.Phase.DONE:
        if participant.timed_out:
            raise ParticipantError("expired", "The time for this study ran out before any answer was recorded.")
        if participant.partial:
            raise ParticipantError(
                "finished", "The time for this study ran out; your answers were recorded. Thank you!"
            )
        raise ParticipantError("finished", "You have already completed this study. Thank you!")
    key = PLATFORM_SESSION_KEYS.get(participant.platform)
    if platform_data is not None and key is not None:
        started_with = (participant.platform_data or {}).get(key, "")
        if started_with and started_with != (platform_data or {}).get(key, ""):
            raise ParticipantError(
                "elsewhere",
                "This study was started in another session of yours. "
                "Please continue it there, or contact the researcher.",
            )
    return participant


def _entry_condition(*, study: Study) -> Condition:
    """The arm of the next participant: permuted-block randomisation. Entries are numbered
    per study (``StudyEntryCounter``); each block of as many entries as there are arms gets
    every arm once, in an order drawn from the study's seed and the block number. So arms
    stay within one participant of each other while all are open, and the sequence is
    reproducible from the seed. An arm with no free slot is skipped for the least-filled open
    arm (ties broken by the seed). Raises ParticipantError('full') when no arm has a free
    slot, even after reclaiming expired leases."""
    arms = _arms_with_free_slots(study=study)
    if not any(is_open for _, is_open in arms):
        # Beat reclaims every minute; without it (the embedded setup) this keeps a study
        # from staying "full" when leases ran out.
        if leases_reclaim():
            arms = _arms_with_free_slots(study=study)
        if not any(is_open for _, is_open in arms):
            raise ParticipantError("full", "This study is full. Thank you for your interest!")
    number = _study_entry_next(study=study)
    block, place = divmod(number - 1, len(arms))
    order = [condition for condition, _ in arms]
    _rng(study.seed, "arm-block", block).shuffle(order)
    chosen = order[place]
    if {c.pk: is_open for c, is_open in arms}[chosen.pk]:
        return chosen
    open_arms = [condition for condition, is_open in arms if is_open]
    counts = dict(
        Participant.objects.filter(condition__in=open_arms)
        .exclude(platform=Participant.Platform.PREVIEW)
        .values("condition")
        .annotate(n=Count("id"))
        .values_list("condition", "n")
    )
    fewest = min(counts.get(c.pk, 0) for c in open_arms)
    tied = [c for c in open_arms if counts.get(c.pk, 0) == fewest]
    return _rng(study.seed, "arm", number).choice(tied)


def _arms_with_free_slots(*, study: Study) -> list[tuple[Condition, bool]]:
    """The study's arms in id order, each with whether it has a free slot (one query)."""
    free = Slot.objects.filter(condition=OuterRef("pk"), assignment__isnull=True)
    return [(c, c.has_free_slot) for c in study.conditions.annotate(has_free_slot=Exists(free)).order_by("id")]


def _study_entry_next(*, study: Study) -> int:
    """Count one more entry into ``study`` and return its number (1, 2, …). One statement
    (call it outside a transaction): the counter row is locked for that statement only."""
    table = StudyEntryCounter._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} (study_id, entries) VALUES (%s, 1) "
            f"ON CONFLICT (study_id) DO UPDATE SET entries = {table}.entries + 1 RETURNING entries",
            [study.pk],
        )
        return cursor.fetchone()[0]


def participant_preview_start(*, study: Study, condition: Condition | None = None) -> Participant:
    """A researcher's walk through the study as a participant of one arm. Preview
    participants take no slots and their answers are not data (exports and progress leave
    platform=preview out), so a study can be previewed before launch."""
    if study.status not in (Study.Status.READY, Study.Status.LIVE):
        raise ParticipantError("closed", "A study can be previewed once precompute has finished.")
    if condition is None:
        condition = study.conditions.exclude(is_baseline=True).first() or study.conditions.first()
    elif condition.study_id != study.pk:
        raise ParticipantError("invalid", "That arm is not part of this study.")
    return Participant.objects.create(study=study, condition=condition, platform=Participant.Platform.PREVIEW)


def participant_consent(*, participant: Participant) -> Participant:
    if participant.phase == Participant.Phase.CONSENT:
        Participant.objects.filter(pk=participant.pk, phase=Participant.Phase.CONSENT).update(
            phase=Participant.Phase.INSTRUCTIONS
        )
        participant.phase = Participant.Phase.INSTRUCTIONS
    return participant


# --------------------------------------------------------------------------- leasing


# What another request of the same participant may change: re-read under the row lock.
_PARTICIPANT_STATE = ("phase", "screened_out", "timed_out", "partial")


def _lock_participant(participant: Participant) -> Participant:
    """Lock the participant's own row, so that their writing requests run one at a time, and
    re-read the state another request may have changed (``_PARTICIPANT_STATE``). The study and
    arm are used as already loaded: they never change under a participant."""
    state = Participant.objects.select_for_update().filter(pk=participant.pk).values_list(*_PARTICIPANT_STATE).get()
    for field, value in zip(_PARTICIPANT_STATE, state):
        setattr(participant, field, value)
    return participant


def _set_phase(participant: Participant, phase: str) -> None:
    if participant.phase != phase:
        Participant.objects.filter(pk=participant.pk).update(phase=phase)
        participant.phase = phase


def participant_start(*, participant: Participant) -> Participant:
    """Leave the instructions: lease this participant's items for every phase (see the
    module docstring) and move to the first item phase. Raises ParticipantError('full')
    when no test item is free. Safe to call twice (a double click on "Start").

    Expired leases of others are reclaimed here only when this participant found fewer
    free test items than they need (beat does it every minute otherwise)."""
    try:
        return _participant_start(participant=participant, take_what_is_free=False)
    except _ShortOfSlots:
        leases_reclaim()
        return _participant_start(participant=participant, take_what_is_free=True)


class _ShortOfSlots(Exception):
    """Fewer free test items than needed: roll back, reclaim expired leases, try again."""


def _participant_start(*, participant: Participant, take_what_is_free: bool) -> Participant:
    with transaction.atomic():
        locked = _lock_participant(participant)
        if locked.phase not in (Participant.Phase.CONSENT, Participant.Phase.INSTRUCTIONS):
            return participant
        study = locked.study
        lease_until = timezone.now() + timedelta(minutes=study.lease_minutes)
        chosen = _free_test_items(participant=locked, need=study.items_per_participant)
        if len(chosen) < study.items_per_participant and not take_what_is_free:
            raise _ShortOfSlots
        if not chosen:
            raise ParticipantError("full", "This study is full. Thank you for your interest!")
        test_items = list(chosen)
        _rng(study.seed, "order", locked.public_id).shuffle(test_items)

        plan: list[dict] = []  # in position order
        if study.pretest:
            pretest_items = list(test_items)
            _rng(study.seed, "pretest-order", locked.public_id).shuffle(pretest_items)
            plan += [{"item_id": item_id, "phase": Assignment.Phase.PRETEST} for item_id in pretest_items]
        learning = list(
            study.study_items.filter(role=StudyItem.Role.LEARNING).order_by("item_id").values_list("item_id", flat=True)
        )
        _rng(study.seed, "learning-order", locked.public_id).shuffle(learning)
        plan += [{"item_id": item_id, "phase": Assignment.Phase.LEARNING} for item_id in learning]
        test_plan = [{"item_id": item_id, "phase": Assignment.Phase.TEST} for item_id in test_items]
        for check in _attention_checks(study=study, participant=locked):
            # Never first, so the first item is always a real one; otherwise anywhere.
            test_plan.insert(
                _rng(study.seed, "check-at", locked.public_id, check["item_id"]).randint(1, len(test_plan)), check
            )
        plan += test_plan
        created = _create_assignments(
            participant=locked, study=study, plan=plan, lease_until=lease_until, first_position=0, chosen=chosen
        )
        _hold_slots(chosen=chosen, assignments=created)
        _set_phase(locked, created[0].phase)
    return participant


def _free_test_items(*, participant: Participant, need: int) -> dict[int, Slot | None]:
    """Up to ``need`` distinct test items the participant has not had, each with a free slot
    of their arm locked for this transaction (None for a preview, which takes no slot)."""
    study = participant.study
    seen = list(participant.assignments.values_list("item_id", flat=True))
    if participant.platform == Participant.Platform.PREVIEW:
        pool = sorted(
            set(study.study_items.filter(role=StudyItem.Role.TEST).values_list("item_id", flat=True)) - set(seen)
        )
        _rng(study.seed, "preview", participant.public_id).shuffle(pool)
        return dict.fromkeys(pool[:need])
    # Lowest slot index first, so every item gets its n-th rater before any gets its (n+1)-th.
    # Lock in rounds of what is still needed: locking more (to skip a second slot of a chosen
    # item) would hide free slots from participants starting at the same moment.
    chosen: dict[int, Slot | None] = {}
    while len(chosen) < need:
        # A preference slot compares two arms, whoever takes it: any arm's slot will do.
        mine = (
            {"condition__study_id": study.pk}
            if study.task == PREFERENCE
            else {"condition_id": participant.condition_id}
        )
        free = list(
            Slot.objects.select_for_update(skip_locked=True)
            .filter(assignment__isnull=True, **mine)
            .exclude(item_id__in=seen + list(chosen))
            .order_by("index", "sort_key")[: need - len(chosen)]
        )
        if not free:
            break
        for slot in free:
            chosen.setdefault(slot.item_id, slot)
    return chosen


def _attention_checks(*, study: Study, participant: Participant) -> list[dict]:
    """``attention_checks`` checks from the attention pool, alternating an instructed-response
    item ("choose X", X neither the model's answer nor the gold label) and an easy gold item
    (the model is sure and right; the expected answer is its answer)."""
    if not study.attention_checks:
        return []
    pool = list(study.study_items.filter(role=StudyItem.Role.ATTENTION).order_by("item_id"))
    rng = _rng(study.seed, "attention", participant.public_id)
    picked = rng.sample(pool, min(study.attention_checks, len(pool)))
    predictions = {
        p.item_id: p
        for p in Prediction.objects.filter(
            model_id=study.model_id, item_id__in=[s.item_id for s in picked]
        ).select_related("item")
    }
    checks = []
    # Verification answers a verdict: a gold check expects "yes" (the model is sure and right), an
    # instructed check asks for "yes" or "no" at random.
    verifying = study_task(study.task).answer == "verdict"
    # A judgement or a rationale has no right answer to check: its checks are all instructed (one
    # rating on every scale, one side, one part to mark).
    instructed_only = {RATING: [str(level) for level in range(1, 6)], PREFERENCE: list(SIDES)}.get(study.task)
    for k, study_item in enumerate(picked):
        prediction = predictions[study_item.item_id]
        check_type = Assignment.Check.INSTRUCTED
        if study.task == RATIONALE:
            expected = rationale_instructed_marks(study=study, item=prediction.item, rng=rng)
        elif instructed_only:
            expected = rng.choice(instructed_only)
        # A counterfactual page asks about an edit, whose answer no easy item guarantees: instructed only.
        elif k % 2 == 1 and study_item.stratum == StudyItem.Stratum.MODEL_RIGHT and study.task != COUNTERFACTUAL:
            check_type, expected = Assignment.Check.GOLD, "yes" if verifying else prediction.label
        else:
            candidates = study_candidates(study=study, prediction=prediction)
            neutral = [c for c in candidates if c not in (prediction.label, prediction.item.gold_label)] or candidates
            expected = rng.choice(["yes", "no"] if verifying else neutral)
        checks.append(
            {
                "item_id": study_item.item_id,
                "phase": Assignment.Phase.TEST,
                "kind": Assignment.Kind.ATTENTION,
                "check_type": check_type,
                "expected_answer": expected,
            }
        )
    return checks


def _create_assignments(
    *,
    participant: Participant,
    study: Study,
    plan: list[dict],
    lease_until: datetime,
    first_position: int | None = None,
    chosen: dict[int, Slot | None] | None = None,
) -> list[Assignment]:
    """The plan's assignments, from ``first_position`` on. ``chosen``: the slot each test item
    holds (a preference slot fixes the two arms compared, left and right)."""
    predictions = {
        p.item_id: p
        for p in Prediction.objects.filter(
            model_id=study.model_id, item_id__in={e["item_id"] for e in plan}
        ).select_related("item")
    }
    start = first_position
    if start is None:
        start = (participant.assignments.order_by("-position").values_list("position", flat=True).first() or -1) + 1
    created = []
    shows_answer = study_task(study.task).shows_model_answer
    for offset, entry in enumerate(plan):
        item_id, phase = entry["item_id"], entry["phase"]
        # A task that shows the model's answer shows that one answer, never the other labels.
        candidates = (
            [predictions[item_id].label]
            if shows_answer
            else counterfactual_candidates(study=study, prediction=predictions[item_id])
            if study.task == COUNTERFACTUAL
            else study_candidates(study=study, prediction=predictions[item_id])
        )
        # The test phase keeps its original seed string, so existing orders are reproducible.
        salt = () if phase == Assignment.Phase.TEST else (phase,)
        _rng(study.seed, "candidates", participant.public_id, item_id, *salt).shuffle(candidates)
        left = right = None
        if study.task == PREFERENCE:
            slot = (chosen or {}).get(item_id)
            left, right = (
                (slot.condition_id, slot.right_condition_id)
                if slot is not None
                else preview_pair(study=study, key=f"{participant.public_id}:{item_id}")
            )
        created.append(
            Assignment(
                participant=participant,
                item_id=item_id,
                condition_id=participant.condition_id,
                left_condition_id=left,
                right_condition_id=right,
                phase=phase,
                kind=entry.get("kind", Assignment.Kind.ITEM),
                check_type=entry.get("check_type", ""),
                expected_answer=entry.get("expected_answer", ""),
                position=start + offset,
                candidate_order=candidates,
                lease_expires_at=lease_until,
            )
        )
    Assignment.objects.bulk_create(created)
    return created


def _hold_slots(*, chosen: dict[int, Slot | None], assignments: list[Assignment]) -> None:
    slots = []
    for assignment in assignments:
        slot = chosen.get(assignment.item_id)
        if slot is not None and assignment.phase == Assignment.Phase.TEST and assignment.kind == Assignment.Kind.ITEM:
            slot.assignment = assignment
            slots.append(slot)
    Slot.objects.bulk_update(slots, ["assignment"])


def assignments_allocate(*, participant: Participant) -> list[Assignment]:
    """Lease test items up to ``items_per_participant`` (counting those held and answered),
    distinct from every item the participant has had, each holding a free slot of their
    arm. Used to top a participant up after leases ran out. Raises ParticipantError when
    none is free and they hold none."""
    study = participant.study
    with transaction.atomic():
        # Serialise with "Start" and with a double click: the second call finds nothing to lease.
        Participant.objects.select_for_update().filter(pk=participant.pk).first()
        mine = participant.assignments.filter(phase=Assignment.Phase.TEST, kind=Assignment.Kind.ITEM)
        held = mine.filter(status=Assignment.Status.ACTIVE).count()
        answered = mine.filter(status=Assignment.Status.ANSWERED).count()
        need = study.items_per_participant - held - answered
        if need <= 0:
            return []
        chosen = _free_test_items(participant=participant, need=need)
        if not chosen and held == 0:
            raise ParticipantError("full", "This study is full. Thank you for your interest!")
        items = list(chosen)
        _rng(study.seed, "order", participant.public_id).shuffle(items)
        lease_until = timezone.now() + timedelta(minutes=study.lease_minutes)
        created = _create_assignments(
            participant=participant,
            study=study,
            lease_until=lease_until,
            plan=[{"item_id": i, "phase": Assignment.Phase.TEST} for i in items],
            chosen=chosen,
        )
        _hold_slots(chosen=chosen, assignments=created)
        return created


# --------------------------------------------------------------------------- serving


def assignment_current(*, participant: Participant) -> Assignment | None:
    """The next unanswered, unexpired item of any phase (positions follow the phase order),
    or None when there is none."""
    return (
        participant.assignments.filter(status=Assignment.Status.ACTIVE, lease_expires_at__gt=timezone.now())
        .select_related("item")
        .order_by("position")
        .first()
    )


def assignment_serve(*, assignment: Assignment, media: dict[str, str] | None = None) -> Assignment:
    """Record the first time an item page is served: the start of its response time. With
    ``media`` (URL key -> stored file, from ``selectors.assignment_page``), fix what the
    assignment's media URLs serve, once: later serves keep the first map, so a cached image
    never changes."""
    updates = {}
    if assignment.served_at is None:
        updates["served_at"] = timezone.now()
    if media and not assignment.media:
        updates["media"] = media
    if updates:
        # Guarded on the old values: a concurrent first serve (two tabs) keeps the first map and time.
        guard = {"served_at__isnull": True} if "served_at" in updates else {"media": {}}
        if Assignment.objects.filter(pk=assignment.pk, **guard).update(**updates):
            for field, value in updates.items():
                setattr(assignment, field, value)
        else:
            assignment.refresh_from_db(fields=["served_at", "media"])
    return assignment


def participant_sync_phase(*, participant: Participant) -> Participant:
    """Bring the stored phase in line with the leases: the phase of the next item, or, when
    none is left, the survey or the end (see ``participant_next_item``)."""
    participant_next_item(participant=participant)
    return participant


def participant_next_item(*, participant: Participant, just_answered: bool = False) -> Assignment | None:
    """The participant's current item (as ``assignment_current``), with the stored phase
    brought in line: the phase of that item, or, when none is left, the survey or the end.
    Time run out after some answers ends the study as *partial*: no survey, the
    partial-completion code; time run out before any answer ends it as *timed out*: no
    survey and no code.
    ``just_answered``: the caller has just stored an answer (this saves a query)."""
    if participant.phase not in ITEM_PHASES:
        return None
    current = assignment_current(participant=participant)
    if current is not None:
        _set_phase(participant, current.phase)
        return current
    if not just_answered and not participant.responses.exists():
        _time_out(participant)
        return None
    _after_items(participant, in_time=just_answered)
    return None


def _time_out(participant: Participant) -> None:
    """No item left and no answer: the time ran out before any. Decided under the
    participant's lock, so that an answer being stored at that moment either comes first
    (and counts) or finds its lease gone."""
    with transaction.atomic():
        _lock_participant(participant)
        if participant.phase not in ITEM_PHASES:
            return
        if not participant.responses.exists():
            _finish(participant, timed_out=True)
            return
    _after_items(participant)


def _time_ran_out(participant: Participant) -> bool:
    """Some lease ended unanswered and none is still running (one query): the time limit, not
    the last answer, ended the items. A participant topped up after an early lease ran out
    still holds a running lease, so finishing those is a full completion."""
    left = participant.assignments.aggregate(
        unanswered=Count("id", filter=~Q(status=Assignment.Status.ANSWERED)), last=Max("lease_expires_at")
    )
    return bool(left["unanswered"]) and left["last"] is not None and left["last"] <= timezone.now()


def _after_items(participant: Participant, *, in_time: bool = False) -> None:
    """No item left: time ran out after some answers ends the study as *partial* (told so,
    the partial-completion code, no survey); otherwise the survey or the end. ``in_time``:
    an answer was just accepted, so its lease, and the latest one, still runs (no query)."""
    if not in_time and _time_ran_out(participant):
        _finish(participant, partial=True)
        return
    study = participant.study
    if study.survey and not participant.screened_out:
        _set_phase(participant, Participant.Phase.SURVEY)
    else:
        _finish(participant)


def _finish(participant: Participant, *, timed_out: bool = False, partial: bool = False) -> None:
    """Done: stamp the time, give back any lease still held (a screened-out participant's
    remaining items go to others at once), and flag the pre-registered exclusions."""
    now = timezone.now()
    with transaction.atomic():  # also reached from page views running in autocommit
        _release_leases(participant)
        reasons = participant_quality(participant=participant)["exclusion_reasons"]
        Participant.objects.filter(pk=participant.pk).update(
            phase=Participant.Phase.DONE,
            finished_at=now,
            excluded=bool(reasons),
            exclusion_reasons=reasons,
            screened_out=participant.screened_out,
            timed_out=timed_out,
            partial=partial,
        )
    participant.phase, participant.finished_at, participant.timed_out = Participant.Phase.DONE, now, timed_out
    participant.partial = partial
    participant.excluded, participant.exclusion_reasons = bool(reasons), reasons


def _release_leases(participant: Participant) -> None:
    active = list(
        participant.assignments.select_for_update(skip_locked=True)
        .filter(status=Assignment.Status.ACTIVE)
        .values_list("pk", flat=True)
    )
    if active:
        Slot.objects.filter(assignment_id__in=active).update(assignment=None)
        Assignment.objects.filter(pk__in=active).update(status=Assignment.Status.EXPIRED)


# --------------------------------------------------------------------------- answers


def _locked_assignment(*, participant: Participant, assignment_public_id, model_id: int | None = None) -> Assignment:
    """One of the participant's own assignments, locked (its row only), with its item. With
    ``model_id``, ``model_answer`` carries that model's prediction, read in the same query."""
    query = (
        Assignment.objects.select_for_update(of=("self",))
        .select_related("item")
        .filter(public_id=assignment_public_id, participant_id=participant.pk)
    )
    if model_id is not None:
        query = query.annotate(
            model_answer=Subquery(
                Prediction.objects.filter(model_id=model_id, item_id=OuterRef("item_id")).values("label")[:1]
            )
        )
    try:
        return query.get()
    except (Assignment.DoesNotExist, ValueError, TypeError, ValidationError):  # not theirs, or not a UUID
        raise SubmissionRefused("this item is not assigned to you") from None


def response_submit(
    *,
    participant: Participant,
    assignment_public_id,
    guess: str,
    confidence,
    verdict: str | None = None,
    judgement: Mapping[str, object] | None = None,
    client_timing: Mapping[str, object] | None = None,
    rationale: object = None,
) -> Response:
    """Store the answer to one pre-test or test assignment (attention checks included): a
    ``guess`` among the candidates shown (forward simulation) or a ``verdict`` "yes"/"no" on
    whether the model's answer shown is right (verification; ``guess`` is stored empty), the
    ``rationale`` marked (a JSON object of modality -> units, ``services.rationales``; ``guess``
    is stored empty), or a ``judgement`` of the explanations (rating: three scales; preference:
    the side that helps more; ``services/judging.py``; ``guess`` is stored empty).

    ``client_timing``: the browser's timing fields (``services.client_timing``), checked
    against the server's time; whatever they hold, they never refuse the answer.

    Idempotent: repeating the same answer (a double click, a retry) returns the stored
    response. Refuses (``SubmissionRefused``, nothing stored) an assignment of someone
    else, a different answer to one already answered, an expired, unknown or never shown
    one, a learning item, a guess outside the candidates shown, or a confidence outside 1–5.

    Locks the participant's row (their submissions run one at a time) and the assignment's
    row: a repeat waits for the first and then finds it answered.
    """
    now = timezone.now()
    with transaction.atomic():
        locked = _lock_participant(participant)
        study = locked.study
        assignment = _locked_assignment(
            participant=locked, assignment_public_id=assignment_public_id, model_id=study.model_id
        )
        verifying = study_task(study.task).answer == "verdict"
        marking = study_task(study.task).answer == "rationale"
        judging = study_task(study.task).judges_explanations
        said_right = _verdict(verdict) if verifying else None
        # the marks are checked before anything else, so a bad answer is refused whole
        marks = None
        if marking:
            try:
                marks = rationale_marks_check(study=study, item=assignment.item, raw=rationale)
            except MarksError as exc:
                raise MarksRefused(str(exc)) from None
        try:
            judged = judgement_fields(task=study.task, answers=judgement or {})
            refused_judgement = ""
        except JudgementRefused as exc:
            judged, refused_judgement = {}, str(exc)
        if verifying or marking or judging:
            guess = ""
        if assignment.status == Assignment.Status.ANSWERED:
            existing = Response.objects.filter(assignment=assignment).first()
            if existing is not None:
                stored = (existing.guess, existing.verdict, existing.rationale, str(existing.confidence))
                stored_judged = {name: getattr(existing, name) for name in judged}
                if (
                    refused_judgement
                    or stored_judged != judged
                    or stored != (guess, said_right, marks, str(confidence).strip())
                ):
                    raise SubmissionRefused("this item was already answered")
                return existing
        if assignment.phase == Assignment.Phase.LEARNING:
            raise SubmissionRefused("practice items take no answer")
        if assignment.status != Assignment.Status.ACTIVE or assignment.lease_expires_at <= now:
            raise SubmissionRefused("the time for this item has run out")
        if assignment.served_at is None:
            raise SubmissionRefused("this item was never shown")
        if verifying and said_right is None:
            raise SubmissionRefused("please say whether the model's answer is right: yes or no")
        if refused_judgement:
            raise SubmissionRefused(refused_judgement)
        if not (verifying or marking or judging) and guess not in assignment.candidate_order:
            raise SubmissionRefused("the answer is not one of the choices shown")
        try:
            confidence = int(confidence)
        except (TypeError, ValueError):
            raise SubmissionRefused("confidence must be a number from 1 to 5") from None
        if not 1 <= confidence <= 5:
            raise SubmissionRefused("confidence must be a number from 1 to 5")
        rt_ms = max(0, int((now - assignment.served_at).total_seconds() * 1000))
        said_right_text = {True: "yes", False: "no"}.get(said_right)
        timing = client_timing_validate(client_timing or {}, server_rt_ms=rt_ms)
        is_check = assignment.kind == Assignment.Kind.ATTENTION
        # No race to catch here: the assignment row is locked and was not answered.
        response = Response.objects.create(
            assignment=assignment,
            participant=locked,
            item_id=assignment.item_id,
            condition_id=assignment.condition_id,
            left_condition_id=assignment.left_condition_id,
            right_condition_id=assignment.right_condition_id,
            phase=assignment.phase,
            guess=guess,
            verdict=said_right,
            rationale=marks,
            **judged,
            confidence=confidence,
            rt_ms=rt_ms,
            client_rt_ms=timing.client_rt_ms,
            client_display_ms=timing.client_display_ms,
            blur_count=timing.blur_count,
            hidden_ms=timing.hidden_ms,
            client_timing_flags=timing.flags,
            candidate_order=assignment.candidate_order,
            model_prediction=assignment.model_answer,
            gold_label=assignment.item.gold_label,
            is_attention_check=is_check,
            attention_passed=_check_passed(
                assignment, said_right_text if verifying else guess, judged, marks, judging=judging, marking=marking
            )
            if is_check
            else None,
            too_fast=bool(study.min_rt_ms) and rt_ms < study.min_rt_ms,
            **counterfactual_response_fields(study=study, assignment=assignment),
        )
        Assignment.objects.filter(pk=assignment.pk).update(status=Assignment.Status.ANSWERED)
        if locked.platform != Participant.Platform.PREVIEW:  # the dashboard recomputes in the background
            study_id = locked.study_id
            transaction.on_commit(lambda: dashboard_response_stored(study_id=study_id))
        if is_check and not response.attention_passed:
            _screen_out_if_due(locked)
        if locked.phase != Participant.Phase.DONE:
            participant_next_item(participant=locked, just_answered=True)
        return response


def _check_passed(
    assignment: Assignment, answer: str, judged: dict, marks: dict | None, *, judging: bool, marking: bool
) -> bool:
    """An attention check's answer is the one asked for: a guess or verdict, exactly the part
    named marked, a side, or the same rating on every scale."""
    expected = assignment.expected_answer
    if marking:
        return marks == json.loads(expected)
    if not judging:
        return answer == expected
    if "preferred" in judged:
        return judged["preferred"] == expected
    return all(str(judged[column]) == expected for column in RATING_FIELDS.values())


def _verdict(value) -> bool | None:
    """A verification answer: "yes" (the model is right) -> True, "no" -> False, else None."""
    return {"yes": True, "no": False}.get(str(value or "").strip().lower())


def _screen_out_if_due(participant: Participant) -> None:
    """The pre-registered screen-out rule: at N failed checks the study ends for this
    participant, with the screened-out code."""
    limit = (participant.study.exclusion_rules or {}).get("screen_out_at_attention_failures") or 0
    if not limit:
        return
    failed = participant.responses.filter(is_attention_check=True, attention_passed=False).count()
    if failed >= limit:
        participant.screened_out = True
        Participant.objects.filter(pk=participant.pk).update(screened_out=True)
        _finish(participant)


def learning_acknowledge(*, participant: Participant, assignment_public_id) -> Assignment:
    """The participant has studied one learning item (explanation and the model's answer).
    Idempotent; refuses another participant's item or a non-learning one."""
    with transaction.atomic():
        locked = _lock_participant(participant)
        assignment = _locked_assignment(participant=locked, assignment_public_id=assignment_public_id)
        if assignment.phase != Assignment.Phase.LEARNING:
            raise SubmissionRefused("this is not a practice item")
        if assignment.status == Assignment.Status.ANSWERED:
            return assignment
        if assignment.status != Assignment.Status.ACTIVE or assignment.lease_expires_at <= timezone.now():
            raise SubmissionRefused("the time for this item has run out")
        if assignment.served_at is None:
            raise SubmissionRefused("this item was never shown")
        Assignment.objects.filter(pk=assignment.pk).update(status=Assignment.Status.ANSWERED)
        assignment.status = Assignment.Status.ANSWERED
        participant_sync_phase(participant=locked)
        return assignment


def participant_survey_submit(*, participant: Participant, helpfulness, comment: str) -> Participant:
    """The post-survey: a 1–5 helpfulness rating (asked in explanation arms only) and a
    free-text comment. Then the participant is done. A repeat after that changes nothing."""
    with transaction.atomic():
        locked = _lock_participant(participant)
        if locked.phase == Participant.Phase.DONE:
            return participant
        if locked.phase != Participant.Phase.SURVEY:
            raise SubmissionRefused("the survey comes after the last item")
        rating = None
        if locked.condition.views:
            try:
                rating = int(helpfulness)
            except (TypeError, ValueError):
                raise SubmissionRefused("please rate how helpful the explanations were, from 1 to 5") from None
            if not 1 <= rating <= 5:
                raise SubmissionRefused("please rate how helpful the explanations were, from 1 to 5")
        comment = (comment or "").strip()
        if len(comment) > MAX_COMMENT:
            raise SubmissionRefused(f"the comment is longer than {MAX_COMMENT} characters")
        Participant.objects.filter(pk=locked.pk).update(helpfulness=rating, comment=comment)
        locked.helpfulness, locked.comment = rating, comment
        _finish(locked)
    return participant


# --------------------------------------------------------------------------- maintenance


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
