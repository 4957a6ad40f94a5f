"""Designing, precomputing and launching studies.

The researcher's flow: docs/DESIGN.md, "Flows".
"""

from __future__ import annotations

import random

from django.db import IntegrityError, transaction
from django.db.models import Value
from django.db.models.functions import Lower, Trim
from django.utils import timezone

from annotations.models import (
    Condition,
    Dataset,
    Explanation,
    Participant,
    Prediction,
    RegisteredModel,
    Response,
    Slot,
    Study,
    StudyItem,
)
from annotations.selectors.answers import dataset_answers_without_label, study_answer_options
from annotations.selectors.precompute import (
    MODALITY_INTERACTION,
    explanation_has_views,
    study_required_methods,
)
from annotations.selectors.studies import dataset_label_coverage, study_explanation_targets
from annotations.services.counterfactual import CounterfactualDesignError, counterfactual_design_check
from annotations.services.judging import judging_slots
from annotations.services.spec import (
    ConditionSpec,
    SpecError,
    StudySpec,
    arms_views_check,
    dataset_shortfall,
    exclusion_rules_check,
    modality_names_check,
    sequential_monitoring_check,
    task_design_check,
)
from annotations.study_tasks import study_task

KNOWN_VIEWS = {choice.value for choice in Condition.View}


class StudyError(Exception):
    pass


class StudyNameTaken(SpecError, StudyError):
    """The owner has a study of that name (ignoring case and surrounding spaces): a ``name``
    field error where a spec's errors are shown field by field (the form, the API), a study
    error everywhere else."""


def study_create(
    *,
    owner,
    name: str,
    dataset: Dataset,
    model: RegisteredModel,
    conditions: list[ConditionSpec],
    n_items: int,
    items_per_participant: int,
    raters_per_item: int,
    n_candidates: int = 4,
    n_distractors: int = 0,
    seed: int = 0,
    explanation_method: str = "integrated_gradients",
    interaction_method: str = "second_order",
    explanation_display: str = "all_candidates",
    lease_minutes: int = 60,
    consent_text: str = "",
    instructions: str = "",
    learning_items: int = 0,
    pretest: bool = False,
    survey: bool = True,
    attention_checks: int = 0,
    min_rt_ms: int = 0,
    exclusion_rules: dict | None = None,
    confidence_range: tuple[float, float] | None = None,
    interaction_range: tuple[float, float] | None = None,
    interaction_types: tuple[str, ...] | None = None,
    completion_code: str = "",
    screened_out_code: str = "",
    partial_code: str = "",
    public_title: str = "",
    modality_names: dict[str, str] | None = None,
    task: str = "forward",
    counterfactual: dict | None = None,
) -> Study:
    """Create a draft study. Exactly one condition must be the no-explanation baseline."""
    design = StudySpec(
        **{key: value for key, value in locals().items() if key != "owner"}
        | {"modality_names": modality_names or {}, "counterfactual": counterfactual or {}}
    )  # the arguments
    return study_create_from_spec(owner=owner, spec=design)


def _labels_check(*, dataset: Dataset, model: RegisteredModel, item_ids: list[int] | None = None) -> None:
    """Refuse a design whose (test) items have no gold answer the model can give: the model is
    "wrong" on every one, so the right/wrong balance of the test items cannot hold."""
    coverage = dataset_label_coverage(dataset=dataset, labels=model.labels, item_ids=item_ids)
    if coverage.n_items and not coverage.n_known:
        what = "test items" if item_ids is not None else "items"
        raise StudyError(
            f"none of the {what} of dataset '{dataset.name}' has a gold answer among model '{model.name}''s labels "
            f"(unknown answers {coverage.unknown_text()}); the model would be wrong on every item"
        )


def _design_fields(*, owner, spec: StudySpec) -> dict:
    """Check a design and return the Study fields it sets (the conditions are left to the
    caller). Raises StudyError naming the first problem."""
    if spec.dataset.owner_id != owner.pk or spec.model.owner_id != owner.pk:
        raise StudyError("a study can only use your own dataset and model")
    missing = sorted(set(spec.model.modalities) - set(spec.dataset.modalities))
    if missing:
        raise StudyError(f"the model needs modalities {missing} that dataset '{spec.dataset.name}' lacks")
    _labels_check(dataset=spec.dataset, model=spec.model)
    dead = dataset_answers_without_label(dataset=spec.dataset, labels=list(spec.model.labels))
    if dead:
        raise StudyError(
            f"dataset '{spec.dataset.name}' declares the valid answers {', '.join(dead[0])}, none of which is a "
            f"label of model '{spec.model.name}'; fix the dataset's choices or answer types"
        )
    if len([c for c in spec.conditions if c.is_baseline]) != 1:
        raise StudyError("a study needs exactly one no-explanation baseline condition")
    if len(spec.conditions) < 2:
        raise StudyError("a study needs the baseline and at least one explanation condition")
    if len({c.name for c in spec.conditions}) != len(spec.conditions):
        raise StudyError("condition names must be distinct")
    for condition in spec.conditions:
        unknown = sorted(set(condition.views) - KNOWN_VIEWS)
        if unknown:
            raise StudyError(f"condition '{condition.name}' has unknown views {unknown}; known: {sorted(KNOWN_VIEWS)}")
    try:
        arms_views_check(arms=spec.conditions, model=spec.model)
    except SpecError as exc:
        raise StudyError(str(exc).split(": ", 1)[-1]) from None
    if spec.n_items < 1 or spec.items_per_participant < 1 or spec.raters_per_item < 1:
        raise StudyError("item counts must be positive")
    if spec.items_per_participant > spec.n_items:
        raise StudyError("items per participant cannot exceed the number of items in the study")
    shortfall = dataset_shortfall(
        dataset=spec.dataset,
        n_items=spec.n_items,
        learning_items=spec.learning_items,
        attention_checks=spec.attention_checks,
    )
    if shortfall:
        raise StudyError(shortfall)
    if spec.n_candidates == 1 and spec.n_distractors == 0:
        raise StudyError("participants need at least two candidate answers")
    if spec.explanation_display not in ("all_candidates", "predicted_unlabelled"):
        raise StudyError(f"unknown explanation display {spec.explanation_display!r}")
    if min(spec.learning_items, spec.attention_checks, spec.min_rt_ms, spec.n_distractors) < 0:
        raise StudyError("counts and times must not be negative")
    if spec.completion_code and spec.completion_code == spec.screened_out_code:
        raise StudyError("the completed and screened-out codes must differ")
    if spec.partial_code and spec.partial_code in (spec.completion_code, spec.screened_out_code):
        raise StudyError("the partial-completion code must differ from the completed and screened-out codes")
    try:
        task_design_check(spec)
        counterfactual = counterfactual_design_check(spec.counterfactual, task=spec.task, model=spec.model)
    except (SpecError, CounterfactualDesignError) as exc:
        raise StudyError(str(exc)) from None
    rules = exclusion_rules_check(spec.exclusion_rules or {})
    monitoring = {}
    if spec.sequential_monitoring is not None:  # None: keep the study's plan (an edit without the section)
        try:
            monitoring["sequential_monitoring"] = sequential_monitoring_check(
                spec.sequential_monitoring,
                max_participants_per_arm=spec.n_items * spec.raters_per_item // spec.items_per_participant,
            )
        except SpecError as exc:
            raise StudyError(str(exc)) from None
    filters = {
        key: list(value)
        for key, value in (("confidence", spec.confidence_range), ("interaction_strength", spec.interaction_range))
        if value
    }
    codes = {
        key: value
        for key, value in (
            ("completion_code", spec.completion_code),
            ("screened_out_code", spec.screened_out_code),
            ("partial_code", spec.partial_code),
        )
        if value
    }
    if spec.interaction_types:
        filters["interaction_type"] = list(spec.interaction_types)
    return dict(
        name=spec.name,
        task=spec.task,
        public_title=spec.public_title,
        dataset=spec.dataset,
        model=spec.model,
        seed=spec.seed,
        items_per_participant=spec.items_per_participant,
        raters_per_item=spec.raters_per_item,
        n_candidates=spec.n_candidates,
        n_distractors=spec.n_distractors if spec.n_candidates else 0,
        explanation_method=spec.explanation_method,
        interaction_method=spec.interaction_method,
        explanation_display=spec.explanation_display,
        lease_minutes=spec.lease_minutes,
        consent_text=spec.consent_text,
        instructions=spec.instructions,
        learning_items=spec.learning_items,
        pretest=spec.pretest,
        survey=spec.survey,
        attention_checks=spec.attention_checks,
        min_rt_ms=spec.min_rt_ms,
        exclusion_rules=rules,
        design={"n_items": spec.n_items, "filters": filters}
        | ({"modality_names": names} if (names := _modality_names(spec=spec)) else {})
        | ({"counterfactual": counterfactual} if counterfactual else {})
        | ({"attention_method": spec.attention_method} if spec.attention_method != "chefer" else {}),
        **codes,
        **monitoring,
    )


def study_views_check(*, study: Study) -> None:
    """Refuse a study an arm of which shows a view its model cannot give, as the design was
    checked (``spec.arms_views_check``), again at precompute and at launch: the model's stored
    modalities and capabilities may have changed since."""
    model = RegisteredModel.objects.get(pk=study.model_id)
    arms = [ConditionSpec(name=c.name, views=list(c.views)) for c in study.conditions.all()]
    try:
        arms_views_check(arms=arms, model=model)
    except SpecError as exc:
        raise StudyError(f"{str(exc).split(': ', 1)[-1]}; change the arm's views") from None


def _modality_names(*, spec: StudySpec) -> dict[str, str]:
    try:
        return modality_names_check(spec.modality_names, model=spec.model)
    except SpecError as exc:
        raise StudyError(str(exc)) from None


def _conditions_create(*, study: Study, conditions: list[ConditionSpec]) -> None:
    Condition.objects.bulk_create(
        Condition(study=study, name=c.name, views=list(c.views), is_baseline=c.is_baseline, method=c.method)
        for c in conditions
    )


def _study_name_taken_error(*, name: str, taken: str) -> StudyNameTaken:
    same = "" if taken == name.strip() else f" ('{taken}': names ignore case and surrounding spaces)"
    return StudyNameTaken("name", f"you already have a study named '{name.strip()}'{same}; choose another name")


def study_name_check(*, owner, name: str, exclude_pk: int | None = None) -> None:
    """Refuse a name ``owner`` already uses, ignoring case and surrounding spaces (as the
    ``study_unique_name_per_owner_ci`` constraint does), with a ``name`` field error."""
    clash = (
        Study.objects.annotate(key=Lower(Trim("name")))
        .filter(owner=owner, key=Lower(Trim(Value(name))))
        .exclude(pk=exclude_pk)
        .values_list("name", flat=True)
        .first()
    )
    if clash is not None:
        raise _study_name_taken_error(name=name, taken=clash)


def study_create_from_spec(*, owner, spec: StudySpec) -> Study:
    """The study the web form, ``launch_study`` or ``study_create`` describes (see services/spec.py)."""
    fields = _design_fields(owner=owner, spec=spec)
    study_name_check(owner=owner, name=spec.name)
    try:
        with transaction.atomic():
            study = Study.objects.create(owner=owner, **fields)
            _conditions_create(study=study, conditions=spec.conditions)
    except IntegrityError:  # a concurrent create with the same name
        raise _study_name_taken_error(name=spec.name, taken=spec.name.strip()) from None
    return study


EDITABLE = (Study.Status.DRAFT, Study.Status.READY)


def study_update_from_spec(*, study: Study, spec: StudySpec) -> Study:
    """Change a study's design before launch. A precomputed study goes back to draft with its
    item pools cleared (they follow the design); stored predictions and explanations belong
    to the model and items, so precompute only adds what the new design lacks. Previews are
    dropped: they walked the old design."""
    fields = _design_fields(owner=study.owner, spec=spec)
    with transaction.atomic():
        locked = Study.objects.select_for_update().get(pk=study.pk)
        if locked.status not in EDITABLE:
            raise StudyError(f"only a draft or a ready study can be edited (this one is {locked.status})")
        study_name_check(owner=locked.owner, name=spec.name, exclude_pk=locked.pk)
        for key, value in fields.items():
            setattr(locked, key, value)
        locked.status = Study.Status.DRAFT
        locked.save()
        _previews_delete(study=locked)
        locked.study_items.all().delete()
        locked.counterfactual_edits.all().delete()  # they follow the pool and the design's edits
        locked.conditions.all().delete()
        _conditions_create(study=locked, conditions=spec.conditions)
    return locked


def study_delete(*, study: Study) -> None:
    """Delete a study that never went live (with its previews, pools and precompute jobs).
    A live or closed study holds participants' data and is never deleted here."""
    with transaction.atomic():
        locked = Study.objects.select_for_update().get(pk=study.pk)
        if locked.status not in (*EDITABLE, Study.Status.PRECOMPUTING):
            raise StudyError(f"a {locked.status} study holds participants' answers and cannot be deleted")
        _previews_delete(study=locked)
        locked.delete()


def _previews_delete(*, study: Study) -> None:
    """A researcher's walks through the study: not data, and their answers protect nothing."""
    Response.objects.filter(participant__study=study, participant__platform=Participant.Platform.PREVIEW).delete()
    study.participants.filter(platform=Participant.Platform.PREVIEW).delete()


def study_exclusion_rules_update(*, study: Study, rules: dict) -> Study:
    """Pre-registration: exclusion rules may change until launch, never after."""
    with transaction.atomic():
        locked = Study.objects.select_for_update().get(pk=study.pk)
        if locked.status in (Study.Status.LIVE, Study.Status.CLOSED):
            raise StudyError("exclusion rules are fixed once the study is live (pre-registration)")
        locked.exclusion_rules = exclusion_rules_check(rules)
        locked.save(update_fields=["exclusion_rules"])
    study.exclusion_rules = locked.exclusion_rules
    return study


def study_sequential_monitoring_update(*, study: Study, plan: dict) -> Study:
    """Pre-registration: the sequential-monitoring plan may change until launch, never after
    (looks chosen once the data are in would void its error guarantee). ``{}`` removes it."""
    with transaction.atomic():
        locked = Study.objects.select_for_update().get(pk=study.pk)
        if locked.status in (Study.Status.LIVE, Study.Status.CLOSED):
            raise StudyError("the sequential-monitoring plan is fixed once the study is live (pre-registration)")
        n_items = int((locked.design or {}).get("n_items") or 0)
        room = n_items * locked.raters_per_item // locked.items_per_participant if n_items else None
        try:
            locked.sequential_monitoring = sequential_monitoring_check(plan, max_participants_per_arm=room)
        except SpecError as exc:
            raise StudyError(str(exc)) from None
        locked.save(update_fields=["sequential_monitoring"])
    study.sequential_monitoring = locked.sequential_monitoring
    return study


def _confidence(prediction: Prediction) -> float:
    return max(prediction.probabilities) if prediction.probabilities else 0.0


def _interaction_strengths(*, study: Study) -> dict[int, float]:
    """Per item, |dividend| / (|effect_a| + |effect_b| + |dividend|) of the predicted class:
    the share of the model's change from the baselines that needs both modalities at once."""
    rows = Explanation.objects.filter(
        model=study.model, item__dataset=study.dataset, method=MODALITY_INTERACTION, status=Explanation.Status.DONE
    )
    strengths = {}
    for row in rows.values("item_id", "summary"):
        summary = row["summary"] or {}
        parts = [abs(float(summary.get(k, 0.0))) for k in ("effect_a", "effect_b", "dividend")]
        strengths[row["item_id"]] = parts[2] / sum(parts) if sum(parts) > 0 else 0.0
    return strengths


def _of_interaction_types(*, study: Study, eligible: list[Prediction], types: list[str]) -> list[Prediction]:
    """The predictions of items whose M2Lens interaction type (latest finished model report of the
    study's model on its dataset) is one of ``types``."""
    from annotations.selectors.model_reports import model_item_interaction_types

    found = model_item_interaction_types(model=study.model, dataset=study.dataset)
    if found is None:
        raise StudyError(
            f"the interaction-type filter needs a finished model report of model '{study.model.name}' "
            f"on dataset '{study.dataset.name}'"
        )
    _, by_item = found
    return [p for p in eligible if by_item.get(p.item_id) in types]


def _stratified(right: list, wrong: list, n: int) -> tuple[list, list]:
    """Half right, half wrong (Hase & Bansal 2020); a short stratum is filled from the other."""
    n_wrong = min(len(wrong), n // 2)
    n_right = min(len(right), n - n_wrong)
    n_wrong = min(len(wrong), n - n_right)
    return right[:n_right], wrong[:n_wrong]


def study_select_items(*, study: Study) -> list[StudyItem]:
    """Sample the study's item pools with the study's seed. Idempotent: an existing pool is kept.

    * test: ``n_items``, stratified so that half are items the model got right and half
      ones it got wrong (Hase & Bansal 2020), after the optional confidence,
      interaction-strength and interaction-type filters. When one stratum is short, the other fills the gap.
    * learning: ``learning_items`` more, disjoint from the test pool, stratified the same
      way (from unfiltered items if the filtered ones run out).
    * attention: for the easy gold checks, the items the model answers right with the
      highest confidence, disjoint from both (two per check, so participants vary).
    """
    existing = list(study.study_items.all())
    if existing:
        return existing
    n_items = int(study.design.get("n_items", 0)) or study.dataset.items.count()
    predictions = list(Prediction.objects.filter(model=study.model, item__dataset=study.dataset).select_related("item"))
    filters = study.design.get("filters") or {}
    eligible = predictions
    if filters.get("confidence"):
        low, high = filters["confidence"]
        eligible = [p for p in eligible if low <= _confidence(p) <= high]
    if filters.get("interaction_strength"):
        low, high = filters["interaction_strength"]
        strengths = _interaction_strengths(study=study)
        eligible = [p for p in eligible if p.item_id in strengths and low <= strengths[p.item_id] <= high]
    if filters.get("interaction_type"):
        eligible = _of_interaction_types(study=study, eligible=eligible, types=filters["interaction_type"])

    def strata(pool: list[Prediction]) -> tuple[list, list]:
        right = sorted((p.item for p in pool if p.label == p.item.gold_label), key=lambda i: i.pk)
        wrong = sorted((p.item for p in pool if p.label != p.item.gold_label), key=lambda i: i.pk)
        return right, wrong

    right, wrong = strata(eligible)
    rng = random.Random(f"{study.seed}:items")
    rng.shuffle(right)
    rng.shuffle(wrong)
    test_right, test_wrong = _stratified(right, wrong, n_items)
    chosen = [(i, StudyItem.Stratum.MODEL_RIGHT, StudyItem.Role.TEST) for i in test_right] + [
        (i, StudyItem.Stratum.MODEL_WRONG, StudyItem.Role.TEST) for i in test_wrong
    ]
    if len(chosen) < study.items_per_participant:
        what = "pass the filters" if filters else "have predictions"
        raise StudyError(
            f"only {len(chosen)} items {what}, fewer than the {study.items_per_participant} each participant needs"
        )
    used = {item.pk for item, _, _ in chosen}

    if study.learning_items:
        rest_right = [i for i in right if i.pk not in used]
        rest_wrong = [i for i in wrong if i.pk not in used]
        if len(rest_right) + len(rest_wrong) < study.learning_items:  # filters too tight: use any item
            rest_right, rest_wrong = strata([p for p in predictions if p.item_id not in used])
            rng.shuffle(rest_right)
            rng.shuffle(rest_wrong)
        learn_right, learn_wrong = _stratified(rest_right, rest_wrong, study.learning_items)
        if len(learn_right) + len(learn_wrong) < study.learning_items:
            raise StudyError(
                f"the dataset has too few items left for {study.learning_items} learning items "
                f"besides the {len(used)} test items"
            )
        chosen += [(i, StudyItem.Stratum.MODEL_RIGHT, StudyItem.Role.LEARNING) for i in learn_right] + [
            (i, StudyItem.Stratum.MODEL_WRONG, StudyItem.Role.LEARNING) for i in learn_wrong
        ]
        used |= {i.pk for i in learn_right + learn_wrong}

    if study.attention_checks:
        rest = [p for p in predictions if p.item_id not in used]
        # Sure and right first: those are the easy gold items; the rest serve instructed checks.
        rest.sort(key=lambda p: (p.label != p.item.gold_label, -_confidence(p), p.item_id))
        pool = rest[: 2 * study.attention_checks]
        if len(pool) < study.attention_checks:
            raise StudyError(
                f"the dataset has too few items left for {study.attention_checks} attention checks "
                f"besides the {len(used)} test and learning items"
            )
        chosen += [
            (
                p.item,
                StudyItem.Stratum.MODEL_RIGHT if p.label == p.item.gold_label else StudyItem.Stratum.MODEL_WRONG,
                StudyItem.Role.ATTENTION,
            )
            for p in pool
        ]

    StudyItem.objects.bulk_create(
        [StudyItem(study=study, item=item, stratum=stratum, role=role) for item, stratum, role in chosen],
        ignore_conflicts=True,
    )
    return list(study.study_items.all())


def study_launch(*, study: Study) -> Study:
    """Open the study to participants: create every item's rater slots per arm, in a
    seeded order so that items fill evenly (all get one rater before any gets two)."""
    with transaction.atomic():
        study = Study.objects.select_for_update().get(pk=study.pk)
        if study.status == Study.Status.LIVE:
            return study
        if study.status != Study.Status.READY:
            raise StudyError(f"only a ready study can be launched (this one is {study.status}); run precompute first")
        study_views_check(study=study)
        test_items = study.study_items.filter(role=StudyItem.Role.TEST).values_list("item_id", flat=True)
        _labels_check(dataset=study.dataset, model=study.model, item_ids=list(test_items))
        missing = _missing_explanations(study=study)
        if missing:
            raise StudyError(f"{missing} explanations are missing or failed; fix the adapter and precompute again")
        too_few = study_answer_options(study=study)["too_few"]
        if too_few:
            raise StudyError(
                f"{len(too_few)} test item(s) would offer fewer than two answers (e.g. '{too_few[0]}'): their "
                f"valid answers name no other label of the model; fix the dataset's choices"
            )
        rng = random.Random(f"{study.seed}:slots")
        # Only test items have rater slots: learning items and attention checks are not capped.
        pool = list(study.study_items.filter(role=StudyItem.Role.TEST).values_list("item_id", flat=True))
        if study_task(study.task).judges_explanations:
            slots = judging_slots(study=study, item_ids=pool, rng=rng)
        else:
            slots = [
                Slot(condition=condition, item_id=item_id, index=index, sort_key=rng.getrandbits(62))
                for condition in study.conditions.all()
                for item_id in pool
                for index in range(study.raters_per_item)
            ]
        Slot.objects.bulk_create(slots, ignore_conflicts=True)
        study.status = Study.Status.LIVE
        study.launched_at = timezone.now()
        study.save(update_fields=["status", "launched_at"])
    return study


def study_close(*, study: Study) -> Study:
    """Stop taking participants. Only a live study closes; a draft is simply not launched."""
    closed = Study.objects.filter(pk=study.pk, status__in=[Study.Status.LIVE, Study.Status.CLOSED]).update(
        status=Study.Status.CLOSED
    )
    if not closed:
        raise StudyError(f"only a live study can be closed (this one is {study.status})")
    study.status = Study.Status.CLOSED
    return study


def _missing_explanations(*, study: Study) -> int:
    """(item, target, method) triples some arm needs that have no finished row with the
    rendered views it is served from."""
    targets = study_explanation_targets(study=study)
    if not targets:
        return 0
    missing = 0
    for method, views in study_required_methods(study=study).items():
        rows = Explanation.objects.filter(
            model=study.model, method=method, status=Explanation.Status.DONE, item_id__in=list(targets)
        )
        done = {
            (e.item_id, e.target_label)
            for e in rows.only("item_id", "target_label", "extra_views")
            if explanation_has_views(e, views)
        }
        missing += sum(1 for item_id, labels in targets.items() for label in labels if (item_id, label) not in done)
    return missing
