"""A Hugging Face model folder, registered with --hf's service, precomputed by a real Celery
worker process: the worker rebuilds the adapter from the options stored with the model, and
every view a study can show is drawn from the model's own patches and words."""

from __future__ import annotations

import pytest

from annotations.models import Explanation, PrecomputeJob, Prediction
from annotations.services.datasets import dataset_import
from annotations.services.precompute import precompute_start
from annotations.services.registry import registered_model_create_hf
from annotations.services.studies import ConditionSpec, study_create
from tests.builders.hf_models import vilt_folder
from tests.builders.studies import write_dataset
from tests.integration.test_worker import wait_for_job

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]


def test_a_vilt_folder_runs_through_the_workers(celery_worker_process, alice, tmp_path):
    folder = vilt_folder(tmp_path / "vilt")
    dataset = dataset_import(owner=alice, name="shapes", jsonl_path=write_dataset(tmp_path / "data", 12))
    model = registered_model_create_hf(owner=alice, name="vilt", folder=str(folder), check_dataset=dataset)
    study = study_create(
        owner=alice,
        name="ViLT study",
        dataset=dataset,
        model=model,
        n_items=4,
        items_per_participant=2,
        raters_per_item=1,
        seed=3,
        survey=False,
        conditions=[
            ConditionSpec(name="baseline"),
            ConditionSpec(name="ig", views=["heatmap", "tokens", "share"]),
            ConditionSpec(name="pairs", views=["interaction", "top_pairs"]),
        ],
    )

    job = wait_for_job(precompute_start(study=study).pk)
    assert job.status == PrecomputeJob.Status.DONE, job.error
    assert Prediction.objects.filter(model=model).count() == 12
    rows = Explanation.objects.filter(model=model)
    assert rows.exists() and not rows.exclude(status=Explanation.Status.DONE).exists()
    attributions = rows.filter(method="integrated_gradients")
    assert attributions.count() == study.study_items.count() * 4  # every candidate of every item
    for row in attributions:
        # "what colour is square 3?": the words as written, "[CLS]", "[SEP]" and padding hidden
        words = [span["text"] for span in row.token_view]
        assert words[:4] == ["what", "colour", "is", "square"] and words[-1] == "?"
        assert row.image_view and row.extra_views.get("share")
    pairs = rows.filter(method="second_order")
    assert pairs.count() == attributions.count() and all(row.extra_views.get("top_pairs") for row in pairs)
