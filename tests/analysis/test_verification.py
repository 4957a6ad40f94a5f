"""Verification and reliance (annotations/analysis/verification.py): a hand-computed case, and
simulated participants with known over- and under-reliance whose rates the intervals cover."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from annotations.analysis.verification import RELIANCE_MEASURES, verification_prepare, verification_reliance


def _row(arm, participant, item, accept, model_right, **extra):
    return dict(
        condition=arm,
        participant=participant,
        item=item,
        phase="test",
        verdict=accept,
        model_prediction="cat",
        gold_label="cat" if model_right else "dog",
        **extra,
    )


def hand_frame() -> pd.DataFrame:
    # i1: the model is right; i2: the model is wrong.
    rows = [
        _row("base", "b1", "i1", True, True),
        _row("base", "b1", "i2", True, False),
        _row("base", "b2", "i1", False, True),
        _row("base", "b2", "i2", True, False),
        _row("xai", "x1", "i1", True, True),
        _row("xai", "x1", "i2", False, False),
        _row("xai", "x2", "i1", True, True),
        _row("xai", "x2", "i2", True, False),
        # never counted: an attention check, a pre-test row, an excluded participant, no verdict
        _row("xai", "x2", "i3", False, True, is_attention_check=True),
        {**_row("xai", "x1", "i1", False, True), "phase": "pretest"},
        _row("base", "b3", "i1", False, True, excluded=True),
        _row("base", "b1", "i4", None, True),
    ]
    frame = pd.DataFrame(rows)
    frame["is_attention_check"] = frame["is_attention_check"].fillna(False).astype(bool)
    frame["excluded"] = frame["excluded"].fillna(False).astype(bool)
    return frame


def test_hand_computed_reliance():
    result = verification_reliance(hand_frame(), baseline="base", seed=0, n_resamples=50)
    base, xai = result["arms"]["base"], result["arms"]["xai"]
    # base: verdicts right on 1 of 4; accepts both wrong answers, rejects one of two right ones.
    assert base["verdict_accuracy"]["estimate"] == pytest.approx(1 / 4)
    assert base["over_reliance"]["estimate"] == pytest.approx(2 / 2)
    assert base["under_reliance"]["estimate"] == pytest.approx(1 / 2)
    assert base["trust"]["estimate"] == pytest.approx(3 / 4)
    assert base["trust_gap"]["estimate"] == pytest.approx(3 / 4 - 1 / 2)
    assert base["model_accuracy"] == pytest.approx(1 / 2)
    # xai: right on 3 of 4; accepts one wrong answer of two, rejects no right one.
    assert xai["verdict_accuracy"]["estimate"] == pytest.approx(3 / 4)
    assert xai["over_reliance"]["estimate"] == pytest.approx(1 / 2)
    assert xai["under_reliance"]["estimate"] == pytest.approx(0.0)
    assert xai["trust"]["estimate"] == pytest.approx(3 / 4)
    assert xai["trust_gap"]["estimate"] == pytest.approx(1 / 4)
    effects = result["effects"]["xai"]
    assert effects["verdict_accuracy"]["estimate"] == pytest.approx(1 / 2)
    assert effects["over_reliance"]["estimate"] == pytest.approx(-1 / 2)
    assert effects["under_reliance"]["estimate"] == pytest.approx(-1 / 2)
    assert effects["trust"]["estimate"] == pytest.approx(0.0)
    assert effects["trust_gap"]["estimate"] == pytest.approx(0.0)
    assert base["over_reliance"]["n_responses"] == 2 and base["verdict_accuracy"]["n_responses"] == 4
    assert result["data"] == {"n_responses": 8, "n_participants": 4, "n_items": 2, "share_model_wrong": 0.5}


def test_row_order_changes_nothing():
    frame = hand_frame()
    shuffled = frame.sample(frac=1.0, random_state=3).reset_index(drop=True)
    a = verification_reliance(frame, baseline="base", seed=5, n_resamples=100)
    b = verification_reliance(shuffled, baseline="base", seed=5, n_resamples=100)
    assert a == b


def test_prepare_reads_csv_strings_and_refuses_missing_columns():
    frame = hand_frame().astype(str)  # as load_responses_csv would hand it over, every cell text
    frame["verdict"] = frame["verdict"].replace({"None": ""})
    prepared = verification_prepare(frame)
    assert len(prepared) == 8 and prepared["accept"].sum() == 6
    with pytest.raises(ValueError, match="verdict"):
        verification_prepare(frame.drop(columns=["verdict"]))
    with pytest.raises(ValueError, match="no test-phase verdicts"):
        verification_reliance(frame[frame["phase"] == "pretest"], baseline="base", seed=0)


# --- simulated participants -------------------------------------------------------------------

OVER = {"base": 0.6, "xai": 0.4}  # P(accept | model wrong)
UNDER = {"base": 0.2, "xai": 0.1}  # P(reject | model right)


def simulate(seed: int, *, n_participants=20, n_items=30, per_participant=10, spread=0.15) -> pd.DataFrame:
    """Half the items are model-right. Each participant's and each item's reliance is shifted by
    a uniform amount of mean 0, so the arm's rates are the population means above."""
    rng = np.random.default_rng(seed)
    right = np.arange(n_items) % 2 == 0
    item_shift = rng.uniform(-0.1, 0.1, n_items)
    rows = []
    for arm in OVER:
        for p in range(n_participants):
            shift = rng.uniform(-spread, spread)
            for i in rng.choice(n_items, per_participant, replace=False):
                if right[i]:
                    accept = rng.random() >= UNDER[arm] + (shift + item_shift[i]) / 2
                else:
                    accept = rng.random() < OVER[arm] + shift + item_shift[i]
                rows.append(_row(arm, f"{arm}-{p}", f"i{i}", bool(accept), bool(right[i])))
    return pd.DataFrame(rows)


TRUTH = {
    ("arms", "base", "over_reliance"): OVER["base"],
    ("arms", "xai", "over_reliance"): OVER["xai"],
    ("arms", "base", "under_reliance"): UNDER["base"],
    ("arms", "xai", "under_reliance"): UNDER["xai"],
    ("effects", "xai", "over_reliance"): OVER["xai"] - OVER["base"],
    ("effects", "xai", "under_reliance"): UNDER["xai"] - UNDER["base"],
    # half the items are model-right: P(accept) = (1 - under + over) / 2
    ("arms", "base", "trust"): (1 - UNDER["base"] + OVER["base"]) / 2,
    ("arms", "xai", "verdict_accuracy"): (1 - UNDER["xai"] + 1 - OVER["xai"]) / 2,
}


def test_simulated_reliance_is_recovered_and_covered():
    """200 simulated studies: the mean estimate is near the truth and the 95 % intervals cover it
    at a rate measured at 0.97-0.99 on these settings (300 runs); the test asks >= 0.90, six
    standard errors of a 200-run rate below it."""
    n_runs = 200
    hits = dict.fromkeys(TRUTH, 0)
    estimates = {key: [] for key in TRUTH}
    for seed in range(n_runs):
        result = verification_reliance(simulate(seed), baseline="base", seed=seed, n_resamples=1)
        for key, truth in TRUTH.items():
            found = result[key[0]][key[1]][key[2]]
            estimates[key].append(found["estimate"])
            hits[key] += found["ci_low"] <= truth <= found["ci_high"]
    for key, truth in TRUTH.items():
        assert abs(np.mean(estimates[key]) - truth) < 0.02, key
        assert hits[key] / n_runs >= 0.90, (key, hits[key] / n_runs)
    # one larger study: the over-reliance effect of -0.2 is told apart from 0 (its two-way
    # interval; the product bootstrap's is wider, docs/STATISTICS.md)
    one = verification_reliance(simulate(1000, n_participants=60), baseline="base", seed=1, n_resamples=200)
    effect = one["effects"]["xai"]["over_reliance"]
    assert (
        effect["ci_high"] < -0.05
        and effect["bootstrap"]["ci_low"] < effect["estimate"] < effect["bootstrap"]["ci_high"]
    )
    assert set(one["arms"]["base"]) == {*RELIANCE_MEASURES, "model_accuracy"}
