"""The session's reuse of precomputed demo rows (tests/builders/precomputed.py): a fresh model
seeded with an earlier build's rows plans no engine work for the same design, and serves the
same predictions, explanations and pictures as the model that computed them."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.conf import settings

from tests.builders.demo_study import live_demo_study
from tests.builders.precomputed import precomputed_rows_set_aside

pytestmark = pytest.mark.django_db


def _rows(study) -> tuple[dict, dict]:
    external = dict(study.dataset.items.values_list("pk", "external_id"))
    predictions = {external[p.item_id]: (p.label, p.probabilities) for p in study.model.predictions.all()}
    media = Path(settings.MEDIA_ROOT)
    explanations = {
        (external[e.item_id], e.method, e.target_label): (
            e.status,
            e.summary,
            e.token_view,
            e.metrics,
            (media / e.image_view).read_bytes() if e.image_view else b"",
            (media / e.arrays_file).read_bytes(),
            {view: (media / path).read_bytes() for view, path in e.extra_views.items()},
        )
        for e in study.model.explanations.all()
    }
    return predictions, explanations


def test_a_seeded_model_plans_no_engine_work_and_serves_the_same_rows(alice, bob, demo_jsonl):
    design = dict(jsonl=demo_jsonl, n_items=4, items_per_participant=2, n_candidates=2)
    with precomputed_rows_set_aside():  # the first build computes everything
        computed = live_demo_study(owner=alice, **design)
        seeded = live_demo_study(owner=bob, **design)

    assert seeded.model_id != computed.model_id and seeded.dataset_id != computed.dataset_id
    first_plan = computed.precompute_jobs.get().plan
    assert any(part["skipped"] < part["total"] for part in first_plan.values())
    plan = seeded.precompute_jobs.get().plan
    assert plan.keys() == first_plan.keys()
    assert all(part["skipped"] == part["total"] > 0 for part in plan.values()), plan
    assert seeded.precompute_jobs.get().chunks.count() == 0
    computed_rows, seeded_rows = _rows(computed), _rows(seeded)
    assert seeded_rows == computed_rows
    assert len(computed_rows[1]) >= 4  # every item's candidates, drawn
