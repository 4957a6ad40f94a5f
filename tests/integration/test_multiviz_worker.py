"""MultiViz's quantities through a real Celery worker on the GPU queue, like every other
precompute chunk: the dataset's decision features first, then the per-item views."""

from __future__ import annotations

import pytest
from django.conf import settings

from annotations.models import DecisionFeatures, Explanation, PrecomputeChunk
from annotations.selectors.precompute import job_progress, study_multiviz_method
from annotations.services.precompute import precompute_start
from annotations.services.studies import ConditionSpec
from tests.builders.demo_study import demo_study
from tests.integration.test_worker import wait_for_job

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]


def test_the_worker_computes_decision_features_then_the_multiviz_views(celery_worker_process, alice, demo_jsonl):
    arms = [
        ConditionSpec(name="baseline"),
        ConditionSpec(
            name="U+C+R+P", views=["heatmap", "tokens", "interaction", "top_pairs", "features", "prediction"]
        ),
    ]
    study = demo_study(owner=alice, jsonl=demo_jsonl, conditions=arms, n_items=4, n_candidates=3)
    job = wait_for_job(precompute_start(study=study).pk)

    assert job.status == "done", job.error
    assert job.queue == settings.CELERY_GPU_QUEUE
    chunks = PrecomputeChunk.objects.filter(job=job)
    assert set(chunks.values_list("stage", flat=True)) == {
        "predictions",
        "features",
        "attribution",
        "interaction",
        "multiviz",
    }
    assert all(c.status == "done" and c.worker.startswith("test-") for c in chunks)
    assert DecisionFeatures.objects.filter(model=study.model, dataset=study.dataset, status="done").count() == 1
    rows = Explanation.objects.filter(model=study.model, method=study_multiviz_method(study=study), status="done")
    planned = [
        labels
        for targets in chunks.filter(stage="multiviz").values_list("targets", flat=True)
        for labels in targets.values()
    ]
    assert rows.count() == sum(len(labels) for labels in planned) > 0
    progress = job_progress(job=job)
    parts = {p["part"]: (p["done"], p["total"]) for p in progress["parts"]}
    assert parts["features"] == (1, 1) and parts["multiviz"][0] == parts["multiviz"][1] > 0
