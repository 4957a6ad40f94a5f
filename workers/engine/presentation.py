"""What a participant sees of one item's attributions: a heatmap PNG per image modality and
token highlights per text modality. Candidates of the same item share one colour scale per
modality, so people can compare the strength of evidence across candidate answers."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
from PIL import Image

from workers.engine import render
from workers.engine.adapter import GroupInfo, RawItem
from workers.engine.attribution import ItemAttribution
from workers.engine.dataset import IMAGE_MODALITIES


@dataclass
class ExplanationViews:
    image_png: bytes | None = None
    tokens: list[dict] = field(default_factory=list)


def _image_pixels(path: str, shape: tuple[int, int]) -> np.ndarray:
    """The item's image as (H, W, 3) uint8 at the attribution map's resolution."""
    with Image.open(path) as img:
        rgb = img.convert("RGB")
        if rgb.size != (shape[1], shape[0]):
            rgb = rgb.resize((shape[1], shape[0]), Image.BILINEAR)
        return np.asarray(rgb, dtype=np.uint8)


def _token_groups(groups: Sequence[GroupInfo], scores: np.ndarray) -> tuple[list[str], np.ndarray, list[bool]]:
    return [g.text for g in groups], np.asarray(scores, dtype=np.float64), [g.hidden for g in groups]


def render_item_views(
    *, item: RawItem, attributions: Sequence[ItemAttribution], groups: Sequence[Sequence[GroupInfo]],
) -> list[ExplanationViews]:
    """Render every candidate's attribution of one item with a shared scale per modality.

    Args:
        item: the raw item (image paths absolute).
        attributions: one per candidate target, all of this item.
        groups: ``describe_groups`` of this item: per modality, its :class:`GroupInfo` list.
    """
    if not attributions:
        return []
    modalities = attributions[0].modalities
    views = [ExplanationViews() for _ in attributions]
    for m, name in enumerate(modalities):
        if name in IMAGE_MODALITIES:
            maps = [a.maps[name] for a in attributions]
            scale = render.shared_scale(*maps)
            pixels = _image_pixels(item[name], maps[0].shape[-2:])
            for view, heat in zip(views, maps):
                view.image_png = render.heatmap_overlay_png(pixels, heat, scale=scale)
        elif name == "text":
            per_candidate = [_token_groups(groups[m], a.group_scores[name]) for a in attributions]
            visible = [s[~np.asarray(h, dtype=bool)] for _, s, h in per_candidate]
            scale = render.shared_scale(*visible)
            for view, (tokens, scores, hidden) in zip(views, per_candidate):
                view.tokens = [
                    {k: span[k] for k in ("text", "background", "foreground", "title")}
                    for span in render.token_highlights(tokens, scores, scale=scale, hidden=hidden)
                ]
    return views
