"""Counterfactual edits of an item, and the model's answer on each (Doshi-Velez & Kim 2017;
Hase & Bansal, ACL 2020): a participant who saw the item and its explanation predicts what the
model answers on the edited input.

Each edit is a pure function of ``(adapter, item, attribution)`` returning
:class:`CounterfactualEdit`\\ s, the edited input and a short description a person reads:

* :func:`modality_baseline_edits`: one modality replaced by the adapter's baseline (the reference
  input of the attribution methods), one edit per modality;
* :func:`top_k_removed_edit`: the ``k`` groups (patches, words) with the highest attribution
  for the explained class replaced by their baseline;
* :func:`word_swap_edit`: the first ``old -> new`` pair of a researcher's list whose ``old``
  word the item's text holds, swapped (none when no pair matches);
* :func:`adapter_edits`: the adapter's optional ``counterfactual_edits(item, *, attribution)``
  hook, for edits only it knows how to make (a colour changed in the picture).

A group edit lives in embedded space (``replaced``: modality -> group IDs set to the baseline);
a raw edit (``raw``) is a new raw item, encoded again. :func:`edit_predictions` runs the model
on every edit of one item. Imports no Django.
"""

from __future__ import annotations

import io
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageDraw

from workers.engine.adapter import ModelAdapter, RawItem
from workers.engine.attribution import ItemAttribution, prepare_batch
from workers.engine.dataset import IMAGE_MODALITIES
from workers.engine.edit_kinds import (
    ADAPTER_EDIT,
    EDIT_KINDS,
    MODALITY_BASELINE,
    TOP_K_REMOVED,
    WORD_SWAP,
    swap_pairs_parse,
)
from workers.engine.explain import Prediction

__all__ = [
    "ADAPTER_EDIT",
    "EDIT_KINDS",
    "MODALITY_BASELINE",
    "TOP_K_REMOVED",
    "WORD_SWAP",
    "CounterfactualEdit",
    "adapter_edits",
    "edit_predictions",
    "edited_picture_png",
    "item_edits",
    "modality_baseline_edits",
    "swap_pairs_parse",
    "top_k_removed_edit",
    "word_swap_edit",
]


#: The grey a removed patch or a blanked picture is drawn with on the participant page.
REMOVED_GREY = (128, 128, 128)


@dataclass(frozen=True)
class CounterfactualEdit:
    """One edited input.

    Attributes:
        kind: one of :data:`EDIT_KINDS`.
        name: unique among an item's edits (``modality_baseline:image``, ``top_k_removed:3``,
            ``word_swap:red->blue``, ``adapter:<hook's name>``).
        description: what changed, as a participant reads it ("the picture replaced by a blank
            one").
        replaced: modality -> group IDs replaced by the baseline (group edits).
        raw: the edited raw item (raw edits: a word swap, an adapter hook's edit).
        shown: what the page draws of the change: ``{"blank": [modality]}``, ``{"removed":
            {modality: [group IDs]}}`` or ``{"text": {modality: edited text}}``.
    """

    kind: str
    name: str
    description: str
    replaced: dict[str, list[int]] = field(default_factory=dict)
    raw: dict[str, Any] | None = None
    shown: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "name": self.name,
            "description": self.description,
            "replaced": {m: list(ids) for m, ids in self.replaced.items()},
            "shown": self.shown,
        }


def _called(names: Mapping[str, str] | None, modality: str) -> str:
    return (names or {}).get(modality) or f"the {modality}"


def _counted(n: int, modality: str) -> str:
    """ "3 patches", "1 word", "2 parts": what a removed group of ``modality`` is to a reader."""
    one, many = (
        ("patch", "patches")
        if modality in IMAGE_MODALITIES
        else ("word", "words")
        if modality == "text"
        else ("part", "parts")
    )
    return f"{n} {one if n == 1 else many}"


def modality_baseline_edits(
    adapter: ModelAdapter, item: RawItem, attribution: ItemAttribution, *, names: Mapping[str, str] | None = None
) -> list[CounterfactualEdit]:
    """One edit per modality: every group of that modality replaced by the adapter's baseline.
    ``names`` maps a modality to what the page calls it ("the picture")."""
    out = []
    for m in adapter.modalities:
        ids = [int(g) for g in attribution.group_ids[m]]
        out.append(
            CounterfactualEdit(
                kind=MODALITY_BASELINE,
                name=f"{MODALITY_BASELINE}:{m}",
                description=f"{_called(names, m)} replaced by a blank one",
                replaced={m: ids},
                shown={"blank": [m]},
            )
        )
    return out


def top_k_removed_edit(
    adapter: ModelAdapter,
    item: RawItem,
    attribution: ItemAttribution,
    *,
    k: int,
    hidden: Sequence[int] = (),
    names: Mapping[str, str] | None = None,
) -> CounterfactualEdit | None:
    """The ``k`` groups with the highest attribution score for the explained class (across
    modalities; ties by group ID; ``hidden`` groups, such as padding, never), replaced by the
    baseline. None when the item has no group with a positive score."""
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    skip = {int(g) for g in hidden}
    scored = [
        (float(score), int(g), m)
        for m in adapter.modalities
        for g, score in zip(attribution.group_ids[m], attribution.group_scores[m])
        if int(g) not in skip and float(score) > 0
    ]
    chosen = sorted(scored, key=lambda t: (-t[0], t[1]))[:k]
    if not chosen:
        return None
    replaced: dict[str, list[int]] = {}
    for _, g, m in chosen:
        replaced.setdefault(m, []).append(g)
    replaced = {m: sorted(ids) for m, ids in replaced.items()}
    parts = [f"{_counted(len(ids), m)} of {_called(names, m)} removed" for m, ids in replaced.items()]
    return CounterfactualEdit(
        kind=TOP_K_REMOVED,
        name=f"{TOP_K_REMOVED}:{k}",
        description="the parts the explanation marked most important removed: " + "; ".join(parts),
        replaced=replaced,
        shown={"removed": replaced},
    )


def word_swap_edit(
    adapter: ModelAdapter,
    item: RawItem,
    attribution: ItemAttribution,
    *,
    pairs: Sequence[tuple[str, str]],
    modality: str = "text",
    names: Mapping[str, str] | None = None,
) -> CounterfactualEdit | None:
    """The first pair whose ``old`` word (whole word, any case) occurs in the item's
    ``modality`` text, every occurrence swapped for ``new``; None when none does."""
    text = item.get(modality)
    if not isinstance(text, str) or modality not in adapter.modalities:
        return None
    for old, new in pairs:
        pattern = re.compile(rf"(?<!\w){re.escape(old)}(?!\w)", re.IGNORECASE)
        if pattern.search(text):
            edited = pattern.sub(new, text)
            return CounterfactualEdit(
                kind=WORD_SWAP,
                name=f"{WORD_SWAP}:{old}->{new}",
                description=f"in {_called(names, modality)}, the word “{old}” replaced by “{new}”",
                raw={**dict(item), modality: edited},
                shown={"text": {modality: edited}},
            )
    return None


def adapter_edits(adapter: ModelAdapter, item: RawItem, attribution: ItemAttribution) -> list[CounterfactualEdit]:
    """The adapter's own edits through its optional hook ``counterfactual_edits(item, *,
    attribution)``, which returns ``[{"name", "description", "item"}]`` (``item``: the edited
    raw item); none without the hook."""
    hook = getattr(adapter, "counterfactual_edits", None)
    if hook is None:
        return []
    out = []
    for n, edit in enumerate(hook(item, attribution=attribution)):
        name, description, raw = edit.get("name"), edit.get("description"), edit.get("item")
        if not name or not description or not isinstance(raw, Mapping):
            raise ValueError(f"counterfactual_edits: edit {n} needs a name, a description and an edited item")
        changed = {m: raw[m] for m in adapter.modalities if isinstance(raw.get(m), str) and raw[m] != item.get(m)}
        out.append(
            CounterfactualEdit(
                kind=ADAPTER_EDIT,
                name=f"{ADAPTER_EDIT}:{name}",
                description=str(description),
                raw=dict(raw),
                shown={"text": changed} if changed else {},
            )
        )
    return out


def item_edits(
    adapter: ModelAdapter,
    item: RawItem,
    attribution: ItemAttribution,
    *,
    kinds: Sequence[str],
    k: int = 3,
    pairs: Sequence[tuple[str, str]] = (),
    hidden: Sequence[int] = (),
    names: Mapping[str, str] | None = None,
) -> list[CounterfactualEdit]:
    """Every edit of ``kinds`` that applies to ``item``, in :data:`EDIT_KINDS` order."""
    out: list[CounterfactualEdit] = []
    if MODALITY_BASELINE in kinds:
        out += modality_baseline_edits(adapter, item, attribution, names=names)
    if TOP_K_REMOVED in kinds:
        out += [e for e in [top_k_removed_edit(adapter, item, attribution, k=k, hidden=hidden, names=names)] if e]
    if WORD_SWAP in kinds:
        out += [e for e in [word_swap_edit(adapter, item, attribution, pairs=pairs, names=names)] if e]
    if ADAPTER_EDIT in kinds:
        out += adapter_edits(adapter, item, attribution)
    return out


def edit_predictions(adapter: ModelAdapter, item: RawItem, edits: Sequence[CounterfactualEdit]) -> list[Prediction]:
    """The model's answer on each edited input: group edits in one head call over the item's
    embedded input with the replaced groups taken from the baseline, raw edits encoded anew.
    Cost: one forward pass per edit."""
    labels = list(adapter.labels)
    out: dict[int, torch.Tensor] = {}
    grouped = [(n, e) for n, e in enumerate(edits) if e.raw is None]
    if grouped:
        p = prepare_batch(adapter, adapter.encode([item]))
        rows = []
        for m_index, m in enumerate(p.modalities):
            x, base, mask = p.inputs[m_index], p.baselines[m_index], p.masks[m_index]
            per_edit = []
            for _, edit in grouped:
                ids = torch.as_tensor(edit.replaced.get(m, []), dtype=torch.long, device=mask.device)
                hit = torch.isin(mask, ids).expand_as(x)
                per_edit.append(torch.where(hit, base, x))
            rows.append(torch.cat(per_edit))
        with torch.no_grad():
            logits = p.caller("counterfactual").forward_rows(tuple(rows)).detach().to(torch.float64).cpu()
        for row, (n, _) in enumerate(grouped):
            out[n] = logits[row]
    for n, edit in enumerate(edits):
        if edit.raw is not None:
            p = prepare_batch(adapter, adapter.encode([edit.raw]))
            with torch.no_grad():
                out[n] = p.caller("counterfactual").forward_rows(p.inputs).detach().to(torch.float64).cpu()[0]
    predictions = []
    for n in range(len(edits)):
        logits = out[n]
        probabilities = torch.softmax(logits, dim=0).numpy()
        index = int(torch.argmax(logits))
        predictions.append(
            Prediction(
                item_id=item.get("id"),
                label_index=index,
                label=labels[index],
                probabilities=probabilities,
                logits=logits.numpy(),
            )
        )
    return predictions


def edited_picture_png(
    pixels: np.ndarray, *, boxes: Sequence[Sequence[int]] = (), blank: bool = False, upscale: int | None = None
) -> bytes:
    """The picture a participant sees of an edited input: ``pixels`` (uint8 ``(H, W, 3)``)
    with each removed box (``[x0, y0, x1, y1]``, x1/y1 exclusive) filled grey and outlined,
    or all grey when ``blank``. Upscaled by nearest neighbour (by default to about 256 px, at most
    4x: a 64 px picture stays sharp, a large one is not blown up); no metadata."""
    if upscale is None:
        upscale = max(1, min(4, 256 // max(1, *np.shape(pixels)[:2])))
    picture = np.array(pixels, dtype=np.uint8, copy=True)
    if blank:
        picture[...] = REMOVED_GREY
    image = Image.fromarray(picture).resize(
        (picture.shape[1] * upscale, picture.shape[0] * upscale), Image.Resampling.NEAREST
    )
    draw = ImageDraw.Draw(image)
    for x0, y0, x1, y1 in boxes:
        box = (x0 * upscale, y0 * upscale, x1 * upscale - 1, y1 * upscale - 1)
        draw.rectangle(box, fill=REMOVED_GREY, outline=(255, 255, 255))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=6)  # no text, time or EXIF chunk
    return buffer.getvalue()
