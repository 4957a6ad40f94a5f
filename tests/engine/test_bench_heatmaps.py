"""The heatmap visibility benchmark's measure (benchmarks/heatmaps.py) on closed forms."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.heatmaps import VISIBLE, delta_e_at_threshold, heatmap_visibility


def test_one_outlier_leaves_specks_on_the_maximum_and_structure_on_the_percentile():
    """A 10×10 map: an object of 20 pixels at 0.1 (one of them at 100), background 0. On the
    maximum only the outlier is visible (1 %); on the 98th percentile of the pooled |scores|
    (0.1) the whole object is (20 %), and nothing else."""
    heat = np.zeros((10, 10))
    obj = np.zeros((10, 10), dtype=bool)
    obj[2:4, :] = True
    heat[obj] = 0.1
    heat[2, 0] = 100.0
    before, _ = heatmap_visibility(per_item=[[heat]], objects=[obj], outlier_perc=0)
    after, ratio = heatmap_visibility(per_item=[[heat]], objects=[obj], outlier_perc=2)
    assert before == [pytest.approx(0.01)]
    assert after == [pytest.approx(0.20)]
    assert ratio[0] > 10  # the visible pixels are the object's


def test_visible_threshold_is_a_clear_colour_difference():
    assert VISIBLE == 0.25 and delta_e_at_threshold() > 5
