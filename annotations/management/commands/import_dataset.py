from pathlib import Path

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from annotations.management.cli import os_error_text
from annotations.services.datasets import DatasetImportError, dataset_import


class Command(BaseCommand):
    help = "Import a dataset JSONL file (paths relative to the file). All or nothing; every bad line is reported."

    def add_arguments(self, parser):
        parser.add_argument("name")
        parser.add_argument("jsonl", type=Path)
        parser.add_argument("--owner", default=None, help="username (default: the first superuser)")

    def handle(self, *args, name, jsonl, owner, **options):
        jsonl = Path(jsonl)
        if not jsonl.is_file():
            raise CommandError(f"{jsonl}: {'is a folder, not a JSONL file' if jsonl.is_dir() else 'no such file'}")
        user = _owner(owner)
        try:
            dataset = dataset_import(owner=user, name=name, jsonl_path=jsonl)
        except DatasetImportError as exc:
            raise CommandError(f"{jsonl}: {exc}") from None
        except OSError as exc:  # unreadable file, or media that cannot be copied
            raise CommandError(f"{exc.filename or jsonl}: {os_error_text(exc)}") from None
        self.stdout.write(
            self.style.SUCCESS(f"Imported {dataset.items.count()} items into '{dataset.name}' (id {dataset.pk}).")
        )


def _owner(username):
    User = get_user_model()
    if username:
        try:
            return User.objects.get(username=username)
        except User.DoesNotExist:
            raise CommandError(f"no user named '{username}'") from None
    user = User.objects.filter(is_superuser=True).order_by("pk").first()
    if user is None:
        raise CommandError("no superuser exists: create one or pass --owner")
    return user
