"""What a participant sees of MultiViz's stages 3 and 4 for one item, per candidate answer:

* ``features``: the features contributing most to the candidate's score; for each, what
  activates it in this input (its attribution heatmap over the picture and its strongest
  words) beside the dataset examples that activate it most (their pictures with the same
  feature's heatmap);
* ``prediction``: the sparse weights behind the candidate, as a bar chart of the features'
  contributions ``weight × activation``, then the other features' sum and the base
  (intercept), so the bars add up to the candidate's sparse score, stated above them (the
  top bars alone omit intercepts that differ between classes and could favour an answer the
  sparse model does not give).

The candidates of one item share one colour scale (heatmaps) and one axis (bars), so no
printed number tells them apart but the evidence itself (docs/DESIGN.md "No leak"). Nothing
here takes a class name, a prediction or a gold label; PNGs carry no text chunks
(``render._png_bytes``). No Django.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from workers.engine import render
from workers.engine.adapter import GroupInfo
from workers.engine.attribution import ItemAttribution
from workers.engine.dataset import IMAGE_MODALITIES
from workers.engine.sparse import ScoreParts

__all__ = ["FeatureViews", "contribution_bars_png", "example_thumbnail_png", "feature_heat", "render_feature_views"]

# Drawn for an answer card (163 CSS px on a phone, 197 on a laptop: workers/engine/display.py):
# WIDTH px with FONT px text shows that text at FONT × 163 / WIDTH ≥ 11 CSS px.
THUMB = 52  # px, one picture panel
GAP = 4
FONT = 16
LINE = 20  # px per line of text
WIDTH = GAP + THUMB + 2 * GAP + 3 * (THUMB + GAP)  # this input, a rule, three examples


@dataclass
class FeatureViews:
    features_png: bytes
    prediction_png: bytes


def _image_modality(attribution: ItemAttribution) -> str | None:
    return next((m for m in attribution.modalities if m in IMAGE_MODALITIES), None)


def _overlay(pixels: np.ndarray, heat: np.ndarray, scale: float) -> Image.Image:
    """The picture with the feature's heat where it is visible, ``THUMB`` px square. Where
    ``|heat| < VISIBLE × scale`` the picture keeps its own colours exactly (in colour
    questions they are the content: never darkened or mixed, so yellow stays yellow); where
    it is stronger, the heatmap's colour over the greyed picture, as on the heatmap view."""
    if pixels.shape[:2] != heat.shape:
        pixels = np.asarray(Image.fromarray(pixels).resize((heat.shape[1], heat.shape[0]), Image.BILINEAR))
    overlay = render.heatmap_overlay_rgb(pixels, heat, scale=scale)
    strong = np.abs(heat) >= VISIBLE * scale if scale > 0 else np.zeros(heat.shape, dtype=bool)
    mixed = np.where(strong[:, :, None], overlay, np.asarray(pixels, dtype=np.uint8))
    return Image.fromarray(np.ascontiguousarray(mixed), mode="RGB").resize((THUMB, THUMB), Image.NEAREST)


#: Heat below this share of the scale leaves the picture's own colours (:func:`_overlay`).
VISIBLE = 0.25


def _wrap(draw: ImageDraw.ImageDraw, text: str, font, width: float) -> list[str]:
    """``text`` in lines no wider than ``width`` px, broken at spaces (a longer word alone)."""
    lines: list[str] = []
    for word in text.split():
        if lines and draw.textlength(f"{lines[-1]} {word}", font=font) <= width:
            lines[-1] = f"{lines[-1]} {word}"
        else:
            lines.append(word)
    return lines or [""]


def feature_heat(attribution: ItemAttribution, groups: Sequence[Sequence[GroupInfo]], image: str) -> np.ndarray:
    """The feature's attribution over the picture, per patch when the picture is split into
    boxed patches (a whole patch lights up: legible at thumbnail size), else per pixel."""
    m = list(attribution.modalities).index(image)
    heat = attribution.maps[image]
    info = {g.group_id: g for g in groups[m]} if m < len(groups) else {}
    ids = [int(g) for g in attribution.group_ids[image]]
    if ids and all(info.get(g) is not None and info[g].box is not None for g in ids):
        return render.group_scores_to_map(attribution.group_scores[image], [info[g].box for g in ids], heat.shape[-2:])
    return heat


def example_thumbnail_png(*, pixels: np.ndarray, heat: np.ndarray, scale: float | None = None) -> bytes:
    """One example item's picture with a feature's heatmap, ``THUMB`` px square."""
    s = render.resolve_scale(heat, scale)
    return render._png_bytes(_overlay(np.asarray(pixels, dtype=np.uint8), np.asarray(heat, dtype=np.float64), s))


def _top_words(attribution: ItemAttribution, groups: Sequence[Sequence[GroupInfo]], k: int = 3) -> str:
    if "text" not in attribution.modalities:
        return ""
    m = list(attribution.modalities).index("text")
    info = {g.group_id: g for g in groups[m]} if m < len(groups) else {}
    scored = [
        (float(s), info[int(g)].text)
        for g, s in zip(attribution.group_ids["text"], attribution.group_scores["text"])
        if int(g) in info and not info[int(g)].hidden and info[int(g)].text
    ]
    scored.sort(key=lambda t: -abs(t[0]))
    return ", ".join(f"{w} {render._fmt(s)}" for s, w in scored[:k] if s != 0)


def render_feature_views(
    *,
    pixels: np.ndarray | None,
    candidates: Sequence[Sequence[tuple[int, float]]],
    attributions: Mapping[int, ItemAttribution],
    groups: Sequence[Sequence[GroupInfo]],
    examples: Mapping[int, Sequence[bytes]],
    features_shown: int = 3,
    scores: Sequence[ScoreParts] | None = None,
) -> list[FeatureViews]:
    """Draw one item's ``features`` and ``prediction`` views for each candidate.

    Args:
        pixels: the item's picture ``(H, W, 3)`` uint8, or None without an image modality.
        candidates: per candidate, its top ``(feature, contribution)`` pairs, largest first
            (all of them are bars of ``prediction``; the first ``features_shown`` rows of
            ``features``).
        attributions: feature index -> this item's attribution of that feature's activation.
        groups: ``describe_groups`` of this item.
        examples: feature index -> PNG thumbnails of its top-activating dataset items.
        scores: per candidate, its sparse score's parts: the ``prediction`` bars then add the
            other features' sum and the base (intercept) and state the score they add up to.

    Returns:
        One :class:`FeatureViews` per candidate, in the order given.
    """
    used = sorted({f for pairs in candidates for f, _ in pairs[:features_shown]})
    image = _image_modality(attributions[used[0]]) if used else None
    heats = {f: feature_heat(attributions[f], groups, image) for f in used} if image and pixels is not None else {}
    heat_scale = render.shared_scale(*heats.values()) if heats else 1.0  # one per item, pooled
    bars = [_bars(pairs, scores[k] if scores is not None else None) for k, pairs in enumerate(candidates)]
    bar_limit = max([abs(v) for named in bars for _, v in named] or [1.0]) or 1.0  # one axis per item
    n_bars = max([len(named) for named in bars] or [1])
    font, bold = render._font(FONT), render._font(FONT, bold=True)
    scratch = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    room = WIDTH - 2 * GAP
    pictures = image is not None and pixels is not None

    def blocks(pairs) -> list[tuple[int, list[str], list[str]]]:
        out = []
        for feature, contribution in pairs:
            words = _top_words(attributions[feature], groups)
            title = _wrap(scratch, f"Feature {feature}: {render._fmt(contribution)}", bold, room)
            out.append((feature, title, _wrap(scratch, f"Words: {words or 'none'}", font, room)))
        return out

    laid = [blocks(list(pairs)[:features_shown]) for pairs in candidates]
    caption = (
        _wrap(
            scratch,
            f"Left: this input, colours ±{render._fmt(heat_scale).lstrip('+')} "
            f"(the top {render.OUTLIER_PERC:g} % at full colour). Right: where the feature is strongest.",
            font,
            room,
        )
        if pictures
        else []
    )
    # Every candidate's views have the same size (no dimension tells the candidates apart):
    # each row as tall as the tallest of its place over the candidates.
    n_rows = max([len(b) for b in laid] or [1])
    row_heights = [
        max([LINE * (len(b[k][1]) + len(b[k][2])) for b in laid if k < len(b)] or [LINE])
        + (THUMB + GAP if pictures else 0)
        for k in range(n_rows)
    ]
    height = GAP + sum(h + GAP for h in row_heights) + LINE * max(1, len(caption)) + GAP
    out = []
    for index, rows in enumerate(laid):
        canvas = Image.new("RGB", (WIDTH, height), "white")
        draw = ImageDraw.Draw(canvas)
        if not rows:
            for k, line in enumerate(_wrap(draw, "No feature adds to this answer.", font, room)):
                draw.text((GAP, GAP + k * LINE), line, fill="#222222", font=font)
        y = GAP
        for (feature, title, words), row_h in zip(rows, row_heights):
            for k, line in enumerate(title):
                draw.text((GAP, y + k * LINE), line, fill="#111111", font=bold)
            for k, line in enumerate(words):
                draw.text((GAP, y + (len(title) + k) * LINE), line, fill="#333333", font=font)
            if pictures:
                top = y + row_h - THUMB - GAP
                canvas.paste(_overlay(pixels, heats[feature], heat_scale), (GAP, top))
                x = GAP + THUMB + 2 * GAP
                for png in examples.get(feature, ())[:3]:
                    with Image.open(io.BytesIO(png)) as thumb:
                        canvas.paste(thumb.convert("RGB").resize((THUMB, THUMB)), (x, top))
                    x += THUMB + GAP
                draw.line([(GAP + THUMB + GAP, top), (GAP + THUMB + GAP, top + THUMB)], fill="#999999", width=1)
            y += row_h + GAP
        y = GAP + sum(h + GAP for h in row_heights)
        for k, line in enumerate(caption):
            draw.text((GAP, y + k * LINE), line, fill="#555555", font=font)
        names = [name for name, _ in bars[index]]
        values = [v for _, v in bars[index]]
        total = scores[index].score if scores is not None else None
        out.append(
            FeatureViews(
                features_png=render._png_bytes(canvas),
                prediction_png=contribution_bars_png(names, values, limit=bar_limit, rows=max(n_bars, 1), total=total),
            )
        )
    return out


def _bars(pairs: Sequence[tuple[int, float]], parts: ScoreParts | None) -> list[tuple[str, float]]:
    """The named bars of one candidate: its top features, then (with its score's parts) the
    other features together and the base, so the bars add up to the score."""
    named = [(f"feature {f}", float(c)) for f, c in pairs]
    if parts is not None:
        if parts.n_rest:
            named.append((f"{parts.n_rest} other features", parts.rest))
        named.append(("base", parts.base))
    return named


def contribution_bars_png(
    names: Sequence[str],
    values: Sequence[float],
    *,
    limit: float,
    rows: int | None = None,
    cmap: str = render.DEFAULT_CMAP,
    width_px: int = render.CHART_WIDTH,
    total: float | None = None,
) -> bytes:
    """Horizontal bars of the features' contributions (weight × activation) to one answer's
    sparse score, on the axis ``[-limit, +limit]`` shared by the item's candidates, with room
    for ``rows`` bars (default: as many as given). With ``total`` (the score the bars add up
    to), the title states it."""
    vals = np.asarray([float(v) for v in values], dtype=np.float64)
    limit = float(max(limit, float(np.max(np.abs(vals))) if vals.size else 0.0, 1e-12))
    dpi = 100
    rows = max(1, len(names), rows or 0)
    height_in = 0.9 + 0.42 * rows
    with render._MPL_LOCK:
        fig = render.Figure(figsize=(width_px / dpi, height_in), dpi=dpi, facecolor="white")
        fig.set_layout_engine("constrained")
        ax = fig.add_subplot()
        if vals.size:
            colours = render.scores_to_rgb(vals, scale=limit, cmap=cmap).astype(np.float64) / 255.0
            y = np.arange(len(names))
            ax.barh(y, vals, color=colours, edgecolor="#444444", linewidth=0.6, height=0.6)
            ax.set_yticks(y)
            ax.set_yticklabels(list(names), fontsize=render.CHART_FONT_PT, parse_math=False)
            ax.set_ylim(rows - 0.5, -0.5)
            for yi, v in zip(y, vals):
                ha = "right" if v > 0 else "left"
                offset = -0.04 * limit if v > 0 else 0.04 * limit
                ax.text(
                    offset,
                    yi,
                    render._fmt(float(v)),
                    va="center",
                    ha=ha,
                    fontsize=render.CHART_FONT_PT,
                    parse_math=False,
                )
        else:
            ax.set_yticks([])
            ax.text(0, 0, "no feature weighs on this answer", ha="center", va="center", fontsize=render.CHART_FONT_PT)
        ax.axvline(0.0, color="#222222", linewidth=1.0)
        ax.set_xlim(-limit * 1.25, limit * 1.25)
        ax.set_xticks([-limit, 0, limit])
        ax.set_xticklabels([f"{render._fmt(-limit)}\nlowers", "0", f"{render._fmt(limit)}\nraises"], fontsize=10)
        for side in ("top", "right", "left"):
            ax.spines[side].set_visible(False)
        ax.tick_params(axis="y", length=0)
        title = "weight × activation" if total is None else f"score {render._fmt(total)} = sum of the bars"
        fig.suptitle(title, fontsize=render.CHART_FONT_PT, x=0.02, ha="left", color="#333333")
        return render._figure_png(fig)
