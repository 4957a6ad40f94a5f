"""The model report per stage: seconds, passes and floor, without and with the adapter's
per-modality encodings (``encode_modality`` + ``fuse``, ``workers/engine/encodings.py``), in
the same process, on the bundled demo adapter and the demo dataset (``manage.py demo``: 320
items, seed 0), checkpoints included. No Django; public engine API only.

Both runs compute the whole report (``model_report_run``) with the same options; "before"
is the report as it was before issue 22: the encodings hook hidden from the engine (the
adapter then goes through ``head`` on every pairing), the demo's decoded-image cache bypassed
and its checkpoints file read once per checkpoint; "after" is the report as it is. The two reports are
compared number by number (everything but ``timing``): the table's last line prints the
largest difference.

Each stage's wall seconds come with the CPU seconds this process spent in it (on a machine
other jobs load, the CPU seconds are closer to what the stage costs). Passes are counted per stage as rows through ``head`` (forward, or forward with a graph in
``group_pairs``), through ``encode_modality`` (summed over the modalities) and through ``fuse``.
The **floor** of a stage is its passes at the best per-sample time measured in this run at any
batch size (``--pass-batch-sizes``)::

    floor = head rows * t_head + encoder rows * t_encode + fuse rows * t_fuse

(a forward-only floor: ``group_pairs``' backward passes are not in it, so its floor is a lower
bound).

    python -m benchmarks.report --items 320 --checkpoints all --threads 1
    python manage.py bench_report --items 320 --checkpoints all --threads 1
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import torch
import yaml

from workers.engine.demo import adapter as demo_adapter_module
from workers.engine.demo.adapter import DemoAdapter
from workers.engine.demo.data import generate_dataset
from workers.engine.encodings import encode_items, has_modality_encodings
from workers.engine.report.quantify import STAGES, ReportOptions, model_report_run, report_slice_fields
from workers.engine.report.slices import slices_parse

__all__ = [
    "CountingAdapter",
    "CountingEncodingsAdapter",
    "add_arguments",
    "demo_items",
    "main",
    "report_differences",
    "run_report",
    "run_from_options",
]

SLICES_FILE = Path(__file__).resolve().parents[1] / "workers" / "engine" / "demo" / "slices.yaml"
_HOOKS = ("encode_modality", "fuse")


@dataclass
class Counts:
    head: int = 0
    encode: int = 0
    fuse: int = 0

    def minus(self, other: Counts) -> Counts:
        return Counts(self.head - other.head, self.encode - other.encode, self.fuse - other.fuse)


class CountingAdapter:
    """``adapter`` with its rows through ``head`` counted (into ``counts``, shared with the
    adapters ``load_checkpoint`` returns) and its encodings hook hidden, so the engine runs
    ``head`` on every pairing (the report before issue 22)."""

    def __init__(self, adapter: Any, *, counts: Counts | None = None) -> None:
        self._adapter = adapter
        self.counts = counts if counts is not None else Counts()

    def __getattr__(self, name: str) -> Any:
        if name in _HOOKS:
            raise AttributeError(name)
        return getattr(self._adapter, name)

    def head(self, *embedded: torch.Tensor, batch: Any) -> torch.Tensor:
        self.counts.head += embedded[0].shape[0]
        return self._adapter.head(*embedded, batch=batch)

    def load_checkpoint(self, name: str) -> CountingAdapter:
        if hasattr(self._adapter, "_checkpoints_read"):  # before issue 22 the demo read the file per checkpoint
            self._adapter._checkpoints_read = None
        return type(self)(self._adapter.load_checkpoint(name), counts=self.counts)


class CountingEncodingsAdapter(CountingAdapter):
    """:class:`CountingAdapter` with the encodings hook, its rows counted too (and the demo's
    checkpoints file read once)."""

    def load_checkpoint(self, name: str) -> CountingAdapter:
        return type(self)(self._adapter.load_checkpoint(name), counts=self.counts)

    def encode_modality(self, name: str, embedded: torch.Tensor, *, batch: Any) -> torch.Tensor:
        self.counts.encode += embedded.shape[0]
        return self._adapter.encode_modality(name, embedded, batch=batch)

    def fuse(self, *encodings: torch.Tensor) -> torch.Tensor:
        self.counts.fuse += encodings[0].shape[0]
        return self._adapter.fuse(*encodings)


@dataclass
class StageRow:
    seconds: float
    cpu: float
    passes: Counts
    floor: float


@dataclass
class Run:
    name: str
    stages: dict[str, StageRow] = field(default_factory=dict)
    wall: float = 0.0
    cpu: float = 0.0
    report: dict[str, Any] | None = None


def _best(fn: Callable[[], Any], repeats: int) -> float:
    fn()
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def per_sample_times(
    adapter: Any, items: Sequence[Mapping[str, Any]], *, batch_sizes: Sequence[int], repeats: int = 3
) -> dict[str, float]:
    """The best seconds per row of ``head``, of encoding every modality and of ``fuse``, over
    ``batch_sizes`` rows (items cycled)."""
    from workers.engine.attribution import prepare_batch

    best = {"head": math.inf, "encode": math.inf, "fuse": math.inf}
    with torch.no_grad():
        for n in batch_sizes:
            chunk = [items[i % len(items)] for i in range(n)]
            p = prepare_batch(adapter, adapter.encode(chunk))
            best["head"] = min(best["head"], _best(lambda: adapter.head(*p.inputs, batch=p.batch), repeats) / n)
            if has_modality_encodings(adapter):

                def encode_all() -> list[torch.Tensor]:
                    return [
                        adapter.encode_modality(str(m), x, batch=p.batch) for m, x in zip(adapter.modalities, p.inputs)
                    ]

                encoded = encode_all()
                best["encode"] = min(best["encode"], _best(encode_all, repeats) / n)
                best["fuse"] = min(best["fuse"], _best(lambda: adapter.fuse(*encoded), repeats) / n)
    return best


def _floor(passes: Counts, times: Mapping[str, float]) -> float:
    total = passes.head * times["head"]
    if passes.encode:
        total += passes.encode * times["encode"] / 2  # encode rows are summed over the 2 modalities
    if passes.fuse:
        total += passes.fuse * times["fuse"]
    return total


def _numbers(value: Any, path: str = "") -> dict[str, Any]:
    """Every leaf of a JSON-able report by its path (``timing`` left out)."""
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for key, inner in value.items():
            if path == "" and key == "timing":
                continue
            out.update(_numbers(inner, f"{path}/{key}"))
        return out
    if isinstance(value, (list, tuple)):
        out = {}
        for k, inner in enumerate(value):
            out.update(_numbers(inner, f"{path}/{k}"))
        return out
    return {path: value}


def report_differences(a: Mapping[str, Any], b: Mapping[str, Any]) -> tuple[float, list[str]]:
    """The largest absolute difference between the numbers of two reports, and the paths whose
    non-numeric values (or presence) differ."""
    left, right = _numbers(a), _numbers(b)
    largest = 0.0
    other = sorted(set(left) ^ set(right))
    for key in set(left) & set(right):
        x, y = left[key], right[key]
        if isinstance(x, (int, float)) and isinstance(y, (int, float)) and not isinstance(x, bool):
            if x != y:
                largest = max(largest, abs(float(x) - float(y)))
        elif x != y:
            other.append(key)
    return largest, other


def demo_items(folder: Path, n_items: int) -> list[dict[str, Any]]:
    """The demo dataset (``generate_dataset`` seed 0) written into ``folder``, as raw items."""
    generate_dataset(folder, n_items=n_items, seed=0)
    items = [json.loads(line) for line in (folder / "items.jsonl").read_text().splitlines()]
    return [{**item, "image": str(folder / item["image"])} for item in items]


def _load(cache_dir: Path | None) -> DemoAdapter:
    adapter = DemoAdapter(cache_dir=cache_dir)
    adapter.load(torch.device("cpu"))
    return adapter


def run_report(
    adapter: Any, items: Sequence[Mapping[str, Any]], *, encodings: bool, options: ReportOptions, times: Mapping
) -> Run:
    counting = (CountingEncodingsAdapter if encodings else CountingAdapter)(adapter)
    slices = slices_parse(yaml.safe_load(SLICES_FILE.read_text()), fields=report_slice_fields(adapter.modalities))
    run = Run(name="after (encodings)" if encodings else "before (head on every pairing)")
    last = [Counts()]
    cpu_mark = [time.process_time()]

    def on_stage(stage: str, state: dict) -> None:
        now = Counts(counting.counts.head, counting.counts.encode, counting.counts.fuse)
        passes = now.minus(last[0])
        last[0] = now
        cpu_now = time.process_time()
        cpu, cpu_mark[0] = cpu_now - cpu_mark[0], cpu_now
        run.stages[stage] = StageRow(
            seconds=state["timing"][stage], cpu=cpu, passes=passes, floor=_floor(passes, times)
        )

    # Before issue 22 the demo decoded every picture on each read: its decoded-image cache is
    # bypassed in that run and emptied before the other.
    cached = demo_adapter_module._decoded_image
    cached.cache_clear()
    if not encodings:
        demo_adapter_module._decoded_image = cached.__wrapped__
    try:
        start, cpu_start = time.perf_counter(), time.process_time()
        cpu_mark[0] = cpu_start
        run.report = model_report_run(counting, items, options=options, slices=slices, on_stage=on_stage)
        run.wall = time.perf_counter() - start
        run.cpu = time.process_time() - cpu_start
    finally:
        demo_adapter_module._decoded_image = cached
    return run


def format_table(runs: Sequence[Run]) -> str:
    """Markdown: per stage and run, wall seconds, CPU seconds of this process, passes, floor."""
    lines = [
        "| stage | run | seconds | CPU s | head rows | encoder rows | fuse rows | floor (s) |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for stage in STAGES:
        for run in runs:
            row = run.stages.get(stage)
            if row is None:
                continue
            p = row.passes
            lines.append(
                f"| {stage} | {run.name.split()[0]} | {row.seconds:.1f} | {row.cpu:.1f} | {p.head:,} | {p.encode:,} | "
                f"{p.fuse:,} | {row.floor:.1f} |"
            )
    for run in runs:
        stages = sum(r.seconds for r in run.stages.values())
        cpu = sum(r.cpu for r in run.stages.values())
        floor = sum(r.floor for r in run.stages.values())
        lines.append(
            f"| **all stages** | {run.name.split()[0]} | **{stages:.1f}** | {cpu:.1f} | | | | {floor:.1f} |"
            f"  (report call {run.wall:.1f} s wall, {run.cpu:.1f} s CPU, assembling included)"
        )
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--items", type=int, default=320, help="demo items (generate_dataset seed 0; default 320)")
    parser.add_argument("--checkpoints", default="all", help="'all', names, or 'none' (default: all)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument(
        "--runs", default="before,after", help="which runs, in order: before, after (default: before,after)"
    )
    parser.add_argument("--pass-batch-sizes", default="16,64,256,1024", help="row counts for the per-sample times")
    parser.add_argument("--cache-dir", default=None, help="demo model cache (default: MMEVAL_CACHE_DIR or ~/.cache)")
    parser.add_argument("--json", default=None, help="also write the measurements to this file")


def run_from_options(options: Mapping[str, Any], *, out: TextIO) -> list[Run]:
    threads = int(options.get("threads") or 1)
    if threads < 1:
        raise ValueError("--threads must be at least 1")
    torch.set_num_threads(threads)
    wanted = [w.strip() for w in str(options.get("runs") or "before,after").split(",") if w.strip()]
    if not wanted or any(w not in ("before", "after") for w in wanted):
        raise ValueError("--runs: give before, after or both")
    checkpoints = str(options.get("checkpoints") or "none")
    names = None if checkpoints == "none" else [c.strip() for c in checkpoints.split(",") if c.strip()]
    n_items = int(options.get("items") or 320)
    if n_items < 2:
        raise ValueError("--items must be at least 2")
    cache = options.get("cache_dir") or os.environ.get("MMEVAL_CACHE_DIR")
    adapter = _load(Path(cache) if cache else None)
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as folder:
        items = demo_items(Path(folder), n_items)
        sizes = [int(s) for s in str(options.get("pass_batch_sizes") or "16,64,256,1024").split(",")]
        times = per_sample_times(adapter, items, batch_sizes=sizes)
        encode_items(adapter, items[:2])  # warm up
        report_options = ReportOptions(checkpoints=names)
        runs = [run_report(adapter, items, encodings=w == "after", options=report_options, times=times) for w in wanted]
    load_after = os.getloadavg()
    out.write(
        f"Model report of the demo on {n_items} items (seed 0), checkpoints: {checkpoints}; {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} CPUs, torch {torch.__version__}, {threads} thread(s); load average "
        f"{load_before[0]:.2f} before, {load_after[0]:.2f} after (1 min)\n"
        f"per-sample best: head {times['head'] * 1e3:.3f} ms, encoders {times['encode'] * 1e3:.3f} ms, "
        f"fuse {times['fuse'] * 1e3:.3f} ms\n\n"
    )
    out.write(format_table(runs) + "\n")
    if len(runs) == 2:
        largest, other = report_differences(runs[0].report, runs[1].report)
        out.write(
            f"\nlargest difference between the two reports: {largest:.3g}; other differing values: {other or 'none'}\n"
        )
    if options.get("json"):
        payload = {
            "load_average": [load_before, load_after],
            "per_sample": times,
            "runs": {
                r.name: {
                    "wall": r.wall,
                    "cpu": r.cpu,
                    "stages": {k: [v.seconds, v.cpu, vars(v.passes), v.floor] for k, v in r.stages.items()},
                }
                for r in runs
            },
        }
        Path(options["json"]).write_text(json.dumps(payload, indent=1))
    return runs


def main(argv: Sequence[str] | None = None) -> None:
    import sys

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        run_from_options(vars(args), out=sys.stdout)
    except ValueError as exc:
        parser.error(str(exc))


if __name__ == "__main__":
    main()
