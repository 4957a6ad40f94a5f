"""Model-report numbers that need no model, against values computed by hand
(workers/engine/report/stats.py)."""

from __future__ import annotations

import numpy as np
import pytest

from workers.engine.report.stats import (
    blending_weights,
    bootstrap_mean,
    compare_groups,
    effective_robustness,
    emap_gap_interval,
    learning_intervals,
    relative_robustness,
)

# Synthetic loss curves over three checkpoints, heads "full", "image" and "text".
CURVES = [
    {
        "name": "c1",
        "losses": {"train": {"full": 1.0, "image": 1.2, "text": 1.1}, "val": {"full": 1.2, "image": 1.3, "text": 1.15}},
    },
    {
        "name": "c2",
        "losses": {"train": {"full": 0.6, "image": 0.9, "text": 1.0}, "val": {"full": 0.9, "image": 1.1, "text": 1.2}},
    },
    {
        "name": "c3",
        "losses": {"train": {"full": 0.5, "image": 0.7, "text": 0.6}, "val": {"full": 0.8, "image": 1.0, "text": 1.0}},
    },
]


def test_ogr_between_checkpoints_by_hand():
    result = learning_intervals(CURVES)
    first = result["intervals"][0]
    assert (first["from"], first["to"]) == ("c1", "c2")
    # full: O goes 0.2 -> 0.3, G goes 1.2 -> 0.9: dO = 0.1, dG = 0.3, OGR = 1/3
    assert first["heads"]["full"]["delta_o"] == pytest.approx(0.1)
    assert first["heads"]["full"]["delta_g"] == pytest.approx(0.3)
    assert first["heads"]["full"]["ogr"] == pytest.approx(1 / 3)
    # image: O 0.1 -> 0.2, G 1.3 -> 1.1: OGR = 0.1 / 0.2
    assert first["heads"]["image"]["ogr"] == pytest.approx(0.5)
    # text: O 0.05 -> 0.2, G 1.15 -> 1.2 (worse): OGR = 0.15 / -0.05
    assert first["heads"]["text"]["ogr"] == pytest.approx(-3.0)
    # weights ∝ dG / dO^2: full 0.3 / 0.01 = 30, image 0.2 / 0.01 = 20, text got worse: 0
    assert first["weights"] == pytest.approx({"full": 0.6, "image": 0.4, "text": 0.0})
    second = result["intervals"][1]
    # full: O 0.3 -> 0.3 (dO = 0), G 0.9 -> 0.8: an infinite ratio takes all the weight
    assert second["heads"]["full"]["delta_o"] == pytest.approx(0.0, abs=1e-12)
    overall = result["overall"]
    assert (overall["from"], overall["to"]) == ("c1", "c3")
    # over the run: full dO = 0.1, dG = 0.4 -> 40; image dO = 0.2, dG = 0.3 -> 7.5; text dO = 0.35, dG = 0.15
    raw = {"full": 0.4 / 0.1**2, "image": 0.3 / 0.2**2, "text": 0.15 / 0.35**2}
    total = sum(raw.values())
    assert overall["weights"] == pytest.approx({k: v / total for k, v in raw.items()})
    assert overall["heads"]["text"]["ogr"] == pytest.approx(0.35 / 0.15)


def test_blending_weights_edge_cases():
    assert blending_weights({"a": -0.1, "b": 0.0}, {"a": 0.1, "b": 0.2}) is None
    assert blending_weights({"a": 0.2, "b": 0.1}, {"a": 0.0, "b": 0.1}) == {"a": 1.0, "b": 0.0}
    assert blending_weights({"a": 0.2, "b": 0.2}, {"a": 0.1, "b": -0.1}) == pytest.approx({"a": 0.5, "b": 0.5})


def test_one_checkpoint_has_no_intervals():
    assert learning_intervals(CURVES[:1]) == {"intervals": [], "overall": None}


def test_relative_robustness_is_multibench_area():
    accuracy = [0.9, 0.85, 0.8, 0.7, 0.65, 0.6, 0.5, 0.45, 0.4, 0.3, 0.2]
    levels = [0.1 * k for k in range(11)]
    multibench = sum((accuracy[i] + accuracy[i + 1]) * 0.1 / 2 for i in range(10))
    assert relative_robustness(accuracy, levels) == pytest.approx(multibench)
    assert relative_robustness([1.0, 1.0, 1.0], [0, 2, 4]) == pytest.approx(1.0)
    assert relative_robustness([1.0, 0.0], [0, 1]) == pytest.approx(0.5)


def test_effective_robustness_is_multibench_formula():
    f = [0.9, 0.8, 0.6]
    r = [0.7, 0.5, 0.2]
    # beta = r + (f0 - r0) = [0.9, 0.7, 0.4]; sum(f - beta) = 0 + 0.1 + 0.2
    assert effective_robustness(f, r) == pytest.approx(0.3)
    with pytest.raises(ValueError, match="levels"):
        effective_robustness([1.0], [1.0, 0.5])


def test_bootstrap_mean_and_groups():
    values = [1.0, 0.0, 1.0, 1.0, float("nan")]
    result = bootstrap_mean(values, seed=0, n_resamples=500)
    assert result["estimate"] == pytest.approx(0.75) and result["n"] == 4
    assert 0.0 <= result["ci_low"] <= 0.75 <= result["ci_high"] <= 1.0
    inside = np.array([True, True, False, False, False, False])
    compared = compare_groups({"x": [1, 1, 0, 0, 1, 0]}, inside, seed=1, n_resamples=300)["x"]
    assert compared["slice"] == {"estimate": 1.0, "ci_low": 1.0, "ci_high": 1.0, "n": 2}
    assert compared["rest"]["estimate"] == pytest.approx(0.25)
    assert compared["difference"]["estimate"] == pytest.approx(0.75)
    assert compared["difference"]["ci_low"] <= 0.75 <= compared["difference"]["ci_high"]
    empty = compare_groups({"x": [1.0, 0.0]}, np.array([False, False]), seed=1, n_resamples=10)["x"]
    assert empty["slice"]["estimate"] is None and empty["difference"]["estimate"] is None


def test_emap_interval_recomputes_the_projection_per_resample():
    rng = np.random.default_rng(0)
    n, c = 30, 4
    additive = rng.normal(size=(n, 1, c)) + rng.normal(size=(1, n, c))  # f(a_i, b_j) = g(a_i) + h(b_j)
    gold = rng.integers(0, c, size=n)
    result = emap_gap_interval(additive, gold, seed=0, n_resamples=200)
    assert result == {"estimate": 0.0, "ci_low": 0.0, "ci_high": 0.0, "n": n}  # an additive model: no gap
    pair = rng.normal(size=(n, n, c))
    estimate = emap_gap_interval(pair, gold, seed=0, n_resamples=200)
    logits = pair[np.arange(n), np.arange(n)]
    projection = pair.mean(axis=1) + pair.mean(axis=0) - pair.mean(axis=(0, 1))
    by_hand = np.mean(logits.argmax(1) == gold) - np.mean(projection.argmax(1) == gold)
    assert estimate["estimate"] == pytest.approx(by_hand)
    assert estimate["ci_low"] <= estimate["estimate"] <= estimate["ci_high"]
