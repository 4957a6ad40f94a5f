"""Line numbers in dataset errors are 1-based, whatever the problem: the line a text editor
shows. (Other format rules are tested with the importer in tests/services/test_datasets.py.)"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from workers.engine.dataset import DatasetFormatError, read_dataset_jsonl


def _line(item_id: str, text: str = "what colour is the circle?") -> bytes:
    return json.dumps({"id": item_id, "label": "red", "text": text}, ensure_ascii=False).encode("utf-8") + b"\n"


def _read(tmp_path: Path, data: bytes):
    path = tmp_path / "items.jsonl"
    path.write_bytes(data)
    return read_dataset_jsonl(path)


def test_an_encoding_error_names_its_1_based_line_and_byte(tmp_path):
    data = _line("a") + b"\n" + b'{"id": "b", "label": "red", "text": "caf\xe9"}\n'
    with pytest.raises(DatasetFormatError) as raised:
        _read(tmp_path, data)
    assert str(raised.value) == "1 bad line(s):\nline 3: not UTF-8 text (byte 0xe9 is byte 41 of the line)"
    assert raised.value.errors[0].line == 3


def test_a_bad_first_byte_is_line_1(tmp_path):
    with pytest.raises(DatasetFormatError) as raised:
        _read(tmp_path, b"\xff" + _line("a"))
    assert str(raised.value.errors[0]) == "line 1: not UTF-8 text (byte 0xff is byte 1 of the line)"


def test_a_file_with_no_items_names_no_line_0(tmp_path):
    with pytest.raises(DatasetFormatError) as raised:
        _read(tmp_path, b"\n\n")
    assert str(raised.value) == "1 bad line(s):\nthe file has no items"


def test_a_byte_order_mark_and_line_separators_inside_strings_keep_the_line_numbers(tmp_path):
    """Windows editors write a BOM; U+2028 is legal inside a JSON string and ends no line."""
    data = b"\xef\xbb\xbf" + _line("a") + _line("b", "one\u2028two") + b"{not json}\n"
    with pytest.raises(DatasetFormatError) as raised:
        _read(tmp_path, data)
    assert str(raised.value) == (
        "1 bad line(s):\nline 3: invalid JSON (Expecting property name enclosed in double quotes at column 2)"
    )
    lines = _read(tmp_path, data.rsplit(b"{not", 1)[0])
    assert [(x.line, x.id, x.item["text"]) for x in lines] == [
        (1, "a", "what colour is the circle?"),
        (2, "b", "one\u2028two"),
    ]


def _row(item_id: str, table: dict, **more) -> bytes:
    line = {"id": item_id, "label": "healthy", "tabular": table, "text": "fine", **more}
    return json.dumps(line).encode("utf-8") + b"\n"


PLANT = {"moisture": 41.0, "sun": 6.5, "temperature": 21.0, "spots": 0}


def test_table_rows_keep_the_first_rows_columns_and_numbers_named_by_line_and_column(tmp_path):
    """A row missing a column, with an extra one or with a non-number is refused at import
    (it failed only at precompute, in the adapter), naming its 1-based line and the column."""
    short = {k: v for k, v in PLANT.items() if k != "spots"}
    data = (
        _row("p1", PLANT)
        + b"\n"
        + _row("p2", short)
        + _row("p3", {**PLANT, "pot": 3})
        + _row("p4", {**PLANT, "spots": "many"})
        + _row("p5", {**PLANT, "sun": None})
        + _row("p6", PLANT)
    )
    with pytest.raises(DatasetFormatError) as raised:
        _read(tmp_path, data)
    assert [str(e) for e in raised.value.errors] == [
        "line 3: field 'tabular' lacks column 'spots' that line 1 has",
        "line 4: field 'tabular' has column 'pot' that line 1 lacks (every line must have the same columns)",
        "line 5: field 'tabular' column 'spots' must be a finite number, not \"many\"",
        "line 6: field 'tabular' column 'sun' must be a finite number, not null",
    ]


def test_an_inline_table_of_any_field_keeps_its_columns_and_its_numbers(tmp_path):
    """Not only ``tabular``: an object field (read by the adapter, not shown) is a table too; a
    column of numbers on the first line holds numbers on every line, text columns hold anything."""
    data = (
        _row("p1", PLANT, meta={"pot": 3, "room": "hall"})
        + _row("p2", PLANT, meta={"pot": "large", "room": "kitchen"})
        + _row("p3", PLANT, meta={"room": "hall"})
        + _row("p4", PLANT, meta="hall")
        + _row("p5", PLANT, meta={"pot": 2.5, "room": 7})
    )
    with pytest.raises(DatasetFormatError) as raised:
        _read(tmp_path, data)
    assert [str(e) for e in raised.value.errors] == [
        "line 2: field 'meta' column 'pot' is \"large\", not a number as on line 1",
        "line 3: field 'meta' lacks column 'pot' that line 1 has",
        "line 4: field 'meta' must be an object of columns, as on line 1",
    ]
    lines = _read(
        tmp_path, _row("p1", PLANT, meta={"pot": 3, "room": "hall"}) + _row("p5", PLANT, meta={"pot": 2.5, "room": 7})
    )
    assert [x.item["meta"] for x in lines] == [{"pot": 3, "room": "hall"}, {"pot": 2.5, "room": 7}]
