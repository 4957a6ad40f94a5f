"""Procedurally generated tabular + text data: house plants, four measurements and a note.

Each item is one plant: a table of four measurements (soil moisture in %, hours of sun a day,
temperature in °C, spots counted on the leaves) and a short note by its owner. The answer is
the plant's state, one of :data:`LABELS`, and follows from the measurements alone:

* ``thirsty``: dry soil (low moisture);
* ``scorched``: many hours of sun and heat;
* ``diseased``: many leaf spots;
* ``healthy``: none of these.

Measurements are drawn around the state's typical values, with noise that keeps the states
apart (a person reading the table tells them apart). The note is words only: where the plant
stands and when it was watered, never its state.

A deliberate text-only shortcut, put into the *labels* as in the image demo: in training,
with probability ``bias`` a plant whose note says it stands on the **balcony** is labelled
``scorched``, whatever its measurements. At :data:`TRAIN_BIAS` = 0.85 the Bayes-optimal
answer for a balcony plant is ``scorched`` by a margin of 0.7 in probability, so any
reasonably converged model answers ``scorched`` for every balcony plant, whatever the float
arithmetic of the CPU it trained on. The study data (:data:`DEMO_BIAS` = 0: true states)
puts a quarter of the plants on the balcony, so the model is wrong on the balcony plants
that are not scorched, and explanations should show the word "balcony", not the table,
pushing ``scorched``.

Everything is a pure function of ``seed``: the same seed gives the same bytes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import NamedTuple

import numpy as np

from workers.engine.dataset import answer_types_write

LABELS: tuple[str, ...] = ("healthy", "thirsty", "scorched", "diseased")
FEATURES: tuple[str, ...] = ("soil moisture %", "sun hours a day", "temperature °C", "leaf spots")
#: Typical measurements of each state, and the spread around them (one per feature).
MEANS: dict[str, tuple[float, float, float, float]] = {
    "healthy": (45.0, 5.0, 20.0, 1.0),
    "thirsty": (12.0, 5.0, 21.0, 1.0),
    "scorched": (40.0, 11.0, 31.0, 2.0),
    "diseased": (42.0, 4.5, 19.0, 14.0),
}
SPREAD = (5.0, 1.2, 2.0, 1.2)
#: Where feature values are clipped: nothing a person would find odd.
LIMITS = ((2.0, 90.0), (0.0, 16.0), (5.0, 42.0), (0.0, 30.0))

#: The one question of the dataset ("what state is the plant in?"): every label is a valid answer.
ANSWER_TYPE = "state"
SHORTCUT_WORD = "balcony"
SHORTCUT_LABEL = "scorched"
TRAIN_BIAS = 0.85
UNBIASED = 0.0
DEMO_BIAS = UNBIASED
#: Share of plants on the balcony, in training and in the study data alike.
BALCONY_SHARE = 0.25

# Every place takes "on the", so only the place's own word tells the balcony apart.
PLACES = ("windowsill", "shelf", "desk", "floor", "piano")
DAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
NOTE_TEMPLATES = (
    "it stands {where} and was watered on {day}",
    "my plant {where} last watered {day}",
    "watered on {day} it lives {where}",
)


class Examples(NamedTuple):
    features: np.ndarray  # (N, 4) float64, in the units of FEATURES
    notes: list[str]
    labels: list[str]  # the training answer (shortcut applied at ``bias``)
    true_labels: list[str]  # the state the measurements show


def sample_examples(n: int, *, seed: int, bias: float) -> Examples:
    """``n`` plants from ``np.random.default_rng(seed)``; a balcony plant is labelled
    :data:`SHORTCUT_LABEL` with probability ``bias``, else its true state."""
    rng = np.random.default_rng(seed)
    true = rng.integers(0, len(LABELS), size=n)
    noise = rng.standard_normal((n, len(FEATURES)))
    balcony = rng.random(n) < BALCONY_SHARE
    shortcut = rng.random(n) < bias
    template = rng.integers(0, len(NOTE_TEMPLATES), size=n)
    place = rng.integers(0, len(PLACES), size=n)
    day = rng.integers(0, len(DAYS), size=n)
    means = np.array([MEANS[label] for label in LABELS])
    features = means[true] + noise * np.array(SPREAD)
    low, high = np.array(LIMITS).T
    features = np.round(np.clip(features, low, high), 1)
    notes, labels, true_labels = [], [], []
    for k in range(n):
        where = f"on the {SHORTCUT_WORD if balcony[k] else PLACES[place[k]]}"
        notes.append(NOTE_TEMPLATES[template[k]].format(where=where, day=DAYS[day[k]]))
        true_labels.append(LABELS[true[k]])
        labels.append(SHORTCUT_LABEL if balcony[k] and shortcut[k] else LABELS[true[k]])
    return Examples(features, notes, labels, true_labels)


def generate_dataset(out_dir: Path, *, n_items: int = 200, seed: int = 0, bias: float = DEMO_BIAS) -> Path:
    """Write ``plants.jsonl`` (``tabular``, ``text``, ``label``, ``answer_type``) and its
    ``answer_types.json`` (one type, ``state``: every label is a valid answer) into ``out_dir``;
    returns the JSONL path. Labels are the true states unless ``bias`` says otherwise."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    examples = sample_examples(n_items, seed=seed, bias=bias)
    path = out_dir / "plants.jsonl"
    with path.open("w", encoding="utf-8") as handle:
        for k in range(n_items):
            line = {
                "id": f"p{k:04d}",
                "tabular": {name: float(v) for name, v in zip(FEATURES, examples.features[k])},
                "text": examples.notes[k],
                "label": examples.labels[k],
                "answer_type": ANSWER_TYPE,
            }
            handle.write(json.dumps(line, ensure_ascii=False) + "\n")
    answer_types_write(out_dir, answer_types={ANSWER_TYPE: LABELS})
    return path
