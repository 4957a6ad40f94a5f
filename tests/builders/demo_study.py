"""Build a real demo study through the same services a researcher's clicks go through."""

from __future__ import annotations

import os
from pathlib import Path

from annotations.models import Study
from annotations.services.datasets import dataset_import
from annotations.services.precompute import precompute_job_create
from annotations.services.registry import registered_model_create
from annotations.services.studies import ConditionSpec, study_create, study_launch
from tests.builders.precomputed import precomputed_rows_keep, precomputed_rows_seed
from workers.pipeline import precompute_run

DEMO_ADAPTER = "workers.engine.demo.adapter:DemoAdapter"
# One arm per kind of view a study can show, besides the baseline.
VIEW_ARMS = [
    ConditionSpec(name="baseline"),
    ConditionSpec(name="ig", views=["heatmap", "tokens"]),
    ConditionSpec(name="interactions", views=["interaction", "top_pairs", "share"]),
]
# MultiViz's representation and prediction stages on top of the above.
MULTIVIZ_ARMS = [*VIEW_ARMS, ConditionSpec(name="multiviz", views=["features", "prediction"])]


# The tabular + text demo (workers/engine/demo/tabular) and its arms: the feature bars with the
# note's words, and the modality share.
PLANT_ADAPTER = "workers.engine.demo.tabular.adapter:PlantAdapter"
PLANT_ARMS = [
    ConditionSpec(name="baseline"),
    ConditionSpec(name="bars", views=["table", "tokens"]),
    ConditionSpec(name="share", views=["share"]),
]


def demo_study(
    *,
    owner,
    jsonl: Path,
    adapter_path: str = DEMO_ADAPTER,
    n_items: int = 8,
    items_per_participant: int = 4,
    raters_per_item: int = 2,
    seed: int = 3,
    conditions: list[ConditionSpec] | None = None,
    **design,
) -> Study:
    """``design``: further ``study_create`` options (learning_items, pretest, n_candidates, …)."""
    dataset = dataset_import(owner=owner, name="shapes", jsonl_path=jsonl)
    model = registered_model_create(owner=owner, name="fusion", adapter_path=adapter_path, check_dataset=dataset)
    design.setdefault("n_candidates", 4)
    design.setdefault("survey", False)
    return study_create(
        owner=owner,
        name="Does IG help?",
        dataset=dataset,
        model=model,
        conditions=conditions
        or [ConditionSpec(name="baseline"), ConditionSpec(name="ig", views=["heatmap", "tokens"])],
        n_items=n_items,
        items_per_participant=items_per_participant,
        raters_per_item=raters_per_item,
        seed=seed,
        **design,
    )


def live_demo_study(*, reuse_precomputed: bool = True, **kwargs) -> Study:
    """A demo study precomputed in-process and launched. Its fresh model starts with the rows
    earlier builds of the session drew for the same adapter, weights and items
    (tests/builders/precomputed.py); ``reuse_precomputed=False`` for a test of what a fresh
    model's precompute draws."""
    study = demo_study(**kwargs)
    # MMEVAL_TEST_REUSE_PRECOMPUTE=0: every build computes everything (to measure what reuse saves).
    reuse_precomputed = reuse_precomputed and os.environ.get("MMEVAL_TEST_REUSE_PRECOMPUTE") != "0"
    if reuse_precomputed:
        precomputed_rows_seed(study=study)
    job = precompute_job_create(study=study)
    result = precompute_run(job_id=job.pk)
    assert result["status"] == "done", job.__class__.objects.get(pk=job.pk).error
    if reuse_precomputed:
        precomputed_rows_keep(study=study)
    return study_launch(study=Study.objects.get(pk=study.pk))
