"""Load-test the participant pages of a running server (see ``benchmarks.loadtest``).

    python manage.py loadtest --setup                     # the study to load, on DATABASE_URL
    python manage.py loadtest --url http://127.0.0.1:8000 --study <public id> \\
        --participants 200 --think 0 --duration 60

Prints, per route, the requests, req/s, p50/p95/p99/max latency in ms and the errors by
status, then the totals, the completed walks and the requests per walk; with
``--server-pid PID [--database NAME]`` also the CPU the server's processes (and that
database's Postgres backends) used, per request and per walk; ``--server-pid`` may be given
once per gunicorn instance (two instances behind one port: their CPU is added). The load
generator's own CPU is printed too: it shares the machine. Only a server on this machine can
be loaded.
"""

from __future__ import annotations

import asyncio
import json
import tempfile
import time
from pathlib import Path

from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError

from benchmarks.loadtest import floor_table, loopback_address, run_load, server_cpu_s

MAX_PARTICIPANTS = 5000
MAX_DURATION_S = 3600
LOAD_STUDY_PREFIX = "Load test"


class Command(BaseCommand):
    help = "Run simulated participants against a running server and print latency per route."

    def add_arguments(self, parser):
        parser.add_argument("--url", default="http://127.0.0.1:8000", help="the server (loopback only)")
        parser.add_argument("--study", help="public ID of a live study (make one with --setup)")
        parser.add_argument("--participants", type=int, default=200, help="simulated participants at once")
        parser.add_argument(
            "--think",
            type=float,
            default=0.0,
            help="seconds of thinking per page, on average (each draw is 0.5x to 1.5x)",
        )
        parser.add_argument("--duration", type=float, default=60.0, help="seconds; walks still running are cut")
        parser.add_argument("--ramp", type=float, default=0.0, help="seconds over which participants arrive")
        parser.add_argument(
            "--walks-per-participant",
            type=int,
            default=None,
            help="stop each participant after this many walks (default: walk again until --duration)",
        )
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument("--timeout", type=float, default=30.0, help="seconds per request")
        parser.add_argument("--json", help="also write the numbers to this file")
        parser.add_argument(
            "--server-pid",
            type=int,
            action="append",
            dest="server_pids",
            help="a gunicorn master's PID (once per instance): also print the CPU its processes used, "
            "per request and per walk",
        )
        parser.add_argument(
            "--database",
            default="",
            help="with --server-pid: also count the CPU of this database's Postgres backends",
        )
        parser.add_argument(
            "--floor",
            action="store_true",
            help="instead of participants: routes that do no work, asked back to back by 16 clients for "
            "--duration seconds each; with --server-pid, the server's CPU per request (Django's floor here)",
        )
        parser.add_argument(
            "--setup",
            action="store_true",
            help="build the demo (manage.py demo --no-serve) and a live copy of its study with "
            "room for many participants, on the configured database; print its public ID",
        )
        parser.add_argument(
            "--raters",
            type=int,
            default=100,
            help="with --setup: raters per item and arm (room for 4 x raters walks per arm)",
        )

    def handle(
        self,
        *args,
        url,
        study,
        participants,
        think,
        duration,
        ramp,
        seed,
        timeout,
        setup,
        raters,
        server_pids,
        **options,
    ):
        if setup:
            self.stdout.write(self._setup(raters=raters))
            return
        try:
            loopback_address(url)
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        if options.get("floor"):
            self._floor(url=url, duration=duration, server_pids=server_pids or [])
            return
        if not study:
            raise CommandError("--study is required (make a study with --setup)")
        if not 1 <= participants <= MAX_PARTICIPANTS:
            raise CommandError(f"--participants must be from 1 to {MAX_PARTICIPANTS}")
        if not 0 < duration <= MAX_DURATION_S:
            raise CommandError(f"--duration must be above 0 and at most {MAX_DURATION_S} seconds")
        if options.get("walks_per_participant") is not None and options["walks_per_participant"] < 1:
            raise CommandError("--walks-per-participant must be at least 1")
        if think < 0 or ramp < 0 or timeout <= 0:
            raise CommandError("--think and --ramp must be at least 0, --timeout above 0")
        database = options.get("database", "")
        server_pids = server_pids or []
        cpu_before = server_cpu_s(server_pids=server_pids, database=database) if server_pids else {}
        generator_before = time.process_time()
        report = asyncio.run(
            run_load(
                url=url,
                study=study,
                participants=participants,
                duration_s=duration,
                think_s=think,
                ramp_s=ramp,
                seed=seed,
                timeout_s=timeout,
                walks_per_participant=options.get("walks_per_participant"),
            )
        )
        self.stdout.write(report.table())
        cpu = {}
        if server_pids:
            after = server_cpu_s(server_pids=server_pids, database=database)
            cpu = {name: after[name] - cpu_before[name] for name in after}
            cpu["load generator"] = time.process_time() - generator_before
            for name, seconds in cpu.items():
                per_request = 1000 * seconds / max(report.total_requests, 1)
                self.stdout.write(
                    f"{name} CPU {seconds:.1f} s: {per_request:.2f} ms per request, "
                    f"{per_request * report.requests_per_walk:.0f} ms per completed walk"
                )
        for problem in report.problems[:10]:
            self.stderr.write(f"  {problem}")
        if options.get("json"):
            Path(options["json"]).write_text(json.dumps({**report.summary(), "cpu_s": cpu}, indent=2))

    def _floor(self, *, url: str, duration: float, server_pids: list[int]) -> None:
        if not 0 < duration <= MAX_DURATION_S:
            raise CommandError(f"--duration must be above 0 and at most {MAX_DURATION_S} seconds")
        try:
            self.stdout.write(floor_table(url=url, duration_s=duration, server_pids=server_pids))
        except (OSError, RuntimeError, TimeoutError) as exc:
            raise CommandError(f"the floor run failed: {exc}") from None

    def _setup(self, *, raters: int) -> str:
        """A fresh live copy of the demo's design on the demo's dataset and model, with
        ``raters`` raters per item so that a load test does not fill it up. Fresh each time:
        walks cut at the end of a run keep their leases (and slots) for the study's time
        limit. Built through ``launch_study``, so precompute finds the demo's explanations
        stored and only checks them."""
        from annotations.management.commands.demo import DEMO_STUDY
        from annotations.models import Study

        if raters < 1:
            raise CommandError("--raters must be at least 1")
        call_command("demo", no_serve=True, stdout=self.stderr)
        demo = Study.objects.get(name=DEMO_STUDY)
        number = Study.objects.filter(owner=demo.owner, name__startswith=LOAD_STUDY_PREFIX).count() + 1
        name = f"{LOAD_STUDY_PREFIX} {number}: the demo design, {raters} raters per item"
        spec = {
            "name": name,
            "dataset": demo.dataset.name,
            "model": demo.model.name,
            "seed": demo.seed,
            "arms": [{"name": c.name, "views": list(c.views)} for c in demo.conditions.order_by("id")],
            "items": {
                "n": demo.study_items.filter(role="test").count(),
                "per_participant": demo.items_per_participant,
                "raters_per_item": raters,
            },
            "candidates": {"mode": "top_k", "k": demo.n_candidates, "distractors": demo.n_distractors}
            if demo.n_candidates
            else {"mode": "all"},
            "phases": {"learning_items": demo.learning_items, "pretest": demo.pretest, "survey": demo.survey},
            "quality": {
                "attention_checks": demo.attention_checks,
                "min_rt_ms": demo.min_rt_ms,
                "exclusion_rules": demo.exclusion_rules,
            },
        }
        with tempfile.TemporaryDirectory() as directory:
            path = Path(directory) / "loadtest-study.json"
            path.write_text(json.dumps(spec))
            call_command("launch_study", str(path), owner=demo.owner.get_username(), stdout=self.stderr)
        study = Study.objects.get(owner=demo.owner, name=name)
        self.stderr.write(f"Load-test study {study.name!r} is {study.status}; its public ID:")
        return study.public_id
