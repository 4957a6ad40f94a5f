"""Designing, sampling, launching studies; idempotent stores for the worker."""

from __future__ import annotations

import pytest

from annotations.models import Condition, Explanation, Prediction, Slot, Study, StudyItem
from annotations.services.datasets import dataset_import
from annotations.services.explanations import explanation_store, prediction_store
from annotations.services.studies import (
    ConditionSpec,
    StudyError,
    study_create,
    study_launch,
    study_select_items,
)
from tests.builders.studies import (
    TWO_ARMS,
    build_study,
    make_explanations,
    make_model,
    make_predictions,
    make_ready,
    write_dataset,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def dataset(alice, tmp_path):
    return dataset_import(owner=alice, name="shapes", jsonl_path=write_dataset(tmp_path / "src", 24))


@pytest.fixture
def model(alice):
    return make_model(alice)


def _create(owner, dataset, model, **overrides):
    kwargs = dict(
        owner=owner,
        name="s",
        dataset=dataset,
        model=model,
        conditions=TWO_ARMS,
        n_items=10,
        items_per_participant=4,
        raters_per_item=2,
        seed=3,
    )
    kwargs.update(overrides)
    return study_create(**kwargs)


def _pool(study) -> dict[int, str]:
    return dict(StudyItem.objects.filter(study=study).values_list("item_id", "stratum"))


# --- study_create ---------------------------------------------------------------------------


def test_create_stores_a_draft_with_its_arms(alice, dataset, model):
    study = _create(
        alice,
        dataset,
        model,
        conditions=[
            ConditionSpec("none"),
            ConditionSpec("heat", ["heatmap"]),
            ConditionSpec("both", ["heatmap", "tokens"]),
        ],
    )

    assert study.status == Study.Status.DRAFT
    assert study.design["n_items"] == 10
    arms = {c.name: (c.views, c.is_baseline) for c in study.conditions.all()}
    assert arms == {"none": ([], True), "heat": (["heatmap"], False), "both": (["heatmap", "tokens"], False)}


@pytest.mark.parametrize(
    "conditions, message",
    [
        ([ConditionSpec("a", ["heatmap"]), ConditionSpec("b", ["tokens"])], "exactly one no-explanation baseline"),
        (
            [ConditionSpec("a"), ConditionSpec("b"), ConditionSpec("c", ["tokens"])],
            "exactly one no-explanation baseline",
        ),
        ([ConditionSpec("a")], "at least one explanation condition"),
        ([ConditionSpec("a"), ConditionSpec("b", ["heatmap", "sparkles"])], "unknown views"),
        ([ConditionSpec("a"), ConditionSpec("a", ["heatmap"])], "distinct"),
    ],
)
def test_create_refuses_bad_conditions(alice, dataset, model, conditions, message):
    with pytest.raises(StudyError, match=message):
        _create(alice, dataset, model, conditions=conditions)
    assert Study.objects.count() == 0
    assert Condition.objects.count() == 0


def test_create_refuses_more_items_per_participant_than_items(alice, dataset, model):
    with pytest.raises(StudyError, match="cannot exceed"):
        _create(alice, dataset, model, n_items=5, items_per_participant=6)
    with pytest.raises(StudyError, match="positive"):
        _create(alice, dataset, model, raters_per_item=0)
    with pytest.raises(StudyError, match="two candidate"):
        _create(alice, dataset, model, n_candidates=1)
    assert Study.objects.count() == 0


def test_create_refuses_another_owners_dataset_or_model(alice, charlie, dataset, model, tmp_path):
    with pytest.raises(StudyError, match="your own dataset and model"):
        _create(charlie, dataset, make_model(charlie))
    charlies_data = dataset_import(owner=charlie, name="c", jsonl_path=write_dataset(tmp_path / "c", 4))
    with pytest.raises(StudyError, match="your own dataset and model"):
        _create(charlie, charlies_data, model)
    assert Study.objects.count() == 0


def test_create_refuses_a_model_needing_modalities_the_dataset_lacks(alice, dataset):
    audio_model = make_model(alice, name="audio", modalities=["image", "audio"])
    with pytest.raises(StudyError, match="audio"):
        _create(alice, dataset, audio_model)


def test_create_refuses_a_model_that_cannot_give_any_gold_answer(alice, dataset):
    """The dataset's answers are colours; a cat/dog model is wrong on every item, so the
    right/wrong balance of the test items cannot hold: refused, naming the unknown answers."""
    pets = make_model(alice, name="pets", labels=["cat", "dog"])
    with pytest.raises(StudyError) as raised:
        _create(alice, dataset, pets)
    assert str(raised.value) == (
        "none of the items of dataset 'shapes' has a gold answer among model 'pets''s labels (unknown answers "
        "'blue' (6 items), 'green' (6 items), 'red' (6 items), 'yellow' (6 items)); the model would be wrong "
        "on every item"
    )
    partial = make_model(alice, name="partial", labels=["red", "cat"])
    assert _create(alice, dataset, partial).model == partial  # a partial overlap is the researcher's call


def test_launch_refuses_test_items_whose_gold_answers_the_model_cannot_give(alice, dataset, model):
    from annotations.services.studies import study_launch

    study = _create(alice, dataset, model)
    StudyItem.objects.create(study=study, item=dataset.items.first(), role=StudyItem.Role.TEST, stratum="right")
    study.status = study.Status.READY
    study.save(update_fields=["status"])
    model.labels = ["cat", "dog"]  # labels changed since the design (a re-registration, an edit)
    model.save(update_fields=["labels"])
    with pytest.raises(StudyError, match="none of the test items of dataset 'shapes' has a gold answer"):
        study_launch(study=study)


# --- stratified item selection --------------------------------------------------------------


def test_selection_is_half_right_half_wrong(alice, dataset, model):
    items = list(dataset.items.order_by("line_number"))
    make_predictions(model, items, n_right=12)
    study = _create(alice, dataset, model, n_items=10)

    chosen = study_select_items(study=study)

    assert len(chosen) == 10
    pool = _pool(study)
    predictions = {p.item_id: p for p in Prediction.objects.filter(item_id__in=pool).select_related("item")}
    for item_id, stratum in pool.items():
        right = predictions[item_id].label == predictions[item_id].item.gold_label
        assert stratum == (StudyItem.Stratum.MODEL_RIGHT if right else StudyItem.Stratum.MODEL_WRONG)
    assert sorted(pool.values()).count(StudyItem.Stratum.MODEL_RIGHT) == 5
    assert sorted(pool.values()).count(StudyItem.Stratum.MODEL_WRONG) == 5


def test_selection_is_deterministic_for_a_seed_and_idempotent(alice, dataset, model):
    make_predictions(model, dataset.items.order_by("line_number"), n_right=12)
    first = _create(alice, dataset, model, name="a", seed=11)
    again = _create(alice, dataset, model, name="b", seed=11)
    others = [_create(alice, dataset, model, name=f"c{s}", seed=s) for s in (12, 13, 14)]

    pool = set(_pool_after(first))
    assert set(_pool_after(again)) == pool
    # Different seeds draw different pools (10 of 24: three equal draws would be a fluke).
    assert any(set(_pool_after(o)) != pool for o in others)
    # Sampling again keeps the pool.
    study_select_items(study=first)
    assert set(_pool(first)) == pool
    assert StudyItem.objects.filter(study=first).count() == 10


def _pool_after(study):
    study_select_items(study=study)
    return _pool(study)


@pytest.mark.parametrize("n_right, expected_right, expected_wrong", [(3, 3, 7), (21, 7, 3)])
def test_selection_fills_from_the_other_stratum_when_one_is_short(
    alice, dataset, model, n_right, expected_right, expected_wrong
):
    # 24 items: n_right right and the remaining 24 - n_right wrong; one stratum has only 3.
    make_predictions(model, dataset.items.order_by("line_number"), n_right=n_right)
    study = _create(alice, dataset, model, n_items=10)

    study_select_items(study=study)

    strata = list(_pool(study).values())
    assert len(strata) == 10
    assert strata.count(StudyItem.Stratum.MODEL_RIGHT) == expected_right
    assert strata.count(StudyItem.Stratum.MODEL_WRONG) == expected_wrong


def test_selection_uses_only_items_with_predictions_and_refuses_too_few(alice, dataset, model):
    items = list(dataset.items.order_by("line_number"))
    make_predictions(model, items[:3], n_right=1)
    study = _create(alice, dataset, model, n_items=10, items_per_participant=4)
    with pytest.raises(StudyError, match="only 3 items have predictions"):
        study_select_items(study=study)
    assert StudyItem.objects.filter(study=study).count() == 0


# --- launch ---------------------------------------------------------------------------------


def test_launch_creates_one_slot_per_arm_item_and_rater(alice, tmp_path):
    conditions = [ConditionSpec("none"), ConditionSpec("heat", ["heatmap"]), ConditionSpec("tok", ["tokens"])]
    study = build_study(alice, tmp_path, n_items=8, raters_per_item=3, conditions=conditions)

    assert study.status == Study.Status.LIVE
    assert study.launched_at is not None
    slots = Slot.objects.filter(condition__study=study)
    assert slots.count() == 3 * 8 * 3
    pool = set(_pool(study))
    for condition in study.conditions.all():
        mine = list(slots.filter(condition=condition).values_list("item_id", "index"))
        assert sorted(mine) == sorted((item_id, index) for item_id in pool for index in range(3))
    assert not slots.exclude(assignment=None).exists()


def test_launch_is_idempotent(alice, tmp_path):
    study = build_study(alice, tmp_path, n_items=6, raters_per_item=2)
    before = list(Slot.objects.filter(condition__study=study).order_by("pk").values_list("pk", "sort_key"))

    again = study_launch(study=study)

    assert again.status == Study.Status.LIVE
    assert again.launched_at == study.launched_at
    assert list(Slot.objects.filter(condition__study=study).order_by("pk").values_list("pk", "sort_key")) == before
    assert len(before) == 2 * 6 * 2


def test_launch_refuses_a_draft(alice, tmp_path):
    study = build_study(alice, tmp_path, launch=False)
    Study.objects.filter(pk=study.pk).update(status=Study.Status.DRAFT)
    with pytest.raises(StudyError, match="only a ready study"):
        study_launch(study=study)
    assert not Slot.objects.filter(condition__study=study).exists()


@pytest.mark.parametrize("broken", ["missing", "failed"])
def test_launch_refuses_when_explanations_are_missing_or_failed(alice, tmp_path, broken):
    jsonl = write_dataset(tmp_path / "src", 12)
    dataset = dataset_import(owner=alice, name="d", jsonl_path=jsonl)
    model = make_model(alice)
    make_predictions(model, dataset.items.order_by("line_number"), n_right=6)
    study = _create(alice, dataset, model, n_items=6, n_candidates=3)
    study_select_items(study=study)
    total = make_explanations(study, skip=2)  # two (item, label) pairs lack an explanation
    assert total == 6 * 3
    if broken == "failed":
        explanation = Explanation.objects.filter(model=model).first()
        Explanation.objects.filter(pk=explanation.pk).update(status=Explanation.Status.FAILED)
        Explanation.objects.bulk_create(  # fill the gap, so only the failed one is wrong
            Explanation(
                model=model,
                item_id=i,
                method=study.explanation_method,
                target_label=lab,
                status=Explanation.Status.DONE,
            )
            for i, lab in _missing_pairs(study)
        )
    make_ready(study)

    with pytest.raises(StudyError, match=f"{2 if broken == 'missing' else 1} explanations are missing or failed"):
        study_launch(study=study)

    study.refresh_from_db()
    assert study.status == Study.Status.READY
    assert not Slot.objects.filter(condition__study=study).exists()


def _missing_pairs(study):
    from annotations.selectors.studies import study_explanation_targets

    have = set(Explanation.objects.filter(model=study.model).values_list("item_id", "target_label"))
    return [
        (i, lab)
        for i, labels in study_explanation_targets(study=study).items()
        for lab in labels
        if (i, lab) not in have
    ]


def test_launch_needs_explanations_of_the_studys_method_only(alice, tmp_path):
    study = build_study(alice, tmp_path, n_items=4, items_per_participant=2, launch=False)
    Explanation.objects.filter(model=study.model).update(method="saliency")
    with pytest.raises(StudyError, match="missing"):
        study_launch(study=study)


# --- idempotent stores for the worker -------------------------------------------------------


def test_prediction_store_twice_keeps_one_row(alice, dataset, model):
    item = dataset.items.first()
    first = prediction_store(model=model, item=item, label="red", probabilities=[0.7, 0.1, 0.1, 0.1])
    second = prediction_store(model=model, item=item, label="red", probabilities=[0.7, 0.1, 0.1, 0.1])

    assert first.pk == second.pk
    assert Prediction.objects.filter(model=model, item=item).count() == 1
    assert Prediction.objects.get(model=model, item=item).label == "red"


def test_explanation_store_twice_keeps_one_row_and_a_retry_replaces_a_failure(alice, dataset, model):
    item = dataset.items.first()
    kwargs = dict(model=model, item=item, method="integrated_gradients", target_label="blue")
    failed = explanation_store(status=Explanation.Status.FAILED, error="CUDA out of memory", **kwargs)
    done = explanation_store(
        status=Explanation.Status.DONE, image_view="explanations/abc.png", summary={"share": {"image": 0.7}}, **kwargs
    )
    redelivered = explanation_store(
        status=Explanation.Status.DONE, image_view="explanations/abc.png", summary={"share": {"image": 0.7}}, **kwargs
    )

    assert failed.pk == done.pk == redelivered.pk
    rows = Explanation.objects.filter(model=model, item=item)
    assert rows.count() == 1
    row = rows.get()
    assert (row.status, row.error, row.image_view) == (Explanation.Status.DONE, "", "explanations/abc.png")
    # Another target is another row.
    explanation_store(model=model, item=item, method="integrated_gradients", target_label="red", status="done")
    assert rows.count() == 2


def test_adapters_outside_the_allowed_packages_are_refused(alice, settings, tmp_path):
    """Registration imports and runs code in the server: only operator-approved packages."""
    from annotations.models import Dataset, RegisteredModel
    from annotations.services.registry import ModelRegistrationError, registered_model_create

    settings.MMEVAL_ADAPTER_PREFIXES = ["workers.engine.demo."]
    dataset = Dataset.objects.create(owner=alice, name="d", modalities=["text"])
    with pytest.raises(ModelRegistrationError, match="not under an allowed adapter package"):
        registered_model_create(owner=alice, name="m", adapter_path="os:abort", check_dataset=dataset)
    assert not RegisteredModel.objects.exists()


def test_study_names_are_unique_per_owner(alice, bob, dataset, model, tmp_path):
    _create(alice, dataset, model, name="pilot")
    with pytest.raises(StudyError, match="already have a study named 'pilot'"):
        _create(alice, dataset, model, name="pilot")
    bobs = dataset_import(owner=bob, name="shapes", jsonl_path=write_dataset(tmp_path / "bob", 12))
    assert _create(bob, bobs, make_model(bob), name="pilot").owner == bob  # another owner may


def test_study_names_are_unique_ignoring_case_and_surrounding_spaces(alice, dataset, model):
    from django.db import IntegrityError, transaction

    from annotations.services.spec import SpecError
    from annotations.services.studies import StudyNameTaken

    first = _create(alice, dataset, model, name="ux draft ok")
    with pytest.raises(StudyNameTaken, match=r"already have a study named 'UX Draft OK' \('ux draft ok'") as caught:
        _create(alice, dataset, model, name="UX Draft OK ")
    # a field error where a spec is checked field by field, a study error everywhere else
    assert caught.value.field == "name"
    assert isinstance(caught.value, SpecError) and isinstance(caught.value, StudyError)
    assert Study.objects.filter(owner=alice).count() == 1
    # names are stored stripped
    second = _create(alice, dataset, model, name="  second pilot\t")
    assert Study.objects.get(pk=second.pk).name == "second pilot"
    # renaming into a clash is refused too, and keeping one's own name is not a clash
    from annotations.services.spec import study_spec_parse
    from annotations.services.studies import study_update_from_spec

    def spec(name):
        return study_spec_parse(
            data={
                "name": name,
                "dataset": dataset.name,
                "model": model.name,
                "arms": [{"name": "baseline", "views": []}, {"name": "ig", "views": ["heatmap"]}],
                "items": {"n": 10, "per_participant": 4, "raters_per_item": 2},
            },
            owner=alice,
        )

    with pytest.raises(StudyNameTaken, match="already have a study named 'Ux Draft Ok'"):
        study_update_from_spec(study=second, spec=spec("Ux Draft Ok"))
    assert study_update_from_spec(study=first, spec=spec("UX DRAFT OK")).name == "UX DRAFT OK"
    # the database holds the rule whatever the code path
    with pytest.raises(IntegrityError), transaction.atomic():
        Study.objects.filter(pk=second.pk).update(name=" ux draft OK  ")


def test_a_design_needing_more_items_than_the_dataset_is_refused(alice, dataset, model):
    with pytest.raises(
        StudyError,
        match=r"has 24 items, fewer than the 27 this design needs "
        r"\(20 test items \+ 4 learning items \+ 3 attention-check items\)",
    ):
        _create(alice, dataset, model, n_items=20, learning_items=4, attention_checks=3)
    assert not Study.objects.exists()
