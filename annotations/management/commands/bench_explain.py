"""``manage.py bench_explain``: the engine throughput benchmark (see :mod:`benchmarks.explain`).

A thin wrapper: the options and the work are ``benchmarks.explain``'s, the same as
``python -m benchmarks.explain``. Touches no database.
"""

from __future__ import annotations

import sys

from django.core.management.base import BaseCommand, CommandError

from annotations.management.cli import os_error_text


class Command(BaseCommand):
    help = (
        "Benchmark the explanation methods on a model adapter (default: the demo adapter): "
        "items/s, ratio to each method's measured floor, speedup over one-item-at-a-time "
        "baselines."
    )

    def add_arguments(self, parser):
        from benchmarks.explain import add_arguments

        add_arguments(parser)

    def handle(self, *args, **options):
        from benchmarks.explain import run_from_options
        from workers.engine.adapter import AdapterError

        if options.get("json"):
            try:  # a bad --json fails now, not after the benchmark
                with open(options["json"], "a", encoding="utf-8"):
                    pass
            except OSError as exc:
                raise CommandError(f"--json {options['json']}: cannot write there ({os_error_text(exc)})") from None
        try:
            run_from_options(options, out=self.stdout, err=getattr(self.stderr, "_out", sys.stderr))
        except (ValueError, AdapterError) as exc:
            raise CommandError(str(exc)) from None
