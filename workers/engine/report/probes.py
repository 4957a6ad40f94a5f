"""The forward passes of the model report, batched through ``adapter.head``.

Notation: ``B`` items in a :class:`~workers.engine.attribution.PreparedBatch`, ``M``
modalities with embedded inputs ``(B, *S_m)`` and baselines of the same shape, ``C`` labels.
A *subset* is a tuple of ``M`` booleans: modality ``m`` at its input where True, at its
baseline where False. Rows follow the protocol layout (row ``r`` of a head call belongs to item
``r % B``), so any adapter's per-item context in ``batch`` stays right. Every count below is in
rows through ``head`` (forward passes); no method here runs a backward pass, except
:func:`group_pair_scores` with a gradient method. Logits come back as float64 on the CPU.

No Django here.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from workers.engine.adapter import ModelAdapter, RawItem
from workers.engine.attribution import NonFiniteError, PreparedBatch, nonfinite_naming, prepare_batch
from workers.engine.encodings import (
    encode_items,
    encode_modalities,
    fuse_rows,
    fused_logits,
    has_modality_encodings,
)
from workers.engine.interactions import cross_modal_interaction
from workers.engine.render import patch_grid_labels

__all__ = [
    "MAX_MODALITIES",
    "all_subsets",
    "corrupted_logits",
    "group_names",
    "group_pair_scores",
    "noisy_logits",
    "permuted_logits",
    "subset_logits",
]

#: The report evaluates all ``2^M`` modality subsets; beyond this it refuses (64 passes per item).
MAX_MODALITIES = 6


def all_subsets(n_modalities: int) -> list[tuple[bool, ...]]:
    """Every subset of ``n_modalities`` modalities, as in-or-baseline flags, ordered by
    bitmask (modality ``m`` is bit ``m``): ``[(F, F), (T, F), (F, T), (T, T)]`` for two."""
    if not 1 <= n_modalities <= MAX_MODALITIES:
        raise ValueError(f"the model report handles 1 to {MAX_MODALITIES} modalities, got {n_modalities}")
    return [tuple(bool(mask >> m & 1) for m in range(n_modalities)) for mask in range(2**n_modalities)]


def _forward(p: PreparedBatch, parts: Sequence[Sequence[Tensor]], what: str, max_rows: int | None) -> Tensor:
    """Logits ``(K, B, C)`` for ``K`` versions of the batch, ``parts[k][m]`` ``(B, *S_m)``,
    in head calls of at most ``max_rows`` rows (whole versions at a time)."""
    big_b = p.size
    per_call = len(parts) if max_rows is None else max(1, int(max_rows) // max(big_b, 1))
    caller = p.caller(what)
    out = []
    with torch.no_grad():
        for start in range(0, len(parts), per_call):
            chunk = parts[start : start + per_call]
            rows = tuple(torch.cat([version[m] for version in chunk]) for m in range(len(p.inputs)))
            logits = caller.forward_rows(rows).detach().to(torch.float64).cpu()
            out.append(logits.reshape(len(chunk), big_b, -1))
    return torch.cat(out)


def _forward_encoded(p: PreparedBatch, parts: Sequence[Sequence[Tensor]], what: str, max_rows: int | None) -> Tensor:
    """:func:`_forward` through the adapter's ``fuse`` (``workers/engine/encodings.py``), in
    calls of at most ``fuse_rows(max_rows)`` rows (whole versions at a time): ``parts[k][m]``
    is ``(B, *E_m)``, modality ``m``'s encoding in version ``k``."""
    big_b = p.size
    per_call = max(1, fuse_rows(max_rows) // max(big_b, 1))
    out = []
    for start in range(0, len(parts), per_call):
        chunk = parts[start : start + per_call]
        rows = [torch.cat([version[m] for version in chunk]) for m in range(len(p.inputs))]
        out.append(fused_logits(p.adapter, rows, what=what, n_items=big_b).reshape(len(chunk), big_b, -1))
    return torch.cat(out)


def subset_logits(p: PreparedBatch, subsets: Sequence[Sequence[bool]], *, max_rows: int | None = 1024) -> Tensor:
    """Logits with each modality at its input or its baseline, for every subset.

    Args:
        p (PreparedBatch): ``B`` items.
        subsets: ``K`` tuples of ``M`` flags (True: the modality's input).
        max_rows (int, optional): the most rows per head call.

    Returns:
        float64 ``(K, B, C)``. Cost: ``K`` forward passes per item; with per-modality encodings
        (``workers/engine/encodings.py``), 2 encodings per modality and ``K`` fusions per item.
    """
    what = "model report (modality subsets)"
    if has_modality_encodings(p.adapter):
        inputs = encode_modalities(p.adapter, p.inputs, batch=p.batch)
        baselines = encode_modalities(p.adapter, p.baselines, batch=p.batch)
        encoded = [[x if keep else base for x, base, keep in zip(inputs, baselines, subset)] for subset in subsets]
        return _forward_encoded(p, encoded, what, max_rows)
    parts = [[x if keep else base for x, base, keep in zip(p.inputs, p.baselines, subset)] for subset in subsets]
    return _forward(p, parts, what, max_rows)


def noisy_logits(
    p: PreparedBatch,
    *,
    sigma: Sequence[float],
    n_samples: int,
    seed: int,
    max_rows: int | None = 1024,
    clean: Sequence[Tensor] | None = None,
) -> Tensor:
    """Logits with isotropic Gaussian noise added to the embedded inputs.

    Args:
        p (PreparedBatch): ``B`` items.
        sigma: per modality, the noise's standard deviation in embedding units (0: no noise on
            that modality).
        n_samples (int): independent noise draws per item.
        seed (int): seeds a CPU generator, so the draws are the same on every device.

    Returns:
        float64 ``(n_samples, B, C)``. Cost: ``n_samples`` forward passes per item; with
        per-modality encodings (``workers/engine/encodings.py``), ``n_samples`` encodings of each
        noisy modality and fusions per item (``clean``: the encodings of ``p.inputs``, kept by
        the caller across calls; computed when None).
    """
    what = "model report (noise)"
    generator = torch.Generator().manual_seed(int(seed))
    parts = []
    for _ in range(n_samples):
        version = []
        for x, s in zip(p.inputs, sigma):
            if s:
                noise = torch.randn(x.shape, generator=generator, dtype=x.dtype)
                version.append(x + (s * noise).to(x.device))
            else:
                version.append(x)
        parts.append(version)
    if has_modality_encodings(p.adapter):
        noisy = [m for m, s in enumerate(sigma) if s]
        base = clean if clean is not None else encode_modalities(p.adapter, p.inputs, batch=p.batch)
        encoded = []
        for version in parts:
            fresh = encode_modalities(p.adapter, version, batch=p.batch, only=noisy)
            encoded.append([fresh[m] if m in noisy else base[m] for m in range(len(version))])
        return _forward_encoded(p, encoded, what, max_rows)
    return _forward(p, parts, what, max_rows)


def corrupted_logits(
    adapter: ModelAdapter,
    batch: Any,
    *,
    modality: str,
    level: float,
    seed: int,
    max_rows: int | None = 1024,
    clean: tuple[Sequence[Tensor], Sequence[Tensor]] | None = None,
) -> Tensor:
    """Logits after the adapter's own corruption of one modality (optional protocol hook
    ``adapter.corrupt(batch, modality=..., level=..., seed=...)``, which returns a new batch).

    With per-modality encodings (``workers/engine/encodings.py``) and ``clean`` (the batch's
    embedded inputs and their encodings), the corrupted modality, and any other whose embedded
    input the corruption changed, is encoded again; the others keep their clean encodings.

    Returns:
        float64 ``(B, C)``. Cost: one ``corrupt``, one ``embed`` and one forward pass per item;
        with encodings, the changed modalities' encodings and one fusion per item.
    """
    what = f"model report (corruption of {modality})"
    corrupted = adapter.corrupt(batch, modality=modality, level=float(level), seed=int(seed))
    if clean is not None and has_modality_encodings(adapter):
        clean_inputs, clean_encoded = clean
        with torch.no_grad():
            inputs = tuple(x.detach() for x in adapter.embed(corrupted))
        corrupted_index = [str(m) for m in adapter.modalities].index(modality)
        changed = [
            m
            for m, (x, y) in enumerate(zip(inputs, clean_inputs))
            if m == corrupted_index or x.shape != y.shape or not torch.equal(x, y)
        ]
        fresh = encode_modalities(adapter, inputs, batch=corrupted, only=changed)
        rows = [fresh[m] if m in changed else clean_encoded[m] for m in range(len(inputs))]
        n, per_call = rows[0].shape[0], fuse_rows(max_rows)
        out = []
        for start in range(0, n, per_call):
            try:
                out.append(fused_logits(adapter, [r[start : start + per_call] for r in rows], what=what))
            except NonFiniteError as exc:  # positions in the whole batch
                raise NonFiniteError(exc.detail, batch_items=[start + b for b in exc.batch_items]) from exc
        return torch.cat(out)
    p = prepare_batch(adapter, corrupted)
    return _forward(p, [list(p.inputs)], what, max_rows)[0]


def permuted_logits(
    adapter: ModelAdapter,
    items: Sequence[RawItem],
    *,
    modality: str,
    order: Sequence[int],
    batch_size: int = 64,
    max_rows: int | None = 1024,
    encoded: Sequence[Tensor] | None = None,
) -> Tensor:
    """Logits of every item with one modality taken from another item: item ``i`` paired with
    the ``modality`` payload of item ``order[i]``.

    Pairs are built as raw items ``{**items[i], modality: items[order[i]][modality]}`` and go
    through ``encode``, ``embed`` and ``head``, so whatever per-item context an adapter keeps in
    its batch is rebuilt for the pair (as EMAP's ``pairing="items"``).

    With per-modality encodings (``workers/engine/encodings.py``) the pair is the item's
    encodings with ``modality``'s from item ``order[i]`` (the hook's contract: a modality's
    encoding depends on its own payload only), ``encoded`` those of every item (from
    :func:`encode_items`; computed when None).

    Returns:
        float64 ``(N, C)``. Cost: one ``encode`` and one forward pass per item; with
        encodings, one fusion per item.
    """
    if has_modality_encodings(adapter):
        encoded = encoded if encoded is not None else encode_items(adapter, items, batch_size=batch_size)
        swap = [str(m) for m in adapter.modalities].index(modality)
        index = torch.as_tensor(list(order), dtype=torch.long)
        out = []
        per_call = fuse_rows(max_rows)
        for start in range(0, len(items), per_call):
            rows = torch.arange(start, min(len(items), start + per_call))
            # index_select wants its index on the encodings' device (CUDA refuses a CPU index)
            picked = [
                enc.index_select(0, (index[rows] if m == swap else rows).to(enc.device))
                for m, enc in enumerate(encoded)
            ]
            try:
                out.append(fused_logits(adapter, picked, what=f"model report (permuted {modality})"))
            except NonFiniteError as exc:  # named by the item that keeps its other modalities
                named = [str(items[int(rows[k])].get("id", "?")) for k in exc.batch_items]
                raise NonFiniteError(exc.detail, item_ids=named) from exc
        return torch.cat(out)
    out = []
    for start in range(0, len(items), batch_size):
        stop = min(len(items), start + batch_size)
        chunk = [{**items[i], modality: items[order[i]][modality]} for i in range(start, stop)]
        with nonfinite_naming(items=chunk):  # a pair is named by the item that keeps its other modalities
            p = prepare_batch(adapter, adapter.encode(chunk))
            out.append(_forward(p, [list(p.inputs)], f"model report (permuted {modality})", max_rows)[0])
    return torch.cat(out)


def group_names(groups: Sequence[Any]) -> dict[int, str | None]:
    """What a person calls each of one item's groups in one modality, by group ID: a word's
    text; a patch's cell on the grid the participant pages draw around the picture (``patch
    B3``: second column from the left, third row from the top; ``render.patch_grid_labels``,
    as ``presentation`` names matrix rows); else its kind and ID. None for hidden groups
    (padding)."""
    infos = [_as_dict(g) for g in groups]
    patches = [g for g in infos if g.get("kind") == "patch" and g.get("box") is not None]
    cells = dict(zip((int(g["group_id"]) for g in patches), patch_grid_labels([g["box"] for g in patches])))
    names: dict[int, str | None] = {}
    for info in infos:
        group_id = int(info["group_id"])
        text = str(info.get("text") or "").strip()
        if info.get("hidden"):
            names[group_id] = None
        elif text:
            names[group_id] = text
        elif group_id in cells:
            names[group_id] = f"patch {cells[group_id]}"
        else:
            names[group_id] = f"{info.get('kind', 'group')} {group_id}"
    return names


def group_pair_scores(
    adapter: ModelAdapter,
    p: PreparedBatch,
    *,
    targets: Tensor,
    pair: tuple[str, str],
    method: str,
    described: Sequence[Sequence[Sequence[Any]]],
    totals: dict[tuple[str, str], list[float]],
    max_rows: int | None = None,
) -> None:
    """Add this batch's cross-modal group interactions to ``totals``.

    For every item the ``groups(A) x groups(B)`` matrix of ``method`` (see
    :func:`workers.engine.interactions.cross_modal_interaction`) for its target class; each
    entry goes to the key ``(name of the A group, name of the B group)``, the name being what a
    participant calls it (:func:`group_names`: a word, ``patch B3``). ``totals[key]`` accumulates
    ``[sum |M|, sum M, count]``.

    Args:
        p (PreparedBatch): ``B`` items.
        targets (LongTensor): ``(B,)``.
        pair: the two modality names.
        described: ``adapter.describe_groups(p.batch)``.

    Cost: the method's (``second_order``: 1 forward + 1 backward + ``min(G_A, G_B)``
    Hessian-vector products per item; ``perturbation``: ``1 + G_A + G_B + G_A G_B`` forward
    passes per item).
    """
    options = {"max_rows": max_rows} if method == "perturbation" and max_rows else {}
    results = cross_modal_interaction(
        adapter, p.batch, method=method, targets=targets, modalities=pair, prepared=p, **options
    )
    ia, ib = p.modalities.index(pair[0]), p.modalities.index(pair[1])
    for b, result in enumerate(results):
        names_a = group_names(described[b][ia])
        names_b = group_names(described[b][ib])
        for r, gid_a in enumerate(result.group_ids_a.tolist()):
            name_a = names_a.get(int(gid_a), f"group {gid_a}")
            if name_a is None:
                continue
            for c, gid_b in enumerate(result.group_ids_b.tolist()):
                name_b = names_b.get(int(gid_b), f"group {gid_b}")
                if name_b is None:
                    continue
                value = float(result.matrix[r, c])
                entry = totals.setdefault((name_a, name_b), [0.0, 0.0, 0.0])
                entry[0] += abs(value)
                entry[1] += value
                entry[2] += 1


def _as_dict(info: Any) -> dict[str, Any]:
    return info.as_dict() if hasattr(info, "as_dict") else dict(info)


def derangement(n: int, rng: np.random.Generator) -> np.ndarray:
    """A random permutation of ``range(n)`` with no fixed point (``n >= 2``): a shuffled
    cycle, so every item gets another item's payload."""
    order = rng.permutation(n)
    out = np.empty(n, dtype=np.int64)
    out[order] = np.roll(order, -1)
    return out


def pairs_of(modalities: Sequence[str]) -> list[tuple[int, int]]:
    """Index pairs ``(a, b)``, ``a < b``, of every two modalities."""
    return list(itertools.combinations(range(len(modalities)), 2))


ProgressFn = Callable[[int, int], None]
