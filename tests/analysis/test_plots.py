"""SVG figures."""

from __future__ import annotations

import xml.etree.ElementTree as ElementTree

import pytest

from annotations.analysis import calibration, responses_simulate, simulation_accuracy
from annotations.analysis.plots import accuracy_bar_svg, reliability_plot_svg


@pytest.fixture(scope="module")
def study():
    return responses_simulate(seed=2, arm_logits={"none": 0.0, "expl": 0.8}, n_participants_per_arm=10,
                              n_items=10, items_per_participant=6)


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
    assert "baseline (none)" in svg
    assert "model correct" in accuracy_bar_svg(accuracy, baseline="none", subset="model_correct")
    with pytest.raises(ValueError):
        accuracy_bar_svg(accuracy, baseline="other")
