"""The staged (MultiViz) report: per-stage numbers equal the arm-level statistics, and each
increment equals the effect of the later stage against the earlier one."""

from __future__ import annotations

import numpy as np
import pytest

from annotations.analysis import accuracy as acc
from annotations.analysis.agreement import agreement
from annotations.analysis.stages import MULTIVIZ_STAGES, stage_report
from tests.analysis.conftest import make_rows

STAGES = ["none", "U", "U+C"]


def _three_stages():
    rows = []
    # Every stage answers items i1..i4 with 3 participants; later stages get more right and are surer.
    truth = {"i1": "cat", "i2": "dog", "i3": "cat", "i4": "dog"}
    right = {"none": 1, "U": 2, "U+C": 4}
    for s, stage in enumerate(STAGES):
        for p in range(3):
            for k, (item, model) in enumerate(truth.items()):
                guess = model if (k + p) % 4 < right[stage] else ("dog" if model == "cat" else "cat")
                rows.append((stage, f"{stage}-p{p}", item, model, "cat", guess, 2 + s + (p == 0), 1000, "test"))
    return make_rows(rows)


def test_stages_and_increments_are_the_arm_statistics():
    df = _three_stages()
    report = stage_report(df, stages=STAGES, seed=1, n_resamples=50, n_permutations=50)

    accuracy = acc.simulation_accuracy(df, seed=1, n_resamples=50)
    assert [s["arm"] for s in report["stages"]] == STAGES
    for stage in report["stages"]:
        assert stage["accuracy"] == accuracy[stage["arm"]]
    assert [s["accuracy"]["all"]["estimate"] for s in report["stages"]] == [0.25, 0.5, 1.0]
    # Confidence: mean of participant means (p0 of each stage is one point surer).
    np.testing.assert_allclose(
        [s["confidence"]["estimate"] for s in report["stages"]], [2 + 1 / 3, 3 + 1 / 3, 4 + 1 / 3]
    )
    assert all(
        s["confidence"]["ci_low"] < s["confidence"]["estimate"] < s["confidence"]["ci_high"] for s in report["stages"]
    )
    alphas = agreement(df)
    assert [s["agreement"]["alpha_nominal_guess"] for s in report["stages"]] == [
        alphas[a]["alpha_nominal_guess"] for a in STAGES
    ]

    assert [(i["from"], i["to"]) for i in report["increments"]] == [("none", "U"), ("U", "U+C")]
    pair = df[df["condition"].isin(["U", "U+C"])]
    effect = acc.arm_effects(pair, baseline="U", seed=1, n_resamples=50, n_permutations=50)["U+C"]
    assert report["increments"][1]["accuracy"] == effect
    assert report["increments"][1]["accuracy"]["all"]["estimate"] == pytest.approx(0.5)
    assert report["increments"][0]["confidence"]["estimate"] == pytest.approx(1.0)
    assert report["unavailable"] == {}


def test_a_stage_without_answers_is_reported_and_skipped():
    df = _three_stages()
    report = stage_report(df[df["condition"] != "U"], stages=STAGES, seed=1, n_resamples=20, n_permutations=20)
    assert [(i["from"], i["to"]) for i in report["increments"]] == [("none", "U+C")]
    assert report["stages"][1]["accuracy"] is None and "U" in report["unavailable"]["stages"]


def test_the_multiviz_stages_are_cumulative():
    views = [set(v) for _, v in MULTIVIZ_STAGES]
    assert views[0] == set() and all(a < b for a, b in zip(views, views[1:]))
    assert [name for name, _ in MULTIVIZ_STAGES] == ["baseline", "U", "U+C", "U+C+R", "U+C+R+P"]
