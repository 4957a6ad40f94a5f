"""Registering a model adapter by dotted path, checked by running it on one item."""

from __future__ import annotations

import traceback

from django.conf import settings

from annotations.models import Dataset, RegisteredModel
from annotations.selectors import item_as_raw


class ModelRegistrationError(Exception):
    def __init__(self, message: str, traceback_text: str = ""):
        self.traceback_text = traceback_text
        super().__init__(message)


def registered_model_create(*, owner, name: str, adapter_path: str, check_dataset: Dataset) -> RegisteredModel:
    """Load ``adapter_path``, run the first item of ``check_dataset`` through it and store
    the model with the labels and modalities it declares."""
    if RegisteredModel.objects.filter(owner=owner, name=name).exists():
        raise ModelRegistrationError(f"you already have a model named '{name}'")
    # Imported here: torch is heavy and web processes need it only to register a model.
    from workers.engine.adapter import AdapterError, adapter_path_allowed, error_text
    from workers.engine.registry import check_adapter, forget_adapter, load_adapter

    if not adapter_path_allowed(adapter_path, settings.MMEVAL_ADAPTER_PREFIXES):
        raise ModelRegistrationError(
            f"'{adapter_path}' is not under an allowed adapter package ({', '.join(settings.MMEVAL_ADAPTER_PREFIXES)}); "
            "ask the operator to install your package and add it to MMEVAL_ADAPTER_PREFIXES")
    item = check_dataset.items.order_by("line_number").first()
    if item is None:
        raise ModelRegistrationError(f"dataset '{check_dataset.name}' has no items to check the model on")
    forget_adapter(adapter_path)  # a re-registration must see the current code, not a cached copy
    try:
        adapter = load_adapter(adapter_path, device=settings.MMEVAL_DEVICE)
    except AdapterError as exc:  # names the step (import, create, load) and the adapter's own message
        trace = "".join(traceback.format_exception(exc)) if exc.__cause__ else ""  # no cause: the message is all
        raise ModelRegistrationError(str(exc), trace) from exc
    try:
        check = check_adapter(adapter, [item_as_raw(item)])
    except Exception as exc:
        raise ModelRegistrationError(
            f"adapter {adapter_path}: the check on item '{item.external_id}' (line {item.line_number}) failed: "
            f"{error_text(exc)}", traceback.format_exc()) from exc
    return RegisteredModel.objects.create(owner=owner, name=name, adapter_path=adapter_path,
                                          labels=check.labels, modalities=check.modalities)
