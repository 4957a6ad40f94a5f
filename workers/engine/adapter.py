"""The model adapter protocol: how mmeval talks to any multimodal PyTorch model.

Gradient and perturbation methods need continuous inputs, so an adapter splits its model in
two: ``embed`` maps a batch of raw items to one continuous tensor per modality, and ``head``
maps those tensors to logits. Every explanation method runs on ``head``.

Raw items are plain dicts, exactly as a dataset JSONL line reads, with file paths made
absolute::

    {"id": "q17", "image": "/abs/path/q17.png", "text": "what colour is the square?",
     "label": "red"}

An adapter is registered by dotted path ``package.module:Factory``; ``Factory()`` returns an
object satisfying :class:`ModelAdapter`. A factory may take keyword options (a model folder,
a label set), stored with the registered model and passed as ``Factory(**options)``; the
Hugging Face adapters (:mod:`workers.engine.hf`) are configured that way. This module imports
no Django.

What a dotted path may name (:func:`adapter_factory_check`, checked on the imported object
before anything is called): a class with the protocol's methods (``load``, ``encode``,
``embed``, ``head``, ``baselines``, ``feature_groups``, ``describe_groups``), or a function
marked with :func:`adapter_factory`. Anything else (``train_demo_model``, ``os.system``) is
refused without being called. Registration runs the factory, ``load`` and the check in a child
process under a time limit (``workers/adapter_probe.py``, ``MMEVAL_REGISTER_TIMEOUT_SECONDS``).

Optional hooks (:class:`ReportHooks`) feed the model report (``workers/engine/report``,
docs/MODEL_REPORT.md); an adapter without them works everywhere, and the report says which
section it skipped and why: ``checkpoints()`` and ``load_checkpoint(name)`` for the learning
process, ``training_items()`` for its training losses, ``corrupt(batch, ...)`` for
modality-specific corruptions, and ``batch_context`` to let EMAP pair items without encoding
every pair. Two more (:class:`ModalityEncodings`), ``encode_modality(name, embedded, batch=...)``
and ``fuse(*encodings)``, split ``head`` into per-modality encoders and the fusion that follows
them, so the report encodes each item's modalities once and evaluates only the fusion on its
pairings (EMAP's ``N^2`` pairs, permutations, subsets, noise on one modality).

One more optional method (:class:`DecisionFeatures`), ``features(*embedded, batch=batch)``,
gives the decision-level features the head decides from (e.g. its penultimate layer). It
enables MultiViz's stages 3 and 4 (``workers/engine/features.py``, ``workers/engine/sparse.py``):
which inputs and dataset items activate a feature, and a sparse linear model over the features
approximating the head. An adapter without it works everywhere else; studies cannot show the
``features`` and ``prediction`` views of its items.

One more optional hook (:class:`CounterfactualEdits`), ``counterfactual_edits(item, *,
attribution)``, gives edits of an item only the adapter knows how to make (a colour changed in
the picture, a sentence rephrased), for counterfactual studies (``workers/engine/counterfactual.py``).

Overview: docs/DESIGN.md, "Model adapters".
"""

from __future__ import annotations

import importlib
import inspect
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar, runtime_checkable

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


class ReportHooks(Protocol):
    """Optional, backward-compatible additions to :class:`ModelAdapter` for the model report.
    Implement any subset; the report checks for each with ``getattr``.

    Attributes:
        batch_context: the modality that owns everything item-specific in a batch besides the
            embedded tensors (attention masks, lengths), or None. With it, EMAP pairs items by
            swapping the other modality's embedded tensors inside a batch of context items
            (``pairing="embedded"``) instead of encoding each of the ``N^2`` pairs.
    """

    batch_context: str | None

    def checkpoints(self) -> Sequence[Mapping[str, Any]]:
        """The saved training checkpoints, in training order: ``[{"name": "step-100", "step":
        100}, ...]`` (``step`` may be None; plain names are accepted too)."""

    def load_checkpoint(self, name: str) -> ModelAdapter:
        """A loaded adapter (``load`` already called, same device) with the weights of checkpoint
        ``name``; ``self`` is left unchanged. Raise any exception for a checkpoint that cannot
        be read: the report records it and goes on with the others."""

    def training_items(self) -> Sequence[RawItem]:
        """Raw items the model trained on (a sample will do), with gold labels, for the training
        losses of the learning-process section."""

    def corrupt(self, batch: Any, *, modality: str, level: float, seed: int) -> Any:
        """A corrupted copy of ``batch`` (from ``encode``): modality-specific noise at severity
        ``level`` in [0, 1] (0: unchanged), e.g. blur for an image, word dropout for text,
        random from ``seed``. Raise ``ValueError`` or ``NotImplementedError`` for a modality it
        does not corrupt. Must not change ``batch``."""


class ModalityEncodings(Protocol):
    """Optional, backward-compatible addition to :class:`ModelAdapter`: ``head`` as per-modality
    encoders followed by a fusion (``workers/engine/encodings.py``), checked with ``getattr``.
    The report uses it to pair the encodings of different items without running the encoders
    again; without it, it runs ``head`` on every pairing. Both must hold exactly (same floats)::

        head(*x, batch=b) == fuse(*(encode_modality(m, x_m, batch=b) for m in modalities))

    A subclass that overrides ``head`` without overriding both has none (its head would
    disagree with the inherited encodings).
    """

    def encode_modality(self, name: str, embedded: Tensor, *, batch: Any) -> Tensor:
        """The encoding ``(N, *E_m)`` of modality ``name``'s embedded rows ``(N, *S_m)`` (row
        ``r`` is item ``r % B`` of ``batch``, as for ``head``). It may read only the part of
        ``batch`` that belongs to this modality (a question's attention mask), so a row's
        encoding depends on that item's payload of this modality alone; ``E_m`` is fixed."""

    def fuse(self, *encodings: Tensor) -> Tensor:
        """Logits ``(N, len(labels))`` from one encoding per modality, ``N`` rows each; row ``r``
        may take each modality's encoding from a different item."""


class DecisionFeatures(Protocol):
    """Optional, backward-compatible addition to :class:`ModelAdapter` for MultiViz's
    representation and prediction stages; checked with ``getattr``
    (``workers.engine.features.has_features``)."""

    def features(self, *embedded: Tensor, batch: Any) -> Tensor:
        """Decision-level features ``(N, F)`` (float, differentiable in ``embedded``) from the
        same embedded tensors and row layout as ``head``: the representation the head's last
        layer maps to logits, e.g. its penultimate activations. ``F`` is fixed for the model."""


class CounterfactualEdits(Protocol):
    """Optional, backward-compatible addition to :class:`ModelAdapter` for counterfactual
    studies (the ``adapter`` edit kind); checked with ``getattr``
    (``workers.engine.counterfactual.adapter_edits``)."""

    def counterfactual_edits(self, item: RawItem, *, attribution: Any) -> Sequence[Mapping[str, Any]]:
        """Edits of raw ``item``: ``[{"name": str, "description": str, "item": edited raw item}]``.
        ``name`` is unique among the item's edits; ``description`` is what a participant reads
        ("the square's colour changed to blue"); ``item`` is encoded like any raw item (a new
        picture file, another text). ``attribution`` is the item's
        :class:`~workers.engine.attribution.ItemAttribution` for the model's answer (what the
        participant saw). Return ``[]`` for an item it cannot edit."""


_MODULE_PATH = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")


def adapter_path_split(dotted_path: str) -> tuple[str, str]:
    """``(module, attribute)`` of ``package.module:Factory``, refusing, before anything is
    imported, a malformed path or one into Python's standard library (``os:system``,
    ``builtins:eval``): no adapter lives there. Raises :class:`AdapterError`."""
    module_name, sep, attr = str(dotted_path).partition(":")
    if not sep or not _MODULE_PATH.fullmatch(module_name) or not attr.isidentifier():
        raise AdapterError(f"adapter path {dotted_path!r} must look like 'package.module:Factory'")
    top = module_name.split(".")[0]
    if top in sys.stdlib_module_names:
        raise AdapterError(
            f"adapter path {dotted_path!r} points into Python's standard library ('{top}'), not to an adapter package"
        )
    return module_name, attr


def adapter_path_allowed(dotted_path: str, prefixes: Sequence[str]) -> bool:
    """Whether the module of ``dotted_path`` is under one of ``prefixes`` (``"adapters."``
    allows ``adapters.vqa`` and the package ``adapters`` itself)."""
    module = str(dotted_path).partition(":")[0]
    return any(module.startswith(prefix) or module == prefix.rstrip(".") for prefix in prefixes)


def error_text(exc: BaseException) -> str:
    """``"ValueError: the message"``: an exception's type and its own message."""
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


ADAPTER_METHODS = ("load", "encode", "embed", "head", "baselines", "feature_groups", "describe_groups")
_FACTORY_MARK = "__mmeval_adapter_factory__"
_Factory = TypeVar("_Factory", bound=Callable[..., Any])


def adapter_factory(function: _Factory) -> _Factory:
    """Mark ``function`` as an adapter factory, so that a dotted path may name it: a plain
    function is called at registration only when it says it builds an adapter::

        @adapter_factory
        def from_folder(*, path: str): ...
    """
    setattr(function, _FACTORY_MARK, True)
    return function


def adapter_factory_check(*, dotted_path: str, factory: Any) -> None:
    """Refuse, without calling it, what a dotted path names unless it is a class with the
    protocol's methods or a function marked with :func:`adapter_factory`. Only the object's
    type and class attributes are read. Raises :class:`AdapterError`."""
    name = str(dotted_path).partition(":")[2]
    if not callable(factory) or inspect.isbuiltin(factory):
        raise AdapterError(
            f"adapter {dotted_path}: {name} is a {type(factory).__name__}, not an adapter class or factory function"
        )
    if inspect.isclass(factory):
        missing = [method for method in ADAPTER_METHODS if not callable(getattr(factory, method, None))]
        if missing:
            raise AdapterError(
                f"adapter {dotted_path}: class {name} is not a model adapter (it lacks {', '.join(missing)}); "
                "it was not called"
            )
        return
    marked = inspect.isfunction(factory) and getattr(factory, _FACTORY_MARK, False) is True
    if not marked:
        raise AdapterError(
            f"adapter {dotted_path}: {name} is a {type(factory).__name__} not marked as an adapter factory; it was "
            "not called (name an adapter class, or a function decorated with "
            "workers.engine.adapter.adapter_factory)"
        )


def adapter_from_path(dotted_path: str, options: Mapping[str, Any] | None = None) -> ModelAdapter:
    """Instantiate ``package.module:Factory`` as ``Factory(**options)``. Raises
    :class:`AdapterError` naming the step that failed (import, create, protocol) with the
    cause's own message."""
    options = dict(options or {})
    if not all(isinstance(key, str) and key.isidentifier() for key in options):
        raise AdapterError(f"adapter {dotted_path}: option names must be identifiers, got {sorted(map(str, options))}")
    module_name, attr = adapter_path_split(dotted_path)
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # ImportError, SyntaxError, anything the module raises
        raise AdapterError(f"adapter {dotted_path}: import failed: {error_text(exc)}") from exc
    try:
        factory = getattr(module, attr)
    except AttributeError as exc:
        raise AdapterError(f"adapter {dotted_path}: module {module_name!r} has no attribute {attr!r}") from exc
    adapter_factory_check(dotted_path=dotted_path, factory=factory)
    call = f"{attr}({', '.join(f'{key}=…' for key in options)})"
    try:
        adapter = factory(**options)
    except Exception as exc:
        raise AdapterError(f"adapter {dotted_path}: creating it ({call}) failed: {error_text(exc)}") from exc
    missing = [name for name in ("labels", "modalities", *ADAPTER_METHODS) if not hasattr(adapter, name)]
    if missing:
        raise AdapterError(f"adapter {dotted_path} does not implement: {', '.join(missing)}")
    return adapter
