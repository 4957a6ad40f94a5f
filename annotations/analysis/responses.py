"""The response table: CSV parsing and the canonical form every statistic works on.

One row per response. Columns (the CSV export has exactly these, plus optional extras):

==================  =========================================================================
``study``           study identifier
``condition``       arm name (the baseline arm is named by the caller)
``participant``     participant identifier (unique within a study)
``item``            item identifier
``model_prediction``  the model's answer for the item
``gold_label``      the dataset's answer for the item
``guess``           the participant's prediction of the model's answer
``correct_simulation``  bool, ``guess == model_prediction``
``confidence``      int 1–5 (may be missing outside the test phase)
``rt_ms``           response time in milliseconds
``created_at``      timestamp of the response
``phase``           ``"test"``, ``"pretest"`` or ``"learning"``
``excluded``        optional bool, pre-registered (participant-level) exclusion flag
``is_attention_check``  optional bool: the row answers an attention check. Such rows are
                    recoded to phase ``"attention"`` by :func:`responses_prepare`, so no
                    simulation statistic uses them (they feed the exclusion rules only).
``attention_passed``    optional bool, attention-check rows only
``screened_out``    optional bool, participant-level
``verdict``         optional bool, verification studies: the participant said the model's answer
                    is right (empty in forward simulation; ``correct_simulation`` is empty
                    there instead); read by :mod:`.verification`
``edit_kind``, ``edit_prediction``  optional, counterfactual studies: the kind of edit shown and the
                    model's answer on the edited input (``correct_simulation`` is empty there);
                    read by :mod:`.counterfactual`
``candidate_order``  optional: the candidate answers in the order shown, a JSON list (a Python
                    list is accepted too); its length is the ``k`` of the calibration forecast
==================  =========================================================================

The service's export has further columns (arm details, hashed platform IDs, ``exclusion_reasons``
…); they are kept as strings and ignored by the statistics.

Reproducibility rule: every statistic first passes its input through :func:`responses_prepare`,
which turns identifiers and labels into strings (``str(value)``), ``correct_simulation`` and
``excluded`` into bools and ``confidence``/``rt_ms`` into float64. Everything downstream sorts by
those strings and sums 0/1 integers, so the numbers do not depend on row order or on whether the
frame came from the service (ints, numpy bools, tz-aware timestamps) or from
:func:`load_responses_csv` (strings, nullable dtypes).
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import IO, Final

import numpy as np
import pandas as pd

__all__ = [
    "ID_COLUMNS",
    "LABEL_COLUMNS",
    "PHASES",
    "REQUIRED_COLUMNS",
    "load_responses_csv",
    "responses_prepare",
]

ID_COLUMNS: Final = ("study", "condition", "participant", "item")
LABEL_COLUMNS: Final = ("model_prediction", "gold_label", "guess")
PHASES: Final = ("test", "pretest", "learning", "attention")
REQUIRED_COLUMNS: Final = (
    *ID_COLUMNS,
    *LABEL_COLUMNS,
    "correct_simulation",
    "confidence",
    "rt_ms",
    "phase",
)
BOOL_EXTRA_COLUMNS: Final = (
    "is_attention_check",
    "attention_passed",
    "screened_out",
    "verdict",
    "verdict_correct",
    "correct_counterfactual",
)
_TRUE: Final = frozenset({"true", "t", "1", "yes", "y", "1.0"})
_FALSE: Final = frozenset({"false", "f", "0", "no", "n", "0.0"})


def _parse_bool(values: pd.Series, *, column: str) -> pd.Series:
    """Strings such as ``True``/``false``/``1`` → bool (``boolean`` dtype if any cell is empty)."""
    lowered = values.str.strip().str.lower()
    out = pd.Series(pd.NA, index=values.index, dtype="boolean")
    out[lowered.isin(_TRUE)] = True
    out[lowered.isin(_FALSE)] = False
    bad = values.notna() & ~lowered.isin(_TRUE | _FALSE)
    if bad.any():
        example = values[bad].iloc[0]
        raise ValueError(f"column {column!r}: {int(bad.sum())} cells are not booleans, e.g. {example!r}")
    return out.astype(bool) if out.notna().all() else out


def _parse_number(values: pd.Series, *, column: str, integer: bool) -> pd.Series:
    """Numeric text → ``Int64`` when every value is integral, else float64."""
    try:
        numbers = pd.to_numeric(values, errors="raise")
    except (ValueError, TypeError) as error:
        raise ValueError(f"column {column!r}: {error}") from error
    numbers = numbers.astype("float64")
    finite = numbers.dropna()
    if (finite == np.round(finite)).all():
        return numbers.astype("Int64")
    if integer:
        raise ValueError(f"column {column!r} must hold integers")
    return numbers


def load_responses_csv(path_or_buffer: str | os.PathLike[str] | IO[str] | IO[bytes]) -> pd.DataFrame:
    """Parse a response export (see the module docstring for the columns) with explicit dtypes.

    Parsing rules, chosen so that ``analyze(df)`` and ``analyze(load_responses_csv(...))`` agree
    exactly:

    * Only an empty cell is missing. ``"NA"``, ``"None"``, ``"null"`` and ``"nan"`` are kept as
      strings, since they can be real class labels (VQA has the answer ``"none"``).
    * Identifier, label and ``phase`` columns are strings (pandas ``str`` dtype); no identifier is
      ever converted to a number (``"007"`` stays ``"007"``).
    * ``correct_simulation``, ``excluded``, ``is_attention_check``, ``attention_passed`` and
      ``screened_out`` accept ``True/False``, ``true/false``, ``1/0``,
      ``yes/no``; bool dtype, or nullable ``boolean`` if a cell is empty.
    * ``confidence`` is ``Int64`` (nullable: learning-phase rows may have none); ``rt_ms`` is
      ``Int64`` when every value is integral, else float64.
    * ``created_at`` is parsed as ISO 8601 and converted to UTC (``datetime64[ns, UTC]``).
    * A leading unnamed column (the index written by ``DataFrame.to_csv()`` with its default
      ``index=True``) is dropped. Other extra columns are kept as strings.
    """
    frame = pd.read_csv(
        path_or_buffer,
        dtype=str,
        keep_default_na=False,
        na_values=[""],
    )
    first = frame.columns[0] if len(frame.columns) else None
    if isinstance(first, str) and (first == "" or first.startswith("Unnamed: 0")):
        frame = frame.drop(columns=first)
    missing = [column for column in REQUIRED_COLUMNS if column not in frame.columns]
    if missing:
        raise ValueError(f"response CSV lacks columns {missing}")
    for column in ("correct_simulation", "excluded", *BOOL_EXTRA_COLUMNS):
        if column in frame.columns:
            frame[column] = _parse_bool(frame[column], column=column)
    frame["confidence"] = _parse_number(frame["confidence"], column="confidence", integer=True)
    frame["rt_ms"] = _parse_number(frame["rt_ms"], column="rt_ms", integer=False)
    if "created_at" in frame.columns:
        frame["created_at"] = pd.to_datetime(frame["created_at"], utc=True, format="ISO8601")
    return frame


def _as_key(values: pd.Series) -> pd.Series:
    """Identifier/label column → pandas ``str`` dtype with NaN for missing (``str(value)`` else)."""
    if isinstance(values.dtype, pd.StringDtype):
        return values.astype("str")
    if values.dtype == object:
        mask = values.isna()
        out = values.astype(object).where(~mask, None)
        out = out.map(lambda value: value if value is None or isinstance(value, str) else str(value))
        return out.astype("str")
    return values.astype("str")


def _as_bool(values: pd.Series, *, column: str, missing: bool | None) -> pd.Series:
    """Bool-like column → numpy bool (missing cells → ``missing``; ``None`` keeps them as NA)."""
    if values.dtype == bool:
        return values
    if values.dtype == object or isinstance(values.dtype, pd.StringDtype):
        non_null = values.dropna()
        if len(non_null) and all(isinstance(value, str) for value in non_null):
            values = _parse_bool(values.astype("str"), column=column)
    as_boolean = values.astype("boolean")
    if missing is None:
        return as_boolean
    return as_boolean.fillna(missing).astype(bool)


def _candidate_count(value: object) -> float:
    if value is None or (isinstance(value, float) and np.isnan(value)) or value is pd.NA:
        return np.nan
    if isinstance(value, str):
        if not value.strip():
            return np.nan
        try:
            value = json.loads(value)
        except ValueError:
            raise ValueError(f"column 'candidate_order': not a JSON list: {value[:80]!r}") from None
    if not isinstance(value, (list, tuple, np.ndarray)):
        raise ValueError(f"column 'candidate_order': not a list: {value!r}")
    return float(len(value)) if len(value) else np.nan


def _candidate_counts(values: pd.Series) -> np.ndarray:
    """``candidate_order`` cells → their lengths (float64, NaN if unknown); each distinct cell is
    parsed once."""
    if not len(values):
        return np.zeros(0, dtype=np.float64)
    if values.map(lambda v: isinstance(v, (list, tuple, np.ndarray))).any():
        return np.array([_candidate_count(value) for value in values], dtype=np.float64)
    codes, uniques = pd.factorize(values, use_na_sentinel=True)
    lengths = np.array([_candidate_count(value) for value in uniques] + [np.nan], dtype=np.float64)
    return lengths[codes]  # code -1 (missing) picks the trailing NaN


def responses_prepare(df: pd.DataFrame) -> pd.DataFrame:
    """Return the canonical copy of a response frame that all statistics use.

    * Identifiers (``study``, ``condition``, ``participant``, ``item``), labels
      (``model_prediction``, ``gold_label``, ``guess``) and ``phase`` → ``str(value)`` (missing stays
      missing).
    * ``correct_simulation`` → nullable ``boolean`` (missing means no usable answer; such test rows
      are left out of accuracy and counted).
    * ``confidence``, ``rt_ms`` → float64 with NaN for missing.
    * ``excluded`` → bool; an absent column or an empty cell means "not excluded".
    * ``model_correct`` (added) → ``model_prediction == gold_label``.
    * Rows with a true ``is_attention_check`` (optional column) get phase ``"attention"``.
    * ``n_candidates`` (added) → float64, the length of ``candidate_order`` (optional column, a
      JSON list); NaN where the column is absent, the cell empty or the list empty.

    Raises ``ValueError`` on missing columns, on confidence outside 1–5, on a ``candidate_order``
    cell that is not a list, and on an empty or missing participant/item/condition.
    """
    missing = [column for column in REQUIRED_COLUMNS if column not in df.columns]
    if missing:
        raise ValueError(f"response frame lacks columns {missing}")
    # the columns are gathered first and framed once: a frame grown column by column costs more
    # than everything else here
    out: dict[str, pd.Series | np.ndarray] = {
        column: _as_key(df[column].reset_index(drop=True)) for column in (*ID_COLUMNS, *LABEL_COLUMNS, "phase")
    }
    for column in ("condition", "participant", "item", "phase"):
        if out[column].isna().any():
            raise ValueError(f"column {column!r} has missing values")
    if "is_attention_check" in df.columns:
        attention = _as_bool(
            df["is_attention_check"].reset_index(drop=True), column="is_attention_check", missing=False
        ).to_numpy(dtype=bool)
        if attention.any():
            out["phase"] = out["phase"].where(~attention, "attention")
    out["correct_simulation"] = _as_bool(
        df["correct_simulation"].reset_index(drop=True), column="correct_simulation", missing=None
    )
    confidence = pd.to_numeric(df["confidence"].reset_index(drop=True)).astype("float64")
    conf = confidence.dropna()
    if len(conf) and (~conf.isin([1.0, 2.0, 3.0, 4.0, 5.0])).any():
        raise ValueError("confidence must be an integer from 1 to 5")
    out["confidence"] = confidence
    out["rt_ms"] = pd.to_numeric(df["rt_ms"].reset_index(drop=True)).astype("float64")
    if "excluded" in df.columns:
        out["excluded"] = _as_bool(df["excluded"].reset_index(drop=True), column="excluded", missing=False)
    else:
        out["excluded"] = np.zeros(len(df), dtype=bool)
    if "candidate_order" in df.columns:
        out["n_candidates"] = _candidate_counts(df["candidate_order"].reset_index(drop=True))
    else:
        out["n_candidates"] = np.full(len(df), np.nan)
    model = out["model_prediction"].to_numpy(dtype=object)
    gold = out["gold_label"].to_numpy(dtype=object)
    out["model_correct"] = out["model_prediction"].notna() & out["gold_label"].notna() & (model == gold)
    return pd.DataFrame(out, index=pd.RangeIndex(len(df)))


def sorted_codes(values: pd.Series | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(uniques, codes)`` with ``uniques`` sorted ascending and ``uniques[codes] == values`` (no missing values)."""
    codes, uniques = pd.factorize(pd.Series(values, copy=False), sort=True)
    if (codes < 0).any():
        raise ValueError("missing value among identifiers")
    return np.asarray(uniques, dtype=object), codes.astype(np.int64)


def stable_stream_key(name: str) -> int:
    """A 64-bit integer derived from ``name`` (SHA-256), used to give each arm its own RNG stream."""
    return int.from_bytes(hashlib.sha256(name.encode("utf-8")).digest()[:8], "little")
