"""The units a participant can mark in a rationale study, and the check of what they marked (no
Django, no torch). The units use the dataset's ``evidence`` format (workers/engine/dataset.py),
so an aggregated rationale imports back as evidence unchanged:

* an image: the cells of a grid of :data:`RATIONALE_GRID` columns × rows over the picture, named
  column letter then 1-based row (``"C4"``), as the model report names patches; numbered row by
  row (``"A1"`` = 0, ``"B1"`` = 1, …) for the statistics;
* a text: its words and single punctuation marks (:data:`WORD_RE`, the demo model's tokens), by
  0-based position;
* a table: its rows (features) in name order, as the page lists them, by 0-based position.

Other modalities (audio, series, files) have no units to mark.
"""

from __future__ import annotations

import json
import re
from typing import Any

from workers.engine.dataset import modality_kind

#: Columns × rows of the grid drawn over a picture (the demo model's 8 × 8 patches of 8 pixels).
RATIONALE_GRID = (8, 8)
#: A word or a single punctuation mark.
WORD_RE = re.compile(r"\w+|[^\w\s]")
#: The most units one answer may mark, and the longest answer body read.
MAX_MARKED_UNITS = 2_000
MAX_ANSWER_CHARS = 50_000
MARKABLE_KINDS = ("image", "text", "tabular")


def column_name(index: int) -> str:
    """Spreadsheet column letters for a 0-based index: A … Z, AA, AB, …"""
    name = ""
    index += 1
    while index:
        index, rest = divmod(index - 1, 26)
        name = chr(ord("A") + rest) + name
    return name


def grid_cells(grid: tuple[int, int] = RATIONALE_GRID) -> list[str]:
    """The cell names of a ``(columns, rows)`` grid, row by row."""
    columns, rows = grid
    return [f"{column_name(c)}{r + 1}" for r in range(rows) for c in range(columns)]


def rationale_layout(
    modalities: list[str] | tuple[str, ...], payload: dict[str, Any], *, grid: tuple[int, int] = RATIONALE_GRID
) -> dict[str, list[str]]:
    """Per markable modality of an item, the names of its units in unit order (cell names, the
    words, the table's feature names). A modality with nothing to mark is left out."""
    layout: dict[str, list[str]] = {}
    for modality in modalities:
        kind, value = modality_kind(modality), payload.get(modality)
        if kind == "image" and value:
            layout[modality] = grid_cells(grid)
        elif kind == "text" and isinstance(value, str) and WORD_RE.search(value):
            layout[modality] = WORD_RE.findall(value)
        elif kind == "tabular" and isinstance(value, dict) and value:
            layout[modality] = [str(name) for name in sorted(value)]
    return layout


class MarksError(ValueError):
    """What is wrong with an answer's marks, in words for the participant."""


def marks_from_form(values: list[str], layout: dict[str, list[str]]) -> dict[str, list]:
    """The page's ticked boxes (``"image:C4"``, ``"text:2"``) -> modality -> units (positions as
    ints), for :func:`rationale_marks_parse` to check."""
    raw: dict[str, list] = {}
    if len(values) > MAX_MARKED_UNITS:
        raise MarksError(f"at most {MAX_MARKED_UNITS:,} parts can be marked")
    for value in values:
        modality, sep, unit = str(value).rpartition(":")
        if not sep or modality not in layout:
            raise MarksError(f"{str(value)[:40]!r} is no part of this item that can be marked")
        if modality_kind(modality) != "image":
            if not unit.isdigit():
                raise MarksError(f"{unit[:20]!r} is no position on '{modality}'")
            unit = int(unit)
        raw.setdefault(modality, []).append(unit)
    return raw


def rationale_marks_parse(raw: Any, layout: dict[str, list[str]]) -> dict[str, list]:
    """An answer's marks checked against the item's ``layout``: a JSON object (or a dict) of
    modality -> list of units (cell names for an image, 0-based positions otherwise), or the
    page's list of ticked boxes (:func:`marks_from_form`). Returns
    the marks in the evidence format, each list in unit order, modalities with no mark left out.
    Raises :class:`MarksError` on anything else: not an object, an unknown modality, a unit out
    of range or repeated, more than :data:`MAX_MARKED_UNITS` units, or no unit at all."""
    if isinstance(raw, (list, tuple)):
        raw = marks_from_form(list(raw), layout)
    elif isinstance(raw, str):
        if len(raw) > MAX_ANSWER_CHARS:
            raise MarksError("the marked evidence is too long")
        try:
            raw = json.loads(raw) if raw.strip() else {}
        except ValueError:
            raise MarksError("the marked evidence could not be read (not JSON)") from None
    if not isinstance(raw, dict):
        raise MarksError('the marked evidence must be an object such as {"image": ["C4"], "text": [2]}')
    marks: dict[str, list] = {}
    total = 0
    for modality, units in raw.items():
        if modality not in layout:
            raise MarksError(f"'{str(modality)[:40]}' is no part of this item that can be marked")
        if not isinstance(units, list):
            raise MarksError(f"the marks on '{modality}' must be a list")
        total += len(units)
        if total > MAX_MARKED_UNITS:
            raise MarksError(f"at most {MAX_MARKED_UNITS:,} parts can be marked")
        names = layout[modality]
        if modality_kind(modality) == "image":
            index = {name: k for k, name in enumerate(names)}
            bad = next((u for u in units if not isinstance(u, str) or u not in index), None)
            if bad is not None:
                raise MarksError(f"{str(bad)[:20]!r} is no cell of the grid on '{modality}' (A1 to {names[-1]})")
            positions = [index[u] for u in units]
        else:
            bad = next(
                (u for u in units if isinstance(u, bool) or not isinstance(u, int) or not 0 <= u < len(names)), None
            )
            if bad is not None:
                raise MarksError(f"{str(bad)[:20]!r} is no position on '{modality}' (0 to {len(names) - 1})")
            positions = list(units)
        if len(set(positions)) != len(positions):
            raise MarksError(f"a part of '{modality}' is marked twice")
        if positions:
            marks[modality] = [names[k] if modality_kind(modality) == "image" else k for k in sorted(positions)]
    if not marks:
        raise MarksError("please mark at least one part of the input as evidence")
    return marks


def unit_positions(modality: str, units: list, layout_names: list[str]) -> list[int]:
    """Stored units of one modality -> 0-based unit numbers (cell names by :func:`grid_cells`
    order; positions as they are)."""
    if modality_kind(modality) == "image":
        index = {name: k for k, name in enumerate(layout_names)}
        return [index[u] for u in units]
    return [int(u) for u in units]
