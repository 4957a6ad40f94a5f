"""The CPU-against-CUDA benchmark (benchmarks/gpu.py) with tiny sizes: the table's rows, the
CUDA columns on a machine without CUDA, and the comparison of the two devices' results.
Nothing here asserts on a timing."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
import torch
from django.core.management import call_command
from django.core.management.base import CommandError

from benchmarks.gpu import PRECOMPUTE_STAGES, DeviceRun, differences, main
from workers.engine.report.quantify import STAGES


def _cells(text: str, stage: str) -> list[str]:
    line = next(line for line in text.splitlines() if line.startswith(f"| {stage} |"))
    return [c.strip() for c in line.strip("|").split("|")]


def test_main_prints_every_stage_on_cpu_and_says_when_cuda_is_not_there(tmp_path):
    out = io.StringIO()
    # 4 items in chunks of 3 rows: a ragged last chunk, as precompute cuts them.
    payload = main(
        ["--items", "4", "--report-items", "6", "--candidates", "2", "--batch-size", "3", "--threads", "1"]
        + ["--json", str(tmp_path / "gpu.json")],
        out=out,
    )
    text = out.getvalue()
    assert f"torch {torch.__version__}, 1 CPU thread(s)" in text
    for stage in PRECOMPUTE_STAGES:
        cells = _cells(text, f"precompute: {stage}")
        assert cells[1].startswith("4") and float(cells[2]) >= 0, cells
    assert _cells(text, "precompute: integrated_gradients")[1] == "4 (8 rows)"
    assert float(_cells(text, "precompute: all")[2]) >= 0
    for stage in ("subsets", "permutation", "noise", "emap", "whole call"):
        assert float(_cells(text, f"report: {stage}")[2]) >= 0, stage
    assert payload["devices"]["cpu"]["errors"] == {}
    assert set(payload["devices"]["cpu"]["seconds"]) >= {f"precompute: {s}" for s in PRECOMPUTE_STAGES}
    assert set(payload["devices"]["cpu"]["seconds"]) <= {f"report: {s}" for s in STAGES} | {
        f"precompute: {s}" for s in PRECOMPUTE_STAGES
    } | {"report: whole call"}
    assert json.loads((tmp_path / "gpu.json").read_text())["sizes"]["candidates"] == 2
    if torch.cuda.is_available():  # a GPU machine: the two devices compute the same numbers
        assert payload["devices"]["cuda"]["errors"] == {}
        assert payload["differences"]["probabilities"] < 1e-3
    else:  # CPU-only CI
        assert payload["differences"] is None and payload["not_run"] == {"cuda": "not available"}
        assert _cells(text, "precompute: predictions")[3:] == ["not available", "–"]
        assert _cells(text, "report: whole call")[3] == "not available"
        assert "largest |CPU - CUDA| differences: none (CUDA not available)" in text


def test_differences_are_the_largest_absolute_ones_per_result():
    cpu = DeviceRun("cpu", "x", outputs={"probabilities": np.array([0.1, 0.9]), "maps": np.array([1.0, -2.0, 3.0])})
    cuda = DeviceRun("cuda", "y", outputs={"probabilities": np.array([0.25, 0.75]), "maps": np.array([1.0, -2.5, 3.0])})
    cpu.report = {"a": {"b": [1.0, 2.0]}, "kind": "x", "timing": {"a": 9.0}}
    cuda.report = {"a": {"b": [1.0, 2.125]}, "kind": "y", "timing": {"a": 1.0}}
    diffs = differences(cpu, cuda)
    assert diffs["probabilities"] == pytest.approx(0.15) and diffs["maps"] == 0.5
    assert diffs["report (every number)"] == 0.125 and diffs["report: other differing values"] == ["/kind"]
    cuda.outputs.pop("maps")  # a result the other device did not produce is no number
    assert differences(cpu, cuda)["maps"] is None


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"devices": ["tpu"]}, "--devices 'tpu'"),
        ({"devices": ["cpu", "cpu"]}, "cpu given twice"),
        ({"items": 1}, "--items must be at least 2"),
        ({"candidates": 0, "items": 4}, "--candidates"),
    ],
)
def test_bench_gpu_command_rejects_bad_options(options, message):
    with pytest.raises(CommandError, match=message):
        call_command("bench_gpu", stdout=io.StringIO(), **options)
