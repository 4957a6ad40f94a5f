"""Unimodal attributions through Captum, run on ``adapter.head``.

Every method attributes the logit of a *target class* (one per item, chosen by the caller:
the predicted class, or each candidate answer) to the embedded tensors that ``adapter.embed``
returns. The non-differentiable ``batch`` object never goes through Captum: the Captum
forward function is a closure over it (:class:`HeadCaller`), and Captum only sees one extra
``additional_forward_args`` tensor, the item index of every row, which Captum expands and
slices together with the inputs. That lets the closure honour the adapter protocol's row
convention (row ``r`` of a head call of ``N = k * B`` rows belongs to item ``r % B``) whatever
layout a Captum method uses internally (``repeat`` for IntegratedGradients/FeatureAblation,
``repeat_interleave`` for GradientShap, one example at a time for Lime/KernelShap).

Conventions (the same for every method)
---------------------------------------

* **Shapes.** ``B`` items; modality ``m`` has embedded inputs ``(B, *S_m)`` and a feature
  group mask broadcastable to them (``(B, 1, H, W)`` for an image, ``(B, T, 1)`` for tokens,
  ``(B, F)`` for tabular features). Dimensions where the mask has size 1 are *feature
  dimensions* (channels, embedding width); the others are *spatial dimensions*.
* **Maps** (``ItemAttribution.maps[m]``): the attribution reduced over the feature dimensions
  and squeezed, so an image gives ``(H, W)``, tokens ``(T,)``, tabular features ``(F,)``.
  Additive methods (integrated_gradients, saliency, input_x_gradient, gradient_shap) *sum*
  over the feature dimensions. Group-broadcast methods (feature_ablation, occlusion,
  shapley_value_sampling, kernel_shap, lime) give every element of a group the group's whole
  score, so they take the *mean* over the feature dimensions (a pixel then shows its group's
  score, not three times it).
* **Group scores** (``group_scores[m]``, 1-D, in increasing group-ID order ``group_ids[m]``):
  additive methods sum the attributions of a group's elements; group-broadcast methods take
  the mean over the group's elements, which is exactly the value Captum assigned to the group
  (for occlusion, whose windows ignore the groups, it is the average element score).
* **Modality share** (docs/DESIGN.md "Quantities"; Captum Insights' ``_calculate_net_contrib`` used by
  the multimodal VQA tutorial)::

      total_m = sum_g group_scores[m][g]          (net contribution of modality m)
      share_m = total_m / sum_m' |total_m'|        (0.0 for every m if the denominator is 0)

  so ``sum_m |share_m| = 1`` and the sign says whether the modality pushes the target logit
  up or down. For additive methods ``total_m`` is the sum of all of modality ``m``'s
  attributions.
* **Non-finite values** never come back as scores: NaN/Inf logits from the head, or NaN/Inf
  attributions, raise :class:`NonFiniteError` naming the method and the items.
* **Randomness.** Stochastic methods run under ``seed`` with the global torch and numpy RNGs
  forked and restored afterwards; a result is reproducible for the same seed and the same
  batch composition.
* **Batching.** ``max_rows`` bounds the rows of any one ``head`` call; each method turns it into
  its Captum knob (``internal_batch_size``, ``perturbations_per_eval``, GradientShap sample
  chunks). ``None`` means unbounded.

Pass counts are per item and in units of one row through ``head`` (a forward pass) and one
backward pass through it; ``G`` is the number of feature groups of the item over all
modalities.

No Django here.
"""

from __future__ import annotations

import contextlib
import inspect
import math
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from captum._utils.models.model import Model
from captum.attr import (
    FeatureAblation,
    GradientShap,
    InputXGradient,
    IntegratedGradients,
    KernelShap,
    Lime,
    Occlusion,
    Saliency,
    ShapleyValueSampling,
)
from torch import Tensor

from workers.engine.adapter import AdapterError, ModelAdapter

__all__ = [
    "AttributionMethod",
    "HeadCaller",
    "ItemAttribution",
    "METHODS",
    "NonFiniteError",
    "PreparedBatch",
    "RawAttribution",
    "WeightedLinearRegression",
    "as_targets",
    "attribute",
    "check_finite",
    "item_lines_places",
    "nonfinite_naming",
    "occlusion_windows",
    "prepare_batch",
    "run_method",
    "seeded",
    "summarize",
]


class NonFiniteError(ValueError):
    """The model produced NaN/Inf logits, or a method produced NaN/Inf attributions.

    The error is raised where the values appear, which knows only positions in a batch; the
    callers that know the items re-raise it naming them (:func:`nonfinite_naming`): by id,
    then by dataset line where the caller knows the lines.

    Attributes:
        detail: what went wrong, naming no items.
        batch_items: positions in the batch of the offending items (empty when unknown or once
            the items are named).
        item_ids: ids of the offending items, once a caller named them.
        places: per item id, where it is (``"line 7"``, ``"position 3"``), where known.
    """

    def __init__(
        self,
        detail: str,
        *,
        batch_items: Sequence[int] = (),
        item_ids: Sequence[str] = (),
        places: Mapping[str, str] | None = None,
    ):
        self.detail = detail
        self.batch_items = [int(b) for b in batch_items]
        self.item_ids = [str(i) for i in item_ids]
        self.places = dict(places or {})
        if self.item_ids:
            named = ", ".join(f"{i!r} ({self.places[i]})" if self.places.get(i) else repr(i) for i in self.item_ids)
            message = f"item(s) {named}: {detail}"
        elif self.batch_items:
            message = f"{detail} (batch item(s) {self.batch_items})"
        else:
            message = detail
        super().__init__(message)

    def naming(self, *, items: Sequence[Mapping[str, Any]]) -> NonFiniteError:
        """This error with its batch positions replaced by the ids of ``items`` (the batch)."""
        if self.item_ids or not self.batch_items:
            return self
        ids = [str(items[b].get("id", "?")) for b in self.batch_items if 0 <= b < len(items)]
        return NonFiniteError(self.detail, item_ids=ids) if ids else self

    def placed(self, *, places: Mapping[str, str]) -> NonFiniteError:
        """This error with each named item's place (``"line 7"``) added where ``places`` has it
        and none is given yet."""
        if not self.item_ids:
            return self
        merged = {i: self.places.get(i) or places.get(i, "") for i in self.item_ids}
        return NonFiniteError(self.detail, item_ids=self.item_ids, places={i: p for i, p in merged.items() if p})


def item_lines_places(*, lines: Mapping[str, int]) -> dict[str, str]:
    """``{item id: "line N"}`` from item ids' 1-based dataset lines, for :func:`nonfinite_naming`."""
    return {str(item_id): f"line {int(line)}" for item_id, line in lines.items() if line}


@contextlib.contextmanager
def nonfinite_naming(
    *, items: Sequence[Mapping[str, Any]] | None = None, places: Mapping[str, str] | None = None
) -> Iterator[None]:
    """Re-raise a :class:`NonFiniteError` from the body naming its items: batch positions
    become the ids of ``items`` (the batch the body ran on), and ``places`` (item id ->
    ``"line 7"``) adds where each item is."""
    try:
        yield
    except NonFiniteError as exc:
        named = exc.naming(items=items) if items is not None else exc
        if places:
            named = named.placed(places=places)
        if named is exc:
            raise
        raise named from exc


# --------------------------------------------------------------------------------------------
# Preparing a batch: embedded inputs, baselines, normalised group masks
# --------------------------------------------------------------------------------------------


@dataclass
class PreparedBatch:
    """One encoded batch with everything the methods need, computed once.

    Attributes:
        adapter: the loaded adapter.
        batch: what ``adapter.encode`` returned (passed back to ``head`` unchanged).
        modalities: modality names, in ``embed`` order.
        inputs: embedded tensors, one per modality, ``(B, *S_m)``, detached.
        baselines: reference tensors, each expanded to its input's shape ``(B, *S_m)``.
        masks: group-ID masks (long), each ``(B, *M_m)`` with ``M_m[d]`` either 1 (a feature
            dimension) or ``S_m[d]``; same number of dimensions as the input.
        group_ids: ``group_ids[b][m]``: sorted 1-D LongTensor of the group IDs item ``b`` has
            in modality ``m``.
    """

    adapter: ModelAdapter
    batch: Any
    modalities: tuple[str, ...]
    inputs: tuple[Tensor, ...]
    baselines: tuple[Tensor, ...]
    masks: tuple[Tensor, ...]
    group_ids: list[list[Tensor]]
    _tables: dict[int, tuple[Tensor, Tensor]] = field(default_factory=dict, repr=False)
    _slot_cache: dict[tuple[int, str], tuple[Tensor, Tensor]] = field(default_factory=dict, repr=False)

    @property
    def size(self) -> int:
        """``B``, the number of items."""
        return self.inputs[0].shape[0]

    @property
    def device(self) -> torch.device:
        return self.inputs[0].device

    @property
    def n_labels(self) -> int:
        return len(self.adapter.labels)

    @property
    def item_index(self) -> Tensor:
        """``arange(B)``: the extra forward argument Captum expands along with the inputs."""
        return torch.arange(self.size, device=self.device)

    def modality_index(self, name: str) -> int:
        try:
            return self.modalities.index(name)
        except ValueError:
            raise ValueError(f"unknown modality {name!r}; the adapter has {list(self.modalities)}") from None

    def n_groups(self, m: int) -> list[int]:
        """Number of groups of modality ``m`` per item."""
        return [len(ids[m]) for ids in self.group_ids]

    def group_table(self, m: int) -> tuple[Tensor, Tensor]:
        """Padded group-ID table of modality ``m``: ``ids`` ``(B, K)`` with the item's IDs in
        slots ``0..G_b-1`` and ``-1`` after, and ``valid`` ``(B, K)`` bool; ``K = max_b G_b``."""
        if m not in self._tables:
            counts = self.n_groups(m)
            k = max(counts)
            ids = torch.full((self.size, k), -1, dtype=torch.long, device=self.device)
            for b, row in enumerate(self.group_ids):
                ids[b, : counts[b]] = row[m]
            self._tables[m] = (ids, ids >= 0)
        return self._tables[m]

    def feature_dims(self, m: int) -> list[int]:
        """Dimensions (of the ``(B, *S_m)`` tensor) along which modality ``m``'s mask is 1."""
        mask = self.masks[m]
        return [d for d in range(1, mask.dim()) if mask.shape[d] == 1]

    def spatial_mask(self, m: int) -> Tensor:
        """The mask with its feature dimensions squeezed: ``(B, *spatial_m)``."""
        mask = self.masks[m]
        for d in sorted(self.feature_dims(m), reverse=True):
            mask = mask.squeeze(d)
        return mask

    def caller(self, what: str) -> HeadCaller:
        return HeadCaller(self.adapter, self.batch, self.inputs, what=what)


def _normalise_mask(mask: Any, inp: Tensor, name: str) -> Tensor:
    if not isinstance(mask, Tensor):
        raise AdapterError(f"feature_groups('{name}') must be a tensor, got {type(mask).__name__}")
    if mask.dtype.is_floating_point or mask.dtype.is_complex:
        if not torch.equal(mask, mask.round()):
            raise AdapterError(f"feature_groups('{name}') must hold integer group IDs")
    mask = mask.to(device=inp.device, dtype=torch.long)
    if mask.dim() > inp.dim():
        raise AdapterError(
            f"feature_groups('{name}') has shape {tuple(mask.shape)}, more dimensions "
            f"than the embedded tensor {tuple(inp.shape)}"
        )
    mask = mask.reshape((1,) * (inp.dim() - mask.dim()) + tuple(mask.shape))
    for d in range(inp.dim()):
        if mask.shape[d] not in (1, inp.shape[d]):
            raise AdapterError(
                f"feature_groups('{name}') shape {tuple(mask.shape)} does not broadcast "
                f"to the embedded shape {tuple(inp.shape)}"
            )
    mask = mask.expand(inp.shape[0], *mask.shape[1:]).contiguous()
    if mask.numel() and int(mask.min()) < 0:
        raise AdapterError(f"feature_groups('{name}') has negative group IDs")
    return mask


def prepare_batch(adapter: ModelAdapter, batch: Any) -> PreparedBatch:
    """Embed ``batch`` and collect baselines and feature groups, validating the protocol.

    Args:
        adapter: a loaded :class:`~workers.engine.adapter.ModelAdapter`.
        batch: the object ``adapter.encode(items)`` returned for ``B`` items.

    Returns:
        A :class:`PreparedBatch`. Cost: ``embed``, ``baselines`` and ``feature_groups`` once,
        no ``head`` call. Raises :class:`AdapterError` when the adapter breaks the protocol
        (wrong counts or shapes, non-float embeddings, group IDs shared between modalities).
    """
    modalities = tuple(str(m) for m in adapter.modalities)
    with torch.no_grad():
        inputs = tuple(adapter.embed(batch))
        baselines = tuple(adapter.baselines(batch))
        masks = tuple(adapter.feature_groups(batch))
    for what, seq in (("embed", inputs), ("baselines", baselines), ("feature_groups", masks)):
        if len(seq) != len(modalities):
            raise AdapterError(f"{what} returned {len(seq)} tensors for {len(modalities)} modalities")
    n = inputs[0].shape[0]
    inputs_out, baselines_out, masks_out = [], [], []
    for name, inp, base, mask in zip(modalities, inputs, baselines, masks):
        if not isinstance(inp, Tensor) or not inp.dtype.is_floating_point:
            raise AdapterError(f"embed('{name}') must be a floating-point tensor")
        if inp.dim() < 1 or inp.shape[0] != n:
            raise AdapterError(f"embed('{name}') shape {tuple(inp.shape)} is not batch-first with B={n}")
        inp = inp.detach()
        base = torch.as_tensor(base, device=inp.device).detach().to(inp.dtype)
        try:
            base = base.expand_as(inp).contiguous()
        except RuntimeError:
            raise AdapterError(
                f"baselines('{name}') shape {tuple(base.shape)} does not match the embedded shape {tuple(inp.shape)}"
            ) from None
        inputs_out.append(inp)
        baselines_out.append(base)
        masks_out.append(_normalise_mask(mask, inp, name))
    group_ids: list[list[Tensor]] = []
    for b in range(n):
        per_mod = [torch.unique(mask[b]) for mask in masks_out]
        all_ids = torch.cat(per_mod)
        if torch.unique(all_ids).numel() != all_ids.numel():
            raise AdapterError(
                f"item {b}: feature group IDs are not unique across modalities "
                "(the protocol numbers every modality's groups apart)"
            )
        group_ids.append(per_mod)
    return PreparedBatch(
        adapter=adapter,
        batch=batch,
        modalities=modalities,
        inputs=tuple(inputs_out),
        baselines=tuple(baselines_out),
        masks=tuple(masks_out),
        group_ids=group_ids,
    )


# --------------------------------------------------------------------------------------------
# Calling the head: row layout and finiteness
# --------------------------------------------------------------------------------------------


def _slots(idx: Tensor, n_items: int) -> tuple[Tensor, int]:
    """For rows with item indices ``idx`` ``(N,)``: each row's occurrence rank among the rows
    of the same item, and the largest number of rows any item has."""
    order = torch.argsort(idx, stable=True)
    counts = torch.bincount(idx, minlength=n_items)
    starts = torch.cumsum(counts, 0) - counts
    rank_sorted = torch.arange(idx.numel(), device=idx.device) - starts[idx[order]]
    slot = torch.empty_like(idx)
    slot[order] = rank_sorted
    return slot, int(counts.max())


class HeadCaller:
    """The forward function handed to Captum: ``caller(*inputs, item_index)`` -> logits.

    ``inputs`` are ``N`` rows per modality and ``item_index`` ``(N,)`` says which item each row
    belongs to. When the rows already follow the protocol layout (``N = k * B`` and row ``r``
    is item ``r % B``) the head gets them as they are. Otherwise (GradientShap interleaves
    samples; Lime and KernelShap send one item's rows at a time) the rows are moved into that
    layout: a permutation when every item has the same number of rows, else with the missing
    rows filled by the items' own unperturbed inputs (their outputs are discarded; this costs
    up to ``B`` times the forward rows, so per-example methods are best run on one-item
    batches). The move is differentiable, so gradients reach the caller's rows.

    Every head output is checked: NaN/Inf raises :class:`NonFiniteError`. ``calls`` and
    ``rows`` count head calls and rows, for cost reports and tests.
    """

    def __init__(self, adapter: ModelAdapter, batch: Any, base_inputs: Sequence[Tensor], *, what: str) -> None:
        self.adapter = adapter
        self.batch = batch
        self.base = tuple(base_inputs)
        self.n_items = self.base[0].shape[0]
        self.what = what
        self.calls = 0
        self.rows = 0

    def __call__(self, *args: Tensor) -> Tensor:
        *inputs, idx = args
        return self.forward_rows(tuple(inputs), idx)

    def forward_rows(self, inputs: Sequence[Tensor], idx: Tensor | None = None) -> Tensor:
        """Logits ``(N, n_labels)`` for ``N`` rows; ``idx`` defaults to ``arange(N) % B``."""
        n = inputs[0].shape[0]
        big_b = self.n_items
        if idx is None:
            if n % big_b:
                raise ValueError(f"{n} rows are not a multiple of the batch size {big_b}")
            return self._head(tuple(inputs))
        idx = idx.to(device=inputs[0].device, dtype=torch.long).reshape(-1)
        if n % big_b == 0 and torch.equal(idx, torch.arange(n, device=idx.device) % big_b):
            return self._head(tuple(inputs))
        slot, k = _slots(idx, big_b)
        pos = slot * big_b + idx
        if n == k * big_b:
            # Every item has k rows: pos is a permutation, so gather with its inverse instead
            # of tiling the base inputs and overwriting every row of the tiles (index_select:
            # its backward is an index_add, half the cost of indexing's index_put).
            inv = torch.empty_like(pos)
            inv[pos] = torch.arange(n, device=pos.device)
            return self._head(tuple(inp.index_select(0, inv) for inp in inputs))[pos]
        full = []
        for base, inp in zip(self.base, inputs):
            tiled = base.to(inp.dtype).repeat(k, *([1] * (base.dim() - 1)))
            full.append(tiled.index_copy(0, pos, inp))
        return self._head(tuple(full))[pos]

    def _head(self, inputs: tuple[Tensor, ...]) -> Tensor:
        out = self.adapter.head(*inputs, batch=self.batch)
        n = inputs[0].shape[0]
        self.calls += 1
        self.rows += n
        if not isinstance(out, Tensor) or out.dim() != 2 or out.shape[0] != n:
            raise AdapterError(
                f"head returned shape {tuple(getattr(out, 'shape', ()))} for {n} rows; expected ({n}, n_labels)"
            )
        bad = ~torch.isfinite(out).all(dim=1)
        if bool(bad.any()):
            rows = torch.nonzero(bad).flatten()
            items = sorted(set((rows % self.n_items).tolist()))
            raise NonFiniteError(
                f"adapter.head returned NaN/Inf logits during {self.what} ({int(bad.sum())} "
                f"of {n} rows); refusing to compute scores from them",
                batch_items=items,
            )
        return out


def check_finite(tensors: Sequence[Tensor | None], *, what: str) -> None:
    """Raise :class:`NonFiniteError` naming the items (first dimension) with NaN/Inf values."""
    for t in tensors:
        if t is None:
            continue
        flat = t.detach().reshape(t.shape[0], -1) if t.dim() > 0 else t.detach().reshape(1, 1)
        bad = ~torch.isfinite(flat).all(dim=1)
        if bool(bad.any()):
            items = torch.nonzero(bad).flatten().tolist()
            raise NonFiniteError(
                f"{what} produced NaN/Inf values; refusing to return them as scores", batch_items=items
            )


@contextlib.contextmanager
def seeded(seed: int | None, device: torch.device | None = None) -> Iterator[None]:
    """Run the body with torch and numpy seeded by ``seed``; restore both RNGs afterwards.

    ``seed=None`` leaves the RNGs alone.
    """
    if seed is None:
        yield
        return
    devices = []
    if device is not None and device.type == "cuda":
        devices = [device.index if device.index is not None else torch.cuda.current_device()]
    np_state = np.random.get_state()
    try:
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed)
            np.random.seed(seed % 2**32)
            yield
    finally:
        np.random.set_state(np_state)


def as_targets(targets: Any, size: int, n_labels: int, device: torch.device | None = None) -> Tensor:
    """Validate targets: an int (same for all items), or a sequence/tensor of ``size`` class
    indices. Returns a LongTensor ``(size,)``."""
    t = torch.as_tensor(targets, dtype=torch.long, device=device)
    if t.dim() == 0:
        t = t.expand(size)
    t = t.reshape(-1)
    if t.numel() != size:
        raise ValueError(f"got {t.numel()} targets for {size} items")
    if t.numel() and (int(t.min()) < 0 or int(t.max()) >= n_labels):
        raise ValueError(f"targets must be class indices in [0, {n_labels}); got {t.tolist()}")
    return t.contiguous()


# --------------------------------------------------------------------------------------------
# Interpretable surrogate for Lime / KernelShap (closed form; sklearn is not a dependency)
# --------------------------------------------------------------------------------------------


class WeightedLinearRegression(Model):
    """Weighted (ridge) linear regression in closed form, usable as Captum's
    ``interpretable_model``.

    Minimises ``sum_i w_i (y_i - c - z_i . beta)^2 + alpha * |beta|^2`` (the intercept ``c``
    is not penalised), like ``sklearn.linear_model.Ridge``/``LinearRegression`` with
    ``sample_weight``. ``alpha=0`` is ordinary weighted least squares (minimum-norm solution
    when rank deficient), which is what Captum's KernelShap fits; the reference ``lime``
    package fits ``Ridge(alpha=1)``.
    """

    def __init__(self, alpha: float = 0.0) -> None:
        self.alpha = float(alpha)
        self.weight: Tensor | None = None
        self.intercept: Tensor | None = None

    def fit(self, train_data: Any, **kwargs: Any) -> dict[str, float]:
        xs, ys, ws = [], [], []
        for data in train_data:
            x, y = data[0], data[1]
            w = data[2] if len(data) > 2 else torch.ones(x.shape[0])
            xs.append(x.reshape(x.shape[0], -1))
            ys.append(y.reshape(-1))
            ws.append(w.reshape(-1))
        device = xs[0].device
        x = torch.cat(xs).cpu().to(torch.float64)  # solve on CPU in float64, whatever the device
        y = torch.cat(ys).cpu().to(torch.float64)
        w = torch.cat(ws).cpu().to(torch.float64)
        wsum = w.sum()
        x_mean = (w[:, None] * x).sum(0) / wsum
        y_mean = (w * y).sum() / wsum
        sw = w.sqrt()
        xc = (x - x_mean) * sw[:, None]
        yc = (y - y_mean) * sw
        if self.alpha > 0:
            gram = xc.T @ xc + self.alpha * torch.eye(x.shape[1], dtype=torch.float64)
            beta = torch.linalg.solve(gram, xc.T @ yc)
        else:
            beta = torch.linalg.pinv(xc) @ yc
        self.weight = beta.reshape(1, -1).to(device=device, dtype=torch.float32)
        self.intercept = (y_mean - x_mean @ beta).reshape(1).to(device=device, dtype=torch.float32)
        return {}

    def representation(self) -> Tensor:
        if self.weight is None:
            raise RuntimeError("fit() first")
        return self.weight

    def __call__(self, x: Tensor) -> Tensor:  # type: ignore[override]
        if self.weight is None or self.intercept is None:
            raise RuntimeError("fit() first")
        return x.to(self.weight.dtype) @ self.weight.T + self.intercept


# --------------------------------------------------------------------------------------------
# The methods
# --------------------------------------------------------------------------------------------


@dataclass
class RawAttribution:
    """What a method returns before summarising: Captum's attributions, one tensor per
    modality ``(B, *S_m)``; the per-item convergence delta ``(B,)`` where the method has one;
    the head calls and rows it used."""

    attributions: tuple[Tensor, ...]
    delta: Tensor | None = None
    head_calls: int = 0
    head_rows: int = 0


def _per_eval(max_rows: int | None, size: int, unbounded: int) -> int:
    if max_rows is None:
        return max(1, unbounded)
    return max(1, int(max_rows) // size)


def _raw(attrs: Any, caller: HeadCaller, delta: Tensor | None = None) -> RawAttribution:
    attrs = attrs if isinstance(attrs, tuple) else (attrs,)
    return RawAttribution(
        tuple(a.detach() for a in attrs), None if delta is None else delta.detach(), caller.calls, caller.rows
    )


def integrated_gradients(
    p: PreparedBatch, targets: Tensor, *, n_steps: int = 50, method: str = "gausslegendre", max_rows: int | None = None
) -> RawAttribution:
    r"""Integrated Gradients (Sundararajan et al. 2017) from the adapter's baselines.

    ``attr_i = (x_i - x'_i) * integral_0^1 df(x' + a (x - x'))/dx_i da`` on the target logit,
    by Captum's ``IntegratedGradients`` (``multiply_by_inputs=True``).

    Args:
        p (PreparedBatch): ``B`` items; inputs ``(B, *S_m)`` per modality, baselines of the
                    same shapes.
        targets (LongTensor): ``(B,)`` target class per item.
        n_steps (int): quadrature points on the path. Default: 50.
        method (str): Captum quadrature, ``"gausslegendre"`` or ``"riemann_*"``.
        max_rows (int, optional): the most rows per head call; Captum's
                    ``internal_batch_size`` (at least ``B``).

    Returns:
        RawAttribution: attributions ``(B, *S_m)`` per modality and the convergence delta
        ``(B,)``: ``sum(attr) - (f(x) - f(x'))``.

    Cost: ``n_steps`` forward and ``n_steps`` backward passes per item (in
    ``ceil(n_steps * B / max_rows)`` head calls), plus 2 forward passes per item for the delta.
    """
    caller = p.caller("integrated_gradients")
    internal = None if max_rows is None else max(int(max_rows), p.size)
    attrs, delta = IntegratedGradients(caller).attribute(
        p.inputs,
        baselines=p.baselines,
        target=targets,
        additional_forward_args=(p.item_index,),
        n_steps=n_steps,
        method=method,
        internal_batch_size=internal,
        return_convergence_delta=True,
    )
    return _raw(attrs, caller, delta)


def saliency(p: PreparedBatch, targets: Tensor, *, abs: bool = True, max_rows: int | None = None) -> RawAttribution:
    r"""Saliency (Simonyan et al. 2013): the gradient of the target logit, by Captum's
    ``Saliency`` (absolute value by default).

    Args:
        p (PreparedBatch): ``B`` items; inputs ``(B, *S_m)`` per modality.
        targets (LongTensor): ``(B,)`` target class per item.
        abs (bool): return ``|grad|``. Default: True.
        max_rows (int, optional): unused (one call of ``B`` rows).

    Returns:
        RawAttribution: attributions ``(B, *S_m)`` per modality; no delta.

    Cost: 1 forward and 1 backward pass per item, in one head call.
    """
    caller = p.caller("saliency")
    attrs = Saliency(caller).attribute(p.inputs, target=targets, abs=abs, additional_forward_args=(p.item_index,))
    return _raw(attrs, caller)


def input_x_gradient(p: PreparedBatch, targets: Tensor, *, max_rows: int | None = None) -> RawAttribution:
    r"""Input x Gradient (Shrikumar et al. 2016): ``x * df/dx`` on the target logit, by
    Captum's ``InputXGradient``. Multiplies by the input itself, not by ``x - baseline``.

    Args:
        p (PreparedBatch): ``B`` items; inputs ``(B, *S_m)`` per modality.
        targets (LongTensor): ``(B,)`` target class per item.
        max_rows (int, optional): unused (one call of ``B`` rows).

    Returns:
        RawAttribution: attributions ``(B, *S_m)`` per modality; no delta.

    Cost: 1 forward and 1 backward pass per item, in one head call.
    """
    caller = p.caller("input_x_gradient")
    attrs = InputXGradient(caller).attribute(p.inputs, target=targets, additional_forward_args=(p.item_index,))
    return _raw(attrs, caller)


def gradient_shap(
    p: PreparedBatch,
    targets: Tensor,
    *,
    n_samples: int = 20,
    stdevs: float = 0.0,
    baselines: tuple[Tensor, ...] | None = None,
    seed: int | None = 0,
    max_rows: int | None = None,
) -> RawAttribution:
    r"""GradientShap (Lundberg & Lee 2017) by Captum's ``GradientShap``: the expectation of
    ``(x - x') * grad f(x' + a (x - x') + noise)`` over random ``a ~ U(0, 1)`` and baselines
    ``x'`` drawn from a distribution.

    Captum's baselines are one distribution shared by the whole batch (rows drawn at random),
    not one baseline per item. By default the distribution is this batch's adapter baselines
    (``B`` rows), so an item may be compared with another item's baseline; pass ``baselines``
    (a tuple of ``(R, *S_m)`` tensors) for a fixed distribution that does not depend on the
    batch composition.

    Args:
        p (PreparedBatch): ``B`` items; inputs ``(B, *S_m)`` per modality.
        targets (LongTensor): ``(B,)`` target class per item.
        n_samples (int): random samples per item. Default: 20.
        stdevs (float): std of the gaussian noise added to the inputs. Default: 0.
        baselines (tuple[Tensor, ...], optional): baseline distribution, ``(R, *S_m)`` each.
        seed (int, optional): RNG seed (numpy draws the baselines and ``a``, torch the noise).
        max_rows (int, optional): the most rows per head call; the samples are split into
                    ``ceil(n_samples * B / max_rows)`` Captum calls whose results are averaged
                    (weighted by their sample counts).

    Returns:
        RawAttribution: attributions ``(B, *S_m)`` per modality; no delta.

    Cost: ``n_samples`` forward and ``n_samples`` backward passes per item.
    """
    caller = p.caller("gradient_shap")
    dist = p.baselines if baselines is None else tuple(baselines)
    per_call = _per_eval(max_rows, p.size, n_samples)
    chunks = [min(per_call, n_samples - s) for s in range(0, n_samples, per_call)]
    total: list[Tensor] | None = None
    gs = GradientShap(caller)
    with seeded(seed, p.device):
        for n in chunks:
            attrs = gs.attribute(
                p.inputs,
                baselines=dist,
                target=targets,
                additional_forward_args=(p.item_index,),
                n_samples=n,
                stdevs=stdevs,
            )
            attrs = attrs if isinstance(attrs, tuple) else (attrs,)
            scaled = [a.detach() * (n / n_samples) for a in attrs] if len(chunks) > 1 else list(attrs)
            total = scaled if total is None else [t + s for t, s in zip(total, scaled)]
    assert total is not None
    return _raw(tuple(total), caller)


def feature_ablation(p: PreparedBatch, targets: Tensor, *, max_rows: int | None = None) -> RawAttribution:
    r"""Feature ablation on the adapter's feature groups, by Captum's ``FeatureAblation``
    with one cross-tensor feature mask: the score of group ``g`` is ``f(x) - f(x with group g
    at its baseline)``.

    Args:
        p (PreparedBatch): ``B`` items; inputs ``(B, *S_m)``, masks ``(B, *M_m)`` with IDs
                    unique across modalities.
        targets (LongTensor): ``(B,)`` target class per item.
        max_rows (int, optional): the most rows per head call; Captum's
                    ``perturbations_per_eval = max_rows // B``.

    Returns:
        RawAttribution: attributions ``(B, *S_m)``, every element holding its group's score.

    Cost: ``1 + G`` forward passes per item (``G`` = the largest group count in the batch),
    no backward pass.
    """
    caller = p.caller("feature_ablation")
    n_features = max(sum(len(ids) for ids in row) for row in p.group_ids)
    attrs = FeatureAblation(caller).attribute(
        p.inputs,
        baselines=p.baselines,
        target=targets,
        additional_forward_args=(p.item_index,),
        feature_mask=p.masks,
        perturbations_per_eval=_per_eval(max_rows, p.size, n_features),
    )
    return _raw(attrs, caller)


def _default_windows(p: PreparedBatch) -> tuple[tuple[int, ...], ...]:
    windows = []
    for m, inp in enumerate(p.inputs):
        feat = set(p.feature_dims(m))
        spatial = [d for d in range(1, inp.dim()) if d not in feat]
        shape = []
        for d in range(1, inp.dim()):
            if d in feat:
                shape.append(inp.shape[d])
            elif len(spatial) >= 2:
                shape.append(max(1, inp.shape[d] // 8))
            else:
                shape.append(1)
        windows.append(tuple(shape))
    return tuple(windows)


def _normalise_strides(strides: Any, windows: tuple[tuple[int, ...], ...]) -> tuple[tuple[int, ...], ...]:
    """Captum's strides forms (None, an int, or one int/tuple per modality) -> one tuple per
    modality."""
    if strides is None:
        return windows
    if isinstance(strides, int):
        return tuple((strides,) * len(w) for w in windows)
    strides = tuple(strides)
    if len(strides) != len(windows):
        raise ValueError("occlusion strides must be an int or one entry per modality")
    return tuple((s,) * len(w) if isinstance(s, int) else tuple(s) for s, w in zip(strides, windows))


def occlusion_windows(
    p: PreparedBatch, *, sliding_window_shapes: tuple[tuple[int, ...], ...] | None = None, strides: Any = None
) -> tuple[tuple[tuple[int, ...], ...], tuple[tuple[int, ...], ...], int]:
    """The windows :func:`occlusion` slides over ``p``, for callers that count its passes
    (the benchmark's floor) without running it.

    Args:
        p (PreparedBatch): the items; inputs ``(B, *S_m)`` per modality.
        sliding_window_shapes (tuple of tuples, optional): as for :func:`occlusion`.
        strides (optional): as for :func:`occlusion`.

    Returns:
        tuple: ``(windows, strides, n_windows)``: one window shape and one stride tuple per
        modality (Captum's forms resolved) and ``W``, the window positions per item summed
        over the modalities.
    """
    windows = tuple(tuple(int(v) for v in w) for w in (sliding_window_shapes or _default_windows(p)))
    if len(windows) != len(p.inputs):
        raise ValueError(f"occlusion needs one window shape per modality ({len(p.inputs)}), got {len(windows)}")
    strides_n = _normalise_strides(strides, windows)
    n_windows = sum(
        math.prod((s - w) // t + 1 for s, w, t in zip(inp.shape[1:], win, st))
        for inp, win, st in zip(p.inputs, windows, strides_n)
    )
    return windows, strides_n, n_windows


def occlusion(
    p: PreparedBatch,
    targets: Tensor,
    *,
    sliding_window_shapes: tuple[tuple[int, ...], ...] | None = None,
    strides: Any = None,
    max_rows: int | None = None,
) -> RawAttribution:
    r"""Occlusion (Zeiler & Fergus 2014) by Captum's ``Occlusion``: sliding windows replaced
    by the baseline; each element gets the mean output drop of the windows covering it.
    Windows ignore the adapter's groups (group scores are then mean element scores).

    Args:
        p (PreparedBatch): ``B`` items; inputs ``(B, *S_m)`` per modality.
        targets (LongTensor): ``(B,)`` target class per item.
        sliding_window_shapes (tuple of tuples, optional): one window shape per modality,
                    excluding the batch dimension. Default: the whole extent along feature
                    dimensions; along spatial dimensions ``size // 8`` when a modality has two
                    or more of them (image patches), else 1 (one token or feature).
        strides (optional): Captum strides. Default: the window shapes (no overlap).
        max_rows (int, optional): the most rows per head call
                    (``perturbations_per_eval = max_rows // B``).

    Returns:
        RawAttribution: attributions ``(B, *S_m)`` per modality.

    Cost: ``1 + W`` forward passes per item, ``W`` = total number of window positions.
    """
    caller = p.caller("occlusion")
    windows, strides_n, n_windows = occlusion_windows(p, sliding_window_shapes=sliding_window_shapes, strides=strides)
    attrs = Occlusion(caller).attribute(
        p.inputs,
        sliding_window_shapes=windows,
        strides=strides_n,
        baselines=p.baselines,
        target=targets,
        additional_forward_args=(p.item_index,),
        perturbations_per_eval=_per_eval(max_rows, p.size, n_windows),
    )
    return _raw(attrs, caller)


def shapley_value_sampling(
    p: PreparedBatch, targets: Tensor, *, n_samples: int = 25, seed: int | None = 0, max_rows: int | None = None
) -> RawAttribution:
    r"""Shapley Value Sampling (Castro et al. 2009) on the feature groups, by Captum's
    ``ShapleyValueSampling``: groups are added from the baseline in ``n_samples`` random
    orders and each group gets its mean marginal contribution.

    Args:
        p (PreparedBatch): ``B`` items; inputs ``(B, *S_m)``, masks ``(B, *M_m)``.
        targets (LongTensor): ``(B,)`` target class per item.
        n_samples (int): random permutations (shared by the batch). Default: 25.
        seed (int, optional): RNG seed for the permutations.
        max_rows (int, optional): the most rows per head call
                    (``perturbations_per_eval = max_rows // B``).

    Returns:
        RawAttribution: attributions ``(B, *S_m)``, every element holding its group's score.

    Cost: ``1 + n_samples * G`` forward passes per item, no backward pass.
    """
    caller = p.caller("shapley_value_sampling")
    n_features = max(sum(len(ids) for ids in row) for row in p.group_ids)
    with seeded(seed, p.device):
        attrs = ShapleyValueSampling(caller).attribute(
            p.inputs,
            baselines=p.baselines,
            target=targets,
            additional_forward_args=(p.item_index,),
            feature_mask=p.masks,
            n_samples=n_samples,
            perturbations_per_eval=_per_eval(max_rows, p.size, n_features),
        )
    return _raw(attrs, caller)


def kernel_shap(
    p: PreparedBatch,
    targets: Tensor,
    *,
    n_samples: int = 64,
    seed: int | None = 0,
    interpretable_model: Model | None = None,
    max_rows: int | None = None,
) -> RawAttribution:
    r"""Kernel SHAP (Lundberg & Lee 2017) on the feature groups, by Captum's ``KernelShap``
    with its Shapley-kernel sampling and a closed-form weighted least-squares surrogate
    (:class:`WeightedLinearRegression`, ``alpha=0``; Captum's default surrogate needs sklearn).

    Captum fits one surrogate per item, one item at a time; with ``B > 1`` the head calls are
    padded to the protocol layout (see :class:`HeadCaller`), so prefer one-item batches.

    Args:
        p (PreparedBatch): ``B`` items; inputs ``(B, *S_m)``, masks ``(B, *M_m)``.
        targets (LongTensor): ``(B,)`` target class per item.
        n_samples (int): coalitions sampled per item. Default: 64.
        seed (int, optional): RNG seed for the coalitions.
        interpretable_model (captum Model, optional): surrogate to fit instead.
        max_rows (int, optional): the most rows per head call.

    Returns:
        RawAttribution: attributions ``(B, *S_m)``, every element holding its group's score.

    Cost: ``n_samples`` forward passes per item (times ``B`` when ``B > 1``), plus one
    weighted least-squares solve in ``G`` unknowns.
    """
    caller = p.caller("kernel_shap")
    ks = KernelShap(caller)
    ks.interpretable_model = interpretable_model or WeightedLinearRegression(alpha=0.0)
    with seeded(seed, p.device):
        attrs = ks.attribute(
            p.inputs,
            baselines=p.baselines,
            target=targets,
            additional_forward_args=(p.item_index,),
            feature_mask=p.masks,
            n_samples=n_samples,
            perturbations_per_eval=_per_eval(max_rows, p.size, n_samples),
        )
    return _raw(attrs, caller)


def lime(
    p: PreparedBatch,
    targets: Tensor,
    *,
    n_samples: int = 64,
    seed: int | None = 0,
    interpretable_model: Model | None = None,
    similarity_func: Callable | None = None,
    perturb_func: Callable | None = None,
    max_rows: int | None = None,
) -> RawAttribution:
    r"""LIME (Ribeiro et al. 2016) on the feature groups, by Captum's ``Lime``: random binary
    group masks (each group kept with probability 1/2, else set to its baseline), weighted by
    Captum's exponential cosine-distance kernel, fitted by a weighted ridge regression
    (:class:`WeightedLinearRegression`, ``alpha=1`` as in the reference ``lime`` package;
    Captum's default Lasso needs sklearn).

    Captum fits one surrogate per item, one item at a time; with ``B > 1`` the head calls are
    padded to the protocol layout (see :class:`HeadCaller`), so prefer one-item batches.

    Args:
        p (PreparedBatch): ``B`` items; inputs ``(B, *S_m)``, masks ``(B, *M_m)``.
        targets (LongTensor): ``(B,)`` target class per item.
        n_samples (int): perturbed samples per item. Default: 64.
        seed (int, optional): RNG seed for the samples.
        interpretable_model, similarity_func, perturb_func (optional): Captum ``Lime`` parts.
        max_rows (int, optional): the most rows per head call.

    Returns:
        RawAttribution: attributions ``(B, *S_m)``, every element holding its group's score.

    Cost: ``n_samples`` forward passes per item (times ``B`` when ``B > 1``), plus one ridge
    solve in ``G`` unknowns.
    """
    caller = p.caller("lime")
    kwargs: dict[str, Any] = {"interpretable_model": interpretable_model or WeightedLinearRegression(alpha=1.0)}
    if similarity_func is not None:
        kwargs["similarity_func"] = similarity_func
    if perturb_func is not None:
        kwargs["perturb_func"] = perturb_func
    with seeded(seed, p.device):
        attrs = Lime(caller, **kwargs).attribute(
            p.inputs,
            baselines=p.baselines,
            target=targets,
            additional_forward_args=(p.item_index,),
            feature_mask=p.masks,
            n_samples=n_samples,
            perturbations_per_eval=_per_eval(max_rows, p.size, n_samples),
        )
    return _raw(attrs, caller)


@dataclass(frozen=True)
class AttributionMethod:
    """A registry entry.

    Attributes:
        name: registry key.
        run: ``run(prepared, targets, **options) -> RawAttribution``.
        captum_class: the Captum class it wraps.
        group_reduce: ``"sum"`` (additive element attributions) or ``"mean"`` (Captum
            broadcasts each group's score to its elements).
        stochastic: takes a ``seed`` option.
        per_example: Captum handles one item at a time (best run on one-item batches).
        gradient: needs gradients of the head.
        default_max_rows: default bound on rows per head call.
        cost: forward/backward passes per item.
    """

    name: str
    run: Callable[..., RawAttribution]
    captum_class: type
    group_reduce: str
    stochastic: bool
    per_example: bool
    gradient: bool
    default_max_rows: int | None
    cost: str

    def options(self) -> dict[str, Any]:
        """The method's options and their defaults."""
        sig = inspect.signature(self.run)
        return {k: v.default for k, v in list(sig.parameters.items())[2:]}


METHODS: dict[str, AttributionMethod] = {
    spec.name: spec
    for spec in (
        AttributionMethod(
            "integrated_gradients",
            integrated_gradients,
            IntegratedGradients,
            "sum",
            False,
            False,
            True,
            256,
            "n_steps forward + n_steps backward, + 2 forward for the delta",
        ),
        AttributionMethod("saliency", saliency, Saliency, "sum", False, False, True, None, "1 forward + 1 backward"),
        AttributionMethod(
            "input_x_gradient",
            input_x_gradient,
            InputXGradient,
            "sum",
            False,
            False,
            True,
            None,
            "1 forward + 1 backward",
        ),
        AttributionMethod(
            "gradient_shap",
            gradient_shap,
            GradientShap,
            "sum",
            True,
            False,
            True,
            256,
            "n_samples forward + n_samples backward",
        ),
        AttributionMethod(
            "feature_ablation", feature_ablation, FeatureAblation, "mean", False, False, False, 256, "1 + G forward"
        ),
        AttributionMethod(
            "occlusion",
            occlusion,
            Occlusion,
            "mean",
            False,
            False,
            False,
            256,
            "1 + number of window positions forward",
        ),
        AttributionMethod(
            "shapley_value_sampling",
            shapley_value_sampling,
            ShapleyValueSampling,
            "mean",
            True,
            False,
            False,
            256,
            "1 + n_samples * G forward",
        ),
        AttributionMethod(
            "kernel_shap",
            kernel_shap,
            KernelShap,
            "mean",
            True,
            True,
            False,
            256,
            "n_samples forward (x B padding when B > 1)",
        ),
        AttributionMethod(
            "lime", lime, Lime, "mean", True, True, False, 256, "n_samples forward (x B padding when B > 1)"
        ),
    )
}


# --------------------------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------------------------


@dataclass
class ItemAttribution:
    """One item's attribution for one target class by one method (conventions: module doc).

    Attributes:
        method: registry name.
        target: target class index.
        modalities: modality names.
        maps: per modality, the attribution reduced over feature dimensions (image ``(H, W)``,
            tokens ``(T,)``, tabular ``(F,)``).
        group_ids: per modality, the item's group IDs, increasing.
        group_scores: per modality, one score per group in ``group_ids`` order.
        modality_totals: per modality, the sum of its group scores.
        modality_share: per modality, ``total_m / sum_m' |total_m'|``.
        convergence_delta: integrated_gradients only: ``sum(attr) - (f(x) - f(x'))``.
        options: the options the method ran with (provenance).
    """

    method: str
    target: int
    modalities: tuple[str, ...]
    maps: dict[str, np.ndarray]
    group_ids: dict[str, np.ndarray]
    group_scores: dict[str, np.ndarray]
    modality_totals: dict[str, float]
    modality_share: dict[str, float]
    convergence_delta: float | None = None
    options: dict[str, Any] = field(default_factory=dict)

    def to_arrays(self, prefix: str = "") -> dict[str, np.ndarray]:
        """Flat ``{key: array}`` for ``np.savez``: ``{prefix}{modality}/map``,
        ``.../group_ids``, ``.../group_scores``."""
        out: dict[str, np.ndarray] = {}
        for m in self.modalities:
            out[f"{prefix}{m}/map"] = self.maps[m]
            out[f"{prefix}{m}/group_ids"] = self.group_ids[m]
            out[f"{prefix}{m}/group_scores"] = self.group_scores[m]
        return out

    def to_json(self) -> dict[str, Any]:
        """Plain JSON-able dict: everything but the maps (see ``to_arrays``), whose shapes it
        records."""
        return {
            "method": self.method,
            "target": self.target,
            "modalities": list(self.modalities),
            "group_ids": {m: self.group_ids[m].tolist() for m in self.modalities},
            "group_scores": {m: self.group_scores[m].tolist() for m in self.modalities},
            "modality_totals": dict(self.modality_totals),
            "modality_share": dict(self.modality_share),
            "convergence_delta": self.convergence_delta,
            "map_shapes": {m: list(self.maps[m].shape) for m in self.modalities},
            "options": _jsonable(self.options),
        }


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (str, int, float, bool)) or obj is None:
        return obj
    if isinstance(obj, (np.integer, np.floating)):
        return obj.item()
    return repr(obj)


def summarize(
    p: PreparedBatch,
    raw: RawAttribution,
    *,
    method: str,
    targets: Tensor,
    group_reduce: str,
    options: Mapping[str, Any] | None = None,
) -> list[ItemAttribution]:
    """Turn Captum's ``(B, *S_m)`` attributions into per-item maps, group scores and shares.

    Raises :class:`NonFiniteError` if an attribution or the delta is NaN/Inf.
    """
    if group_reduce not in ("sum", "mean"):
        raise ValueError(f"group_reduce must be 'sum' or 'mean', got {group_reduce!r}")
    check_finite([raw.delta], what=method)
    per_mod_maps, per_mod_scores, per_mod_ids = [], [], []
    for m, attr in enumerate(raw.attributions):
        # float64 on CPU before any reduction (also fine for MPS inputs, which lack float64);
        # contiguous, because a reduction over the innermost dimension of a channels-last
        # gradient is ~10x slower (same values).
        attr = attr.detach().cpu().to(torch.float64, memory_format=torch.contiguous_format)
        dims = p.feature_dims(m)
        factor = math.prod(attr.shape[d] for d in dims) if dims else 1
        reduced = attr.sum(dim=dims) if dims else attr
        smask = p.spatial_mask(m).cpu()
        if reduced.shape != smask.shape:
            raise AdapterError(
                f"{method}: attribution shape {tuple(attr.shape)} does not match the "
                f"mask of modality {p.modalities[m]!r}"
            )
        # All items at once: each element's slot in its item's sorted group-ID row (padding
        # past an item's groups is int64 max, so every row stays sorted), then one scatter.
        table, slot = _group_slots(p, m, smask)
        scores = torch.zeros(table.shape, dtype=torch.float64)
        scores.scatter_add_(1, slot, reduced.reshape(p.size, -1))
        # Every element lands in one group's float64 sum (which cannot overflow for finite
        # float32 inputs), so a NaN/Inf attribution anywhere makes its item's score row
        # non-finite: checking the (B, K) sums checks every attribution, at a fraction of
        # the cost of scanning the full tensors.
        check_finite([scores], what=method)
        if group_reduce == "mean":
            counts = torch.zeros(table.shape, dtype=torch.float64)
            counts.scatter_add_(1, slot, torch.ones(slot.shape, dtype=torch.float64))
            scores = scores / (counts * factor)  # padded slots: 0/0, never returned
        maps = (reduced / factor) if group_reduce == "mean" else reduced
        counts_b = p.n_groups(m)
        scores_np, table_np = scores.numpy(), table.numpy()
        per_mod_maps.append(maps.numpy())
        per_mod_scores.append([scores_np[b, : counts_b[b]] for b in range(p.size)])
        per_mod_ids.append([table_np[b, : counts_b[b]] for b in range(p.size)])
    target_list = targets.detach().cpu().tolist()
    delta_list = None if raw.delta is None else raw.delta.detach().cpu().reshape(-1).tolist()
    out = []
    for b in range(p.size):
        totals = {name: float(per_mod_scores[m][b].sum()) for m, name in enumerate(p.modalities)}
        denom = sum(abs(v) for v in totals.values())
        share = {name: (v / denom if denom > 0 else 0.0) for name, v in totals.items()}
        out.append(
            ItemAttribution(
                method=method,
                target=int(target_list[b]),
                modalities=p.modalities,
                maps={name: per_mod_maps[m][b] for m, name in enumerate(p.modalities)},
                group_ids={name: per_mod_ids[m][b] for m, name in enumerate(p.modalities)},
                group_scores={name: per_mod_scores[m][b] for m, name in enumerate(p.modalities)},
                modality_totals=totals,
                modality_share=share,
                convergence_delta=None if delta_list is None else float(delta_list[b]),
                options=dict(options or {}),
            )
        )
    return out


_INT64_MAX = torch.iinfo(torch.int64).max


def _group_slots(p: PreparedBatch, m: int, smask: Tensor) -> tuple[Tensor, Tensor]:
    """Modality ``m``'s padded group table with the padding set to int64 max (rows stay
    sorted), ``(B, K)``, and every element's slot in its item's row, ``(B, prod(spatial_m))``:
    ``table[b, slot[b, e]]`` is the group ID of element ``e`` of item ``b``. On ``smask``'s
    device; cached in ``p`` per (modality, device).

    Small group IDs (the usual 0..G-1 numbering) are looked up in a dense ``(B, max_id + 1)``
    table, larger ones by a batched binary search; both give the same slots."""
    key = (m, str(smask.device))
    if key not in p._slot_cache:
        ids, valid = (t.to(smask.device) for t in p.group_table(m))
        table = ids.masked_fill(~valid, _INT64_MAX)
        flat = smask.reshape(p.size, -1)
        max_id = int(ids.max()) if ids.numel() else -1
        if 0 <= max_id and (max_id + 1) * p.size <= max(4 * flat.numel(), 1 << 16):
            rows, cols = valid.nonzero(as_tuple=True)
            lut = torch.zeros((p.size, max_id + 1), dtype=torch.long, device=smask.device)
            lut[rows, ids[rows, cols]] = cols
            slot = lut.gather(1, flat)
        else:
            slot = torch.searchsorted(table, flat.contiguous())
        p._slot_cache[key] = (table, slot)
    return p._slot_cache[key]


def _get_method(method: str) -> AttributionMethod:
    try:
        return METHODS[method]
    except KeyError:
        raise ValueError(f"unknown attribution method {method!r}; known: {sorted(METHODS)}") from None


def _check_options(spec: AttributionMethod, options: Mapping[str, Any]) -> None:
    allowed = spec.options()
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise TypeError(f"{spec.name} got unknown option(s) {unknown}; it takes {sorted(allowed)}")


def run_method(p: PreparedBatch, method: str, targets: Any, **options: Any) -> RawAttribution:
    """Run a registered method on a prepared batch and return Captum's raw attributions.

    ``max_rows`` defaults to the method's ``default_max_rows``.
    """
    spec = _get_method(method)
    _check_options(spec, options)
    options.setdefault("max_rows", spec.default_max_rows)
    t = as_targets(targets, p.size, p.n_labels, p.device)
    ctx = torch.enable_grad() if spec.gradient else torch.no_grad()
    with ctx, warnings.catch_warnings():
        # Expected and documented: Captum sets requires_grad on our detached inputs, and warns
        # that Lime/KernelShap fit one surrogate per item.
        warnings.filterwarnings("ignore", message=r".*did not already require gradients.*")
        warnings.filterwarnings("ignore", message=r".*multiple inputs for Lime / Kernel SHAP.*")
        return spec.run(p, t, **options)


def attribute(
    adapter: ModelAdapter,
    batch: Any,
    *,
    method: str,
    targets: Any,
    prepared: PreparedBatch | None = None,
    **options: Any,
) -> list[ItemAttribution]:
    """Attribute each item's target logit to its modalities with one registered method.

    Args:
        adapter: a loaded adapter.
        batch: ``adapter.encode(items)`` for ``B`` items (ignored if ``prepared`` is given).
        method: a key of :data:`METHODS`.
        targets: LongTensor ``(B,)`` of class indices (or an int for all items).
        prepared: a :class:`PreparedBatch` of the same batch, to embed only once when several
            methods run on it.
        **options: method options (see each method; ``max_rows`` for all, ``seed`` for the
            stochastic ones).

    Returns:
        One :class:`ItemAttribution` per item, in batch order. Raises
        :class:`NonFiniteError` on NaN/Inf logits or attributions, ``ValueError`` for an
        unknown method or bad targets, ``TypeError`` for an unknown option.
    """
    spec = _get_method(method)
    p = prepared if prepared is not None else prepare_batch(adapter, batch)
    t = as_targets(targets, p.size, p.n_labels, p.device)
    raw = run_method(p, method, t, **options)
    used = {**spec.options(), "max_rows": spec.default_max_rows, **options}
    used.pop("interpretable_model", None)
    used.pop("similarity_func", None)
    used.pop("perturb_func", None)
    used.pop("baselines", None)
    return summarize(p, raw, method=method, targets=t, group_reduce=spec.group_reduce, options=used)
