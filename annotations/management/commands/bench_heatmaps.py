"""``manage.py bench_heatmaps``: how much of each heatmap is visibly coloured, with the colour
scale set by the maximum and by the 98th percentile (see :mod:`benchmarks.heatmaps`).

A thin wrapper: the options and the work are ``benchmarks.heatmaps``'s, the same as
``python -m benchmarks.heatmaps``. Touches no database.
"""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError


class Command(BaseCommand):
    help = (
        "Share of visibly coloured pixels per heatmap on the demo (quartiles), colour scale by the "
        "maximum and by the 98th percentile of |attribution|."
    )

    def add_arguments(self, parser):
        from benchmarks.heatmaps import add_arguments

        add_arguments(parser)

    def handle(self, *args, **options):
        from benchmarks.heatmaps import run_from_options

        try:
            run_from_options(options, out=self.stdout)
        except ValueError as exc:
            raise CommandError(str(exc)) from None
