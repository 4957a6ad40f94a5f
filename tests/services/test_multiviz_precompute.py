"""MultiViz precompute: the decision features are computed once per model and dataset and
reused by every later study; an adapter without them fails the job with the reason."""

from __future__ import annotations

import re

import pytest

from annotations.models import Dataset, DecisionFeatures, Explanation, PrecomputeJob, RegisteredModel
from annotations.selectors.precompute import study_multiviz_method
from annotations.services.precompute import precompute_job_create
from annotations.services.registry import registered_model_create
from annotations.services.studies import ConditionSpec, StudyError, study_create
from tests.builders.demo_study import demo_study
from workers.engine.adapter import adapter_factory
from workers.pipeline import precompute_run

pytestmark = pytest.mark.django_db
ARMS = [ConditionSpec(name="baseline"), ConditionSpec(name="multiviz", views=["features", "prediction"])]


def test_decision_features_are_computed_once_per_model_and_reused(alice, demo_jsonl, client):
    first = demo_study(owner=alice, jsonl=demo_jsonl, conditions=ARMS, n_items=4, n_candidates=3)
    job = precompute_job_create(study=first)
    assert precompute_run(job_id=job.pk)["status"] == "done", PrecomputeJob.objects.get(pk=job.pk).error
    stored = DecisionFeatures.objects.get(model=first.model, dataset=first.dataset)
    assert stored.summary["sparse"]["n_test"] > 0 and stored.example_views
    rows = Explanation.objects.filter(model=first.model, method=study_multiviz_method(study=first), status="done")
    assert rows.count() == 4 * 3
    assert all({"features", "prediction"} <= set(row.extra_views) for row in rows)

    # The researcher's item page shows every candidate's MultiViz views.
    client.force_login(alice)
    item = first.study_items.first().item
    page = client.get(f"/studies/{first.pk}/items/{item.pk}/").content.decode()
    for view in ("features", "prediction"):
        urls = re.findall(rf'src="(/studies/{first.pk}/explanations/\d+/{view}\.png)"', page)
        assert len(urls) == 3, view
        response = client.get(urls[0])
        assert response.status_code == 200 and b"".join(response.streaming_content).startswith(b"\x89PNG")

    second = study_create(
        owner=alice,
        name="again",
        dataset=first.dataset,
        model=first.model,
        conditions=ARMS,
        n_items=6,
        items_per_participant=2,
        raters_per_item=1,
        n_candidates=3,
        seed=9,
    )
    job = precompute_job_create(study=second)
    assert precompute_run(job_id=job.pk)["status"] == "done"
    job.refresh_from_db()
    assert job.plan["features"] == {"total": 1, "skipped": 1}
    assert not job.chunks.filter(stage="features").exists()
    assert DecisionFeatures.objects.filter(model=first.model).get().pk == stored.pk


def test_an_adapter_without_features_is_refused_at_design_or_fails_the_job_saying_why(alice, demo_jsonl, settings):
    """Registration records that the adapter has no features(): the design is refused before
    any work. A model registered before capabilities were recorded is accepted, and its job
    fails naming the missing method instead of drawing the arm without its views."""
    settings.MMEVAL_ADAPTER_PREFIXES = [*settings.MMEVAL_ADAPTER_PREFIXES, "tests."]
    design = dict(
        owner=alice,
        jsonl=demo_jsonl,
        conditions=ARMS,
        n_items=4,
        n_candidates=3,
        adapter_path="tests.services.test_multiviz_precompute:FeaturelessDemo",
    )
    with pytest.raises(StudyError, match=r"arm 'multiviz' shows 'features', but model 'fusion' has no features\(\)"):
        demo_study(**design)
    # As registered before capabilities were recorded: nothing is known, the design is accepted.
    dataset = Dataset.objects.get(owner=alice, name="shapes")
    model = registered_model_create(owner=alice, name="old", adapter_path=design["adapter_path"], check_dataset=dataset)
    RegisteredModel.objects.filter(pk=model.pk).update(capabilities={})
    study = study_create(
        owner=alice,
        name="old model",
        dataset=dataset,
        model=RegisteredModel.objects.get(pk=model.pk),
        conditions=ARMS,
        n_items=4,
        items_per_participant=2,
        raters_per_item=1,
        n_candidates=3,
        survey=False,
    )
    job = precompute_job_create(study=study)
    assert precompute_run(job_id=job.pk)["status"] == "failed"
    assert "features()" in PrecomputeJob.objects.get(pk=job.pk).error


@adapter_factory
def FeaturelessDemo():  # noqa: N802 (an adapter factory)
    from workers.engine.demo.adapter import DemoAdapter

    class Featureless(DemoAdapter):
        features = None

    return Featureless()


def test_a_features_chunk_past_the_time_limit_fails_the_job_naming_the_dataset(alice, demo_jsonl):
    from annotations.models import PrecomputeChunk
    from annotations.services.precompute import precompute_advance, precompute_chunk_claim, precompute_chunk_split
    from workers.pipeline import chunk_run

    study = demo_study(owner=alice, jsonl=demo_jsonl, conditions=ARMS, n_items=4, n_candidates=3)
    job = precompute_job_create(study=study)
    for chunk_id in precompute_advance(job_id=job.pk):  # the predictions; finishing them plans the features
        chunk_run(chunk_id=chunk_id, worker="w1")
    features = PrecomputeChunk.objects.get(job=job, stage="features")
    claimed = precompute_chunk_claim(chunk_id=features.pk, worker="w1")

    assert precompute_chunk_split(chunk=claimed) == []
    job.refresh_from_db()
    assert job.status == "failed" and "decision features of the whole dataset" in job.error
