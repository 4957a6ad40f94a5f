"""Counterfactual simulation statistics: a hand-computed case, and simulated participants with
known accuracies per arm, phase and edit kind, recovered within their intervals."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from annotations.analysis.counterfactual import counterfactual_prepare, counterfactual_simulation


def _row(arm, participant, item, phase, right, kind="top_k_removed", **extra):
    return {
        "condition": arm,
        "participant": participant,
        "item": item,
        "phase": phase,
        "guess": "a" if right else "b",
        "edit_prediction": "a",
        "edit_kind": kind,
        **extra,
    }


def test_a_hand_computed_case():
    rows = [
        # baseline: p1 pre 0/2, post 1/2; p2 pre 1/2, post 1/2 -> pre 1/4, post 2/4, change +1/4
        _row("baseline", "p1", "i1", "pretest", False),
        _row("baseline", "p1", "i2", "pretest", False),
        _row("baseline", "p1", "i1", "test", True),
        _row("baseline", "p1", "i2", "test", False),
        _row("baseline", "p2", "i1", "pretest", True),
        _row("baseline", "p2", "i2", "pretest", False),
        _row("baseline", "p2", "i1", "test", True),
        _row("baseline", "p2", "i2", "test", False),
        # ig: p3 pre 1/2, post 2/2; p4 pre 0/2, post 2/2 -> pre 1/4, post 4/4, change +3/4
        _row("ig", "p3", "i1", "pretest", True),
        _row("ig", "p3", "i2", "pretest", False),
        _row("ig", "p3", "i1", "test", True),
        _row("ig", "p3", "i2", "test", True),
        _row("ig", "p4", "i1", "pretest", False),
        _row("ig", "p4", "i2", "pretest", False),
        _row("ig", "p4", "i1", "test", True),
        _row("ig", "p4", "i2", "test", True),
        # left out: an attention check, an excluded participant, a row without an edit answer
        _row("ig", "p4", "i3", "test", False, is_attention_check=True),
        _row("ig", "p5", "i1", "test", False, excluded=True),
        {**_row("ig", "p3", "i3", "test", False), "edit_prediction": ""},
    ]
    df = pd.DataFrame(rows)
    df["is_attention_check"] = df["is_attention_check"].fillna(False)
    df["excluded"] = df["excluded"].fillna(False)
    assert len(counterfactual_prepare(df)) == 16
    result = counterfactual_simulation(df, baseline="baseline", seed=1, n_resamples=200)["all"]
    base, ig = result["arms"]["baseline"], result["arms"]["ig"]
    assert base["accuracy"]["estimate"] == pytest.approx(0.5) and ig["accuracy"]["estimate"] == pytest.approx(1.0)
    assert base["pretest_accuracy"] == pytest.approx(0.25) and ig["pretest_accuracy"] == pytest.approx(0.25)
    assert base["pre_post_change"]["estimate"] == pytest.approx(0.25)
    assert ig["pre_post_change"]["estimate"] == pytest.approx(0.75)
    assert result["effects"]["ig"]["accuracy"]["estimate"] == pytest.approx(0.5)
    assert result["effects"]["ig"]["pre_post_change"]["estimate"] == pytest.approx(0.5)
    assert (result["n_responses"], result["n_pretest_responses"], result["n_items"]) == (8, 8, 2)


def _simulated(seed: int, truth: dict, *, participants: int = 60, items: int = 30, per: int = 10) -> pd.DataFrame:
    """Participants answer ``per`` distinct items in the pre-test and the same ones in the test;
    an answer is right with the probability ``truth[(arm, phase, kind)]`` (the item's edit kind
    alternates)."""
    rng = np.random.default_rng(seed)
    rows = []
    for arm in ("baseline", "ig"):
        for p in range(participants):
            for item in rng.choice(items, size=per, replace=False):
                kind = "modality_baseline" if item % 2 else "top_k_removed"
                for phase in ("pretest", "test"):
                    right = rng.random() < truth[(arm, phase, kind)]
                    rows.append(_row(arm, f"{arm}-{p}", f"i{item}", phase, right, kind))
    return pd.DataFrame(rows)


def test_simulated_participants_with_known_accuracy_are_recovered():
    truth = {
        ("baseline", "pretest", "modality_baseline"): 0.5,
        ("baseline", "test", "modality_baseline"): 0.6,
        ("baseline", "pretest", "top_k_removed"): 0.4,
        ("baseline", "test", "top_k_removed"): 0.4,
        ("ig", "pretest", "modality_baseline"): 0.5,
        ("ig", "test", "modality_baseline"): 0.9,
        ("ig", "pretest", "top_k_removed"): 0.4,
        ("ig", "test", "top_k_removed"): 0.7,
    }
    result = counterfactual_simulation(_simulated(3, truth), baseline="baseline", seed=3, n_resamples=400)
    for kind, section in result["by_edit_kind"].items():
        for arm in ("baseline", "ig"):
            accuracy = section["arms"][arm]["accuracy"]
            post, pre = truth[(arm, "test", kind)], truth[(arm, "pretest", kind)]
            assert accuracy["ci_low"] < post < accuracy["ci_high"], (kind, arm, accuracy)
            assert accuracy["bootstrap"]["ci_low"] < post < accuracy["bootstrap"]["ci_high"]
            change = section["arms"][arm]["pre_post_change"]
            assert change["ci_low"] < post - pre < change["ci_high"], (kind, arm, change)
        effect = section["effects"]["ig"]
        gain = truth[("ig", "test", kind)] - truth[("baseline", "test", kind)]
        assert effect["accuracy"]["ci_low"] < gain < effect["accuracy"]["ci_high"]
        did = gain - (truth[("ig", "pretest", kind)] - truth[("baseline", "pretest", kind)])
        assert effect["pre_post_change"]["ci_low"] < did < effect["pre_post_change"]["ci_high"]
        assert effect["accuracy"]["ci_low"] > 0  # the explanation arm is detectably better
    pooled = result["all"]["arms"]["ig"]["accuracy"]["estimate"]
    assert abs(pooled - 0.8) < 0.05  # half the items of each kind


def test_bad_frames_are_refused():
    with pytest.raises(ValueError, match="lacks columns"):
        counterfactual_simulation(pd.DataFrame({"condition": []}), baseline=None, seed=0)
    only_pretest = pd.DataFrame([_row("baseline", "p1", "i1", "pretest", True)])
    with pytest.raises(ValueError, match="no test-phase answers"):
        counterfactual_simulation(only_pretest, baseline=None, seed=0)
