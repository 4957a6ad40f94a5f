from django.core.management.base import BaseCommand, CommandError

from annotations.management.adapter_args import HF_ONLY, adapter_arguments_add, adapter_arguments_check
from annotations.management.cli import traceback_or_hint
from annotations.management.commands.import_dataset import _owner
from annotations.models import Dataset
from annotations.selectors.studies import label_coverage_warning
from annotations.services.registry import ModelRegistrationError, registered_model_create, registered_model_create_hf


class Command(BaseCommand):
    help = (
        "Register a model adapter by dotted path (package.module:Factory [--options JSON]) or a Hugging Face "
        "model folder (--hf PATH), checked on the first item of a dataset."
    )

    def add_arguments(self, parser):
        parser.add_argument("name")
        parser.add_argument("adapter_path", nargs="?", help="package.module:Factory (or --hf PATH)")
        parser.add_argument("--dataset", required=True, help="name of the dataset to check the model on")
        parser.add_argument("--owner", default=None)
        adapter_arguments_add(parser=parser)

    def handle(self, *args, name, adapter_path, options, dataset, owner, hf, **rest):
        hf_values = {key: rest[key] for key in HF_ONLY}
        factory_options = adapter_arguments_check(
            adapter_path=adapter_path, options=options, hf=hf, hf_values=hf_values, path_name="an adapter path"
        )
        user = _owner(owner)
        check_dataset = Dataset.objects.filter(owner=user, name=dataset).first()
        if check_dataset is None:
            raise CommandError(f"no dataset named '{dataset}'")
        try:
            if hf is not None:
                model = registered_model_create_hf(
                    owner=user, name=name, folder=hf, check_dataset=check_dataset, **hf_values
                )
            else:
                model = registered_model_create(
                    owner=user,
                    name=name,
                    adapter_path=adapter_path,
                    check_dataset=check_dataset,
                    adapter_options=factory_options,
                )
        except ModelRegistrationError as exc:
            hint = traceback_or_hint(options=rest, stderr=self.stderr, text=exc.traceback_text)
            raise CommandError(f"{exc}{hint}") from exc
        self.stdout.write(
            self.style.SUCCESS(f"Registered '{model.name}': {len(model.labels)} labels, modalities {model.modalities}.")
        )
        warning = label_coverage_warning(dataset=check_dataset, labels=model.labels)
        if warning:
            self.stderr.write(warning)
