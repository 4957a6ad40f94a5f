"""Automatic metrics vs human accuracy, the report flattening and the metric scatter plot."""

from __future__ import annotations

import io
import xml.etree.ElementTree as ElementTree

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from annotations.analysis import (
    item_accuracy,
    load_items_csv,
    metric_accuracy_points,
    metric_human_correlation,
    responses_simulate,
)
from annotations.analysis.plots import metric_accuracy_svg
from annotations.analysis.report import report_flatten

from .conftest import make_rows


@pytest.fixture
def two_arms() -> pd.DataFrame:
    """Items i1..i4; arm "expl" gets items right in proportion 0, 1/2, 1/2, 1; the baseline
    1/2 everywhere except i4 (0). p9 (expl) is excluded and wrong on everything."""
    rows = []
    pattern = {"i1": [0, 0], "i2": [1, 0], "i3": [0, 1], "i4": [1, 1]}
    base = {"i1": [1, 0], "i2": [0, 1], "i3": [1, 0], "i4": [0, 0]}
    for arm, table, people in (("expl", pattern, ("p1", "p2")), ("none", base, ("p3", "p4"))):
        for item, correct in table.items():
            for person, ok in zip(people, correct):
                rows.append((arm, person, item, "cat", "cat", "cat" if ok else "dog", 3, 1000, "test"))
    for item in pattern:
        rows.append(("expl", "p9", item, "cat", "cat", "dog", 3, 1000, "test"))
    frame = make_rows(rows)
    frame["excluded"] = frame["participant"] == "p9"
    return frame


@pytest.fixture
def items() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "item": ["i1", "i2", "i3", "i4", "i5"],
            "metric:ig:deletion_auc": [0.9, 0.5, 0.4, 0.1, 0.3],  # i5: no responses
            "metric:ig:infidelity": [1.0, np.nan, 3.0, 4.0, 5.0],
            "metric:ig:constant": [2.0, 2.0, 2.0, 2.0, 2.0],
        }
    )


def test_item_accuracy_by_hand(two_arms):
    table = item_accuracy(two_arms[~two_arms["excluded"]])
    expl = table[table["condition"] == "expl"].set_index("item")["accuracy"].to_dict()
    assert expl == {"i1": 0.0, "i2": 0.5, "i3": 0.5, "i4": 1.0}
    assert item_accuracy(two_arms).set_index(["condition", "item"]).loc[("expl", "i4"), "n_responses"] == 3


def test_correlations_match_scipy(two_arms, items):
    result = metric_human_correlation(two_arms, items, baseline="none")
    kept = result["after_exclusions"]
    assert kept["metrics"] == ["metric:ig:deletion_auc", "metric:ig:infidelity", "metric:ig:constant"]
    assert kept["n_items_with_metrics"] == 5
    x = np.array([0.9, 0.5, 0.4, 0.1])
    y = np.array([0.0, 0.5, 0.5, 1.0])
    block = kept["per_arm"]["expl"]["metric:ig:deletion_auc"]
    assert block["n_items"] == 4
    assert block["spearman_rho"] == pytest.approx(stats.spearmanr(x, y).statistic)
    assert block["pearson_r"] == pytest.approx(np.corrcoef(x, y)[0, 1])
    assert block["pearson_p"] == pytest.approx(stats.pearsonr(x, y).pvalue)
    # gain over baseline per item: expl - none = (-0.5, 0, 0, 1)
    gain = kept["gain_vs_baseline"]["expl"]["metric:ig:deletion_auc"]
    assert gain["spearman_rho"] == pytest.approx(stats.spearmanr(x, [-0.5, 0.0, 0.0, 1.0]).statistic)
    assert set(kept["gain_vs_baseline"]) == {"expl"}
    # a missing metric value drops the item; a constant metric has no correlation
    assert kept["per_arm"]["expl"]["metric:ig:infidelity"]["n_items"] == 3
    assert kept["per_arm"]["expl"]["metric:ig:constant"]["spearman_rho"] is None
    # pooled explanation arms = the only explanation arm here
    assert kept["pooled_explanation_arms"]["metric:ig:deletion_auc"] == block
    # with the excluded participant (always wrong) the arm's accuracies scale by 2/3: the same
    # correlations with the metric, but not with the gain over the baseline
    everything = result["all"]
    assert everything["per_arm"]["expl"]["metric:ig:deletion_auc"]["pearson_r"] == pytest.approx(block["pearson_r"])
    all_gain = np.array([0.0, 1 / 3, 1 / 3, 2 / 3]) - np.array([0.5, 0.5, 0.5, 0.0])
    assert everything["gain_vs_baseline"]["expl"]["metric:ig:deletion_auc"]["pearson_r"] == pytest.approx(
        np.corrcoef(x, all_gain)[0, 1]
    )


def test_items_csv_round_trip(two_arms, items):
    text = items.assign(stratum="model_right", model_correct=True, probabilities="[0.5, 0.5]").to_csv(index=False)
    back = load_items_csv(io.StringIO(text))
    assert back["metric:ig:infidelity"].dtype == np.float64 and np.isnan(back.loc[1, "metric:ig:infidelity"])
    assert back["model_correct"].dtype == "boolean"
    assert metric_human_correlation(two_arms, back, baseline="none") == metric_human_correlation(
        two_arms, items, baseline="none"
    )
    with pytest.raises(ValueError, match="lacks metric columns"):
        metric_human_correlation(two_arms, items, baseline="none", columns=["metric:ig:other"])


def test_metric_points_and_plot(two_arms, items):
    points = metric_accuracy_points(two_arms, items, exclusions_applied=True)
    assert points["metric:ig:deletion_auc"]["expl"] == [(0.9, 0.0), (0.5, 0.5), (0.4, 0.5), (0.1, 1.0)]
    assert len(points["metric:ig:infidelity"]["none"]) == 3
    correlations = metric_human_correlation(two_arms, items, baseline="none")["after_exclusions"]["per_arm"]
    svg = metric_accuracy_svg(points, baseline="none", correlations=correlations)
    ElementTree.fromstring(svg)
    assert "deletion_auc (ig)" in svg and "none (baseline)" in svg and "rho -0.95" in svg
    assert svg == metric_accuracy_svg(points, baseline="none", correlations=correlations)  # deterministic
    assert "No automatic metrics" in metric_accuracy_svg({}, baseline="none")
    # arm and metric names are the researcher's text: the SVG (inlined in the dashboard) escapes them
    hostile = metric_accuracy_svg({"metric:<img src=x>:m": {"<script>": [(0.1, 0.2)]}}, baseline="none")
    assert "<script>" not in hostile and "<img" not in hostile and "&lt;script&gt;" in hostile


def test_report_flatten_keys():
    report = {"a": {"x.y": 1, "b%": [1, 2], "levels": [{"n": 3}, {"n": None}]}, "dawid": {"consensus": {"i": "c"}}}
    assert dict(report_flatten(report)) == {"a.b%25": "1;2", "a.levels.0.n": 3, "a.levels.1.n": None, "a.x%2Ey": 1}


def test_simulated_metric_that_predicts_difficulty_correlates():
    """A metric built from the items' true difficulty correlates positively with accuracy."""
    df = responses_simulate(
        seed=4,
        arm_logits={"none": 0.0, "expl": 1.0},
        n_participants_per_arm=30,
        n_items=30,
        items_per_participant=15,
        item_sd=1.5,
    )
    accuracy = item_accuracy(df)
    truth = accuracy[accuracy["condition"] == "none"].set_index("item")["accuracy"]
    frame = pd.DataFrame({"item": truth.index, "metric:m:easy": truth.to_numpy()})
    result = metric_human_correlation(df, frame, baseline="none")["all"]
    assert result["per_arm"]["expl"]["metric:m:easy"]["spearman_rho"] > 0.3
    assert result["per_arm"]["none"]["metric:m:easy"]["spearman_rho"] == pytest.approx(1.0)
