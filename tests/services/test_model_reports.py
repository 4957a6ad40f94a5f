"""Model reports as a service: checks before any work, claims and heartbeats, stages saved and
resumed, the time limit, the watchdog, and the study designer's interaction-type filter. Real
Postgres; the report runs in this process on an analytic toy model."""

from __future__ import annotations

from datetime import timedelta

import pytest
from celery.exceptions import SoftTimeLimitExceeded
from django.utils import timezone

from annotations.models import ModelReport, PrecomputeJob, StudyItem
from annotations.selectors.model_reports import model_item_interaction_types, model_report_progress
from annotations.services.model_reports import (
    ModelReportError,
    model_report_claim,
    model_report_create,
    model_report_finish,
    model_report_heartbeat,
    model_report_watchdog,
)
from annotations.services.spec import SpecError, study_spec_parse
from annotations.services.studies import study_create_from_spec, study_select_items
from tests.builders.model_reports import FAST_OPTIONS, SLICES, allow_test_adapters, toy  # noqa: F401 (fixtures)
from tests.builders.studies import write_dataset
from workers.adapters import registered_model_adapter
from workers.engine.registry import forget_adapter
from workers.report_pipeline import model_report_run_inline, model_report_run_job

pytestmark = pytest.mark.django_db


def _create(owner, toy, **kwargs):
    model, dataset = toy
    kwargs.setdefault("options", dict(FAST_OPTIONS))
    return model_report_create(owner=owner, model=model, dataset=dataset, **kwargs)


def test_report_runs_in_process_and_stores_every_section(alice, toy):
    report = _create(alice, toy, slices=SLICES, options={**FAST_OPTIONS, "checkpoints": ["all"]})
    progress = model_report_run_inline(report_id=report.pk)
    assert progress["status"] == "done" and progress["fraction"] == 1.0
    report.refresh_from_db()
    result = report.result
    assert result["summary"]["n_items"] == 30
    assert {s["name"] for s in result["slices"]} == {"positive", "unsure"}
    assert [c["name"] for c in result["learning"]["checkpoints"]] == ["epoch-1", "epoch-2", "epoch-3"]
    assert result["learning"]["failed"][0]["name"] == "broken"
    assert set(report.state) >= {
        "subsets",
        "permutation",
        "noise",
        "corruption",
        "emap",
        "pid",
        "group_pairs",
        "bias",
        "learning",
    }
    assert report.finished_at is not None and report.claim  # the finishing worker's claim stays recorded


def test_bad_slices_name_the_slice_field_and_column(alice, toy):
    with pytest.raises(ModelReportError) as caught:
        _create(alice, toy, slices={"slices": {"bias": "label == pos and sgn == 1"}})
    assert caught.value.field == "slices.bias"
    assert str(caught.value).startswith("slices.bias, column 18: unknown field 'sgn'")
    with pytest.raises(ModelReportError) as caught:
        _create(alice, toy, slices={"slices": {"bias": "(label == pos"}})
    assert "column 14: expected ')'" in str(caught.value)
    assert not ModelReport.objects.exists()


def test_bad_options_name_the_option(alice, toy):
    with pytest.raises(ModelReportError) as caught:
        _create(alice, toy, options={"noise_levels": [1, 0]})
    assert caught.value.field == "options.noise_levels"
    with pytest.raises(ModelReportError, match="options.pair: model 'linear' has the modalities"):
        _create(alice, toy, options={"pair": ["a", "image"]})


def test_reports_use_only_your_own_model_and_a_dataset_with_its_modalities(alice, bob, toy, tmp_path):
    with pytest.raises(ModelReportError, match="your own model"):
        _create(bob, toy)
    from annotations.services.datasets import dataset_import

    images = dataset_import(owner=alice, name="images", jsonl_path=write_dataset(tmp_path / "img", 4))
    with pytest.raises(ModelReportError, match=r"needs modalities \['a', 'b'\]"):
        model_report_create(owner=alice, model=toy[0], dataset=images)


def test_a_second_request_reuses_the_open_report_or_says_why_not(alice, toy):
    first = _create(alice, toy)
    assert _create(alice, toy).pk == first.pk
    with pytest.raises(ModelReportError, match=f"still queued \\(report {first.pk}\\)"):
        _create(alice, toy, options={**FAST_OPTIONS, "seed": 5})
    model_report_run_inline(report_id=first.pk)
    assert _create(alice, toy, options={**FAST_OPTIONS, "seed": 5}).pk != first.pk  # the first one finished


def test_claims_heartbeats_and_a_taken_over_worker(alice, toy, settings):
    report = _create(alice, toy)
    held = model_report_claim(report_id=report.pk, worker="w1")
    assert held is not None and held.status == "running"
    assert model_report_claim(report_id=report.pk, worker="w2") is None  # a live worker holds it
    assert model_report_heartbeat(report_id=report.pk, claim=held.claim, progress={"stage": "noise"})
    ModelReport.objects.filter(pk=report.pk).update(
        heartbeat_at=timezone.now() - timedelta(seconds=settings.MMEVAL_CHUNK_STALE_SECONDS + 5)
    )
    taken = model_report_claim(report_id=report.pk, worker="w2")  # w1 died
    assert taken is not None and taken.claim != held.claim and taken.attempts == 2
    assert not model_report_heartbeat(report_id=report.pk, claim=held.claim)
    assert not model_report_finish(report=held, error="late")  # the old holder changes nothing
    assert ModelReport.objects.get(pk=report.pk).status == "running"


def test_a_report_that_keeps_killing_its_worker_fails_naming_the_stage(alice, toy, settings):
    report = _create(alice, toy)
    stale = timezone.now() - timedelta(seconds=settings.MMEVAL_CHUNK_STALE_SECONDS + 5)
    ModelReport.objects.filter(pk=report.pk).update(
        status="running",
        heartbeat_at=stale,
        attempts=settings.MMEVAL_CHUNK_MAX_ATTEMPTS,
        progress={"stage": "emap", "done": 0, "total": 30},
    )
    assert model_report_claim(report_id=report.pk, worker="w3") is None
    report.refresh_from_db()
    assert report.status == "failed"
    assert "while computing emap" in report.error


def test_a_dead_worker_is_followed_from_the_last_finished_stage(alice, toy, monkeypatch):
    from workers.engine.report import quantify

    report = _create(alice, toy, options={**FAST_OPTIONS, "checkpoints": ["epoch-1", "epoch-3"]})

    def time_is_up(ctx, state):
        raise SoftTimeLimitExceeded()

    monkeypatch.setitem(quantify._STAGE_FUNCTIONS, "emap", time_is_up)
    assert model_report_run_job(report_id=report.pk, worker="w1") == "continued"
    report.refresh_from_db()
    assert report.status == "queued" and report.claim == ""
    assert {"subsets", "permutation", "noise", "corruption"} <= set(report.state)
    assert "emap" not in report.state
    monkeypatch.undo()
    adapter = registered_model_adapter(model=report.model)  # the instance the worker gets
    adapter.reset_counts()
    assert model_report_run_job(report_id=report.pk, worker="w2") == "done"
    rows = adapter.head_rows
    # The second worker paid for EMAP (30 x 30 pairs) and the group pairs (30 rows), not for
    # the finished stages again (the subsets alone would add 4 x 30 rows).
    assert 900 <= rows < 900 + 4 * 30
    report.refresh_from_db()
    assert report.status == "done" and report.result["interactions"]["emap"]["n_items_used"] == 30


def test_a_stage_longer_than_the_time_limit_fails_the_report_with_advice(alice, toy, monkeypatch):
    from workers.engine.report import quantify

    report = _create(alice, toy)

    def too_slow(ctx):
        ctx.progress("subsets", 0, 30)
        raise SoftTimeLimitExceeded()

    monkeypatch.setattr(quantify, "_stage_subsets", too_slow)
    assert model_report_run_job(report_id=report.pk, worker="w1") == "failed"
    report.refresh_from_db()
    assert report.status == "failed"
    assert "subsets stage alone takes longer than the task time limit" in report.error


def test_an_adapter_error_fails_the_report_with_its_traceback(alice, toy, monkeypatch):
    report = _create(alice, toy)
    forget_adapter(report.model.adapter_path)
    adapter = registered_model_adapter(model=report.model)  # the instance the worker gets
    monkeypatch.setattr(adapter, "encode", lambda items: (_ for _ in ()).throw(ValueError("item 'it3': unreadable")))
    assert model_report_run_inline(report_id=report.pk)["status"] == "failed"
    report.refresh_from_db()
    assert report.error.strip().splitlines()[-1] == "ValueError: item 'it3': unreadable"
    forget_adapter(report.model.adapter_path)


def test_watchdog_hands_out_reports_of_dead_workers_again(alice, toy, settings):
    report = _create(alice, toy)
    stale = timezone.now() - timedelta(seconds=settings.MMEVAL_CHUNK_STALE_SECONDS + 5)
    ModelReport.objects.filter(pk=report.pk).update(
        status="running", heartbeat_at=stale, claim="x", runner=PrecomputeJob.Runner.WORKERS
    )
    counts = model_report_watchdog()
    assert counts["stalled"] == 1
    report.refresh_from_db()
    assert report.status == "queued" and report.claim == "" and report.dispatched_at is not None
    assert model_report_watchdog()["stalled"] == 0


def test_progress_counts_finished_stages(alice, toy):
    report = _create(alice, toy)
    progress = model_report_progress(report=report)
    assert (progress["status"], progress["fraction"], progress["stages_finished"]) == ("queued", 0.0, [])
    ModelReport.objects.filter(pk=report.pk).update(
        state={"subsets": {}, "permutation": {}}, progress={"stage": "noise", "done": 15, "total": 30}
    )
    report.refresh_from_db()
    progress = model_report_progress(report=report)
    assert progress["fraction"] == pytest.approx((2 + 0.5) / 9, abs=1e-4)  # 9 stages
    assert progress["stage_title"] == "Gaussian noise in embedding space"


# --------------------------------------------------------------------------- study designs by interaction type


def _spec(**filters):
    return {
        "name": "Conflicts",
        "dataset": "toy",
        "model": "linear",
        "arms": [{"name": "baseline", "views": []}, {"name": "share", "views": ["share"]}],
        "items": {"n": 4, "per_participant": 2, "raters_per_item": 1, "filters": filters},
        "candidates": {"mode": "all"},
        "explanations": {"method": "saliency"},
    }


def test_spec_interaction_type_needs_a_finished_report_and_known_types(alice, toy):
    with pytest.raises(SpecError) as caught:
        study_spec_parse(data=_spec(interaction_type=["dominance"]), owner=alice)
    assert caught.value.field == "items.filters.interaction_type"
    assert "needs a finished model report of model 'linear' on dataset 'toy'" in str(caught.value)
    with pytest.raises(SpecError, match="unknown interaction type 'synergy'"):
        study_spec_parse(data=_spec(interaction_type=["synergy"]), owner=alice)


def test_study_draws_only_items_of_the_chosen_interaction_types(alice, toy):
    from annotations.models import Prediction

    model, dataset = toy
    report = _create(alice, toy)
    model_report_run_inline(report_id=report.pk)
    _, types = model_item_interaction_types(model=model, dataset=dataset)
    assert len(types) == 30
    wanted = "none" if list(types.values()).count("none") >= 4 else "dominance"
    spec = study_spec_parse(data=_spec(interaction_type=[wanted]), owner=alice)
    study = study_create_from_spec(owner=alice, spec=spec)
    assert study.design["filters"] == {"interaction_type": [wanted]}
    report_items = {row["id"]: row for row in ModelReport.objects.get(pk=report.pk).result["items"]}
    for item in dataset.items.all():  # predictions as precompute stores them (the toy model's own answers)
        Prediction.objects.create(
            model=model, item=item, label=report_items[item.external_id]["prediction"], probabilities=[0.5, 0.5]
        )
    study_select_items(study=study)
    drawn = StudyItem.objects.filter(study=study).select_related("item")
    assert drawn.count() == 4
    assert all(types[s.item_id] == wanted for s in drawn)


@pytest.mark.django_db(transaction=True)
def test_a_claim_waits_for_the_dispatchers_short_lock(alice, toy):
    """Right after publishing, the dispatcher stamps ``dispatched_at`` on the report; a worker
    that claims meanwhile must wait for that UPDATE, not skip the report and drop its message."""
    import threading

    from django.db import connection, transaction

    report = _create(alice, toy)
    locked, release = threading.Event(), threading.Event()

    def dispatcher_stamping() -> None:
        try:
            with transaction.atomic():
                ModelReport.objects.filter(pk=report.pk).update(dispatched_at=timezone.now())
                locked.set()
                release.wait(10)
        finally:
            connection.close()

    holder = threading.Thread(target=dispatcher_stamping)
    holder.start()
    assert locked.wait(10)
    threading.Timer(0.3, release.set).start()
    held = model_report_claim(report_id=report.pk, worker="w1")
    holder.join(10)

    assert held is not None and held.status == "running"
