from django.core.management.base import BaseCommand, CommandError

from annotations.management.cli import traceback_or_hint
from annotations.management.commands.import_dataset import _owner
from annotations.models import Dataset
from annotations.services.registry import ModelRegistrationError, registered_model_create


class Command(BaseCommand):
    help = "Register a model adapter by dotted path, checked on the first item of a dataset."

    def add_arguments(self, parser):
        parser.add_argument("name")
        parser.add_argument("adapter_path", help="package.module:Factory")
        parser.add_argument("--dataset", required=True, help="name of the dataset to check the model on")
        parser.add_argument("--owner", default=None)

    def handle(self, *args, name, adapter_path, dataset, owner, **options):
        user = _owner(owner)
        check_dataset = Dataset.objects.filter(owner=user, name=dataset).first()
        if check_dataset is None:
            raise CommandError(f"no dataset named '{dataset}'")
        try:
            model = registered_model_create(owner=user, name=name, adapter_path=adapter_path, check_dataset=check_dataset)
        except ModelRegistrationError as exc:
            hint = traceback_or_hint(options=options, stderr=self.stderr, text=exc.traceback_text)
            raise CommandError(f"{exc}{hint}") from exc
        self.stdout.write(self.style.SUCCESS(f"Registered '{model.name}': {len(model.labels)} labels, modalities {model.modalities}."))
