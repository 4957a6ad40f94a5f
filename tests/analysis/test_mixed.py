"""The mixed-effects logistic model: known coefficients and variance components recovered from
simulated studies, honest standard errors, and the same numbers whatever the row order."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from annotations.analysis import MIXED_MODEL_FORMULA, load_responses_csv, mixed_model, responses_simulate

TRUE = {"baseline": -0.2, "explained": 0.4, "participant_sd": 1.0, "item_sd": 0.8}


def _study(seed: int, **design) -> pd.DataFrame:
    options = dict(
        n_participants_per_arm=30,
        n_items=40,
        items_per_participant=20,
        participant_sd=TRUE["participant_sd"],
        item_sd=TRUE["item_sd"],
    )
    options.update(design)
    return responses_simulate(
        seed=seed, arm_logits={"baseline": TRUE["baseline"], "explained": TRUE["explained"]}, **options
    )


def test_one_large_study_recovers_the_generating_model() -> None:
    """150 participants per arm, 150 items, 30 answers each (9,000 answers)."""
    fit = mixed_model(
        _study(1, n_participants_per_arm=150, n_items=150, items_per_participant=30), baseline="baseline", seed=0
    )
    assert fit["formula"] == MIXED_MODEL_FORMULA and fit["converged"]
    assert (fit["n_responses"], fit["n_participants"], fit["n_items"]) == (9000, 300, 150)
    arm = fit["arms"]["explained"]
    true_log_odds = TRUE["explained"] - TRUE["baseline"]
    assert abs(arm["log_odds_ratio"] - true_log_odds) < 3 * arm["se"]
    assert arm["ci_low"] < np.exp(true_log_odds) < arm["ci_high"]
    assert arm["odds_ratio"] == pytest.approx(np.exp(arm["log_odds_ratio"]), rel=1e-15)
    assert abs(fit["intercept"]["log_odds"] - TRUE["baseline"]) < 3 * fit["intercept"]["se"]
    components = fit["variance_components"]
    assert components["participant"]["sd"] == pytest.approx(TRUE["participant_sd"], abs=0.15)
    assert components["item"]["sd"] == pytest.approx(TRUE["item_sd"], abs=0.15)
    latent = components["participant"]["variance"] + components["item"]["variance"] + np.pi**2 / 3
    assert components["item"]["icc"] == pytest.approx(components["item"]["variance"] / latent, rel=1e-12)


def test_estimates_and_standard_errors_over_twenty_studies() -> None:
    """Across 20 simulated studies of 1,200 answers the mean estimates sit near the truth, and the
    reported standard error matches the spread of the estimates (statsmodels' own VB posterior SD
    of the arm coefficient was about a quarter of it: see the ``mixed`` module docstring)."""
    estimates, ses, participant_sds, item_sds, intercepts = [], [], [], [], []
    for study in range(20):
        fit = mixed_model(_study(800 + study), baseline="baseline", seed=0)
        estimates.append(fit["arms"]["explained"]["log_odds_ratio"])
        ses.append(fit["arms"]["explained"]["se"])
        participant_sds.append(fit["variance_components"]["participant"]["sd"])
        item_sds.append(fit["variance_components"]["item"]["sd"])
        intercepts.append(fit["intercept"]["log_odds"])
    spread = np.std(estimates, ddof=1)
    # the mean of 20 estimates has a standard error of about spread / sqrt(20) ≈ 0.06
    assert abs(np.mean(estimates) - (TRUE["explained"] - TRUE["baseline"])) < 0.2
    assert abs(np.mean(intercepts) - TRUE["baseline"]) < 0.2
    assert 0.7 <= np.mean(ses) / spread <= 1.45
    assert np.mean(participant_sds) == pytest.approx(TRUE["participant_sd"], abs=0.15)
    assert np.mean(item_sds) == pytest.approx(TRUE["item_sd"], abs=0.15)


def test_same_fit_from_any_row_order_and_from_the_csv() -> None:
    df = _study(5, n_participants_per_arm=12, n_items=20, items_per_participant=10)
    first = mixed_model(df, baseline="baseline", seed=3)
    assert mixed_model(df.sample(frac=1.0, random_state=1), baseline="baseline", seed=3) == first
    import io

    assert mixed_model(load_responses_csv(io.StringIO(df.to_csv(index=False))), baseline="baseline", seed=3) == first


def test_refusals() -> None:
    df = _study(6, n_participants_per_arm=5, n_items=10, items_per_participant=5)
    with pytest.raises(ValueError, match="baseline arm 'none'"):
        mixed_model(df, baseline="none")
    with pytest.raises(ValueError, match="second arm"):
        mixed_model(df[df["condition"] == "baseline"], baseline="baseline")
