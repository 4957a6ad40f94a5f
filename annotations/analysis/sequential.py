"""Sequential monitoring: interim looks at a study with alpha spending, declared before launch.

A researcher who looks at the effect while a study fills and stops as soon as ``p < 0.05`` makes
false discoveries far more often than 5 % of the time. A *group-sequential* plan fixes, before
the first participant, when the looks happen and how much of the type-I error each may spend; the
study may then stop early at a look whose statistic crosses that look's boundary, and the error
over all looks stays at ``alpha``.

Plan (``Study.sequential_monitoring``, from the spec's ``sequential`` section, locked at launch)
-------------------------------------------------------------------------------------------
``spending``  ``"obrien_fleming"`` or ``"pocock"``: the Lan–DeMets (1983) spending functions,
              each side of the two-sided test spending half of ``alpha`` (the convention of
              gsDesign, rpact and ldbounds): ``α(t) = 4 − 4 Φ(z_{1−α/4} / √t)`` (O'Brien–Fleming
              type: almost nothing spent early) and ``α(t) = α · ln(1 + (e − 1) t)`` (Pocock
              type: spent evenly).
``alpha``     two-sided type-I error over all looks and all comparisons (default 0.05). With
              several explanation arms each comparison with the baseline gets ``alpha / m``
              (Bonferroni), so the family-wise error stays at ``alpha``.
``looks``     participants per arm at each look, increasing; the last is the maximum sample
              size, where the rest of ``alpha`` is spent. E.g. ``[20, 40, 60]``.
``effect_of_interest``  optional: the smallest gain in simulation accuracy worth detecting
              (e.g. 0.10); used by the power card, not by the looks.

Looks
-----
A participant counts once they have ``complete_after`` scored test answers (the study's items
per participant; the service passes it) and were not excluded by the pre-registered rules; their
completion time is the time of their last test answer. Look ``k`` is reached when every arm has
``looks[k]`` such participants, and its data are, in each arm, the first ``looks[k]`` to complete
(ties broken by participant identifier) — so a look's data never change once it is reached,
whenever the dashboard is opened, and the CSV export reproduces them.

At each look and for each explanation arm, the statistic is the difference in simulation accuracy
with its two-way standard error (``accuracy`` module), ``t = estimate / se`` with
Satterthwaite's ``df``, turned into a normal score ``z = Φ⁻¹(F_t(t; df))`` so that few clusters do
not inflate the error. The comparison crosses at look ``k`` when ``|z| ≥ c_k``. Information grows
with the participants per arm, so look ``k`` sits at information fraction ``t_k = looks[k] /
looks[-1]``.

Boundaries ``c_k`` solve ``P(|Z_1| < c_1, …, |Z_{k−1}| < c_{k−1}, |Z_k| ≥ c_k) = α(t_k) − α(t_{k−1})``
for the canonical joint distribution of the ``Z_k`` (Brownian motion at times ``t_k``), computed by
recursive numerical integration on a grid (Armitage, McPherson & Rowe 1969; Jennison & Turnbull
2000, ch. 19). They agree with published tables to 3 decimals (``tests/analysis/test_sequential.py``).

Only efficacy boundaries are given (no futility stopping), and the study may stop when every
comparison has crossed or the last look is reached.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import pandas as pd
from scipy import optimize, special, stats

from .accuracy import _effect_two_way, _test_data, _test_data_of
from .responses import responses_prepare, sorted_codes

__all__ = [
    "SEQUENTIAL_KEYS",
    "SPENDING_FUNCTIONS",
    "SequentialPlan",
    "alpha_spent",
    "sequential_boundaries",
    "sequential_monitor",
    "sequential_plan_validate",
]

SPENDING_FUNCTIONS: Final = ("obrien_fleming", "pocock")
SEQUENTIAL_KEYS: Final = ("spending", "alpha", "looks", "effect_of_interest")
MAX_LOOKS: Final = 20
_GRID: Final = 1001  # points of the integration grid on the continuation region (odd: Simpson)


@dataclass(frozen=True)
class SequentialPlan:
    """A validated plan (see the module docstring)."""

    spending: str
    looks: tuple[int, ...]
    alpha: float = 0.05
    effect_of_interest: float | None = None

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"spending": self.spending, "alpha": self.alpha, "looks": list(self.looks)}
        if self.effect_of_interest is not None:
            out["effect_of_interest"] = self.effect_of_interest
        return out


def sequential_plan_validate(plan: Mapping[str, Any] | None) -> SequentialPlan | None:
    """Check a plan (a mapping as stored or read from a spec); ``None``/empty means no plan.

    Raises ``ValueError`` naming the key: unknown keys, an unknown spending function, ``alpha``
    outside (0, 0.5], looks that are not increasing whole numbers >= 2 (at most 20 looks), an
    ``effect_of_interest`` outside (0, 1).
    """
    if not plan:
        return None
    if not isinstance(plan, Mapping):
        raise ValueError(f"must be a mapping with keys {list(SEQUENTIAL_KEYS)}")
    unknown = sorted(set(plan) - set(SEQUENTIAL_KEYS))
    if unknown:
        raise ValueError(f"unknown key(s) {unknown}; known: {list(SEQUENTIAL_KEYS)}")
    spending = plan.get("spending")
    if spending not in SPENDING_FUNCTIONS:
        raise ValueError(f"spending: must be one of {list(SPENDING_FUNCTIONS)}, got {spending!r}")
    alpha = plan.get("alpha", 0.05)
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0.0 < alpha <= 0.5:
        raise ValueError(f"alpha: must be a number in (0, 0.5], got {alpha!r}")
    looks = plan.get("looks")
    if not isinstance(looks, Sequence) or isinstance(looks, str) or not looks:
        raise ValueError(
            f"looks: must be a list of participants per arm at each look, e.g. [20, 40, 60]; got {looks!r}"
        )
    if len(looks) > MAX_LOOKS:
        raise ValueError(f"looks: at most {MAX_LOOKS} looks, got {len(looks)}")
    for value in looks:
        if isinstance(value, bool) or not isinstance(value, int) or value < 2:
            raise ValueError(f"looks: each look is a whole number of participants per arm >= 2, got {value!r}")
    if any(later <= earlier for earlier, later in zip(looks, looks[1:])):
        raise ValueError(f"looks: must increase, got {list(looks)}")
    effect = plan.get("effect_of_interest")
    if effect is not None and (
        isinstance(effect, bool) or not isinstance(effect, (int, float)) or not 0.0 < effect < 1.0
    ):
        raise ValueError(f"effect_of_interest: must be a gain in accuracy between 0 and 1, e.g. 0.1; got {effect!r}")
    return SequentialPlan(
        spending=spending,
        looks=tuple(int(v) for v in looks),
        alpha=float(alpha),
        effect_of_interest=None if effect is None else float(effect),
    )


def alpha_spent(fraction: float, *, alpha: float, spending: str) -> float:
    """Cumulative two-sided type-I error ``α(t)`` spent by information fraction ``t`` in [0, 1]."""
    t = min(max(float(fraction), 0.0), 1.0)
    if t == 0.0:
        return 0.0
    if spending == "obrien_fleming":
        return float(4.0 * stats.norm.sf(stats.norm.isf(alpha / 4.0) / math.sqrt(t)))
    if spending == "pocock":
        return float(alpha * math.log(1.0 + (math.e - 1.0) * t))
    raise ValueError(f"spending must be one of {list(SPENDING_FUNCTIONS)}, got {spending!r}")


def _simpson_weights(n: int, width: float) -> np.ndarray:
    weights = np.ones(n)
    weights[1:-1:2] = 4.0
    weights[2:-1:2] = 2.0
    return weights * width / (3.0 * (n - 1))


def sequential_boundaries(fractions: Sequence[float], *, alpha: float, spending: str) -> list[float]:
    """Two-sided boundaries ``c_k`` for looks at information ``fractions`` (increasing, last 1).

    Each look spends ``α(t_k) − α(t_{k−1})`` exactly (the last look: what is left of ``alpha``),
    under the canonical joint distribution ``Z_k = W(t_k) / √t_k`` of a Brownian motion ``W``. The
    sub-density of ``Z_k`` on the paths that have not yet crossed is carried on a grid of 1001 points
    (Simpson's rule). ``inf`` marks a look that spends nothing. Cost: ``O(K · 1001²)``, once per
    plan (cached).
    """
    return list(_boundaries(tuple(float(value) for value in fractions), float(alpha), spending))


@functools.lru_cache(maxsize=64)
def _boundaries(fractions: tuple[float, ...], alpha: float, spending: str) -> tuple[float, ...]:
    t = list(fractions)
    if not t or any(b <= a for a, b in zip(t, t[1:])) or t[0] <= 0.0 or t[-1] > 1.0 + 1e-12:
        raise ValueError(f"fractions must increase within (0, 1], got {t}")
    t[-1] = 1.0
    spent = [alpha_spent(value, alpha=alpha, spending=spending) for value in t]
    spent[-1] = alpha
    boundaries: list[float] = []
    grid = weights = density = None
    previous = 0.0
    for k, (t_k, cumulative) in enumerate(zip(t, spent)):
        target = cumulative - previous
        if k == 0:
            c = float(stats.norm.isf(target / 2.0)) if target > 0 else math.inf
        else:
            t_prev = t[k - 1]
            step = math.sqrt(t_k - t_prev)
            shift = grid * math.sqrt(t_prev)
            mass = weights * density

            def crossing(c: float) -> float:
                upper = stats.norm.sf((c * math.sqrt(t_k) - shift) / step)
                lower = stats.norm.cdf((-c * math.sqrt(t_k) - shift) / step)
                return float((mass * (upper + lower)).sum())

            if target <= 0:
                c = math.inf
            else:
                c = float(optimize.brentq(lambda value: crossing(value) - target, 1e-6, 40.0, xtol=1e-10))
        boundaries.append(c)
        previous = cumulative
        # sub-density of Z_k on the continuation region (−c, c)
        bound = min(c, 12.0)
        new_grid = np.linspace(-bound, bound, _GRID)
        if k == 0:
            new_density = stats.norm.pdf(new_grid)
        else:
            step = math.sqrt(t_k - t[k - 1])
            kernel = stats.norm.pdf((new_grid[:, None] * math.sqrt(t_k) - grid[None, :] * math.sqrt(t[k - 1])) / step)
            new_density = (kernel * (weights * density)[None, :]).sum(axis=1) * math.sqrt(t_k) / step
        grid, density = new_grid, new_density
        weights = _simpson_weights(_GRID, 2.0 * bound)
    return tuple(boundaries)


def _completion(prepared: pd.DataFrame, *, complete_after: int) -> pd.DataFrame:
    """One row per complete, non-excluded participant: arm and completion time, in look order."""
    test = prepared[(prepared["phase"] == "test") & prepared["correct_simulation"].notna() & ~prepared["excluded"]]
    if "created_at" not in test.columns:
        raise ValueError("sequential looks need the responses' created_at times")
    # by participant (sorted): the arm of the first row, the number of rows, the latest time (NaT
    # skipped); the same as a groupby aggregation, at a third of its cost
    participants, code = sorted_codes(test["participant"])
    first_row = np.full(len(participants), len(code))
    np.minimum.at(first_row, code, np.arange(len(code)))
    per = pd.DataFrame(
        {
            "participant": participants,
            "condition": test["condition"].to_numpy(dtype=object)[first_row],
            "n": np.bincount(code, minlength=len(participants)),
            "completed": test["created_at"].groupby(code).max().to_numpy(),
        }
    )
    per = per[per["n"] >= complete_after].reset_index(drop=True)
    return per.sort_values(["completed", "participant"], kind="stable")


def _z_score(estimate: float, se: float | None, df: float | None) -> float | None:
    if se is None or not np.isfinite(estimate):
        return None
    if se == 0.0:
        return 0.0 if estimate == 0.0 else math.copysign(math.inf, estimate)
    t = estimate / se
    if df is None:
        return float(t)
    # the normal score with the same tail probability as t on df degrees of freedom
    # = -norm.isf(t.cdf(t, df)) and norm.isf(t.sf(t, df)), by the special functions scipy.stats calls
    return float(special.ndtri(special.stdtr(df, t)) if t < 0 else -special.ndtri(special.stdtr(df, -t)))


def sequential_monitor(
    df: pd.DataFrame,
    *,
    baseline: str,
    plan: Mapping[str, Any] | SequentialPlan,
    complete_after: int,
) -> dict[str, Any]:
    """Where a study stands against its sequential plan (see the module docstring).

    ``df`` is the response frame with the pre-registered ``excluded`` flags and ``created_at``.
    Returns ``{"plan", "complete_after", "alpha_per_comparison", "boundaries": [c_k],
    "fractions": [t_k], "alpha_spent": [α(t_k)], "participants_per_arm": {arm: n complete},
    "looks": [{"look", "participants_per_arm", "reached", "comparisons": {arm: {"estimate", "se",
    "df", "z", "boundary", "crossed"}}}], "comparisons": {arm: {"decision", "look"}}, "may_stop",
    "status"}``. ``decision`` is ``"effect"`` (crossed at ``look``, the first crossing), ``"no
    effect"`` (the last look reached without crossing) or ``"continue"``; ``status`` says it in a
    sentence.
    """
    typed = plan if isinstance(plan, SequentialPlan) else sequential_plan_validate(plan)
    if typed is None:
        raise ValueError("no sequential plan")
    if int(complete_after) < 1:
        raise ValueError("complete_after must be >= 1")
    prepared = responses_prepare(df)
    if "created_at" in df.columns:
        prepared["created_at"] = pd.to_datetime(df["created_at"].reset_index(drop=True), utc=True)
    completion = _completion(prepared, complete_after=int(complete_after))
    arms = sorted(str(arm) for arm in prepared.loc[prepared["phase"] == "test", "condition"].unique())
    if baseline not in arms:
        raise ValueError(f"baseline arm {baseline!r} has no test-phase responses; arms: {arms}")
    others = [arm for arm in arms if arm != baseline]
    if not others:
        raise ValueError("sequential monitoring needs an explanation arm besides the baseline")
    alpha_each = typed.alpha / len(others)
    fractions = [n / typed.looks[-1] for n in typed.looks]
    boundaries = sequential_boundaries(fractions, alpha=alpha_each, spending=typed.spending)
    order = {arm: rows["participant"].tolist() for arm, rows in completion.groupby("condition", sort=True)}
    complete = {arm: len(order.get(arm, [])) for arm in arms}
    looks = []
    decisions = {arm: {"decision": "continue", "look": None} for arm in others}
    # the looks are nested (the first n complete participants of each arm): the test data of the
    # last look reached is built once, and each look takes its participants' rows from it
    reached_n = [n for n in typed.looks if all(complete[arm] >= n for arm in arms)]
    if reached_n:
        widest = {participant for arm in arms for participant in order[arm][: reached_n[-1]]}
        widest_data = _test_data(prepared[prepared["participant"].isin(widest)])
        code_of = {identifier: code for code, identifier in enumerate(widest_data.participants)}
    for k, (n, boundary) in enumerate(zip(typed.looks, boundaries), start=1):
        reached = all(complete[arm] >= n for arm in arms)
        look: dict[str, Any] = {
            "look": k,
            "participants_per_arm": n,
            "reached": reached,
            "boundary": boundary,
            "comparisons": {},
        }
        if reached:
            chosen = [code_of[participant] for arm in arms for participant in order[arm][:n]]
            data = _test_data_of(widest_data, np.asarray(chosen, dtype=np.int64))
            for arm in others:
                estimate, se, dof = _effect_two_way(data, arm=arm, baseline=baseline)
                z = _z_score(estimate, se, dof)
                crossed = z is not None and abs(z) >= boundary
                look["comparisons"][arm] = {"estimate": estimate, "se": se, "df": dof, "z": z, "crossed": crossed}
                if crossed and decisions[arm]["decision"] == "continue":
                    decisions[arm] = {"decision": "effect", "look": k}
            if k == len(typed.looks):
                for arm in others:
                    if decisions[arm]["decision"] == "continue":
                        decisions[arm] = {"decision": "no effect", "look": k}
        looks.append(look)
    may_stop = all(found["decision"] != "continue" for found in decisions.values())
    reached_looks = [look["look"] for look in looks if look["reached"]]
    if may_stop:
        verdicts = [
            f"{arm}: effect at look {found['look']}"
            if found["decision"] == "effect"
            else f"{arm}: no effect at the last look"
            for arm, found in decisions.items()
        ]
        status = "the study may stop: " + "; ".join(verdicts)
    else:
        following = next((look for look in looks if not look["reached"]), None)
        done = f"look {reached_looks[-1]} of {len(looks)} taken" if reached_looks else "no look taken yet"
        status = (
            f"continue: {done}; the next look comes at {following['participants_per_arm']} complete "
            f"participants per arm (now {min(complete.values())})"
        )
    return {
        "plan": typed.as_dict(),
        "complete_after": int(complete_after),
        "alpha_per_comparison": alpha_each,
        "fractions": fractions,
        "alpha_spent": [alpha_spent(t, alpha=alpha_each, spending=typed.spending) for t in fractions[:-1]]
        + [alpha_each],
        "boundaries": boundaries,
        "participants_per_arm": complete,
        "looks": looks,
        "comparisons": decisions,
        "may_stop": may_stop,
        "status": status,
    }
