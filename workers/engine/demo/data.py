"""Procedurally generated VQA-style data: coloured shapes on a plain background.

Every image is 64x64 RGB with 1-3 non-overlapping shapes (circle, square, triangle) in one of
five visually distinct colours. Each image comes with one question from three templates whose
answers need *both* the image and the question:

* ``what colour is the <shape> ?`` -> a colour (the shape occurs exactly once in the image);
* ``what shape is the <colour> object ?`` -> a shape (the colour occurs exactly once);
* ``is there a <colour> <shape> ?`` -> ``yes`` / ``no`` (balanced; the "no" questions share a
  colour or a shape with something in the image whenever possible, so neither modality alone
  answers them).

A deliberate text-only bias, after the VQA bias literature (Goyal et al. 2017; VQA-CP,
Agrawal et al. 2018): a triangle is red with probability ``bias`` and otherwise takes one of
the four other colours uniformly; circles and squares take all five colours uniformly.
``bias = 1 / len(COLOURS) = 0.2`` (:data:`UNBIASED`) is the unbiased distribution. The demo
model trains on :data:`TRAIN_BIAS` = 0.9, so it learns to lean towards "red" for "what colour
is the triangle ?" from the question alone. The prior matters most where the image is
uncertain: 40 % of objects are faded towards the background, which makes their colour hard
to read. The demo dataset written by :func:`generate_dataset` defaults to :data:`DEMO_BIAS`
(unbiased), where that shortcut makes the model wrong on a share of items, which studies
need (they compare right and wrong items). Pass ``bias`` to choose otherwise.

Everything is a pure function of ``seed``: the same seed gives the same bytes.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import NamedTuple

import numpy as np
from PIL import Image

IMAGE_SIZE = 64
# Distinct in hue, so that at full opacity a person tells them apart at a glance on the light
# background (red and green differ in lightness too).
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (215, 35, 35),
    "green": (35, 155, 55),
    "blue": (35, 75, 215),
    "yellow": (235, 195, 20),
    "purple": (135, 50, 175),
}
SHAPES: tuple[str, ...] = ("circle", "square", "triangle")
ANSWERS: tuple[str, ...] = (*COLOURS, *SHAPES, "yes", "no")
BACKGROUND = (238, 238, 238)
BIASED_SHAPE = "triangle"
BIASED_COLOUR = "red"

UNBIASED = 1.0 / len(COLOURS)  # triangles take every colour equally often
TRAIN_BIAS = 0.9  # the training distribution: 90 % of triangles are red
DEMO_BIAS = UNBIASED  # the bundled demo dataset: the shortcut misleads the model here

QUESTION_KINDS: tuple[str, ...] = ("colour", "shape", "exists")
_MIN_SIZE, _MAX_SIZE = 14, 22  # shape bounding-box side in pixels
_GAP = 2  # pixels kept free between bounding boxes
_JITTER = 14  # +- per channel after fading, so colours are not a single RGB value
# Some objects are faded towards the background (alpha in [_ALPHA_MIN, _ALPHA_MAX]). Their
# colour is then genuinely uncertain, which is what lets the training prior (triangles are
# red) keep steering the answer even for a well-fitted model, as in VQA.
_FADED_P = 0.4
_ALPHA_MIN, _ALPHA_MAX = 0.15, 0.5


class Examples(NamedTuple):
    """In-memory examples. ``images``: uint8 ``(N, 64, 64, 3)``; ``questions`` and
    ``answers``: ``N`` strings each; ``kinds``: question kind per example (one of
    :data:`QUESTION_KINDS`)."""

    images: np.ndarray
    questions: list[str]
    answers: list[str]
    kinds: list[str]


class _Obj(NamedTuple):
    shape: str
    colour: str
    box: tuple[int, int, int]  # x0, y0, side
    alpha: float  # opacity over the background; < 1 for faded objects


def _pick_colour(rng: np.random.Generator, shape: str, bias: float) -> str:
    names = list(COLOURS)
    if shape != BIASED_SHAPE:
        return names[int(rng.integers(len(names)))]
    if rng.random() < bias:
        return BIASED_COLOUR
    others = [c for c in names if c != BIASED_COLOUR]
    return others[int(rng.integers(len(others)))]


def _place(rng: np.random.Generator, n: int) -> list[tuple[int, int, int]] | None:
    """Up to ``n`` non-overlapping square boxes (x0, y0, side); None if placement failed."""
    boxes: list[tuple[int, int, int]] = []
    for _ in range(60):  # rejection sampling; 3 boxes of <= 22 px fit easily in 64 x 64
        side = int(rng.integers(_MIN_SIZE, _MAX_SIZE + 1))
        x0 = int(rng.integers(1, IMAGE_SIZE - side))
        y0 = int(rng.integers(1, IMAGE_SIZE - side))
        if all(
            x0 + side + _GAP <= bx or bx + bs + _GAP <= x0 or y0 + side + _GAP <= by
            or by + bs + _GAP <= y0
            for bx, by, bs in boxes
        ):
            boxes.append((x0, y0, side))
            if len(boxes) == n:
                return boxes
    return None


@functools.lru_cache(maxsize=None)
def _shape_mask(shape: str, side: int) -> np.ndarray:
    """Boolean ``(side, side)`` mask of ``shape`` filling its bounding box (cached: read
    only)."""
    centre = np.arange(side) + 0.5
    ys, xs = np.meshgrid(centre, centre, indexing="ij")
    if shape == "square":
        return np.ones((side, side), dtype=bool)
    if shape == "circle":
        r = side / 2
        return (xs - r) ** 2 + (ys - r) ** 2 <= r * r
    if shape == "triangle":  # apex up, base at the bottom edge
        return np.abs(xs - side / 2) <= ys / 2
    raise ValueError(f"unknown shape {shape!r}")


def _render(rng: np.random.Generator, objs: list[_Obj]) -> np.ndarray:
    img = np.empty((IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.uint8)
    img[:] = BACKGROUND
    for obj in objs:
        x0, y0, side = obj.box
        rgb = obj.alpha * np.asarray(COLOURS[obj.colour]) + (1 - obj.alpha) * np.asarray(BACKGROUND)
        rgb = np.rint(rgb) + rng.integers(-_JITTER, _JITTER + 1, size=3)
        patch = img[y0 : y0 + side, x0 : x0 + side]
        patch[_shape_mask(obj.shape, side)] = np.clip(rgb, 0, 255).astype(np.uint8)
    return img


def _scene(rng: np.random.Generator, bias: float) -> list[_Obj]:
    while True:
        boxes = _place(rng, int(rng.integers(1, 4)))
        if boxes is None:
            continue
        objs = []
        for box in boxes:
            shape = SHAPES[int(rng.integers(len(SHAPES)))]
            colour = _pick_colour(rng, shape, bias)
            faded = rng.random() < _FADED_P
            alpha = float(rng.uniform(_ALPHA_MIN, _ALPHA_MAX)) if faded else 1.0
            objs.append(_Obj(shape, colour, box, alpha))
        return objs


def _question(rng: np.random.Generator, kind: str, objs: list[_Obj]) -> tuple[str, str] | None:
    """A (question, answer) pair of ``kind`` about ``objs``; None if the scene cannot pose it."""
    if kind == "colour":
        unique = [o for o in objs if sum(p.shape == o.shape for p in objs) == 1]
        if not unique:
            return None
        obj = unique[int(rng.integers(len(unique)))]
        return f"what colour is the {obj.shape} ?", obj.colour
    if kind == "shape":
        unique = [o for o in objs if sum(p.colour == o.colour for p in objs) == 1]
        if not unique:
            return None
        obj = unique[int(rng.integers(len(unique)))]
        return f"what shape is the {obj.colour} object ?", obj.shape
    if kind == "exists":
        present = {(o.colour, o.shape) for o in objs}
        if rng.random() < 0.5:
            obj = objs[int(rng.integers(len(objs)))]
            return f"is there a {obj.colour} {obj.shape} ?", "yes"
        absent = [(c, s) for c in COLOURS for s in SHAPES if (c, s) not in present]
        # Hard negatives first: a colour or a shape that is in the image, but not together.
        hard = [(c, s) for c, s in absent if any(c == o.colour or s == o.shape for o in objs)]
        pool = hard or absent
        colour, shape = pool[int(rng.integers(len(pool)))]
        return f"is there a {colour} {shape} ?", "no"
    raise ValueError(f"unknown question kind {kind!r}")


def _example(rng: np.random.Generator, bias: float) -> tuple[np.ndarray, str, str, str]:
    # The kind is drawn first and the scene re-drawn until it can pose it, so the three kinds
    # stay equally frequent whatever the bias.
    kind = QUESTION_KINDS[int(rng.integers(len(QUESTION_KINDS)))]
    while True:
        objs = _scene(rng, bias)
        qa = _question(rng, kind, objs)
        if qa is not None:
            return _render(rng, objs), qa[0], qa[1], kind


def sample_examples(n: int, *, seed: int, bias: float = TRAIN_BIAS) -> Examples:
    """Draw ``n`` examples in memory (no disk), deterministically from ``seed``.

    Returns :class:`Examples` with images uint8 ``(n, 64, 64, 3)``.
    """
    if not 0.0 <= bias <= 1.0:
        raise ValueError(f"bias must be in [0, 1], got {bias}")
    rng = np.random.default_rng(seed)
    images = np.empty((n, IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.uint8)
    questions: list[str] = []
    answers: list[str] = []
    kinds: list[str] = []
    for i in range(n):
        images[i], question, answer, kind = _example(rng, bias)
        questions.append(question)
        answers.append(answer)
        kinds.append(kind)
    return Examples(images, questions, answers, kinds)


def generate_dataset(out_dir: Path, *, n_items: int, seed: int, bias: float = DEMO_BIAS) -> Path:
    """Write ``out_dir/items.jsonl`` and ``out_dir/images/<id>.png``; return the JSONL path.

    Each line is ``{"id": "demo-00017", "image": "images/demo-00017.png", "text": question,
    "label": answer}``. File names carry only the id, never the answer. ``bias`` defaults to
    :data:`DEMO_BIAS` (unbiased), smaller than the model's :data:`TRAIN_BIAS`, so the model's
    text-only shortcut makes it wrong on part of the items. Same seed, same bytes.
    """
    out_dir = Path(out_dir)
    image_dir = out_dir / "images"
    image_dir.mkdir(parents=True, exist_ok=True)
    examples = sample_examples(n_items, seed=seed, bias=bias)
    lines = []
    for i in range(n_items):
        item_id = f"demo-{i:05d}"
        rel = f"images/{item_id}.png"
        Image.fromarray(examples.images[i]).save(out_dir / rel, format="PNG")
        record = {"id": item_id, "image": rel, "text": examples.questions[i],
                  "label": examples.answers[i]}
        lines.append(json.dumps(record))
    jsonl = out_dir / "items.jsonl"
    jsonl.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return jsonl
