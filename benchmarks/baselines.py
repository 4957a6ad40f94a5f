"""The one-item-at-a-time baselines the explanation benchmark compares the engine with.

Baselines, timed on one-item batches and checked against the engine's result:

* **per-item Captum**: the Captum class called once per item with its defaults, the way a
  notebook does it (``IntegratedGradients(f).attribute(x, baselines, target, n_steps=50)``);
* **per-word loop** (``second_order``): MultiViz-style, one item and one word (group of the
  smaller modality) at a time: ``grad_x_L (grad_x_S f . (x_S * 1[word]))``;
* **per-item loop** (``modality_interaction``): four one-row head calls per item.

No Django.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from captum.attr import FeatureAblation, GradientShap, InputXGradient, IntegratedGradients, Saliency
from torch import Tensor

from benchmarks.floors import smaller_first
from workers.engine.attribution import METHODS, PreparedBatch, seeded
from workers.engine.interactions import pick_modalities

__all__ = ["BASELINES", "baseline_run", "relative_difference"]


def _captum_one(method: str, p1: PreparedBatch, t1: Tensor, options: Mapping[str, Any]) -> tuple[Tensor, ...]:
    """One item through the Captum class with Captum's own defaults, the notebook way."""

    def f(*xs: Tensor) -> Tensor:
        return p1.adapter.head(*xs, batch=p1.batch)

    target = int(t1[0])
    if method == "integrated_gradients":
        attrs, _delta = IntegratedGradients(f).attribute(
            p1.inputs,
            baselines=p1.baselines,
            target=target,
            n_steps=int(options.get("n_steps", 50)),
            method=options.get("method", "gausslegendre"),
            return_convergence_delta=True,
        )
    elif method == "saliency":
        attrs = Saliency(f).attribute(p1.inputs, target=target, abs=bool(options.get("abs", True)))
    elif method == "input_x_gradient":
        attrs = InputXGradient(f).attribute(p1.inputs, target=target)
    elif method == "gradient_shap":
        with seeded(options.get("seed", 0), p1.device):
            attrs = GradientShap(f).attribute(
                p1.inputs,
                baselines=p1.baselines,
                target=target,
                n_samples=int(options.get("n_samples", 20)),
                stdevs=float(options.get("stdevs", 0.0)),
            )
    elif method == "feature_ablation":
        attrs = FeatureAblation(f).attribute(p1.inputs, baselines=p1.baselines, target=target, feature_mask=p1.masks)
    else:  # pragma: no cover - guarded by BASELINES
        raise ValueError(method)
    return tuple(a.detach() for a in (attrs if isinstance(attrs, tuple) else (attrs,)))


def _reduce_like_engine(method: str, p1: PreparedBatch, attrs: Sequence[Tensor]) -> list[np.ndarray]:
    """Captum's ``(1, *S_m)`` attributions -> the engine's maps (sum or mean over feature dims)."""
    out = []
    for m, a in enumerate(attrs):
        dims = p1.feature_dims(m)
        a = a.detach().cpu().to(torch.float64)
        reduced = a.sum(dim=dims) if dims else a
        if METHODS[method].group_reduce == "mean" and dims:
            reduced = reduced / math.prod(a.shape[d] for d in dims)
        out.append(reduced[0].numpy())
    return out


def _per_word_second_order(p1: PreparedBatch, t1: Tensor, ia: int, ib: int, multiply_by: str = "input") -> np.ndarray:
    """MultiViz-style second order for one item: for each group ("word") of the smaller
    modality ``S``, ``grad_{x_L} (grad_{x_S} f . (x_S * 1[word]))``, times ``x_L``, summed per
    group of ``L``. Returns ``(G_A, G_B)``."""
    s, large = smaller_first(p1, ia, ib)
    mult = p1.inputs if multiply_by == "input" else tuple(x - b for x, b in zip(p1.inputs, p1.baselines))
    with torch.enable_grad():
        z = [x.detach().clone().requires_grad_(m in (s, large)) for m, x in enumerate(p1.inputs)]
        f = p1.adapter.head(*z, batch=p1.batch)[0, int(t1[0])]
        (g_s,) = torch.autograd.grad(f, z[s], create_graph=True)
        ids_s, ids_l = p1.group_ids[0][s], p1.group_ids[0][large]
        mask_s, smask_l = p1.masks[s], p1.spatial_mask(large)[0].reshape(-1)
        inv_l = torch.searchsorted(ids_l, smask_l)
        dims_l = p1.feature_dims(large)
        rows = []
        for gid in ids_s:
            u = mult[s] * (mask_s == gid).to(mult[s].dtype)
            (hv,) = torch.autograd.grad((g_s * u).sum(), z[large], retain_graph=True, allow_unused=True)
            if hv is None:
                hv = torch.zeros_like(z[large])
            contrib = (hv * mult[large]).detach()
            contrib = contrib.sum(dim=dims_l) if dims_l else contrib
            row = torch.zeros(len(ids_l), dtype=torch.float64, device=contrib.device)
            row.index_add_(0, inv_l, contrib[0].reshape(-1).to(torch.float64))
            rows.append(row)
    mat = torch.stack(rows).cpu().numpy()  # (G_S, G_L)
    return mat if s == ia else mat.T


def _per_item_modality_interaction(p1: PreparedBatch, t1: Tensor, ia: int, ib: int) -> np.ndarray:
    """Four one-row head calls: ``f(x_A, x_B), f(x_A, x'_B), f(x'_A, x_B), f(x'_A, x'_B)``."""
    values = []
    with torch.no_grad():
        for a_in, b_in in ((True, True), (True, False), (False, True), (False, False)):
            rows = [
                x if (m not in (ia, ib)) or (a_in if m == ia else b_in) else base
                for m, (x, base) in enumerate(zip(p1.inputs, p1.baselines))
            ]
            values.append(float(p1.adapter.head(*rows, batch=p1.batch)[0, int(t1[0])]))
    fxx, fxb, fbx, fbb = values
    return np.array([fxx - fxb - fbx + fbb, fxb - fbb, fbx - fbb])


#: Method -> (baseline name, whether the result can be compared with the engine's).
BASELINES: dict[str, tuple[str, bool]] = {
    "integrated_gradients": ("per-item Captum", True),
    "saliency": ("per-item Captum", True),
    "input_x_gradient": ("per-item Captum", True),
    "gradient_shap": ("per-item Captum", False),  # random draws differ by construction
    "feature_ablation": ("per-item Captum", True),
    "second_order": ("per-word loop", True),
    "modality_interaction": ("per-item loop", True),
}


def baseline_run(
    method: str,
    singles: Sequence[tuple[PreparedBatch, Tensor]],
    options: Mapping[str, Any],
    modalities: Sequence[str] | None,
) -> list[Any]:
    """``method``'s baseline (:data:`BASELINES`) on each one-item batch; the results, in order."""
    out: list[Any] = []
    for p1, t1 in singles:
        if method in METHODS:
            out.append(_captum_one(method, p1, t1, options))
        elif method == "second_order":
            ia, ib = pick_modalities(p1.modalities, modalities)
            out.append(_per_word_second_order(p1, t1, ia, ib, options.get("multiply_by", "input")))
        else:
            ia, ib = pick_modalities(p1.modalities, modalities)
            out.append(_per_item_modality_interaction(p1, t1, ia, ib))
    return out


def relative_difference(
    method: str, engine: Sequence[Any], baseline: Sequence[Any], singles: Sequence[tuple[PreparedBatch, Tensor]]
) -> float:
    """``max |engine - baseline| / max |baseline|`` over the baseline's items."""
    num, den = 0.0, 0.0
    for res, ref, (p1, _) in zip(engine, baseline, singles):
        if method in METHODS:
            pairs = zip([res.maps[m] for m in res.modalities], _reduce_like_engine(method, p1, ref))
        elif method == "second_order":
            pairs = [(res.matrix, ref)]
        else:
            pairs = [(np.array([res.dividend, res.effect_a, res.effect_b]), ref)]
        for a, b in pairs:
            a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
            num = max(num, float(np.max(np.abs(a - b))) if a.size else 0.0)
            den = max(den, float(np.max(np.abs(b))) if b.size else 0.0)
    return num / den if den > 0 else num
