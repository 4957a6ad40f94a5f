"""CPU against CUDA in the same run: precompute's engine work and the model report on the
bundled demo model (weights cached under ``MMEVAL_CACHE_DIR``, trained deterministically
if missing), on the demo dataset (``generate_dataset`` seed 0). No Django; public engine
API only.

Per device, in this order:

* **precompute**: the engine calls ``workers/pipeline.py`` makes for a study with the default
  methods, on chunks of ``--batch-size`` rows as the precompute job cuts them
  (``MMEVAL_PRECOMPUTE_BATCH_SIZE``, 64): ``predict`` on the items; the 2x2
  ``modality_interaction`` of each item's predicted class (the interaction-strength stage);
  then ``attribute(method="integrated_gradients")`` and ``cross_modal_interaction(method=
  "second_order")`` (the study defaults) on every (item, candidate) pair, the candidates being
  each item's ``--candidates`` most probable labels. Each call is warmed up once on two items.
* **report**: the whole model report (``model_report_run`` through ``benchmarks.report``'s
  ``run_report``, per-modality encodings on, no checkpoints) on ``--report-items`` items.

Timings are wall seconds with ``torch.cuda.synchronize()`` before and after each timed call on
CUDA. The report's per-stage seconds are the engine's own (each stage ends reading its numbers
back to the host). The results of the two devices are compared: the largest absolute difference
of the predicted probabilities, of the integrated-gradients maps, of the interactions and of
every number in the two reports, so that a device that computes something else shows.

    python -m benchmarks.gpu --items 64 --report-items 64
    python manage.py bench_gpu --devices cpu cuda --json gpu.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import numpy as np
import torch

from benchmarks.report import demo_items, report_differences, run_report
from workers.engine.attribution import attribute
from workers.engine.demo.adapter import DemoAdapter
from workers.engine.explain import predict
from workers.engine.interactions import cross_modal_interaction, modality_interaction
from workers.engine.report.quantify import STAGES, ReportOptions

__all__ = ["add_arguments", "main", "run_from_options"]

PRECOMPUTE_STAGES = ("predictions", "strength", "integrated_gradients", "second_order")
DEVICE_KINDS = ("cpu", "cuda")
_NO_FLOOR = {"head": 0.0, "encode": 0.0, "fuse": 0.0}  # run_report's floor column is not used here


@dataclass
class DeviceRun:
    device: str
    name: str
    seconds: dict[str, float] = field(default_factory=dict)
    outputs: dict[str, np.ndarray] = field(default_factory=dict)  # flattened results, compared across devices
    report: dict[str, Any] | None = None
    errors: dict[str, str] = field(default_factory=dict)  # part -> message


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(device: torch.device, fn: Callable[[], Any]) -> tuple[Any, float]:
    _sync(device)
    start = time.perf_counter()
    out = fn()
    _sync(device)
    return out, time.perf_counter() - start


def _chunks(seq: Sequence[Any], size: int) -> list[Sequence[Any]]:
    return [seq[k : k + size] for k in range(0, len(seq), size)]


def _flat(arrays: Sequence[np.ndarray]) -> np.ndarray:
    return np.concatenate([np.asarray(a, dtype=np.float64).ravel() for a in arrays]) if arrays else np.zeros(0)


def _precompute(adapter: DemoAdapter, items: list[dict], *, candidates: int, batch_size: int) -> tuple[dict, dict]:
    """Seconds per precompute stage and the flattened results, on ``adapter``'s device."""
    device = adapter.device
    seconds: dict[str, float] = {}
    predictions, seconds["predictions"] = _timed(device, lambda: predict(adapter, items, batch_size=batch_size))
    predicted = [p.label_index for p in predictions]

    def strength(rows: Sequence[int]) -> list:
        out = []
        for chunk in _chunks(list(rows), batch_size):
            out += modality_interaction(
                adapter, adapter.encode([items[i] for i in chunk]), targets=[predicted[i] for i in chunk]
            )
        return out

    pairs = [
        (i, int(label))
        for i, p in enumerate(predictions)
        for label in np.argsort(-np.asarray(p.probabilities), kind="stable")[:candidates]
    ]

    def per_pair(call: Callable[..., list], method: str, rows: Sequence[tuple[int, int]]) -> list:
        out = []
        for chunk in _chunks(list(rows), batch_size):
            batch = adapter.encode([items[i] for i, _ in chunk])
            out += call(adapter, batch, method=method, targets=[t for _, t in chunk])
        return out

    strength([0, 1])  # warm-ups: first calls on a device pay for its set-up
    per_pair(attribute, "integrated_gradients", pairs[:2])
    per_pair(cross_modal_interaction, "second_order", pairs[:2])
    interactions, seconds["strength"] = _timed(device, lambda: strength(range(len(items))))
    gradients, seconds["integrated_gradients"] = _timed(
        device, lambda: per_pair(attribute, "integrated_gradients", pairs)
    )
    second, seconds["second_order"] = _timed(device, lambda: per_pair(cross_modal_interaction, "second_order", pairs))
    outputs = {
        "probabilities": _flat([p.probabilities for p in predictions]),
        "modality interaction (dividends)": _flat([[r.dividend] for r in interactions]),
        "integrated gradients (maps)": _flat([m for a in gradients for m in a.maps.values()]),
        "second_order (matrices)": _flat([r.matrix for r in second]),
    }
    return seconds, outputs


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return platform.processor() or platform.machine()


def run_device(
    device: torch.device,
    items: list[dict],
    report_items: list[dict],
    *,
    candidates: int,
    batch_size: int,
    cache_dir: Path | None,
) -> DeviceRun:
    """Precompute's engine work and the model report on ``device``. A part that raises is
    recorded in ``errors`` (the other part still runs)."""
    adapter = DemoAdapter(cache_dir=cache_dir)
    adapter.load(device)
    run = DeviceRun(device=str(device), name=_device_name(device))
    try:
        seconds, run.outputs = _precompute(adapter, items, candidates=candidates, batch_size=batch_size)
        run.seconds.update({f"precompute: {k}": v for k, v in seconds.items()})
    except Exception as exc:  # a device bug is a result to show, not a crash
        run.errors["precompute"] = f"{type(exc).__name__}: {exc}"
    if report_items:
        try:
            _sync(device)
            report = run_report(
                adapter, report_items, encodings=True, options=ReportOptions(checkpoints=None), times=_NO_FLOOR
            )
            _sync(device)
            run.report = report.report
            run.seconds.update({f"report: {stage}": row.seconds for stage, row in report.stages.items()})
            run.seconds["report: whole call"] = report.wall
        except Exception as exc:
            run.errors["report"] = f"{type(exc).__name__}: {exc}"
    return run


def _rows(items: int, report_items: int, candidates: int) -> list[tuple[str, str]]:
    rows = [(f"precompute: {s}", str(items)) for s in PRECOMPUTE_STAGES[:2]]
    rows += [(f"precompute: {s}", f"{items} ({items * candidates} rows)") for s in PRECOMPUTE_STAGES[2:]]
    rows.append(("precompute: all", str(items)))
    if report_items:
        rows += [(f"report: {s}", str(report_items)) for s in STAGES]
        rows.append(("report: whole call", str(report_items)))
    return rows


def _seconds(run: DeviceRun | None, stage: str) -> float | None:
    if run is None:
        return None
    if stage == "precompute: all":
        parts = [run.seconds.get(f"precompute: {s}") for s in PRECOMPUTE_STAGES]
        return None if None in parts else sum(parts)
    return run.seconds.get(stage)


def format_table(
    runs: Mapping[str, DeviceRun], *, missing: Mapping[str, str], items: int, report_items: int, candidates: int
) -> str:
    """Markdown: per stage, the CPU and CUDA seconds and their ratio."""

    def cell(kind: str, stage: str) -> str:
        if kind not in runs:
            return missing[kind]
        value = _seconds(runs[kind], stage)
        return "error" if value is None else f"{value:.2f}"

    lines = ["| stage | items | CPU s | CUDA s | CPU/CUDA |", "|---|---|---:|---:|---:|"]
    for stage, count in _rows(items, report_items, candidates):
        if (
            stage.startswith("report: ")
            and stage != "report: whole call"
            and all(stage not in r.seconds for r in runs.values())
        ):
            continue  # a stage the report skipped (e.g. learning without checkpoints)
        cpu, cuda = _seconds(runs.get("cpu"), stage), _seconds(runs.get("cuda"), stage)
        ratio = f"{cpu / cuda:.1f}" if cpu is not None and cuda else "–"
        lines.append(f"| {stage} | {count} | {cell('cpu', stage)} | {cell('cuda', stage)} | {ratio} |")
    return "\n".join(lines)


def differences(cpu: DeviceRun, cuda: DeviceRun) -> dict[str, Any]:
    """The largest absolute difference per compared result (None where either run lacks it)."""
    out: dict[str, Any] = {}
    for key, a in cpu.outputs.items():
        b = cuda.outputs.get(key)
        out[key] = float(np.max(np.abs(a - b))) if b is not None and a.shape == b.shape and a.size else None
    if cpu.report is not None and cuda.report is not None:
        largest, other = report_differences(cpu.report, cuda.report)
        out["report (every number)"] = largest
        out["report: other differing values"] = other
    return out


def _devices(wanted: Sequence[str] | None) -> tuple[dict[str, torch.device], dict[str, str]]:
    """The devices to run by kind, and a note for each kind not run."""
    if not wanted:
        wanted = ["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"]
    run: dict[str, torch.device] = {}
    for name in wanted:
        try:
            device = torch.device(name)
        except RuntimeError as exc:
            raise ValueError(f"--devices {name!r}: {exc}") from None
        if device.type not in DEVICE_KINDS:
            raise ValueError(f"--devices {name!r}: give cpu and/or cuda (or cuda:N)")
        if device.type in run:
            raise ValueError(f"--devices: {device.type} given twice")
        run[device.type] = device
    missing = {kind: "not run" for kind in DEVICE_KINDS if kind not in run}
    if not torch.cuda.is_available():
        run.pop("cuda", None)
        missing["cuda"] = "not available"
    return run, missing


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--devices", nargs="+", default=None, help="cpu and/or cuda[:N] (default: cpu, and cuda when available)"
    )
    parser.add_argument("--items", type=int, default=64, help="demo items for precompute (default 64)")
    parser.add_argument("--report-items", type=int, default=64, help="demo items for the report (0: no report)")
    parser.add_argument("--candidates", type=int, default=4, help="labels explained per item (default 4)")
    parser.add_argument("--batch-size", type=int, default=64, help="rows per engine call, as precompute (64)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--cache-dir", default=None, help="demo model cache (default: MMEVAL_CACHE_DIR or ~/.cache)")
    parser.add_argument("--json", default=None, help="also write the measurements to this file")


def run_from_options(options: Mapping[str, Any], *, out: TextIO) -> dict[str, Any]:
    def number(key: str, default: int) -> int:
        value = options.get(key)
        return default if value is None else int(value)

    items, report_items = number("items", 64), number("report_items", 64)
    candidates, batch_size = number("candidates", 4), number("batch_size", 64)
    if items < 2 or report_items == 1 or report_items < 0:
        raise ValueError("--items must be at least 2 and --report-items 0 or at least 2")
    if candidates < 1 or batch_size < 1:
        raise ValueError("--candidates and --batch-size must be at least 1")
    if options.get("threads") is not None:
        if int(options["threads"]) < 1:
            raise ValueError("--threads must be at least 1")
        torch.set_num_threads(int(options["threads"]))
    devices, missing = _devices(options.get("devices"))
    cache = options.get("cache_dir") or os.environ.get("MMEVAL_CACHE_DIR")
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as folder:
        data = demo_items(Path(folder), max(items, report_items))
        runs = {
            kind: run_device(
                device,
                data[:items],
                data[:report_items],
                candidates=candidates,
                batch_size=batch_size,
                cache_dir=Path(cache) if cache else None,
            )
            for kind, device in devices.items()
        }
    load_after = os.getloadavg()
    names = ", ".join(f"{kind}: {run.name}" for kind, run in runs.items())
    out.write(
        f"CPU against CUDA on the demo model: torch {torch.__version__}, {torch.get_num_threads()} CPU thread(s), "
        f"{os.cpu_count()} CPUs; devices {names}; load average {load_before[0]:.2f} before, "
        f"{load_after[0]:.2f} after (1 min)\n\n"
    )
    out.write(
        format_table(runs, missing=missing, items=items, report_items=report_items, candidates=candidates) + "\n\n"
    )
    for kind, run in runs.items():
        for part, message in run.errors.items():
            out.write(f"{kind} {part} failed: {message}\n")
    diffs = differences(runs["cpu"], runs["cuda"]) if {"cpu", "cuda"} <= set(runs) else None
    if diffs is None:
        out.write(f"largest |CPU - CUDA| differences: none (CUDA {missing.get('cuda', 'failed')})\n")
    else:
        out.write("largest |CPU - CUDA| differences:\n")
        for key, value in diffs.items():
            shown = value if isinstance(value, list) else ("–" if value is None else f"{value:.3g}")
            out.write(f"  {key}: {shown}\n")
    payload = {
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "load_average": [load_before, load_after],
        "sizes": {"items": items, "report_items": report_items, "candidates": candidates, "batch_size": batch_size},
        "devices": {kind: {"name": r.name, "seconds": r.seconds, "errors": r.errors} for kind, r in runs.items()},
        "not_run": missing,
        "differences": diffs,
    }
    if options.get("json"):
        Path(options["json"]).write_text(json.dumps(payload, indent=1))
    return payload


def main(argv: Sequence[str] | None = None, *, out: TextIO | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return run_from_options(vars(args), out=out or sys.stdout)
    except ValueError as exc:
        parser.error(str(exc))


if __name__ == "__main__":
    main()
