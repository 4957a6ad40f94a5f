"""Cost of the automatic explanation metrics (deletion/insertion, infidelity, sensitivity-max)
per item, on the bundled demo adapter and data: CPU, one thread. No Django.

    python -m benchmarks.metrics --items 8
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import torch

from workers.engine.attribution import attribute, prepare_batch
from workers.engine.dataset import read_dataset_jsonl
from workers.engine.demo.data import generate_dataset
from workers.engine.metrics import deletion_insertion, infidelity, sensitivity
from workers.engine.registry import load_adapter

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m benchmarks.metrics [--items N] [--methods a,b]``: time each metric per item
    on the bundled demo adapter and demo data (CPU, one thread)."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--items", type=int, default=8)
    parser.add_argument("--methods", default="integrated_gradients,saliency")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    folder = Path(tempfile.mkdtemp())
    items = [line.item for line in read_dataset_jsonl(generate_dataset(folder, n_items=args.items, seed=0))]
    adapter = load_adapter("workers.engine.demo.adapter:DemoAdapter")
    batch = adapter.encode(items)
    p = prepare_batch(adapter, batch)
    groups = sorted({sum(len(ids) for ids in row) for row in p.group_ids})
    print(f"demo adapter, {p.size} items, {groups} feature groups per item, 1 thread")
    for method in args.methods.split(","):
        attrs = attribute(adapter, batch, method=method, targets=0, prepared=p)
        for name, run in (
            ("deletion_insertion", lambda: deletion_insertion(p, attrs)),
            ("infidelity (16)", lambda: infidelity(p, attrs, n_perturb_samples=16)),
            ("sensitivity_max (5)", lambda: sensitivity(p, attrs, n_perturb_samples=5)),
        ):
            start = time.perf_counter()
            run()
            print(f"{method:22s} {name:20s} {(time.perf_counter() - start) / p.size * 1000:8.1f} ms/item")


if __name__ == "__main__":
    main()
