"""``manage.py bench_gpu``: precompute's engine work and the model report on the demo, on CPU
and on CUDA in the same run (see :mod:`benchmarks.gpu`).

A thin wrapper: the options and the work are ``benchmarks.gpu``'s, the same as
``python -m benchmarks.gpu``. Touches no database.
"""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError


class Command(BaseCommand):
    help = (
        "Time precompute's engine calls and the model report of the demo on CPU and CUDA (when "
        "available) in one run: seconds per stage, the CPU/CUDA ratio and the largest differences."
    )

    def add_arguments(self, parser):
        from benchmarks.gpu import add_arguments

        add_arguments(parser)

    def handle(self, *args, **options):
        from benchmarks.gpu import run_from_options

        try:
            run_from_options(options, out=self.stdout)
        except ValueError as exc:
            raise CommandError(str(exc)) from None
