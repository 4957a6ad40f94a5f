"""Throughput benchmark of the explanation engine against a measured floor.

For each method the benchmark reports the engine's throughput (items per second) on a batch
of items, its ratio to the method's **floor**, and its speedup over the straightforward way
of computing the same thing one item at a time.

The floor (:mod:`benchmarks.floors`) is the time a method's irreducible model passes would
take at the best per-sample speed the hardware reaches for each kind of pass; the pass counts
per method are tabled there. The baselines are in :mod:`benchmarks.baselines`.

**Ratio to the floor.** The machine may be shared, and other processes' load moves every
timing by tens of percent within minutes. So each timed run of a method is *paired* with a
floor measured right after it (each needed pass timed once at every ``N``), and the
reported ratio is the median of the paired ratios (their range is printed too). The "floor
items/s" column uses the fastest passes seen in the whole run.

The engine is timed through its public API (``attribute``, ``cross_modal_interaction``,
``modality_interaction``) on prepared batches: encoding and embedding are left out of both
the engine's time and the floor. Its row knob (``max_rows``, or ``group_chunk`` for
``second_order``) is autotuned by a sweep in the same run.

Run ``python -m benchmarks.explain --help`` (or ``python manage.py bench_explain``). No Django.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import sys
import tempfile
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TextIO

import numpy as np
import torch
from torch import Tensor

from benchmarks.baselines import BASELINES, baseline_run, relative_difference
from benchmarks.floors import (
    ALL_NAMES,
    PASS_KINDS,
    PASS_LABELS,
    Passes,
    PassTimer,
    PassTimes,
    Progress,
    cycle,
    floor_passes,
    is_oom,
    measure_pass_times,
    predicted_targets,
    smaller_first,
    timed,
)
from workers.engine.adapter import ModelAdapter, RawItem
from workers.engine.attribution import METHODS, PreparedBatch, attribute, prepare_batch
from workers.engine.interactions import cross_modal_interaction, modality_interaction, pick_modalities

__all__ = [
    "BENCH_OPTIONS",
    "BenchReport",
    "DEFAULT_METHODS",
    "MethodResult",
    "TARGETS",
    "add_arguments",
    "bench_method",
    "format_report",
    "knob_candidates",
    "main",
    "run_benchmark",
    "run_from_options",
]

DEMO_ADAPTER = "workers.engine.demo.adapter:DemoAdapter"

#: The methods benchmarked by default.
DEFAULT_METHODS: tuple[str, ...] = (
    "integrated_gradients",
    "saliency",
    "input_x_gradient",
    "gradient_shap",
    "feature_ablation",
    "second_order",
    "modality_interaction",
)

#: The issue's targets: the most ``time / floor`` allowed, per method, on CPU.
TARGETS: dict[str, float] = {
    "integrated_gradients": 1.25,
    "saliency": 1.25,
    "input_x_gradient": 1.25,
    "gradient_shap": 1.25,
    "second_order": 1.5,
}

#: A ratio below this means the floor measurement was disturbed (flagged in the table).
SUSPICIOUS_RATIO = 0.8

#: Options the benchmark runs each method with (the engine defaults, spelled out).
BENCH_OPTIONS: dict[str, dict[str, Any]] = {
    "integrated_gradients": {"n_steps": 50},
    "gradient_shap": {"n_samples": 20},
}

# --------------------------------------------------------------------------------------------
# Small helpers (the timing ones, shared with the floor, are in ``benchmarks.floors``)
# --------------------------------------------------------------------------------------------


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence the warnings the engine silences too (Captum's requires_grad notices)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*did not already require gradients.*")
        warnings.filterwarnings("ignore", message=r".*multiple inputs for Lime / Kernel SHAP.*")
        yield


# --------------------------------------------------------------------------------------------
# Running the engine, and its knob
# --------------------------------------------------------------------------------------------


def _per_example(method: str) -> bool:
    return method in METHODS and METHODS[method].per_example


def _run_engine(
    method: str,
    batches: Sequence[tuple[PreparedBatch, Tensor]],
    options: Mapping[str, Any],
    modalities: Sequence[str] | None,
) -> list[Any]:
    """The engine's public API on each prepared batch; the per-item results, in order."""
    out: list[Any] = []
    for p, t in batches:
        if method in METHODS:
            out.extend(attribute(p.adapter, p.batch, method=method, targets=t, prepared=p, **options))
        elif method == "modality_interaction":
            out.extend(
                modality_interaction(p.adapter, p.batch, targets=t, prepared=p, modalities=modalities, **options)
            )
        else:
            out.extend(
                cross_modal_interaction(
                    p.adapter, p.batch, method=method, targets=t, prepared=p, modalities=modalities, **options
                )
            )
    return out


def _powers(lo: int, hi: int) -> list[int]:
    """``lo, 2 lo, 4 lo, ...`` below ``hi``, then ``hi``."""
    out, k = [], max(1, lo)
    while k < hi:
        out.append(k)
        k *= 2
    out.append(max(1, hi))
    return sorted(set(out))


def knob_candidates(
    method: str,
    p: PreparedBatch,
    options: Mapping[str, Any],
    *,
    max_rows_cap: int = 4096,
    modalities: Sequence[str] | None = None,
) -> tuple[str | None, list[int]]:
    """The engine knob that sets the rows per head call for ``method`` and the values to sweep:
    ``(None, [])`` when the method has none (one call of ``B`` rows). ``max_rows`` values are
    multiples of the batch size ``B`` (Captum rounds down to one)."""
    b = p.size
    per_item = {  # rows per item the method sends through the head, for max_rows
        "integrated_gradients": lambda: int(options.get("n_steps", 50)),
        "gradient_shap": lambda: int(options.get("n_samples", 20)),
        "feature_ablation": lambda: max(sum(len(ids) for ids in row) for row in p.group_ids),
        "shapley_value_sampling": lambda: max(sum(len(ids) for ids in row) for row in p.group_ids),
        "occlusion": lambda: max_rows_cap // max(1, b),
        "kernel_shap": lambda: int(options.get("n_samples", 64)),
        "lime": lambda: int(options.get("n_samples", 64)),
        "modality_interaction": lambda: 4,
        "integrated_hessians": lambda: int(options.get("n_steps", 16)),
    }
    if method == "second_order":
        ia, ib = pick_modalities(p.modalities, modalities)
        s, _ = smaller_first(p, ia, ib)
        return "group_chunk", _powers(1, p.group_table(s)[0].shape[1])
    if method == "perturbation":
        ia, ib = pick_modalities(p.modalities, modalities)
        ka, kb = p.group_table(ia)[0].shape[1], p.group_table(ib)[0].shape[1]
        per_item["perturbation"] = lambda: 1 + ka + kb + ka * kb
    if method not in per_item:
        return None, []
    steps = _powers(1, per_item[method]())
    rows = [k * b for k in steps if k * b <= max(max_rows_cap, b)]
    return "max_rows", rows or [b]


# --------------------------------------------------------------------------------------------
# One method
# --------------------------------------------------------------------------------------------


@dataclass
class MethodResult:
    """One row of the table.

    Attributes:
        method: the method or interaction.
        n_items: items per timed run.
        passes: the floor's pass counts, mean per item, in words.
        knob, knob_value: the autotuned engine knob and its best value (None: no knob).
        sweep: knob value -> best seconds of one run over the items.
        seconds: the engine's best time over the items.
        floor_seconds: the floor for the same items, from the fastest passes seen in the run.
        ratio: the engine's time over the floor: the median over the timed runs of
            ``run time / floor timed right after it`` (``paired_ratios``); without pairs,
            ``seconds / floor_seconds``.
        target: the issue's bound on ``ratio`` (None: no target).
        baseline: the one-item-at-a-time baseline's name (None: none).
        baseline_items: items the baseline ran on.
        baseline_seconds: its time, scaled to ``n_items``.
        speedup: ``baseline_seconds / seconds``.
        max_rel_diff: ``max |engine - baseline| / max |baseline|`` (None: not comparable).
    """

    method: str
    n_items: int
    passes: str
    knob: str | None
    knob_value: int | None
    sweep: dict[int, float]
    seconds: float
    floor_seconds: float
    ratio: float
    target: float | None = None
    baseline: str | None = None
    baseline_items: int = 0
    baseline_seconds: float | None = None
    speedup: float | None = None
    max_rel_diff: float | None = None
    pass_counts: Passes | None = None
    paired_ratios: list[float] = field(default_factory=list)

    def set_floor(self, times: PassTimes) -> None:
        """(Re)compute the floor from ``pass_counts`` and ``times``; the ratio is the median
        of the paired ratios when there are some, else ``seconds / floor_seconds``."""
        if self.pass_counts is None:
            return
        self.floor_seconds = self.pass_counts.seconds(times)
        if self.paired_ratios:
            self.ratio = float(np.median(self.paired_ratios))
        else:
            self.ratio = self.seconds / self.floor_seconds if self.floor_seconds > 0 else math.inf

    @property
    def items_per_s(self) -> float:
        return self.n_items / self.seconds if self.seconds > 0 else math.inf

    @property
    def floor_items_per_s(self) -> float:
        return self.n_items / self.floor_seconds if self.floor_seconds > 0 else math.inf

    @property
    def baseline_items_per_s(self) -> float | None:
        if self.baseline_seconds is None:
            return None
        return self.n_items / self.baseline_seconds if self.baseline_seconds > 0 else math.inf

    @property
    def meets_target(self) -> bool | None:
        return None if self.target is None else self.ratio <= self.target

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["sweep"] = {str(k): v for k, v in self.sweep.items()}
        out.update(
            items_per_s=self.items_per_s,
            floor_items_per_s=self.floor_items_per_s,
            baseline_items_per_s=self.baseline_items_per_s,
            meets_target=self.meets_target,
        )
        return out


def _floor_sample(timer: PassTimer, passes: Passes, times: PassTimes) -> tuple[float, PassTimes] | None:
    """One timing of each pass kind ``passes`` needs at every batch size of the sweep: the
    floor from the best per-sample time of each kind, and the samples (None if a needed kind
    has no measurement). Every size, not only the sweep's best: on a busy machine the sweep
    may crown a size by luck."""
    total = 0.0
    sampled = PassTimes(seconds={}, pair=times.pair)
    for kind in PASS_KINDS:
        count = getattr(passes, kind)
        if not count:
            continue
        values = {}
        for n in sorted(times.seconds.get(kind, {})):
            value = timer.per_sample(kind, n)
            if value is not None:
                values[n] = value
        if not values:
            return None
        sampled.seconds[kind] = values
        total += count * min(values.values())
    return (total, sampled) if total > 0 else None


def bench_method(
    method: str,
    p: PreparedBatch,
    targets: Tensor,
    times: PassTimes,
    *,
    options: Mapping[str, Any] | None = None,
    repeats: int = 3,
    singles: Sequence[tuple[PreparedBatch, Tensor]] | None = None,
    baseline: bool = True,
    baseline_repeats: int = 1,
    baseline_items: int | None = None,
    modalities: Sequence[str] | None = None,
    max_rows_cap: int = 4096,
    device: torch.device | None = None,
    timer: PassTimer | None = None,
    batches: Callable[[int], tuple[PreparedBatch, Tensor]] | None = None,
    batch_sizes: Sequence[int] = (),
    progress: Progress | None = None,
) -> MethodResult:
    """Autotune, time and floor one method on the items of ``p``.

    Args:
        method: a key of ``METHODS``, ``"modality_interaction"`` or a key of ``CROSS_METHODS``.
        p: the prepared batch of ``B`` items (one engine call; per-example methods run on
            ``singles`` instead, as :func:`~workers.engine.explain.explain_items` does).
        targets: ``(B,)`` target classes.
        times: the per-sample pass times of the same run.
        options: method options besides the knob (default :data:`BENCH_OPTIONS`).
        repeats: timed runs at the best knob value (the minimum is kept).
        singles: the same items as one-item prepared batches with their targets (needed for
            the baselines and per-example methods).
        baseline: also time the method's one-item-at-a-time baseline (:data:`BASELINES`).
        baseline_repeats: timed runs of the baseline.
        baseline_items: run the baseline on the first this many items only (default all);
            its time is scaled to ``B`` items.
        modalities: the interaction pair.
        max_rows_cap: the largest ``max_rows`` tried.
        device: for CUDA synchronisation (default the inputs' device).
        timer: when given, the floor's passes are timed again (once at each batch size of
            ``times``; the best per-sample time counts) right after every timed run of the
            method, and the reported ratio is the median of these paired ratios; ``times``
            keeps the fastest samples.
        batches: ``batches(n)`` -> a prepared batch of ``n`` items (cycled from the same items,
            in the same order) and its targets. With it, a method that has no row knob (one
            head call of ``B`` rows: saliency, input x gradient) gets the batch size as its
            knob instead, swept over ``batch_sizes`` (those of at least 8) and ``B``, so that
            it can run at the batch size its floor is measured at; the row then reports that
            many items.
        batch_sizes: the candidate batch sizes for ``batches``.
        progress: called with a short description after each run.

    Returns:
        :class:`MethodResult`.
    """
    dev = device or p.device
    options = dict(BENCH_OPTIONS.get(method, {}) if options is None else options)
    tick = progress or (lambda _msg: None)
    per_example = _per_example(method)
    if per_example and singles is None:
        raise ValueError(f"{method} runs one item at a time: pass singles")
    runs = list(singles) if per_example else [(p, targets)]
    knob, candidates = knob_candidates(method, runs[0][0], options, max_rows_cap=max_rows_cap, modalities=modalities)
    by_batch = knob is None and not per_example and batches is not None
    if by_batch:  # the knob is the batch size itself (see ``batches``)
        knob = "batch"
        candidates = sorted({int(n) for n in batch_sizes if int(n) >= 8} | {p.size})

    def runs_for(value: int | None) -> list[tuple[PreparedBatch, Tensor]]:
        if not by_batch or value == p.size:
            return runs
        assert batches is not None and value is not None
        return [batches(value)]

    def opts_for(value: int | None) -> dict[str, Any]:
        return {**options, knob: value} if knob and not by_batch else dict(options)

    def per_item(value: int) -> float:  # compare batch sizes by time per item
        return sweep[value] / value if by_batch else sweep[value]

    sweep: dict[int, float] = {}
    results: list[Any] = []
    with _quiet():
        _run_engine(
            method, runs_for(candidates[0] if knob else None), opts_for(candidates[0] if knob else None), modalities
        )  # warm-up
        for value in candidates:
            run_v, opts_v = runs_for(value), opts_for(value)
            try:
                if by_batch and value != candidates[0]:  # warm-up: a new batch shape
                    _run_engine(method, run_v, opts_v, modalities)
                sweep[value], _ = timed(lambda: _run_engine(method, run_v, opts_v, modalities), dev)
            except RuntimeError as exc:
                if not is_oom(exc):
                    raise
                break
            tick(f"{method} {knob}={value}")
        best_value = min(sweep, key=lambda v: (per_item(v), v)) if knob else None
        runs = runs_for(best_value)
        p_run = runs[0][0] if by_batch else p
        opts = opts_for(best_value)
        best = sweep.get(best_value, math.inf) if knob else math.inf
        passes = floor_passes(method, p_run, options=options, modalities=modalities)
        paired: list[float] = []
        for _ in range(max(1, repeats)):
            seconds, results = timed(lambda: _run_engine(method, runs, opts, modalities), dev)
            best = min(best, seconds)
            if timer is not None:
                # The floor's passes, timed right after the method: the pair shares the
                # machine's load of the moment, so their ratio is robust to other processes.
                sample = _floor_sample(timer, passes, times)
                if sample is not None:
                    floor_r, sampled = sample
                    paired.append(seconds / floor_r)
                    times.merge(sampled)
            tick(f"{method} timing")
        if knob is not None:
            sweep[best_value] = min(sweep[best_value], best)
    result = MethodResult(
        method=method,
        n_items=p_run.size,
        passes=passes.describe(p_run.size),
        knob=knob,
        knob_value=best_value,
        sweep=sweep,
        seconds=best,
        floor_seconds=math.inf,
        ratio=math.inf,
        target=TARGETS.get(method),
        pass_counts=passes,
        paired_ratios=paired,
    )
    result.set_floor(times)
    if baseline and method in BASELINES and singles:
        name, comparable = BASELINES[method]
        subset = list(singles)[: baseline_items or len(singles)]
        with _quiet():
            base_best, ref = math.inf, []
            for _ in range(max(1, baseline_repeats)):
                seconds, ref = timed(lambda: baseline_run(method, subset, options, modalities), dev)
                base_best = min(base_best, seconds)
                tick(f"{method} {name}")
        result.baseline = name
        result.baseline_items = len(subset)
        result.baseline_seconds = base_best * p_run.size / len(subset)
        result.speedup = result.baseline_seconds / best if best > 0 else math.inf
        if comparable and not per_example:
            result.max_rel_diff = relative_difference(method, results[: len(subset)], ref, subset)
    return result


# --------------------------------------------------------------------------------------------
# The whole run
# --------------------------------------------------------------------------------------------


@dataclass
class BenchReport:
    """Everything one benchmark run measured."""

    adapter: str
    device: str
    threads: int
    torch_version: str
    n_items: int
    pass_times: PassTimes
    results: list[MethodResult] = field(default_factory=list)
    machine: str = ""
    environment: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "adapter": self.adapter,
            "device": self.device,
            "threads": self.threads,
            "torch_version": self.torch_version,
            "n_items": self.n_items,
            "machine": self.machine,
            "environment": self.environment,
            "pass_times": {
                "pair": list(self.pass_times.pair),
                "seconds_per_sample": {
                    k: {str(n): v for n, v in d.items()} for k, d in self.pass_times.seconds.items()
                },
            },
            "results": [r.to_json() for r in self.results],
        }


def _steps_estimate(methods: Sequence[str], n_batch_sizes: int, repeats: int, baseline_repeats: int) -> int:
    steps = n_batch_sizes
    for method in methods:
        steps += 6 + max(1, repeats) + (max(1, baseline_repeats) if method in BASELINES else 0)
    return steps


def run_benchmark(
    adapter: ModelAdapter,
    items: Sequence[RawItem],
    *,
    methods: Sequence[str] = DEFAULT_METHODS,
    repeats: int = 3,
    pass_batch_sizes: Sequence[int] = (1, 8, 32, 128, 512),
    baseline: bool = True,
    baseline_repeats: int = 1,
    baseline_items: int | None = None,
    method_options: Mapping[str, Mapping[str, Any]] | None = None,
    modalities: Sequence[str] | None = None,
    max_rows_cap: int = 4096,
    paired: bool = True,
    batch_knob: bool = True,
    adapter_name: str = "",
    progress: Progress | None = None,
) -> BenchReport:
    """Measure the pass times, then benchmark every method on ``items`` (one batch).

    Args:
        adapter: a loaded adapter.
        items: the raw items; all of them form the engine's batch.
        methods: names from ``METHODS``, ``"modality_interaction"`` or ``CROSS_METHODS``.
        repeats: timed runs per measurement (minimum kept).
        pass_batch_sizes: the batch sizes of the pass-time sweep.
        baseline: also time the one-item-at-a-time baselines.
        baseline_repeats, baseline_items: see :func:`bench_method`.
        method_options: per method, options (default :data:`BENCH_OPTIONS`).
        modalities: the interaction pair.
        max_rows_cap: the largest ``max_rows`` the sweep tries.
        paired: time the floor's passes again right after every timed run of a method and
            report the median of the paired ratios (see :func:`bench_method`). On a shared
            machine a floor measured once, at the start, can land in a quiet or a busy spell
            and shift every ratio; a pair shares the load of its moment.
        batch_knob: methods without a row knob (saliency, input x gradient: one head call of
            ``B`` rows) are timed on batches of each size of ``pass_batch_sizes`` (at least 8)
            and of ``len(items)``, items cycled, and the fastest per item counts (see
            :func:`bench_method`'s ``batches``); False times them on ``items`` only.
        adapter_name: recorded in the report.
        progress: called with a short description after each measurement.

    Returns:
        :class:`BenchReport`.
    """
    methods = list(methods)
    for name in methods:
        if name not in ALL_NAMES:
            raise ValueError(f"unknown method {name!r}; known: {list(ALL_NAMES)}")
    items = list(items)
    if not items:
        raise ValueError("no items to benchmark")
    load_before = _load_average()
    p = prepare_batch(adapter, adapter.encode(items))
    targets = predicted_targets(p)
    dev = p.device
    timer = PassTimer(adapter, items, modalities=modalities, device=dev)
    times = measure_pass_times(
        adapter,
        items,
        batch_sizes=pass_batch_sizes,
        repeats=repeats,
        modalities=modalities,
        device=dev,
        progress=progress,
        timer=timer,
    )
    needs_singles = baseline or any(_per_example(m) for m in methods)
    singles = []
    if needs_singles:
        for k, item in enumerate(items):
            singles.append((prepare_batch(adapter, adapter.encode([item])), targets[k : k + 1]))
    report = BenchReport(
        adapter=adapter_name or type(adapter).__name__,
        device=str(dev),
        threads=torch.get_num_threads(),
        torch_version=torch.__version__,
        n_items=len(items),
        pass_times=times,
        machine=_machine(),
        environment=_environment(load_before),
    )
    for method in methods:
        opts = (method_options or {}).get(method, BENCH_OPTIONS.get(method, {}))
        report.results.append(
            bench_method(
                method,
                p,
                targets,
                times,
                options=opts,
                repeats=repeats,
                singles=singles if needs_singles else None,
                baseline=baseline,
                baseline_repeats=baseline_repeats,
                baseline_items=baseline_items,
                modalities=modalities,
                max_rows_cap=max_rows_cap,
                device=dev,
                timer=timer if paired else None,
                batches=timer.batch,
                batch_sizes=pass_batch_sizes if batch_knob else (),
                progress=progress,
            )
        )
    for result in report.results:  # every floor from the fastest passes seen in the whole run
        result.set_floor(times)
    report.environment["load_after"] = _load_average()
    return report


def _load_average() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except (AttributeError, OSError):
        return None


def _environment(load_before: list[float] | None) -> dict[str, Any]:
    """What else shapes CPU timings: the OpenMP wait policy and the machine's load (1, 5 and
    15 minute averages) before and after the run; a load above the CPU count means other
    processes competed for the cores."""
    return {
        "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY"),
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
        "cpus": _default_threads(),
        "load_before": load_before,
        "load_after": _load_average(),
    }


def _machine() -> str:
    return f"{platform.machine()} {platform.processor() or ''} {os.cpu_count()} CPUs".replace("  ", " ")


# --------------------------------------------------------------------------------------------
# Formatting
# --------------------------------------------------------------------------------------------


def _fmt(value: float | None, digits: int = 3) -> str:
    if value is None:
        return "—"
    if not math.isfinite(value):
        return "inf"
    if value == 0:
        return "0"
    if abs(value) >= 100:
        return f"{value:.0f}"
    return f"{value:.{digits}g}"


def _table(header: Sequence[str], rows: Iterable[Sequence[str]], align: str) -> list[str]:
    rows = [list(r) for r in rows]
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows)]

    def line(cells: Sequence[str]) -> str:
        out = []
        for cell, w, a in zip(cells, widths, align):
            out.append(str(cell).ljust(w) if a == "l" else str(cell).rjust(w))
        return "  ".join(out).rstrip()

    return [line(header), line(["-" * w for w in widths]), *[line(r) for r in rows]]


def format_report(report: BenchReport) -> str:
    """The two tables (pass times; methods) as plain text."""
    lines = [
        f"adapter {report.adapter} on {report.device}, {report.threads} thread(s), "
        f"torch {report.torch_version}, {report.n_items} items",
        f"environment: {', '.join(f'{k}={v}' for k, v in report.environment.items())}",
        "",
        "Per-sample pass times (ms; best over batch sizes marked *)",
    ]
    times = report.pass_times
    sizes = sorted({n for d in times.seconds.values() for n in d})
    rows = []
    for n in sizes:
        row = [str(n)]
        for kind in PASS_KINDS:
            v = times.seconds[kind].get(n)
            star = "*" if v is not None and times.best_batch_size(kind) == n else ""
            row.append("—" if v is None else f"{v * 1e3:.3f}{star}")
        rows.append(row)
    lines += _table(["N", *(PASS_LABELS[k] for k in PASS_KINDS)], rows, "rrrrr")
    lines += [
        "",
        "Methods (items/s: best run; x floor: median (range) of run time / floor timed right "
        "after it; speedup: baseline time / engine time; rel.diff: max |engine - baseline| / "
        "max |baseline|)",
    ]
    rows = []
    for r in report.results:
        knob = "—" if r.knob is None else f"{r.knob}={r.knob_value}"
        target = "—" if r.target is None else f"≤{r.target:g} {'ok' if r.meets_target else 'MISSED'}"
        ratio = f"{r.ratio:.2f}" + ("!" if r.ratio < SUSPICIOUS_RATIO else "")
        if len(r.paired_ratios) > 1:
            ratio += f" ({min(r.paired_ratios):.2f}-{max(r.paired_ratios):.2f})"
        rows.append(
            [
                r.method,
                r.passes,
                knob,
                _fmt(r.items_per_s),
                _fmt(r.floor_items_per_s),
                ratio,
                target,
                r.baseline or "—",
                _fmt(r.baseline_items_per_s),
                "—" if r.speedup is None else f"{r.speedup:.1f}x",
                "—" if r.max_rel_diff is None else f"{r.max_rel_diff:.0e}",
            ]
        )
    lines += _table(
        [
            "method",
            "passes/item (floor)",
            "knob (autotuned)",
            "items/s",
            "floor items/s",
            "x floor",
            "target",
            "baseline",
            "items/s",
            "speedup",
            "rel.diff",
        ],
        rows,
        "lllrrrllrrr",
    )
    if any(r.ratio < SUSPICIOUS_RATIO for r in report.results):
        lines += [
            "",
            f"! ratio below {SUSPICIOUS_RATIO}: a method cannot beat its own passes, so either "
            "--pass-batch-sizes lacks the row counts the engine used, or the floor measurement "
            "was disturbed (other processes, OpenMP spin-waiting): rerun on a quiet machine, "
            "with OMP_WAIT_POLICY=PASSIVE or --threads 1",
        ]
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# Command line (shared with ``manage.py bench_explain``)
# --------------------------------------------------------------------------------------------


def _default_threads() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The benchmark's options, for argparse and Django's command parser alike."""
    parser.add_argument(
        "--adapter",
        default=DEMO_ADAPTER,
        help=f"dotted path package.module:Factory (default: the demo adapter, {DEMO_ADAPTER})",
    )
    parser.add_argument(
        "--data",
        default=None,
        help="dataset JSONL (default: demo items generated in a temporary folder; only for the demo adapter)",
    )
    parser.add_argument("--items", type=int, default=64, help="items per benchmark batch (default 64)")
    parser.add_argument("--methods", default=",".join(DEFAULT_METHODS), help="comma-separated methods and interactions")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1 ... (default cpu)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per measurement (min kept)")
    parser.add_argument(
        "--threads", type=int, default=None, help="torch intra-op threads (default: the CPUs this process may use)"
    )
    parser.add_argument(
        "--pass-batch-sizes", default="1,8,32,128,512", help="batch sizes of the per-sample pass-time sweep"
    )
    parser.add_argument("--max-rows-cap", type=int, default=4096, help="largest max_rows the sweep tries")
    parser.add_argument("--no-baseline", action="store_true", help="skip the one-item-at-a-time baselines")
    parser.add_argument(
        "--baseline-items",
        type=int,
        default=None,
        help="run the baselines on this many items only (their time is scaled)",
    )
    parser.add_argument("--baseline-repeats", type=int, default=1)
    parser.add_argument(
        "--fixed-batch",
        action="store_true",
        help="time saliency and input x gradient (no row knob) on the --items batch "
        "only, instead of autotuning their batch size over --pass-batch-sizes",
    )
    parser.add_argument("--json", default=None, help="also write the raw results as JSON here")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def _check_device(device: str) -> None:
    """Fail early, with a message, for a device this PyTorch build cannot use."""
    try:
        dev = torch.device(device)
    except RuntimeError as exc:
        raise ValueError(f"--device {device!r}: {exc}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {device!r}: CUDA is not available to this PyTorch build ({torch.__version__})")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"--device {device!r}: MPS is not available")


def _load_items(adapter_path: str, data: str | None, n: int, tmp: Path) -> list[RawItem]:
    from workers.engine.dataset import read_dataset_jsonl

    if data is None:
        if adapter_path != DEMO_ADAPTER:
            raise ValueError("--data is needed for adapters other than the demo adapter")
        from workers.engine.demo.data import generate_dataset

        data = str(generate_dataset(tmp, n_items=n, seed=0))
    items = [line.item for line in read_dataset_jsonl(Path(data))]
    if not items:
        raise ValueError("the dataset has no items")
    return cycle(items, n) if len(items) < n else items[:n]


def run_from_options(options: Mapping[str, Any], *, out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> BenchReport:
    """Run the benchmark from parsed options (``add_arguments``' names) and print the tables."""
    from tqdm.auto import tqdm

    from workers.engine.registry import load_adapter

    threads = options.get("threads") or _default_threads()
    torch.set_num_threads(int(threads))
    methods = [m.strip() for m in str(options["methods"]).split(",") if m.strip()]
    for name in methods:
        if name not in ALL_NAMES:
            raise ValueError(f"unknown method {name!r}; known: {', '.join(ALL_NAMES)}")
    if options["items"] < 1:
        raise ValueError("--items must be at least 1")
    sizes = [int(x) for x in str(options["pass_batch_sizes"]).split(",") if x.strip()]
    if not sizes or min(sizes) < 1:
        raise ValueError("--pass-batch-sizes needs positive integers, e.g. 1,8,32,128,512")
    _check_device(str(options["device"]))
    load = _load_average()
    policy = os.environ.get("OMP_WAIT_POLICY", "").upper()
    if int(threads) > 1 and policy != "PASSIVE" and load and load[0] > _default_threads():
        err.write(
            f"warning: load average {load[0]} exceeds the {_default_threads()} CPUs and "
            f"OMP_WAIT_POLICY is {policy or 'unset'}: with {threads} threads, OpenMP spin-waiting "
            "makes timings unreliable. Set OMP_WAIT_POLICY=PASSIVE or use --threads 1.\n"
        )
    adapter = load_adapter(options["adapter"], device=options["device"])
    with tempfile.TemporaryDirectory(prefix="mmeval-bench-") as tmp:
        items = _load_items(options["adapter"], options.get("data"), int(options["items"]), Path(tmp))
        baseline = not options.get("no_baseline")
        bar = tqdm(
            total=_steps_estimate(methods, len(sizes), options["repeats"], options["baseline_repeats"]),
            file=err,
            disable=bool(options.get("no_progress")),
            unit="run",
            dynamic_ncols=True,
        )

        def progress(msg: str) -> None:
            bar.set_description(msg[:40])
            bar.update(1)

        try:
            report = run_benchmark(
                adapter,
                items,
                methods=methods,
                repeats=int(options["repeats"]),
                pass_batch_sizes=sizes,
                baseline=baseline,
                baseline_repeats=int(options["baseline_repeats"]),
                baseline_items=options.get("baseline_items"),
                max_rows_cap=int(options["max_rows_cap"]),
                batch_knob=not options.get("fixed_batch"),
                adapter_name=options["adapter"],
                progress=progress,
            )
        finally:
            bar.close()
    out.write(format_report(report) + "\n")
    if options.get("json"):
        Path(options["json"]).write_text(json.dumps(report.to_json(), indent=1))
    return report


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m benchmarks.explain [options]``."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.explain", description=__doc__.split("\n\n")[0])
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        run_from_options(vars(args))
    except ValueError as exc:
        parser.error(str(exc))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
