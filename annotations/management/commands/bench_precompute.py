"""``manage.py bench_precompute``: one study's precompute by 1, 2, … Celery worker processes.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/mmeval_bench \\
    CELERY_BROKER_URL=redis://127.0.0.1:6379/9 \\
        python manage.py bench_precompute --items 200 --pool 40 --workers 1 2

A thin wrapper: the runs and the table are :mod:`benchmarks.precompute`'s.
"""

from __future__ import annotations

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from benchmarks.precompute import PrecomputeBenchError, format_table, run_precompute_benchmark


class Command(BaseCommand):
    help = "Time one study's precompute with 1, 2, … Celery worker processes (Postgres + Redis)."

    def add_arguments(self, parser):
        parser.add_argument("--items", type=int, default=200, help="items in the dataset (all get predictions)")
        parser.add_argument("--pool", type=int, default=40, help="test items explained (for 4 candidates each)")
        parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
        parser.add_argument("--batch-size", type=int, default=16, help="(item, target) rows per chunk")
        parser.add_argument("--timeout", type=int, default=1800, help="seconds per run, at most")

    def handle(self, *args, items, pool, workers, batch_size, timeout, **options):
        if settings.CELERY_TASK_ALWAYS_EAGER or settings.DATABASES["default"]["ENGINE"].endswith("sqlite3"):
            raise CommandError("bench_precompute needs Postgres (DATABASE_URL) and a broker (CELERY_BROKER_URL)")
        if min(workers) < 1 or items < pool or pool < 2:
            raise CommandError("--workers must be >= 1 and --items >= --pool >= 2")
        try:
            rows = run_precompute_benchmark(
                items=items, pool=pool, workers=workers, batch_size=batch_size, timeout=timeout
            )
        except PrecomputeBenchError as exc:
            raise CommandError(str(exc)) from None
        for line in format_table(rows, items=items, pool=pool, batch_size=batch_size):
            self.stdout.write(line)
