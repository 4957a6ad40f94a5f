"""Participant quality and the pre-registered exclusion rules (``Study.exclusion_rules``).

A study stores its rules as a JSON object, fixed at launch. Supported keys (any other key is an
error, so a typo cannot silently drop a pre-registered rule); the first four are also those the
study spec and the participant flow know (``annotations.services.spec``):

====================================  =======================================================
``max_attention_failures``            int >= 0: exclude a participant who failed more attention
                                      checks than this (``attention_passed`` false).
``max_fast_share``                    float in [0, 1]: exclude a participant whose share of
                                      scored responses faster than ``fast_rt_ms`` is above it.
``min_test_responses``                int >= 0: exclude a participant with fewer scored
                                      responses (e.g. one who dropped out).
``screen_out_at_attention_failures``  int >= 0: accepted and *not* applied here: the participant
                                      flow ends such a participant's session (``screened_out``);
                                      add ``exclude_screened_out`` to exclude them.
``min_attention_pass_rate``           float in [0, 1]: exclude a participant whose share of
                                      passed attention checks is below it (not applicable to a
                                      participant who saw none; a missing result counts as not
                                      passed).
``min_median_rt_ms``                  number >= 0: exclude a participant whose median response
                                      time over scored responses is below it.
``fast_rt_ms``                        number >= 0: what "fast" means for ``max_fast_share`` and
                                      the per-row ``fast_response`` flag; default: the study's
                                      ``min_rt_ms`` (the participant flow's ``too_fast``). With
                                      0 no response is fast.
``exclude_screened_out``              bool: exclude participants the study screened out
                                      (``screened_out`` column; absent means not screened out).
``min_median_client_rt_ms``           number >= 0: exclude a participant whose median
                                      browser-measured time (``client_rt_ms``) over scored
                                      responses is below it (not applicable without any).
``max_blur_count``                    int >= 0: exclude a participant who left the page
                                      (``blur_count``) more often than this over scored responses.
``max_hidden_ms``                     number >= 0: exclude a participant whose tab was hidden
                                      (``hidden_ms``) longer than this in total over scored
                                      responses.
====================================  =======================================================

The browser-measured columns are missing without JavaScript or when the server rejected them
(``client_timing_flags``): medians and totals are over the known values, and a participant with
none is not judged by these three rules.

*Scored* responses are the test-phase rows that are not attention checks. Exclusion is per
participant: every row of an excluded participant gets ``excluded = True`` and
``exclusion_reasons`` (the violated rule keys, sorted, joined by ``;``). Excluded rows are kept in
every export; the analysis reports each number with and without them.

:func:`participant_stats` is the single definition of a participant's numbers; the DataFrame
function :func:`participant_quality` and the service's streaming export both call it, so the
flags agree exactly.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import pandas as pd

from .responses import _as_bool, _as_key

__all__ = [
    "EXCLUSION_RULE_HELP",
    "EXCLUSION_RULE_KEYS",
    "ExclusionRules",
    "QUALITY_COLUMNS",
    "apply_exclusion_rules",
    "exclusion_reasons",
    "exclusion_rules_validate",
    "exclusions_summary",
    "participant_quality",
    "participant_stats",
]

EXCLUSION_RULE_KEYS: Final = (
    "max_attention_failures",
    "max_fast_share",
    "min_test_responses",
    "screen_out_at_attention_failures",
    "min_attention_pass_rate",
    "min_median_rt_ms",
    "fast_rt_ms",
    "exclude_screened_out",
    "min_median_client_rt_ms",
    "max_blur_count",
    "max_hidden_ms",
)
# One line per key, for people choosing rules (the module docstring has the details).
EXCLUSION_RULE_HELP: Final = {
    "max_attention_failures": "exclude after more failed attention checks than this",
    "max_fast_share": "exclude when a larger share of answers than this is faster than fast_rt_ms",
    "min_test_responses": "exclude with fewer scored answers than this (drop-outs)",
    "screen_out_at_attention_failures": "end the session at this many failed checks (screened-out code)",
    "min_attention_pass_rate": "exclude when the share of passed attention checks is below this",
    "min_median_rt_ms": "exclude when the median answer time (ms) is below this",
    "fast_rt_ms": "what counts as fast for max_fast_share (default: the study's minimum time)",
    "exclude_screened_out": "true: exclude participants the study screened out",
    "min_median_client_rt_ms": "exclude when the median browser-measured answer time (ms) is below this",
    "max_blur_count": "exclude after leaving the page (tab or window) more often than this",
    "max_hidden_ms": "exclude when the tab was hidden longer than this (ms, in total)",
}
# the keys that exclude someone, in report order
_RULES: Final = (
    "max_attention_failures",
    "min_attention_pass_rate",
    "max_fast_share",
    "min_median_rt_ms",
    "min_median_client_rt_ms",
    "max_blur_count",
    "max_hidden_ms",
    "min_test_responses",
    "exclude_screened_out",
)
QUALITY_COLUMNS: Final = (
    "participant",
    "condition",
    "n_test",
    "n_pretest",
    "n_attention",
    "n_attention_passed",
    "n_attention_failed",
    "attention_pass_rate",
    "median_rt_ms",
    "n_fast",
    "fast_share",
    "test_accuracy",
    "median_client_rt_ms",
    "n_blurs",
    "hidden_ms",
    "screened_out",
    "excluded",
    "exclusion_reasons",
)


@dataclass(frozen=True)
class ExclusionRules:
    """Validated rules; ``None`` means the rule is off. ``fast_rt_ms`` is always set."""

    max_attention_failures: int | None = None
    max_fast_share: float | None = None
    min_test_responses: int | None = None
    screen_out_at_attention_failures: int | None = None
    min_attention_pass_rate: float | None = None
    min_median_rt_ms: float | None = None
    fast_rt_ms: float = 0.0
    exclude_screened_out: bool = False
    min_median_client_rt_ms: float | None = None
    max_blur_count: int | None = None
    max_hidden_ms: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return {key: getattr(self, key) for key in EXCLUSION_RULE_KEYS}


def _number(rules: Mapping[str, Any], key: str, *, low: float, high: float | None = None) -> float | None:
    value = rules.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"exclusion rule {key!r} must be a number, got {value!r}")
    if value < low or (high is not None and value > high):
        bound = f"between {low} and {high}" if high is not None else f">= {low}"
        raise ValueError(f"exclusion rule {key!r} must be {bound}, got {value!r}")
    return float(value)


def _integer(rules: Mapping[str, Any], key: str) -> int | None:
    value = _number(rules, key, low=0.0)
    if value is not None and value != int(value):
        raise ValueError(f"exclusion rule {key!r} must be a whole number, got {rules[key]!r}")
    return None if value is None else int(value)


def exclusion_rules_validate(rules: Mapping[str, Any] | None, *, default_fast_rt_ms: float = 0.0) -> ExclusionRules:
    """Check a rules object (see the module docstring) and return it typed.

    ``default_fast_rt_ms`` (the study's ``min_rt_ms``) is used when the rules do not name
    ``fast_rt_ms``. Raises ``ValueError`` on unknown keys and on values of the wrong type or
    range.
    """
    rules = dict(rules or {})
    unknown = sorted(set(rules) - set(EXCLUSION_RULE_KEYS))
    if unknown:
        raise ValueError(f"unknown exclusion rule(s) {unknown}; supported: {list(EXCLUSION_RULE_KEYS)}")
    fast = _number(rules, "fast_rt_ms", low=0.0)
    screened = rules.get("exclude_screened_out", False)
    if not isinstance(screened, bool):
        raise ValueError(f"exclusion rule 'exclude_screened_out' must be true or false, got {screened!r}")
    return ExclusionRules(
        max_attention_failures=_integer(rules, "max_attention_failures"),
        max_fast_share=_number(rules, "max_fast_share", low=0.0, high=1.0),
        min_test_responses=_integer(rules, "min_test_responses"),
        screen_out_at_attention_failures=_integer(rules, "screen_out_at_attention_failures"),
        min_attention_pass_rate=_number(rules, "min_attention_pass_rate", low=0.0, high=1.0),
        min_median_rt_ms=_number(rules, "min_median_rt_ms", low=0.0),
        fast_rt_ms=float(default_fast_rt_ms) if fast is None else fast,
        exclude_screened_out=screened,
        min_median_client_rt_ms=_number(rules, "min_median_client_rt_ms", low=0.0),
        max_blur_count=_integer(rules, "max_blur_count"),
        max_hidden_ms=_number(rules, "max_hidden_ms", low=0.0),
    )


def participant_stats(
    *,
    test_rt_ms: Sequence[float],
    test_correct: Sequence[float],
    n_pretest: int,
    attention_passed: list[bool | None],
    screened_out: bool,
    rules: ExclusionRules,
    test_client_rt_ms: Sequence[float] = (),
    test_blur_count: Sequence[float] = (),
    test_hidden_ms: Sequence[float] = (),
) -> dict[str, Any]:
    """One participant's quality numbers and exclusion decision.

    Args:
        test_rt_ms: response times (ms) of the participant's scored (test-phase, not attention
            check) responses, a sequence of floats; NaN = unknown.
        test_correct: for the same rows, 1.0 correct simulation, 0.0 wrong, NaN unknown.
        n_pretest: the participant's pretest responses (reported only).
        attention_passed: one entry per attention-check row: True, False or None (missing).
        screened_out: the participant was screened out.
        rules: validated rules.
        test_client_rt_ms, test_blur_count, test_hidden_ms: the browser-measured time, times
            the page was left and ms hidden of the same rows (NaN = missing); may be empty.

    Returns ``{"n_test", "n_pretest", "n_attention", "n_attention_passed",
    "n_attention_failed", "attention_pass_rate", "median_rt_ms", "n_fast", "fast_share",
    "test_accuracy", "median_client_rt_ms", "n_blurs", "hidden_ms", "screened_out", "excluded",
    "exclusion_reasons"}``; undefined numbers are ``None`` (``n_blurs`` and ``hidden_ms`` are
    totals over the known values, None when none is known). ``median_rt_ms`` is the median of the known times (the mean of the two middle ones
    for an even count, as ``numpy.median``); *fast* is
    ``rt < fast_rt_ms`` (never when ``fast_rt_ms`` is 0).
    """
    # Plain Python: participants answer tens of items, where numpy's per-call overhead dominates
    # (the export calls this once per participant).
    known_rt = sorted(float(value) for value in test_rt_ms if math.isfinite(value))
    known_correct = [float(value) for value in test_correct if math.isfinite(value)]
    n_test = len(test_rt_ms)
    n_attention = len(attention_passed)
    n_passed = sum(1 for value in attention_passed if value is True)
    n_failed = sum(1 for value in attention_passed if value is False)
    n_fast = sum(1 for value in known_rt if value < rules.fast_rt_ms) if rules.fast_rt_ms > 0 else 0
    median = _median(known_rt)
    client_median = _median(sorted(float(value) for value in test_client_rt_ms if math.isfinite(value)))
    blurs = [float(value) for value in test_blur_count if math.isfinite(value)]
    hidden = [float(value) for value in test_hidden_ms if math.isfinite(value)]
    stats: dict[str, Any] = {
        "n_test": n_test,
        "n_pretest": int(n_pretest),
        "n_attention": n_attention,
        "n_attention_passed": n_passed,
        "n_attention_failed": n_failed,
        "attention_pass_rate": n_passed / n_attention if n_attention else None,
        "median_rt_ms": median,
        "n_fast": n_fast,
        "fast_share": n_fast / n_test if n_test else None,
        "test_accuracy": sum(known_correct) / len(known_correct) if known_correct else None,
        "median_client_rt_ms": client_median,
        "n_blurs": int(sum(blurs)) if blurs else None,
        "hidden_ms": sum(hidden) if hidden else None,
        "screened_out": bool(screened_out),
    }
    reasons = exclusion_reasons(
        n_test=n_test,
        n_attention_failed=n_failed,
        attention_pass_rate=stats["attention_pass_rate"],
        fast_share=stats["fast_share"],
        median_rt_ms=median,
        screened_out=bool(screened_out),
        rules=rules,
        median_client_rt_ms=client_median,
        n_blurs=stats["n_blurs"],
        hidden_ms=stats["hidden_ms"],
    )
    stats["excluded"] = bool(reasons)
    stats["exclusion_reasons"] = ";".join(sorted(reasons))
    return stats


def exclusion_reasons(
    *,
    n_test: int,
    n_attention_failed: int,
    attention_pass_rate: float | None,
    fast_share: float | None,
    median_rt_ms: float | None,
    screened_out: bool,
    rules: ExclusionRules,
    median_client_rt_ms: float | None = None,
    n_blurs: float | None = None,
    hidden_ms: float | None = None,
) -> list[str]:
    """The rules a participant with these numbers violates (unsorted). The one definition of
    the rules: :func:`participant_stats` calls it, and so does the export's COPY path, which
    counts in SQL (``annotations.selectors.exports``). The browser's numbers are None when no
    value is known (no JavaScript): such a participant is not judged by their rules."""
    reasons = []
    if rules.max_attention_failures is not None and n_attention_failed > rules.max_attention_failures:
        reasons.append("max_attention_failures")
    if (
        rules.min_attention_pass_rate is not None
        and attention_pass_rate is not None
        and attention_pass_rate < rules.min_attention_pass_rate
    ):
        reasons.append("min_attention_pass_rate")
    if rules.max_fast_share is not None and fast_share is not None and fast_share > rules.max_fast_share:
        reasons.append("max_fast_share")
    if rules.min_median_rt_ms is not None and median_rt_ms is not None and median_rt_ms < rules.min_median_rt_ms:
        reasons.append("min_median_rt_ms")
    if (
        rules.min_median_client_rt_ms is not None
        and median_client_rt_ms is not None
        and median_client_rt_ms < rules.min_median_client_rt_ms
    ):
        reasons.append("min_median_client_rt_ms")
    if rules.max_blur_count is not None and n_blurs is not None and n_blurs > rules.max_blur_count:
        reasons.append("max_blur_count")
    if rules.max_hidden_ms is not None and hidden_ms is not None and hidden_ms > rules.max_hidden_ms:
        reasons.append("max_hidden_ms")
    if rules.min_test_responses is not None and n_test < rules.min_test_responses:
        reasons.append("min_test_responses")
    if rules.exclude_screened_out and screened_out:
        reasons.append("exclude_screened_out")
    return reasons


def _median(ordered: list[float]) -> float | None:
    """The median of sorted values (the mean of the two middle ones for an even count)."""
    if not ordered:
        return None
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def _quality_inputs(df: pd.DataFrame) -> pd.DataFrame:
    """The columns quality needs, canonicalised (identifiers as strings, flags as bools)."""
    n = len(df)
    out = pd.DataFrame(index=pd.RangeIndex(n))
    out["participant"] = _as_key(df["participant"].reset_index(drop=True))
    out["condition"] = _as_key(df["condition"].reset_index(drop=True))
    out["phase"] = _as_key(df["phase"].reset_index(drop=True))
    flags = {
        "is_attention_check": False,
        "screened_out": False,
    }
    for column, missing in flags.items():
        if column in df.columns:
            out[column] = _as_bool(df[column].reset_index(drop=True), column=column, missing=missing)
        else:
            out[column] = np.zeros(n, dtype=bool)
    if "attention_passed" in df.columns:
        passed = _as_bool(df["attention_passed"].reset_index(drop=True), column="attention_passed", missing=None)
        out["attention_passed"] = passed.astype("boolean").astype(object).where(passed.notna(), None)
    else:
        out["attention_passed"] = pd.Series([None] * n, dtype=object)
    out["rt_ms"] = pd.to_numeric(df["rt_ms"].reset_index(drop=True)).astype("float64")
    # Browser-measured columns are optional (frames from before they existed): missing = NaN.
    for column in ("client_rt_ms", "blur_count", "hidden_ms"):
        if column in df.columns:
            values = pd.to_numeric(df[column].reset_index(drop=True), errors="coerce")
            out[column] = values.astype("float64")
        else:
            out[column] = np.full(n, np.nan)
    correct = _as_bool(df["correct_simulation"].reset_index(drop=True), column="correct_simulation", missing=None)
    out["correct"] = correct.astype("Float64").to_numpy(dtype=np.float64, na_value=np.nan)
    if "verdict" in df.columns:  # a verification answer is right when it says whether the model is
        verdict = _as_bool(df["verdict"].reset_index(drop=True), column="verdict", missing=None)
        model_right = (
            df["model_prediction"].reset_index(drop=True).astype(str)
            == df["gold_label"].reset_index(drop=True).astype(str)
        ).to_numpy()
        said = verdict.notna().to_numpy()
        out.loc[said, "correct"] = (verdict[said].astype(bool).to_numpy() == model_right[said]).astype(np.float64)
    return out


def participant_quality(
    df: pd.DataFrame, *, rules: Mapping[str, Any] | ExclusionRules | None = None, default_fast_rt_ms: float = 0.0
) -> pd.DataFrame:
    """One row per participant (sorted by identifier) with the columns :data:`QUALITY_COLUMNS`.

    ``df`` is a response frame (the export's columns; ``is_attention_check``,
    ``attention_passed`` and ``screened_out`` are optional). ``condition`` is the participant's
    arm (the first in sorted order should a participant have several).
    """
    typed = (
        rules
        if isinstance(rules, ExclusionRules)
        else exclusion_rules_validate(rules, default_fast_rt_ms=default_fast_rt_ms)
    )
    data = _quality_inputs(df)
    codes, participants = pd.factorize(data["participant"], sort=True)
    if (codes < 0).any():
        raise ValueError("column 'participant' has missing values")
    # one contiguous block of rows per participant (numpy slices, not a pandas groupby: a study
    # has thousands of participants and the per-group overhead of pandas would dominate)
    order = np.argsort(codes, kind="stable")
    starts = np.concatenate([[0], np.flatnonzero(np.diff(codes[order])) + 1, [len(order)]])
    attention = data["is_attention_check"].to_numpy(dtype=bool)[order]
    phase = data["phase"].to_numpy(dtype=object)[order]
    scored = (phase == "test") & ~attention
    pretest = (phase == "pretest") & ~attention
    rt = data["rt_ms"].to_numpy(dtype=np.float64)[order]
    client_rt = data["client_rt_ms"].to_numpy(dtype=np.float64)[order]
    blur_count = data["blur_count"].to_numpy(dtype=np.float64)[order]
    hidden_ms = data["hidden_ms"].to_numpy(dtype=np.float64)[order]
    correct = data["correct"].to_numpy(dtype=np.float64)[order]
    passed = data["attention_passed"].to_numpy(dtype=object)[order]
    screened = data["screened_out"].to_numpy(dtype=bool)[order]
    condition = data["condition"].to_numpy(dtype=object)[order]
    rows = []
    for k, participant in enumerate(participants):
        block = slice(starts[k], starts[k + 1])
        mask = scored[block]
        arms = sorted(str(arm) for arm in condition[block] if isinstance(arm, str))
        stats = participant_stats(
            test_rt_ms=rt[block][mask].tolist(),
            test_correct=correct[block][mask].tolist(),
            n_pretest=int(pretest[block].sum()),
            attention_passed=[
                None if value is None or value is pd.NA else bool(value) for value in passed[block][attention[block]]
            ],
            screened_out=bool(screened[block].any()),
            rules=typed,
            test_client_rt_ms=client_rt[block][mask].tolist(),
            test_blur_count=blur_count[block][mask].tolist(),
            test_hidden_ms=hidden_ms[block][mask].tolist(),
        )
        rows.append({"participant": str(participant), "condition": arms[0] if arms else None, **stats})
    return pd.DataFrame(rows, columns=list(QUALITY_COLUMNS))


def apply_exclusion_rules(
    df: pd.DataFrame, *, rules: Mapping[str, Any] | ExclusionRules | None, default_fast_rt_ms: float = 0.0
) -> pd.DataFrame:
    """A copy of ``df`` whose ``excluded`` and ``exclusion_reasons`` columns come from ``rules``
    (every row of a participant gets the participant's decision)."""
    return _apply(df, participant_quality(df, rules=rules, default_fast_rt_ms=default_fast_rt_ms))


def _apply(df: pd.DataFrame, quality: pd.DataFrame) -> pd.DataFrame:
    out = df.copy()
    keys = _as_key(df["participant"].reset_index(drop=True))
    decided = quality.set_index("participant")
    out["excluded"] = keys.map(decided["excluded"]).fillna(False).astype(bool).to_numpy()
    out["exclusion_reasons"] = keys.map(decided["exclusion_reasons"]).fillna("").to_numpy(dtype=object)
    return out


def exclusions_summary(quality: pd.DataFrame, *, rules: ExclusionRules) -> dict[str, Any]:
    """How many participants each rule excludes, overall and per arm.

    ``{"rules": rules as a dict, "n_participants", "n_excluded", "by_rule": {rule: n},
    "per_arm": {arm: {"n_participants", "n_excluded", "by_rule"}}}``; a participant violating
    several rules counts once in ``n_excluded`` and once under each rule.
    """

    def block(rows: pd.DataFrame) -> dict[str, Any]:
        reasons = rows["exclusion_reasons"].fillna("")
        return {
            "n_participants": int(len(rows)),
            "n_excluded": int(rows["excluded"].astype(bool).sum()),
            "by_rule": {
                rule: int(reasons.str.split(";").map(lambda found, rule=rule: rule in found).sum()) for rule in _RULES
            },
        }

    out = {"rules": rules.as_dict(), **block(quality)}
    out["per_arm"] = {str(arm): block(rows) for arm, rows in quality.groupby("condition", sort=True)}
    return out
