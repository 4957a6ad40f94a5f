"""``manage.py bench_dashboard``: time the dashboard request on a large synthetic study
(PostgreSQL only); rolled back. A thin wrapper over :mod:`benchmarks.dashboard`."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError
from django.db import connection

from benchmarks.dashboard import run_dashboard_benchmark
from benchmarks.export import format_report


class Command(BaseCommand):
    help = "Time the dashboard page on N synthetic responses, with a stored background result; rolled back."

    def add_arguments(self, parser):
        parser.add_argument("--rows", type=int, default=100_000, help="responses to generate (default 100,000)")
        parser.add_argument("--items-per-participant", type=int, default=50)
        parser.add_argument("--requests", type=int, default=20, help="timed dashboard requests (default 20)")
        parser.add_argument("--resamples", type=int, default=50, help="bootstrap resamples and permutations")
        parser.add_argument("--sample-rows", type=int, default=1000, help="responses of the sample analysed")
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument("--profile", action="store_true", help="print a cProfile of one request first")

    def handle(
        self, *args, rows, items_per_participant, requests, resamples, sample_rows, seed, profile=False, **options
    ):
        if connection.vendor != "postgresql":
            raise CommandError("bench_dashboard needs PostgreSQL (COPY); set DATABASE_URL")
        if min(rows, items_per_participant, requests, resamples, sample_rows) < 1:
            raise CommandError("every count must be positive")
        report = run_dashboard_benchmark(
            rows=rows,
            items_per_participant=items_per_participant,
            requests=requests,
            resamples=resamples,
            sample_rows=sample_rows,
            profile=profile,
            seed=seed,
        )
        for line in format_report(report):
            self.stdout.write(line)
