"""What a participant sees of one item's attributions: a heatmap PNG per image modality and
token highlights per text modality. Candidates of the same item share one colour scale per
modality, so people can compare the strength of evidence across candidate answers.

The colour scales are returned beside the views (``render.scale_labels``) rather than drawn
into the PNGs: the page states them once per item in text, which stays legible at any size
the browser draws an image."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

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
    #: modality -> ``render.scale_labels`` of the colour scale its view is drawn on
    colour_scales: dict[str, dict] = field(default_factory=dict)


def _image_pixels(path: str, shape: tuple[int, int]) -> np.ndarray:
    """The item's image as (H, W, 3) uint8 at the attribution map's resolution."""
    with Image.open(path) as img:
        rgb = img.convert("RGB")
        if rgb.size != (shape[1], shape[0]):
            rgb = rgb.resize((shape[1], shape[0]), Image.BILINEAR)
        return np.asarray(rgb, dtype=np.uint8)


image_pixels = _image_pixels  # for other views drawn over the item's picture (feature_views)


def _token_groups(groups: Sequence[GroupInfo], scores: np.ndarray) -> tuple[list[str], np.ndarray, list[bool]]:
    return [g.text for g in groups], np.asarray(scores, dtype=np.float64), [g.hidden for g in groups]


def render_item_views(
    *,
    item: RawItem,
    attributions: Sequence[ItemAttribution],
    groups: Sequence[Sequence[GroupInfo]],
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
                view.image_png = render.heatmap_overlay_png(pixels, heat, scale=scale, legend=False)
                view.colour_scales[name] = render.scale_labels(scale)
        elif name == "text":
            per_candidate = [_token_groups(groups[m], a.group_scores[name]) for a in attributions]
            visible = [s[~np.asarray(h, dtype=bool)] for _, s, h in per_candidate]
            scale = render.shared_scale(*visible)
            for view, (tokens, scores, hidden) in zip(views, per_candidate):
                view.colour_scales[name] = render.scale_labels(scale)
                view.tokens = [
                    {k: span[k] for k in ("text", "background", "foreground", "title")}
                    for span in render.token_highlights(tokens, scores, scale=scale, hidden=hidden)
                ]
    return views


def render_share_bars(*, shares: dict[str, float]) -> bytes:
    """Modality share bars of one candidate's attribution (signed shares, fixed [-1, 1] axis,
    so candidates and items compare directly)."""
    return render.modality_share_bars_png(shares)


@dataclass
class InteractionViews:
    matrix_png: bytes
    top_pairs_png: bytes | None = None
    #: ``render.scale_labels`` of the matrix's colour scale (shared by the item's candidates)
    colour_scale: dict = field(default_factory=dict)
    #: ``render.patch_grid`` of the image's patches, when the rows or columns are patches
    patch_grid: dict | None = None


def _labels_for(groups: Sequence[GroupInfo]) -> list[str]:
    if groups and all(g.kind == "patch" and g.box is not None for g in groups):
        return render.patch_grid_labels([g.box for g in groups])
    return [g.text or str(g.group_id) for g in groups]


#: A matrix with more rows shows its strongest: legible in an answer card (display.py).
MATRIX_ROWS = 8


def matrix_rows_shown(*, matrices: Sequence[np.ndarray], top_k: int, rows: int = MATRIX_ROWS) -> list[int]:
    """Which rows of an item's matrices (one per candidate) the matrix view draws, in their
    order: all if at most ``rows``; else the rows of every candidate's ``top_k`` strongest
    cells (so the numbered cells are shown), then the rows with the most ``|value|`` summed
    over the candidates, up to ``rows`` (more only to keep the numbered cells). The same rows
    for every candidate, chosen from all of them alike: they tell no candidate apart."""
    n = int(np.asarray(matrices[0]).shape[0]) if matrices else 0
    if n <= rows:
        return list(range(n))
    keep = {r for m in matrices for r, _c, _v in render.top_pairs(m, max(0, min(top_k, 5)))}
    mass = np.sum([np.abs(np.asarray(m, dtype=np.float64)).sum(axis=1) for m in matrices], axis=0)
    for r in np.argsort(-mass, kind="stable"):
        if len(keep) >= rows:
            break
        keep.add(int(r))
    return sorted(keep)


def render_interaction_views(
    *,
    item: RawItem,
    modalities: Sequence[str],
    matrices: Sequence[np.ndarray],
    group_ids: tuple[Sequence[int], Sequence[int]],
    groups: Sequence[Sequence[GroupInfo]],
    top_k: int = 3,
) -> list[InteractionViews]:
    """Render every candidate's cross-modal interaction matrix of one item, with one colour
    scale shared by the candidates, and (when one modality is an image split into patches)
    the top patch-word pairs drawn on the image.

    Args:
        item: the raw item (image paths absolute).
        modalities: ``(A, B)``: rows are A's groups, columns B's.
        matrices: one ``(G_A, G_B)`` matrix per candidate target.
        group_ids: the row and column group IDs, as the matrices are ordered.
        groups: ``describe_groups`` of this item: per modality, its :class:`GroupInfo` list
            (matched to the matrices by group ID).

    Padding groups (``hidden``) are dropped. No label, prediction or item ID is drawn: only
    patch positions, the item's own words and numbers.
    """
    if not matrices:
        return []
    name_a, name_b = modalities
    info = {g.group_id: g for m in groups for g in m}
    rows = [k for k, gid in enumerate(group_ids[0]) if not info.get(int(gid), GroupInfo(int(gid), "?")).hidden]
    cols = [k for k, gid in enumerate(group_ids[1]) if not info.get(int(gid), GroupInfo(int(gid), "?")).hidden]
    row_groups = [info.get(int(group_ids[0][k]), GroupInfo(int(group_ids[0][k]), "?")) for k in rows]
    col_groups = [info.get(int(group_ids[1][k]), GroupInfo(int(group_ids[1][k]), "?")) for k in cols]
    trimmed = [np.asarray(m, dtype=np.float64)[np.ix_(rows, cols)] for m in matrices]
    scale = render.shared_scale(*trimmed)
    row_title = "image patch" if name_a in IMAGE_MODALITIES else name_a
    col_title = "word" if name_b == "text" else name_b
    shown = matrix_rows_shown(matrices=trimmed, top_k=top_k)
    row_labels = [_labels_for(row_groups)[r] for r in shown]
    what = "patches" if row_title == "image patch" else "rows"
    note = f"{len(shown)} of {len(row_groups)} {what} shown" if len(shown) < len(row_groups) else ""
    views = [
        InteractionViews(
            matrix_png=render.interaction_matrix_png(
                m[shown],
                row_labels=row_labels,
                col_labels=_labels_for(col_groups),
                scale=scale,
                row_title=row_title,
                col_title=col_title,
                colorbar=False,
                note=note,
                top_k_outline=min(top_k, 5) if top_k else 0,
            ),
            colour_scale=render.scale_labels(scale),
        )
        for m in trimmed
    ]

    # Top pairs need patches of an image against words; draw them with the image as rows.
    if name_a in IMAGE_MODALITIES and all(g.box is not None for g in row_groups):
        image_name, patch_groups, word_groups, oriented = name_a, row_groups, col_groups, trimmed
    elif name_b in IMAGE_MODALITIES and all(g.box is not None for g in col_groups):
        image_name, patch_groups, word_groups, oriented = name_b, col_groups, row_groups, [m.T for m in trimmed]
    else:
        return views
    boxes = [g.box for g in patch_groups]
    grid = {"modality": image_name, **render.patch_grid(boxes)}
    for view in views:
        view.patch_grid = grid
    extent = (max(b[3] for b in boxes), max(b[2] for b in boxes))  # (H, W) the boxes are drawn in
    pixels = _image_pixels(item[image_name], extent)
    words = [g.text or str(g.group_id) for g in word_groups]
    k = max(1, min(top_k, len(render.OKABE_ITO), oriented[0].size))
    for view, matrix in zip(views, oriented):
        view.top_pairs_png = render.top_pairs_png(pixels, matrix, boxes, words, k=k)
    return views
