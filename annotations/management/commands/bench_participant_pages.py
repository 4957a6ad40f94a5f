"""``manage.py bench_participant_pages``: one participant walk's requests, CPU and bytes per route.

    python manage.py bench_participant_pages --study <public id> --walks 6

A thin wrapper around :mod:`benchmarks.participant_pages`; the study comes from
``manage.py loadtest --setup``. Lift the participant entry limits for it as the load test does
(every walk enters from one address).
"""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from benchmarks.participant_pages import walk_costs

MAX_WALKS = 200


class Command(BaseCommand):
    help = "Walk N participants through a live study in process; print requests, CPU and bytes per route."

    def add_arguments(self, parser):
        parser.add_argument("--study", required=True, help="public ID of a live study (loadtest --setup makes one)")
        parser.add_argument("--walks", type=int, default=6, help=f"participants, one after another (1 to {MAX_WALKS})")
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument(
            "--warmup", type=int, default=1, help="walks first, not counted (first imports and caches; 0 to 10)"
        )

    def handle(self, *args, study, walks, seed, warmup, **options):
        if not 1 <= walks <= MAX_WALKS:
            raise CommandError(f"--walks must be from 1 to {MAX_WALKS}")
        if not 0 <= warmup <= 10:
            raise CommandError("--warmup must be from 0 to 10")
        try:
            costs = walk_costs(study=study, walks=walks, seed=seed, warmup=warmup)
        except RuntimeError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(costs.table())
