"""Create, precompute and launch a study from a spec file (the web form's fields; see
annotations/services/spec.py for the format)."""

from __future__ import annotations

import time
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.urls import reverse
from tqdm import tqdm

from annotations.management.cli import owner_find, traceback_or_hint
from annotations.models import PrecomputeJob, Study
from annotations.selectors.precompute import job_progress
from annotations.services.precompute import precompute_job_create, precompute_start
from annotations.services.spec import SpecError, study_spec_load, study_spec_parse
from annotations.services.studies import StudyError, study_create_from_spec, study_launch


class Command(BaseCommand):
    help = "Create a study from a YAML/JSON spec, precompute it and launch it."

    def add_arguments(self, parser):
        parser.add_argument("spec", type=Path, help="the spec file (.yaml, .yml or .json)")
        parser.add_argument("--owner", help="the researcher's username (needed when there are several users)")
        parser.add_argument(
            "--via-task", action="store_true", help="precompute on the Celery workers (default: in this process)"
        )
        parser.add_argument("--no-launch", action="store_true", help="stop after precompute (to preview first)")
        parser.add_argument("--check", action="store_true", help="only check the spec; create nothing")
        parser.add_argument("--timeout", type=int, default=6 * 3600, help="seconds to wait for the workers")

    def handle(self, *args, spec: Path, owner, via_task, no_launch, check, timeout, **options):
        spec = Path(spec)
        if not spec.is_file():
            raise CommandError(f"{spec}: {'is a folder, not a spec file' if spec.is_dir() else 'no such file'}")
        user = owner_find(owner)
        try:
            parsed = study_spec_parse(data=study_spec_load(path=spec), owner=user)
        except SpecError as exc:
            message = str(exc).split(": ", 1)[-1]
            where = "" if exc.field == "file" else f"field {exc.field}: "
            raise CommandError(f"{spec}: {where}{message}") from None
        if check:
            self.stdout.write(self.style.SUCCESS(f"{spec} is a valid study spec ({len(parsed.conditions)} arms)."))
            return
        try:
            study = study_create_from_spec(owner=user, spec=parsed)
        except StudyError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(f"Created study {study.pk} '{study.name}' ({study.public_id}).")

        if via_task:
            job = self._wait_for_workers(study, timeout)
        else:
            job = precompute_job_create(study=study)
            self._precompute_here(job)
        job.refresh_from_db()
        if job.status != PrecomputeJob.Status.DONE:
            # One line: the error itself; the traceback at -v 2 and on the study page.
            error = next((line.strip() for line in reversed((job.error or "").splitlines()) if line.strip()), "")
            page = f"{settings.SITE_URL}{reverse('study-detail', args=[study.pk])}"
            hint = traceback_or_hint(options=options, stderr=self.stderr, text=job.error or "")
            raise CommandError(
                f"precompute failed, the study stays a draft: {error or 'no error recorded'} "
                f"(the full traceback is on the study page, {page}{'; ' + hint.strip(' ()') if hint else ''})"
            )
        if no_launch:
            self.stdout.write(self.style.SUCCESS("Precompute done; preview and launch it from the study page."))
        else:
            try:
                study = study_launch(study=Study.objects.get(pk=study.pk))
            except StudyError as exc:
                raise CommandError(str(exc)) from None
            self.stdout.write(self.style.SUCCESS("The study is live."))
        site = settings.SITE_URL
        self.stdout.write(f"  Participant link: {site}{reverse('participant-entry', args=[study.public_id])}")
        self.stdout.write(
            f"  Prolific: append ?PROLIFIC_PID={{{{%PROLIFIC_PID%}}}}&STUDY_ID={{{{%STUDY_ID%}}}}"
            f"&SESSION_ID={{{{%SESSION_ID%}}}}; codes: completed {study.completion_code}, "
            f"screened out {study.screened_out_code}, partial (time ran out after some answers) {study.partial_code}"
        )
        self.stdout.write(f"  Researcher page:  {site}{reverse('study-detail', args=[study.pk])}")

    def _precompute_here(self, job: PrecomputeJob) -> None:
        from workers.pipeline import precompute_run

        with tqdm(total=0, desc="Precompute", unit="item", disable=None) as bar:

            def progress(done: int, total: int) -> None:
                bar.total, bar.n = total, done
                bar.refresh()

            precompute_run(job_id=job.pk, on_progress=progress)

    def _wait_for_workers(self, study: Study, timeout: int) -> PrecomputeJob:
        job = precompute_start(study=study)
        if job.dispatch_error:
            self.stderr.write(job.dispatch_error)
        deadline = time.monotonic() + timeout
        with tqdm(total=0, desc="Precompute (workers)", unit="item", disable=None) as bar:
            while time.monotonic() < deadline:
                job.refresh_from_db()
                progress = job_progress(job=job)
                bar.total, bar.n = progress["total"], progress["done"]
                bar.refresh()
                if job.status in (PrecomputeJob.Status.DONE, PrecomputeJob.Status.FAILED):
                    return job
                time.sleep(1)
        raise CommandError(
            f"precompute did not finish in {timeout} s; the job is still {job.status} "
            "(the workers carry on; watch the study page)"
        )
