"""Caps hold under concurrency: many participants start and run one study at once, each in
its own thread with its own database connection, against real Postgres. The study has
every phase (pre-test, learning, attention checks, survey), so the test also shows that
only test items are capped and nothing else takes a slot."""

from __future__ import annotations

import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.db import connection
from django.db.models import Count

from annotations.models import Assignment, Participant, Response, Slot
from annotations.services import participants as participants_service
from annotations.services.participants import (
    ParticipantError,
    assignment_current,
    assignment_serve,
    learning_acknowledge,
    participant_consent,
    participant_enter,
    participant_start,
    participant_survey_submit,
    response_submit,
)
from tests.builders.studies import build_study

N_PARTICIPANTS = 100
POOL = 20  # Postgres allows 100 connections: a pool of 20 threads simulates all 100 participants.
N_ITEMS, PER_PARTICIPANT, RATERS, ARMS = 20, 5, 3, 2
N_SLOTS = N_ITEMS * RATERS * ARMS  # 120, far fewer than the 500 items 100 participants ask for


def _participant_session(study_pk: int, k: int) -> dict:
    """One participant's visit, as the pages would drive it. Returns what they were told."""
    from annotations.models import Study

    acknowledged = []
    try:
        study = Study.objects.get(pk=study_pk)
        participant = participant_enter(
            study=study, platform="prolific", platform_id=f"PID-{k:03d}", platform_data={"SESSION_ID": f"s{k}"}
        )
        participant_consent(participant=participant)
        participant_start(participant=participant)
        while (assignment := assignment_current(participant=participant)) is not None:
            assignment_serve(assignment=assignment)
            if assignment.phase == "learning":
                learning_acknowledge(participant=participant, assignment_public_id=assignment.public_id)
                continue
            guess = assignment.candidate_order[(k + assignment.position) % len(assignment.candidate_order)]
            response = response_submit(
                participant=participant, assignment_public_id=assignment.public_id, guess=guess, confidence=1 + k % 5
            )
            if k % 3 == 0:  # a double click: the retry must return the same stored response
                retry = response_submit(
                    participant=participant,
                    assignment_public_id=assignment.public_id,
                    guess=guess,
                    confidence=1 + k % 5,
                )
                assert retry.pk == response.pk
            acknowledged.append(
                {
                    "pk": response.pk,
                    "participant": participant.pk,
                    "item": assignment.item_id,
                    "condition": assignment.condition_id,
                    "guess": guess,
                }
            )
        participant_survey_submit(participant=participant, helpfulness=1 + k % 5, comment=f"participant {k}")
        return {"k": k, "outcome": "done", "participant": participant.pk, "acknowledged": acknowledged}
    except ParticipantError as exc:
        return {"k": k, "outcome": exc.code, "acknowledged": acknowledged}
    finally:
        connection.close()


@pytest.mark.django_db(transaction=True)
def test_hundred_participants_at_once_never_break_the_caps(alice, tmp_path):
    study = build_study(
        alice,
        tmp_path,
        n_dataset_items=N_ITEMS + 4,
        n_items=N_ITEMS,
        items_per_participant=PER_PARTICIPANT,
        raters_per_item=RATERS,
        name="crowd",
        pretest=True,
        learning_items=1,
        attention_checks=1,
        survey=True,
    )
    assert Slot.objects.filter(condition__study=study).count() == N_SLOTS

    with ThreadPoolExecutor(max_workers=POOL) as pool:
        # .result() re-raises anything other than a polite refusal (IntegrityError, deadlock…).
        results = [f.result() for f in [pool.submit(_participant_session, study.pk, k) for k in range(N_PARTICIPANTS)]]

    outcomes = Counter(r["outcome"] for r in results)
    assert set(outcomes) <= {"done", "full"}, outcomes
    assert outcomes["full"] > 0, "the study should have filled up"
    assert outcomes["done"] >= N_SLOTS // PER_PARTICIPANT

    all_responses = Response.objects.filter(participant__study=study)
    responses = all_responses.filter(phase="test", is_attention_check=False)
    # No (arm, item) has more responses than raters.
    per_cell = responses.values("condition_id", "item_id").annotate(n=Count("id"))
    assert max(row["n"] for row in per_cell) <= RATERS
    # No participant saw an item twice, in responses or in leases.
    pairs = list(responses.values_list("participant_id", "item_id"))
    assert len(pairs) == len(set(pairs))
    leases = list(Assignment.objects.filter(participant__study=study).values_list("participant_id", "item_id", "phase"))
    assert len(leases) == len(set(leases))
    # Every acknowledged response is stored, as acknowledged, and nothing else is.
    acknowledged = {a["pk"]: a for r in results for a in r["acknowledged"]}
    stored = {r.pk: r for r in all_responses}
    assert set(acknowledged) == set(stored)
    for pk, ack in acknowledged.items():
        row = stored[pk]
        assert (row.participant_id, row.item_id, row.condition_id, row.guess) == (
            ack["participant"],
            ack["item"],
            ack["condition"],
            ack["guess"],
        )
    # Responses fill slots one to one; every slot went to a lease of its own arm and item.
    filled = Slot.objects.filter(condition__study=study).exclude(assignment=None).select_related("assignment")
    assert responses.count() == filled.count()
    for slot in filled:
        assert (slot.assignment.item_id, slot.assignment.condition_id) == (slot.item_id, slot.condition_id)
        assert slot.assignment.status == Assignment.Status.ANSWERED
    assert set(filled.values_list("assignment_id", flat=True)) == set(responses.values_list("assignment_id", flat=True))
    # With 500 items asked for and 120 slots, every slot is used.
    assert filled.count() == N_SLOTS
    # Everyone who got items answered them all and is done; each within their quota.
    for r in results:
        if r["outcome"] == "done":
            participant = Participant.objects.get(pk=r["participant"])
            assert participant.phase == Participant.Phase.DONE
            tests = participant.assignments.filter(phase="test", kind="item")
            assert 1 <= participant.responses.filter(assignment__in=tests).count() == tests.count() <= PER_PARTICIPANT
            # Every lease answered: pre-test copies, the learning item and the check too.
            assert not participant.assignments.exclude(status=Assignment.Status.ANSWERED).exists()
            assert participant.helpfulness is None or 1 <= participant.helpfulness <= 5
    # Attention checks, learning items and pre-test copies took no slot.
    assert not Slot.objects.filter(assignment__kind="attention").exists()
    assert (
        not Slot.objects.filter(condition__study=study)
        .exclude(assignment=None)
        .exclude(assignment__phase="test")
        .exists()
    )


@pytest.mark.django_db(transaction=True)
def test_double_click_on_start_leases_one_set_of_items(alice, tmp_path, monkeypatch):
    """Two requests start the same participant's test at the same time (a double click on
    'Start'). Both must succeed, and the participant must hold one set of items, not crash
    one request on the unique position constraint."""
    study = build_study(alice, tmp_path, n_items=10, items_per_participant=4, raters_per_item=2, name="dbl")
    participant = participant_enter(study=study, platform="prolific", platform_id="clicky")
    participant_consent(participant=participant)

    # Hold both requests just after they decided how many items to lease, so that they
    # really overlap (without this the race is real but timing-dependent).
    barrier = threading.Barrier(2, timeout=3)  # the row lock usually keeps them apart: do not wait long
    waited = threading.local()
    real_candidates = participants_service.study_candidates

    def candidates_after_both_arrive(**kwargs):
        if not getattr(waited, "done", False):
            waited.done = True
            try:
                barrier.wait()
            except threading.BrokenBarrierError:
                pass  # the other request finished first: no overlap to force
        return real_candidates(**kwargs)

    monkeypatch.setattr(participants_service, "study_candidates", candidates_after_both_arrive)

    def start() -> str:
        try:
            participant_start(participant=Participant.objects.get(pk=participant.pk))
            return "ok"
        except Exception as exc:  # noqa: BLE001 - the point is to see what a request would get
            return f"{type(exc).__name__}: {exc}"
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=2) as pool:
        outcomes = [f.result() for f in [pool.submit(start) for _ in range(2)]]

    assert outcomes == ["ok", "ok"], outcomes
    items = list(Assignment.objects.filter(participant=participant).values_list("item_id", flat=True))
    assert len(items) == len(set(items)) == study.items_per_participant
    assert Slot.objects.filter(assignment__participant=participant).count() == study.items_per_participant
    participant.refresh_from_db()
    assert participant.phase == Participant.Phase.TEST


@pytest.mark.django_db(transaction=True)
def test_a_starting_participant_locks_only_the_slots_it_takes(alice, tmp_path):
    """Locking spare slots (say, a second slot of an item already chosen) would hide them
    from someone starting at the same moment, who would be told the study is full."""
    import threading

    from django.db import connection, transaction

    from annotations.models import Slot
    from annotations.services.participants import _free_test_items, participant_consent, participant_enter

    study = build_study(
        alice, tmp_path, n_dataset_items=4, n_items=2, items_per_participant=2, raters_per_item=2, name="tight"
    )
    first = participant_consent(participant=participant_enter(study=study, platform="prolific", platform_id="p1"))
    seen_by_other: list[int] = []

    def other_transaction():
        try:
            with transaction.atomic():
                free = Slot.objects.select_for_update(skip_locked=True).filter(
                    condition_id=first.condition_id, assignment__isnull=True
                )
                seen_by_other.append(len(list(free)))
        finally:
            connection.close()

    with transaction.atomic():
        chosen = _free_test_items(participant=first, need=2)
        thread = threading.Thread(target=other_transaction)
        thread.start()
        thread.join()
    assert len(chosen) == 2
    assert seen_by_other == [2]  # 4 slots in the arm, 2 locked by the first participant
