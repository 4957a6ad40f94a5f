"""Cross-modal interaction scores (docs/DESIGN.md "Quantities"), run on ``adapter.head``.

Notation: ``f`` is the target logit of one item; modality ``A`` has inputs ``x_A`` and
baseline ``x'_A`` (``adapter.baselines``), likewise ``B``; every other modality stays at its
input. ``x \\ S`` is ``x`` with the elements of the feature groups in ``S`` set to their
baseline. A pair of modalities is chosen by name (``modalities=("image", "text")``); with
exactly two modalities it defaults to them in adapter order, with more it must be given.

**Modality interaction** (per item) -- the 2x2 Harsanyi dividend and the unimodal effects::

    dividend = f(x_A, x_B) - f(x_A, x'_B) - f(x'_A, x_B) + f(x'_A, x'_B)
    effect_A = f(x_A, x'_B) - f(x'_A, x'_B)
    effect_B = f(x'_A, x_B) - f(x'_A, x'_B)

so ``f(x) - f(x') = effect_A + effect_B + dividend``. Cost: 4 forward passes.

**Cross-modal interaction matrix** ``M`` (per item), ``groups(A) x groups(B)``, rows and
columns in increasing group-ID order:

* ``second_order`` -- gradient-times-input of the cross Hessian block (MultiViz)::

      M[g, h] = sum_{i in g} sum_{j in h} x_i * d^2 f / dx_i dx_j (x) * x_j

  (``multiply_by="difference"`` uses ``x - x'`` in place of ``x`` on both sides).
  Computed with Hessian-vector products: one gradient of ``f`` w.r.t. the modality ``S``
  with fewer groups (``create_graph=True``), then for every group ``k`` of ``S`` the vector
  ``u_k = x_S * 1[group k]`` and ``d/dx_L (grad_S f . u_k)`` for the other modality ``L`` --
  all groups at once through ``torch.autograd.grad(..., is_grads_batched=True)`` (vmap over
  the backward pass), then summed into ``L``'s groups after multiplying by ``x_L``.
  Cost: 1 forward + 1 backward (with graph) + ``G_S`` Hessian-vector products (one vmapped
  double-backward) per item, ``G_S = min(G_A, G_B)``.
* ``integrated_hessians`` -- Janizek, Sturmfels & Lee (2021), the cross block ``i in A,
  j in B`` (``i != j`` always)::

      Gamma_ij = (x_i - x'_i)(x_j - x'_j) * int_0^1 int_0^1 a b H_ij(x' + a b (x - x')) da db
      M[g, h]  = sum_{i in g, j in h} Gamma_ij

  The integrand depends on ``a b`` only; with ``t = a b`` (density ``-ln t`` on (0, 1)) the
  double integral is ``int_0^1 t (-ln t) H_ij(x' + t (x - x')) dt``. It is evaluated at the
  ``n_steps`` cell midpoints ``t_s = (s + 1/2) / n_steps`` with product-integration weights
  ``w_s = F((s+1)/n) - F(s/n)``, ``F(t) = t^2/4 - (t^2/2) ln t`` (the exact integral of
  ``t (-ln t)`` over the cell), so the rule is exact whenever the cross Hessian is constant
  along the path (e.g. a bilinear model, where ``M = M_second_order(x - x') / 4``).
  Cost: ``n_steps`` x (1 forward + 1 backward with graph + ``G_S`` Hessian-vector products)
  per item.
* ``perturbation`` -- the pairwise ablation dividend (the Harsanyi dividend of the pair with
  every other group kept at its input)::

      M[g, h] = f(x) - f(x \\ {g}) - f(x \\ {h}) + f(x \\ {g, h})

  Forward passes only, so it works for non-differentiable models. Cost: ``1 + G_A + G_B +
  G_A * G_B`` forward passes per item, batched into head calls of at most ``max_rows`` rows.

Additive models (``f = g(x_A) + h(x_B)``) give zero for all three matrices and for the
dividend.

**EMAP** (per dataset; Hessel & Lee 2020) -- see :func:`emap`.

No Django here.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor

from workers.engine.adapter import ModelAdapter, RawItem
from workers.engine.attribution import (
    NonFiniteError,
    PreparedBatch,
    _group_slots,
    _jsonable,
    as_targets,
    check_finite,
    nonfinite_naming,
    prepare_batch,
)
from workers.engine.encodings import encode_items, fuse_rows, fused_logits, has_modality_encodings

__all__ = [
    "CROSS_METHODS",
    "CrossInteraction",
    "EmapResult",
    "ModalityInteraction",
    "cross_modal_interaction",
    "emap",
    "integrated_hessians",
    "modality_interaction",
    "pick_modalities",
    "perturbation_dividend",
    "second_order",
]


def pick_modalities(modalities: Sequence[str], chosen: Sequence[str] | None) -> tuple[int, int]:
    """Indices of the two modalities to pair: ``chosen`` names, or the only two there are."""
    modalities = list(modalities)
    if chosen is None:
        if len(modalities) != 2:
            raise ValueError(
                f"the adapter has {len(modalities)} modalities {modalities}; name the "
                "two to pair, e.g. modalities=('image', 'text')"
            )
        return 0, 1
    chosen = list(chosen)
    if len(chosen) != 2 or chosen[0] == chosen[1]:
        raise ValueError(f"modalities must name two different modalities, got {chosen}")
    for name in chosen:
        if name not in modalities:
            raise ValueError(f"unknown modality {name!r}; the adapter has {modalities}")
    return modalities.index(chosen[0]), modalities.index(chosen[1])


def _target_logit(out: Tensor, targets: Tensor, reps: int) -> Tensor:
    """``out`` ``(reps * B, C)`` -> target logits ``(reps, B)``."""
    t = targets.repeat(reps)
    return out.gather(1, t[:, None]).squeeze(1).reshape(reps, -1)


def _expand_rows(t: Tensor, reps: int) -> Tensor:
    """``(B, *S)`` -> ``(reps * B, *S)`` in the protocol layout (row ``r`` = item ``r % B``)."""
    return t.repeat(reps, *([1] * (t.dim() - 1)))


# --------------------------------------------------------------------------------------------
# Modality interaction
# --------------------------------------------------------------------------------------------


@dataclass
class ModalityInteraction:
    """One item's 2x2 modality interaction for one target class (formulas: module doc)."""

    modalities: tuple[str, str]
    target: int
    f_inputs: float  # f(x_A, x_B)
    f_a_only: float  # f(x_A, x'_B)
    f_b_only: float  # f(x'_A, x_B)
    f_baselines: float  # f(x'_A, x'_B)
    dividend: float
    effect_a: float
    effect_b: float

    def to_json(self) -> dict[str, Any]:
        return {
            "modalities": list(self.modalities),
            "target": self.target,
            "f_inputs": self.f_inputs,
            "f_a_only": self.f_a_only,
            "f_b_only": self.f_b_only,
            "f_baselines": self.f_baselines,
            "dividend": self.dividend,
            "effect_a": self.effect_a,
            "effect_b": self.effect_b,
        }


def modality_interaction(
    adapter: ModelAdapter,
    batch: Any,
    *,
    targets: Any,
    modalities: Sequence[str] | None = None,
    prepared: PreparedBatch | None = None,
    max_rows: int | None = None,
) -> list[ModalityInteraction]:
    """The 2x2 Harsanyi dividend and the two unimodal effects per item.

    Args:
        adapter: a loaded adapter.
        batch: ``adapter.encode(items)`` for ``B`` items (ignored if ``prepared`` is given).
        targets: LongTensor ``(B,)`` of class indices (or an int).
        modalities: the two modality names ``(A, B)``; needed with more than two.
        prepared: a :class:`PreparedBatch` of the batch.
        max_rows: the most rows per head call (default: all ``4 * B`` in one call).

    Returns:
        One :class:`ModalityInteraction` per item. Cost: 4 forward passes per item.
    """
    p = prepared if prepared is not None else prepare_batch(adapter, batch)
    ia, ib = pick_modalities(p.modalities, modalities)
    t = as_targets(targets, p.size, p.n_labels, p.device)
    caller = p.caller("modality_interaction")
    # configurations: (A at input?, B at input?)
    configs = [(True, True), (True, False), (False, True), (False, False)]
    per_call = len(configs) if max_rows is None else max(1, int(max_rows) // p.size)
    values = []
    with torch.no_grad():
        for c0 in range(0, len(configs), per_call):
            chunk = configs[c0 : c0 + per_call]
            rows = []
            for m, (x, base) in enumerate(zip(p.inputs, p.baselines)):
                parts = [x if (m != ia and m != ib) or (a_in if m == ia else b_in) else base for a_in, b_in in chunk]
                rows.append(torch.cat(parts))
            values.append(_target_logit(caller.forward_rows(tuple(rows)), t, len(chunk)))
    v = torch.cat(values).detach().cpu().to(torch.float64)  # (4, B)
    names = (p.modalities[ia], p.modalities[ib])
    out = []
    for b in range(p.size):
        fxx, fxb, fbx, fbb = (float(v[k, b]) for k in range(4))
        out.append(
            ModalityInteraction(
                modalities=names,
                target=int(t[b]),
                f_inputs=fxx,
                f_a_only=fxb,
                f_b_only=fbx,
                f_baselines=fbb,
                dividend=fxx - fxb - fbx + fbb,
                effect_a=fxb - fbb,
                effect_b=fbx - fbb,
            )
        )
    return out


# --------------------------------------------------------------------------------------------
# Cross-modal interaction matrices
# --------------------------------------------------------------------------------------------


@dataclass
class CrossInteraction:
    """One item's ``groups(A) x groups(B)`` interaction matrix for one target class.

    Attributes:
        method: ``"second_order"``, ``"integrated_hessians"`` or ``"perturbation"``.
        modalities: ``(A, B)`` names; rows are A's groups, columns B's.
        target: target class index.
        matrix: ``(G_A, G_B)`` float64.
        group_ids_a, group_ids_b: the group IDs of the rows and columns.
        options: the options the method ran with.
    """

    method: str
    modalities: tuple[str, str]
    target: int
    matrix: np.ndarray
    group_ids_a: np.ndarray
    group_ids_b: np.ndarray
    options: dict[str, Any] = field(default_factory=dict)

    def to_arrays(self, prefix: str = "") -> dict[str, np.ndarray]:
        return {
            f"{prefix}matrix": self.matrix,
            f"{prefix}group_ids_a": self.group_ids_a,
            f"{prefix}group_ids_b": self.group_ids_b,
        }

    def to_json(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "modalities": list(self.modalities),
            "target": self.target,
            "matrix": self.matrix.tolist(),
            "group_ids_a": self.group_ids_a.tolist(),
            "group_ids_b": self.group_ids_b.tolist(),
            "options": _jsonable(self.options),
        }


def _group_indicators(p: PreparedBatch, m: int) -> Tensor:
    """``(K, B, *M_m)`` bool: element belongs to the item's ``k``-th group (False for slots past
    the item's group count)."""
    ids, valid = p.group_table(m)  # (B, K)
    mask = p.masks[m]
    k = ids.shape[1]
    view = ids.T.reshape(k, p.size, *([1] * (mask.dim() - 1)))
    return (mask.unsqueeze(0) == view) & valid.T.reshape_as(view)


def _hvp_batched(g_s: Tensor, z_l: Tensor, vectors: Tensor, *, retain: bool) -> Tensor | None:
    """``d(g_s . v_k)/d z_l`` for every ``v_k`` in ``vectors`` ``(K, *g_s.shape)`` in one vmapped
    backward pass; falls back to a loop (with a warning) for ops lacking vmap rules."""
    try:
        (hv,) = torch.autograd.grad(
            g_s, z_l, grad_outputs=vectors, is_grads_batched=True, retain_graph=retain, allow_unused=True
        )
        return hv
    except RuntimeError as exc:
        if "vmap" not in str(exc) and "batch" not in str(exc).lower():
            raise
        warnings.warn(
            f"vmapped Hessian-vector products failed ({exc}); looping over groups instead", RuntimeWarning, stacklevel=3
        )
    outs = []
    for k in range(vectors.shape[0]):
        (hv,) = torch.autograd.grad(g_s, z_l, grad_outputs=vectors[k], retain_graph=True, allow_unused=True)
        if hv is None:
            return None
        outs.append(hv)
    return torch.stack(outs)


def _cross_hessian(
    p: PreparedBatch,
    targets: Tensor,
    ia: int,
    ib: int,
    *,
    what: str,
    origin: Sequence[Tensor],
    direction: Sequence[Tensor] | None,
    ts: Tensor,
    weights: Tensor,
    mult: Sequence[Tensor],
    max_rows: int | None,
    group_chunk: int | None,
) -> list[Tensor]:
    """``M_b[g, h] = sum_s w_s sum_{i in g, j in h} mult_i H_ij(z_s) mult_j`` per item, with
    ``z_s = origin + t_s * direction`` (``direction=None``: ``z = origin``); ``(G_A, G_B)``."""
    ka, kb = p.group_table(ia)[0].shape[1], p.group_table(ib)[0].shape[1]
    s_idx, l_idx = (ia, ib) if ka <= kb else (ib, ia)
    big_b = p.size
    # u_k: (K_S, B, *S_S): mult_S on group k's elements, 0 elsewhere
    indic = _group_indicators(p, s_idx)
    u = mult[s_idx].unsqueeze(0) * indic.to(mult[s_idx].dtype)
    k_s = u.shape[0]
    # Each chunk of HVPs goes straight into L's group sums: acc[k, b, slot] (float64, on the
    # CPU like every score; slot = the element's position in item b's sorted group IDs).
    feat_l = [d + 1 for d in p.feature_dims(l_idx)]  # +1: the leading K dimension
    smask_l = p.spatial_mask(l_idx).cpu()
    table_l, slot_l = _group_slots(p, l_idx, smask_l)  # (B, K_L), (B, E_L)
    acc = torch.zeros((k_s, big_b, table_l.shape[1]), dtype=torch.float64)
    mult_l = mult[l_idx].unsqueeze(0)
    caller = p.caller(what)
    n_points = ts.numel()
    per_call = n_points if max_rows is None else max(1, int(max_rows) // big_b)
    kc = k_s if not group_chunk else max(1, int(group_chunk))
    for s0 in range(0, n_points, per_call):
        t_c, w_c = ts[s0 : s0 + per_call], weights[s0 : s0 + per_call]
        n_c = t_c.numel()
        z = []
        for m, o in enumerate(origin):
            if direction is None:
                zm = _expand_rows(o, n_c)
            else:
                shape = (n_c, *([1] * o.dim()))
                zm = o.unsqueeze(0) + t_c.to(device=o.device, dtype=o.dtype).reshape(shape) * direction[m].unsqueeze(0)
                zm = zm.reshape(n_c * big_b, *o.shape[1:])
            z.append(zm.detach().requires_grad_(m in (s_idx, l_idx)))
        with torch.enable_grad():
            out = caller.forward_rows(tuple(z))
            sel = _target_logit(out, targets, n_c)  # (n_c, B)
            total = (sel * w_c.to(device=sel.device, dtype=sel.dtype).reshape(n_c, 1)).sum()
            (g_s,) = torch.autograd.grad(total, z[s_idx], create_graph=True)
            check_finite([g_s.reshape(n_c, big_b, -1).transpose(0, 1)], what=f"{what} (gradient)")
            if not g_s.requires_grad:  # f is linear in S: the cross block is zero
                continue
            for k0 in range(0, k_s, kc):
                k1 = min(k_s, k0 + kc)
                vec = u[k0:k1].unsqueeze(1).expand(k1 - k0, n_c, *u.shape[1:])
                vec = vec.reshape(k1 - k0, n_c * big_b, *u.shape[2:])
                hv = _hvp_batched(g_s, z[l_idx], vec, retain=k1 < k_s)
                if hv is None:  # L does not reach grad_S f: zero block
                    break
                values = hv.detach().reshape(k1 - k0, n_c, *p.inputs[l_idx].shape).sum(dim=1) * mult_l
                # (k, B, *S_L), float64 before any sum; contiguous: see attribution.summarize
                values = values.cpu().to(torch.float64, memory_format=torch.contiguous_format)
                values = values.sum(dim=feat_l) if feat_l else values
                values = values.reshape(k1 - k0, big_b, -1)  # (k, B, E_L)
                check_finite([values.transpose(0, 1)], what=what)
                acc[k0:k1].scatter_add_(2, slot_l.unsqueeze(0).expand_as(values), values)
    out_mats = []
    for b in range(big_b):
        mat = acc[: len(p.group_ids[b][s_idx]), b, : len(p.group_ids[b][l_idx])]  # (G_S, G_L)
        out_mats.append(mat if s_idx == ia else mat.T)
    return out_mats


def second_order(
    p: PreparedBatch,
    targets: Tensor,
    ia: int,
    ib: int,
    *,
    multiply_by: str = "input",
    max_rows: int | None = None,
    group_chunk: int | None = None,
) -> list[Tensor]:
    r"""Gradient-times-input of the cross Hessian block (MultiViz second-order).

    ``M[g, h] = sum_{i in g, j in h} x_i H_ij(x) x_j`` (``multiply_by="difference"``: ``x - x'``
    in place of ``x``).

    Args:
        p (PreparedBatch): ``B`` items; inputs ``(B, *S_m)``, masks ``(B, *M_m)``.
        targets (LongTensor): ``(B,)`` target class per item.
        ia, ib (int): modality indices of A (rows) and B (columns).
        multiply_by (str): ``"input"`` or ``"difference"``.
        max_rows (int, optional): unused (one call of ``B`` rows).
        group_chunk (int, optional): Hessian-vector products per vmapped backward (bounds
                    memory at ``group_chunk * B * |S_L|``); default all at once.

    Returns:
        Per item a ``(G_A, G_B)`` float64 tensor.

    Cost: 1 forward + 1 backward (with graph) + ``min(G_A, G_B)`` Hessian-vector products per
    item, the products in one vmapped double-backward per ``group_chunk``.
    """
    if multiply_by not in ("input", "difference"):
        raise ValueError("multiply_by must be 'input' or 'difference'")
    mult = p.inputs if multiply_by == "input" else tuple(x - b for x, b in zip(p.inputs, p.baselines))
    one = torch.ones(1, dtype=torch.float64)
    return _cross_hessian(
        p,
        targets,
        ia,
        ib,
        what="second_order",
        origin=p.inputs,
        direction=None,
        ts=one,
        weights=one,
        mult=mult,
        max_rows=max_rows,
        group_chunk=group_chunk,
    )


def _ih_rule(n_steps: int) -> tuple[Tensor, Tensor]:
    """Midpoints ``t_s`` and product-integration weights for ``int_0^1 t (-ln t) g(t) dt``."""

    def antiderivative(t: Tensor) -> Tensor:
        safe = torch.where(t > 0, t, torch.ones_like(t))
        return torch.where(t > 0, t**2 / 4 - (t**2 / 2) * torch.log(safe), torch.zeros_like(t))

    edges = torch.linspace(0.0, 1.0, n_steps + 1, dtype=torch.float64)
    weights = antiderivative(edges[1:]) - antiderivative(edges[:-1])
    return (edges[1:] + edges[:-1]) / 2, weights


def integrated_hessians(
    p: PreparedBatch,
    targets: Tensor,
    ia: int,
    ib: int,
    *,
    n_steps: int = 16,
    max_rows: int | None = None,
    group_chunk: int | None = None,
) -> list[Tensor]:
    r"""Integrated Hessians (Janizek et al. 2021), cross block ``A x B``, summed per group pair.

    ``M[g, h] = sum_{i in g, j in h} (x_i - x'_i)(x_j - x'_j) sum_s w_s H_ij(x' + t_s (x - x'))``
    with the product-integration rule of the module doc (exact for a constant cross Hessian).

    Args:
        p (PreparedBatch): ``B`` items; inputs and baselines ``(B, *S_m)``.
        targets (LongTensor): ``(B,)`` target class per item.
        ia, ib (int): modality indices of A (rows) and B (columns).
        n_steps (int): points on the path. Default: 16.
        max_rows (int, optional): the most rows per head call (``max_rows // B`` path points
                    per call).
        group_chunk (int, optional): Hessian-vector products per vmapped backward.

    Returns:
        Per item a ``(G_A, G_B)`` float64 tensor.

    Cost: ``n_steps`` x (1 forward + 1 backward with graph + ``min(G_A, G_B)`` Hessian-vector
    products) per item.
    """
    if n_steps < 1:
        raise ValueError("n_steps must be at least 1")
    ts, weights = _ih_rule(int(n_steps))
    diff = tuple(x - b for x, b in zip(p.inputs, p.baselines))
    return _cross_hessian(
        p,
        targets,
        ia,
        ib,
        what="integrated_hessians",
        origin=p.baselines,
        direction=diff,
        ts=ts,
        weights=weights,
        mult=diff,
        max_rows=max_rows,
        group_chunk=group_chunk,
    )


def perturbation_dividend(
    p: PreparedBatch, targets: Tensor, ia: int, ib: int, *, max_rows: int | None = 512
) -> list[Tensor]:
    r"""The pairwise ablation dividend ``f(x) - f(x\{g}) - f(x\{h}) + f(x\{g,h})``.

    Args:
        p (PreparedBatch): ``B`` items; inputs and baselines ``(B, *S_m)``, masks
                    ``(B, *M_m)``.
        targets (LongTensor): ``(B,)`` target class per item.
        ia, ib (int): modality indices of A (rows) and B (columns).
        max_rows (int, optional): the most rows per head call. Default: 512.

    Returns:
        Per item a ``(G_A, G_B)`` float64 tensor.

    Cost: ``1 + G_A + G_B + G_A * G_B`` forward passes per item (``G`` the largest counts in
    the batch), no backward pass.
    """
    ids_a, valid_a = p.group_table(ia)
    ids_b, valid_b = p.group_table(ib)
    ka, kb = ids_a.shape[1], ids_b.shape[1]
    configs = (
        [(-1, -1)]
        + [(k, -1) for k in range(ka)]
        + [(-1, j) for j in range(kb)]
        + [(k, j) for k in range(ka) for j in range(kb)]
    )
    big_b = p.size
    per_call = len(configs) if max_rows is None else max(1, int(max_rows) // big_b)
    caller = p.caller("perturbation")

    def ablated(m: int, ids: Tensor, slots: Tensor) -> Tensor:
        # gid per (config, item); -1 ablates nothing
        gid = torch.where(slots[:, None] >= 0, ids[:, slots.clamp(min=0)].T, -torch.ones_like(ids[:, :1].T))
        mask = p.masks[m]
        hit = mask.unsqueeze(0) == gid.reshape(*gid.shape, *([1] * (mask.dim() - 1)))
        x, base = p.inputs[m].unsqueeze(0), p.baselines[m].unsqueeze(0)
        return torch.where(hit, base, x).reshape(-1, *p.inputs[m].shape[1:])

    values = []
    with torch.no_grad():
        for c0 in range(0, len(configs), per_call):
            chunk = torch.tensor(configs[c0 : c0 + per_call], dtype=torch.long, device=p.device)
            rows = []
            for m in range(len(p.inputs)):
                if m == ia:
                    rows.append(ablated(m, ids_a, chunk[:, 0]))
                elif m == ib:
                    rows.append(ablated(m, ids_b, chunk[:, 1]))
                else:
                    rows.append(_expand_rows(p.inputs[m], len(chunk)))
            values.append(_target_logit(caller.forward_rows(tuple(rows)), targets, len(chunk)))
    v = torch.cat(values).detach().cpu().to(torch.float64)  # (n_configs, B)
    f0 = v[0]
    fa = v[1 : 1 + ka]
    fb = v[1 + ka : 1 + ka + kb]
    fab = v[1 + ka + kb :].reshape(ka, kb, big_b)
    d = f0 - fa[:, None, :] - fb[None, :, :] + fab  # (K_A, K_B, B)
    return [d[: len(p.group_ids[b][ia]), : len(p.group_ids[b][ib]), b] for b in range(big_b)]


CROSS_METHODS: dict[str, Callable[..., list[Tensor]]] = {
    "second_order": second_order,
    "integrated_hessians": integrated_hessians,
    "perturbation": perturbation_dividend,
}


def cross_modal_interaction(
    adapter: ModelAdapter,
    batch: Any,
    *,
    method: str,
    targets: Any,
    modalities: Sequence[str] | None = None,
    prepared: PreparedBatch | None = None,
    **options: Any,
) -> list[CrossInteraction]:
    """The ``groups(A) x groups(B)`` interaction matrix per item by one method.

    Args:
        adapter: a loaded adapter.
        batch: ``adapter.encode(items)`` for ``B`` items (ignored if ``prepared`` is given).
        method: ``"second_order"``, ``"integrated_hessians"`` or ``"perturbation"``.
        targets: LongTensor ``(B,)`` of class indices (or an int).
        modalities: ``(A, B)`` names; needed with more than two modalities.
        prepared: a :class:`PreparedBatch` of the batch.
        **options: method options (``n_steps``, ``max_rows``, ``group_chunk``, ``multiply_by``).

    Returns:
        One :class:`CrossInteraction` per item. Raises :class:`NonFiniteError` on NaN/Inf
        logits or scores.
    """
    try:
        fn = CROSS_METHODS[method]
    except KeyError:
        raise ValueError(f"unknown interaction method {method!r}; known: {sorted(CROSS_METHODS)}") from None
    p = prepared if prepared is not None else prepare_batch(adapter, batch)
    ia, ib = pick_modalities(p.modalities, modalities)
    t = as_targets(targets, p.size, p.n_labels, p.device)
    mats = fn(p, t, ia, ib, **options)
    check_finite([m.reshape(1, -1) for m in mats], what=method)
    names = (p.modalities[ia], p.modalities[ib])
    return [
        CrossInteraction(
            method=method,
            modalities=names,
            target=int(t[b]),
            matrix=mats[b].detach().cpu().numpy().astype(np.float64),
            group_ids_a=p.group_ids[b][ia].cpu().numpy(),
            group_ids_b=p.group_ids[b][ib].cpu().numpy(),
            options=dict(options),
        )
        for b in range(p.size)
    ]


# --------------------------------------------------------------------------------------------
# EMAP
# --------------------------------------------------------------------------------------------


@dataclass
class EmapResult:
    """Empirical multimodally-additive function projection over a dataset.

    Attributes:
        modalities: ``(A, B)``; ``pair_logits[i, j]`` pairs A from item ``i`` with B from ``j``.
        n: number of items.
        logits: ``(N, C)`` the model's logits ``f(a_i, b_i)``.
        projection: ``(N, C)`` ``mean_j f(a_i, b_j) + mean_j f(a_j, b_i) - mean_{k,l} f(a_k, b_l)``.
        model_accuracy, projection_accuracy: shares of argmax equal to the gold label (None
            without gold labels).
        emap_gap: ``model_accuracy - projection_accuracy`` (None without gold labels).
        agreement: share of items where the projection's argmax equals the model's.
        pair_logits: ``(N, N, C)`` when kept.
    """

    modalities: tuple[str, str]
    n: int
    logits: np.ndarray
    projection: np.ndarray
    model_accuracy: float | None
    projection_accuracy: float | None
    emap_gap: float | None
    agreement: float
    gold: np.ndarray | None = None
    pair_logits: np.ndarray | None = None

    def to_arrays(self, prefix: str = "emap/") -> dict[str, np.ndarray]:
        out = {f"{prefix}logits": self.logits, f"{prefix}projection": self.projection}
        if self.gold is not None:
            out[f"{prefix}gold"] = self.gold
        if self.pair_logits is not None:
            out[f"{prefix}pair_logits"] = self.pair_logits
        return out

    def to_json(self) -> dict[str, Any]:
        return {
            "modalities": list(self.modalities),
            "n": self.n,
            "model_accuracy": self.model_accuracy,
            "projection_accuracy": self.projection_accuracy,
            "emap_gap": self.emap_gap,
            "agreement": self.agreement,
        }


def _gold_indices(adapter: ModelAdapter, items: Sequence[RawItem], labels: Any) -> np.ndarray | None:
    names = [str(x) for x in adapter.labels]
    if labels is None:
        if not all("label" in it for it in items):
            return None
        labels = [it["label"] for it in items]
        if not all(str(x) in names for x in labels):
            return None
    out = []
    for x in labels:
        if isinstance(x, (int, np.integer)) and not isinstance(x, bool):
            out.append(int(x))
        elif str(x) in names:
            out.append(names.index(str(x)))
        else:
            raise ValueError(f"gold label {x!r} is not one of the adapter's labels")
    return np.asarray(out, dtype=np.int64)


def _pair_logits_items(adapter: ModelAdapter, items: Sequence[RawItem], name_b: str, batch_size: int) -> Tensor:
    n = len(items)
    pairs = [(i, j) for i in range(n) for j in range(n)]
    chunks = []
    for c0 in range(0, len(pairs), batch_size):
        chunk = pairs[c0 : c0 + batch_size]
        synthetic = [{**items[i], name_b: items[j][name_b]} for i, j in chunk]
        with nonfinite_naming(items=synthetic):  # a pair is named by the item that keeps modality a
            batch = adapter.encode(synthetic)
            p = prepare_batch(adapter, batch)
            chunks.append(p.caller("emap").forward_rows(p.inputs).detach().to(torch.float64).cpu())
    return torch.cat(chunks).reshape(n, n, -1)


def _pair_logits_embedded(
    adapter: ModelAdapter, items: Sequence[RawItem], ia: int, ib: int, context: int, batch_size: int, max_rows: int
) -> Tensor:
    n = len(items)
    swap = ib if context == ia else ia
    blocks = [list(range(s, min(n, s + batch_size))) for s in range(0, n, batch_size)]
    swapped: list[Tensor] = []
    for blk in blocks:
        p = prepare_batch(adapter, adapter.encode([items[k] for k in blk]))
        swapped.append(p.inputs[swap])
    swapped_all = torch.cat(swapped)  # (N, *S_swap)
    c = len(adapter.labels)
    out = torch.empty(n, n, c, dtype=torch.float64)
    for blk in blocks:
        chunk = [items[k] for k in blk]
        with nonfinite_naming(items=chunk):  # rows are named by their context item
            p = prepare_batch(adapter, adapter.encode(chunk))
            if p.inputs[swap].shape[1:] != swapped_all.shape[1:]:
                raise ValueError(
                    f"pairing='embedded' needs modality {p.modalities[swap]!r} to have the same per-item "
                    f"shape in every batch ({tuple(p.inputs[swap].shape[1:])} vs "
                    f"{tuple(swapped_all.shape[1:])}); use pairing='items'"
                )
            caller = p.caller("emap")
            size = len(blk)
            per_call = max(1, max_rows // size)
            for s0 in range(0, n, per_call):
                others = swapped_all[s0 : s0 + per_call]  # (J, *S_swap)
                j = others.shape[0]
                rows = []
                for m, x in enumerate(p.inputs):
                    if m == swap:
                        rows.append(others.repeat_interleave(size, dim=0))  # row j*size + i
                    else:
                        rows.append(_expand_rows(x, j))
                logits = caller.forward_rows(tuple(rows)).detach().to(torch.float64).cpu()
                logits = logits.reshape(j, size, c)  # [other, context]
                ctx_idx = torch.tensor(blk)
                other_idx = torch.arange(s0, s0 + j)
                if swap == ib:  # context items give A: L[i_ctx, j_other]
                    out[ctx_idx[None, :], other_idx[:, None]] = logits
                else:  # context items give B: L[i_other, j_ctx]
                    out[other_idx[:, None], ctx_idx[None, :]] = logits
    return out


def _pair_logits_encoded(
    adapter: ModelAdapter, items: Sequence[RawItem], ia: int, ib: int, batch_size: int, max_rows: int
) -> Tensor:
    """``L[i, j]`` from the adapter's per-modality encodings (``workers/engine/encodings.py``):
    every item's modalities encoded once (``N`` rows per modality), then ``fuse`` on the ``N^2``
    pairs in calls of at most ``fuse_rows(max_rows)`` rows (row-major in ``(i, j)``); the modalities other
    than ``A`` and ``B`` come from item ``i``."""
    n = len(items)
    encodings = encode_items(adapter, items, batch_size=batch_size)
    c = len(adapter.labels)
    out = torch.empty(n * n, c, dtype=torch.float64)
    per_call = fuse_rows(max_rows)
    for r0 in range(0, n * n, per_call):
        rows = torch.arange(r0, min(n * n, r0 + per_call))
        first, second = rows // n, rows % n
        # the index on the encodings' device: CUDA's index_select refuses a CPU index
        picked = [enc.index_select(0, (second if m == ib else first).to(enc.device)) for m, enc in enumerate(encodings)]
        try:
            out[r0 : r0 + len(rows)] = fused_logits(adapter, picked, what="emap")
        except NonFiniteError as exc:  # a pair is named by the item that gives modality a
            bad = sorted({int(first[k]) for k in exc.batch_items})
            raise NonFiniteError(exc.detail, item_ids=[str(items[i].get("id", "?")) for i in bad]) from exc
    return out.reshape(n, n, c)


def emap(
    adapter: ModelAdapter,
    items: Sequence[RawItem],
    *,
    modalities: Sequence[str] | None = None,
    labels: Sequence[Any] | None = None,
    batch_size: int = 64,
    pairing: str = "items",
    context_modality: str | None = None,
    max_rows: int = 1024,
    keep_pair_logits: bool = False,
    encodings: bool = True,
) -> EmapResult:
    """EMAP (Hessel & Lee 2020) of the model over ``items``: how much accuracy it keeps when its
    logits are projected onto additive functions of the two modalities.

    With ``L[i, j] = f(a_i, b_j)`` (logits of A from item ``i`` paired with B from item ``j``;
    other modalities from item ``i``)::

        projection_i = mean_j L[i, j] + mean_j L[j, i] - mean_{k,l} L[k, l]
        emap_gap     = accuracy(argmax logits_i) - accuracy(argmax projection_i)

    A gap near zero means the model's predictions use no cross-modal interaction; an additive
    model's projection equals its logits exactly.

    Pairing (``head`` takes ``batch``, whose per-item context belongs to some modality):

    * ``pairing="items"`` (default, needs nothing beyond the protocol): each pair is a synthetic
      raw item ``{**items[i], B: items[j][B]}`` run through ``encode``, ``embed`` and ``head``,
      so every per-item context is rebuilt consistently. Costs ``N^2`` encodes.
    * an adapter with per-modality encodings (``encode_modality`` and ``fuse``,
      ``workers/engine/encodings.py``) is paired by its encodings whichever ``pairing`` is
      asked (the hook's contract makes the three equal): ``N`` encodings per modality and
      ``N^2`` rows through ``fuse`` only, in calls of ``max_rows`` rows. ``encodings=False``
      runs ``head`` on every pair instead.
    * ``pairing="embedded"``: encode blocks of ``batch_size`` items once, and swap the embedded
      tensor of the non-context modality between items, keeping the batch of the items whose
      ``context_modality`` is used (default ``A``). Assumes everything item-specific in
      ``batch`` belongs to ``context_modality`` and that the other modality's embedded tensors
      have the same per-item shape in every batch (checked). Costs ``2 N / batch_size`` encodes.

    Args:
        adapter: a loaded adapter.
        items: ``N`` raw items.
        modalities: ``(A, B)``; needed with more than two modalities.
        labels: gold labels (names or indices); default the items' ``label`` field when every
            item has one of the adapter's labels.
        batch_size: items per encode.
        pairing: ``"items"`` or ``"embedded"``.
        context_modality: with ``pairing="embedded"``, the modality whose items' batch is kept.
        max_rows: the most rows per head call (``pairing="embedded"``) or ``fuse`` call.
        keep_pair_logits: keep the ``(N, N, C)`` pair logits in the result.
        encodings: use the adapter's per-modality encodings when it has them.

    Returns:
        :class:`EmapResult`. Cost: ``N^2`` forward passes. Raises :class:`NonFiniteError` on
        NaN/Inf logits.
    """
    items = list(items)
    if len(items) < 2:
        raise ValueError("EMAP needs at least two items")
    ia, ib = pick_modalities(adapter.modalities, modalities)
    names = (str(adapter.modalities[ia]), str(adapter.modalities[ib]))
    gold = _gold_indices(adapter, items, labels)
    if pairing not in ("items", "embedded"):
        raise ValueError("pairing must be 'items' or 'embedded'")
    if pairing == "embedded" and context_modality is not None and context_modality not in names:
        raise ValueError(f"context_modality must be one of {list(names)}")
    with torch.no_grad():
        if encodings and has_modality_encodings(adapter):
            pair = _pair_logits_encoded(adapter, items, ia, ib, batch_size, max_rows)
        elif pairing == "items":
            pair = _pair_logits_items(adapter, items, names[1], batch_size)
        else:
            ctx = ia if context_modality is None else (ia, ib)[names.index(context_modality)]
            pair = _pair_logits_embedded(adapter, items, ia, ib, ctx, batch_size, max_rows)
    if not torch.isfinite(pair).all():
        bad = sorted({int(i) for i in torch.nonzero(~torch.isfinite(pair).all(dim=2))[:, 0]})
        raise NonFiniteError("EMAP pair logits contain NaN/Inf", item_ids=[str(items[i].get("id", "?")) for i in bad])
    logits = torch.diagonal(pair, dim1=0, dim2=1).T  # (N, C)
    projection = pair.mean(dim=1) + pair.mean(dim=0) - pair.mean(dim=(0, 1))
    model_pred = logits.argmax(dim=1).numpy()
    proj_pred = projection.argmax(dim=1).numpy()
    if gold is not None:
        model_acc = float(np.mean(model_pred == gold))
        proj_acc = float(np.mean(proj_pred == gold))
        gap: float | None = model_acc - proj_acc
    else:
        model_acc = proj_acc = gap = None
    return EmapResult(
        modalities=names,
        n=len(items),
        logits=logits.numpy(),
        projection=projection.numpy(),
        model_accuracy=model_acc,
        projection_accuracy=proj_acc,
        emap_gap=gap,
        agreement=float(np.mean(model_pred == proj_pred)),
        gold=gold,
        pair_logits=pair.numpy() if keep_pair_logits else None,
    )
