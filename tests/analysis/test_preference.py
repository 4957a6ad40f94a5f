"""Preference and ratings (annotations/analysis/preference.py): Bradley–Terry against statsmodels'
logistic regression and the two-method closed form, circular triads against a hand count and
Kendall's formula, agreement against the krippendorff package, ratings against hand-computed
values, and simulated participants whose known strengths the intervals recover."""

from __future__ import annotations

from itertools import combinations

import krippendorff
import numpy as np
import pandas as pd
import pytest

# the model's own module: statsmodels.api also loads its time series and plotting (a second per process)
from statsmodels.discrete.discrete_model import Logit

from annotations.analysis.preference import (
    bradley_terry,
    bradley_terry_fit,
    circular_triads,
    preference_agreement,
    preference_prepare,
    preference_simulate,
    ratings_prepare,
    ratings_summary,
)


def _choices(rows):
    """Rows of (participant, item, left, right, preferred side)."""
    return pd.DataFrame(rows, columns=["participant", "item", "method_left", "method_right", "preferred"])


def test_prepare_maps_sides_to_winner_and_drops_flagged_rows():
    frame = _choices(
        [("p1", "i1", "ig", "grad", "left"), ("p1", "i2", "ig", "grad", "right"), ("p2", "i1", "grad", "ig", "")]
    )
    frame["phase"] = ["test", "test", "test"]
    frame["is_attention_check"] = [False, True, False]
    prepared = preference_prepare(frame)
    assert prepared[["winner", "loser"]].values.tolist() == [["ig", "grad"]]
    with pytest.raises(ValueError, match="left' or 'right"):
        preference_prepare(_choices([("p1", "i1", "ig", "grad", "up")]))
    with pytest.raises(ValueError, match="itself"):
        preference_prepare(_choices([("p1", "i1", "ig", "ig", "left")]))


def test_two_methods_closed_form_is_log_odds_of_win_share():
    # ig wins 7 of 10: θ_ig − θ_grad = log(7/3), each ±half of it; Var(θ_ig − θ_grad) = 1/(n p q).
    rows = [(f"p{i}", "i1", "ig", "grad", "left" if i < 7 else "right") for i in range(10)]
    result = bradley_terry(preference_prepare(_choices(rows)), n_boot=0)
    ig, grad = result["methods"]["ig"], result["methods"]["grad"]
    assert ig["score"] - grad["score"] == pytest.approx(np.log(7 / 3), abs=1e-10)
    assert ig["score"] + grad["score"] == pytest.approx(0.0, abs=1e-12)
    assert (2 * ig["se"]) ** 2 == pytest.approx(1 / (10 * 0.7 * 0.3), rel=1e-9)
    assert ig["win_share"] == pytest.approx(0.7)


def test_scores_and_standard_errors_equal_statsmodels_logistic_regression():
    rng = np.random.default_rng(3)
    methods = ["a", "b", "c", "d"]
    truth = np.array([0.8, 0.2, -0.3, -0.7])
    winner, loser = [], []
    for _ in range(400):
        i, j = rng.choice(4, size=2, replace=False)
        first_wins = rng.random() < 1 / (1 + np.exp(truth[j] - truth[i]))
        winner.append(i if first_wins else j)
        loser.append(j if first_wins else i)
    theta, covariance, _ = bradley_terry_fit(np.array(winner), np.array(loser), 4)
    # "the first listed method won" on e_first − e_second, method "a" as the reference (dropped)
    first = np.where(np.arange(400) % 2 == 0, winner, loser)
    second = np.where(np.arange(400) % 2 == 0, loser, winner)
    design = np.zeros((400, 4))
    design[np.arange(400), first] += 1
    design[np.arange(400), second] -= 1
    outcome = (first == np.array(winner)).astype(float)
    fit = Logit(outcome, design[:, 1:]).fit(disp=0, tol=1e-14, maxiter=200)
    np.testing.assert_allclose(theta[1:] - theta[0], fit.params, atol=1e-6)
    # Var(θ_m − θ_a) from the sum-to-zero covariance equals the reference fit's variance
    contrast = np.eye(4)[1:] - np.eye(4)[0]
    np.testing.assert_allclose(np.sqrt(np.diag(contrast @ covariance @ contrast.T)), fit.bse, atol=1e-6)
    assert methods  # names are only labels here


def test_not_estimable_when_a_method_never_loses():
    rows = [("p1", "i1", "a", "b", "left"), ("p1", "i2", "b", "c", "left"), ("p2", "i1", "c", "b", "left")]
    result = bradley_terry(preference_prepare(_choices(rows)), n_boot=0)
    assert not result["estimable"] and "strongly connected" in result["reason"]
    assert result["methods"]["a"]["score"] is None and result["methods"]["a"]["wins"] == 1


def test_circular_triads_hand_count_and_kendall_formula():
    # p1: a>b, b>c, c>a (circular) and a>d, b>d, c>d: triads abc circular; abd, acd, bcd not -> 1/4.
    p1 = [("a", "b"), ("b", "c"), ("c", "a"), ("a", "d"), ("b", "d"), ("c", "d")]
    # p2: transitive a>b>c; the a–c pair tied over two items gives no direction -> no directed triad.
    p2 = [("a", "b"), ("b", "c"), ("a", "c"), ("c", "a")]
    rows = [("p1", f"i{n}", w, lo, "left") for n, (w, lo) in enumerate(p1)]
    rows += [("p2", f"i{n}", w, lo, "left") for n, (w, lo) in enumerate(p2)]
    result = circular_triads(preference_prepare(_choices(rows)))
    assert result["participants"]["p1"] == {"circular": 1, "directed": 4, "share": 0.25}
    assert result["participants"]["p2"] == {"circular": 0, "directed": 0, "share": None}
    assert result["overall"] == {"circular": 1, "directed": 4, "share": 0.25}

    # A random complete tournament of 7 methods: the count equals n(n−1)(2n−1)/12 − Σ a_i²/2.
    rng = np.random.default_rng(11)
    names = list("abcdefg")
    games = [(x, y) if rng.random() < 0.5 else (y, x) for x, y in combinations(names, 2)]
    scores = np.array([sum(w == m for w, _ in games) for m in names])
    found = circular_triads(preference_prepare(_choices([("p", "i", w, lo, "left") for w, lo in games])))
    n = len(names)
    assert found["overall"]["circular"] == n * (n - 1) * (2 * n - 1) / 12 - (scores**2).sum() / 2
    assert found["overall"]["directed"] == 35


def test_agreement_equals_the_krippendorff_package():
    rng = np.random.default_rng(5)
    rows = []
    for item in range(12):
        for a, b in [("ig", "grad"), ("ig", "shap"), ("grad", "shap")]:
            for p in range(int(rng.integers(1, 5))):
                left, right = (a, b) if p % 2 else (b, a)
                rows.append((f"p{p}", f"i{item}", left, right, "left" if rng.random() < 0.7 else "right"))
    prepared = preference_prepare(_choices(rows))
    found = preference_agreement(prepared)
    # The package's layout: coders × units, the preferred method coded as a number.
    codes = {"grad": 0, "ig": 1, "shap": 2}
    prepared["unit"] = (
        prepared["item"] + ":" + [",".join(sorted(p)) for p in zip(prepared["winner"], prepared["loser"])]
    )
    units = sorted(prepared["unit"].unique())
    matrix = np.full((prepared["participant"].nunique(), len(units)), np.nan)
    coders = {p: n for n, p in enumerate(sorted(prepared["participant"].unique()))}
    for row in prepared.itertuples():
        matrix[coders[row.participant], units.index(row.unit)] = codes[row.winner]
    expected = krippendorff.alpha(reliability_data=matrix, level_of_measurement="nominal")
    assert found["alpha"] == pytest.approx(expected, abs=1e-12)
    assert 0 < found["units"] <= len(units)
    # unanimous judgements agree fully
    same = preference_prepare(_choices([("p1", "i1", "a", "b", "left"), ("p2", "i1", "b", "a", "right")]))
    assert preference_agreement(same)["pairwise_agreement"] == 1.0


def test_simulated_strengths_are_recovered_within_their_intervals():
    strengths = {"ig": 0.9, "grad": 0.1, "shap": -0.2, "random": -0.8}
    prepared = preference_prepare(
        preference_simulate(strengths=strengths, n_participants=60, items_per_participant=12, seed=4)
    )
    result = bradley_terry(prepared, n_boot=200, seed=1)
    assert result["boot_valid"] + result["boot_dropped"] == 200
    for name, true in strengths.items():
        row = result["methods"][name]
        assert row["wald_low"] < true < row["wald_high"], name
        assert row["boot_low"] < true < row["boot_high"], name
    # Coverage of the Wald interval over repeated studies: 0.95 expected, 4 binomial SDs of margin.
    covered = []
    for seed in range(100):
        frame = preference_simulate(strengths=strengths, n_participants=20, items_per_participant=12, seed=100 + seed)
        fitted = bradley_terry(preference_prepare(frame), n_boot=0)["methods"]
        covered += [fitted[m]["wald_low"] < t < fitted[m]["wald_high"] for m, t in strengths.items()]
    assert 0.90 < np.mean(covered) <= 1.0


def test_simulated_design_is_balanced_and_counterbalanced():
    frame = preference_simulate(strengths={"a": 0, "b": 0, "c": 0}, n_participants=6, items_per_participant=6, seed=0)
    pairs = frame.apply(lambda r: tuple(sorted((r.method_left, r.method_right))), axis=1).value_counts()
    assert set(pairs) == {12}
    assert set(frame.groupby(["method_left", "method_right"]).size()) == {6}


def test_ratings_hand_computed_distribution_means_and_superiority():
    frame = pd.DataFrame(
        [
            ("p1", "i1", "ig", 5, 4, 3),
            ("p1", "i2", "ig", 4, 4, 3),
            ("p2", "i1", "ig", 2, 3, 5),
            ("p3", "i1", "grad", 3, 2, 1),
            ("p3", "i2", "grad", 1, 2, 1),
            ("p4", "i1", "grad", 3, 4, 2),
        ],
        columns=["participant", "item", "condition", "rating_helpfulness", "rating_trust", "rating_understanding"],
    )
    summary = ratings_summary(ratings_prepare(frame), reference="grad", n_boot=200, seed=2)
    ig, grad = summary["helpfulness"]["ig"], summary["helpfulness"]["grad"]
    assert ig["distribution"] == [0, 1, 0, 1, 1] and grad["distribution"] == [1, 0, 2, 0, 0]
    assert ig["mean"] == pytest.approx(11 / 3) and ig["median"] == 4.0
    assert ig["difference"] == pytest.approx(11 / 3 - 7 / 3)
    # ig {5,4,2} vs grad {3,1,3}: wins 5>3,5>1,5>3,4>3,4>1,4>3,2>1 = 7 of 9, no ties.
    assert ig["superiority"] == pytest.approx(7 / 9)
    # trust: ig {4,4,3} vs grad {2,2,4}: wins 4>2 ×4, 3>2 ×2 = 6, ties 4=4 ×2 -> (6 + 1)/9
    assert summary["trust"]["ig"]["superiority"] == pytest.approx(7 / 9)
    assert grad["difference"] is None
    assert ig["mean_low"] <= ig["mean"] <= ig["mean_high"]
    assert ig["superiority_low"] <= ig["superiority"] <= ig["superiority_high"]
    with pytest.raises(ValueError, match="1..5"):
        ratings_prepare(frame.assign(rating_trust=6))


def test_ratings_summary_equals_plain_pandas_on_random_ratings():
    rng = np.random.default_rng(8)
    frame = pd.DataFrame(
        {
            "participant": rng.integers(0, 9, 80).astype(str),
            "item": rng.integers(0, 5, 80).astype(str),
            "condition": rng.choice(["ig", "grad", "shap"], 80),
            **{f"rating_{scale}": rng.integers(1, 8, 80) for scale in ("helpfulness", "trust", "understanding")},
        }
    )
    prepared = ratings_prepare(frame, points=7)
    summary = ratings_summary(prepared, reference="shap", points=7, n_boot=50)
    expected = prepared.groupby(["scale", "method"])["rating"].agg(["mean", "median", "size"])
    for (scale, method), row in expected.iterrows():
        found = summary[scale][method]
        assert (found["mean"], found["median"], found["n"]) == pytest.approx((row["mean"], row["median"], row["size"]))
        x = prepared.loc[(prepared.scale == scale) & (prepared.method == method), "rating"].to_numpy()
        y = prepared.loc[(prepared.scale == scale) & (prepared.method == "shap"), "rating"].to_numpy()
        if method != "shap":
            pairs = np.subtract.outer(x, y)
            assert found["superiority"] == pytest.approx((pairs > 0).mean() + (pairs == 0).mean() / 2)
