import json

from django.core.management.base import BaseCommand, CommandError

from annotations.management.cli import traceback_or_hint
from annotations.management.commands.import_dataset import _owner
from annotations.models import Dataset
from annotations.selectors.studies import label_coverage_warning
from annotations.services.registry import ModelRegistrationError, registered_model_create, registered_model_create_hf

_HF_ONLY = ("kind", "labels", "prompt", "image_size")


class Command(BaseCommand):
    help = (
        "Register a model adapter by dotted path (package.module:Factory [--options JSON]) or a Hugging Face "
        "model folder (--hf PATH), checked on the first item of a dataset."
    )

    def add_arguments(self, parser):
        parser.add_argument("name")
        parser.add_argument("adapter_path", nargs="?", help="package.module:Factory (or --hf PATH)")
        parser.add_argument(
            "--options",
            default=None,
            metavar="JSON",
            help="keyword options for the factory, a JSON object: Factory(**options)",
        )
        parser.add_argument("--dataset", required=True, help="name of the dataset to check the model on")
        parser.add_argument("--owner", default=None)
        hf = parser.add_argument_group("Hugging Face model folders (read offline; set HF_HUB_OFFLINE=1)")
        hf.add_argument(
            "--hf",
            default=None,
            metavar="PATH",
            help="a local folder written by save_pretrained (model, tokenizer, preprocessor config); never a hub ID",
        )
        hf.add_argument(
            "--kind",
            default=None,
            help="vqa (ViLT), zero-shot (CLIP) or classify (ViLT with a "
            "classification head); default: what the folder holds",
        )
        hf.add_argument(
            "--labels",
            nargs="+",
            default=None,
            metavar="LABEL",
            help="zero-shot: the class names (required); vqa/classify: score only these of the model's labels",
        )
        hf.add_argument(
            "--prompt",
            default=None,
            help="zero-shot: the prompt template, with {text} (the item's text) and {label}; default '{text} {label}'",
        )
        hf.add_argument(
            "--image-size",
            type=int,
            default=None,
            help="ViLT: resize images to this square side (a multiple of the patch size)",
        )

    def handle(self, *args, name, adapter_path, options, dataset, owner, hf, **rest):
        hf_values = {key: rest[key] for key in _HF_ONLY}
        if (adapter_path is None) == (hf is None):
            raise CommandError("give either an adapter path (package.module:Factory) or --hf PATH")
        if hf is None and any(value is not None for value in hf_values.values()):
            given = [f"--{key.replace('_', '-')}" for key, value in hf_values.items() if value is not None]
            raise CommandError(
                f"{', '.join(given)} {'goes' if len(given) == 1 else 'go'} with --hf PATH; "
                "a dotted-path adapter takes --options JSON"
            )
        if hf is not None and options is not None:
            raise CommandError(
                "--options goes with an adapter path; a --hf folder takes --kind, --labels, --prompt and --image-size"
            )
        factory_options = _options_parse(options)
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


def _options_parse(text: str | None) -> dict | None:
    if text is None:
        return None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CommandError(f"--options: not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise CommandError('--options must be a JSON object, e.g. \'{"path": "/models/x"}\'')
    return value
