import sys
from pathlib import Path

from django.core.management.base import BaseCommand

from annotations.management.cli import out_file_write
from annotations.selectors.codebook import codebook_markdown


class Command(BaseCommand):
    help = (
        "Write the codebook of the CSV exports (every column: type, unit, meaning) as Markdown: the text of "
        "docs/CODEBOOK.md. One study's columns: manage.py export_study STUDY --what codebook."
    )

    def add_arguments(self, parser):
        parser.add_argument("--out", type=Path, default=None, help="file to write (default: stdout)")

    def handle(self, *args, out, **options):
        if out is None:
            sys.stdout.write(codebook_markdown())
            return
        with out_file_write(path=Path(out)) as stream:
            stream.write(codebook_markdown())
        self.stderr.write(f"Wrote the codebook to {out}.")
