"""Reading and validating dataset JSONL files. No Django: the importer, the offline
``explain`` command and the demo all read data through here.

Format, one JSON object per line::

    {"id": "q1", "image": "images/q1.png", "text": "what colour is the square?", "label": "red"}

``id`` and ``label`` are required. Every other key is a modality. Values of file modalities
(see :data:`FILE_MODALITIES`, or any key ending in ``_file``) are paths relative to the JSONL
file; other modalities are inline JSON values (text, a list of numbers). Every line must
carry the same modalities. Blank lines are skipped. Three more kinds are checked and shown to
participants in their own way (:func:`modality_kind`): ``audio`` (a PCM WAV file),
``tabular`` (an object of feature names to finite numbers) and ``series`` (a list of at least
two finite numbers). An inline object (a table row) has the same columns on every line as on
the first, and a column of numbers there holds numbers on every line (:class:`TableShape`).

Images are checked for size from their header before any pixel is decoded: one above
``max_image_pixels`` (a decompression bomb, or just too big to show) is that line's error.
"""

from __future__ import annotations

import json
import math
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image, UnidentifiedImageError

FILE_MODALITIES = frozenset({"image", "audio", "video", "spectrogram"})
IMAGE_MODALITIES = frozenset({"image"})
#: Modalities with their own participant view (render_modalities.py): a WAV file, an inline
#: ``{"feature name": number}`` object, an inline list of numbers.
AUDIO_MODALITIES = frozenset({"audio"})
TABULAR_MODALITIES = frozenset({"tabular"})
SERIES_MODALITIES = frozenset({"series"})
#: The participant view that shows each of these modality kinds (presentation_modalities.py),
#: in the order a page shows them.
MODALITY_VIEW_OF_KIND = {"tabular": "table", "series": "series", "audio": "audio"}
RESERVED_KEYS = frozenset({"id", "label"})
# 40 megapixels: far above what a participant's screen shows, and a decoded RGB copy
# (about 120 MB) still fits a web worker's memory.
IMAGE_MAX_PIXELS = 40_000_000


def is_file_modality(name: str) -> bool:
    return name in FILE_MODALITIES or name.endswith("_file")


def modality_kind(name: str) -> str:
    """How a participant is shown modality ``name``: ``"image"``, ``"audio"``, ``"tabular"``,
    ``"series"``, ``"file"`` (another file modality, not shown) or ``"text"``."""
    for kind, names in (
        ("image", IMAGE_MODALITIES),
        ("audio", AUDIO_MODALITIES),
        ("tabular", TABULAR_MODALITIES),
        ("series", SERIES_MODALITIES),
    ):
        if name in names:
            return kind
    return "file" if is_file_modality(name) else "text"


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _shown(value: Any, *, limit: int = 40) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _check_inline(value: Any, modality: str) -> str | None:
    """The problem with an inline tabular or series value, or None."""
    kind = modality_kind(modality)
    if kind == "tabular":
        if not (isinstance(value, dict) and value and all(isinstance(k, str) and k for k in value)):
            return f"field '{modality}' must be an object of feature names to finite numbers"
        bad = next((k for k, v in value.items() if not _number(v)), None)
        if bad is not None:
            return f"field '{modality}' column '{bad}' must be a finite number, not {_shown(value[bad])}"
    if kind == "series" and not (isinstance(value, list) and len(value) >= 2 and all(_number(v) for v in value)):
        return f"field '{modality}' must be a list of at least two finite numbers"
    return None


@dataclass(frozen=True)
class TableShape:
    """The columns of an inline table (a JSON object value) on the first line that has one,
    and which of them hold numbers: every later line must have the same (a row missing a
    column otherwise fails only at precompute, in the adapter)."""

    line: int
    numeric: dict[str, bool]

    @classmethod
    def of(cls, value: dict[str, Any], *, line: int) -> TableShape:
        return cls(line=line, numeric={column: _number(v) for column, v in value.items()})

    def problems(self, value: Any, modality: str) -> list[str]:
        """What differs in ``value`` (the same field on a later line) from this shape."""
        if not isinstance(value, dict):
            return [f"field '{modality}' must be an object of columns, as on line {self.line}"]
        out: list[str] = []
        missing = [column for column in self.numeric if column not in value]
        extra = [column for column in value if column not in self.numeric]
        if missing:
            out.append(f"field '{modality}' lacks column {_columns(missing)} that line {self.line} has")
        if extra:
            out.append(
                f"field '{modality}' has column {_columns(extra)} that line {self.line} lacks "
                "(every line must have the same columns)"
            )
        out.extend(
            f"field '{modality}' column '{column}' is {_shown(value[column])}, not a number as on line {self.line}"
            for column, numeric in self.numeric.items()
            if numeric and column in value and not _number(value[column])
        )
        return out


def _columns(names: list[str]) -> str:
    return ", ".join(f"'{name}'" for name in names)


@dataclass(frozen=True)
class LineError:
    line: int
    message: str

    def __str__(self) -> str:
        # Line numbers are 1-based; 0 marks a problem with the whole file.
        return f"line {self.line}: {self.message}" if self.line else self.message


class DatasetFormatError(ValueError):
    """Raised with every bad line of a file, so one run shows all problems."""

    def __init__(self, errors: list[LineError]):
        self.errors = errors
        shown = "\n".join(str(e) for e in errors[:50])
        more = f"\n… and {len(errors) - 50} more" if len(errors) > 50 else ""
        super().__init__(f"{len(errors)} bad line(s):\n{shown}{more}")


@dataclass(frozen=True)
class DatasetLine:
    """One valid line. ``item`` has file modalities resolved to absolute paths."""

    line: int
    item: dict[str, Any]

    @property
    def id(self) -> str:
        return self.item["id"]


def _check_file(path: Path, modality: str, *, max_image_pixels: int) -> str | None:
    if not path.is_file():
        return f"{modality} file '{path}' not found"
    if modality in IMAGE_MODALITIES:
        try:
            with warnings.catch_warnings():
                # Pillow warns, then refuses, above its own limit; ours is checked just below.
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                with Image.open(path) as img:  # reads the header only
                    width, height = img.size
                    if width * height > max_image_pixels:
                        return _too_many_pixels(
                            path, modality, f"{width * height:,} pixels ({width}x{height})", max_image_pixels
                        )
                    img.verify()
                with Image.open(path) as img:
                    img.load()  # verify() checks chunks only; load() decodes the pixels
        except Image.DecompressionBombError as exc:
            # Above twice Pillow's limit the header is refused before its size is known to us.
            counted = re.search(r"\((\d+) pixels\)", str(exc))
            pixels = f"{int(counted.group(1)):,} pixels" if counted else "too many pixels"
            return _too_many_pixels(path, modality, pixels, min(max_image_pixels, 2 * (Image.MAX_IMAGE_PIXELS or 0)))
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
            return f"{modality} file '{path}' is not a readable image ({exc.__class__.__name__})"
    if modality in AUDIO_MODALITIES:
        from workers.engine.audio import wav_read

        try:
            wav_read(path)
        except ValueError as exc:
            return f"{modality} file '{path}' is not a readable WAV file ({exc})"
    return None


def _too_many_pixels(path: Path, modality: str, pixels: str, limit: int) -> str:
    return f"{modality} file '{path}' has {pixels}, more than the limit of {limit:,} pixels"


def read_dataset_jsonl(
    path: Path, *, files_within: Path | None = None, max_image_pixels: int = IMAGE_MAX_PIXELS
) -> list[DatasetLine]:
    """Parse and validate a dataset file; raise :class:`DatasetFormatError` listing every bad
    line (bad JSON, missing field, missing or unreadable file, duplicate id, an image with
    more than ``max_image_pixels`` pixels, a table row whose columns or numbers differ from
    the first row's: :class:`TableShape`).

    ``files_within`` confines file paths to one folder (an upload's extraction directory),
    so an uploaded file cannot name files elsewhere on the server."""
    path = Path(path)
    confine = Path(files_within).resolve() if files_within is not None else None
    base = path.parent
    errors: list[LineError] = []
    lines: list[DatasetLine] = []
    first_line_of_id: dict[str, int] = {}
    modalities: tuple[str, ...] | None = None
    tables: dict[str, TableShape] = {}  # inline object fields: the first line's columns

    data = path.read_bytes().removeprefix(b"\xef\xbb\xbf")  # a UTF-8 byte order mark (Windows editors)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1  # 1-based, like every other line number
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        raise DatasetFormatError(
            [LineError(line, f"not UTF-8 text (byte 0x{data[exc.start]:02x} is byte {column} of the line)")]
        ) from None

    # split("\n"), not splitlines(): JSON strings may hold U+2028 and friends, which are no line ends.
    for number, raw in enumerate(text.split("\n"), start=1):
        if not raw.strip():
            continue
        try:
            obj = json.loads(raw)
        except json.JSONDecodeError as exc:
            errors.append(LineError(number, f"invalid JSON ({exc.msg} at column {exc.colno})"))
            continue
        if not isinstance(obj, dict):
            errors.append(LineError(number, "not a JSON object"))
            continue

        problems: list[str] = []
        for key in ("id", "label"):
            value = obj.get(key)
            if value is None or (isinstance(value, str) and not value.strip()):
                problems.append(f"missing field '{key}'")
        line_modalities = tuple(sorted(k for k in obj if k not in RESERVED_KEYS))
        if not line_modalities:
            problems.append("no modality fields (e.g. 'image', 'text')")
        if modalities is None and line_modalities:
            modalities = line_modalities
        elif line_modalities and line_modalities != modalities:
            missing = sorted(set(modalities or ()) - set(line_modalities))
            extra = sorted(set(line_modalities) - set(modalities or ()))
            if missing:
                problems.append("missing field " + ", ".join(f"'{m}'" for m in missing))
            if extra:
                problems.append(
                    "unexpected field "
                    + ", ".join(f"'{m}'" for m in extra)
                    + " (every line must have the same modalities)"
                )

        item: dict[str, Any] = {}
        if "id" in obj and obj["id"] is not None:
            item_id = str(obj["id"])
            item["id"] = item_id
            if item_id in first_line_of_id:
                problems.append(f"duplicate id '{item_id}' (first on line {first_line_of_id[item_id]})")
            else:
                first_line_of_id[item_id] = number
        if obj.get("label") is not None:
            item["label"] = str(obj["label"])

        for modality in line_modalities:
            value = obj[modality]
            if is_file_modality(modality):
                if not isinstance(value, str) or not value:
                    problems.append(f"field '{modality}' must be a file path")
                    continue
                file_path = (base / value).resolve()
                if confine is not None and not file_path.is_relative_to(confine):
                    problems.append(f"{modality} path '{value}' points outside the uploaded files")
                    continue
                problem = _check_file(file_path, modality, max_image_pixels=max_image_pixels)
                if problem:
                    problems.append(problem)
                item[modality] = str(file_path)
            else:
                if value is None or value == "":
                    problems.append(f"missing field '{modality}'")
                elif problem := _check_inline(value, modality):
                    problems.append(problem)
                elif modality in tables:
                    problems.extend(tables[modality].problems(value, modality))
                elif isinstance(value, dict):
                    tables[modality] = TableShape.of(value, line=number)
                item[modality] = value

        if problems:
            errors.extend(LineError(number, p) for p in problems)
        else:
            lines.append(DatasetLine(line=number, item=item))

    if not lines and not errors:
        errors.append(LineError(0, "the file has no items"))
    if errors:
        raise DatasetFormatError(errors)
    return lines
