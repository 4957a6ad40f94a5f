"""The model adapter protocol: how mmeval talks to any multimodal PyTorch model.

Gradient and perturbation methods need continuous inputs, so an adapter splits its model in
two: ``embed`` maps a batch of raw items to one continuous tensor per modality, and ``head``
maps those tensors to logits. Every explanation method runs on ``head``.

Raw items are plain dicts, exactly as a dataset JSONL line reads, with file paths made
absolute::

    {"id": "q17", "image": "/abs/path/q17.png", "text": "what colour is the square?",
     "label": "red"}

An adapter is registered by dotted path ``package.module:Factory``; ``Factory()`` (no
arguments) returns an object satisfying :class:`ModelAdapter`. This module imports no Django.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any, Mapping, Protocol, Sequence, runtime_checkable

import torch
from torch import Tensor

RawItem = Mapping[str, Any]


class AdapterError(Exception):
    """An adapter could not be loaded, or broke the protocol."""


@dataclass
class GroupInfo:
    """What a person sees for one feature group.

    ``kind`` is ``"patch"`` (``box`` = [x0, y0, x1, y1] in image pixels), ``"token"``
    (``text``), or any modality-specific kind with free-form ``extra``. ``hidden`` marks
    groups that carry no content (padding) and are not drawn.
    """

    group_id: int
    kind: str
    text: str = ""
    box: tuple[int, int, int, int] | None = None
    hidden: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"group_id": self.group_id, "kind": self.kind}
        if self.text:
            out["text"] = self.text
        if self.box is not None:
            out["box"] = list(self.box)
        if self.hidden:
            out["hidden"] = True
        if self.extra:
            out["extra"] = self.extra
        return out


@runtime_checkable
class ModelAdapter(Protocol):
    """The contract between mmeval and a user's model.

    Attributes:
        labels: class names; logits column ``k`` of ``head`` is ``labels[k]``.
        modalities: modality names in the order of the tensors ``embed`` returns, e.g.
            ``("image", "text")``. Raw items carry a payload under each name.
    """

    labels: Sequence[str]
    modalities: Sequence[str]

    def load(self, device: torch.device) -> None:
        """Load weights and move them to ``device``. Called once before any other method."""

    def encode(self, items: Sequence[RawItem]) -> Any:
        """Turn raw items into a model-ready batch (any object; passed back unchanged).

        Raises ``ValueError`` naming the item when a payload cannot be read.
        """

    def embed(self, batch: Any) -> tuple[Tensor, ...]:
        """One continuous tensor per modality, batch first: e.g. image ``(B, 3, H, W)`` and
        token embeddings ``(B, T, D)``. Must be differentiable inputs to ``head``."""

    def head(self, *embedded: Tensor, batch: Any) -> Tensor:
        """Logits ``(B, len(labels))`` from the embedded tensors. ``batch`` carries
        non-differentiable context (attention masks, lengths). Batch-size agnostic: methods
        call it with the batch dimension expanded (``B * n_steps``)."""

    def baselines(self, batch: Any) -> tuple[Tensor, ...]:
        """Reference inputs, one per modality, same shapes as ``embed``'s output."""

    def feature_groups(self, batch: Any) -> tuple[Tensor, ...]:
        """Integer group IDs per modality, broadcastable to ``embed``'s shapes (e.g. image
        ``(B, 1, H, W)``, text ``(B, T, 1)``). IDs are unique across modalities within an
        item and numbered ``0..G-1`` with the first modality's groups first."""

    def describe_groups(self, batch: Any) -> list[list[list[GroupInfo]]]:
        """For each item, for each modality, the :class:`GroupInfo` of its groups in ID order."""


def adapter_from_path(dotted_path: str) -> ModelAdapter:
    """Instantiate ``package.module:Factory``. Raises :class:`AdapterError` with the cause."""
    module_name, sep, attr = dotted_path.partition(":")
    if not sep or not module_name or not attr:
        raise AdapterError(f"adapter path {dotted_path!r} must look like 'package.module:Factory'")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # ImportError, SyntaxError, anything the module raises
        raise AdapterError(f"cannot import {module_name!r}: {exc!r}") from exc
    try:
        factory = getattr(module, attr)
    except AttributeError as exc:
        raise AdapterError(f"module {module_name!r} has no attribute {attr!r}") from exc
    adapter = factory()
    missing = [
        name
        for name in ("labels", "modalities", "load", "encode", "embed", "head", "baselines",
                     "feature_groups", "describe_groups")
        if not hasattr(adapter, name)
    ]
    if missing:
        raise AdapterError(f"{dotted_path} does not implement: {', '.join(missing)}")
    return adapter
