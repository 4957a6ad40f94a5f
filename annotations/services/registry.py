"""Registering a model adapter by dotted path (with options), checked by running it on one item."""

from __future__ import annotations

import json
import traceback
from collections.abc import Sequence
from typing import Any

from django.conf import settings

from annotations.models import Dataset, RegisteredModel
from annotations.selectors.studies import dataset_label_coverage, item_raw


class ModelRegistrationError(Exception):
    def __init__(self, message: str, traceback_text: str = ""):
        self.traceback_text = traceback_text
        super().__init__(message)


def _name_check(*, owner, name: str) -> None:
    if RegisteredModel.objects.filter(owner=owner, name=name).exists():
        raise ModelRegistrationError(f"you already have a model named '{name}'")


def registered_model_create(
    *, owner, name: str, adapter_path: str, check_dataset: Dataset, adapter_options: dict[str, Any] | None = None
) -> RegisteredModel:
    """Load ``adapter_path`` (as ``Factory(**adapter_options)``), run the first item of
    ``check_dataset`` through it and store the model with the labels and modalities it
    declares, and the options. A model none of whose labels is a gold answer of
    ``check_dataset`` is refused (:func:`labels_check`)."""
    _name_check(owner=owner, name=name)
    options = {} if adapter_options is None else adapter_options
    if not isinstance(options, dict):
        raise ModelRegistrationError(
            f"adapter options must be a JSON object of keyword options, got {type(options).__name__}"
        )
    try:
        options = json.loads(json.dumps(options, allow_nan=False))  # stored as JSON: what the workers get back
    except (TypeError, ValueError) as exc:
        raise ModelRegistrationError(f"adapter options must be plain JSON values: {exc}") from None
    # Imported here: torch is heavy and web processes need it only to register a model.
    from workers.engine.adapter import AdapterError, adapter_path_allowed, error_text
    from workers.engine.registry import check_adapter, forget_adapter, load_adapter

    if not adapter_path_allowed(adapter_path, settings.MMEVAL_ADAPTER_PREFIXES):
        raise ModelRegistrationError(
            f"'{adapter_path}' is not under an allowed adapter package ({', '.join(settings.MMEVAL_ADAPTER_PREFIXES)}); "
            "ask the operator to install your package and add it to MMEVAL_ADAPTER_PREFIXES"
        )
    item = check_dataset.items.order_by("line_number").first()
    if item is None:
        raise ModelRegistrationError(f"dataset '{check_dataset.name}' has no items to check the model on")
    forget_adapter(adapter_path, options=options)  # a re-registration must see the current code, not a cached copy
    try:
        adapter = load_adapter(adapter_path, device=settings.MMEVAL_DEVICE, options=options)
    except AdapterError as exc:  # names the step (import, create, load) and the adapter's own message
        trace = "".join(traceback.format_exception(exc)) if exc.__cause__ else ""  # no cause: the message is all
        raise ModelRegistrationError(str(exc), trace) from exc
    try:
        check = check_adapter(adapter, [item_raw(item)])
    except Exception as exc:
        raise ModelRegistrationError(
            f"adapter {adapter_path}: the check on item '{item.external_id}' (line {item.line_number}) failed: "
            f"{error_text(exc)}",
            traceback.format_exc(),
        ) from exc
    labels_check(labels=check.labels, dataset=check_dataset)
    return RegisteredModel.objects.create(
        owner=owner,
        name=name,
        adapter_path=adapter_path,
        adapter_options=options,
        labels=check.labels,
        modalities=check.modalities,
    )


def labels_check(*, labels: Sequence[str], dataset: Dataset) -> None:
    """Refuse a model none of whose labels is a gold answer of ``dataset``: every item would be
    "model wrong" and a study's right/wrong balance could not hold. A partial overlap passes
    (``selectors.studies.label_coverage_warning`` words it for the caller)."""
    coverage = dataset_label_coverage(dataset=dataset, labels=labels)
    if coverage.n_items and not coverage.n_known:
        shown = ", ".join(f"'{label}'" for label in list(labels)[:12]) + (" …" if len(labels) > 12 else "")
        raise ModelRegistrationError(
            f"none of the gold answers of dataset '{dataset.name}' is one of the model's labels: unknown answers "
            f"{coverage.unknown_text()}; the model's labels: {shown}"
        )


def registered_model_create_hf(
    *,
    owner,
    name: str,
    folder: str,
    check_dataset: Dataset,
    kind: str | None = None,
    labels: Sequence[str] | None = None,
    prompt: str | None = None,
    image_size: int | None = None,
) -> RegisteredModel:
    """Register a Hugging Face model folder (``save_pretrained``'s output, never a hub ID) as
    the adapter :data:`workers.engine.hf.HF_ADAPTER` with these options. The folder and the
    options are checked first, from ``config.json`` alone, so a wrong path, a folder of
    another kind or an unknown label is one line before any weight is read."""
    _name_check(owner=owner, name=name)
    from workers.engine.adapter import AdapterError
    from workers.engine.hf import HF_ADAPTER, hf_options

    try:
        options = hf_options(path=folder, kind=kind, labels=labels, prompt=prompt, image_size=image_size)
    except AdapterError as exc:
        raise ModelRegistrationError(str(exc)) from exc
    return registered_model_create(
        owner=owner, name=name, adapter_path=HF_ADAPTER, check_dataset=check_dataset, adapter_options=options.as_dict()
    )
