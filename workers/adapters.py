"""The one way the workers build the adapter of a registered model: with the options it was
registered with (a Hugging Face model keeps its folder there), on ``MMEVAL_DEVICE``."""

from __future__ import annotations

from django.conf import settings

from annotations.models import RegisteredModel
from workers.engine.adapter import ModelAdapter
from workers.engine.registry import load_adapter


def registered_model_adapter(*, model: RegisteredModel) -> ModelAdapter:
    """``model``'s adapter, built as ``Factory(**model.adapter_options)`` and loaded (cached
    per process by :func:`workers.engine.registry.load_adapter`)."""
    return load_adapter(model.adapter_path, device=settings.MMEVAL_DEVICE, options=model.adapter_options)
