"""Model reports on real Celery workers: the demo's report computed by a worker, and a worker
killed in the middle of a report, whose successor goes on from the last finished stage."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import yaml

from annotations.models import ModelReport
from annotations.services.datasets import dataset_import
from annotations.services.model_reports import model_report_create, model_report_start
from annotations.services.registry import registered_model_create
from tests.builders.demo_study import DEMO_ADAPTER
from tests.builders.model_reports import toy_dataset
from tests.integration.conftest import stop_worker
from tests.integration.test_faults import queues, workers  # noqa: F401 (fixtures)

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]

SLICES_FILE = Path(__file__).resolve().parents[2] / "workers" / "engine" / "demo" / "slices.yaml"


def _wait(report_id: int, *, timeout: float, until=lambda r: r.status in ("done", "failed")) -> ModelReport:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        report = ModelReport.objects.get(pk=report_id)
        if until(report):
            return report
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout} s: {ModelReport.objects.get(pk=report_id).progress}")


def test_a_worker_computes_the_demo_model_report(celery_worker_process, alice, demo_jsonl):
    dataset = dataset_import(owner=alice, name="shapes", jsonl_path=demo_jsonl)
    model = registered_model_create(owner=alice, name="fusion", adapter_path=DEMO_ADAPTER, check_dataset=dataset)
    report = model_report_create(
        owner=alice,
        model=model,
        dataset=dataset,
        slices=yaml.safe_load(SLICES_FILE.read_text()),
        options={"n_resamples": 200, "noise_levels": [0.0, 0.5, 1.0], "pid_resamples": 50},
    )
    model_report_start(report=report)
    report = _wait(report.pk, timeout=300)
    assert report.status == "done", report.error
    assert report.worker == celery_worker_process.name
    result = report.result
    assert result["summary"]["n_items"] == 48
    assert {s["name"] for s in result["slices"]} == {"nonred_triangle", "triangle_colour"}
    assert result["interactions"]["emap"]["pairing"] == "embedded"  # the demo declares batch_context
    assert result["interactions"]["pid"]["n_items_used"] == 48 and "synergy" in result["interactions"]["pid"]["model"]


def test_a_killed_worker_s_report_goes_on_from_its_last_finished_stage(
    alice,
    tmp_path,
    queues,
    workers,  # noqa: F811
    settings,
):
    settings.MMEVAL_ADAPTER_PREFIXES = [*settings.MMEVAL_ADAPTER_PREFIXES, "tests."]
    fast = {"MMEVAL_CHUNK_HEARTBEAT_SECONDS": 1, "MMEVAL_CHUNK_STALE_SECONDS": 5, "MMEVAL_WATCHDOG_SECONDS": 2}
    first = workers(queues, pool="prefork", **fast)
    dataset = toy_dataset(owner=alice, directory=tmp_path / "data", n_items=20)
    model = registered_model_create(
        owner=alice, name="slow", check_dataset=dataset, adapter_path="tests.builders.report_adapters:SlowReportAdapter"
    )
    report = model_report_create(
        owner=alice,
        model=model,
        dataset=dataset,
        options={
            "n_resamples": 100,
            "noise_samples": 1,
            "permutations": 1,
            "emap": False,
            "pid_resamples": 20,
            "group_pairs": "",
            "corruption_levels": [0.0, 1.0],
        },
    )
    model_report_start(report=report)
    running = _wait(report.pk, timeout=120, until=lambda r: "permutation" in (r.state or {}))
    saved = dict(running.state["timing"])
    stop_worker(first, kill=True)  # kill -9 in the middle of the noise stage

    second = workers(queues, beat=True, **fast)
    report = _wait(report.pk, timeout=240)

    assert report.status == "done", report.error
    assert report.worker == second.name
    # The finished stages were kept, not computed again.
    assert report.state["timing"]["subsets"] == saved["subsets"]
    assert report.state["timing"]["permutation"] == saved["permutation"]
    assert report.result["robustness"]["noise"]["levels"] == [round(0.1 * k, 1) for k in range(11)]
