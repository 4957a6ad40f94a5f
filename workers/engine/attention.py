"""Attention of transformer adapters, in the spirit of VL-InterpreT (Aflalo et al., CVPR 2022):
per layer and head attention split into its cross-modal blocks, the head summary, attention
rollout (Abnar & Zuidema 2020) and the gradient-weighted relevance of Chefer et al. (ICCV 2021).

**The adapter hook** (optional, read with ``getattr``): ``attention(items, *, targets=None,
hidden_states=False) -> list[AttentionMaps]``, one per item. ``targets[b]`` lists the label
indices whose relevance item ``b`` needs (their gradients are returned). An
:class:`AttentionMaps` holds one :class:`AttentionStream` per attention stack:

* a single-stream model (ViLT) has one ``"joint"`` stream whose positions are text tokens and
  image patches together, so its attention has four blocks (text→text, text→image,
  image→text, image→image); ``cross_modal`` is True;
* a two-tower model (CLIP) has an ``"image"`` and a ``"text"`` stream that never attend to
  each other: no block crosses modalities, ``cross_modal`` is False and ``note`` says so.

Positions are the stream's tokens without padding. Each position belongs to a **unit**
(:class:`Unit`): an image patch or a word (the feature groups the gradient views show, by the
same group IDs), or a special token (``[CLS]``, ``[SEP]``, a prompt's fixed words). A word of
several pieces is one unit: unit attention averages its pieces' rows (queries) and sums their
columns (keys), so every row still sums to one.

Computations (float64, numpy):

* :func:`block_shares`: per layer × head, ``share[q, k]`` = the mean over the query positions
  of modality ``q`` of their attention mass on keys of modality ``k`` (specials count with
  their stream's modality: ViLT's text ``[CLS]``/``[SEP]`` as text, its image ``[CLS]`` as
  image), so ``share[q].sum() == 1``; :func:`cross_share` is the share of all attention that
  crosses modalities (the head summary);
* :func:`attention_rollout`: heads averaged, the identity added for the residual stream, rows
  renormalised, multiplied through the layers: ``R = Â_L … Â_1``;
* :func:`chefer_relevance`: ``R = I``, then per layer ``R += mean_h(clamp(∇A ⊙ A, min=0)) · R``
  (Chefer et al., eq. for the bi-modal self-attention case); the target's relevance is the
  row of the position the head reads (:attr:`AttentionStream.pooled`).

:func:`attention_record` summarises one item's maps into an :class:`AttentionRecord` at unit
level, stored compactly (:meth:`AttentionRecord.to_bytes`: the per-head attention quantised to
``uint8``, rollout in float16, relevance and shares in float32, compressed). No Django.
"""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

__all__ = [
    "MODALITIES",
    "AttentionMaps",
    "AttentionRecord",
    "AttentionStream",
    "StreamRecord",
    "TargetGradients",
    "Unit",
    "ATTENTION_SOURCES",
    "attention_attribution",
    "attention_record",
    "attention_rollout",
    "block_shares",
    "chefer_relevance",
    "cross_share",
    "has_attention",
    "patch_label",
    "unit_attention",
    "unit_matrix",
]

#: The two modalities a block is named by, in this order (``share[q, k]`` indices).
MODALITIES = ("text", "image")
#: Largest quantised attention value (``uint8``): the stored value is ``round(a * 255)``.
_QUANT = 255


@dataclass(frozen=True)
class Unit:
    """A unit of a stream: ``group`` is the feature group ID a gradient view uses for it
    (a patch or a word), -1 for a special token; ``label`` what a person reads ("B3", the
    word, "[CLS]")."""

    modality: str
    group: int
    label: str

    @property
    def special(self) -> bool:
        return self.group < 0


@dataclass
class TargetGradients:
    """What one target's relevance needs: the attention its logit was computed from and the
    logit's gradient with respect to it, both ``(L, H, N, N)``; ``unit_of`` and ``pooled``
    as in :class:`AttentionStream` (a CLIP prompt differs per class, so they may differ)."""

    attention: np.ndarray
    gradient: np.ndarray
    unit_of: np.ndarray
    pooled: int


@dataclass
class AttentionStream:
    """One attention stack of one item.

    Attributes:
        name: ``"joint"`` (one stream over both modalities), ``"image"`` or ``"text"``.
        attention: ``(L, H, N, N)`` attention probabilities of the ``N`` positions (padding
            removed; rows sum to one).
        unit_of: ``(N,)`` the unit index of each position.
        units: the stream's units.
        pooled: the position the model's head reads (``[CLS]``; CLIP text: end of text).
        targets: per target label index, its :class:`TargetGradients`.
        hidden: ``(L + 1, N, D)`` hidden states (embeddings, then every layer), when asked.
    """

    name: str
    attention: np.ndarray
    unit_of: np.ndarray
    units: list[Unit]
    pooled: int
    targets: dict[int, TargetGradients] = field(default_factory=dict)
    hidden: np.ndarray | None = None

    @property
    def modality_of(self) -> np.ndarray:
        """``(N,)`` the modality index (:data:`MODALITIES`) of each position."""
        return np.array([MODALITIES.index(self.units[u].modality) for u in self.unit_of], dtype=np.int64)


@dataclass
class AttentionMaps:
    """What the adapter hook returns for one item (module doc)."""

    item_id: str
    streams: list[AttentionStream]
    cross_modal: bool
    note: str = ""


def has_attention(adapter: object) -> bool:
    """Whether the adapter implements the optional ``attention`` hook."""
    return callable(getattr(adapter, "attention", None))


def patch_label(k: int, grid: int) -> str:
    """Patch ``k`` of a row-major ``grid x grid``: column letter, row number ("B3"), as the
    other views name patches (``render.patch_grid_labels``)."""
    row, col = divmod(int(k), int(grid))
    letters = ""
    col += 1
    while col:
        col, rest = divmod(col - 1, 26)
        letters = chr(65 + rest) + letters
    return f"{letters}{row + 1}"


# -- computations ---------------------------------------------------------------------------------
def _stack(attention: np.ndarray) -> np.ndarray:
    a = np.asarray(attention, dtype=np.float64)
    if a.ndim != 4 or a.shape[-1] != a.shape[-2]:
        raise ValueError(f"attention must be (layers, heads, N, N), got shape {a.shape}")
    return a


def block_shares(attention: np.ndarray, modality_of: Sequence[int]) -> np.ndarray:
    """``(L, H, 2, 2)``: ``share[l, h, q, k]`` = mean over the query positions of modality
    ``q`` of the attention mass they give keys of modality ``k`` (NaN for a modality without
    positions). Rows sum to one."""
    a = _stack(attention)
    mod = np.asarray(modality_of, dtype=np.int64)
    out = np.full((*a.shape[:2], 2, 2), np.nan)
    for q in range(2):
        rows = mod == q
        if not rows.any():
            continue
        for k in range(2):
            out[:, :, q, k] = a[:, :, rows][:, :, :, mod == k].sum(axis=-1).mean(axis=-1)
    return out


def cross_share(attention: np.ndarray, modality_of: Sequence[int]) -> np.ndarray:
    """``(L, H)``: the share of all attention (every query position weighted alike) whose
    query and key lie in different modalities: VL-InterpreT's head summary."""
    a = _stack(attention)
    mod = np.asarray(modality_of, dtype=np.int64)
    across = mod[:, None] != mod[None, :]
    return (a * across).sum(axis=(-1, -2)) / a.sum(axis=(-1, -2))


def attention_rollout(attention: np.ndarray) -> np.ndarray:
    """Abnar & Zuidema's rollout ``(N, N)``: per layer the heads' mean plus the identity, rows
    renormalised, multiplied from the first layer up (``R = Â_L … Â_1``); row ``i`` is how
    much position ``i``'s last representation draws on each input position."""
    a = _stack(attention)
    n = a.shape[-1]
    rollout = np.eye(n)
    for layer in a:
        mixed = layer.mean(axis=0) + np.eye(n)
        mixed /= mixed.sum(axis=-1, keepdims=True)
        rollout = mixed @ rollout
    return rollout


def chefer_relevance(attention: np.ndarray, gradient: np.ndarray) -> np.ndarray:
    """Chefer et al.'s relevance ``(N, N)`` for the target whose logit's ``gradient`` with
    respect to ``attention`` (both ``(L, H, N, N)``) is given: ``R = I``, then layer by layer
    ``R += mean_h(max(0, ∇A ⊙ A)) · R``."""
    a, g = _stack(attention), _stack(gradient)
    if a.shape != g.shape:
        raise ValueError(f"attention {a.shape} and gradient {g.shape} differ")
    n = a.shape[-1]
    relevance = np.eye(n)
    for layer_a, layer_g in zip(a, g):
        weighted = np.clip(layer_g * layer_a, 0.0, None).mean(axis=0)
        relevance = relevance + weighted @ relevance
    return relevance


def unit_matrix(unit_of: Sequence[int], n_units: int) -> np.ndarray:
    """``(U, N)`` membership: ``M[u, i] = 1`` when position ``i`` is in unit ``u``."""
    unit_of = np.asarray(unit_of, dtype=np.int64)
    out = np.zeros((n_units, unit_of.size))
    out[unit_of, np.arange(unit_of.size)] = 1.0
    return out


def unit_attention(matrix: np.ndarray, unit_of: Sequence[int], n_units: int) -> np.ndarray:
    """A position × position matrix (``(..., N, N)``) at unit level ``(..., U, U)``: rows
    averaged over a unit's positions, columns summed (rows summing to one still do)."""
    m = unit_matrix(unit_of, n_units)
    counts = m.sum(axis=1)
    if np.any(counts == 0):
        raise ValueError("a unit has no position")
    return (m / counts[:, None]) @ np.asarray(matrix, dtype=np.float64) @ m.T


# -- the stored record ----------------------------------------------------------------------------
@dataclass
class StreamRecord:
    """One stream of an :class:`AttentionRecord`, at unit level.

    Attributes:
        name, units: as in :class:`AttentionStream`.
        pooled: the unit the head reads.
        attention: ``(L, H, U, U)`` per-head unit attention (stored as ``uint8``).
        shares: ``(L, H, 2, 2)`` :func:`block_shares` (the joint stream only, else None).
        cross: ``(L, H)`` :func:`cross_share` (the joint stream only, else None).
        rollout: ``(U, U)`` :func:`attention_rollout` at unit level.
        relevance: per target, the pooled unit's row of :func:`chefer_relevance` ``(U,)``,
            summed over each unit's positions.
        hidden: ``(L + 1, U, D)`` unit hidden states (a unit's positions averaged), if kept.
    """

    name: str
    units: list[Unit]
    pooled: int
    attention: np.ndarray
    rollout: np.ndarray
    shares: np.ndarray | None = None
    cross: np.ndarray | None = None
    relevance: dict[int, np.ndarray] = field(default_factory=dict)
    hidden: np.ndarray | None = None

    def patch_units(self) -> list[int]:
        """Unit indices of the image patches, in group (row-major) order."""
        units = [u for u, unit in enumerate(self.units) if unit.modality == "image" and not unit.special]
        return sorted(units, key=lambda u: self.units[u].group)

    def word_units(self) -> list[int]:
        """Unit indices of the words, in group order."""
        units = [u for u, unit in enumerate(self.units) if unit.modality == "text" and not unit.special]
        return sorted(units, key=lambda u: self.units[u].group)


@dataclass
class AttentionRecord:
    """The stored attention of one (model, item): see the module doc."""

    item_id: str
    cross_modal: bool
    note: str
    streams: list[StreamRecord]

    def stream(self, name: str) -> StreamRecord:
        for s in self.streams:
            if s.name == name:
                return s
        raise KeyError(f"no attention stream {name!r} (streams: {', '.join(s.name for s in self.streams)})")

    def stream_of(self, modality: str) -> StreamRecord:
        """The stream holding ``modality``'s units (the joint one for ViLT)."""
        for s in self.streams:
            if any(u.modality == modality for u in s.units):
                return s
        raise KeyError(f"no stream holds {modality!r}")

    @property
    def targets(self) -> list[int]:
        return sorted({t for s in self.streams for t in s.relevance})

    def relevance_by_group(self, target: int | None) -> dict[str, dict[int, float]]:
        """Per modality, ``{group ID: score}`` of the patches and words: Chefer's relevance
        of ``target``, or (``target`` None) the pooled unit's rollout row."""
        out: dict[str, dict[int, float]] = {m: {} for m in MODALITIES}
        for s in self.streams:
            row = s.rollout[s.pooled] if target is None else s.relevance[int(target)]
            for u, unit in enumerate(s.units):
                if not unit.special:
                    out[unit.modality][unit.group] = float(row[u])
        return out

    # -- bytes ----------------------------------------------------------------------------------
    def to_bytes(self) -> bytes:
        """A compressed ``.npz``: a JSON header (item, note, units) and the arrays; per-head
        attention as ``uint8`` (``round(a * 255)``, error at most 1/510), rollout as float16,
        the rest as float32."""
        arrays: dict[str, np.ndarray] = {}
        header = {"item_id": self.item_id, "cross_modal": self.cross_modal, "note": self.note, "streams": []}
        for k, s in enumerate(self.streams):
            header["streams"].append(
                {
                    "name": s.name,
                    "pooled": s.pooled,
                    "units": [[u.modality, u.group, u.label] for u in s.units],
                    "targets": sorted(int(t) for t in s.relevance),
                }
            )
            arrays[f"{k}/attention"] = np.rint(np.clip(s.attention, 0.0, 1.0) * _QUANT).astype(np.uint8)
            arrays[f"{k}/rollout"] = s.rollout.astype(np.float16)
            if s.shares is not None:
                arrays[f"{k}/shares"] = s.shares.astype(np.float32)
                arrays[f"{k}/cross"] = s.cross.astype(np.float32)
            for t, row in s.relevance.items():
                arrays[f"{k}/relevance/{int(t)}"] = row.astype(np.float32)
            if s.hidden is not None:
                arrays[f"{k}/hidden"] = s.hidden.astype(np.float16)
        arrays["header"] = np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)
        out = io.BytesIO()
        np.savez_compressed(out, **arrays)
        return out.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> AttentionRecord:
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            header = json.loads(bytes(z["header"]).decode())
            streams = []
            for k, s in enumerate(header["streams"]):
                has = f"{k}/shares" in z.files
                streams.append(
                    StreamRecord(
                        name=s["name"],
                        units=[Unit(m, int(g), str(label)) for m, g, label in s["units"]],
                        pooled=int(s["pooled"]),
                        attention=z[f"{k}/attention"].astype(np.float64) / _QUANT,
                        rollout=z[f"{k}/rollout"].astype(np.float64),
                        shares=z[f"{k}/shares"].astype(np.float64) if has else None,
                        cross=z[f"{k}/cross"].astype(np.float64) if has else None,
                        relevance={int(t): z[f"{k}/relevance/{int(t)}"].astype(np.float64) for t in s["targets"]},
                        hidden=z[f"{k}/hidden"].astype(np.float32) if f"{k}/hidden" in z.files else None,
                    )
                )
        return cls(
            item_id=header["item_id"], cross_modal=bool(header["cross_modal"]), note=header["note"], streams=streams
        )


def _stream_record(stream: AttentionStream, *, cross_modal: bool, keep_hidden: bool) -> StreamRecord:
    n_units = len(stream.units)
    attention = _stack(stream.attention)
    relevance = {}
    for target, grads in stream.targets.items():
        full = chefer_relevance(grads.attention, grads.gradient)
        relevance[int(target)] = full[grads.pooled] @ unit_matrix(grads.unit_of, n_units).T
    hidden = None
    if keep_hidden and stream.hidden is not None:
        m = unit_matrix(stream.unit_of, n_units)
        hidden = np.einsum("un,lnd->lud", m / m.sum(axis=1, keepdims=True), np.asarray(stream.hidden, np.float64))
    modality_of = stream.modality_of
    return StreamRecord(
        name=stream.name,
        units=list(stream.units),
        pooled=int(stream.unit_of[stream.pooled]),
        attention=unit_attention(attention, stream.unit_of, n_units),
        rollout=unit_attention(attention_rollout(attention), stream.unit_of, n_units),
        shares=block_shares(attention, modality_of) if cross_modal else None,
        cross=cross_share(attention, modality_of) if cross_modal else None,
        relevance=relevance,
        hidden=hidden,
    )


def attention_record(maps: AttentionMaps, *, keep_hidden: bool = False) -> AttentionRecord:
    """One item's :class:`AttentionRecord`: every stream at unit level, with the block shares
    where the stream mixes modalities, rollout and each target's relevance."""
    return AttentionRecord(
        item_id=maps.item_id,
        cross_modal=maps.cross_modal,
        note=maps.note,
        streams=[_stream_record(s, cross_modal=maps.cross_modal, keep_hidden=keep_hidden) for s in maps.streams],
    )


# -- as an attribution, for the participant view --------------------------------------------------
#: What the ``attention`` view draws: Chefer et al.'s relevance of each candidate, or the
#: rollout row of the pooled position (the same for every candidate).
ATTENTION_SOURCES = ("chefer", "rollout")


def attention_attribution(
    record: AttentionRecord,
    *,
    groups: Sequence[Sequence],
    modalities: Sequence[str],
    target: int,
    source: str,
    method: str,
):
    """The record's relevance (``source`` "chefer": of ``target``; "rollout": the pooled
    row) as an :class:`~workers.engine.attribution.ItemAttribution` over the adapter's
    feature groups (``groups``: ``describe_groups`` of the item), so the heatmap and word
    views draw it exactly as they draw a gradient method: the image map fills each patch's
    box (in the original image's pixels) with its score; hidden groups score 0."""
    from workers.engine.attribution import ItemAttribution

    if source not in ATTENTION_SOURCES:
        raise ValueError(f"attention source must be one of {', '.join(ATTENTION_SOURCES)}, got {source!r}")
    by_group = record.relevance_by_group(int(target) if source == "chefer" else None)
    maps, group_ids, group_scores = {}, {}, {}
    for name, infos in zip(modalities, groups):
        kind = "image" if any(g.box is not None for g in infos) else "text"
        scores = np.array([by_group[kind].get(int(g.group_id), 0.0) for g in infos], dtype=np.float64)
        group_ids[name] = np.array([int(g.group_id) for g in infos], dtype=np.int64)
        group_scores[name] = scores
        if kind == "image":
            height = max(int(g.box[3]) for g in infos)
            width = max(int(g.box[2]) for g in infos)
            heat = np.zeros((height, width))
            for g, score in zip(infos, scores):
                x0, y0, x1, y1 = (int(v) for v in g.box)
                heat[y0:y1, x0:x1] = score
            maps[name] = heat
        else:
            maps[name] = scores
    totals = {name: float(group_scores[name].sum()) for name in modalities}
    norm = sum(abs(v) for v in totals.values()) or 1.0
    return ItemAttribution(
        method=method,
        target=int(target),
        modalities=tuple(modalities),
        maps=maps,
        group_ids=group_ids,
        group_scores=group_scores,
        modality_totals=totals,
        modality_share={name: totals[name] / norm for name in modalities},
        options={"source": source, "cross_modal": record.cross_modal},
    )
