"""Slice expressions of the model report (workers/engine/report/slices.py): parsing, derived
fields, evaluation, and errors that name the field and the position."""

from __future__ import annotations

import pytest

from workers.engine.report.slices import SliceError, slice_fields_for, slices_parse

FIELDS = slice_fields_for(modalities=("image", "text"))
ROWS = [
    {
        "id": "a",
        "label": "red",
        "text": "what colour is the triangle?",
        "prediction": "red",
        "correct": True,
        "confidence": 0.9,
        "interaction": "dominance",
        "dominant": "text",
    },
    {
        "id": "b",
        "label": "green",
        "text": "what colour is the triangle?",
        "prediction": "red",
        "correct": False,
        "confidence": 0.97,
        "interaction": "dominance",
        "dominant": "text",
    },
    {
        "id": "c",
        "label": "square",
        "text": "what shape is the green object?",
        "prediction": "square",
        "correct": True,
        "confidence": 0.5,
        "interaction": "conflict",
        "dominant": None,
    },
    {
        "id": "d",
        "label": "blue",
        "text": "what colour is the circle?",
        "prediction": "blue",
        "correct": True,
        "confidence": 0.8,
        "interaction": "complementarity",
        "dominant": None,
    },
]


def _members(expression: str, fields: dict | None = None) -> list[str]:
    parsed = slices_parse({"fields": fields or {}, "slices": {"s": expression}}, fields=FIELDS)
    mask = parsed.masks(ROWS)["s"]
    return [row["id"] for row, keep in zip(ROWS, mask) if keep]


def test_the_demo_slice_with_derived_fields():
    fields = {"shape": {"from": "text", "regex": r"what colour is the (\w+)"}, "colour": {"from": "label"}}
    assert _members("shape == triangle and colour != red", fields) == ["b"]
    assert _members("shape == triangle", fields) == ["a", "b"]
    assert _members("shape != triangle", fields) == ["c", "d"]  # a regex that did not match differs from all


@pytest.mark.parametrize(
    "expression, ids",
    [
        ("not correct", ["b"]),
        ("correct == false", ["b"]),
        ("confidence >= 0.9", ["a", "b"]),
        ("confidence < 0.6 or interaction == conflict", ["c"]),
        ("prediction in [red, blue]", ["a", "b", "d"]),
        ("prediction not in [red, blue]", ["c"]),
        ("text contains 'colour is the'", ["a", "b", "d"]),
        ("text matches '^what shape'", ["c"]),
        ("(label == red or label == green) and not (id == a)", ["b"]),
        ("dominant == text and interaction == dominance", ["a", "b"]),
        ("dominant == null", ["c", "d"]),
        ('text == "what colour is the circle?"', ["d"]),
    ],
)
def test_expressions(expression, ids):
    assert _members(expression) == ids


def test_unknown_field_names_the_field_and_its_column():
    with pytest.raises(SliceError) as caught:
        slices_parse({"slices": {"bias": "label == red and shap == triangle"}}, fields=FIELDS)
    error = caught.value
    assert (error.where, error.field, error.column) == ("slices.bias", "shap", 18)
    assert str(error).startswith("slices.bias, column 18: unknown field 'shap'; fields: ")


@pytest.mark.parametrize(
    "expression, column, message",
    [
        ("label ==", 9, "expected a value after the operator on 'label', got 'the end'"),
        ("label red", 7, "expected an operator after 'label'"),
        ("(label == red", 14, "expected ')' to close the '('"),
        ("label == red)", 13, "unexpected ')'; expected 'and', 'or' or the end"),
        ("label == red and", 17, "expected a field name, got 'the end'"),
        ("confidence > high", 14, "'>' on 'confidence' needs a number, got 'high'"),
        ("label > 3", 9, "'>' needs a number field; 'label' holds text"),
        ("label in red", 10, "expected '[' after 'in'"),
        ("label in [red, blue", 20, "expected ',' or ']' in the list"),
        ("label == red $", 14, "unexpected character '$'"),
        ("text matches '('", 14, "bad regular expression"),
        ("", 1, "the expression is empty"),
    ],
)
def test_malformed_expressions_name_the_position(expression, column, message):
    with pytest.raises(SliceError) as caught:
        slices_parse({"slices": {"s": expression}}, fields=FIELDS)
    assert caught.value.column == column
    assert message in str(caught.value)
    assert str(caught.value).startswith(f"slices.s, column {column}: ")
    if caught.value.field is not None:  # every error about a field names it
        assert repr(caught.value.field) in str(caught.value)


def test_a_comparison_with_a_non_number_in_the_data_names_the_field_and_the_item():
    slices = slices_parse({"slices": {"sure": "confidence > 0.5"}}, fields=FIELDS)
    with pytest.raises(SliceError) as caught:
        slices.masks([{"id": "q1", "confidence": 0.9}, {"id": "q2", "confidence": "high"}])
    assert str(caught.value) == "slices.sure: '>' on 'confidence' needs a number; item 'q2' holds 'high'"
    assert caught.value.field == "confidence"


@pytest.mark.parametrize(
    "data, where, message",
    [
        ({"slices": {"s": 3}}, "slices.s", "must be an expression (text)"),
        ({"slices": {"rest": "correct"}}, "slices.rest", "'rest' names the items outside"),
        ({"filters": {}}, "filters", "unknown section"),
        ({"fields": {"shape": {"from": "txt"}}, "slices": {}}, "fields.shape.from", "unknown field 'txt'"),
        ({"fields": {"label": {"from": "text"}}}, "fields.label", "'label' is already a field"),
        ({"fields": {"2x": {"from": "text"}}}, "fields.2x", "a field name is letters"),
        ({"fields": {"shape": {"from": "text", "regex": "(a"}}}, "fields.shape.regex", "bad regular expression"),
        ({"fields": {"shape": {"form": "text"}}}, "fields.shape", "must be {from: FIELD}"),
        (["label == red"], "slices file", "must be a mapping"),
    ],
)
def test_bad_slices_files_name_the_entry(data, where, message):
    with pytest.raises(SliceError) as caught:
        slices_parse(data, fields=FIELDS)
    assert caught.value.where == where
    assert message in str(caught.value)


def test_no_slices_is_fine():
    assert slices_parse(None, fields=FIELDS).slices == ()
    assert slices_parse({"slices": {}}, fields=FIELDS).masks(ROWS) == {}


def test_derived_field_may_use_an_earlier_one_and_round_trips():
    data = {"fields": {"colour": "label", "first": {"from": "colour", "regex": "^(.)"}}, "slices": {"r": "first == r"}}
    parsed = slices_parse(data, fields=FIELDS)
    assert [row["id"] for row, keep in zip(ROWS, parsed.masks(ROWS)["r"]) if keep] == ["a"]
    assert parsed.to_json() == {
        "fields": {"colour": {"from": "label"}, "first": {"from": "colour", "regex": "^(.)"}},
        "slices": {"r": "first == r"},
    }
