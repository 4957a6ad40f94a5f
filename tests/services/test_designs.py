"""Study designs beyond the plain test phase: item pools and
filters, pre-test -> learning -> test -> survey, attention checks, screening out, minimum
response time, exclusion rules, previews, resuming, and the beat task reclaiming leases."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta

import pytest
from django.utils import timezone

from annotations.models import (
    Assignment,
    Explanation,
    Participant,
    Prediction,
    Response,
    Slot,
    Study,
    StudyItem,
)
from annotations.selectors.exports import study_response_rows
from annotations.selectors.participants import participant_exit, study_participant_exclusions
from annotations.selectors.precompute import MODALITY_INTERACTION
from annotations.selectors.studies import study_progress
from annotations.services.datasets import dataset_import
from annotations.services.participants import (
    ParticipantError,
    SubmissionRefused,
    assignment_current,
    assignment_serve,
    learning_acknowledge,
    participant_consent,
    participant_enter,
    participant_preview_start,
    participant_start,
    participant_survey_submit,
    response_submit,
)
from annotations.services.studies import (
    ConditionSpec,
    StudyError,
    study_create,
    study_exclusion_rules_update,
    study_launch,
    study_select_items,
)
from tests.builders.studies import (
    TWO_ARMS,
    answer_all,
    build_study,
    enter_and_start,
    make_model,
    make_predictions,
    write_dataset,
)
from workers.tasks import reclaim_expired_leases

pytestmark = pytest.mark.django_db

LABELS8 = ["red", "green", "blue", "yellow", "purple", "circle", "square", "triangle"]


def _serve_next(participant) -> Assignment:
    assignment = assignment_current(participant=participant)
    assert assignment is not None
    return assignment_serve(assignment=assignment)


def _answer(participant, assignment, guess=None, confidence=3):
    return response_submit(
        participant=participant,
        assignment_public_id=assignment.public_id,
        guess=assignment.candidate_order[0] if guess is None else guess,
        confidence=confidence,
    )


# --- pools ----------------------------------------------------------------------------------


def test_learning_and_attention_pools_are_disjoint_and_take_no_slots(alice, tmp_path):
    study = build_study(
        alice,
        tmp_path,
        n_dataset_items=24,
        n_items=8,
        items_per_participant=4,
        raters_per_item=2,
        learning_items=4,
        attention_checks=2,
        name="pools",
    )
    roles = Counter(StudyItem.objects.filter(study=study).values_list("role", flat=True))
    assert roles == {"test": 8, "learning": 4, "attention": 4}
    by_role = {
        role: set(StudyItem.objects.filter(study=study, role=role).values_list("item_id", flat=True)) for role in roles
    }
    assert not (by_role["test"] & by_role["learning"]) and not (by_role["test"] & by_role["attention"])
    assert not (by_role["learning"] & by_role["attention"])
    learning_strata = Counter(StudyItem.objects.filter(study=study, role="learning").values_list("stratum", flat=True))
    assert learning_strata == {"model_right": 2, "model_wrong": 2}
    # Gold checks need items the model gets right: those come first in the attention pool.
    assert set(StudyItem.objects.filter(study=study, role="attention").values_list("stratum", flat=True)) == {
        "model_right"
    }
    assert set(Slot.objects.filter(condition__study=study).values_list("item_id", flat=True)) == by_role["test"]
    assert Slot.objects.filter(condition__study=study).count() == 8 * 2 * 2
    assert study_progress(study=study)["target"] == 8 * 2 * 2


def test_pools_too_small_for_learning_or_attention_are_refused(alice, tmp_path):
    jsonl = write_dataset(tmp_path / "small", 10)
    dataset = dataset_import(owner=alice, name="small", jsonl_path=jsonl)
    model = make_model(alice)
    make_predictions(model, dataset.items.order_by("line_number"), n_right=5)
    for field, message in (("learning_items", "learning items"), ("attention_checks", "attention-check items")):
        with pytest.raises(StudyError, match=f"has 10 items, fewer than the 11 .*3 {message}"):
            study_create(
                owner=alice,
                name=field,
                dataset=dataset,
                model=model,
                conditions=TWO_ARMS,
                n_items=8,
                items_per_participant=4,
                raters_per_item=1,
                **{field: 3},
            )
    # Filters can still leave too few at sampling time: refused then, naming what is short.
    study = study_create(
        owner=alice,
        name="filtered",
        dataset=dataset,
        model=model,
        conditions=TWO_ARMS,
        n_items=6,
        items_per_participant=4,
        raters_per_item=1,
        learning_items=3,
        confidence_range=(0.0, 1.0),
    )
    Prediction.objects.filter(model=model, item__in=list(dataset.items.order_by("line_number"))[:2]).delete()
    with pytest.raises(StudyError, match="too few items left for 3 learning items"):
        study_select_items(study=study)


def test_confidence_and_interaction_strength_filters(alice, tmp_path):
    jsonl = write_dataset(tmp_path / "f", 20)
    dataset = dataset_import(owner=alice, name="f", jsonl_path=jsonl)
    model = make_model(alice)
    items = list(dataset.items.order_by("line_number"))
    make_predictions(model, items, n_right=10)
    for k, item in enumerate(items):  # confidence k/20 + 0.04, interaction strength alternating 0.1 / 0.6
        prediction = Prediction.objects.get(model=model, item=item)
        top = 0.04 + k / 20
        prediction.probabilities = [top if label == prediction.label else (1 - top) / 3 for label in model.labels]
        prediction.save()
        dividend = 0.6 if k % 2 else 0.1
        Explanation.objects.create(
            model=model,
            item=item,
            method=MODALITY_INTERACTION,
            target_label=prediction.label,
            status="done",
            summary={"effect_a": (1 - dividend) / 2, "effect_b": -(1 - dividend) / 2, "dividend": -dividend},
        )
    study = study_create(
        owner=alice,
        name="filtered",
        dataset=dataset,
        model=model,
        conditions=TWO_ARMS,
        n_items=4,
        items_per_participant=2,
        raters_per_item=1,
        confidence_range=(0.5, 1.0),
        interaction_range=(0.5, 1.0),
    )
    pool = study_select_items(study=study)
    assert len(pool) == 4
    for study_item in pool:
        k = items.index(study_item.item)
        assert k >= 10 and k % 2 == 1, k  # confident enough and strongly interacting
    too_strict = study_create(
        owner=alice,
        name="strict",
        dataset=dataset,
        model=model,
        conditions=TWO_ARMS,
        n_items=4,
        items_per_participant=3,
        raters_per_item=1,
        confidence_range=(0.99, 1.0),
    )
    with pytest.raises(StudyError, match="pass the filters"):
        study_select_items(study=too_strict)


# --- the phases -----------------------------------------------------------------------------


@pytest.fixture
def phased(alice, tmp_path):
    """Pre-test, 2 learning items, 2 attention checks, survey; 3 test items per participant."""
    return build_study(
        alice,
        tmp_path,
        n_dataset_items=24,
        n_items=6,
        items_per_participant=3,
        raters_per_item=2,
        learning_items=2,
        attention_checks=2,
        pretest=True,
        survey=True,
        min_rt_ms=60_000,
        exclusion_rules={"max_attention_failures": 0, "max_fast_share": 0.5},
        name="phased",
    )


def test_pretest_then_learning_then_test_then_survey(phased):
    # The explanation arm's first participant (the first two entries cover both arms).
    participant = next(p for p in (enter_and_start(phased, f"P{k}") for k in range(2)) if p.condition.views)
    phases = list(participant.assignments.order_by("position").values_list("phase", "kind"))
    assert [p for p, _ in phases] == ["pretest"] * 3 + ["learning"] * 2 + ["test"] * 5
    assert Counter(k for p, k in phases if p == "test") == {"item": 3, "attention": 2}
    assert phases[5] == ("test", "item")  # the test phase never opens with a check
    pretest_items = set(participant.assignments.filter(phase="pretest").values_list("item_id", flat=True))
    test_items = set(participant.assignments.filter(phase="test", kind="item").values_list("item_id", flat=True))
    assert pretest_items == test_items
    # Only the test items hold slots; attention checks, learning and pre-test copies hold none.
    assert Slot.objects.filter(assignment__participant=participant).count() == 3
    assert participant.phase == "pretest"

    seen_phases = []
    while (assignment := assignment_current(participant=participant)) is not None:
        assignment_serve(assignment=assignment)
        participant.refresh_from_db()
        seen_phases.append(participant.phase)
        if assignment.phase == "learning":
            with pytest.raises(SubmissionRefused, match="practice"):
                _answer(participant, assignment)
            learning_acknowledge(participant=participant, assignment_public_id=assignment.public_id)
            assert (
                learning_acknowledge(participant=participant, assignment_public_id=assignment.public_id).status
                == "answered"
            )  # idempotent
        else:
            guess = assignment.expected_answer if assignment.kind == "attention" else None
            _answer(participant, assignment, guess=guess)
    assert seen_phases == ["pretest"] * 3 + ["learning"] * 2 + ["test"] * 5
    participant.refresh_from_db()
    assert participant.phase == "survey" and participant.finished_at is None

    with pytest.raises(SubmissionRefused, match="helpful"):
        participant_survey_submit(participant=participant, helpfulness="7", comment="")
    participant_survey_submit(participant=participant, helpfulness="4", comment="  the colours helped ")
    participant.refresh_from_db()
    assert (participant.phase, participant.helpfulness, participant.comment) == ("done", 4, "the colours helped")
    assert participant.finished_at is not None
    participant_survey_submit(participant=participant, helpfulness="1", comment="changed my mind")  # no effect
    participant.refresh_from_db()
    assert participant.helpfulness == 4

    responses = Response.objects.filter(participant=participant)
    assert Counter(responses.values_list("phase", flat=True)) == {"pretest": 3, "test": 5}
    assert responses.filter(is_attention_check=True).count() == 2
    assert set(responses.filter(is_attention_check=True).values_list("attention_passed", flat=True)) == {True}
    assert set(responses.filter(is_attention_check=False).values_list("attention_passed", flat=True)) == {None}
    # Everyone answered faster than the (absurd) 60 s minimum: flagged, and excluded by the rule.
    assert set(responses.values_list("too_fast", flat=True)) == {True}
    assert participant.excluded and participant.exclusion_reasons == ["max_fast_share"]
    exclusions = study_participant_exclusions(study=phased)
    assert exclusions.pop(str(participant.public_id)) == participant.exclusion_reasons
    assert list(exclusions.values()) in ([], [[]])  # the other arm's participant, if any, only entered
    # Progress counts real test answers only.
    assert study_progress(study=phased)["responses"] == 3


def test_baseline_arm_survey_asks_no_helpfulness(phased):
    participants = [enter_and_start(phased, f"P{k}") for k in range(2)]
    baseline = next(p for p in participants if p.condition.is_baseline)
    answer_all(baseline)
    baseline.refresh_from_db()
    assert baseline.phase == "survey"
    participant_survey_submit(participant=baseline, helpfulness=None, comment="")
    baseline.refresh_from_db()
    assert baseline.phase == "done" and baseline.helpfulness is None


def test_attention_checks_are_instructed_or_easy_gold(alice, tmp_path):
    study = build_study(
        alice,
        tmp_path,
        n_dataset_items=30,
        n_items=6,
        items_per_participant=3,
        raters_per_item=4,
        attention_checks=2,
        name="checks",
    )
    kinds = Counter()
    for k in range(4):
        participant = enter_and_start(study, f"P{k}")
        for check in participant.assignments.filter(kind="attention"):
            prediction = Prediction.objects.get(model=study.model, item=check.item)
            kinds[check.check_type] += 1
            assert check.expected_answer in check.candidate_order
            if check.check_type == "instructed":
                assert check.expected_answer not in (prediction.label, check.item.gold_label)
            else:
                assert check.expected_answer == prediction.label == check.item.gold_label
    assert kinds == {"instructed": 4, "gold": 4}


def test_failing_attention_checks_screens_out_and_frees_the_slots(alice, tmp_path):
    study = build_study(
        alice,
        tmp_path,
        n_dataset_items=24,
        n_items=6,
        items_per_participant=4,
        raters_per_item=1,
        attention_checks=2,
        exclusion_rules={"screen_out_at_attention_failures": 1},
        survey=True,
        name="screen",
    )
    participant = enter_and_start(study, "sloppy")
    while (assignment := _serve_next(participant)).kind != "attention":
        _answer(participant, assignment)
    answered_before = participant.responses.count()
    wrong = next(c for c in assignment.candidate_order if c != assignment.expected_answer)

    _answer(participant, assignment, guess=wrong)

    participant.refresh_from_db()
    assert participant.screened_out and participant.phase == "done"  # straight out, no survey
    response = Response.objects.get(assignment=assignment)
    assert (response.is_attention_check, response.attention_passed) == (True, False)
    assert participant.responses.count() == answered_before + 1  # nothing deleted
    assert not participant.assignments.filter(status="active").exists()
    # The items they had not answered went back to the pool at once.
    held = Slot.objects.filter(assignment__participant=participant).count()
    assert held == answered_before
    exit_info = participant_exit(participant=participant)
    assert exit_info["code"] == study.screened_out_code != study.completion_code
    assert exit_info["redirect"] == f"https://app.prolific.com/submissions/complete?cc={study.screened_out_code}"


def test_exclusion_rules_are_locked_once_live(alice, tmp_path):
    study = build_study(alice, tmp_path, launch=False, name="prereg")
    study_exclusion_rules_update(study=study, rules={"max_attention_failures": 1})
    assert Study.objects.get(pk=study.pk).exclusion_rules == {"max_attention_failures": 1}
    study_launch(study=study)
    with pytest.raises(StudyError, match="fixed once the study is live"):
        study_exclusion_rules_update(study=study, rules={})
    assert Study.objects.get(pk=study.pk).exclusion_rules == {"max_attention_failures": 1}


# --- resume, preview, reclaim ---------------------------------------------------------------


def test_returning_participant_resumes_in_every_phase(phased):
    participant = enter_and_start(phased, "R1")

    def comes_back(expected: str) -> None:
        # Back on another device, through the platform link of the same Prolific session.
        again = participant_enter(
            study=phased,
            platform="prolific",
            platform_id="R1",
            platform_data={"STUDY_ID": "s", "SESSION_ID": "sess-R1"},
        )
        assert again.pk == participant.pk and again.phase == expected
        current = assignment_current(participant=again)
        assert (current.phase if current else None) == (expected if expected != "survey" else None)

    comes_back("pretest")
    _answer(participant, _serve_next(participant))
    comes_back("pretest")
    while assignment_current(participant=participant).phase == "pretest":
        _answer(participant, _serve_next(participant))
    comes_back("learning")
    learning_acknowledge(participant=participant, assignment_public_id=_serve_next(participant).public_id)
    comes_back("learning")
    learning_acknowledge(participant=participant, assignment_public_id=_serve_next(participant).public_id)
    comes_back("test")
    answer_all(participant)
    comes_back("survey")
    with pytest.raises(ParticipantError) as elsewhere:  # the same ID with another platform session
        participant_enter(
            study=phased,
            platform="prolific",
            platform_id="R1",
            platform_data={"STUDY_ID": "s", "SESSION_ID": "someone else"},
        )
    assert elsewhere.value.code == "elsewhere"
    participant_survey_submit(participant=participant, helpfulness=3, comment="")
    with pytest.raises(ParticipantError) as caught:
        participant_enter(study=phased, platform="prolific", platform_id="R1")
    assert caught.value.code == "finished"
    assert Participant.objects.filter(study=phased).count() == 1


def test_preview_takes_no_slot_and_is_not_data(phased):
    condition = phased.conditions.get(is_baseline=False)
    preview = participant_preview_start(study=phased, condition=condition)
    assert (preview.platform, preview.condition_id) == ("preview", condition.pk)
    participant_consent(participant=preview)
    participant_start(participant=preview)
    assert preview.assignments.filter(phase="test", kind="item").count() == 3
    assert not Slot.objects.filter(assignment__participant=preview).exists()
    answer_all(preview)
    participant_survey_submit(participant=preview, helpfulness=5, comment="")
    preview.refresh_from_db()
    assert preview.phase == "done" and preview.responses.exists()
    assert participant_exit(participant=preview)["preview"]
    assert list(study_response_rows(study=phased)) == []
    progress = study_progress(study=phased)
    assert progress["responses"] == 0 and all(c["participants"] == 0 for c in progress["conditions"])
    assert study_participant_exclusions(study=phased) == {}
    # Not through the crowd entry, and not before precompute is done.
    with pytest.raises(ParticipantError):
        participant_enter(study=phased, platform="preview", platform_id="x")


def test_preview_works_before_launch_but_not_before_precompute(alice, tmp_path):
    ready = build_study(alice, tmp_path, n_items=4, items_per_participant=2, launch=False, name="ready")
    preview = participant_preview_start(study=ready)
    participant_consent(participant=preview)
    participant_start(participant=preview)
    assert len(answer_all(preview)) == 2
    assert not Slot.objects.filter(condition__study=ready).exists()
    draft = study_create(
        owner=alice,
        name="draft",
        dataset=ready.dataset,
        model=ready.model,
        conditions=TWO_ARMS,
        n_items=4,
        items_per_participant=2,
        raters_per_item=1,
    )
    with pytest.raises(ParticipantError, match="precompute"):
        participant_preview_start(study=draft)
    other = build_study(alice, tmp_path, n_items=4, items_per_participant=2, launch=False, name="other")
    with pytest.raises(ParticipantError):
        participant_preview_start(study=ready, condition=other.conditions.first())


def test_beat_task_reclaims_an_abandoned_lease_for_the_next_participant(alice, tmp_path):
    # One arm's worth of slots: 2 items x 1 rater; the first participant takes both and leaves.
    study = build_study(
        alice,
        tmp_path,
        n_dataset_items=4,
        n_items=2,
        items_per_participant=2,
        raters_per_item=1,
        name="beat",
        conditions=[ConditionSpec("base"), ConditionSpec("h", ["heatmap"])],
    )
    first, second = enter_and_start(study, "gone-1"), enter_and_start(study, "gone-2")
    with pytest.raises(ParticipantError) as caught:
        participant_enter(study=study, platform="prolific", platform_id="next")
    assert caught.value.code == "full"  # active leases hold every slot
    items = set(first.assignments.values_list("item_id", flat=True))
    Assignment.objects.filter(participant=first).update(lease_expires_at=timezone.now() - timedelta(seconds=1))

    # The task as celery beat runs it (settings.CELERY_BEAT_SCHEDULE).
    from django.conf import settings

    assert settings.CELERY_BEAT_SCHEDULE["reclaim-expired-leases"]["task"] == reclaim_expired_leases.name
    assert reclaim_expired_leases.apply().get() == 2
    assert reclaim_expired_leases.apply().get() == 0

    newcomer = enter_and_start(study, "next")
    assert newcomer.condition_id == first.condition_id
    assert set(newcomer.assignments.values_list("item_id", flat=True)) == items
    assert len(answer_all(newcomer)) == 2
    with pytest.raises(SubmissionRefused, match="run out"):
        _answer(first, assignment_serve(assignment=first.assignments.first()))
    assert second.assignments.filter(status="active").count() == 2


# --- every view exists, checked again before precompute and launch ---------------------------


def test_a_model_that_lost_a_view_stops_the_precompute_and_the_launch(alice, tmp_path):
    """The design was checked when created; the model's stored modalities or capabilities may
    change after (re-registered under the name, edited by an admin): precompute and launch check
    again, naming the arm and the view, and plan nothing."""
    from annotations.models import PrecomputeJob, RegisteredModel
    from annotations.services.precompute import precompute_job_create

    ready = build_study(
        alice,
        tmp_path,
        name="ready",
        launch=False,
        conditions=[ConditionSpec("baseline"), ConditionSpec("mv", ["heatmap", "features"])],
    )
    draft = study_create(
        owner=alice,
        name="draft",
        dataset=ready.dataset,
        model=ready.model,
        conditions=[ConditionSpec("baseline"), ConditionSpec("ig", ["heatmap", "tokens"])],
        n_items=4,
        items_per_participant=2,
        raters_per_item=1,
    )
    RegisteredModel.objects.filter(pk=ready.model_id).update(capabilities={"features": False})
    with pytest.raises(StudyError, match=r"arm 'mv' shows 'features', but model 'model-ready' has no features\(\)"):
        study_launch(study=ready)
    assert Study.objects.get(pk=ready.pk).status == Study.Status.READY

    RegisteredModel.objects.filter(pk=ready.model_id).update(modalities=["tabular", "text"])
    with pytest.raises(StudyError, match=r"arm 'ig' shows 'heatmap', but model 'model-ready' has no image modality"):
        precompute_job_create(study=draft)
    assert Study.objects.get(pk=draft.pk).status == Study.Status.DRAFT
    assert not PrecomputeJob.objects.filter(study=draft).exists()
