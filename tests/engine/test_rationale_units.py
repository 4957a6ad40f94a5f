"""The units of a rationale item and the check of a participant's marks (workers/engine/
rationale_units.py): pure, no database."""

from __future__ import annotations

import json

import pytest

from workers.engine.rationale_units import (
    MAX_MARKED_UNITS,
    MarksError,
    grid_cells,
    marks_from_form,
    rationale_layout,
    rationale_marks_parse,
    unit_positions,
)

LAYOUT = rationale_layout(
    ["image", "text", "tabular", "audio"],
    {"image": "x.png", "text": "Is the plant's soil dry?", "tabular": {"sun": 3.0, "moisture": 0.1}, "audio": "a.wav"},
)


def test_the_layout_names_cells_words_and_rows_as_the_evidence_format_does():
    assert set(LAYOUT) == {"image", "text", "tabular"}  # nothing to mark in a sound
    assert LAYOUT["image"][:9] == ["A1", "B1", "C1", "D1", "E1", "F1", "G1", "H1", "A2"] and LAYOUT["image"][-1] == "H8"
    assert LAYOUT["text"] == ["Is", "the", "plant", "'", "s", "soil", "dry", "?"]
    assert LAYOUT["tabular"] == ["moisture", "sun"]  # name order, as the page's table
    assert grid_cells((28, 1))[26:] == ["AA1", "AB1"]
    assert unit_positions("image", ["C4", "A1"], LAYOUT["image"]) == [26, 0]


def test_marks_are_normalised_to_the_evidence_format():
    marks = rationale_marks_parse(json.dumps({"image": ["D4", "C4"], "text": [6, 2], "tabular": []}), LAYOUT)
    assert marks == {"image": ["C4", "D4"], "text": [2, 6]}
    form = marks_from_form(["image:C4", "tabular:1", "text:0"], LAYOUT)
    assert rationale_marks_parse(form, LAYOUT) == {"image": ["C4"], "text": [0], "tabular": [1]}


@pytest.mark.parametrize(
    "raw, message",
    [
        ("{", "not JSON"),
        ("[1]", "must be an object"),
        ({}, "at least one part"),
        ({"image": []}, "at least one part"),
        ({"audio": [0]}, "no part of this item"),
        ({"image": "C4"}, "must be a list"),
        ({"image": ["I1"]}, "no cell of the grid"),
        ({"image": [3]}, "no cell of the grid"),
        ({"text": [8]}, "no position on 'text' (0 to 7)"),
        ({"text": [True]}, "no position"),
        ({"text": [-1]}, "no position"),
        ({"text": [1, 1]}, "marked twice"),
        ({"text": list(range(8)), "image": LAYOUT["image"] * 40}, f"at most {MAX_MARKED_UNITS:,}"),
        (["text:x"], "no position"),
        (["nothing"], "no part of this item"),
        ("x" * 60_000, "too long"),
    ],
)
def test_bad_marks_are_refused_with_a_message(raw, message):
    with pytest.raises(MarksError, match=message.replace("(", r"\(").replace(")", r"\)")):
        rationale_marks_parse(raw, LAYOUT)
