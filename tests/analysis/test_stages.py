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


def _two_people_per_stage(confidences: dict[str, tuple[int, int]]):
    """Two participants per stage, one always at the first confidence, one at the second."""
    rows = []
    for stage, (first, second) in confidences.items():
        for p, confidence in enumerate((first, second)):
            for item in ("i1", "i2", "i3"):
                rows.append((stage, f"{stage}-p{p}", item, "cat", "cat", "cat", confidence, 1000, "test"))
    return make_rows(rows)


def test_confidence_intervals_stay_on_the_scale():
    # Means 3 with participant means 1 and 5: t(1) = 12.71, se = 2, so the raw interval is
    # 3 ± 25.4; clipped to the scale it is [1, 5]. The increment 3 − 3 = 0 has Welch half-width
    # 12.71 · √(4 + 4) = 35.9, clipped to the differences two means on 1–5 can have, [−4, 4].
    df = _two_people_per_stage({"none": (1, 5), "U": (1, 5), "U+C": (3, 3)})
    report = stage_report(df, stages=STAGES, seed=1, n_resamples=20, n_permutations=20)
    first = report["stages"][0]["confidence"]
    assert (first["estimate"], first["ci_low"], first["ci_high"], first["clipped"]) == (3.0, 1.0, 5.0, True)
    increment = report["increments"][0]["confidence"]
    assert (increment["estimate"], increment["ci_low"], increment["ci_high"]) == (0.0, -4.0, 4.0)
    assert increment["clipped"] is True
    # No spread: the interval is the point, nothing cut.
    last = report["stages"][2]["confidence"]
    assert (last["ci_low"], last["ci_high"], last["clipped"]) == (3.0, 3.0, False)


def test_an_interval_inside_the_scale_is_left_alone():
    df = _three_stages()
    report = stage_report(df, stages=STAGES, seed=1, n_resamples=20, n_permutations=20)
    for stage in report["stages"]:
        confidence = stage["confidence"]
        assert 1.0 <= confidence["ci_low"] <= confidence["ci_high"] <= 5.0
    # U: participant means 4, 3, 3 -> mean 10/3, sd 1/√3, se 1/3, t(2) = 4.303: inside 1–5
    middle = report["stages"][1]["confidence"]
    assert middle["clipped"] is False
    assert middle["ci_low"] == pytest.approx(10 / 3 - 4.302652729911275 / 3)
    assert middle["ci_high"] == pytest.approx(10 / 3 + 4.302652729911275 / 3)
    # none: 7/3 − 1.43 is below 1, so its low end is cut to the scale
    none = report["stages"][0]["confidence"]
    assert none["clipped"] is True and none["ci_low"] == 1.0


#: Every interval the report (and so the dashboard, the API and the summary CSV) carries, by
#: the path to it, and what the quantity can be.
BOUNDS = [
    ("/simulation_accuracy/", (0.0, 1.0)),
    ("stages/stages/#/accuracy/", (0.0, 1.0)),
    ("/effects/", (-1.0, 1.0)),
    ("/gain/", (-1.0, 1.0)),
    ("stages/increments/#/accuracy/", (-1.0, 1.0)),
    ("/mixed_model/arms/", (0.0, float("inf"))),  # an odds ratio
    ("stages/stages/#/confidence", (1.0, 5.0)),
    ("stages/increments/#/confidence", (-4.0, 4.0)),
]


def _intervals(node, path=""):
    if isinstance(node, dict):
        if "ci_low" in node:
            yield path, node
        for key, value in node.items():
            yield from _intervals(value, f"{path}/{key}" if path else str(key))
    elif isinstance(node, list):
        for value in node:
            yield from _intervals(value, f"{path}/#")


def test_every_reported_interval_stays_inside_its_quantitys_bounds():
    """A small, noisy staged study (3 participants an arm answering 3 of 6 items): the raw ``t``
    intervals would run past the scales; every interval the report gives stays inside."""
    from annotations.analysis import responses_simulate, study_report
    from annotations.analysis.report import jsonable

    arms = {"none": -1.0, "U": 0.0, "U+C": 2.5}
    df = responses_simulate(
        seed=3,
        arm_logits=arms,
        n_participants_per_arm=3,
        n_items=6,
        items_per_participant=3,
        pretest_items_per_participant=2,
        exclusion_rate=0.0,
    )
    report = jsonable(study_report(df, baseline="none", seed=1, n_resamples=50, n_permutations=50))
    report["stages"] = jsonable(stage_report(df, stages=list(arms), seed=1, n_resamples=50, n_permutations=50))
    checked = 0
    for path, interval in _intervals(report):
        bounds = [b for key, b in BOUNDS if key in path.replace("/bootstrap", "") + "/" or path.startswith(key)]
        assert bounds, f"an interval with no declared bounds: {path}"
        low, high = bounds[0]
        if interval["ci_low"] is not None:
            assert low <= interval["ci_low"] <= interval["ci_high"] <= high, (path, interval)
            checked += 1
    assert checked > 50
    assert any(s["confidence"]["clipped"] for s in report["stages"]["stages"])
