"""Reading and validating dataset JSONL files. No Django: the importer, the offline
``explain`` command and the demo all read data through here.

Format, one JSON object per line::

    {"id": "q1", "image": "images/q1.png", "text": "what colour is the square?", "label": "red"}

``id`` and ``label`` are required; ``choices`` and ``answer_type`` declare the valid answers
(below). Every other key is a modality. Values of file modalities
(see :data:`FILE_MODALITIES`, or any key ending in ``_file``) are paths relative to the JSONL
file; other modalities are inline JSON values (text, a list of numbers). Every line must
carry the same modalities. Blank lines are skipped. Three more kinds are checked and shown to
participants in their own way (:func:`modality_kind`): ``audio`` (a PCM WAV file),
``tabular`` (an object of feature names to finite numbers) and ``series`` (a list of at least
two finite numbers). An inline object (a table row) has the same columns on every line as on
the first, and a column of numbers there holds numbers on every line (:class:`TableShape`).

Images are checked for size from their header before any pixel is decoded: one above
``max_image_pixels`` (a decompression bomb, or just too big to show) is that line's error.

Valid answers (optional; :func:`read_dataset_jsonl`): a line may list the answers that make sense
for it, ``"choices": ["yes", "no"]``, or name its answer type, ``"answer_type": "colour"``, with
:data:`ANSWER_TYPES_FILE` beside the JSONL file mapping each type to its answers::

    {"colour": ["red", "green", "blue"], "shape": ["circle", "square"], "yes-no": ["yes", "no"]}

Bias annotations (optional, for the model report's bias section; docs/MODEL_REPORT.md, "Social
bias"): ``"group": "b"`` names the item's protected attribute (a non-blank string or an
integer), and ``"evidence"`` its evidence region, per modality: for an image, the patch cells of
the grid participants see around the picture (column letter, 1-based row, as the pages label
them: ``{"image": ["C4", "D4"]}``), or a mask image beside the JSONL file whose white pixels
mark the region (``{"image": "masks/b0.png"}``: stored as its coverage on a
:data:`MASK_GRID` × :data:`MASK_GRID` grid, :func:`mask_coverage`, and reduced to the model's own
patch cells by the report); for any other modality, 0-based positions of its shown groups (for a
text, its words: ``{"text": [4]}``). A rationale study's answers are written in
this same format, so they can be imported back as a dataset's evidence. Neither is ever shown
to participants.

Participants then choose only among an item's valid answers (plus the model's own answer,
whatever it is). Once one line declares its valid answers, every line must, and the gold
``label`` must be one of them. Whether the model knows each answer is checked later, when a
study pairs the dataset with a model.
"""

from __future__ import annotations

import base64
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
#: Keys that are no modality: the id, the gold label, the item's valid answers, and for the
#: model report's bias section the protected attribute and the evidence region.
RESERVED_KEYS = frozenset({"id", "label", "choices", "answer_type", "group", "evidence"})
#: A patch cell of the grid participants see around a picture: column letters, 1-based row.
_PATCH_CELL = re.compile(r"[A-Z]{1,2}[1-9][0-9]{0,2}")
_PATCH_CELL_PARTS = re.compile(r"([A-Z]{1,2})([1-9][0-9]{0,2})")
#: The most entries of one modality's evidence region.
EVIDENCE_MAX_ENTRIES = 10_000
#: A mask's coverage is kept on a square grid this fine (each cell the share of its pixels in
#: the mask, 0-255), fine enough for any patch grid a participant can read.
MASK_GRID = 64
#: The answer-type declaration, a JSON object beside the JSONL file (module doc).
ANSWER_TYPES_FILE = "answer_types.json"
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


def _answer_list(value: Any) -> tuple[str, ...] | None:
    """``value`` as a tuple of at least two different non-blank answers, or None."""
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        return None
    answers = tuple(v.strip() for v in value)
    return answers if len(answers) >= 2 and len(set(answers)) == len(answers) else None


def answer_types_read(path: Path) -> dict[str, tuple[str, ...]]:
    """The answer types declared in :data:`ANSWER_TYPES_FILE` at ``path`` (``{}`` when there is
    no such file). Raises :class:`DatasetFormatError` naming the file and the bad type."""
    path = Path(path)
    if not path.is_file():
        return {}
    name = path.name
    try:
        declared = json.loads(path.read_bytes().removeprefix(b"\xef\xbb\xbf").decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DatasetFormatError([LineError(0, f"{name}: not valid JSON ({exc})")]) from None
    if not isinstance(declared, dict) or not declared:
        raise DatasetFormatError([LineError(0, f"{name}: must be an object of answer types to lists of answers")])
    types: dict[str, tuple[str, ...]] = {}
    errors = []
    for answer_type, answers in declared.items():
        found = _answer_list(answers)
        if not answer_type.strip() or found is None:
            errors.append(LineError(0, f"{name}: answer type '{answer_type}' must list at least two different answers"))
        else:
            types[answer_type.strip()] = found
    if errors:
        raise DatasetFormatError(errors)
    return types


def answer_types_write(folder: Path, *, answer_types: dict[str, tuple[str, ...]]) -> Path:
    """Write the answer-type declaration :data:`ANSWER_TYPES_FILE` into ``folder`` (beside a
    JSONL file); returns its path."""
    path = Path(folder) / ANSWER_TYPES_FILE
    path.write_text(json.dumps({k: list(v) for k, v in answer_types.items()}, indent=2) + "\n", encoding="utf-8")
    return path


def _line_answers(
    obj: dict[str, Any], *, answer_types: dict[str, tuple[str, ...]], problems: list[str]
) -> tuple[tuple[str, ...], str]:
    """The valid answers and answer type a line declares (``((), "")`` for none); appends what
    is wrong with them to ``problems``."""
    has_choices, has_type = "choices" in obj, "answer_type" in obj
    if has_choices and has_type:
        problems.append("give 'choices' or 'answer_type', not both")
        return (), ""
    if has_choices:
        choices = _answer_list(obj["choices"])
        if choices is None:
            problems.append("field 'choices' must be a list of at least two different answers (strings)")
            return (), ""
        return choices, ""
    if has_type:
        answer_type = obj["answer_type"]
        if not isinstance(answer_type, str) or not answer_type.strip():
            problems.append("field 'answer_type' must name an answer type")
            return (), ""
        answer_type = answer_type.strip()
        if answer_type not in answer_types:
            declared = ", ".join(sorted(answer_types))
            problems.append(
                f"unknown answer type '{answer_type}' ({ANSWER_TYPES_FILE} declares {declared})"
                if declared
                else f"answer type '{answer_type}' is not declared: put an {ANSWER_TYPES_FILE} beside the "
                f"JSONL file that maps each answer type to its answers"
            )
            return (), ""
        return answer_types[answer_type], answer_type
    return (), ""


@dataclass(frozen=True)
class DatasetLine:
    """One valid line. ``item`` has file modalities resolved to absolute paths."""

    line: int
    item: dict[str, Any]
    #: The item's valid answers (its ``choices`` or its answer type's); empty: not declared.
    choices: tuple[str, ...] = ()
    answer_type: str = ""
    #: The protected attribute (``group``) and evidence region (``evidence``), None if absent.
    group: str | None = None
    evidence: dict[str, Any] | None = None

    @property
    def id(self) -> str:
        return self.item["id"]


def _line_group(obj: dict[str, Any], problems: list[str]) -> str | None:
    """The line's ``group`` as a string (None without one); appends what is wrong with it."""
    if "group" not in obj:
        return None
    value = obj["group"]
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if not isinstance(value, str) or not value.strip() or len(value.strip()) > 200:
        problems.append(
            f"field 'group' must be a non-blank string of at most 200 characters or an integer, not {_shown(value)}"
        )
        return None
    return value.strip()


def mask_coverage(path: Path) -> dict[str, Any]:
    """A mask image as an evidence region: its pixels above mid-grey are in the region; the
    share of each :data:`MASK_GRID`-grid cell inside it, stretched over the whole picture like
    the patch grid (``{"mask_grid": n, "coverage": base64 of n*n bytes, row-major, 255 = all
    inside}``). Raises ``ValueError`` for an unreadable or empty mask."""
    try:
        with Image.open(path) as img:
            pixels = img.convert("L").point(lambda v: 255 if v > 127 else 0)
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise ValueError(f"is not a readable image ({exc.__class__.__name__})") from None
    if not pixels.getbbox():
        raise ValueError("marks no pixel (a region's pixels are white on black)")
    shares = pixels.resize((MASK_GRID, MASK_GRID), Image.Resampling.BOX)  # the mean of each cell's pixels
    return {"mask_grid": MASK_GRID, "coverage": base64.b64encode(shares.tobytes()).decode("ascii")}


def cells_coverage(cells: list[str], grid: tuple[int, int]) -> dict[str, Any]:
    """Patch cells of a ``grid`` (columns, rows) drawn over a picture as a mask's coverage
    (:func:`mask_coverage`'s format): how a rationale study's marks, made on its own grid, reach
    a model whose patch grid differs (the report reduces the coverage to that grid by area)."""
    columns, rows = grid
    marked = bytearray(columns * rows)
    for cell in cells:
        found = _PATCH_CELL_PARTS.fullmatch(cell)
        if not found:
            raise ValueError(f"{cell!r} is no patch cell")
        column = 0
        for letter in found.group(1):
            column = column * 26 + (ord(letter) - ord("A") + 1)
        column, row = column - 1, int(found.group(2)) - 1
        if not (0 <= column < columns and 0 <= row < rows):
            raise ValueError(f"{cell!r} is outside the {columns} x {rows} grid")
        marked[row * columns + column] = 255
    shares = Image.frombytes("L", (columns, rows), bytes(marked)).resize((MASK_GRID, MASK_GRID), Image.Resampling.BOX)
    return {"mask_grid": MASK_GRID, "coverage": base64.b64encode(shares.tobytes()).decode("ascii")}


def _coverage_problem(value: dict[str, Any]) -> str | None:
    """What is wrong with a coverage region written by an export (None if nothing)."""
    if set(value) != {"mask_grid", "coverage"} or value["mask_grid"] != MASK_GRID:
        return f'a mask\'s coverage must be {{"mask_grid": {MASK_GRID}, "coverage": base64 text}}'
    try:
        shares = base64.b64decode(str(value["coverage"]), validate=True)
    except ValueError:
        return "the mask's coverage is not base64 text"
    if len(shares) != MASK_GRID * MASK_GRID:
        return f"the mask's coverage must hold {MASK_GRID * MASK_GRID} bytes, not {len(shares)}"
    if not any(shares):
        return "the mask's coverage marks nothing"
    return None


def _line_evidence(
    obj: dict[str, Any],
    modalities: tuple[str, ...],
    problems: list[str],
    *,
    base: Path | None = None,
    confine: Path | None = None,
    max_image_pixels: int = IMAGE_MAX_PIXELS,
) -> dict[str, Any] | None:
    """The line's ``evidence`` region (None without one); appends what is wrong with it. A mask
    image is read relative to ``base``, the JSONL file's folder (without one, it is refused)."""
    if "evidence" not in obj:
        return None
    value = obj["evidence"]
    form = 'an object of modalities to lists, e.g. {"image": ["C4", "D4"]} or {"text": [0, 3]} (or a mask image\'s path for an image)'
    if not isinstance(value, dict) or not value:
        problems.append(f"field 'evidence' must be {form}")
        return None
    region: dict[str, Any] = {}
    for modality, entries in value.items():
        if modality not in modalities:
            problems.append(
                f"field 'evidence' names '{modality}', which is no modality of the line ({', '.join(modalities)})"
            )
            continue
        if modality_kind(modality) == "image" and isinstance(entries, dict):  # as the exports write a mask
            if problem := _coverage_problem(entries):
                problems.append(f"field 'evidence' for '{modality}': {problem}")
            else:
                region[modality] = {"mask_grid": MASK_GRID, "coverage": str(entries["coverage"])}
            continue
        if modality_kind(modality) == "image" and isinstance(entries, str) and entries:
            mask_path = (base / entries).resolve() if base is not None else None
            if mask_path is None:
                problems.append(
                    f"field 'evidence' for '{modality}': a mask image is read only with a dataset's JSONL file"
                )
            elif confine is not None and not mask_path.is_relative_to(confine):
                problems.append(
                    f"field 'evidence' for '{modality}': mask '{entries}' points outside the uploaded files"
                )
            elif problem := _check_file(mask_path, "image", max_image_pixels=max_image_pixels):
                problems.append(f"field 'evidence' for '{modality}': mask {problem.removeprefix('image ')}")
            else:
                try:
                    region[modality] = mask_coverage(mask_path)
                except ValueError as exc:
                    problems.append(f"field 'evidence' for '{modality}': mask '{entries}' {exc}")
            continue
        if not isinstance(entries, list) or not entries or len(entries) > EVIDENCE_MAX_ENTRIES:
            problems.append(
                f"field 'evidence' for '{modality}' must be a non-empty list (at most {EVIDENCE_MAX_ENTRIES:,} entries)"
            )
            continue
        if modality_kind(modality) == "image":
            bad = next((e for e in entries if not isinstance(e, str) or not _PATCH_CELL.fullmatch(e)), None)
            if bad is not None:
                problems.append(
                    f"field 'evidence' for '{modality}': {_shown(bad)} is no patch cell (column letter then row, e.g. \"C4\")"
                )
                continue
        else:
            bad = next((e for e in entries if isinstance(e, bool) or not isinstance(e, int) or e < 0), None)
            if bad is not None:
                problems.append(
                    f"field 'evidence' for '{modality}': {_shown(bad)} is no position (a whole number >= 0, e.g. a word's index)"
                )
                continue
        region[modality] = list(dict.fromkeys(entries))
    return region


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
    the first row's (:class:`TableShape`), valid answers that are malformed, of an unknown
    answer type, without the gold label, or missing while other lines declare theirs).
    Answer types are read from :data:`ANSWER_TYPES_FILE` beside ``path`` (module doc).

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
    answer_types = answer_types_read(base / ANSWER_TYPES_FILE)
    declared_on: list[int] = []  # lines that declare their valid answers
    undeclared_on: list[int] = []

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
        choices, answer_type = _line_answers(obj, answer_types=answer_types, problems=problems)
        if choices and "label" in item and item["label"] not in choices:
            problems.append(f"label '{item['label']}' is not among the item's valid answers ({', '.join(choices)})")
        (declared_on if ("choices" in obj or "answer_type" in obj) else undeclared_on).append(number)
        group = _line_group(obj, problems)
        evidence = _line_evidence(
            obj, line_modalities, problems, base=base, confine=confine, max_image_pixels=max_image_pixels
        )

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
            lines.append(
                DatasetLine(
                    line=number, item=item, choices=choices, answer_type=answer_type, group=group, evidence=evidence
                )
            )

    if declared_on and undeclared_on:
        errors.extend(
            LineError(
                n,
                f"no 'choices' or 'answer_type' (line {declared_on[0]} declares its valid answers, so every line must)",
            )
            for n in undeclared_on
        )
        errors.sort(key=lambda e: e.line)
    if answer_types and not any(line.answer_type for line in lines) and not errors:
        errors.append(
            LineError(0, f"{ANSWER_TYPES_FILE} declares answer types, but no line names one in 'answer_type'")
        )
    if not lines and not errors:
        errors.append(LineError(0, "the file has no items"))
    if errors:
        raise DatasetFormatError(errors)
    return lines
