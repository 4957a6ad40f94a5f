"""The engine throughput benchmark (benchmarks/) on toy adapters with tiny sizes.

Smoke tests only: the structure of the report, finite positive ratios, pass counts that follow
the documented formulas, and baselines that compute the same numbers as the engine. Nothing
here asserts on a timing.
"""

from __future__ import annotations

import ast
import importlib
import io
import json
import math
import re
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.management import call_command

from benchmarks.baselines import BASELINES
from benchmarks.explain import DEFAULT_METHODS, format_report, knob_candidates, run_benchmark
from benchmarks.floors import ALL_NAMES, PASS_KINDS, Passes, PassTimes, floor_passes, measure_pass_times
from tests.builders.toy_adapters import BilinearAdapter, ImageTabularAdapter, PairwiseAdapter
from tests.engine.tolerances import FLOAT32_REPORT_TOLERANCE
from workers.engine.attribution import occlusion_windows, prepare_batch

SEGMENTS = [[0, 0, 1, 1], [0, 0, 1, 1], [2, 2, 2, 2], [2, 2, 2, 2]]


def _image_tabular(n: int = 4):
    adapter = ImageTabularAdapter()
    items = adapter.make_items(n, seed=5)
    items[1]["segments"] = SEGMENTS  # 3 image groups instead of 4: ragged counts
    return adapter, items


def test_run_benchmark_reports_every_default_method_with_finite_positive_numbers():
    adapter, items = _image_tabular(4)
    seen: list[str] = []
    report = run_benchmark(
        adapter,
        items,
        repeats=1,
        pass_batch_sizes=(1, 4),
        method_options={"integrated_gradients": {"n_steps": 4}, "gradient_shap": {"n_samples": 3}},
        max_rows_cap=32,
        progress=seen.append,
    )
    assert seen and seen[0].startswith("passes")
    assert [r.method for r in report.results] == list(DEFAULT_METHODS)
    assert report.n_items == 4 and report.threads >= 1
    for kind in PASS_KINDS:
        assert set(report.pass_times.seconds[kind]) == {1, 4}
        assert 0 < report.pass_times.best(kind) < math.inf
    for r in report.results:
        for value in (r.seconds, r.floor_seconds, r.ratio, r.items_per_s, r.floor_items_per_s):
            assert math.isfinite(value) and value > 0, (r.method, value)
        # one paired ratio (run time / floor timed right after it) per timed run; the median
        assert len(r.paired_ratios) == 1 and all(math.isfinite(x) and x > 0 for x in r.paired_ratios)
        assert r.ratio == pytest.approx(r.paired_ratios[0])
        if r.knob is not None:
            assert r.knob_value in r.sweep and all(v > 0 for v in r.sweep.values())
        assert r.baseline == BASELINES[r.method][0]
        assert r.baseline_items == 4
        assert math.isfinite(r.speedup) and r.speedup > 0
        assert r.baseline_items_per_s > 0
        if BASELINES[r.method][1]:
            # the one-item-at-a-time baseline computes the same numbers as the engine
            assert r.max_rel_diff is not None and r.max_rel_diff < 1e-4, (r.method, r.max_rel_diff)
    targets = {r.method: r.target for r in report.results}
    assert targets["integrated_gradients"] == 1.25 and targets["second_order"] == 1.5
    assert targets["feature_ablation"] is None
    text = format_report(report)
    for name in DEFAULT_METHODS:
        assert name in text
    assert "x floor" in text and "per-word loop" in text
    json.dumps(report.to_json())  # serialisable


def test_every_method_runs_and_per_example_methods_run_one_item_at_a_time():
    adapter, items = _image_tabular(3)
    opts = {
        "integrated_gradients": {"n_steps": 2},
        "gradient_shap": {"n_samples": 2},
        "shapley_value_sampling": {"n_samples": 1},
        "kernel_shap": {"n_samples": 6},
        "lime": {"n_samples": 6},
        "integrated_hessians": {"n_steps": 2},
    }
    report = run_benchmark(
        adapter,
        items,
        methods=list(ALL_NAMES),
        repeats=1,
        pass_batch_sizes=(2,),
        baseline=False,
        paired=False,
        method_options=opts,
        max_rows_cap=16,
    )
    assert [r.method for r in report.results] == list(ALL_NAMES)
    for r in report.results:
        assert math.isfinite(r.ratio) and r.ratio > 0
        assert not r.paired_ratios and r.ratio == pytest.approx(r.seconds / r.floor_seconds)
        assert r.baseline is None and r.speedup is None
    kernel = next(r for r in report.results if r.method == "kernel_shap")
    assert max(kernel.sweep) <= 6  # one-item batches: max_rows candidates up to n_samples


def test_second_order_per_word_loop_matches_the_engine_on_the_bilinear_model():
    adapter = BilinearAdapter(swap=True)  # the other modality is the smaller one
    items = adapter.make_items(3, seed=2)
    report = run_benchmark(
        adapter, items, methods=["second_order", "modality_interaction"], repeats=1, pass_batch_sizes=(1, 3)
    )
    for r in report.results:
        assert r.max_rel_diff is not None and r.max_rel_diff < 1e-9, (r.method, r.max_rel_diff)


def test_floor_pass_counts_follow_the_documented_formulas():
    adapter, items = _image_tabular(3)
    p = prepare_batch(adapter, adapter.encode(items))
    groups = [sum(len(g) for g in row) for row in p.group_ids]  # 4+3, 3+3, 4+3
    assert groups == [7, 6, 7]
    assert floor_passes("integrated_gradients", p, options={"n_steps": 10}) == Passes(forward=6, forward_backward=30)
    assert floor_passes("integrated_gradients", p) == Passes(forward=6, forward_backward=150)  # default 50
    assert floor_passes("saliency", p) == Passes(forward_backward=3)
    assert floor_passes("gradient_shap", p, options={"n_samples": 4}) == Passes(forward_backward=12)
    assert floor_passes("feature_ablation", p) == Passes(forward=3 + 20)
    assert floor_passes("modality_interaction", p) == Passes(forward=12)
    # G_S = min(G_image, G_tabular) per item: 3 + 3 + 3
    assert floor_passes("second_order", p) == Passes(forward_backward_graph=3, hvp=9)
    assert floor_passes("integrated_hessians", p, options={"n_steps": 2}) == Passes(forward_backward_graph=6, hvp=18)
    assert floor_passes("perturbation", p) == Passes(forward=(1 + 4 + 3 + 12) * 2 + (1 + 3 + 3 + 9))
    with pytest.raises(ValueError, match="unknown method"):
        floor_passes("telepathy", p)


def test_floor_counts_the_occlusion_windows_the_engine_slides():
    adapter, items = _image_tabular(3)
    p = prepare_batch(adapter, adapter.encode(items))
    # Default windows: image (3, 1, 1) over (3, 4, 4) = 16 positions, tabular (1,) over (5,) = 5.
    assert occlusion_windows(p)[2] == 21
    assert floor_passes("occlusion", p) == Passes(forward=(1 + 21) * 3)
    # Windows (3, 2, 2) and (1,), stride 2: 1 * 2 * 2 + 3 positions.
    options = {"sliding_window_shapes": ((3, 2, 2), (1,)), "strides": 2}
    assert occlusion_windows(p, **options)[2] == 7
    assert floor_passes("occlusion", p, options=options) == Passes(forward=(1 + 7) * 3)


def test_benchmarks_use_only_the_public_engine_api_and_no_django():
    """Every name ``benchmarks/`` imports from the engine is public (in ``__all__`` where the
    module has one), and the engine benchmark and the load test load no Django."""
    root = Path(__file__).resolve().parents[2]
    private = []
    for path in sorted((root / "benchmarks").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("workers.engine"):
                public = getattr(importlib.import_module(node.module), "__all__", None)
                private += [
                    f"{path.name}: {node.module}.{alias.name}"
                    for alias in node.names
                    if alias.name.startswith("_") or (public is not None and alias.name not in public)
                ]
    assert private == []
    code = (
        "import sys, benchmarks.explain, benchmarks.floors, benchmarks.baselines, benchmarks.loadtest; "
        "bad = [m for m in sys.modules if m == 'django' or m.startswith('django.')]; assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], cwd=root, check=True)


def test_floor_seconds_and_description():
    times = PassTimes(
        seconds={
            "forward": {1: 2.0, 8: 0.5},
            "forward_backward": {1: 3.0, 8: 1.0},
            "forward_backward_graph": {8: 1.5},
            "hvp": {8: 4.0},
        },
        pair=(1, 0),
    )
    assert times.best("forward") == 0.5 and times.best_batch_size("forward") == 8
    passes = Passes(forward=4, forward_backward=100, forward_backward_graph=2, hvp=6)
    assert passes.seconds(times) == pytest.approx(4 * 0.5 + 100 * 1.0 + 2 * 1.5 + 6 * 4.0)
    assert passes.describe(2) == "50 fwd+bwd + 1 fwd+bwd(graph) + 3 HVP + 2 fwd"
    times.merge(PassTimes(seconds={"forward": {8: 0.7, 32: 0.25}, "hvp": {8: 3.0}}, pair=(1, 0)))
    assert times.seconds["forward"] == {1: 2.0, 8: 0.5, 32: 0.25} and times.best("hvp") == 3.0


def test_knob_candidates_are_multiples_of_the_batch():
    adapter, items = _image_tabular(4)
    p = prepare_batch(adapter, adapter.encode(items))
    knob, values = knob_candidates("integrated_gradients", p, {"n_steps": 5}, max_rows_cap=4096)
    assert knob == "max_rows" and values == [4, 8, 16, 20]
    assert knob_candidates("saliency", p, {}) == (None, [])
    knob, values = knob_candidates("second_order", p, {})
    assert knob == "group_chunk" and values == [1, 2, 3]  # tabular has 3 groups, image up to 4


def test_pass_times_pick_the_smaller_modality_for_the_hvp():
    adapter = BilinearAdapter(swap=True)  # a: 2 groups, b: 3 groups
    times = measure_pass_times(adapter, adapter.make_items(2), batch_sizes=(1, 2), repeats=1)
    assert times.pair == (0, 1)
    adapter = BilinearAdapter()  # a: 3 groups, b: 2 groups
    times = measure_pass_times(adapter, adapter.make_items(2), batch_sizes=(1,), repeats=1)
    assert times.pair == (1, 0)


def test_bench_explain_command_prints_the_tables_and_writes_json(tmp_path):
    adapter = PairwiseAdapter()
    data = tmp_path / "items.jsonl"
    data.write_text("".join(json.dumps(it) + "\n" for it in adapter.make_items(3, seed=1)))
    out, err = io.StringIO(), io.StringIO()
    call_command(
        "bench_explain",
        adapter="tests.builders.toy_adapters:PairwiseAdapter",
        data=str(data),
        items=5,
        methods="saliency,second_order",
        repeats=1,
        pass_batch_sizes="1,2",
        threads=1,
        json=str(tmp_path / "bench.json"),
        stdout=out,
        stderr=err,
    )
    text = out.getvalue()
    assert "Per-sample pass times" in text and "saliency" in text and "second_order" in text
    assert "5 items" in text  # 3 items cycled to 5
    doc = json.loads((tmp_path / "bench.json").read_text())
    assert [r["method"] for r in doc["results"]] == ["saliency", "second_order"]
    assert all(r["ratio"] > 0 for r in doc["results"])
    assert err.getvalue()  # the progress bar


@pytest.mark.parametrize(
    "options, message",
    [
        ({"methods": "telepathy"}, "unknown method"),
        ({"device": "warp-drive"}, "--device"),
        ({"pass_batch_sizes": "0,8"}, "--pass-batch-sizes"),
    ],
)
def test_bench_explain_command_rejects_bad_options(tmp_path, options, message):
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match=message):
        call_command(
            "bench_explain",
            adapter="tests.builders.toy_adapters:PairwiseAdapter",
            data=str(tmp_path / "none.jsonl"),
            threads=1,
            stdout=io.StringIO(),
            stderr=io.StringIO(),
            **options,
        )


def test_bench_report_command_prints_every_stage_and_equal_reports(tmp_path):
    out = io.StringIO()
    call_command(
        "bench_report",
        items=6,
        checkpoints="none",
        pass_batch_sizes="6",
        json=str(tmp_path / "report.json"),
        stdout=out,
    )
    text = out.getvalue()
    for stage in ("subsets", "permutation", "noise", "corruption", "emap", "group_pairs", "learning"):
        assert f"| {stage} | before |" in text and f"| {stage} | after |" in text, stage
    # The demo computes in float32, and the head on a whole batch and the fusion of encodings run
    # different kernels: equal up to float32 rounding (2.4e-6 on an AVX-512 machine, 0 on others).
    largest = float(re.search(r"largest difference between the two reports: ([^;]+);", text).group(1))
    assert largest <= FLOAT32_REPORT_TOLERANCE and "other differing values: none" in text
    saved = json.loads((tmp_path / "report.json").read_text())
    assert set(saved["runs"]) == {"before (head on every pairing)", "after (encodings)"}


@pytest.mark.parametrize(
    ("options", "message"),
    [({"items": 1}, "--items must be at least 2"), ({"runs": "later"}, "--runs: give before, after or both")],
)
def test_bench_report_command_rejects_bad_options(options, message):
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match=message):
        call_command("bench_report", **options)
