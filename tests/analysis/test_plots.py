"""SVG figures."""

from __future__ import annotations

import xml.etree.ElementTree as ElementTree

import pytest

from annotations.analysis import calibration, responses_simulate, simulation_accuracy
from annotations.analysis.plots import accuracy_bar_svg, metric_accuracy_svg, reliability_plot_svg


@pytest.fixture(scope="module")
def study():
    return responses_simulate(
        seed=2, arm_logits={"none": 0.0, "expl": 0.8}, n_participants_per_arm=10, n_items=10, items_per_participant=6
    )


def test_reliability_plot(study) -> None:
    svg = reliability_plot_svg(calibration(study))
    root = ElementTree.fromstring(svg)
    assert root.tag.endswith("svg")
    assert "Brier" in svg and "expl" in svg
    assert svg == reliability_plot_svg(calibration(study))  # deterministic
    assert reliability_plot_svg(calibration(study)["pooled"]).startswith("<?xml")


def test_accuracy_bar_chart(study) -> None:
    accuracy = simulation_accuracy(study, seed=0, n_resamples=50)
    svg = accuracy_bar_svg(accuracy, baseline="none")
    ElementTree.fromstring(svg)
    assert "baseline arm (none)" in svg and "chance" not in svg
    assert "chance (0.25)" in accuracy_bar_svg(accuracy, baseline="none", chance=0.25)
    assert "model correct" in accuracy_bar_svg(accuracy, baseline="none", subset="model_correct")
    with pytest.raises(ValueError):
        accuracy_bar_svg(accuracy, baseline="other")


def test_arm_names_with_dollar_signs_are_drawn_literally() -> None:
    """Mathtext is off: an arm named ``$\\foo$`` used to raise in matplotlib's parser."""
    arm = "$\\foo$"
    df = responses_simulate(
        seed=3, arm_logits={"none": 0.0, arm: 0.8}, n_participants_per_arm=5, n_items=6, items_per_participant=4
    )
    accuracy = simulation_accuracy(df, seed=0, n_resamples=20)
    for svg in (
        accuracy_bar_svg(accuracy, baseline=arm),
        accuracy_bar_svg(accuracy, baseline="none"),
        reliability_plot_svg(calibration(df)),
        metric_accuracy_svg({"metric:ig:deletion_auc": {arm: [(0.1, 0.5), (0.2, 1.0)]}}, baseline=arm),
    ):
        ElementTree.fromstring(svg)
        assert arm in svg
