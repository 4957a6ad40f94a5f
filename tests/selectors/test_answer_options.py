"""Candidates come from each item's valid answers (``study_candidates``, ``annotations.selectors.answers``):
the shapes demo's colour, shape and yes/no questions, the model's own answer always offered and
counted when it is not valid, per-item chance, precompute on the same candidates, and the
fallback (with a warning) for a dataset that declares nothing."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

from annotations.models import Prediction, Study
from annotations.selectors.analysis import study_chance_level
from annotations.selectors.answers import UNDECLARED_WARNING, study_answer_options
from annotations.selectors.exports import study_items_csv_lines
from annotations.selectors.studies import study_candidates, study_explanation_targets
from annotations.services.datasets import dataset_import
from annotations.services.studies import ConditionSpec, StudyError, study_create, study_launch, study_select_items
from tests.builders.studies import TWO_ARMS, build_study, make_explanations, make_model, make_ready
from workers.engine.demo import data as shapes

pytestmark = pytest.mark.django_db

TEXT_ARMS = [ConditionSpec("baseline"), ConditionSpec("tokens", ["tokens"])]
# The label of the other kind each question's runner-up is: the top 4 over all labels would offer it.
OTHER_KIND = {"colour": "triangle", "shape": "green", "yes-no": "purple"}


def _demo_study(owner, tmp_path: Path, *, outside: int = 0, n_candidates: int = 4, name: str = "shapes") -> Study:
    """The shapes demo's dataset with a model (demo labels) that answers the gold label, its
    runner-up a label of another kind; on the first ``outside`` yes/no items it answers "red"."""
    dataset = dataset_import(
        owner=owner, name=f"ds-{name}", jsonl_path=shapes.generate_dataset(tmp_path / name, n_items=24, seed=0)
    )
    model = make_model(owner, name=f"model-{name}", labels=shapes.ANSWERS)
    labels = list(shapes.ANSWERS)
    rows, moved = [], 0
    for item in dataset.items.order_by("line_number"):
        answer = item.gold_label
        if item.answer_type == "yes-no" and moved < outside:
            answer, moved = "red", moved + 1
        probabilities = [0.02] * len(labels)
        probabilities[labels.index(answer)] = 0.6
        probabilities[labels.index(OTHER_KIND[item.answer_type])] = 0.25
        rows.append(Prediction(model=model, item=item, label=answer, probabilities=probabilities))
    Prediction.objects.bulk_create(rows)
    study = study_create(
        owner=owner,
        name=name,
        dataset=dataset,
        model=model,
        conditions=TWO_ARMS,
        n_items=20,
        items_per_participant=4,
        raters_per_item=1,
        n_candidates=n_candidates,
        seed=3,
    )
    study_select_items(study=study)
    return study


def _candidates(study: Study) -> dict[str, tuple[str, list[str]]]:
    """external id → (answer type, candidates) of every pool item."""
    predictions = Prediction.objects.filter(model=study.model, item__study_items__study=study).select_related("item")
    return {p.item.external_id: (p.item.answer_type, study_candidates(study=study, prediction=p)) for p in predictions}


def test_each_question_offers_only_answers_of_its_kind(alice, tmp_path):
    study = _demo_study(alice, tmp_path)
    found = _candidates(study)
    kinds = {answer_type for answer_type, _ in found.values()}
    assert kinds == {"colour", "shape", "yes-no"}
    for answer_type, candidates in found.values():
        valid = shapes.ANSWER_TYPES[answer_type]
        assert set(candidates) <= set(valid)
        assert OTHER_KIND[answer_type] not in candidates  # the runner-up of another kind is left out
        # The model's answer first, then the next most probable valid ones, up to k = 4.
        assert len(candidates) == min(4, len(valid))
        assert candidates == [label for label in shapes.ANSWERS if label in candidates]  # label order
    assert {len(c) for t, c in found.values() if t == "yes-no"} == {2}
    assert {len(c) for t, c in found.values() if t == "shape"} == {3}


def test_the_model_answer_outside_the_valid_answers_is_offered_and_counted(alice, tmp_path):
    study = _demo_study(alice, tmp_path, outside=2)
    outside = [
        p
        for p in Prediction.objects.filter(model=study.model, item__study_items__study=study).select_related("item")
        if p.label not in p.item.choices
    ]
    assert outside  # the pool holds at least one of the two
    for prediction in outside:
        assert study_candidates(study=study, prediction=prediction) == ["red", "yes", "no"]
    summary = study_answer_options(study=study)
    assert summary["declared"] and summary["warning"] == ""
    assert summary["model_answer_outside"] == len(outside)
    assert summary["outside_share"] == pytest.approx(len(outside) / summary["items"])
    assert set(summary["outside_examples"]) == {p.item.external_id for p in outside}
    rows = list(csv.DictReader(io.StringIO("".join(study_items_csv_lines(study=study)))))
    flagged = {r["item"] for r in rows if r["model_answer_valid"] == "False"}
    assert flagged == {p.item.external_id for p in outside}
    assert {r["n_candidates"] for r in rows if r["item"] in flagged} == {"3"}


def test_chance_before_any_answer_is_the_mean_of_one_over_each_items_candidates(alice, tmp_path):
    study = _demo_study(alice, tmp_path)
    summary = study_answer_options(study=study)
    sizes = summary["sizes"]
    assert sum(sizes.values()) == summary["items"] == 20
    expected = sum(count / size for size, count in sizes.items()) / 20
    assert summary["mean_chance"] == pytest.approx(expected)
    assert study_chance_level(study=study) == pytest.approx(expected)
    assert expected > 0.25 + 0.05  # yes/no and shape items: chance is well above the 1/4 of k = 4


def test_precompute_explains_exactly_the_new_candidates(alice, tmp_path):
    study = _demo_study(alice, tmp_path, outside=1)
    predictions = {
        p.item_id: p
        for p in Prediction.objects.filter(model=study.model, item__study_items__study=study).select_related("item")
    }
    targets = study_explanation_targets(study=study)
    assert set(targets) == set(predictions)
    for item_id, labels in targets.items():
        assert labels == study_candidates(study=study, prediction=predictions[item_id])


def test_a_dataset_without_declared_answers_keeps_the_top_k_and_is_warned_about(alice, tmp_path):
    study = build_study(alice, tmp_path, n_items=8, launch=False, n_candidates=2, name="plain")
    summary = study_answer_options(study=study)
    assert not summary["declared"] and summary["warning"] == UNDECLARED_WARNING
    assert summary["model_answer_outside"] == 0 and summary["sizes"] == {2: 8}
    for prediction in Prediction.objects.filter(model=study.model, item__study_items__study=study):
        top = sorted(range(4), key=lambda k: (-prediction.probabilities[k], k))[:2]
        assert study_candidates(study=study, prediction=prediction) == [study.model.labels[k] for k in sorted(top)]


def test_valid_answers_the_model_lacks_are_reported_and_a_study_refused_when_none_is_known(alice, tmp_path):
    folder = tmp_path / "odd"
    folder.mkdir()
    lines = [
        json.dumps({"id": f"a{k}", "text": "q", "label": "red", "choices": ["red", "magenta"]}) for k in range(6)
    ] + ['{"id": "b", "text": "q", "label": "cyan", "choices": ["cyan", "magenta"]}']
    (folder / "items.jsonl").write_text("\n".join(lines) + "\n")
    dataset = dataset_import(owner=alice, name="odd", jsonl_path=folder / "items.jsonl")
    model = make_model(alice, name="toy-odd", modalities=("text",))
    with pytest.raises(StudyError, match="declares the valid answers cyan, magenta, none of which is a label"):
        study_create(
            owner=alice,
            name="odd",
            dataset=dataset,
            model=model,
            conditions=TEXT_ARMS,
            n_items=4,
            items_per_participant=2,
            raters_per_item=1,
        )


def test_launch_is_refused_while_an_item_would_offer_fewer_than_two_answers(alice, tmp_path):
    folder = tmp_path / "thin"
    folder.mkdir()
    lines = [json.dumps({"id": f"a{k}", "text": "q", "label": "red", "choices": ["red", "magenta"]}) for k in range(6)]
    (folder / "items.jsonl").write_text("\n".join(lines) + "\n")
    dataset = dataset_import(owner=alice, name="thin", jsonl_path=folder / "items.jsonl")
    model = make_model(alice, name="toy-thin", modalities=("text",))
    Prediction.objects.bulk_create(
        Prediction(model=model, item=item, label="red", probabilities=[0.7, 0.1, 0.1, 0.1])
        for item in dataset.items.all()
    )
    study = study_create(
        owner=alice,
        name="thin",
        dataset=dataset,
        model=model,
        conditions=TEXT_ARMS,
        n_items=4,
        items_per_participant=2,
        raters_per_item=1,
    )
    study_select_items(study=study)
    make_explanations(study)
    make_ready(study)
    summary = study_answer_options(study=study)
    assert summary["unknown_answers"] == ["magenta"] and len(summary["too_few"]) == 4
    with pytest.raises(StudyError, match="4 test item\\(s\\) would offer fewer than two answers"):
        study_launch(study=study)
