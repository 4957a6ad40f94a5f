"""The model report pages: who sees them (a researcher's own reports only), the form and its errors,
the finished report with its SVG figures and tables, the live progress, the downloads, and the
embedded mode (no broker) computing the report in the background."""

from __future__ import annotations

import csv
import io
import json
import time
import xml.etree.ElementTree as ElementTree

import pytest

from annotations.models import ModelReport
from annotations.services.model_reports import model_report_create
from tests.builders.model_reports import FAST_OPTIONS, SLICES, allow_test_adapters, toy  # noqa: F401 (fixtures)
from workers.report_pipeline import model_report_run_inline

pytestmark = pytest.mark.django_db


@pytest.fixture
def done(alice, toy) -> ModelReport:
    model, dataset = toy
    report = model_report_create(
        owner=alice, model=model, dataset=dataset, slices=SLICES, options={**FAST_OPTIONS, "checkpoints": ["all"]}
    )
    model_report_run_inline(report_id=report.pk)
    report.refresh_from_db()
    assert report.status == "done", report.error
    return report


def _urls(report: ModelReport) -> list[str]:
    base = f"/model-reports/{report.pk}"
    return [
        f"{base}/",
        f"{base}/progress.json",
        f"{base}/report.json",
        *[f"{base}/{table}.csv" for table in ("items", "summary", "slices", "robustness", "learning")],
    ]


def test_only_the_owner_sees_a_report(client, charlie, done):
    for url in _urls(done):
        response = client.get(url)
        assert response.status_code == 302 and "/accounts/login/" in response["Location"], url
    client.force_login(charlie)
    for url in _urls(done):
        assert client.get(url).status_code == 404, url
    assert client.post(f"/model-reports/{done.pk}/delete/").status_code == 404
    assert f"#{done.pk}" not in client.get("/model-reports/").content.decode()


def test_the_list_gives_each_reports_items_from_its_dataset(client, alice, done):
    client.force_login(alice)
    page = client.get("/model-reports/").content.decode()
    row = page[page.index(f"#{done.pk}</a>") :].split("</tr>", 1)[0]
    assert f'<td class="num">{done.dataset.items.count()}</td>' in row
    assert "160 items" not in page  # no count that is not the data's


def test_finished_report_page_shows_figures_and_tables(client, alice, done):
    client.force_login(alice)
    page = client.get(f"/model-reports/{done.pk}/").content.decode()
    for section in ("reliance", "interactions", "robustness", "slices", "learning", "downloads"):
        assert f'id="{section}"' in page, section
    svgs = list(page.split("<svg")[1:])
    assert len(svgs) == 6  # reliance, distributions, types, slices, robustness, learning
    for chunk in svgs:
        ElementTree.fromstring("<svg" + chunk.split("</svg>")[0] + "</svg>")  # well-formed SVG
    assert 'positive <span class="hint">(<code>sign == pos</code>' in page
    assert "Checkpoint <b>broken</b>: OSError: checkpoint file broken.pt is truncated" in page
    assert "epoch-1 → epoch-2" in page and "epoch-1 → epoch-3" in page  # OGR between checkpoints, and overall
    assert "Thresholds: gain 0.05, interaction strength 0.2." in page
    pid = done.result["interactions"]["pid"]
    assert pid["clusters"] == {"a": 8, "b": 8} and pid["n_items_used"] == 30
    for part, name in (("unique_1", "uniqueness of a (bits)"), ("synergy", "synergy (bits)")):
        row = page[page.index(f'<tr id="pid-{part}">') :].split("</tr>", 1)[0]
        cells = [pid[target][part] for target in ("dataset", "model")]
        assert name in row
        for block in cells:
            assert f"{block['estimate']:.3f} [{block['ci_low']:.3f}, {block['ci_high']:.3f}]" in row


def test_downloads(client, alice, done):
    client.force_login(alice)
    response = client.get(f"/model-reports/{done.pk}/report.json")
    assert response["Content-Type"] == "application/json"
    assert json.loads(response.content) == done.result
    response = client.get(f"/model-reports/{done.pk}/items.csv")
    assert response["Content-Type"].startswith("text/csv")
    assert f"model-report-{done.pk}-items.csv" in response["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(response.content.decode())))
    assert [r["id"] for r in rows] == [f"it{i}" for i in range(30)]
    summary = list(csv.DictReader(io.StringIO(client.get(f"/model-reports/{done.pk}/summary.csv").content.decode())))
    accuracy = next(r for r in summary if r["measure"] == "accuracy")
    assert float(accuracy["estimate"]) == done.result["summary"]["accuracy"]["estimate"]
    assert client.get(f"/model-reports/{done.pk}/nonsense.csv").status_code == 404


def test_the_form_creates_a_report_and_its_page_follows_it(client, alice, toy):
    model, dataset = toy
    client.force_login(alice)
    assert client.get(f"/model-reports/?model={model.pk}").status_code == 200
    response = client.post(
        "/model-reports/",
        {
            "model": model.pk,
            "dataset": dataset.pk,
            "slices": "slices:\n  positive: label == pos\n",
            "checkpoints": "epoch-1, epoch-3",
            "options": "{seed: 4, noise_levels: [0, 1]}",
        },
    )
    report = ModelReport.objects.get()
    assert response.status_code == 302 and response["Location"] == f"/model-reports/{report.pk}/"
    assert report.options["checkpoints"] == ["epoch-1", "epoch-3"] and report.options["seed"] == 4
    assert report.slices == {"fields": {}, "slices": {"positive": "label == pos"}}
    page = client.get(f"/model-reports/{report.pk}/").content.decode()
    assert 'id="report-progress"' in page and "model-report-progress" not in page  # the URL is resolved
    progress = client.get(f"/model-reports/{report.pk}/progress.json").json()
    assert (progress["status"], progress["fraction"]) == ("queued", 0.0)
    assert client.post(f"/model-reports/{report.pk}/delete/").status_code == 302
    assert ModelReport.objects.filter(pk=report.pk).exists()  # an open report is not deleted


def test_form_errors_land_on_their_fields(client, alice, toy):
    model, dataset = toy
    client.force_login(alice)
    page = client.post(
        "/model-reports/",
        {"model": model.pk, "dataset": dataset.pk, "slices": "slices:\n  bias: label == pos and sgn == 1\n"},
    ).content.decode()
    assert "slices.bias, column 18: unknown field &#x27;sgn&#x27;" in page
    page = client.post(
        "/model-reports/", {"model": model.pk, "dataset": dataset.pk, "options": "{noise_levels: [1, 0]}"}
    ).content.decode()
    assert "options.noise_levels: must start at 0 and increase" in page
    page = client.post(
        "/model-reports/", {"model": model.pk, "dataset": dataset.pk, "slices": "slices: [unclosed"}
    ).content.decode()
    assert "the slices file is not valid YAML" in page
    assert not ModelReport.objects.exists()


def test_delete_a_finished_report(client, alice, done):
    client.force_login(alice)
    assert client.post(f"/model-reports/{done.pk}/delete/")["Location"] == "/model-reports/"
    assert not ModelReport.objects.exists()


def test_models_and_study_pages_link_to_the_reports(client, alice, toy):
    client.force_login(alice)
    page = client.get("/models/").content.decode()
    assert 'href="/model-reports/"' in page and f'href="/model-reports/?model={toy[0].pk}"' in page


@pytest.mark.django_db(transaction=True)
def test_embedded_mode_computes_the_report_in_the_background(client, alice, toy, settings):
    settings.CELERY_TASK_ALWAYS_EAGER = True  # no broker: the report runs in a thread of this process
    model, dataset = toy
    client.force_login(alice)
    client.post(
        "/model-reports/",
        {"model": model.pk, "dataset": dataset.pk, "options": json.dumps({**FAST_OPTIONS, "emap": False})},
    )
    report = ModelReport.objects.get()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        progress = client.get(f"/model-reports/{report.pk}/progress.json").json()
        if progress["status"] in ("done", "failed"):
            break
        time.sleep(0.2)
    assert progress["status"] == "done", progress["error"]
    assert ModelReport.objects.get().runner == "inline"
