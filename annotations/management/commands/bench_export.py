"""``manage.py bench_export``: time the streamed CSV export on a large synthetic study (PostgreSQL only).

    python manage.py bench_export --rows 1000000

A thin wrapper: generating the study, the timed export and the rollback are
:mod:`benchmarks.export`'s. Run it against a database of its own (``DATABASE_URL=…/mmeval_bench``,
migrated) so a 1M-row transaction does not slow anyone else down.
"""

from __future__ import annotations

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from django.db import connection

from annotations.management.cli import os_error_text
from benchmarks.export import format_report, run_export_benchmark


class Command(BaseCommand):
    help = "Time the streamed responses export on N synthetic responses (rows/s, peak RSS); rolled back."
    # No system checks: they import the URLconf, whose views pull in torch (~190 MB) that an
    # export never uses; the web process pays that once at start-up (see docs).
    requires_system_checks: list[str] = []

    def add_arguments(self, parser):
        parser.add_argument("--rows", type=int, default=1_000_000, help="responses to generate (default 1,000,000)")
        parser.add_argument("--items-per-participant", type=int, default=50)
        parser.add_argument("--out", type=Path, default=Path("/dev/null"), help="where the CSV goes")
        parser.add_argument("--keep", action="store_true", help="commit the synthetic study instead of rolling back")
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument("--profile", action="store_true", help="print a cProfile of one extra export first")
        parser.add_argument(
            "--compare",
            action="store_true",
            help="also time the Python path, the COPY path and a raw COPY of the same join",
        )
        parser.add_argument(
            "--study", type=int, default=None, help="export this (earlier --keep) study instead of generating one"
        )

    def handle(
        self,
        *args,
        rows: int,
        items_per_participant: int,
        out: Path,
        keep: bool,
        seed: int,
        profile: bool = False,
        study: int | None = None,
        compare: bool = False,
        **options,
    ):
        if connection.vendor != "postgresql":
            raise CommandError("bench_export needs PostgreSQL (COPY, server-side cursors); set DATABASE_URL")
        if rows < 1 or items_per_participant < 1:
            raise CommandError("--rows and --items-per-participant must be positive")
        try:  # a bad --out fails now, not after generating a million rows ("a": /dev/null stays usable)
            with open(out, "a", encoding="utf-8"):
                pass
        except OSError as exc:
            raise CommandError(f"--out {out}: cannot write there ({os_error_text(exc)})") from None
        report = run_export_benchmark(
            rows=rows,
            items_per_participant=items_per_participant,
            out=out,
            keep=keep,
            seed=seed,
            study_id=study,
            profile=self.stdout if profile else None,
            compare=compare,
        )
        for line in format_report(report):
            self.stdout.write(line)
