"""Top-level engine API for Celery tasks and the command line: predictions and explanations
for raw items, as plain dataclasses that convert to JSON and to ``np.savez`` arrays.

For every batch of items, :func:`explain_items` encodes and embeds once, runs the model once
for predictions, then runs each requested attribution method (see
:data:`workers.engine.attribution.METHODS`) and interaction (``"modality_interaction"`` and
the cross-modal matrices of :data:`workers.engine.interactions.CROSS_METHODS`) for each
target class. Per-example Captum methods (lime, kernel_shap) run on one-item batches, so
their results do not depend on how items were batched.

Command line (no Django)::

    python -m workers.engine.explain package.module:Factory data.jsonl \\
        --methods integrated_gradients,feature_ablation --interactions second_order \\
        --targets predicted --out explanations.npz --json explanations.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from traceback import format_exception
from typing import Any

import numpy as np
import torch
from torch import Tensor

from workers.engine.adapter import ModelAdapter, RawItem, error_text
from workers.engine.attribution import (
    METHODS,
    ItemAttribution,
    NonFiniteError,
    PreparedBatch,
    attribute,
    item_lines_places,
    nonfinite_naming,
    prepare_batch,
)
from workers.engine.interactions import (
    CROSS_METHODS,
    CrossInteraction,
    ModalityInteraction,
    cross_modal_interaction,
    modality_interaction,
)

__all__ = [
    "BatchSizeReport",
    "DEFAULT_MAX_ROWS",
    "INTERACTIONS",
    "ItemExplanation",
    "ItemFailure",
    "Prediction",
    "explain_items",
    "explain_items_iter",
    "measure_best_batch_size",
    "predict",
]

#: Interaction names accepted by :func:`explain_items`.
INTERACTIONS: tuple[str, ...] = ("modality_interaction", *CROSS_METHODS)

#: Default bound on rows per head call, per method or interaction (None: unbounded).
DEFAULT_MAX_ROWS: dict[str, int | None] = {
    **{name: spec.default_max_rows for name, spec in METHODS.items()},
    "modality_interaction": None,
    "second_order": None,
    "integrated_hessians": 128,
    "perturbation": 512,
}

Progress = Callable[[int, int], None]


@dataclass
class Prediction:
    """The model's answer for one item.

    Attributes:
        item_id: the raw item's ``id`` (None if it has none).
        label_index: argmax of the logits.
        label: ``adapter.labels[label_index]``.
        probabilities: softmax of the logits, ``(n_labels,)``.
        logits: ``(n_labels,)``.
    """

    item_id: Any
    label_index: int
    label: str
    probabilities: np.ndarray
    logits: np.ndarray

    def to_json(self) -> dict[str, Any]:
        return {
            "item_id": self.item_id,
            "label_index": self.label_index,
            "label": self.label,
            "probabilities": self.probabilities.tolist(),
            "logits": self.logits.tolist(),
        }


def _predictions(p: PreparedBatch, items: Sequence[RawItem]) -> list[Prediction]:
    with torch.no_grad():
        logits = p.caller("predict").forward_rows(p.inputs).detach().to(torch.float64).cpu()
    probs = torch.softmax(logits, dim=1)
    labels = [str(x) for x in p.adapter.labels]
    out = []
    for b, item in enumerate(items):
        k = int(logits[b].argmax())
        out.append(
            Prediction(
                item_id=item.get("id"),
                label_index=k,
                label=labels[k],
                probabilities=probs[b].numpy(),
                logits=logits[b].numpy(),
            )
        )
    return out


def _chunks(seq: Sequence[Any], size: int) -> list[Sequence[Any]]:
    if size < 1:
        raise ValueError("batch_size must be at least 1")
    return [seq[s : s + size] for s in range(0, len(seq), size)]


def predict(
    adapter: ModelAdapter,
    items: Sequence[RawItem],
    *,
    batch_size: int = 32,
    lines: Mapping[str, int] | None = None,
) -> list[Prediction]:
    """The model's prediction for every item.

    Args:
        adapter: a loaded adapter.
        items: raw items.
        batch_size: items per ``encode``/``head`` call.
        lines: item id -> 1-based dataset line, to name an item in an error.

    Returns:
        One :class:`Prediction` per item, in order. Cost: 1 forward pass per item. Raises
        :class:`~workers.engine.attribution.NonFiniteError` on NaN/Inf logits, naming the
        items by id (and line).
    """
    out: list[Prediction] = []
    for chunk in _chunks(list(items), batch_size):
        with nonfinite_naming(items=chunk, places=item_lines_places(lines=lines or {})):
            p = prepare_batch(adapter, adapter.encode(chunk))
            out.extend(_predictions(p, chunk))
    return out


@dataclass
class ItemExplanation:
    """Everything computed for one item.

    Attributes:
        item_id: the raw item's ``id``.
        position: index in the ``items`` passed to :func:`explain_items`.
        modalities: modality names.
        labels: the adapter's class names.
        prediction: the model's :class:`Prediction`.
        targets: the target class indices explained, in order.
        groups: ``describe_groups`` of the item: per modality, a list of group dicts
            (``GroupInfo.as_dict()``) in group-ID order.
        attributions: per method, one :class:`ItemAttribution` per target (``targets`` order).
        modality_interactions: one :class:`ModalityInteraction` per target (if requested).
        cross_interactions: per method, one :class:`CrossInteraction` per target.
    """

    item_id: Any
    position: int
    modalities: tuple[str, ...]
    labels: tuple[str, ...]
    prediction: Prediction
    targets: list[int]
    groups: list[list[dict[str, Any]]]
    attributions: dict[str, list[ItemAttribution]] = field(default_factory=dict)
    modality_interactions: list[ModalityInteraction] = field(default_factory=list)
    cross_interactions: dict[str, list[CrossInteraction]] = field(default_factory=dict)

    def attribution(self, method: str, target: int | None = None) -> ItemAttribution:
        """The attribution of ``method`` for ``target`` (default: the first target)."""
        results = self.attributions[method]
        if target is None:
            return results[0]
        return results[self.targets.index(int(target))]

    def to_arrays(self, prefix: str = "") -> dict[str, np.ndarray]:
        """Flat ``{key: array}`` for ``np.savez``. Keys: ``prediction/probabilities``,
        ``prediction/logits``, ``targets``, ``attr/{method}/t{target}/{modality}/{map,
        group_ids,group_scores}``, ``cross/{method}/t{target}/{matrix,group_ids_a,group_ids_b}``."""
        out: dict[str, np.ndarray] = {
            f"{prefix}prediction/probabilities": self.prediction.probabilities,
            f"{prefix}prediction/logits": self.prediction.logits,
            f"{prefix}targets": np.asarray(self.targets, dtype=np.int64),
        }
        for method, results in self.attributions.items():
            for res in results:
                out.update(res.to_arrays(f"{prefix}attr/{method}/t{res.target}/"))
        for method, results in self.cross_interactions.items():
            for res in results:
                out.update(res.to_arrays(f"{prefix}cross/{method}/t{res.target}/"))
        return out

    def to_json(self) -> dict[str, Any]:
        """JSON-able dict (maps are left to ``to_arrays``; group scores and matrices are in)."""
        return {
            "item_id": self.item_id,
            "position": self.position,
            "modalities": list(self.modalities),
            "labels": list(self.labels),
            "prediction": self.prediction.to_json(),
            "targets": list(self.targets),
            "groups": self.groups,
            "attributions": {m: [r.to_json() for r in rs] for m, rs in self.attributions.items()},
            "modality_interactions": [r.to_json() for r in self.modality_interactions],
            "cross_interactions": {m: [r.to_json() for r in rs] for m, rs in self.cross_interactions.items()},
        }


def _resolve_targets(
    targets: Any, preds: list[Prediction], labels: Sequence[str], positions: Sequence[int]
) -> list[list[int]]:
    """Per item of the batch, the list of target class indices."""
    n_labels = len(labels)

    def one(value: Any) -> int:
        if isinstance(value, str):
            if value not in labels:
                raise ValueError(f"target {value!r} is not one of the adapter's labels {list(labels)}")
            return list(labels).index(value)
        k = int(value)
        if not 0 <= k < n_labels:
            raise ValueError(f"target {k} is not a class index in [0, {n_labels})")
        return k

    if targets is None:
        return [[p.label_index] for p in preds]
    if isinstance(targets, str):
        if targets == "predicted":
            return [[p.label_index] for p in preds]
        if targets == "all":
            return [list(range(n_labels)) for _ in preds]
        raise ValueError("targets must be 'predicted', 'all', a class index, or one entry per item")
    if isinstance(targets, (int, np.integer)) or (isinstance(targets, torch.Tensor) and targets.dim() == 0):
        return [[one(int(targets))] for _ in preds]
    out = []
    for pos, pred in zip(positions, preds):
        entry = targets[pos]
        if entry is None or (isinstance(entry, str) and entry == "predicted"):
            out.append([pred.label_index])
        elif isinstance(entry, (list, tuple, np.ndarray, torch.Tensor)):
            ks = [one(v) for v in list(entry)]
            if not ks:
                raise ValueError(f"item {pos} has an empty target list")
            out.append(list(dict.fromkeys(ks)))
        else:
            out.append([one(entry)])
    return out


def _options_for(
    name: str,
    max_rows: Mapping[str, int | None] | None,
    method_options: Mapping[str, Mapping[str, Any]] | None,
    seed: int | None,
) -> dict[str, Any]:
    opts = dict((method_options or {}).get(name, {}))
    if max_rows is not None and name in max_rows:
        opts["max_rows"] = max_rows[name]
    elif "max_rows" not in opts:
        opts["max_rows"] = DEFAULT_MAX_ROWS.get(name)
    if name in METHODS and METHODS[name].stochastic:
        opts.setdefault("seed", seed)
    return opts


@dataclass
class ItemFailure:
    """An item that :func:`explain_items_iter` could not explain (with ``keep_going``).

    Attributes:
        item_id: the raw item's ``id``.
        position: index in the ``items`` passed in.
        error: what went wrong, ``"ErrorType: message"``, naming no batch positions.
        traceback: the formatted traceback of that error.
    """

    item_id: Any
    position: int
    error: str
    traceback: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"item_id": self.item_id, "position": self.position, "error": self.error}


def _validate(methods: Sequence[str], interactions: Sequence[str], targets: Any, n_items: int) -> None:
    for name in methods:
        if name not in METHODS:
            raise ValueError(f"unknown attribution method {name!r}; known: {sorted(METHODS)}")
    for name in interactions:
        if name not in INTERACTIONS:
            raise ValueError(f"unknown interaction {name!r}; known: {list(INTERACTIONS)}")
    if (
        targets is not None
        and not isinstance(targets, (str, int, np.integer))
        and not (isinstance(targets, torch.Tensor) and targets.dim() == 0)
        and len(targets) != n_items
    ):
        raise ValueError(f"got {len(targets)} target entries for {n_items} items")


def _as_item(b: int, exc: NonFiniteError) -> NonFiniteError:
    """``exc`` raised on a one-item batch, re-addressed to item ``b`` of the whole batch."""
    return NonFiniteError(exc.detail, batch_items=[b])


def _naming_items(
    exc: NonFiniteError, chunk: Sequence[RawItem], positions: Sequence[int], lines: Mapping[str, int] | None
) -> NonFiniteError:
    """``exc`` with its batch positions replaced by the items' ids, each with its dataset line
    when ``lines`` knows it, else its position in ``items``."""
    named = exc.naming(items=chunk)
    places = {str(chunk[b].get("id", "?")): f"position {positions[b]}" for b in exc.batch_items if 0 <= b < len(chunk)}
    places.update(item_lines_places(lines=lines or {}))
    return named.placed(places=places)


def _failure_text(exc: BaseException) -> str:
    if isinstance(exc, NonFiniteError):
        return f"{type(exc).__name__}: {exc.detail}"
    return error_text(exc)


def _explain_chunk(
    adapter: ModelAdapter,
    chunk: Sequence[RawItem],
    positions: list[int],
    *,
    methods: list[str],
    interactions: list[str],
    targets: Any,
    labels: tuple[str, ...],
    max_rows: Mapping[str, int | None] | None,
    method_options: Mapping[str, Mapping[str, Any]] | None,
    interaction_modalities: Sequence[str] | None,
    seed: int | None,
) -> list[ItemExplanation]:
    """Explain one batch; see :func:`explain_items`. ``positions`` index ``targets``."""
    batch = adapter.encode(chunk)
    p = prepare_batch(adapter, batch)
    preds = _predictions(p, chunk)
    described = adapter.describe_groups(batch)
    tlists = _resolve_targets(targets, preds, labels, positions)
    explanations = [
        ItemExplanation(
            item_id=item.get("id"),
            position=pos,
            modalities=p.modalities,
            labels=labels,
            prediction=pred,
            targets=tl,
            groups=[[g.as_dict() for g in mod] for mod in described[b]],
        )
        for b, (item, pos, pred, tl) in enumerate(zip(chunk, positions, preds, tlists))
    ]
    singles: dict[int, PreparedBatch] = {}

    def single(b: int) -> PreparedBatch:
        if len(chunk) == 1:
            return p
        if b not in singles:
            singles[b] = prepare_batch(adapter, adapter.encode([chunk[b]]))
        return singles[b]

    def one_item(b: int, name: str, t: Tensor, opts: dict[str, Any]) -> ItemAttribution:
        try:
            return attribute(adapter, None, method=name, targets=t, prepared=single(b), **opts)[0]
        except NonFiniteError as exc:
            raise _as_item(b, exc) from exc

    n_slots = max(len(tl) for tl in tlists)
    for k in range(n_slots):
        active = [k < len(tl) for tl in tlists]
        t_k = torch.tensor([tl[min(k, len(tl) - 1)] for tl in tlists], dtype=torch.long)
        for name in methods:
            opts = _options_for(name, max_rows, method_options, seed)
            if METHODS[name].per_example and len(chunk) > 1:
                res = [one_item(b, name, t_k[b : b + 1], opts) if active[b] else None for b in range(len(chunk))]
            else:
                res = attribute(adapter, batch, method=name, targets=t_k, prepared=p, **opts)
            for b, r in enumerate(res):
                if active[b]:
                    explanations[b].attributions.setdefault(name, []).append(r)
        for name in interactions:
            opts = _options_for(name, max_rows, method_options, seed)
            if name == "modality_interaction":
                mres = modality_interaction(
                    adapter, batch, targets=t_k, prepared=p, modalities=interaction_modalities, **opts
                )
                for b, r in enumerate(mres):
                    if active[b]:
                        explanations[b].modality_interactions.append(r)
            else:
                cres = cross_modal_interaction(
                    adapter, batch, method=name, targets=t_k, prepared=p, modalities=interaction_modalities, **opts
                )
                for b, r in enumerate(cres):
                    if active[b]:
                        explanations[b].cross_interactions.setdefault(name, []).append(r)
    return explanations


def explain_items_iter(
    adapter: ModelAdapter,
    items: Sequence[RawItem],
    *,
    methods: Sequence[str] = ("integrated_gradients",),
    interactions: Sequence[str] = (),
    targets: Any = "predicted",
    batch_size: int = 8,
    max_rows: Mapping[str, int | None] | None = None,
    method_options: Mapping[str, Mapping[str, Any]] | None = None,
    interaction_modalities: Sequence[str] | None = None,
    seed: int | None = 0,
    keep_going: bool = False,
    progress: Progress | None = None,
    lines: Mapping[str, int] | None = None,
) -> Iterator[ItemExplanation | ItemFailure]:
    """:func:`explain_items`, one result per item as each batch finishes, in order.

    With ``keep_going``, a batch that raises is redone one item at a time, and an item that
    still raises is yielded as an :class:`ItemFailure` (its error, naming no batch position)
    instead of ending the run: one bad item costs its own result only. Without it, the first
    error is raised, a :class:`~workers.engine.attribution.NonFiniteError` naming the items by
    id and by dataset line (``lines``: item id -> 1-based line) or, without one, by position
    in ``items``.

    Bad arguments (unknown names, a wrong number of targets) raise ``ValueError`` here, before
    any work. Cost: :func:`explain_items`'s, plus, per failed batch, a redo of its items one
    by one.
    """
    methods, interactions, items = list(methods), list(interactions), list(items)
    _validate(methods, interactions, targets, len(items))
    chunks = _chunks(items, batch_size)
    labels = tuple(str(x) for x in adapter.labels)
    options = dict(
        methods=methods,
        interactions=interactions,
        targets=targets,
        labels=labels,
        max_rows=max_rows,
        method_options=method_options,
        interaction_modalities=interaction_modalities,
        seed=seed,
    )

    def failure(item: RawItem, pos: int, exc: Exception) -> ItemFailure:
        return ItemFailure(
            item_id=item.get("id"), position=pos, error=_failure_text(exc), traceback="".join(format_exception(exc))
        )

    def alone(item: RawItem, pos: int) -> ItemExplanation | ItemFailure:
        try:
            return _explain_chunk(adapter, [item], [pos], **options)[0]
        except Exception as exc:
            return failure(item, pos, exc)

    def run() -> Iterator[ItemExplanation | ItemFailure]:
        done = 0
        for chunk in chunks:
            positions = list(range(done, done + len(chunk)))
            results: list[ItemExplanation | ItemFailure]
            try:
                results = list(_explain_chunk(adapter, chunk, positions, **options))
            except Exception as exc:
                if not keep_going:
                    if isinstance(exc, NonFiniteError) and exc.batch_items:
                        raise _naming_items(exc, chunk, positions, lines) from exc
                    raise
                results = (
                    [failure(chunk[0], positions[0], exc)]
                    if len(chunk) == 1
                    else [alone(item, pos) for item, pos in zip(chunk, positions)]
                )
            done += len(chunk)
            if progress is not None:
                progress(done, len(items))
            yield from results

    return run()


def explain_items(
    adapter: ModelAdapter,
    items: Sequence[RawItem],
    *,
    methods: Sequence[str] = ("integrated_gradients",),
    interactions: Sequence[str] = (),
    targets: Any = "predicted",
    batch_size: int = 8,
    max_rows: Mapping[str, int | None] | None = None,
    method_options: Mapping[str, Mapping[str, Any]] | None = None,
    interaction_modalities: Sequence[str] | None = None,
    seed: int | None = 0,
    progress: Progress | None = None,
    lines: Mapping[str, int] | None = None,
) -> list[ItemExplanation]:
    """Predict and explain every item.

    Args:
        adapter: a loaded adapter.
        items: ``N`` raw items.
        methods: attribution methods, keys of
            :data:`~workers.engine.attribution.METHODS`.
        interactions: any of :data:`INTERACTIONS` (``"modality_interaction"``,
            ``"second_order"``, ``"integrated_hessians"``, ``"perturbation"``).
        targets: which classes to explain: ``"predicted"`` (or None), ``"all"``, one class
            index for every item, or one entry per item (a class index or name, a list of
            candidate indices/names, or ``"predicted"``).
        batch_size: items per ``encode`` (and per prediction call).
        max_rows: per method/interaction name, the most rows per head call (defaults:
            :data:`DEFAULT_MAX_ROWS`; :func:`measure_best_batch_size` finds a fast value).
        method_options: per method/interaction name, extra options (``n_steps``,
            ``n_samples``...).
        interaction_modalities: the ``(A, B)`` pair for interactions (needed with more than
            two modalities).
        seed: seed for stochastic methods (unless their options give one).
        progress: called as ``progress(done_items, total_items)`` after each batch.
        lines: item id -> 1-based dataset line, to name an item in an error.

    Returns:
        One :class:`ItemExplanation` per item, in order.

    Cost: per batch, 1 forward pass per item for predictions, then for each target slot each
    method's cost (see its docstring). Items with fewer targets than others in the batch are
    padded with their last target (computed, not returned). Raises
    :class:`~workers.engine.attribution.NonFiniteError` naming the items (id and position in
    ``items``) when the model or a method produces NaN/Inf, ``ValueError`` for unknown names
    or bad targets. :func:`explain_items_iter` with ``keep_going`` isolates failing items.
    """
    results = explain_items_iter(
        adapter,
        items,
        methods=methods,
        interactions=interactions,
        targets=targets,
        batch_size=batch_size,
        max_rows=max_rows,
        method_options=method_options,
        interaction_modalities=interaction_modalities,
        seed=seed,
        progress=progress,
        lines=lines,
    )
    return [r for r in results if isinstance(r, ItemExplanation)]


@dataclass
class BatchSizeReport:
    """Result of :func:`measure_best_batch_size`.

    Attributes:
        method: the method or interaction timed.
        best: the ``max_rows`` with the highest throughput.
        seconds: per tried ``max_rows``, the best wall time of one run over the items.
        failed: per ``max_rows`` that failed (e.g. out of memory), the error.
    """

    method: str
    best: int | None
    seconds: dict[int, float]
    failed: dict[int, str]


def _is_oom(exc: BaseException) -> bool:
    return isinstance(exc, torch.OutOfMemoryError) or "out of memory" in str(exc).lower()


def measure_best_batch_size(
    adapter: ModelAdapter,
    items: Sequence[RawItem],
    *,
    method: str,
    candidates: Sequence[int] = (16, 32, 64, 128, 256, 512, 1024),
    targets: Any = "predicted",
    options: Mapping[str, Any] | None = None,
    repeats: int = 1,
    modalities: Sequence[str] | None = None,
) -> BatchSizeReport:
    """Time one method on ``items`` (one batch) for each ``max_rows`` candidate and return the
    fastest; stop at the first out-of-memory failure (larger values would fail too).

    Args:
        adapter: a loaded adapter.
        items: a representative batch of raw items (encoded together).
        method: an attribution method or interaction name.
        candidates: ``max_rows`` values to try, increasing.
        targets: as in :func:`explain_items`; only the first target per item is used.
        options: method options (besides ``max_rows``).
        repeats: runs per candidate (the minimum time is kept).
        modalities: the pair for interactions.

    Returns:
        :class:`BatchSizeReport`. Cost: ``len(candidates) * repeats`` runs of the method.
    """
    if method not in METHODS and method not in INTERACTIONS:
        raise ValueError(f"unknown method {method!r}")
    items = list(items)
    batch = adapter.encode(items)
    p = prepare_batch(adapter, batch)
    preds = _predictions(p, items)
    tl = _resolve_targets(targets, preds, tuple(str(x) for x in adapter.labels), list(range(len(items))))
    t = torch.tensor([x[0] for x in tl], dtype=torch.long)
    seconds: dict[int, float] = {}
    failed: dict[int, str] = {}
    for rows in sorted({int(c) for c in candidates}):
        opts = {**(options or {}), "max_rows": rows}
        try:
            best = float("inf")
            for _ in range(max(1, repeats)):
                start = time.perf_counter()
                if method in METHODS:
                    attribute(adapter, batch, method=method, targets=t, prepared=p, **opts)
                elif method == "modality_interaction":
                    modality_interaction(adapter, batch, targets=t, prepared=p, modalities=modalities, **opts)
                else:
                    cross_modal_interaction(
                        adapter, batch, method=method, targets=t, prepared=p, modalities=modalities, **opts
                    )
                best = min(best, time.perf_counter() - start)
            seconds[rows] = best
        except RuntimeError as exc:
            if not _is_oom(exc):
                raise
            failed[rows] = str(exc).splitlines()[0]
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            break
    best_rows = min(seconds, key=lambda r: (seconds[r], r)) if seconds else None
    return BatchSizeReport(method=method, best=best_rows, seconds=seconds, failed=failed)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m workers.engine.explain ADAPTER DATA.jsonl ...`` (see the module doc)."""
    parser = argparse.ArgumentParser(prog="python -m workers.engine.explain", description=__doc__.split("\n\n")[0])
    parser.add_argument("adapter", help="dotted path package.module:Factory")
    parser.add_argument("data", help="dataset JSONL file")
    parser.add_argument("--methods", default="integrated_gradients", help="comma-separated attribution methods")
    parser.add_argument("--interactions", default="", help="comma-separated interactions")
    parser.add_argument("--targets", default="predicted", help="'predicted', 'all' or a class index")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--limit", type=int, default=None, help="explain only the first N items")
    parser.add_argument("--out", default=None, help="write all arrays to this .npz")
    parser.add_argument("--json", default=None, help="write the JSON summaries here ('-': stdout)")
    args = parser.parse_args(argv)

    from workers.engine.adapter import AdapterError
    from workers.engine.dataset import read_dataset_jsonl
    from workers.engine.registry import load_adapter

    try:
        adapter = load_adapter(args.adapter, device=args.device)
        read = read_dataset_jsonl(args.data)[: args.limit]
        items = [line.item for line in read]
        targets: Any = int(args.targets) if args.targets.isdigit() else args.targets
        split = lambda s: [x.strip() for x in s.split(",") if x.strip()]  # noqa: E731
        results = explain_items(
            adapter,
            items,
            methods=split(args.methods),
            interactions=split(args.interactions),
            targets=targets,
            batch_size=args.batch_size,
            progress=lambda d, n: print(f"{d}/{n}", file=sys.stderr),
            lines={line.id: line.line for line in read},
        )
    except (AdapterError, ValueError, OSError) as exc:  # one line, no traceback (ValueError: NaN/Inf, bad lines)
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if args.out:
        arrays: dict[str, np.ndarray] = {}
        for res in results:
            arrays.update(res.to_arrays(prefix=f"{res.position}/"))
        np.savez_compressed(args.out, **arrays)
    if args.json:
        text = json.dumps([res.to_json() for res in results], indent=1)
        if args.json == "-":
            print(text)
        else:
            with open(args.json, "w") as fh:
                fh.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
