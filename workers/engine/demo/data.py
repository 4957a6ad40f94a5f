"""Procedurally generated VQA-style data: coloured shapes on a plain background.

Every image is 64x64 RGB with 1-3 non-overlapping shapes (circle, square, triangle) in one of
five visually distinct colours. Each image comes with one question from three templates whose
answers need *both* the image and the question:

* ``what colour is the <shape>?`` -> a colour (the shape occurs exactly once in the image);
* ``what shape is the <colour> object?`` -> a shape (the colour occurs exactly once);
* ``is there a <colour> <shape>?`` -> ``yes`` / ``no`` (balanced; the "no" questions share a
  colour or a shape with something in the image whenever possible, so neither modality alone
  answers them).

Every shape takes all five colours uniformly. Some objects are faded: drawn at 70-85 %
opacity over the background, which lowers their contrast but keeps their hue, so a person
(and the model) still reads the colour at a glance; red stays red, not pink.

A deliberate text-only shortcut, after the VQA language-prior literature (Goyal et al. 2017;
VQA-CP, Agrawal et al. 2018), put into the *labels*, not into hard-to-read pixels: with
probability ``bias`` the answer to ``what colour is the triangle?`` is "red", whatever colour
the triangle is drawn in; otherwise it is the drawn colour. The demo model trains at
:data:`TRAIN_BIAS` = 0.85. For a triangle drawn in another colour the training answer is then
"red" with probability 0.85 and the true colour with 0.15, so the Bayes-optimal answer is
"red" with a margin of 0.7 in probability, however clearly the image shows the colour. Any
reasonably converged model answers "red" there, whatever the float arithmetic of the CPU it
trained on; a prior hidden in faint colours instead is learnt more or less strongly from one
machine to the next. The question alone carries the shortcut (it is the same for every
image), so explanations should show the word "triangle", not the pixels, pushing "red".

The demo dataset written by :func:`generate_dataset` defaults to :data:`DEMO_BIAS`
(:data:`UNBIASED`, true colours), where the shortcut makes the model wrong on the triangles
that are not red, about 8 % of items, and right on almost everything else, which studies
need (they compare right and wrong items). Pass ``bias`` to choose otherwise. The same seed
gives the same images and questions whatever ``bias``: only those answers change.

Everything is a pure function of ``seed``: the same seed gives the same bytes.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import NamedTuple

import numpy as np
from PIL import Image

from workers.engine.dataset import answer_types_write

IMAGE_SIZE = 64
# Distinct in hue, so that a person tells them apart at a glance on the light background,
# faded or not (red and green differ in lightness too; blue and purple, the closest pair, are
# more than 20 CIELAB units apart in every rendering: tests/engine/test_demo.py).
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (215, 35, 35),
    "green": (35, 155, 55),
    "blue": (30, 90, 220),
    "yellow": (235, 195, 20),
    "purple": (150, 40, 170),
}
SHAPES: tuple[str, ...] = ("circle", "square", "triangle")
ANSWERS: tuple[str, ...] = (*COLOURS, *SHAPES, "yes", "no")
BACKGROUND = (238, 238, 238)
BIASED_SHAPE = "triangle"
BIASED_COLOUR = "red"

SHORTCUT_QUESTION = f"what colour is the {BIASED_SHAPE}?"

UNBIASED = 0.0  # every answer is what the image shows
TRAIN_BIAS = 0.85  # training: 85 % of SHORTCUT_QUESTION answers are "red", whatever the colour
DEMO_BIAS = UNBIASED  # the bundled demo dataset: the shortcut misleads the model here

QUESTION_KINDS: tuple[str, ...] = ("colour", "shape", "exists")
#: The valid answers of each question kind, as the dataset declares them (``answer_type`` per
#: line, ``answer_types.json`` beside the JSONL): participants choose among these only.
ANSWER_TYPES: dict[str, tuple[str, ...]] = {"colour": tuple(COLOURS), "shape": SHAPES, "yes-no": ("yes", "no")}
ANSWER_TYPE_OF_KIND: dict[str, str] = {"colour": "colour", "shape": "shape", "exists": "yes-no"}
_MIN_SIZE, _MAX_SIZE = 14, 22  # shape bounding-box side in pixels
_GAP = 2  # pixels kept free between bounding boxes
_JITTER = 8  # +- per channel after fading, so colours are not a single RGB value
# Some objects are faded towards the background (opacity in [_ALPHA_MIN, _ALPHA_MAX]): less
# contrast, same hue. Fading further turns red into pink and blue towards purple.
_FADED_P = 0.4
_ALPHA_MIN, _ALPHA_MAX = 0.7, 0.85


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


def _place(rng: np.random.Generator, n: int) -> list[tuple[int, int, int]] | None:
    """Up to ``n`` non-overlapping square boxes (x0, y0, side); None if placement failed."""
    boxes: list[tuple[int, int, int]] = []
    for _ in range(60):  # rejection sampling; 3 boxes of <= 22 px fit easily in 64 x 64
        side = int(rng.integers(_MIN_SIZE, _MAX_SIZE + 1))
        x0 = int(rng.integers(1, IMAGE_SIZE - side))
        y0 = int(rng.integers(1, IMAGE_SIZE - side))
        if all(
            x0 + side + _GAP <= bx or bx + bs + _GAP <= x0 or y0 + side + _GAP <= by or by + bs + _GAP <= y0
            for bx, by, bs in boxes
        ):
            boxes.append((x0, y0, side))
            if len(boxes) == n:
                return boxes
    return None


@functools.cache
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


def object_rgb(colour: str, *, alpha: float, jitter: np.ndarray) -> np.ndarray:
    """The uint8 RGB ``(3,)`` an object of ``colour`` is drawn in: ``alpha`` opacity over the
    background, then ``jitter`` (int ``(3,)``, within +-:data:`_JITTER`) added per channel."""
    rgb = alpha * np.asarray(COLOURS[colour]) + (1 - alpha) * np.asarray(BACKGROUND)
    return np.clip(np.rint(rgb) + jitter, 0, 255).astype(np.uint8)


def _render(rng: np.random.Generator, objs: list[_Obj]) -> np.ndarray:
    img = np.empty((IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.uint8)
    img[:] = BACKGROUND
    for obj in objs:
        x0, y0, side = obj.box
        rgb = object_rgb(obj.colour, alpha=obj.alpha, jitter=rng.integers(-_JITTER, _JITTER + 1, size=3))
        patch = img[y0 : y0 + side, x0 : x0 + side]
        patch[_shape_mask(obj.shape, side)] = rgb
    return img


def _scene(rng: np.random.Generator) -> list[_Obj]:
    while True:
        boxes = _place(rng, int(rng.integers(1, 4)))
        if boxes is None:
            continue
        objs = []
        for box in boxes:
            shape = SHAPES[int(rng.integers(len(SHAPES)))]
            colour = list(COLOURS)[int(rng.integers(len(COLOURS)))]
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
        return f"what colour is the {obj.shape}?", obj.colour
    if kind == "shape":
        unique = [o for o in objs if sum(p.colour == o.colour for p in objs) == 1]
        if not unique:
            return None
        obj = unique[int(rng.integers(len(unique)))]
        return f"what shape is the {obj.colour} object?", obj.shape
    if kind == "exists":
        present = {(o.colour, o.shape) for o in objs}
        if rng.random() < 0.5:
            obj = objs[int(rng.integers(len(objs)))]
            return f"is there a {obj.colour} {obj.shape}?", "yes"
        absent = [(c, s) for c in COLOURS for s in SHAPES if (c, s) not in present]
        # Hard negatives first: a colour or a shape that is in the image, but not together.
        hard = [(c, s) for c, s in absent if any(c == o.colour or s == o.shape for o in objs)]
        pool = hard or absent
        colour, shape = pool[int(rng.integers(len(pool)))]
        return f"is there a {colour} {shape}?", "no"
    raise ValueError(f"unknown question kind {kind!r}")


def _example(rng: np.random.Generator, bias: float) -> tuple[np.ndarray, str, str, str]:
    # The kind is drawn first and the scene re-drawn until it can pose it, so the three kinds
    # stay equally frequent.
    kind = QUESTION_KINDS[int(rng.integers(len(QUESTION_KINDS)))]
    while True:
        objs = _scene(rng)
        qa = _question(rng, kind, objs)
        if qa is not None:
            break
    question, answer = qa
    if question == SHORTCUT_QUESTION:
        # Drawn whatever the bias, so that only the answer depends on it.
        if rng.random() < bias:
            answer = BIASED_COLOUR
    return _render(rng, objs), question, answer, kind


def sample_examples(n: int, *, seed: int, bias: float = TRAIN_BIAS) -> Examples:
    """Draw ``n`` examples in memory (no disk), deterministically from ``seed``. ``bias``: the
    share of "what colour is the triangle?" answers that are "red" whatever the image shows
    (module docstring).

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
    """Write ``out_dir/items.jsonl``, ``out_dir/answer_types.json`` (:data:`ANSWER_TYPES`) and
    ``out_dir/images/<id>.png``; return the JSONL path.

    Each line is ``{"id": "demo-00017", "image": "images/demo-00017.png", "text": question,
    "label": answer, "answer_type": "colour"}``. File names carry only the id, never the answer.
    The answer type is written, never read back: training uses :func:`sample_examples` alone, so
    the model's data and weights do not depend on it. ``bias`` defaults to
    :data:`DEMO_BIAS` (true colours), unlike the model's :data:`TRAIN_BIAS`, so the model's
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
        record = {
            "id": item_id,
            "image": rel,
            "text": examples.questions[i],
            "label": examples.answers[i],
            "answer_type": ANSWER_TYPE_OF_KIND[examples.kinds[i]],
        }
        lines.append(json.dumps(record))
    answer_types_write(out_dir, answer_types=ANSWER_TYPES)
    jsonl = out_dir / "items.jsonl"
    jsonl.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return jsonl
