"""Set a dataset's evidence regions from a rationale study's aggregated export."""

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from annotations.management.commands.import_dataset import _owner
from annotations.models import Dataset
from annotations.services.rationales import EvidenceImportError, dataset_evidence_import


class Command(BaseCommand):
    help = (
        "Set the evidence of a dataset's items from a rationale study's rationale_items export (CSV with item and "
        'evidence columns) or JSON lines {"id", "evidence"}. All or nothing; every bad line is reported.'
    )

    def add_arguments(self, parser):
        parser.add_argument("dataset", help="the dataset's name")
        parser.add_argument("file", type=Path)
        parser.add_argument("--owner", default=None, help="username (default: the first superuser)")

    def handle(self, *args, dataset, file, owner, **options):
        if not Path(file).is_file():
            raise CommandError(f"{file}: no such file")
        try:
            target = Dataset.objects.get(owner=_owner(owner), name=dataset)
        except Dataset.DoesNotExist:
            raise CommandError(f"no dataset named '{dataset}'") from None
        try:
            n = dataset_evidence_import(dataset=target, text=Path(file).read_text(encoding="utf-8"))
        except EvidenceImportError as exc:
            raise CommandError("\n".join([f"{file}: {exc}", *exc.errors[:20]])) from None
        except UnicodeDecodeError:
            raise CommandError(f"{file}: not UTF-8 text") from None
        self.stdout.write(self.style.SUCCESS(f"Set the evidence of {n} items of '{target.name}'."))
