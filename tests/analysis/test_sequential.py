"""Sequential monitoring: spending boundaries against published tables and a Brownian-motion
simulation, the plan's validation, what a look contains, and the type-I error over looks on
simulated studies."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from annotations.analysis import (
    alpha_spent,
    load_responses_csv,
    responses_simulate,
    sequential_boundaries,
    sequential_monitor,
    sequential_plan_validate,
)

# Lan–DeMets boundaries, two-sided alpha 0.05 (each side 0.025), equally spaced looks, as tabulated
# by gsDesign (sfLDOF / sfLDPocock, test.type = 2) and ldbounds.
PUBLISHED = [
    ("obrien_fleming", 5, [4.8769, 3.3569, 2.6803, 2.2898, 2.0310]),
    ("obrien_fleming", 3, [3.7103, 2.5114, 1.9930]),
    ("obrien_fleming", 2, [2.9626, 1.9686]),
    ("pocock", 5, [2.4380, 2.4268, 2.4101, 2.3966, 2.3859]),
]


@pytest.mark.parametrize(("spending", "looks", "expected"), PUBLISHED)
def test_boundaries_match_published_tables(spending: str, looks: int, expected: list[float]) -> None:
    fractions = [(k + 1) / looks for k in range(looks)]
    found = sequential_boundaries(fractions, alpha=0.05, spending=spending)
    np.testing.assert_allclose(found, expected, rtol=0, atol=6e-4)


@pytest.mark.parametrize("spending", ["obrien_fleming", "pocock"])
def test_boundaries_spend_alpha_on_brownian_paths(spending: str) -> None:
    """Unequal looks at t = 0.3, 0.55, 1: on 400,000 simulated paths Z_k = W(t_k)/√t_k, the share
    crossing by look k is α(t_k) (the last: alpha), within 4 Monte Carlo standard errors."""
    fractions = np.array([0.3, 0.55, 1.0])
    boundaries = np.array(sequential_boundaries(list(fractions), alpha=0.05, spending=spending))
    rng = np.random.default_rng(2024)
    increments = rng.standard_normal((400_000, 3)) * np.sqrt(np.diff(np.concatenate([[0.0], fractions])))
    z = np.cumsum(increments, axis=1) / np.sqrt(fractions)
    crossed_by = np.cumsum(np.abs(z) >= boundaries, axis=1) > 0
    for k, t in enumerate(fractions):
        expected = 0.05 if k == 2 else alpha_spent(t, alpha=0.05, spending=spending)
        share = crossed_by[:, k].mean()
        assert abs(share - expected) <= 4 * np.sqrt(expected * (1 - expected) / 400_000), (k, share, expected)


def test_spending_functions() -> None:
    for spending in ("obrien_fleming", "pocock"):
        values = [alpha_spent(t, alpha=0.05, spending=spending) for t in np.linspace(0, 1, 11)]
        assert values[0] == 0.0 and values[-1] == pytest.approx(0.05, abs=1e-15)
        assert all(b > a for a, b in zip(values, values[1:]))
    # one look is the fixed-sample test
    assert sequential_boundaries([1.0], alpha=0.05, spending="pocock")[0] == pytest.approx(stats.norm.isf(0.025))


def test_plan_validation_names_the_key() -> None:
    assert sequential_plan_validate(None) is None and sequential_plan_validate({}) is None
    plan = sequential_plan_validate({"spending": "pocock", "looks": [10, 20], "effect_of_interest": 0.1})
    assert plan.as_dict() == {"spending": "pocock", "alpha": 0.05, "looks": [10, 20], "effect_of_interest": 0.1}
    bad = [
        ({"spending": "bonferroni", "looks": [10]}, "spending: must be one of"),
        ({"spending": "pocock", "looks": [20, 10]}, "looks: must increase"),
        ({"spending": "pocock", "looks": [1, 10]}, "looks: each look"),
        ({"spending": "pocock", "looks": "10,20"}, "looks: must be a list"),
        ({"spending": "pocock", "looks": [10], "alpha": 0.7}, "alpha: must be"),
        ({"spending": "pocock", "looks": [10], "effect_of_interest": 10}, "effect_of_interest: must be"),
        ({"spending": "pocock", "looks": [10], "peeks": 3}, "unknown key"),
    ]
    for value, message in bad:
        with pytest.raises(ValueError, match=message):
            sequential_plan_validate(value)


def _study(seed: int, *, explained: float, per_arm: int = 30, arms: dict | None = None) -> pd.DataFrame:
    return responses_simulate(
        seed=seed,
        arm_logits=arms or {"baseline": 0.0, "explained": explained},
        n_participants_per_arm=per_arm,
        n_items=40,
        items_per_participant=20,
    )


def test_a_look_holds_the_first_participants_to_complete() -> None:
    df = _study(1, explained=1.5)
    # a participant who answered only 5 items is not complete and is not counted
    dropout = df[(df["participant"] == df["participant"].max()) & (df["phase"] == "test")].index[5:]
    df = df.drop(index=dropout)
    plan = {"spending": "obrien_fleming", "looks": [10, 20, 40]}
    found = sequential_monitor(df, baseline="baseline", plan=plan, complete_after=20)
    assert found["participants_per_arm"] == {"baseline": 30, "explained": 29}
    assert [look["reached"] for look in found["looks"]] == [True, True, False]
    assert found["fractions"] == [0.25, 0.5, 1.0]
    # look 1 by hand: the first ten complete participants of each arm
    test = df[df["phase"] == "test"]
    last = test.groupby("participant").agg(arm=("condition", "first"), done=("created_at", "max"), n=("item", "size"))
    last = last[last["n"] >= 20].reset_index().sort_values(["done", "participant"])
    first = last.groupby("arm").head(10)["participant"]
    rows = test[test["participant"].isin(first)]
    expected = (
        rows.loc[rows["condition"] == "explained", "correct_simulation"].mean()
        - rows.loc[rows["condition"] == "baseline", "correct_simulation"].mean()
    )
    assert found["looks"][0]["comparisons"]["explained"]["estimate"] == pytest.approx(expected, abs=1e-15)
    # a strong effect crosses early and the study may stop
    assert (
        found["comparisons"]["explained"] == {"decision": "effect", "look": 2}
        or found["comparisons"]["explained"]["look"] == 1
    )
    assert found["may_stop"] and found["status"].startswith("the study may stop")
    # the same from the CSV export
    again = sequential_monitor(
        load_responses_csv(io.StringIO(df.to_csv(index=False))), baseline="baseline", plan=plan, complete_after=20
    )
    assert again == found


def test_a_null_study_continues_then_ends_without_an_effect() -> None:
    df = _study(4, explained=0.0, per_arm=25)
    plan = {"spending": "obrien_fleming", "looks": [10, 20, 40]}
    found = sequential_monitor(df, baseline="baseline", plan=plan, complete_after=20)
    assert not found["may_stop"] and found["comparisons"]["explained"]["decision"] == "continue"
    assert found["status"] == (
        "continue: look 2 of 3 taken; the next look comes at 40 complete participants per arm (now 25)"
    )
    final = sequential_monitor(
        df, baseline="baseline", plan={"spending": "pocock", "looks": [10, 25]}, complete_after=20
    )
    assert final["comparisons"]["explained"]["decision"] in ("no effect", "effect")
    assert final["may_stop"]


def test_several_arms_share_alpha_and_exclusions_are_respected() -> None:
    df = _study(5, explained=0.0, arms={"baseline": 0.0, "a": 0.0, "b": 0.0})
    df.loc[df["participant"] == df["participant"].min(), "excluded"] = True
    found = sequential_monitor(
        df, baseline="baseline", plan={"spending": "pocock", "looks": [10, 30]}, complete_after=20
    )
    assert found["alpha_per_comparison"] == 0.025 and set(found["comparisons"]) == {"a", "b"}
    assert found["participants_per_arm"]["baseline"] == 29
    assert not found["looks"][1]["reached"]
    with pytest.raises(ValueError, match="baseline arm 'none'"):
        sequential_monitor(df, baseline="none", plan={"spending": "pocock", "looks": [10]}, complete_after=20)


def test_type_one_error_over_three_looks_on_simulated_studies() -> None:
    """300 null studies (participant SD 1, item SD 0.8), looks at 10, 20 and 30 participants per arm:
    the spending plans reject in at most alpha of them (bound: 0.05 plus three Monte Carlo
    standard errors), while testing at 1.96 at every look rejects more often on the same data.
    ``docs/STATISTICS.md`` has the 2,000-study table."""
    boundaries = {
        spending: sequential_boundaries([1 / 3, 2 / 3, 1.0], alpha=0.05, spending=spending)
        for spending in ("obrien_fleming", "pocock")
    }
    boundaries["naive"] = [stats.norm.isf(0.025)] * 3
    rejected = dict.fromkeys(boundaries, 0)
    for study in range(300):
        df = _study(60_000 + study, explained=0.0)
        found = sequential_monitor(
            df, baseline="baseline", plan={"spending": "obrien_fleming", "looks": [10, 20, 30]}, complete_after=20
        )
        z = [abs(look["comparisons"]["explained"]["z"]) for look in found["looks"]]
        assert (found["comparisons"]["explained"]["decision"] == "effect") == any(
            value >= bound for value, bound in zip(z, boundaries["obrien_fleming"])
        )
        for name, bounds in boundaries.items():
            rejected[name] += any(value >= bound for value, bound in zip(z, bounds))
    rates = {key: value / 300 for key, value in rejected.items()}
    bound = 0.05 + 3 * np.sqrt(0.05 * 0.95 / 300)
    assert rates["obrien_fleming"] <= bound and rates["pocock"] <= bound
    assert rates["naive"] > max(rates["obrien_fleming"], rates["pocock"])
