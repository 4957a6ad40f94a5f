"""Numbers of the audio, tabular and series modalities as a page shows them, shared by the
rendered views (``render_modalities``) and the page that shows the input itself: where the
line of a series passes (the template draws it as an SVG) and how a value is written. numpy
only, so the web process can use it without matplotlib or torch."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

_MINUS = "\u2212"  # typographic minus sign, as render.py writes it


def value_text(value: float) -> str:
    """A data value as a person reads it: up to 4 significant digits, typographic minus."""
    if value == 0:
        return "0"
    return f"{value:.4g}".replace("-", _MINUS)


def series_points(
    values: np.ndarray | Sequence[float], *, width: float = 480.0, height: float = 120.0, pad: float = 6.0
) -> list[tuple[float, float]]:
    """Where the line of a series passes: point ``i`` at the centre of its time step
    (``(i + 0.5) / N`` of the width), the smallest value ``pad`` above the bottom and the
    largest ``pad`` below the top (a constant series runs through the middle). ``y`` grows
    downwards, as in an image or an SVG."""
    v = np.asarray(values, dtype=np.float64).reshape(-1)
    if not np.all(np.isfinite(v)):
        raise ValueError("values contain NaN or infinite values")
    if v.size < 1:
        raise ValueError("the series is empty")
    lo, hi = float(v.min()), float(v.max())
    xs = (np.arange(v.size) + 0.5) / v.size * width
    ys = np.full(v.size, height / 2) if hi == lo else pad + (hi - v) / (hi - lo) * (height - 2 * pad)
    return [(float(a), float(b)) for a, b in zip(xs, ys)]
