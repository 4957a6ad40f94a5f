import contextlib
import sys
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from annotations.management.cli import out_file_write
from annotations.models import Study
from annotations.selectors.exports import (
    EXPORTS,
    report_summary_csv_lines,
    study_codebook_csv_lines,
    study_items_csv_lines,
    study_participants_csv_lines,
    study_responses_csv_lines,
)
from annotations.selectors.studies import study_by_key


class Command(BaseCommand):
    help = (
        "Write one of a study's CSV exports (the same files the dashboard's download buttons give): "
        "responses, items, participants, summary (the analysis numbers) or codebook (every column's type, "
        "unit and meaning)."
    )

    def add_arguments(self, parser):
        parser.add_argument("study", help="study id, public id or name")
        parser.add_argument("--what", choices=EXPORTS, default="responses", help="which export (default: responses)")
        parser.add_argument("--out", type=Path, default=None, help="file to write (default: stdout)")
        parser.add_argument("--n-resamples", type=int, default=1000, help="summary: bootstrap resamples")
        parser.add_argument("--n-permutations", type=int, default=1000, help="summary: permutations")

    def handle(self, *args, study, what, out, n_resamples, n_permutations, **options):
        found = _find_study(study)
        with out_file_write(path=Path(out)) if out else contextlib.nullcontext(sys.stdout) as stream:
            try:
                lines = _lines(found, what, n_resamples=n_resamples, n_permutations=n_permutations)
            except ValueError as exc:
                raise CommandError(str(exc)) from exc
            rows = -1
            for chunk in lines:
                stream.write(chunk)
                rows += chunk.count("\n")
        if out:
            self.stderr.write(f"Wrote the {what} export to {out} ({rows} rows).")


def _lines(study: Study, what: str, *, n_resamples: int, n_permutations: int):
    if what == "responses":
        return study_responses_csv_lines(study=study)
    if what == "items":
        return study_items_csv_lines(study=study)
    if what == "participants":
        return study_participants_csv_lines(study=study)
    if what == "codebook":
        return study_codebook_csv_lines(study=study)
    from annotations.services.analysis import AnalysisUnavailable, study_report_compute

    try:
        report = study_report_compute(study=study, n_resamples=n_resamples, n_permutations=n_permutations)
    except AnalysisUnavailable as exc:
        raise CommandError(f"no summary: {exc}") from exc
    return report_summary_csv_lines(report=report)


def _find_study(key: str) -> Study:
    try:
        return study_by_key(key=key)
    except LookupError as exc:
        raise CommandError(str(exc)) from None
