"""The participant flow: entry and resume, arm balance, leases, responses."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta

import pytest
from django.utils import timezone

from annotations.models import Assignment, InviteToken, Participant, Prediction, Response, Slot, StudyItem
from annotations.selectors.studies import study_candidates
from annotations.services.participants import (
    ParticipantError,
    SubmissionRefused,
    assignment_current,
    assignment_serve,
    assignments_allocate,
    invites_create,
    leases_reclaim,
    participant_consent,
    participant_enter,
    participant_start,
    response_submit,
)
from annotations.services.studies import ConditionSpec, study_close
from tests.builders.studies import answer_all, build_study, enter_and_start

pytestmark = pytest.mark.django_db


@pytest.fixture
def study(alice, tmp_path):
    # 6 items x 2 raters per arm: 12 slots per arm, 4 participants of 3 items fill an arm.
    return build_study(alice, tmp_path, n_items=6, items_per_participant=3, raters_per_item=2)


@pytest.fixture
def tiny(alice, tmp_path):
    # 2 items x 1 rater per arm, 2 items each: one participant fills an arm.
    return build_study(
        alice, tmp_path, n_dataset_items=4, n_items=2, items_per_participant=2, raters_per_item=1, name="tiny"
    )


def _submit(participant, assignment, guess=None, confidence=3):
    return response_submit(
        participant=participant,
        assignment_public_id=assignment.public_id,
        guess=assignment.candidate_order[0] if guess is None else guess,
        confidence=confidence,
    )


def _served(participant) -> Assignment:
    assignment = assignment_current(participant=participant)
    assert assignment is not None
    return assignment_serve(assignment=assignment)


# --- entry --------------------------------------------------------------------------------


def test_entry_balances_arms(alice, tmp_path):
    conditions = [ConditionSpec("none"), ConditionSpec("heat", ["heatmap"]), ConditionSpec("tok", ["tokens"])]
    study = build_study(alice, tmp_path, n_items=6, items_per_participant=3, raters_per_item=2, conditions=conditions)
    counts: Counter = Counter()
    for k in range(9):
        participant = participant_enter(study=study, platform="prolific", platform_id=f"P{k}")
        counts[participant.condition.name] += 1
        assert max(counts.values()) - min(counts[c.name] for c in study.conditions.all()) <= 1, counts
    assert counts == {"none": 3, "heat": 3, "tok": 3}
    assert Participant.objects.filter(study=study).count() == 9


def test_entry_stores_platform_data_and_starts_at_consent(study):
    participant = participant_enter(
        study=study, platform="prolific", platform_id="5f00aa", platform_data={"STUDY_ID": "st", "SESSION_ID": "se"}
    )
    participant.refresh_from_db()
    assert (participant.platform, participant.platform_id) == ("prolific", "5f00aa")
    assert participant.platform_data == {"STUDY_ID": "st", "SESSION_ID": "se"}
    assert participant.phase == Participant.Phase.CONSENT
    assert participant.condition.study_id == study.pk


def test_returning_prolific_pid_resumes_the_same_participant(study):
    first = participant_enter(study=study, platform="prolific", platform_id="PID-1")
    participant_consent(participant=first)
    participant_start(participant=first)
    held = list(first.assignments.values_list("pk", flat=True))

    again = participant_enter(
        study=study, platform="prolific", platform_id="PID-1", platform_data={"SESSION_ID": "a new session"}
    )

    assert again.pk == first.pk
    assert again.phase == Participant.Phase.TEST
    assert Participant.objects.filter(study=study).count() == 1
    # Resuming keeps the leases; starting again does not lease more.
    participant_start(participant=again)
    assert list(again.assignments.values_list("pk", flat=True)) == held
    # The same ID on another platform is someone else.
    other = participant_enter(study=study, platform="mturk", platform_id="PID-1")
    assert other.pk != first.pk


def test_finished_participant_is_refused_with_code_finished(study):
    participant = enter_and_start(study, "PID-done")
    answer_all(participant)
    participant.refresh_from_db()
    assert participant.phase == Participant.Phase.DONE

    with pytest.raises(ParticipantError) as caught:
        participant_enter(study=study, platform="prolific", platform_id="PID-done")
    assert caught.value.code == "finished"
    assert Participant.objects.filter(study=study).count() == 1


def test_invite_token_is_single_use(study):
    first_invite, second_invite = invites_create(study=study, count=2)
    assert first_invite.token != second_invite.token

    participant = participant_enter(study=study, platform="link", invite_token=first_invite.token)
    first_invite.refresh_from_db()
    assert participant.platform == Participant.Platform.INVITE
    assert first_invite.participant_id == participant.pk
    assert first_invite.used_at is not None
    used_at = first_invite.used_at

    again = participant_enter(study=study, platform="link", invite_token=first_invite.token)
    assert again.pk == participant.pk
    first_invite.refresh_from_db()
    assert first_invite.used_at == used_at
    # The other invite is someone else.
    assert participant_enter(study=study, platform="link", invite_token=second_invite.token).pk != participant.pk
    assert Participant.objects.filter(study=study).count() == 2


def test_unknown_or_foreign_invite_token_is_refused(study, alice, tmp_path):
    other = build_study(alice, tmp_path, n_items=4, items_per_participant=2, name="other")
    foreign = invites_create(study=other, count=1)[0]
    for token in ("no-such-token", foreign.token):
        with pytest.raises(ParticipantError) as caught:
            participant_enter(study=study, platform="link", invite_token=token)
        assert caught.value.code == "invalid"
    assert not Participant.objects.exists()
    assert InviteToken.objects.get(pk=foreign.pk).participant is None


def test_finished_invitee_is_refused(study):
    invite = invites_create(study=study, count=1)[0]
    participant = participant_enter(study=study, platform="link", invite_token=invite.token)
    participant_consent(participant=participant)
    participant_start(participant=participant)
    answer_all(participant)
    with pytest.raises(ParticipantError) as caught:
        participant_enter(study=study, platform="link", invite_token=invite.token)
    assert caught.value.code == "finished"


def test_closed_study_refuses_entry(study):
    study_close(study=study)
    with pytest.raises(ParticipantError) as caught:
        participant_enter(study=study, platform="prolific", platform_id="late")
    assert caught.value.code == "closed"


# --- allocation ----------------------------------------------------------------------------


def test_start_test_leases_distinct_items_each_holding_a_slot_of_the_arm(study):
    before = timezone.now()
    participant = enter_and_start(study, "P1")
    after = timezone.now()

    assert participant.phase == Participant.Phase.TEST
    assignments = list(participant.assignments.order_by("position"))
    assert len(assignments) == study.items_per_participant == 3
    assert [a.position for a in assignments] == [0, 1, 2]
    assert len({a.item_id for a in assignments}) == 3
    pool = set(StudyItem.objects.filter(study=study).values_list("item_id", flat=True))
    for a in assignments:
        assert a.item_id in pool
        assert a.status == Assignment.Status.ACTIVE
        assert a.condition_id == participant.condition_id
        assert a.served_at is None
        lease = timedelta(minutes=study.lease_minutes)
        assert before + lease <= a.lease_expires_at <= after + lease  # bounded by events, not a clock margin
        assert (a.slot.condition_id, a.slot.item_id) == (participant.condition_id, a.item_id)
        prediction = Prediction.objects.get(model=study.model, item_id=a.item_id)
        assert sorted(a.candidate_order) == sorted(study_candidates(study=study, prediction=prediction))
    assert Slot.objects.filter(condition__study=study).exclude(assignment=None).count() == 3


def test_items_fill_evenly_across_participants_of_an_arm(study):
    participants = [enter_and_start(study, f"P{k}") for k in range(4)]
    by_arm: dict[int, list[int]] = {}
    for p in participants:
        by_arm.setdefault(p.condition_id, []).extend(p.assignments.values_list("item_id", flat=True))
    for items in by_arm.values():
        # Two participants of 3 items over a pool of 6: every item once before any twice.
        assert len(items) == 6 and len(set(items)) == 6


def test_a_participant_never_gets_the_same_item_twice_after_a_lease_runs_out(alice, tmp_path):
    study = build_study(alice, tmp_path, n_items=4, items_per_participant=2, raters_per_item=3, name="again")
    participant = enter_and_start(study, "P1")
    first_items = set(participant.assignments.values_list("item_id", flat=True))
    participant.assignments.update(lease_expires_at=timezone.now() - timedelta(seconds=1))
    assert leases_reclaim() == 2

    fresh = assignments_allocate(participant=participant)

    assert len(fresh) == 2
    assert {a.item_id for a in fresh}.isdisjoint(first_items)
    items = list(participant.assignments.values_list("item_id", flat=True))
    assert len(items) == len(set(items)) == 4
    assert sorted(participant.assignments.values_list("position", flat=True)) == [0, 1, 2, 3]
    # All four seen: nothing is left to give this participant.
    participant.assignments.filter(status=Assignment.Status.ACTIVE).update(
        lease_expires_at=timezone.now() - timedelta(seconds=1)
    )
    leases_reclaim()
    with pytest.raises(ParticipantError) as caught:
        assignments_allocate(participant=participant)
    assert caught.value.code == "full"
    assert participant.assignments.count() == 4


# --- responses ---------------------------------------------------------------------------


def test_submit_stores_the_answer_with_the_models_prediction(study):
    participant = enter_and_start(study, "P1")
    assignment = _served(participant)
    guess = assignment.candidate_order[-1]

    response = _submit(participant, assignment, guess=guess, confidence="4")

    response.refresh_from_db()
    prediction = Prediction.objects.get(model=study.model, item_id=assignment.item_id)
    assert (response.guess, response.confidence) == (guess, 4)
    assert response.model_prediction == prediction.label
    assert response.gold_label == assignment.item.gold_label
    assert response.candidate_order == assignment.candidate_order
    assert (response.participant_id, response.item_id, response.condition_id) == (
        participant.pk,
        assignment.item_id,
        participant.condition_id,
    )
    assignment.refresh_from_db()
    assert assignment.status == Assignment.Status.ANSWERED
    # The next item is the next position.
    assert assignment_current(participant=participant).position == assignment.position + 1


def test_double_submit_stores_one_response(study):
    participant = enter_and_start(study, "P1")
    assignment = _served(participant)
    first = _submit(participant, assignment, guess=assignment.candidate_order[0], confidence=2)

    again = _submit(participant, assignment, guess=assignment.candidate_order[0], confidence="2")

    assert again.pk == first.pk
    # A replay that changes the answer is refused, and the stored answer stays.
    with pytest.raises(SubmissionRefused, match="already answered"):
        _submit(participant, assignment, guess=assignment.candidate_order[1], confidence=5)
    assert Response.objects.filter(assignment=assignment).count() == 1
    stored = Response.objects.get(assignment=assignment)
    assert (stored.guess, stored.confidence) == (assignment.candidate_order[0], 2)


def test_submit_refuses_another_participants_assignment(study):
    owner = enter_and_start(study, "P1")
    intruder = enter_and_start(study, "P2")
    assignment = _served(owner)

    with pytest.raises(SubmissionRefused):
        _submit(intruder, assignment)
    with pytest.raises(SubmissionRefused):
        response_submit(
            participant=intruder, assignment_public_id="00000000-0000-0000-0000-000000000000", guess="red", confidence=3
        )
    assert not Response.objects.exists()
    assignment.refresh_from_db()
    assert assignment.status == Assignment.Status.ACTIVE


def test_submit_refuses_a_guess_outside_the_candidates_shown(alice, tmp_path):
    study = build_study(alice, tmp_path, n_items=4, items_per_participant=2, n_candidates=2, name="two")
    participant = enter_and_start(study, "P1")
    assignment = _served(participant)
    assert len(assignment.candidate_order) == 2
    not_shown = next(label for label in study.model.labels if label not in assignment.candidate_order)

    for guess in (not_shown, "", "RED", "purple"):
        with pytest.raises(SubmissionRefused, match="not one of the choices"):
            _submit(participant, assignment, guess=guess)
    assert not Response.objects.exists()
    # A shown candidate is accepted afterwards.
    assert _submit(participant, assignment, guess=assignment.candidate_order[1]).guess == assignment.candidate_order[1]


@pytest.mark.parametrize("confidence", [0, 6, -1, "x", "", None, "3.5"])
def test_submit_refuses_a_confidence_outside_1_to_5(study, confidence):
    participant = enter_and_start(study, "P1")
    assignment = _served(participant)
    with pytest.raises(SubmissionRefused, match="confidence"):
        _submit(participant, assignment, confidence=confidence)
    assert not Response.objects.exists()
    assignment.refresh_from_db()
    assert assignment.status == Assignment.Status.ACTIVE


def test_submit_refuses_an_expired_lease(study):
    participant = enter_and_start(study, "P1")
    assignment = _served(participant)
    Assignment.objects.filter(pk=assignment.pk).update(lease_expires_at=timezone.now() - timedelta(seconds=1))

    with pytest.raises(SubmissionRefused, match="run out"):
        _submit(participant, assignment)
    assert not Response.objects.exists()


def test_submit_refuses_an_item_that_was_never_served(study):
    participant = enter_and_start(study, "P1")
    assignment = assignment_current(participant=participant)
    assert assignment.served_at is None
    with pytest.raises(SubmissionRefused, match="never shown"):
        _submit(participant, assignment)
    assert not Response.objects.exists()


def test_response_time_is_measured_by_the_server_from_the_first_serve(study):
    participant = enter_and_start(study, "P1")
    assignment = _served(participant)
    first_served = assignment.served_at
    assert first_served is not None
    # Serving again (a reload) does not restart the clock.
    assert assignment_serve(assignment=assignment_current(participant=participant)).served_at == first_served
    # Pretend the page went out 2.5 s ago.
    Assignment.objects.filter(pk=assignment.pk).update(served_at=timezone.now() - timedelta(milliseconds=2500))

    response = _submit(participant, assignment)

    assert 2500 <= response.rt_ms < 2500 + 5000


def test_participant_is_done_after_the_last_answer(study):
    participant = enter_and_start(study, "P1")
    for _k in range(study.items_per_participant):
        participant.refresh_from_db()
        assert participant.phase == Participant.Phase.TEST
        assert participant.finished_at is None
        _submit(participant, _served(participant))
    participant.refresh_from_db()
    assert participant.phase == Participant.Phase.DONE
    assert participant.finished_at is not None
    assert assignment_current(participant=participant) is None
    assert participant.responses.count() == study.items_per_participant


# --- leases and a full study ---------------------------------------------------------------


def test_full_study_refuses_entry_with_code_full(tiny):
    first, second = enter_and_start(tiny, "P1"), enter_and_start(tiny, "P2")
    assert first.condition_id != second.condition_id
    assert not Slot.objects.filter(condition__study=tiny, assignment=None).exists()

    with pytest.raises(ParticipantError) as caught:
        participant_enter(study=tiny, platform="prolific", platform_id="P3")
    assert caught.value.code == "full"
    assert Participant.objects.filter(study=tiny).count() == 2


def test_starting_after_the_arm_filled_up_is_refused_with_code_full(tiny):
    entered = [participant_enter(study=tiny, platform="prolific", platform_id=f"P{k}") for k in range(3)]
    for p in entered[:2]:
        participant_start(participant=p)
    late = entered[2]
    arm_mate = next(p for p in entered[:2] if p.condition_id == late.condition_id)
    assert arm_mate.assignments.count() == 2

    with pytest.raises(ParticipantError) as caught:
        participant_start(participant=late)
    assert caught.value.code == "full"
    assert not late.assignments.exists()


def test_leases_reclaim_frees_the_slot_for_the_next_participant(tiny):
    p1, p2 = enter_and_start(tiny, "P1"), enter_and_start(tiny, "P2")
    p1_items = set(p1.assignments.values_list("item_id", flat=True))
    # P2 answers one item, then both let their leases run out.
    answered = _served(p2)
    _submit(p2, answered)
    Assignment.objects.filter(participant__study=tiny).update(lease_expires_at=timezone.now() - timedelta(minutes=1))
    assert leases_reclaim() == 3  # two of P1's, one of P2's; the answered one stays
    assert leases_reclaim() == 0

    assert set(p1.assignments.values_list("status", flat=True)) == {Assignment.Status.EXPIRED}
    assert Slot.objects.filter(condition=p1.condition, assignment=None).count() == 2
    answered.refresh_from_db()
    assert answered.status == Assignment.Status.ANSWERED
    assert Slot.objects.get(assignment=answered).item_id == answered.item_id
    with pytest.raises(SubmissionRefused):
        _submit(p1, assignment_serve(assignment=p1.assignments.first()))

    p3 = enter_and_start(tiny, "P3")
    assert p3.condition_id in (p1.condition_id, p2.condition_id)
    if p3.condition_id == p1.condition_id:
        assert set(p3.assignments.values_list("item_id", flat=True)) == p1_items
    else:  # only the expired, unanswered item of P2 was free
        assert set(p3.assignments.values_list("item_id", flat=True)) == {
            a.item_id for a in p2.assignments.filter(status=Assignment.Status.EXPIRED)
        }
    for assignment in p3.assignments.all():
        assert assignment.slot.condition_id == p3.condition_id
    assert len(answer_all(p3)) == p3.assignments.count()


def test_leases_reclaim_leaves_live_leases_alone(study):
    participant = enter_and_start(study, "P1")
    assert leases_reclaim() == 0
    assert set(participant.assignments.values_list("status", flat=True)) == {Assignment.Status.ACTIVE}
    assert Slot.objects.filter(assignment__participant=participant).count() == 3


def test_entering_reclaims_expired_leases_without_beat(tiny):
    """With no broker (the embedded setup) beat never runs: entry must reclaim by itself."""
    enter_and_start(tiny, "P1"), enter_and_start(tiny, "P2")
    with pytest.raises(ParticipantError) as full:
        participant_enter(study=tiny, platform="prolific", platform_id="P3")
    assert full.value.code == "full"
    Assignment.objects.filter(participant__study=tiny).update(lease_expires_at=timezone.now() - timedelta(minutes=1))
    p3 = enter_and_start(tiny, "P3")
    assert p3.assignments.filter(status=Assignment.Status.ACTIVE).exists()


# --- arm assignment without a study lock ---------------------------------------------------


THREE_ARMS = [ConditionSpec("none"), ConditionSpec("heat", ["heatmap"]), ConditionSpec("tok", ["tokens"])]


def test_arms_follow_seeded_permuted_blocks(alice, tmp_path):
    """Every block of three entries holds each arm once, in an order fixed by the seed: the
    same seed gives the same sequence, another seed (almost surely) another."""
    sequences = []
    for name, seed in (("a", 11), ("b", 11), ("c", 12)):
        study = build_study(
            alice,
            tmp_path,
            n_items=6,
            items_per_participant=1,
            raters_per_item=4,
            seed=seed,
            conditions=THREE_ARMS,
            name=name,
        )
        arms = [
            participant_enter(study=study, platform="prolific", platform_id=f"P{k}").condition.name for k in range(12)
        ]
        for block in range(4):
            assert sorted(arms[3 * block : 3 * block + 3]) == ["heat", "none", "tok"], arms
        sequences.append(arms)
    assert sequences[0] == sequences[1]
    assert sequences[0] != sequences[2]


def test_a_full_arm_is_skipped_for_the_least_filled_open_one(alice, tmp_path):
    study = build_study(alice, tmp_path, n_items=6, items_per_participant=3, raters_per_item=1, conditions=THREE_ARMS)
    full = study.conditions.get(name="heat")
    filler = participant_enter(study=study, platform="prolific", platform_id="filler")
    # Take every slot of one arm with a stand-in lease.
    for slot in Slot.objects.filter(condition=full):
        stand_in = Assignment.objects.create(
            participant=filler,
            item_id=slot.item_id,
            condition=full,
            position=slot.pk,
            lease_expires_at=timezone.now() + timedelta(hours=1),
        )
        Slot.objects.filter(pk=slot.pk).update(assignment=stand_in)
    arms = Counter(
        participant_enter(study=study, platform="prolific", platform_id=f"P{k}").condition.name for k in range(8)
    )
    assert arms["heat"] == 0 and abs(arms["none"] - arms["tok"]) <= 1 and sum(arms.values()) == 8


@pytest.mark.django_db(transaction=True)
def test_concurrent_entries_stay_balanced_and_a_repeated_id_is_one_participant(alice, tmp_path):
    """Entries race with no lock on the study: arms still end up balanced (each entry has its
    own number), and many requests with one platform ID make one participant."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    from django.db import connection

    study = build_study(
        alice, tmp_path, n_items=6, items_per_participant=1, raters_per_item=10, conditions=THREE_ARMS, name="race"
    )
    barrier = threading.Barrier(12, timeout=10)

    def enter(platform_id: str) -> int:
        try:
            barrier.wait()
            return participant_enter(
                study=study, platform="prolific", platform_id=platform_id, platform_data={"SESSION_ID": "same"}
            ).pk
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=12) as pool:
        distinct = list(pool.map(enter, [f"P{k}" for k in range(12)]))
    with ThreadPoolExecutor(max_workers=12) as pool:
        repeated = list(pool.map(enter, ["twin"] * 12))

    assert len(set(distinct)) == 12
    counts = Counter(Participant.objects.filter(pk__in=distinct).values_list("condition__name", flat=True))
    assert counts == {"none": 4, "heat": 4, "tok": 4}
    assert len(set(repeated)) == 1
    assert Participant.objects.filter(study=study, platform_id="twin").count() == 1
