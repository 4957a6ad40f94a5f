"""Valid answers in the dataset format (``workers.engine.dataset``): per-item ``choices``, or an
``answer_type`` declared in ``answer_types.json`` beside the JSONL; every bad line named by its
number; the demo datasets declare theirs without touching what the models train on."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from workers.engine.dataset import ANSWER_TYPES_FILE, DatasetFormatError, read_dataset_jsonl
from workers.engine.demo import data as shapes
from workers.engine.demo.tabular import data as plants


def _write(folder: Path, records: list[dict], *, answer_types: object = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "items.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in records) + "\n", encoding="utf-8")
    if answer_types is not None:
        (folder / ANSWER_TYPES_FILE).write_text(json.dumps(answer_types), encoding="utf-8")
    return path


def _messages(exc: pytest.ExceptionInfo[DatasetFormatError]) -> list[str]:
    return [str(e) for e in exc.value.errors]


TYPES = {"colour": ["red", "green", "blue"], "yes-no": ["yes", "no"]}


def test_choices_and_answer_types_are_read_per_line(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        [
            {"id": "a", "text": "what colour?", "label": "red", "answer_type": "colour"},
            {"id": "b", "text": "is it red?", "label": "no", "answer_type": "yes-no"},
            {"id": "c", "text": "which size?", "label": "big", "choices": ["big", "small"]},
        ],
        answer_types=TYPES,
    )
    lines = read_dataset_jsonl(path)
    assert [(line.answer_type, line.choices) for line in lines] == [
        ("colour", ("red", "green", "blue")),
        ("yes-no", ("yes", "no")),
        ("", ("big", "small")),
    ]
    # Neither key is a modality: the item the adapter gets holds only id, label and modalities.
    assert all(set(line.item) == {"id", "label", "text"} for line in lines)


def test_a_dataset_without_a_declaration_reads_as_before(tmp_path: Path) -> None:
    path = _write(tmp_path, [{"id": "a", "text": "q", "label": "red"}, {"id": "b", "text": "q", "label": "no"}])
    assert [line.choices for line in read_dataset_jsonl(path)] == [(), ()]


def test_every_bad_declaration_is_named_by_its_line(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        [
            {"id": "a", "text": "q", "label": "red", "answer_type": "colour"},
            {"id": "b", "text": "q", "label": "big", "answer_type": "size"},
            {"id": "c", "text": "q", "label": "yes", "choices": ["yes"]},
            {"id": "d", "text": "q", "label": "yes", "choices": ["yes", "no"], "answer_type": "yes-no"},
            {"id": "e", "text": "q", "label": "maybe", "answer_type": "yes-no"},
            {"id": "f", "text": "q", "label": "red"},
            {"id": "g", "text": "q", "label": "red", "answer_type": 3},
        ],
        answer_types=TYPES,
    )
    with pytest.raises(DatasetFormatError) as exc:
        read_dataset_jsonl(path)
    assert _messages(exc) == [
        "line 2: unknown answer type 'size' (answer_types.json declares colour, yes-no)",
        "line 3: field 'choices' must be a list of at least two different answers (strings)",
        "line 4: give 'choices' or 'answer_type', not both",
        "line 5: label 'maybe' is not among the item's valid answers (yes, no)",
        "line 6: no 'choices' or 'answer_type' (line 1 declares its valid answers, so every line must)",
        "line 7: field 'answer_type' must name an answer type",
    ]


def test_an_answer_type_without_the_declaration_file_says_where_to_declare_it(tmp_path: Path) -> None:
    path = _write(tmp_path, [{"id": "a", "text": "q", "label": "red", "answer_type": "colour"}])
    with pytest.raises(DatasetFormatError) as exc:
        read_dataset_jsonl(path)
    assert _messages(exc) == [
        "line 1: answer type 'colour' is not declared: put an answer_types.json beside the JSONL file "
        "that maps each answer type to its answers"
    ]


@pytest.mark.parametrize(
    ("declared", "message"),
    [
        ({"colour": ["red"]}, "answer_types.json: answer type 'colour' must list at least two different answers"),
        (
            {"colour": ["red", "red"]},
            "answer_types.json: answer type 'colour' must list at least two different answers",
        ),
        (["red", "green"], "answer_types.json: must be an object of answer types to lists of answers"),
    ],
)
def test_a_bad_declaration_file_is_refused_by_name(tmp_path: Path, declared: object, message: str) -> None:
    path = _write(tmp_path, [{"id": "a", "text": "q", "label": "red", "answer_type": "colour"}], answer_types=declared)
    with pytest.raises(DatasetFormatError) as exc:
        read_dataset_jsonl(path)
    assert _messages(exc) == [message]


def test_a_declaration_no_line_uses_is_refused(tmp_path: Path) -> None:
    path = _write(tmp_path, [{"id": "a", "text": "q", "label": "red"}], answer_types=TYPES)
    with pytest.raises(DatasetFormatError) as exc:
        read_dataset_jsonl(path)
    assert _messages(exc) == ["answer_types.json declares answer types, but no line names one in 'answer_type'"]


def test_the_shapes_demo_declares_colour_shape_and_yes_no_answers(tmp_path: Path) -> None:
    lines = read_dataset_jsonl(shapes.generate_dataset(tmp_path, n_items=60, seed=0))
    by_type = Counter(line.answer_type for line in lines)
    assert set(by_type) == {"colour", "shape", "yes-no"} and min(by_type.values()) >= 10
    for line in lines:
        question = line.item["text"]
        expected = (
            "colour"
            if question.startswith("what colour")
            else "shape"
            if question.startswith("what shape")
            else "yes-no"
        )
        assert line.answer_type == expected
        assert line.choices == shapes.ANSWER_TYPES[expected] and line.item["label"] in line.choices
    assert shapes.ANSWER_TYPES["yes-no"] == ("yes", "no")
    assert set(shapes.ANSWERS) == {answer for answers in shapes.ANSWER_TYPES.values() for answer in answers}


def test_the_plants_demo_declares_one_answer_type_of_every_state(tmp_path: Path) -> None:
    lines = read_dataset_jsonl(plants.generate_dataset(tmp_path, n_items=20, seed=0))
    assert {(line.answer_type, line.choices) for line in lines} == {("state", plants.LABELS)}


def test_declaring_answer_types_leaves_the_training_examples_alone(tmp_path: Path) -> None:
    """The models train on ``sample_examples`` only (their weights are cached by a config hash):
    the dataset files carry the same questions and answers as the examples of the same seed."""
    examples = shapes.sample_examples(12, seed=5, bias=shapes.DEMO_BIAS)
    lines = read_dataset_jsonl(shapes.generate_dataset(tmp_path, n_items=12, seed=5))
    assert [line.item["text"] for line in lines] == examples.questions
    assert [line.item["label"] for line in lines] == examples.answers
