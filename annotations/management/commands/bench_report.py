"""``manage.py bench_report``: the model report per stage, without and with the adapter's
per-modality encodings (see :mod:`benchmarks.report`).

A thin wrapper: the options and the work are ``benchmarks.report``'s, the same as
``python -m benchmarks.report``. Touches no database.
"""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError


class Command(BaseCommand):
    help = (
        "The demo's model report per stage (seconds, passes, floor), with the head on every pairing "
        "and with per-modality encodings, in one process."
    )

    def add_arguments(self, parser):
        from benchmarks.report import add_arguments

        add_arguments(parser)

    def handle(self, *args, **options):
        from benchmarks.report import run_from_options

        try:
            run_from_options(options, out=self.stdout)
        except ValueError as exc:
            raise CommandError(str(exc)) from None
