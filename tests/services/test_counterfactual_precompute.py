"""The counterfactual precompute stage on the demo model: every pool item gets its edits and
the model's answer on each (equal to the engine's, recomputed here), one shown edit per item
whose answer is among the item's choices, and a re-run stores nothing twice."""

from __future__ import annotations

import pytest

from annotations.models import CounterfactualEdit, PrecomputeChunk, PrecomputeJob, Prediction
from annotations.selectors.counterfactual import counterfactual_candidates
from annotations.selectors.studies import item_raw
from annotations.services.precompute import precompute_job_create
from annotations.services.studies import ConditionSpec
from tests.builders.demo_study import demo_study
from workers.adapters import registered_model_adapter
from workers.counterfactual_pipeline import counterfactual_rows
from workers.engine.attribution import attribute
from workers.engine.counterfactual import edit_predictions, item_edits
from workers.pipeline import chunk_run, precompute_run

pytestmark = [pytest.mark.django_db, pytest.mark.trained_model]
DESIGN = {"edits": ["modality_baseline", "top_k_removed", "word_swap"], "k": 4, "swaps": ["square -> circle"]}


def test_precompute_stores_each_items_edits_once_with_the_models_answers(alice, demo_jsonl):
    study = demo_study(
        owner=alice,
        jsonl=demo_jsonl,
        conditions=[ConditionSpec(name="baseline"), ConditionSpec(name="ig", views=["heatmap", "tokens"])],
        n_items=4,
        n_candidates=0,
        explanation_method="saliency",  # one backward pass: the stage, not the method, is under test
        task="counterfactual",
        explanation_display="predicted_unlabelled",
        counterfactual=DESIGN,
    )
    job = precompute_job_create(study=study)
    result = precompute_run(job_id=job.pk)
    assert result["status"] == "done", PrecomputeJob.objects.get(pk=job.pk).error
    pool = sorted(study.study_items.values_list("item_id", flat=True))
    edits = CounterfactualEdit.objects.filter(study=study)
    assert sorted(set(edits.values_list("item_id", flat=True))) == pool
    assert sorted(edits.filter(shown=True).values_list("item_id", flat=True)) == pool
    kinds = set(edits.values_list("kind", flat=True))
    assert {"modality_baseline", "top_k_removed"} <= kinds
    for edit in edits.filter(shown=True).select_related("item"):
        prediction = Prediction.objects.select_related("item").get(model=study.model, item=edit.item)
        assert edit.model_label in counterfactual_candidates(study=study, prediction=prediction)
        assert edit.description and (edit.picture_view or edit.kind == "word_swap")

    # The stored answers are the engine's on the same edits (the stored explanation ranks the groups
    # for top-k; saliency is deterministic, so recomputing it ranks them alike).
    adapter = registered_model_adapter(model=study.model)
    labels = list(study.model.labels)
    for item_id in pool[:1]:
        item = study.study_items.get(item_id=item_id).item
        raw = item_raw(item)
        target = labels.index(Prediction.objects.get(model=study.model, item=item).label)
        attribution = attribute(adapter, adapter.encode([raw]), method=study.explanation_method, targets=[target])[0]
        hidden = [g.group_id for m in adapter.describe_groups(adapter.encode([raw]))[0] for g in m if g.hidden]
        engine = item_edits(
            adapter, raw, attribution, kinds=DESIGN["edits"], k=4, pairs=[("square", "circle")], hidden=hidden
        )
        stored = dict(edits.filter(item=item).values_list("name", "model_label"))
        assert {e.name: p.label for e, p in zip(engine, edit_predictions(adapter, raw, engine))} == stored

    # Idempotent: a redelivered chunk is skipped, and a recomputation stores nothing new.
    before = list(edits.order_by("pk").values_list("pk", "name", "model_label", "shown"))
    chunk = PrecomputeChunk.objects.filter(job=job, stage="counterfactual").first()
    assert chunk is not None and chunk_run(chunk_id=chunk.pk, worker="again") == "skipped"
    counterfactual_rows(study=study, adapter=adapter, items=[s.item for s in study.study_items.all()])
    assert (
        list(
            CounterfactualEdit.objects.filter(study=study)
            .order_by("pk")
            .values_list("pk", "name", "model_label", "shown")
        )
        == before
    )
