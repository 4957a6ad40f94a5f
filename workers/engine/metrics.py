"""Automatic explanation metrics, per item and explanation, run on ``adapter.head``.

These are the numbers the analysis sets beside human simulation accuracy: does an explanation
that scores well on an automatic metric also help people predict the model? Every metric reads
an item's attribution (an :class:`~workers.engine.attribution.ItemAttribution`, i.e. what
:func:`~workers.engine.attribution.attribute` returned) and its target class, and perturbs the
embedded inputs of a :class:`~workers.engine.attribution.PreparedBatch`.

Conventions
-----------

* ``B`` items; modality ``m`` has embedded inputs ``(B, *S_m)``, baselines of the same shape
  and a group mask ``(B, *M_m)`` (see ``attribution``). ``G_b`` is the number of feature
  groups of item ``b`` over all modalities; ``phi_g`` the attribution's score of group ``g``
  (``ItemAttribution.group_scores``), which is what a participant sees.
* **Removing** group ``g`` sets its elements to the adapter's baseline; **keeping** it leaves
  the input. Groups are ranked by ``phi_g``, highest first (ties: lower group ID first).
* Pass counts are per item, in rows through ``head`` (forward) and backward passes. Rows are
  batched into head calls of at most ``max_rows`` rows.

Metrics
-------

**Deletion / insertion curves** (Petsiuk et al. 2018, RISE), on the target class's softmax
probability (``output="probability"``, default) or its logit (``output="logit"``). With
``S`` steps (``n_steps``; default ``max_b G_b``, one group per step), step ``s`` removes (deletion)
or inserts into the all-baseline input (insertion) the top ``k_s = round(s * G_b / S)`` groups.
The curve is recorded at the distinct ``k_s`` (``curve_groups``) and its AUC is the trapezoid
rule over the fraction of groups ``k / G_b`` in ``[0, 1]``. A faithful explanation gives a low
deletion AUC and a high insertion AUC. Cost: ``2 * (S + 1)`` forward rows, no backward pass.

**Infidelity** (Yeh et al. 2019) through ``captum.metrics.infidelity`` with a *group removal*
perturbation: each of ``n_perturb_samples`` perturbations removes every group independently with
probability ``drop_prob``; the perturbation vector ``I`` is the indicator of the removed elements
and the element attributions are the group scores spread evenly over their elements
(``phi_g / |g|``), so ``I . a = sum_{removed g} phi_g`` for every attribution method, whatever its
element-level convention. Then::

    infidelity = E_I[(sum_{removed g} phi_g - (f(x) - f(x with I's groups removed)))^2]

on the target logit; with ``normalize=True`` (default; Captum's option) the attributions are
first rescaled by the least-squares factor ``beta``, so the number is invariant to the scale of
an attribution method and comparable across methods. 0 is perfect (exact for a linear model with
Integrated Gradients or feature ablation). Cost: ``n_perturb_samples`` forward rows, plus one
forward row per sub-batch Captum forms for the unperturbed input (``ceil(n_perturb_samples *
B / max_rows)`` of them); no backward pass.

**Sensitivity** (Yeh et al. 2019) through ``captum.metrics.sensitivity_max``: the largest
relative change ``||a(x + d) - a(x)||_F / ||a(x)||_F`` of the element-level attribution over
``n_perturb_samples`` perturbations ``d`` drawn uniformly from the L-infinity ball of radius
``perturb_radius`` in the embedded space (Captum's default perturbation). It re-runs the
attribution method (same method and options as ``attributions``) on the perturbed inputs.
Cost: ``1 + n_perturb_samples`` runs of the attribution method (e.g. for integrated gradients
``(1 + n) * (n_steps + 2)`` forward and ``(1 + n) * n_steps`` backward rows).

**Modality share** (passthrough): ``ItemAttribution.modality_share``. No pass.

**Interaction strength**: the 2x2 Harsanyi dividend of the first two modalities (or
``interaction_modalities``) from :func:`~workers.engine.interactions.modality_interaction` (4
forward rows), or passed in as ``interactions``; ``interaction_strength = |dividend| /
(|effect_A| + |effect_B| + |dividend|)`` (the share of the target logit's change from baseline to
input that is cross-modal; 0.0 when the denominator is 0).

Entry point for the pipeline: :func:`explanation_metrics`. No Django here.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from captum.metrics import infidelity as captum_infidelity
from captum.metrics import sensitivity_max as captum_sensitivity_max
from torch import Tensor

from workers.engine.adapter import ModelAdapter
from workers.engine.attribution import (
    METHODS,
    ItemAttribution,
    PreparedBatch,
    as_targets,
    prepare_batch,
    seeded,
)
from workers.engine.interactions import modality_interaction

__all__ = [
    "ALL_METRICS",
    "CurveResult",
    "GroupRemoval",
    "deletion_insertion",
    "element_attributions",
    "explanation_metrics",
    "group_ranks",
    "infidelity",
    "interaction_strength",
    "sensitivity",
]

ALL_METRICS = ("deletion_insertion", "infidelity", "sensitivity_max", "modality_share", "interaction")
OUTPUTS = ("probability", "logit")


# --------------------------------------------------------------------------------------------
# Group scores as tensors
# --------------------------------------------------------------------------------------------


def _n_ids(p: PreparedBatch) -> int:
    """One more than the largest group ID in the batch (the width of per-ID tables)."""
    return 1 + max(int(ids.max()) for row in p.group_ids for ids in row if ids.numel())


def _score_table(p: PreparedBatch, attributions: Sequence[ItemAttribution]) -> Tensor:
    """``(B, n_ids)`` float64 table of ``phi_g`` by group ID (0 for IDs an item lacks).

    Raises ``ValueError`` when an attribution does not belong to the batch (other items, other
    groups, other modalities).
    """
    if len(attributions) != p.size:
        raise ValueError(f"got {len(attributions)} attributions for {p.size} items")
    table = torch.zeros((p.size, _n_ids(p)), dtype=torch.float64)
    for b, attribution in enumerate(attributions):
        if tuple(attribution.modalities) != p.modalities:
            raise ValueError(
                f"item {b}: attribution modalities {list(attribution.modalities)} are not "
                f"the batch's {list(p.modalities)}"
            )
        for m, name in enumerate(p.modalities):
            ids = torch.as_tensor(np.asarray(attribution.group_ids[name]), dtype=torch.long)
            if not torch.equal(ids, p.group_ids[b][m].cpu()):
                raise ValueError(f"item {b}: the attribution's {name!r} groups are not the batch's")
            table[b, ids] = torch.as_tensor(np.asarray(attribution.group_scores[name], dtype=np.float64))
    return table


def group_ranks(p: PreparedBatch, attributions: Sequence[ItemAttribution]) -> tuple[Tensor, Tensor]:
    """Rank of every group by attribution, highest first (ties: lower group ID first).

    Returns ``ranks`` ``(B, n_ids)`` long (``rank[b, g]`` in ``0..G_b-1``; IDs an item lacks get
    ``n_ids``, so they are never removed) and ``n_groups`` ``(B,)`` long (``G_b``).
    """
    scores = _score_table(p, attributions)
    n_ids = scores.shape[1]
    ranks = torch.full((p.size, n_ids), n_ids, dtype=torch.long)
    n_groups = torch.zeros(p.size, dtype=torch.long)
    for b in range(p.size):
        ids = torch.cat([ids.cpu() for ids in p.group_ids[b]])
        values = scores[b, ids].numpy()
        order = np.lexsort((ids.numpy(), -values))  # by score descending, then ID ascending
        ranks[b, ids[order]] = torch.arange(len(ids))
        n_groups[b] = len(ids)
    return ranks.to(p.device), n_groups


def _element_ranks(p: PreparedBatch, ranks: Tensor, m: int) -> Tensor:
    """``(B, *M_m)`` rank of the group of every mask element of modality ``m``."""
    mask = p.masks[m]
    flat = mask.reshape(p.size, -1)
    return torch.gather(ranks, 1, flat).reshape(mask.shape)


def element_attributions(p: PreparedBatch, attributions: Sequence[ItemAttribution]) -> tuple[Tensor, ...]:
    """Element-level attributions ``(B, *S_m)`` per modality with every element of group ``g``
    holding ``phi_g / |g|`` (``|g|`` counts the group's elements of the embedded tensor, feature
    dimensions included), so a group's elements sum to its score. Cost: none."""
    scores = _score_table(p, attributions).to(p.device)
    out = []
    for m, inp in enumerate(p.inputs):
        full = p.masks[m].expand_as(inp).reshape(p.size, -1)
        counts = torch.zeros_like(scores).scatter_add_(1, full, torch.ones_like(full, dtype=torch.float64))
        per_element = torch.gather(scores / counts.clamp(min=1.0), 1, full)
        out.append(per_element.reshape(inp.shape).to(inp.dtype))
    return tuple(out)


# --------------------------------------------------------------------------------------------
# Deletion and insertion
# --------------------------------------------------------------------------------------------


@dataclass
class CurveResult:
    """One item's deletion and insertion curves (module doc).

    Attributes:
        groups: the distinct numbers of groups removed/inserted, increasing from 0 to ``G_b``.
        fractions: ``groups / G_b``.
        deletion: the output after removing the top ``groups[k]`` groups.
        insertion: the output after inserting the top ``groups[k]`` groups into the baseline.
        deletion_auc, insertion_auc: trapezoid areas over ``fractions``.
    """

    groups: list[int]
    fractions: list[float]
    deletion: list[float]
    insertion: list[float]
    deletion_auc: float
    insertion_auc: float


def _output(logits: Tensor, targets: Tensor, reps: int, output: str) -> Tensor:
    """Head output ``(reps * B, C)`` -> the target's probability or logit ``(reps, B)``."""
    values = torch.softmax(logits.double(), dim=1) if output == "probability" else logits.double()
    t = targets.repeat(reps)
    return values.gather(1, t[:, None]).squeeze(1).reshape(reps, -1)


def deletion_insertion(
    p: PreparedBatch,
    attributions: Sequence[ItemAttribution],
    *,
    n_steps: int | None = None,
    output: str = "probability",
    max_rows: int | None = 512,
) -> list[CurveResult]:
    """Deletion and insertion curves and their AUC (module doc).

    Args:
        p (PreparedBatch): ``B`` items; inputs and baselines ``(B, *S_m)``, masks ``(B, *M_m)``.
        attributions: one :class:`ItemAttribution` per item of ``p`` (its groups and target).
        n_steps (int, optional): ``S``; default ``max_b G_b`` (every group count).
        output (str): ``"probability"`` (softmax of the target) or ``"logit"``.
        max_rows (int, optional): the most rows per head call (at least ``B``).

    Returns:
        One :class:`CurveResult` per item.

    Cost: ``2 * (S + 1)`` forward rows per item in ``ceil(2 * (S + 1) * B / max_rows)`` head
    calls; no backward pass.
    """
    if output not in OUTPUTS:
        raise ValueError(f"output must be one of {OUTPUTS}, got {output!r}")
    ranks, n_groups = group_ranks(p, attributions)
    steps = int(n_steps) if n_steps is not None else int(n_groups.max())
    if steps < 1:
        raise ValueError("n_steps must be >= 1")
    targets = torch.tensor([a.target for a in attributions], dtype=torch.long, device=p.device)
    as_targets(targets, p.size, p.n_labels, p.device)
    # k[s, b] = round(s * G_b / S), in integers
    s = torch.arange(steps + 1, dtype=torch.long)[:, None]
    k = (2 * s * n_groups[None, :] + steps) // (2 * steps)  # (S + 1, B)
    element_ranks = [_element_ranks(p, ranks, m) for m in range(len(p.inputs))]
    configs = [(kind, j) for kind in ("deletion", "insertion") for j in range(steps + 1)]
    per_call = len(configs) if max_rows is None else max(1, int(max_rows) // p.size)
    caller = p.caller("deletion_insertion")
    values = []
    with torch.no_grad():
        for c0 in range(0, len(configs), per_call):
            chunk = configs[c0 : c0 + per_call]
            kk = torch.stack([k[j] for _, j in chunk]).to(p.device)  # (n, B)
            deleting = torch.tensor([kind == "deletion" for kind, _ in chunk], device=p.device)
            rows = []
            for m, (x, base) in enumerate(zip(p.inputs, p.baselines)):
                er = element_ranks[m].unsqueeze(0)  # (1, B, *M_m)
                top = er < kk.reshape(*kk.shape, *([1] * (er.dim() - 2)))  # (n, B, *M_m)
                flip = deleting.reshape(-1, *([1] * (top.dim() - 1)))
                use_base = torch.where(flip, top, ~top)  # deletion: top groups -> baseline
                rows.append(torch.where(use_base, base.unsqueeze(0), x.unsqueeze(0)).reshape(-1, *x.shape[1:]))
            values.append(_output(caller.forward_rows(tuple(rows)), targets, len(chunk), output))
    v = torch.cat(values).cpu().numpy()  # (2 (S + 1), B)
    deletion, insertion = v[: steps + 1], v[steps + 1 :]
    out = []
    for b in range(p.size):
        counts = k[:, b].numpy()
        _, first = np.unique(counts, return_index=True)
        g = max(int(n_groups[b]), 1)
        groups = counts[first]
        fractions = groups / g
        out.append(
            CurveResult(
                groups=[int(x) for x in groups],
                fractions=[float(x) for x in fractions],
                deletion=[float(x) for x in deletion[first, b]],
                insertion=[float(x) for x in insertion[first, b]],
                deletion_auc=float(np.trapezoid(deletion[first, b], fractions)),
                insertion_auc=float(np.trapezoid(insertion[first, b], fractions)),
            )
        )
    return out


# --------------------------------------------------------------------------------------------
# Infidelity
# --------------------------------------------------------------------------------------------


class GroupRemoval:
    """Captum ``perturb_func`` for :func:`captum.metrics.infidelity`: remove every feature group
    independently with probability ``drop_prob``.

    Called as ``perturb(inputs, baselines)`` on ``N = B * k`` rows in Captum's
    ``repeat_interleave`` layout (row ``r`` is item ``r // k``); returns ``(perturbations,
    perturbed_inputs)``, each a tuple of ``(N, *S_m)`` tensors: the 0/1 indicator of the removed
    elements and the inputs with those elements at the baseline. Draws come from a private
    ``torch.Generator`` seeded with ``seed`` (CPU), so the global RNGs are untouched and a new
    instance with the same seed reproduces the same perturbations.
    """

    def __init__(self, p: PreparedBatch, *, drop_prob: float = 0.5, seed: int = 0) -> None:
        if not 0.0 < drop_prob <= 1.0:
            raise ValueError("drop_prob must lie in (0, 1]")
        self.masks = p.masks
        self.n_items = p.size
        self.n_ids = _n_ids(p)
        self.drop_prob = float(drop_prob)
        self.generator = torch.Generator().manual_seed(int(seed))

    def __call__(self, inputs: Any, baselines: Any) -> tuple[tuple[Tensor, ...], tuple[Tensor, ...]]:
        inputs = inputs if isinstance(inputs, tuple) else (inputs,)
        baselines = baselines if isinstance(baselines, tuple) else (baselines,)
        n = inputs[0].shape[0]
        reps = n // self.n_items
        drop = torch.rand((n, self.n_ids), generator=self.generator) < self.drop_prob
        drop = drop.to(inputs[0].device)
        perturbations, perturbed = [], []
        for mask, x, base in zip(self.masks, inputs, baselines):
            rows_mask = mask.repeat_interleave(reps, dim=0)
            hit = torch.gather(drop, 1, rows_mask.reshape(n, -1)).reshape(rows_mask.shape)
            hit = hit.expand_as(x)
            perturbations.append(hit.to(x.dtype))
            perturbed.append(torch.where(hit, base.expand_as(x) if base.dim() == x.dim() else base, x))
        return tuple(perturbations), tuple(perturbed)


def infidelity(
    p: PreparedBatch,
    attributions: Sequence[ItemAttribution],
    *,
    n_perturb_samples: int = 16,
    drop_prob: float = 0.5,
    normalize: bool = True,
    seed: int = 0,
    max_rows: int | None = 512,
) -> list[float]:
    """Infidelity under group removal, through ``captum.metrics.infidelity`` (module doc).

    Args:
        p (PreparedBatch): ``B`` items; inputs and baselines ``(B, *S_m)``, masks ``(B, *M_m)``.
        attributions: one :class:`ItemAttribution` per item (group scores and target).
        n_perturb_samples (int): random removals per item. Default: 16.
        drop_prob (float): probability that a group is removed. Default: 0.5.
        normalize (bool): Captum's scale normalisation of the attributions. Default: True.
        seed (int): seed of the removals (:class:`GroupRemoval`).
        max_rows (int, optional): the most perturbed rows per head call (Captum's
            ``max_examples_per_batch``, at least ``B``).

    Returns:
        One float per item, on the target logit.

    Cost: ``n_perturb_samples`` forward rows per item, plus 1 forward row per item for each of
    Captum's ``ceil(n_perturb_samples * B / max_rows)`` sub-batches; no backward pass.
    """
    targets = torch.tensor([a.target for a in attributions], dtype=torch.long, device=p.device)
    elements = element_attributions(p, attributions)
    caller = p.caller("infidelity")
    per_batch = None if max_rows is None else max(int(max_rows), p.size)
    if per_batch is not None:
        per_batch = min(per_batch, p.size * int(n_perturb_samples))
    with torch.no_grad():
        values = captum_infidelity(
            caller,
            GroupRemoval(p, drop_prob=drop_prob, seed=seed),
            p.inputs,
            elements,
            baselines=p.baselines,
            additional_forward_args=(p.item_index,),
            target=targets,
            n_perturb_samples=int(n_perturb_samples),
            max_examples_per_batch=per_batch,
            normalize=normalize,
        )
    return [float(v) for v in values.detach().double().cpu()]


# --------------------------------------------------------------------------------------------
# Sensitivity
# --------------------------------------------------------------------------------------------


def _interleave_order(n_items: int, reps: int, device: torch.device) -> Tensor:
    """Index that turns ``repeat_interleave`` rows (item-major) into protocol rows
    (``row s * B + b`` = sample ``s`` of item ``b``)."""
    return (torch.arange(n_items, device=device)[None, :] * reps + torch.arange(reps, device=device)[:, None]).reshape(
        -1
    )


def _method_options(attributions: Sequence[ItemAttribution], method: str) -> dict[str, Any]:
    allowed = METHODS[method].options()
    return {key: value for key, value in dict(attributions[0].options).items() if key in allowed}


def _run(p: PreparedBatch, method: str, targets: Tensor, options: Mapping[str, Any]) -> Any:
    """``run_method`` with the options as a mapping (integrated gradients has an option named
    ``method``, which ``run_method``'s own ``method`` argument would shadow)."""
    spec = METHODS[method]
    options = {"max_rows": spec.default_max_rows, **options}
    context = torch.enable_grad() if spec.gradient else torch.no_grad()
    with context, warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*did not already require gradients.*")
        warnings.filterwarnings("ignore", message=r".*multiple inputs for Lime / Kernel SHAP.*")
        return spec.run(p, targets, **options)


def sensitivity(
    p: PreparedBatch,
    attributions: Sequence[ItemAttribution],
    *,
    n_perturb_samples: int = 5,
    perturb_radius: float = 0.02,
    seed: int = 0,
    method_options: Mapping[str, Any] | None = None,
    max_rows: int | None = None,
) -> list[float]:
    """Max sensitivity through ``captum.metrics.sensitivity_max`` (module doc).

    Args:
        p (PreparedBatch): ``B`` items; inputs ``(B, *S_m)``.
        attributions: one :class:`ItemAttribution` per item; all of one method, whose
            ``options`` are reused to re-run it (``method_options`` overrides them).
        n_perturb_samples (int): perturbations per item. Default: 5.
        perturb_radius (float): L-infinity radius in the embedded space. Default: 0.02.
        seed (int): seed of the perturbations (global torch RNG forked and restored).
        max_rows (int, optional): the most perturbed rows per explanation call (Captum's
            ``max_examples_per_batch``).

    Returns:
        One float per item.

    Cost: ``1 + n_perturb_samples`` runs of the attribution method per item.
    """
    methods = {a.method for a in attributions}
    if len(methods) != 1:
        raise ValueError(f"sensitivity needs attributions of one method, got {sorted(methods)}")
    method = methods.pop()
    options = {**_method_options(attributions, method), **dict(method_options or {})}
    targets = torch.tensor([a.target for a in attributions], dtype=torch.long, device=p.device)
    big_b = p.size

    def explain(inputs: Any, target: Tensor) -> tuple[Tensor, ...]:
        inputs = inputs if isinstance(inputs, tuple) else (inputs,)
        n = inputs[0].shape[0]
        reps = n // big_b
        order = _interleave_order(big_b, reps, p.device)
        expanded = PreparedBatch(
            adapter=p.adapter,
            batch=p.batch,
            modalities=p.modalities,
            inputs=tuple(x[order].detach() for x in inputs),
            baselines=tuple(b.repeat(reps, *([1] * (b.dim() - 1))) for b in p.baselines),
            masks=tuple(mk.repeat(reps, *([1] * (mk.dim() - 1))) for mk in p.masks),
            group_ids=[p.group_ids[j % big_b] for j in range(n)],
        )
        raw = _run(expanded, method, torch.as_tensor(target, device=p.device)[order], options)
        inverse = torch.argsort(order)
        return tuple(a[inverse].detach().contiguous() for a in raw.attributions)  # Captum views them

    per_batch = None if max_rows is None else min(max(int(max_rows), big_b), big_b * int(n_perturb_samples))
    with seeded(seed, p.device), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*did not already require gradients.*")
        values = captum_sensitivity_max(
            explain,
            p.inputs,
            perturb_radius=perturb_radius,
            n_perturb_samples=int(n_perturb_samples),
            max_examples_per_batch=per_batch,
            target=targets,
        )
    return [float(v) for v in values.detach().double().cpu()]


# --------------------------------------------------------------------------------------------
# Interaction strength
# --------------------------------------------------------------------------------------------


def interaction_strength(*, dividend: float, effect_a: float, effect_b: float) -> float:
    """``|dividend| / (|effect_A| + |effect_B| + |dividend|)``; 0.0 when all three are 0."""
    total = abs(effect_a) + abs(effect_b) + abs(dividend)
    return abs(dividend) / total if total > 0 else 0.0


# --------------------------------------------------------------------------------------------
# All metrics for a batch of explanations
# --------------------------------------------------------------------------------------------


def _finite(value: float | None) -> float | None:
    return value if value is None or math.isfinite(value) else None


def explanation_metrics(
    adapter: ModelAdapter,
    batch: Any,
    attributions: Sequence[ItemAttribution],
    *,
    prepared: PreparedBatch | None = None,
    metrics: Sequence[str] = ALL_METRICS,
    n_steps: int | None = None,
    output: str = "probability",
    infidelity_samples: int = 16,
    drop_prob: float = 0.5,
    normalize: bool = True,
    sensitivity_samples: int = 5,
    perturb_radius: float = 0.02,
    method_options: Mapping[str, Any] | None = None,
    interactions: Sequence[Any] | None = None,
    interaction_modalities: Sequence[str] | None = None,
    seed: int = 0,
    max_rows: int | None = 512,
) -> list[dict[str, Any]]:
    """Every automatic metric of a batch of explanations, one JSON-able dict per item.

    Args:
        adapter: the loaded adapter.
        batch: ``adapter.encode(items)`` for ``B`` items (ignored if ``prepared`` is given); item
            ``b`` is the item ``attributions[b]`` explains.
        attributions: what :func:`~workers.engine.attribution.attribute` returned for the batch
            (one per item, any targets, one method for ``sensitivity_max``).
        prepared: a :class:`PreparedBatch` of the same batch, to embed only once.
        metrics: a subset of :data:`ALL_METRICS`.
        n_steps, output: deletion/insertion options (:func:`deletion_insertion`).
        infidelity_samples, drop_prob, normalize: :func:`infidelity` options.
        sensitivity_samples, perturb_radius, method_options: :func:`sensitivity` options.
        interactions: precomputed ``ModalityInteraction`` per item (else computed, 4 rows).
        interaction_modalities: the pair for the dividend (default: the first two modalities).
        seed: seed of every random draw.
        max_rows: the most rows per head call.

    Returns:
        Per item: ``method``, ``target``, and for the metrics asked ``deletion_auc``,
        ``insertion_auc``, ``deletion_curve``, ``insertion_curve``, ``curve_fractions``,
        ``n_groups`` (deletion_insertion); ``infidelity``; ``sensitivity_max``;
        ``modality_share`` ({modality: share}); ``interaction_dividend``,
        ``interaction_strength`` (``None`` when the adapter has one modality); plus ``settings``
        (the options used). Store it as ``Explanation.metrics``.

    Cost per item (sum of the metrics asked): ``2 * (S + 1)`` + ``infidelity_samples`` + about 1
    + 4 forward rows, plus ``1 + sensitivity_samples`` runs of the attribution method.
    """
    unknown = sorted(set(metrics) - set(ALL_METRICS))
    if unknown:
        raise ValueError(f"unknown metric(s) {unknown}; known: {list(ALL_METRICS)}")
    p = prepared if prepared is not None else prepare_batch(adapter, batch)
    settings: dict[str, Any] = {"metrics": list(metrics), "seed": int(seed)}
    out: list[dict[str, Any]] = [{"method": a.method, "target": int(a.target)} for a in attributions]
    _score_table(p, attributions)  # validates the pairing before any pass
    if "deletion_insertion" in metrics:
        settings.update(n_steps=n_steps, output=output)
        for row, curve in zip(
            out, deletion_insertion(p, attributions, n_steps=n_steps, output=output, max_rows=max_rows)
        ):
            row.update(
                deletion_auc=curve.deletion_auc,
                insertion_auc=curve.insertion_auc,
                deletion_curve=curve.deletion,
                insertion_curve=curve.insertion,
                curve_fractions=curve.fractions,
                n_groups=curve.groups[-1],
            )
    if "infidelity" in metrics:
        settings.update(
            infidelity_samples=int(infidelity_samples), drop_prob=float(drop_prob), normalize=bool(normalize)
        )
        values = infidelity(
            p,
            attributions,
            n_perturb_samples=infidelity_samples,
            drop_prob=drop_prob,
            normalize=normalize,
            seed=seed,
            max_rows=max_rows,
        )
        for row, value in zip(out, values):
            row["infidelity"] = _finite(value)
    if "sensitivity_max" in metrics:
        settings.update(sensitivity_samples=int(sensitivity_samples), perturb_radius=float(perturb_radius))
        values = sensitivity(
            p,
            attributions,
            n_perturb_samples=sensitivity_samples,
            perturb_radius=perturb_radius,
            seed=seed,
            method_options=method_options,
            max_rows=max_rows,
        )
        for row, value in zip(out, values):
            row["sensitivity_max"] = _finite(value)
    if "modality_share" in metrics:
        for row, a in zip(out, attributions):
            row["modality_share"] = {str(k): float(v) for k, v in a.modality_share.items()}
    if "interaction" in metrics:
        found = (
            list(interactions)
            if interactions is not None
            else _interactions(p, attributions, interaction_modalities, max_rows)
        )
        for row, inter in zip(out, found or [None] * p.size):
            if inter is None:
                row["interaction_dividend"] = None
                row["interaction_strength"] = None
            else:
                row["interaction_dividend"] = float(inter.dividend)
                row["interaction_strength"] = interaction_strength(
                    dividend=inter.dividend, effect_a=inter.effect_a, effect_b=inter.effect_b
                )
    for row in out:
        row["settings"] = dict(settings)
    return out


def _interactions(
    p: PreparedBatch, attributions: Sequence[ItemAttribution], modalities: Sequence[str] | None, max_rows: int | None
) -> list[Any] | None:
    if len(p.modalities) < 2:
        return None
    chosen = tuple(modalities) if modalities is not None else p.modalities[:2]
    return modality_interaction(
        p.adapter, p.batch, targets=[a.target for a in attributions], modalities=chosen, prepared=p, max_rows=max_rows
    )
