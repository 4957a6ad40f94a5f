import sys
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from annotations.exports import responses_csv_lines
from annotations.models import Study


class Command(BaseCommand):
    help = "Write a study's responses as CSV (the same file the download button gives)."

    def add_arguments(self, parser):
        parser.add_argument("study", help="study id, public id or name")
        parser.add_argument("--out", type=Path, default=None, help="file to write (default: stdout)")

    def handle(self, *args, study, out, **options):
        found = _find_study(study)
        stream = open(out, "w", newline="", encoding="utf-8") if out else sys.stdout
        try:
            rows = 0
            for line in responses_csv_lines(study=found):
                stream.write(line)
                rows += 1
        finally:
            if out:
                stream.close()
        if out:
            self.stderr.write(f"Wrote {rows - 1} responses to {out}")


def _find_study(key: str) -> Study:
    query = Study.objects.filter(public_id=key) | Study.objects.filter(name=key)
    if key.isdigit():
        query = query | Study.objects.filter(pk=int(key))
    studies = list(query.distinct())
    if len(studies) != 1:
        raise CommandError(f"{'no' if not studies else 'more than one'} study matches '{key}'")
    return studies[0]
