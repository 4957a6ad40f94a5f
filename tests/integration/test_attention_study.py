"""The attention view in a study (issue 21): a tiny ViLT folder as registration stores it, a
study with an attention arm precomputed through the job mechanism, the
attention stored once per (model, item), and every participant page checked by the leak
walk of tests/integration/test_leak.py (counterfactual included)."""

from __future__ import annotations

import csv
import io

import numpy as np
import pytest
from django.test import Client

from annotations.models import Explanation, ItemAttention, RegisteredModel, Study
from annotations.selectors.attention import item_attention_record
from annotations.selectors.exports import study_responses_csv_lines
from annotations.services.datasets import dataset_import
from annotations.services.precompute import precompute_job_create
from annotations.services.spec import SpecError, arms_views_check
from annotations.services.studies import ConditionSpec, study_create, study_launch
from tests.builders.hf_models import vilt_folder
from tests.builders.studies import write_dataset
from tests.integration.test_leak import _walk_and_check
from workers.engine.hf import HF_ADAPTER, hf_options
from workers.pipeline import precompute_run

pytestmark = pytest.mark.django_db

ARMS = [ConditionSpec(name="baseline"), ConditionSpec(name="attention", views=["attention"])]


def _study(owner, dataset, model, *, name: str, attention_method: str = "chefer") -> Study:
    study = study_create(
        owner=owner,
        name=name,
        dataset=dataset,
        model=model,
        conditions=ARMS,
        n_items=4,
        items_per_participant=2,
        raters_per_item=2,
        n_candidates=3,
        learning_items=1,
        attention_checks=1,
        pretest=True,
        seed=3,
        survey=False,
    )
    if attention_method != "chefer":
        Study.objects.filter(pk=study.pk).update(design={**study.design, "attention_method": attention_method})
    job = precompute_job_create(study=study)
    result = precompute_run(job_id=job.pk)
    assert result["status"] == "done", job.__class__.objects.get(pk=job.pk).error
    return study_launch(study=Study.objects.get(pk=study.pk))


def test_an_attention_arm_is_precomputed_once_per_item_and_leaks_nothing(alice, tmp_path):
    dataset = dataset_import(owner=alice, name="shapes", jsonl_path=write_dataset(tmp_path / "data", 8))
    # The row registration stores (tests/integration/test_hf_study.py runs its probe, which
    # records has_attention(adapter)), without the probe's child process.
    options = hf_options(path=str(vilt_folder(tmp_path / "vilt")), kind="vqa")
    model = RegisteredModel.objects.create(
        owner=alice,
        name="vilt",
        adapter_path=HF_ADAPTER,
        adapter_options=options.as_dict(),
        labels=list(options.labels),
        modalities=["image", "text"],
        capabilities={"features": False, "attention": True},
    )
    study = _study(alice, dataset, model, name="Attention or gradients?")

    rows = Explanation.objects.filter(model=model, method="attention:chefer")
    assert rows.exists() and not rows.exclude(status=Explanation.Status.DONE).exists()
    stored = {row.item_id: row for row in ItemAttention.objects.filter(model=model)}
    assert set(stored) == set(rows.values_list("item_id", flat=True))
    for row in rows:
        # The words as the gradient views show them; the relevance drawn is the stored record's.
        assert [span["text"] for span in row.token_view][:4] == ["what", "colour", "is", "square"]
        record = item_attention_record(row=stored[row.item_id])
        assert record.cross_modal and row.target_label in stored[row.item_id].targets
        target = model.labels.index(row.target_label)
        words = record.relevance_by_group(target)["text"]
        np.testing.assert_allclose(row.summary["group_scores"]["text"][: len(words)], [words[g] for g in sorted(words)])

    # The researcher's page of a precomputed item: the head summary and each stored label's relevance.
    researcher = Client()
    researcher.force_login(alice)
    item_pk = min(stored)
    html = researcher.get(f"/studies/{study.pk}/items/{item_pk}/attention/").content.decode()
    assert 'class="head-summary"' in html and 'id="att-relevance"' in html
    assert all(f"<td>{label}</td>" in html for label in stored[item_pk].targets)

    kinds = _walk_and_check(study, counterfactual=True, participants=len(ARMS))
    assert kinds == {"attention"}
    # The export names the arm's method for what it shows (codebook: explanation_methods).
    exported = {
        (row["condition"], row["explanation_methods"])
        for row in csv.DictReader(io.StringIO("".join(study_responses_csv_lines(study=study))))
    }
    assert exported == {("baseline", "none"), ("attention", "attention:chefer")}

    # A second study of the model (rollout this time) reuses every stored record.
    files = {pk: row.arrays_file for pk, row in stored.items()}
    second = _study(alice, dataset, model, name="Rollout", attention_method="rollout")
    assert Explanation.objects.filter(model=model, method="attention:rollout").exists()
    again = {row.item_id: row.arrays_file for row in ItemAttention.objects.filter(model=model)}
    assert {pk: again[pk] for pk in files} == files
    assert second.design["attention_method"] == "rollout"


def test_the_attention_view_needs_the_hook(alice, tmp_path):
    from tests.builders.studies import make_model

    model = make_model(alice)
    with pytest.raises(SpecError, match="has no attention\\(\\) hook"):
        arms_views_check(arms=ARMS, model=model)
