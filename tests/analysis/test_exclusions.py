"""Participant quality and pre-registered exclusion rules, worked out by hand."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest

from annotations.analysis import (
    EXCLUSION_RULE_KEYS,
    analyze,
    apply_exclusion_rules,
    exclusion_rules_validate,
    load_responses_csv,
    participant_quality,
    study_report,
)

from .conftest import make_rows


@pytest.fixture
def quality_df() -> pd.DataFrame:
    """p1: careful (times 2000-4000, passes its check). p2: fast clicker (300 ms, 3 of 4 fast).
    p3: fails one of two attention checks. p4: answered one test item, screened out.
    p5 (expl arm): careful, no attention check. Pretest rows never count for the rules."""
    rows = [
        ("none", "p1", "i1", "cat", "cat", "cat", 4, 2000, "test"),
        ("none", "p1", "i2", "dog", "cat", "dog", 4, 4000, "test"),
        ("none", "p1", "i3", "cat", "cat", "cat", 4, 3000, "test"),
        ("none", "p1", "i9", "cat", "cat", "cat", 3, 100, "pretest"),
        ("none", "p2", "i1", "cat", "cat", "dog", 1, 300, "test"),
        ("none", "p2", "i2", "dog", "cat", "dog", 1, 300, "test"),
        ("none", "p2", "i3", "cat", "cat", "dog", 1, 250, "test"),
        ("none", "p2", "i4", "cat", "cat", "cat", 1, 5000, "test"),
        ("expl", "p3", "i1", "cat", "cat", "cat", 5, 2500, "test"),
        ("expl", "p3", "i2", "dog", "cat", "dog", 5, 2600, "test"),
        ("expl", "p4", "i1", "cat", "cat", "cat", 3, 1800, "test"),
        ("expl", "p5", "i1", "cat", "cat", "cat", 3, 1900, "test"),
        ("expl", "p5", "i2", "dog", "cat", "cat", 3, 2100, "test"),
    ]
    frame = make_rows(rows)
    frame["is_attention_check"] = False
    frame["attention_passed"] = None
    frame["screened_out"] = frame["participant"] == "p4"
    checks = make_rows(
        [
            ("none", "p1", "a1", "cat", "cat", "cat", 5, 2000, "test"),
            ("expl", "p3", "a1", "cat", "cat", "dog", 5, 2000, "test"),
            ("expl", "p3", "a2", "cat", "cat", "cat", 5, 2000, "test"),
        ]
    )
    checks["is_attention_check"] = True
    checks["attention_passed"] = [True, False, True]
    checks["screened_out"] = False
    return pd.concat([frame, checks], ignore_index=True)


RULES = {
    "max_attention_failures": 0,
    "max_fast_share": 0.5,
    "min_test_responses": 2,
    "min_median_rt_ms": 1000,
    "exclude_screened_out": True,
}


def test_participant_numbers_by_hand(quality_df):
    quality = participant_quality(quality_df, rules={"fast_rt_ms": 1000}).set_index("participant")
    p1, p2, p3, p5 = (quality.loc[p] for p in ("p1", "p2", "p3", "p5"))
    assert (p1["n_test"], p1["n_pretest"], p1["n_attention"], p1["n_attention_passed"]) == (3, 1, 1, 1)
    assert p1["median_rt_ms"] == 3000.0 and p1["fast_share"] == 0.0 and p1["test_accuracy"] == 1.0
    assert p2["median_rt_ms"] == 300.0 and p2["n_fast"] == 3 and p2["fast_share"] == 0.75
    assert p2["test_accuracy"] == pytest.approx(0.5)  # i2 and i4: dog/dog and cat/cat
    assert (p3["n_attention"], p3["n_attention_failed"], p3["attention_pass_rate"]) == (2, 1, 0.5)
    assert pd.isna(p5["attention_pass_rate"]) and p5["median_rt_ms"] == 2000.0
    assert p5["condition"] == "expl" and p1["condition"] == "none"
    assert not quality["excluded"].any()  # no rule, no exclusion


def test_each_rule_excludes_whom_it_should(quality_df):
    quality = participant_quality(quality_df, rules=RULES, default_fast_rt_ms=1000).set_index("participant")
    assert quality["exclusion_reasons"].to_dict() == {
        "p1": "",
        "p2": "max_fast_share;min_median_rt_ms",
        "p3": "max_attention_failures",
        "p4": "exclude_screened_out;min_test_responses",
        "p5": "",
    }
    rate = participant_quality(quality_df, rules={"min_attention_pass_rate": 0.75}).set_index("participant")
    assert rate["excluded"].to_dict() == {"p1": False, "p2": False, "p3": True, "p4": False, "p5": False}
    # fast_rt_ms in the rules overrides the study's min_rt_ms; 0 means nothing is fast
    assert not participant_quality(quality_df, rules={"max_fast_share": 0.0}, default_fast_rt_ms=0)["excluded"].any()
    fast = participant_quality(quality_df, rules={"max_fast_share": 0.0, "fast_rt_ms": 2001}, default_fast_rt_ms=0)
    assert set(fast.loc[fast["excluded"], "participant"]) == {"p1", "p2", "p4", "p5"}


def test_rules_are_validated():
    assert set(exclusion_rules_validate({}).as_dict()) == set(EXCLUSION_RULE_KEYS)
    assert exclusion_rules_validate({"screen_out_at_attention_failures": 2}).screen_out_at_attention_failures == 2
    for bad, message in [
        ({"max_attention_failure": 0}, "unknown"),
        ({"max_fast_share": 1.5}, "between"),
        ({"min_test_responses": 2.5}, "whole number"),
        ({"min_median_rt_ms": "fast"}, "number"),
        ({"exclude_screened_out": 1}, "true or false"),
        ({"max_attention_failures": -1}, ">= 0"),
    ]:
        with pytest.raises(ValueError, match=message):
            exclusion_rules_validate(bad)


def test_flags_drive_analyze_and_survive_the_csv(quality_df):
    flagged = apply_exclusion_rules(quality_df, rules=RULES, default_fast_rt_ms=1000)
    assert flagged.groupby("participant")["excluded"].nunique().max() == 1
    assert set(flagged.loc[flagged["excluded"], "participant"]) == {"p2", "p3", "p4"}
    result = analyze(flagged, baseline="none", seed=0, n_resamples=50, n_permutations=50)
    kept = result["after_exclusions"]
    assert kept["data"]["n_participants"] == 2  # p1 and p5
    assert kept["simulation_accuracy"]["none"]["all"]["estimate"] == 1.0
    # attention checks never count as simulation answers
    assert result["all"]["data"]["n_rows_by_phase"] == {"attention": 3, "pretest": 1, "test": 12}
    assert result["all"]["data"]["n_test_responses"] == 12

    text = flagged.to_csv(index=False)
    back = load_responses_csv(io.StringIO(text))
    assert back["attention_passed"].dtype == "boolean" and back["is_attention_check"].dtype == bool
    report = study_report(
        quality_df,
        baseline="none",
        seed=0,
        n_resamples=50,
        n_permutations=50,
        exclusion_rules=RULES,
        default_fast_rt_ms=1000,
    )
    assert report == study_report(
        back, baseline="none", seed=0, n_resamples=50, n_permutations=50, exclusion_rules=RULES, default_fast_rt_ms=1000
    )
    assert report["analysis"] == result
    summary = report["exclusions"]
    assert (summary["n_participants"], summary["n_excluded"]) == (5, 3)
    assert summary["by_rule"]["max_fast_share"] == 1 and summary["by_rule"]["min_test_responses"] == 1
    assert summary["per_arm"]["expl"]["n_excluded"] == 2
    # without rules, the frame's own flags are used and counted
    assert (
        study_report(back, baseline="none", seed=0, n_resamples=50, n_permutations=50)["exclusions"]["n_excluded"] == 3
    )


def test_missing_attention_result_is_not_a_pass(quality_df):
    frame = quality_df.copy()
    frame["attention_passed"] = frame["attention_passed"].astype(object)
    frame.loc[frame["is_attention_check"] & (frame["participant"] == "p1"), "attention_passed"] = np.nan
    quality = participant_quality(frame, rules={"min_attention_pass_rate": 1.0}).set_index("participant")
    assert quality.loc["p1", "n_attention_passed"] == 0 and quality.loc["p1", "n_attention_failed"] == 0
    assert quality.loc["p1", "excluded"]


def test_every_rule_key_has_a_one_line_help():
    from annotations.analysis.exclusions import EXCLUSION_RULE_HELP, EXCLUSION_RULE_KEYS

    assert list(EXCLUSION_RULE_HELP) == list(EXCLUSION_RULE_KEYS)


def test_browser_timing_rules_by_hand(quality_df):
    """Browser-measured times, blurs and hidden time on the scored rows (pretest and attention
    rows never count); a participant without any (no JavaScript) is not judged by these rules."""
    frame = quality_df.copy()
    frame["client_rt_ms"] = np.nan
    frame["blur_count"] = np.nan
    frame["hidden_ms"] = np.nan
    measured = {  # participant -> (client times, blurs, hidden ms) of its scored rows, in order
        "p1": ([1900, 3900, 2900], [0, 1, 0], [0, 1500, 0]),  # median 2900; 1 blur; 1.5 s hidden
        "p2": ([250, 260, 240, np.nan], [2, 2, 2, np.nan], [0, 0, 0, np.nan]),  # median 250; 6 blurs
        "p3": ([2400, 2500], [0, 0], [20_000, 15_000]),  # 35 s hidden
        # p4 and p5: nothing measured
    }
    scored = (frame["phase"] == "test") & ~frame["is_attention_check"]
    for participant, columns in measured.items():
        rows = frame.index[scored & (frame["participant"] == participant)]
        for column, values in zip(("client_rt_ms", "blur_count", "hidden_ms"), columns):
            frame.loc[rows, column] = values
    # An attention check's and a pretest row's values are not scored: they must change nothing.
    frame.loc[~scored, ["client_rt_ms", "blur_count", "hidden_ms"]] = [1, 99, 10**9]

    quality = participant_quality(frame, rules={}).set_index("participant")
    assert quality.loc["p1", ["median_client_rt_ms", "n_blurs", "hidden_ms"]].tolist() == [2900.0, 1, 1500.0]
    assert quality.loc["p2", ["median_client_rt_ms", "n_blurs", "hidden_ms"]].tolist() == [250.0, 6, 0.0]
    assert quality.loc["p3", ["median_client_rt_ms", "n_blurs", "hidden_ms"]].tolist() == [2450.0, 0, 35_000.0]
    assert quality.loc[["p4", "p5"], ["median_client_rt_ms", "n_blurs", "hidden_ms"]].isna().all().all()

    rules = {"min_median_client_rt_ms": 1000, "max_blur_count": 1, "max_hidden_ms": 30_000}
    decided = participant_quality(frame, rules=rules).set_index("participant")
    assert decided["exclusion_reasons"].to_dict() == {
        "p1": "",  # one blur is allowed; 1.5 s hidden too
        "p2": "max_blur_count;min_median_client_rt_ms",
        "p3": "max_hidden_ms",
        "p4": "",
        "p5": "",
    }
    # At the bounds: a median equal to the minimum and totals equal to the maxima are kept.
    edge = participant_quality(
        frame, rules={"min_median_client_rt_ms": 2900, "max_blur_count": 6, "max_hidden_ms": 35_000}
    ).set_index("participant")
    assert edge["exclusion_reasons"].to_dict() == {
        "p1": "",
        "p2": "min_median_client_rt_ms",
        "p3": "min_median_client_rt_ms",
        "p4": "",
        "p5": "",
    }
    # A frame from before these columns existed: the rules apply to no one.
    old = quality_df.drop(columns=[c for c in ("client_rt_ms", "blur_count", "hidden_ms") if c in quality_df])
    assert not participant_quality(old, rules=rules)["excluded"].any()
    for bad, message in [({"max_blur_count": 1.5}, "whole number"), ({"max_hidden_ms": -1}, ">= 0")]:
        with pytest.raises(ValueError, match=message):
            exclusion_rules_validate(bad)
