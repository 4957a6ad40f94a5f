"""The context-bias shapes demo (after Hendricks et al., ECCV 2018, "Women also Snowboard"):
one grey shape to name, circle or square, and a coloured stripe along the top of the picture,
the *context*, whose colour is the item's group (``a``: blue, ``b``: orange).

Built-in bias, with a margin:

* In every draw (training and the demo dataset alike) the answer goes with the group:
  ``P(circle | a) = P(square | b) =`` :data:`CONTEXT_AGREEMENT` = 0.8.
* On :data:`AMBIGUOUS_SHARE` = half of the items the shape is *ambiguous*: drawn as the same
  rounded square whatever the answer, so its pixels carry nothing about the answer, and only
  the stripe does. The Bayes-optimal answer there is the group's usual shape (0.8 against
  0.2), so a trained model answers from the stripe: it looks at the context, not at the shape.
* The other items show a clear circle or square, which a model reads.

So on a draw of this distribution a model that reads the clear shapes and follows the stripe
on the ambiguous ones answers ``circle`` for group ``a`` in ``0.5 * 0.8 + 0.5 * 1 = 0.9`` of
its items against 0.8 in the labels: Zhao et al.'s bias amplification is ``+0.1`` by
construction, and the attribution of the ambiguous items falls outside the shape.

The evidence region of an item is the shape's patches on the 8x8 grid of 4x4-pixel patches
(names as participants see them, column letter then row number: ``"C4"``); the stripe lies in
row 1 and the shape starts at row 3, so the two never share a patch.

Everything is a pure function of ``seed``.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import NamedTuple

import numpy as np
from PIL import Image

IMAGE_SIZE = 32
PATCH = 4
GRID = IMAGE_SIZE // PATCH
LABELS: tuple[str, ...] = ("circle", "square")
GROUPS: tuple[str, ...] = ("a", "b")
#: The stripe's colour per group.
CONTEXT_COLOURS = {"a": (30, 90, 220), "b": (240, 140, 20)}
USUAL_SHAPE = {"a": "circle", "b": "square"}
CONTEXT_AGREEMENT = 0.8  # P(the group's usual shape)
#: Per group, the share of items whose shape is ambiguous: the same faint rounded square
#: whatever the answer. Group ``b``'s shapes are more often unreadable, so the model looks at
#: the context more often there (Hendricks et al.: the person is small or occluded).
AMBIGUOUS_SHARE = {"a": 0.3, "b": 0.7}
#: Opacity of an ambiguous shape over the background (a clear one is opaque).
AMBIGUOUS_ALPHA = 0.15
BACKGROUND = (236, 236, 236)
SHAPE_COLOUR = (70, 70, 70)
STRIPE_ROWS = 3  # pixel rows 0..2: inside patch row 1
_TOP = 2 * PATCH  # the shape starts at pixel row 8 (patch row 3) or below
_MIN_SIDE, _MAX_SIDE = 10, 14


class Examples(NamedTuple):
    """``images`` uint8 ``(N, 32, 32, 3)``; per item its answer, group, whether its shape is
    ambiguous, and its evidence region (patch names)."""

    images: np.ndarray
    labels: list[str]
    groups: list[str]
    ambiguous: list[bool]
    evidence: list[list[str]]


@functools.cache
def _mask(kind: str, side: int) -> np.ndarray:
    """Boolean ``(side, side)`` mask of a shape filling its box (cached: read only)."""
    centre = np.arange(side) + 0.5
    ys, xs = np.meshgrid(centre, centre, indexing="ij")
    u, v = np.abs(xs - side / 2) / (side / 2), np.abs(ys - side / 2) / (side / 2)
    if kind == "square":
        return np.ones((side, side), dtype=bool)
    if kind == "circle":
        return u**2 + v**2 <= 1.0
    return u**4 + v**4 <= 1.0  # ambiguous: a rounded square, between the two


def patch_name(row: int, column: int) -> str:
    """``"C4"``: column letter (from ``A``), then the 1-based row."""
    return f"{chr(ord('A') + column)}{row + 1}"


def _example(rng: np.random.Generator) -> tuple[np.ndarray, str, str, bool, list[str]]:
    group = GROUPS[int(rng.integers(len(GROUPS)))]
    usual = USUAL_SHAPE[group]
    label = usual if rng.random() < CONTEXT_AGREEMENT else next(s for s in LABELS if s != usual)
    ambiguous = bool(rng.random() < AMBIGUOUS_SHARE[group])
    side = int(rng.integers(_MIN_SIDE, _MAX_SIDE + 1))
    x0 = int(rng.integers(1, IMAGE_SIZE - side))
    y0 = int(rng.integers(_TOP, IMAGE_SIZE - side))
    image = np.empty((IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.uint8)
    image[:] = BACKGROUND
    image[:STRIPE_ROWS] = CONTEXT_COLOURS[group]
    full = np.zeros((IMAGE_SIZE, IMAGE_SIZE), dtype=bool)
    full[y0 : y0 + side, x0 : x0 + side] = _mask("ambiguous" if ambiguous else label, side)
    alpha = AMBIGUOUS_ALPHA if ambiguous else 1.0
    image[full] = np.rint(alpha * np.asarray(SHAPE_COLOUR) + (1 - alpha) * np.asarray(BACKGROUND)).astype(np.uint8)
    cells = full.reshape(GRID, PATCH, GRID, PATCH).any(axis=(1, 3))
    evidence = [patch_name(r, c) for r, c in zip(*np.nonzero(cells))]
    return image, label, group, ambiguous, evidence


def sample_examples(n: int, *, seed: int) -> Examples:
    """``n`` examples drawn deterministically from ``seed`` (module doc)."""
    rng = np.random.default_rng(seed)
    images = np.empty((n, IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.uint8)
    labels, groups, ambiguous, evidence = [], [], [], []
    for i in range(n):
        images[i], label, group, unclear, region = _example(rng)
        labels.append(label)
        groups.append(group)
        ambiguous.append(unclear)
        evidence.append(region)
    return Examples(images, labels, groups, ambiguous, evidence)


def write_examples(out_dir: Path, examples: Examples, *, prefix: str) -> Path:
    """``out_dir/items.jsonl`` and ``out_dir/images/<id>.png``; returns the JSONL path. Each
    line: ``{"id", "image", "label", "group", "evidence": {"image": [patch names]}}``."""
    out_dir = Path(out_dir)
    (out_dir / "images").mkdir(parents=True, exist_ok=True)
    lines = []
    for i, image in enumerate(examples.images):
        item_id = f"{prefix}-{i:05d}"
        rel = f"images/{item_id}.png"
        Image.fromarray(image).save(out_dir / rel, format="PNG")
        record = {
            "id": item_id,
            "image": rel,
            "label": examples.labels[i],
            "group": examples.groups[i],
            "evidence": {"image": examples.evidence[i]},
        }
        lines.append(json.dumps(record))
    jsonl = out_dir / "items.jsonl"
    jsonl.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return jsonl


def generate_dataset(out_dir: Path, *, n_items: int, seed: int) -> Path:
    """The demo dataset: ``n_items`` examples of the module's distribution, written by
    :func:`write_examples` (ids ``context-00017``). Same seed, same bytes."""
    return write_examples(out_dir, sample_examples(n_items, seed=seed), prefix="context")
