"""The bias section end to end: the context-bias demo dataset imported with its ``group`` and
``evidence`` fields, its adapter registered like a researcher's, ``manage.py quantify`` printing
and tabulating the section, and the report page showing it."""

from __future__ import annotations

import csv
import json

import pytest

from annotations.models import ModelReport
from annotations.services.datasets import dataset_import
from annotations.services.registry import registered_model_create
from tests.builders.model_reports import FAST_OPTIONS
from tests.commandline import manage
from workers.engine.demo.context import data

pytestmark = pytest.mark.django_db(transaction=True)  # commands close the connections when they end


def test_quantify_reports_the_bias_section_and_the_page_shows_it(alice, tmp_path, capsys, client):
    jsonl = data.generate_dataset(tmp_path / "context", n_items=48, seed=3)
    dataset = dataset_import(owner=alice, name="context", jsonl_path=jsonl)
    registered_model_create(
        owner=alice,
        name="context",
        adapter_path="workers.engine.demo.context.adapter:ContextAdapter",
        check_dataset=dataset,
    )
    options = tmp_path / "options.json"
    options.write_text(json.dumps({**FAST_OPTIONS, "emap": False, "group_pairs": "", "bias_methods": ["saliency"]}))
    out = tmp_path / "out"

    status, stdout, stderr = manage(
        capsys,
        "quantify",
        "--model",
        "context",
        "--dataset",
        "context",
        "--out",
        str(out),
        "--options",
        str(options),
        "--no-progress",
    )

    assert status == 0, stderr
    report = ModelReport.objects.get()
    bias = report.result["bias"]
    assert bias["groups"] == ["a", "b"]
    assert sum(block["n"] for block in bias["per_group"].values()) == 48
    assert bias["amplification"]["reference"] == "adapter.training_items()"
    assert bias["evidence_unmatched"] == []  # every patch cell the generator wrote names a patch of the model
    assert "  group a: " in stdout and "  bias amplification " in stdout and "  leakage: model " in stdout
    assert "  evidence (saliency): mass inside " in stdout
    with (out / "summary.csv").open() as fh:
        measures = {(row["subject"], row["measure"]) for row in csv.DictReader(fh) if row["section"] == "bias"}
    assert {
        ("group b", "accuracy (Wilson)"),
        ("all items", "bias amplification"),
        ("all items", "model minus data leakage"),
        ("group a", "pointing game (saliency)"),
    } <= measures
    with (out / "items.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert {"group", "evidence_mass:saliency", "pointing:saliency"} <= set(rows[0])

    client.force_login(alice)
    page = client.get(f"/model-reports/{report.pk}/").content.decode()
    assert 'id="bias"' in page and 'id="bias-groups-table"' in page and 'id="bias-amplification"' in page
    assert "Model − data leakage" in page and "bias-evidence-table" in page
