"""What the researcher's attention page (VL-InterpreT's views) reads of a stored
:class:`~workers.engine.attention.AttentionRecord`: one attention matrix at a time and the head
summary drawn as an SVG heatmap (layers × heads, each cell the share of the head's attention
that crosses modalities). No Django, no torch."""

from __future__ import annotations

import html

import numpy as np

from workers.engine.attention import AttentionRecord

__all__ = ["ROLLOUT", "head_summary_svg", "record_matrix"]

#: The "layer" that names the rollout through all layers instead of one layer's attention.
ROLLOUT = "rollout"
#: The "head" that names the mean of a layer's heads.
MEAN = "mean"
_LOW, _HIGH = np.array([247, 251, 255]), np.array([8, 48, 107])  # light to dark blue


def record_matrix(record: AttentionRecord, *, stream: str, layer: str, head: str) -> np.ndarray:
    """The ``(U, U)`` unit matrix the page shows: one layer's head (``layer``, ``head`` as
    decimal strings), the mean of its heads (``head="mean"``), or the rollout
    (``layer="rollout"``). Raises ValueError naming a bad value."""
    s = record.stream(stream) if stream in {x.name for x in record.streams} else None
    if s is None:
        raise ValueError(f"unknown stream {stream!r}; this record has {', '.join(x.name for x in record.streams)}")
    if layer == ROLLOUT:
        return s.rollout
    n_layers, n_heads = s.attention.shape[:2]
    if not layer.isdigit() or int(layer) >= n_layers:
        raise ValueError(f"layer must be 0 to {n_layers - 1} or {ROLLOUT!r}, got {layer!r}")
    per_layer = s.attention[int(layer)]
    if head == MEAN:
        return per_layer.mean(axis=0)
    if not head.isdigit() or int(head) >= n_heads:
        raise ValueError(f"head must be 0 to {n_heads - 1} or {MEAN!r}, got {head!r}")
    return per_layer[int(head)]


def _colour(value: float) -> str:
    r, g, b = (_LOW + (_HIGH - _LOW) * float(np.clip(value, 0.0, 1.0))).round().astype(int)
    return f"#{r:02x}{g:02x}{b:02x}"


def head_summary_svg(cross: np.ndarray, *, cell: int = 34) -> str:
    """``cross`` ``(L, H)`` (shares in [0, 1]) as an SVG heatmap: a row per layer (layer 0 at
    the top), a column per head, each cell coloured on a fixed 0–1 scale and labelled with its
    percentage, so heads compare across models and items."""
    cross = np.asarray(cross, dtype=np.float64)
    n_layers, n_heads = cross.shape
    left, top = 64, 22
    width, height = left + n_heads * cell + 4, top + n_layers * cell + 4
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="head-summary" viewBox="0 0 {width} {height}" '
        f'width="{width}" height="{height}" role="img" aria-label="share of cross-modal attention per layer and head">'
    ]
    for h in range(n_heads):
        x = left + h * cell + cell / 2
        parts.append(f'<text x="{x:.0f}" y="15" font-size="12" text-anchor="middle">h{h}</text>')
    for layer in range(n_layers):
        y = top + layer * cell
        parts.append(
            f'<text x="{left - 6}" y="{y + cell / 2 + 4:.0f}" font-size="12" text-anchor="end">layer {layer}</text>'
        )
        for h in range(n_heads):
            value = float(cross[layer, h])
            ink = "#fff" if value > 0.55 else "#111"
            label = html.escape(f"layer {layer}, head {h}: {100 * value:.1f}% across modalities")
            parts.append(
                f'<g class="head-cell" data-layer="{layer}" data-head="{h}"><title>{label}</title>'
                f'<rect x="{left + h * cell}" y="{y}" width="{cell - 2}" height="{cell - 2}" fill="{_colour(value)}"/>'
                f'<text x="{left + h * cell + (cell - 2) / 2:.0f}" y="{y + cell / 2 + 3:.0f}" font-size="11" '
                f'text-anchor="middle" fill="{ink}">{100 * value:.0f}</text></g>'
            )
    parts.append("</svg>")
    return "".join(parts)
