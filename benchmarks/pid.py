"""Seconds per partial information decomposition (workers/engine/pid.py): one convex program
on the cluster codes of ``N`` items, ``K`` clusters per modality and ``C`` classes, and the
k-means discretisation of ``N`` embeddings. The model report solves ``2 * (pid_resamples + 1)``
programs (docs/MODEL_REPORT.md). No Django.

Codes are drawn as the demo's are spread: ``y`` depends on both modalities' clusters plus noise,
so every cell of a class may be used.

    python -m benchmarks.pid --items 320 --clusters 8 16 --classes 10 --repeats 20
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from collections.abc import Sequence

import numpy as np

from workers.engine.pid import discretise, pid_from_samples


def _codes(n: int, k: int, c: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x1, x2 = rng.integers(0, k, n), rng.integers(0, k, n)
    y = (x1 * 3 + x2 * 7 + rng.integers(0, 3, n)) % c
    return x1, x2, y


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, nargs="+", default=[320])
    parser.add_argument("--clusters", type=int, nargs="+", default=[8, 16])
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--width", type=int, default=4096, help="embedding width for the k-means timing")
    args = parser.parse_args(argv)
    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}")
    print("| items | K | classes | cells used (median) | s per program (median) | s per k-means of N x width |")
    print("|---:|---:|---:|---:|---:|---:|")
    for n in args.items:
        for k in args.clusters:
            times, cells = [], []
            for r in range(args.repeats):
                x1, x2, y = _codes(n, k, args.classes, seed=r)
                started = time.perf_counter()
                pid_from_samples(x1, x2, y)
                times.append(time.perf_counter() - started)
                p1y = np.zeros((k, args.classes))
                p2y = np.zeros((k, args.classes))
                np.add.at(p1y, (x1, y), 1)
                np.add.at(p2y, (x2, y), 1)
                cells.append(int(((p1y[:, None, :] > 0) & (p2y[None, :, :] > 0)).sum()))
            embedding = np.random.default_rng(0).normal(size=(n, args.width)).astype(np.float32)
            started = time.perf_counter()
            discretise(embedding, k=k, seed=0)
            clustering = time.perf_counter() - started
            print(
                f"| {n} | {k} | {args.classes} | {int(np.median(cells))} | {np.median(times):.3f} | {clustering:.2f} |"
            )


if __name__ == "__main__":
    main()
