"""A study with responses written row by row (no participant flow, no engine), for the export,
analysis, API and dashboard tests: two arms, pretest and test phases, attention checks, a
participant who fails them, a fast clicker, a screened-out participant, a researcher preview,
automatic metrics on the predicted-class explanations, and awkward labels and comments."""

from __future__ import annotations

import random
from datetime import timedelta
from pathlib import Path

from django.utils import timezone

from annotations.models import Assignment, Condition, Explanation, Participant, Prediction, Response, Study
from tests.builders.studies import build_study

RULES = {
    "max_attention_failures": 0,
    "min_median_rt_ms": 1500,
    "max_fast_share": 0.5,
    "min_test_responses": 2,
    "exclude_screened_out": True,
}


def _respond(
    participant: Participant,
    *,
    item,
    phase: str,
    position: int,
    guess: str,
    candidates: list[str],
    confidence: int,
    rt_ms: int,
    prediction: str,
    gold: str,
    when,
    attention: bool = False,
    passed: bool | None = None,
) -> Response:
    assignment = Assignment.objects.create(
        participant=participant,
        phase=phase,
        kind="attention" if attention else "item",
        expected_answer=guess if attention and passed else "",
        item=item,
        condition=participant.condition,
        position=position,
        status=Assignment.Status.ANSWERED,
        candidate_order=candidates,
        lease_expires_at=when + timedelta(hours=1),
        served_at=when,
    )
    response = Response.objects.create(
        assignment=assignment,
        participant=participant,
        item=item,
        condition=participant.condition,
        phase=phase,
        is_attention_check=attention,
        attention_passed=passed,
        guess=guess,
        confidence=confidence,
        rt_ms=rt_ms,
        candidate_order=candidates,
        model_prediction=prediction,
        gold_label=gold,
    )
    Response.objects.filter(pk=response.pk).update(created_at=when)
    return response


def build_answered_study(
    owner,
    tmp_path: Path,
    *,
    participants_per_arm: int = 6,
    seed: int = 3,
    name: str = "answered",
    rules: dict | None = None,
    metrics: bool = True,
) -> Study:
    """See the module docstring. Deterministic for a given seed."""
    study = build_study(
        owner,
        tmp_path,
        n_dataset_items=16,
        n_items=8,
        items_per_participant=6,
        raters_per_item=participants_per_arm,
        n_candidates=4,
        seed=seed,
        name=name,
    )
    study.exclusion_rules = RULES if rules is None else rules
    study.min_rt_ms = 700
    study.save(update_fields=["exclusion_rules", "min_rt_ms"])
    rng = random.Random(seed)
    predictions = {p.item_id: p for p in Prediction.objects.filter(model=study.model)}
    pool = list(study.study_items.select_related("item").order_by("item__line_number"))
    items = [si.item for si in pool]
    labels = list(study.model.labels)
    if metrics:
        for k, item in enumerate(items):
            Explanation.objects.filter(model=study.model, item=item, target_label=predictions[item.pk].label).update(
                metrics={
                    "deletion_auc": 0.1 + 0.05 * k,
                    "insertion_auc": 0.9 - 0.03 * (k % 5),
                    "infidelity": 0.5 / (k + 1),
                    "sensitivity_max": 0.01 * (k % 3),
                    "interaction_strength": 0.2,
                    "modality_share": {"image": 0.6 - 0.1 * (k % 4), "text": 0.4 + 0.1 * (k % 4)},
                }
            )
    start = timezone.now() - timedelta(days=1)
    clock = 0
    for condition in Condition.objects.filter(study=study).order_by("pk"):
        skill = 0.45 if condition.is_baseline else 0.8
        for k in range(participants_per_arm):
            platform_id = f"PID-{condition.name}-{k}"
            screened = k == participants_per_arm - 1 and condition.is_baseline
            participant = Participant.objects.create(
                study=study,
                condition=condition,
                platform="prolific",
                platform_id=platform_id,
                platform_data={"STUDY_ID": "s", "SESSION_ID": f"sess-{k}"},
                phase="done",
                screened_out=screened,
                helpfulness=1 + (k % 5),
                comment='=HYPERLINK("x")' if k == 0 else f"fine, thanks\nline {k}",
                finished_at=start + timedelta(minutes=30),
            )
            fast = k == 1  # clicks through
            position = 0
            order = rng.sample(items, 6)
            pretest_items = [i for i in items if i not in order][:2]
            for phase, chosen in (("pretest", pretest_items), ("test", order)):
                if screened and phase == "test":
                    break
                for item in chosen:
                    prediction = predictions[item.pk].label
                    candidates = rng.sample(labels, len(labels))
                    p_right = skill if phase == "test" else 0.4
                    guess = prediction if rng.random() < p_right else rng.choice([x for x in labels if x != prediction])
                    clock += 1
                    _respond(
                        participant,
                        item=item,
                        phase=phase,
                        position=position,
                        guess=guess,
                        candidates=candidates,
                        confidence=rng.randint(1, 5),
                        rt_ms=rng.randint(200, 600) if fast else rng.randint(1600, 9000),
                        prediction=prediction,
                        gold=item.gold_label,
                        when=start + timedelta(seconds=clock),
                    )
                    position += 1
                if phase == "test" and not screened:
                    failed = k == 2  # fails the attention check
                    item = pretest_items[0]
                    clock += 1
                    _respond(
                        participant,
                        item=item,
                        phase="test",
                        position=position,
                        guess="red",
                        candidates=labels,
                        confidence=5,
                        rt_ms=2500,
                        prediction=predictions[item.pk].label,
                        gold=item.gold_label,
                        when=start + timedelta(seconds=clock),
                        attention=True,
                        passed=not failed,
                    )
                    position += 1
    # A researcher's preview is not data.
    preview = Participant.objects.create(
        study=study, condition=Condition.objects.filter(study=study).first(), platform="preview"
    )
    _respond(
        preview,
        item=items[0],
        phase="test",
        position=0,
        guess=labels[0],
        candidates=labels,
        confidence=3,
        rt_ms=1000,
        prediction=predictions[items[0].pk].label,
        gold=items[0].gold_label,
        when=start + timedelta(seconds=clock + 1),
    )
    return study
