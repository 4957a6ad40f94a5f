"""Rendering of the modalities beyond image and text: audio (waveform), time series (the
line) and tabular features (one signed bar each).

The conventions of :mod:`workers.engine.render` hold here too: one diverging colour map
centred at zero with symmetric limits ``±scale`` (pass the scale shared by an item's
candidates), signs written out, no class name, prediction or label taken or drawn (only the
numbers, the caller's feature names and fixed axis words), PNGs without metadata chunks,
same inputs → same bytes. Drawing is Pillow only (no matplotlib, so no lock is needed).

Time runs left to right. ``T`` attribution scores over a clip or a series split its time
axis into ``T`` equal spans: score ``k`` covers ``[k, k + 1) * duration / T``
(:func:`time_span`). A pixel column of the plot shows the score of the span its centre lies
in (:func:`column_segments`), so the shading of a known score vector sits at a known place.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw

from workers.engine.render import (
    _MINUS,
    DEFAULT_CMAP,
    _finite,
    _fmt,
    _font,
    _hex,
    _png_bytes,
    _truncate,
    resolve_scale,
    scores_to_rgb,
)
from workers.engine.series import series_points, value_text

__all__ = [
    "PLOT_HEIGHT",
    "PLOT_LEFT",
    "MAX_SPANS",
    "PLOT_WIDTH",
    "SHADE_ALPHA",
    "column_segments",
    "feature_bar_rows",
    "feature_bars_png",
    "pool_time",
    "series_points",
    "series_png",
    "time_shading",
    "time_span",
    "waveform_png",
]

#: Plot area of the time views, in pixels, and where it starts in the PNG: the whole view is
#: ``PLOT_LEFT + PLOT_WIDTH + PLOT_RIGHT`` = 162 px, narrower than a phone's answer card, so its
#: :data:`TIME_FONT` px text shows at that size (workers/engine/display.py).
PLOT_WIDTH, PLOT_HEIGHT = 104, 72
PLOT_LEFT, PLOT_TOP, PLOT_RIGHT = 44, 8, 14
TIME_FONT = 12
_AXIS_H = 22
#: Opacity of the attribution colour over white behind a line (as the heatmaps' overlay).
SHADE_ALPHA = 0.55
_INK = (25, 25, 25)
_GREY = (90, 90, 90)


def _scores_1d(scores: np.ndarray | Sequence[float]) -> np.ndarray:
    s = _finite(np.asarray(scores, dtype=np.float64), "scores")
    if s.ndim > 1:  # e.g. a spectrogram's (frequency, time) map: time is the last axis
        s = s.reshape(-1, s.shape[-1]).sum(axis=0)
    if s.ndim != 1 or s.size == 0:
        raise ValueError(f"scores must have shape (T,) with T ≥ 1, got {np.shape(scores)}")
    return s


#: Most time spans a view shades: a longer score vector (one per audio sample, say) is summed
#: into this many equal spans first (:func:`pool_time`), so no pixel column shows one sample.
MAX_SPANS = 100


def pool_time(scores: np.ndarray | Sequence[float], max_spans: int = MAX_SPANS) -> np.ndarray:
    """``scores`` over time, summed into at most ``max_spans`` spans: with ``T > max_spans``
    scores, span ``k`` sums scores ``floor(k T / K) .. floor((k + 1) T / K) - 1`` (``K =
    max_spans``), so the total and every sign of a whole span are kept."""
    s = _scores_1d(scores)
    if s.size <= max_spans:
        return s
    edges = (np.arange(max_spans) * s.size) // max_spans
    return np.add.reduceat(s, edges)


def time_span(index: int, n_scores: int, duration: float) -> tuple[float, float]:
    """``(start, end)`` of score ``index`` of ``n_scores`` over ``duration``."""
    if not 0 <= index < n_scores:
        raise ValueError(f"index {index} outside 0..{n_scores - 1}")
    return index * duration / n_scores, (index + 1) * duration / n_scores


def column_segments(n_scores: int, width: int) -> np.ndarray:
    """``(width,)`` the score index each pixel column shows: the span its centre lies in."""
    centres = (np.arange(width, dtype=np.float64) + 0.5) / width
    return np.minimum((centres * n_scores).astype(np.intp), n_scores - 1)


def time_shading(
    scores: np.ndarray | Sequence[float],
    *,
    width: int = PLOT_WIDTH,
    scale: float | None = None,
    cmap: str = DEFAULT_CMAP,
) -> np.ndarray:
    """``(width, 3)`` uint8 background colour of each column: the column's score colour at
    :data:`SHADE_ALPHA` over white (0 stays the map's light neutral grey)."""
    s = _scores_1d(scores)
    colours = scores_to_rgb(s, scale=resolve_scale(s, scale), cmap=cmap).astype(np.float64)
    shaded = SHADE_ALPHA * colours + (1.0 - SHADE_ALPHA) * 255.0
    return np.rint(shaded[column_segments(s.size, width)]).astype(np.uint8)


def _time_canvas(scores: np.ndarray, scale: float | None, cmap: str) -> tuple[Image.Image, ImageDraw.ImageDraw]:
    width = PLOT_LEFT + PLOT_WIDTH + PLOT_RIGHT
    canvas = Image.new("RGB", (width, PLOT_TOP + PLOT_HEIGHT + _AXIS_H), (255, 255, 255))
    band = np.repeat(time_shading(scores, width=PLOT_WIDTH, scale=scale, cmap=cmap)[None], PLOT_HEIGHT, axis=0)
    canvas.paste(Image.fromarray(np.ascontiguousarray(band), mode="RGB"), (PLOT_LEFT, PLOT_TOP))
    draw = ImageDraw.Draw(canvas)
    draw.rectangle((PLOT_LEFT - 1, PLOT_TOP - 1, PLOT_LEFT + PLOT_WIDTH, PLOT_TOP + PLOT_HEIGHT), outline=_GREY)
    return canvas, draw


def _time_axis(draw: ImageDraw.ImageDraw, duration: float, unit: str) -> None:
    """Three ticks under the plot: 0, ½ and the whole duration."""
    y = PLOT_TOP + PLOT_HEIGHT
    for q in range(3):
        x = PLOT_LEFT + round(q * PLOT_WIDTH / 2) - (1 if q == 2 else 0)
        draw.line((x, y, x, y + 3), fill=_GREY)
        value = q * duration / 2
        text = f"{value:.2f}".rstrip("0").rstrip(".") + unit
        anchor = "la" if q == 0 else "ra" if q == 2 else "ma"
        draw.text((x, y + 5), text, font=_font(TIME_FONT), fill=_GREY, anchor=anchor)


def waveform_png(
    samples: np.ndarray | Sequence[float],
    rate: int,
    scores: np.ndarray | Sequence[float],
    *,
    scale: float | None = None,
    cmap: str = DEFAULT_CMAP,
) -> bytes:
    """The clip's waveform (per pixel column, the range its samples span) over the
    attribution shading in time, with a time axis in seconds.

    Args:
        samples: ``(N,)`` mono samples in [-1, 1] (``audio.wav_read``).
        rate: samples per second.
        scores: ``(T,)`` attribution over ``T`` equal time spans (a ``(F, T)`` map is summed
            over its first axis).
        scale: colour limit (shared by an item's candidates), default ``max |scores|``.
    """
    x = _finite(np.asarray(samples, dtype=np.float64).reshape(-1), "samples")
    if x.size == 0 or rate <= 0:
        raise ValueError("the clip has no samples")
    s = _scores_1d(scores)
    canvas, draw = _time_canvas(s, scale, cmap)
    peak = max(1e-9, float(np.max(np.abs(x))))
    mid, half = PLOT_TOP + PLOT_HEIGHT / 2, PLOT_HEIGHT / 2 - 4
    draw.line((PLOT_LEFT, mid, PLOT_LEFT + PLOT_WIDTH - 1, mid), fill=(150, 150, 150))
    edges = np.linspace(0, x.size, PLOT_WIDTH + 1).astype(np.intp)
    for c in range(PLOT_WIDTH):
        part = x[edges[c] : max(edges[c + 1], edges[c] + 1)]
        lo, hi = float(part.min()) / peak, float(part.max()) / peak
        draw.line((PLOT_LEFT + c, mid - hi * half, PLOT_LEFT + c, mid - lo * half), fill=_INK)
    _time_axis(draw, x.size / rate, " s")
    return _png_bytes(canvas)


def series_png(
    values: np.ndarray | Sequence[float],
    scores: np.ndarray | Sequence[float],
    *,
    scale: float | None = None,
    cmap: str = DEFAULT_CMAP,
) -> bytes:
    """The series as a line over the attribution shading in time, its smallest and largest
    value written left of the plot and the time steps under it.

    Args:
        values: ``(N,)`` the series.
        scores: ``(T,)`` attribution over ``T`` equal time spans (usually ``T = N``: one per step).
        scale: colour limit (shared by an item's candidates), default ``max |scores|``.
    """
    v = _finite(np.asarray(values, dtype=np.float64).reshape(-1), "values")
    s = _scores_1d(scores)
    canvas, draw = _time_canvas(s, scale, cmap)
    points = [(PLOT_LEFT + x, PLOT_TOP + y) for x, y in series_points(v, width=PLOT_WIDTH, height=PLOT_HEIGHT)]
    if len(points) > 1:
        draw.line(points, fill=_INK, width=2, joint="curve")
    for x, y in points if len(points) <= 60 else ():
        draw.ellipse((x - 2, y - 2, x + 2, y + 2), fill=_INK)
    small = _font(TIME_FONT)
    draw.text((PLOT_LEFT - 6, PLOT_TOP + 6), value_text(float(v.max())), font=small, fill=_GREY, anchor="rm")
    draw.text(
        (PLOT_LEFT - 6, PLOT_TOP + PLOT_HEIGHT - 6), value_text(float(v.min())), font=small, fill=_GREY, anchor="rm"
    )
    _time_axis(draw, float(v.size), "")
    return _png_bytes(canvas)


def feature_bar_rows(
    names: Sequence[str],
    values: Sequence[float],
    scores: np.ndarray | Sequence[float],
    *,
    scale: float | None = None,
    cmap: str = DEFAULT_CMAP,
) -> list[dict]:
    """One row per feature, in the order given (the same for every candidate, so rows line
    up across them): ``{"index", "name", "value": the value as text, "score", "sign":
    "supports" | "opposes" | "neutral", "fraction": |score| / scale clipped to 1 (the bar's
    length as a share of its half of the axis), "colour": "#rrggbb", "title": "+0.42"}``."""
    s = _finite(np.asarray(scores, dtype=np.float64), "scores")
    if s.shape != (len(names),) or len(values) != len(names):
        raise ValueError(f"{len(names)} names, {len(values)} values and scores of shape {s.shape} must match")
    scale_v = resolve_scale(s, scale)
    colours = scores_to_rgb(s, scale=scale_v, cmap=cmap)
    return [
        {
            "index": i,
            "name": str(name),
            "value": value_text(float(value)),
            "score": float(score),
            "sign": "supports" if score > 0 else "opposes" if score < 0 else "neutral",
            "fraction": min(1.0, abs(float(score)) / scale_v) if scale_v > 0 else 0.0,
            "colour": _hex(colours[i]),
            "title": _fmt(float(score)),
        }
        for i, (name, value, score) in enumerate(zip(names, values, s))
    ]


#: Layout of :func:`feature_bars_png`: column widths and row height in pixels.
BAR_NAME_W, BAR_VALUE_W, BAR_AREA_W, BAR_SCORE_W, BAR_ROW_H, BAR_HEAD_H = 170, 64, 150, 64, 30, 24


def feature_bars_png(
    names: Sequence[str],
    values: Sequence[float],
    scores: np.ndarray | Sequence[float],
    *,
    scale: float | None = None,
    cmap: str = DEFAULT_CMAP,
) -> bytes:
    """A table of the features: name, value, a bar from the zero line (right: supports,
    left: opposes; length ``|score| / scale`` of its half) in the score's colour, and the
    signed score. Rows in the order given (:func:`feature_bar_rows`)."""
    rows = feature_bar_rows(names, values, scores, scale=scale, cmap=cmap)
    pad = 8
    width = pad + BAR_NAME_W + BAR_VALUE_W + 12 + BAR_AREA_W + BAR_SCORE_W + pad
    canvas = Image.new("RGB", (width, BAR_HEAD_H + BAR_ROW_H * len(rows) + pad), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    font, bold, small = _font(15), _font(15, bold=True), _font(13)
    value_right = pad + BAR_NAME_W + BAR_VALUE_W
    x0 = value_right + 12
    zero = x0 + BAR_AREA_W // 2
    half = BAR_AREA_W // 2 - 2
    draw.text((pad, BAR_HEAD_H / 2), "feature", font=small, fill=_GREY, anchor="lm")
    draw.text((value_right, BAR_HEAD_H / 2), "value", font=small, fill=_GREY, anchor="rm")
    draw.text((zero - 6, BAR_HEAD_H / 2), f"{_MINUS} opposes", font=small, fill=_GREY, anchor="rm")
    draw.text((zero + 6, BAR_HEAD_H / 2), "supports +", font=small, fill=_GREY, anchor="lm")
    for k, row in enumerate(rows):
        top = BAR_HEAD_H + k * BAR_ROW_H
        centre = top + BAR_ROW_H / 2
        if k % 2 == 0:
            draw.rectangle((0, top, width - 1, top + BAR_ROW_H - 1), fill=(246, 246, 246))
        draw.text((pad, centre), _truncate(draw, row["name"], bold, BAR_NAME_W - 6), font=bold, fill=_INK, anchor="lm")
        draw.text((value_right, centre), row["value"], font=font, fill=_INK, anchor="rm")
        length = round(row["fraction"] * half)
        if length > 0:
            colour = tuple(int(row["colour"][i : i + 2], 16) for i in (1, 3, 5))
            a, b = (zero, zero + length) if row["score"] > 0 else (zero - length, zero)
            draw.rectangle((a, top + 5, b, top + BAR_ROW_H - 6), fill=colour, outline=(68, 68, 68))
        draw.text((width - pad, centre), row["title"], font=font, fill=(60, 60, 60), anchor="rm")
    draw.line((zero, BAR_HEAD_H - 2, zero, canvas.height - pad), fill=_INK)
    return _png_bytes(canvas)
