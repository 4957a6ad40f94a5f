"""Benchmark precompute fan-out: the same study precomputed by 1, 2, … worker processes.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/mmeval_bench \\
    CELERY_BROKER_URL=redis://127.0.0.1:6379/9 \\
        python manage.py bench_precompute --items 200 --pool 40 --workers 1 2

For each worker count, a fresh registration of the demo model (so nothing stored is reused)
and a study over a ``--items`` demo dataset are precomputed by that many ``celery worker``
processes (solo pool, ``MMEVAL_TORCH_THREADS=1``: single-threaded, as one GPU per process in
production) on a queue of their own. The wall time runs from "start" to the job's finish.
The table: workers, seconds, speed-up over one worker, and chunks taken per worker.

Django-side (it measures the services, the broker and the workers); the command is a thin
wrapper that checks its options and prints the table.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from tqdm import tqdm

from annotations.models import Dataset, PrecomputeChunk, PrecomputeJob
from annotations.selectors.precompute import job_progress
from annotations.services.datasets import dataset_import
from annotations.services.precompute import precompute_start
from annotations.services.registry import registered_model_create
from annotations.services.studies import ConditionSpec, study_create
from workers.engine.demo.data import generate_dataset

__all__ = ["PrecomputeBenchError", "format_table", "run_precompute_benchmark"]

DEMO_ADAPTER = "workers.engine.demo.adapter:DemoAdapter"
REPO = Path(__file__).resolve().parents[1]

#: One result row: worker processes, seconds from start to finish, chunks per worker (descending).
Row = tuple[int, float, list[int]]


class PrecomputeBenchError(RuntimeError):
    """A run could not finish: a worker did not start, the time ran out, or precompute failed."""


def run_precompute_benchmark(*, items: int, pool: int, workers: list[int], batch_size: int, timeout: int) -> list[Row]:
    """Precompute one fresh study per entry of ``workers`` with that many worker processes.

    Args:
        items: items in the demo dataset (all get predictions).
        pool: test items explained (for 4 candidates each).
        workers: worker counts, one run each, in order.
        batch_size: (item, target) rows per chunk.
        timeout: seconds per run, at most.

    Returns:
        list: one :data:`Row` per run.

    Raises:
        PrecomputeBenchError: a run could not finish.
    """
    settings.MMEVAL_PRECOMPUTE_BATCH_SIZE = batch_size
    owner, _ = get_user_model().objects.get_or_create(username="bench-precompute")
    dataset = _dataset(owner, items)
    rows = []
    for n in workers:
        seconds, per_worker = _run(owner, dataset, n=n, pool=pool, timeout=timeout)
        rows.append((n, seconds, per_worker))
    return rows


def format_table(rows: list[Row], *, items: int, pool: int, batch_size: int) -> list[str]:
    """The lines of the table (the first one starts with a blank line)."""
    single = next((s for n, s, _ in rows if n == 1), None)
    lines = [
        f"\nPrecompute of {items} items (predictions) + {pool} test items x 4 candidates "
        f"(IG + metrics), {batch_size} rows per chunk, torch threads 1 per worker\n",
        f"{'workers':>7} | {'seconds':>8} | {'vs 1 worker':>11} | chunks per worker",
        f"{'-' * 7}-|-{'-' * 8}-|-{'-' * 11}-|-{'-' * 18}",
    ]
    for n, seconds, per_worker in rows:
        ratio = f"{seconds / single:.2f}x" if single else "-"
        lines.append(f"{n:>7} | {seconds:>8.1f} | {ratio:>11} | {' '.join(map(str, per_worker))}")
    return lines


def _dataset(owner, items: int) -> Dataset:
    name = f"bench-shapes-{items}"
    existing = Dataset.objects.filter(owner=owner, name=name).first()
    if existing:
        return existing
    jsonl = generate_dataset(Path(settings.MEDIA_ROOT) / "bench-source" / name, n_items=items, seed=0)
    return dataset_import(owner=owner, name=name, jsonl_path=jsonl)


def _run(owner, dataset: Dataset, *, n: int, pool: int, timeout: int) -> tuple[float, list[int]]:
    run = uuid.uuid4().hex[:8]
    model = registered_model_create(owner=owner, name=f"bench-{run}", adapter_path=DEMO_ADAPTER, check_dataset=dataset)
    study = study_create(
        owner=owner,
        name=f"bench-{run}",
        dataset=dataset,
        model=model,
        seed=1,
        conditions=[ConditionSpec(name="baseline"), ConditionSpec(name="ig", views=["heatmap", "tokens"])],
        n_items=pool,
        items_per_participant=min(10, pool),
        raters_per_item=1,
    )
    queue = f"bench-{run}"
    settings.CELERY_GPU_QUEUE = queue
    processes = [_worker(queue, f"bench-{run}-{k}") for k in range(n)]
    try:
        job = precompute_start(study=study)
        deadline = time.monotonic() + timeout
        with tqdm(total=0, desc=f"{n} worker(s)", unit="item") as bar:
            while job.status not in (PrecomputeJob.Status.DONE, PrecomputeJob.Status.FAILED):
                if time.monotonic() > deadline:
                    raise PrecomputeBenchError(f"the run with {n} worker(s) took longer than {timeout} s")
                time.sleep(0.5)
                job.refresh_from_db()
                progress = job_progress(job=job)
                bar.total, bar.n = progress["total"], progress["done"]
                bar.refresh()
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(timeout=60)
    if job.status != PrecomputeJob.Status.DONE:
        raise PrecomputeBenchError(f"precompute failed:\n{job.error}")
    seconds = (job.finished_at - job.created_at).total_seconds()
    chunks = PrecomputeChunk.objects.filter(job=job)
    per_worker = sorted((chunks.filter(worker__startswith=f"bench-{run}-{k}@").count() for k in range(n)), reverse=True)
    return seconds, per_worker


def _worker(queue: str, name: str) -> subprocess.Popen:
    from mmeval.celery import app

    env = {**os.environ, "MMEVAL_TORCH_THREADS": "1", "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    log = open(Path(settings.MEDIA_ROOT) / f"{name}.log", "wb")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "mmeval",
            "worker",
            "-Q",
            queue,
            "--pool",
            "solo",
            "-n",
            f"{name}@%h",
            "--without-gossip",
            "--without-mingle",
            "--loglevel",
            "WARNING",
        ],
        cwd=REPO,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    hostname = f"{name}@{os.uname().nodename}"
    for _ in range(120):
        if process.poll() is not None:
            raise PrecomputeBenchError(f"worker {name} exited; see {log.name}")
        if app.control.ping(destination=[hostname], timeout=1.0):
            return process
    process.kill()
    raise PrecomputeBenchError(f"worker {name} did not answer a ping")
