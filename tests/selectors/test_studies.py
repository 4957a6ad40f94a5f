"""Reads about studies (``annotations.selectors.studies``): who sees which study, finding one by
key, the candidates of an item, and the researcher's item preview scoped to the study."""

from __future__ import annotations

import pytest

from annotations.models import Explanation, Prediction
from annotations.selectors.studies import (
    study_by_key,
    study_candidates,
    study_explanation,
    study_item,
    study_item_preview,
    user_studies,
)
from tests.builders.studies import build_study

pytestmark = pytest.mark.django_db

LABELS8 = ["red", "green", "blue", "yellow", "purple", "circle", "square", "triangle"]


def test_a_study_is_visible_to_its_owner_and_collaborators_only(alice, bob, charlie, tmp_path):
    study = build_study(alice, tmp_path, n_items=4, items_per_participant=2, launch=False, name="seen")
    study.collaborators.add(bob)
    assert list(user_studies(user=alice)) == [study]
    assert list(user_studies(user=bob)) == [study]
    assert list(user_studies(user=charlie)) == []


def test_study_by_key_takes_an_id_a_public_id_or_an_unambiguous_name(alice, bob, tmp_path):
    first = build_study(alice, tmp_path / "a", n_items=4, items_per_participant=2, launch=False, name="same")
    assert study_by_key(key=str(first.pk)) == first
    assert study_by_key(key=first.public_id) == first
    assert study_by_key(key="same") == first
    second = build_study(bob, tmp_path / "b", n_items=4, items_per_participant=2, launch=False, name="same")
    with pytest.raises(LookupError, match=f"more than one study matches 'same' \\(ids {first.pk}, {second.pk}\\)"):
        study_by_key(key="same")
    with pytest.raises(LookupError, match="no study has the name or public id 'nothing'"):
        study_by_key(key="nothing")


def test_top_k_plus_distractors_are_seeded_per_item(alice, tmp_path):
    study = build_study(
        alice, tmp_path, n_dataset_items=16, n_items=8, launch=False, n_candidates=2, n_distractors=2, name="distract"
    )
    study.model.labels = LABELS8
    study.model.save()
    for k, prediction in enumerate(Prediction.objects.filter(model=study.model)):
        prediction.probabilities = [0.5 if j == k % 8 else (0.3 if j == (k + 1) % 8 else 0.2 / 6) for j in range(8)]
        prediction.label = LABELS8[k % 8]  # the model's answer is its most probable label
        prediction.save()
    seen = set()
    for prediction in Prediction.objects.filter(model=study.model):
        candidates = study_candidates(study=study, prediction=prediction)
        top2 = {LABELS8[k] for k in sorted(range(8), key=lambda j: -prediction.probabilities[j])[:2]}
        assert len(candidates) == len(set(candidates)) == 4
        assert top2 <= set(candidates)
        assert candidates == [label for label in LABELS8 if label in candidates]  # label order; shuffled per assignment
        assert study_candidates(study=study, prediction=prediction) == candidates  # same for everyone
        seen.add(tuple(sorted(set(candidates) - top2)))
    assert len(seen) > 1  # distractors differ between items


def test_item_reads_are_scoped_to_the_study(alice, tmp_path):
    """An item or explanation of another study (same owner) is not found through this one."""
    mine = build_study(alice, tmp_path / "a", n_items=4, items_per_participant=2, launch=False, name="mine")
    other = build_study(alice, tmp_path / "b", n_items=4, items_per_participant=2, launch=False, name="other")
    my_item = mine.study_items.first().item
    other_item = other.study_items.first().item
    my_explanation = Explanation.objects.filter(model=mine.model, item=my_item).first()
    other_explanation = Explanation.objects.filter(model=other.model, item=other_item).first()

    assert study_item(study=mine, item_pk=my_item.pk) == my_item
    assert study_item(study=mine, item_pk=other_item.pk) is None
    assert study_explanation(study=mine, explanation_pk=my_explanation.pk) == my_explanation
    assert study_explanation(study=mine, explanation_pk=other_explanation.pk) is None
    assert study_item_preview(study=mine, item_pk=other_item.pk) is None


def test_item_preview_shows_the_researcher_everything(alice, tmp_path):
    study = build_study(alice, tmp_path, n_items=4, items_per_participant=2, launch=False, name="preview")
    item = study.study_items.first().item
    prediction = Prediction.objects.get(model=study.model, item=item)

    preview = study_item_preview(study=study, item_pk=item.pk)

    assert preview["item"] == item and preview["prediction"] == prediction
    labels = [label for label, *_ in preview["rows"]]
    assert labels == study_candidates(study=study, prediction=prediction)
    assert all(
        explanation is not None and explanation.target_label == label for label, explanation, *_ in preview["rows"]
    )
    assert all(multiviz is None for *_, multiviz in preview["rows"])  # no arm shows the MultiViz views
    assert [p for _, p in preview["probabilities"]] == sorted(prediction.probabilities, reverse=True)[:8]
    assert preview["role"] == study.study_items.get(item=item).role
