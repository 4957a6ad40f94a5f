"""How a command names a model adapter: a dotted path with ``--options JSON`` (the factory's
keyword options), or a Hugging Face folder with ``--hf PATH`` and its own options. Shared by
``register_model`` and ``explain`` so both read the same arguments and refuse the same mixes
with the same one line."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import CommandError

#: The options that go with ``--hf PATH`` (argparse destinations).
HF_ONLY = ("kind", "labels", "prompt", "image_size")


def adapter_arguments_add(*, parser) -> None:
    """``--options JSON`` and the Hugging Face group (``--hf PATH``, ``--kind``, ``--labels``,
    ``--prompt``, ``--image-size``)."""
    parser.add_argument(
        "--options",
        default=None,
        metavar="JSON",
        help="keyword options for the factory, a JSON object: Factory(**options)",
    )
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
        help="vqa (ViLT), zero-shot (CLIP) or classify (ViLT with a classification head); default: what the folder holds",
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


def adapter_arguments_check(
    *, adapter_path: str | None, options: str | None, hf: str | None, hf_values: dict[str, Any], path_name: str
) -> dict | None:
    """Exactly one of a dotted path (``path_name``, as the command spells it) and ``--hf``, each
    with its own options. Returns the parsed ``--options`` (None when not given); raises
    :class:`CommandError` naming the arguments that do not go together."""
    if (adapter_path is None) == (hf is None):
        raise CommandError(f"give either {path_name} (package.module:Factory) or --hf PATH")
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
    return adapter_options_parse(text=options)


def adapter_options_parse(*, text: str | None) -> dict | None:
    """``--options`` as a dict (None when not given); one line when it is not a JSON object."""
    if text is None:
        return None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CommandError(f"--options: not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise CommandError('--options must be a JSON object, e.g. \'{"path": "/models/x"}\'')
    return value
