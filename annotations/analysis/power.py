"""Power analysis by simulation: how many participants (and items) a study needs.

The question: with ``n`` participants per arm, each answering ``m`` of ``I`` items, how often does
the primary analysis — the two-way ``t`` interval of the effect (``accuracy``
module) — exclude 0 at level ``alpha``, if explanations truly raise simulation accuracy by
``effect``? The answer is simulated, because participants and items are crossed random factors
and no closed form covers the logistic model with both.

Generative model (the mixed model of ``mixed``): participant ``p`` in arm ``a`` answers item ``i``
correctly with probability ``expit(β_0 + Δ·[a = explained] + u_p + v_i)``, ``u_p ~ N(0, σ_P²)``,
``v_i ~ N(0, σ_I²)``, items drawn afresh for each simulated study (the study's items are a sample
of the items it could have used), each participant answering ``m`` distinct items at random.
``β_0`` is set so that the baseline's population accuracy is ``baseline_accuracy`` and ``Δ`` so
that the explained arm's is ``baseline_accuracy + effect`` (population accuracies average over
``u`` and ``v``: ``simulate.simulated_accuracy_truth``).

Chance (optional ``chance``: the per-item chance ``1/|candidates shown|`` of the study's items,
``annotations.analysis.chance``): a participant who does not know answers at random, so the
probability of a right answer is ``c_i + (1 − c_i) · expit(…)``, with each simulated item's ``c_i``
drawn from the given values (items drawn afresh). ``β_0`` and ``Δ`` then give the stated accuracies
above chance: ``(baseline_accuracy − c̄)/(1 − c̄)`` and ``(baseline_accuracy + effect − c̄)/(1 − c̄)``,
``c̄`` the mean chance; a baseline at or below chance is refused. Without ``chance`` the floor is 0,
as before.

Sources of the inputs:

* **assumed**: the researcher states the baseline accuracy and the standard deviations;
* **pilot**: the mixed model fitted to a pilot study (or to the study so far) gives ``β_0``, ``σ_P``
  and ``σ_I``; the effect is still *stated* (the smallest effect worth detecting), never the
  pilot's observed effect, whose "observed power" says nothing new (Hoenig & Heisey 2001).

Search: power is evaluated with common random numbers (simulated study ``s`` with ``n``
participants per arm holds the first ``n`` participants of the same study with more), doubling
``n`` until the target is reached, then bisecting to within 5 % of ``n``. Each power is a share of ``n_simulations``
studies, so it carries a Monte Carlo standard error of ``√(p (1 − p) / n_simulations)`` (about
0.02 at 0.8 with 400 studies): "about" is the right word for the answer.

Capacity: a study takes at most ``raters_per_item`` answers to each test item per arm, so an arm
fills at ``⌊test items × raters per item ÷ test items per participant⌋`` participants
(:func:`power_design_capacity`). When that is below the number the power needs, no amount of
recruiting gets there: :func:`power_capacity_advice` says so, gives the power the full design
reaches, and what to change, with numbers (more items, more raters per item, fewer items per
participant).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Final

import numpy as np
import pandas as pd
from scipy import optimize, special

from .accuracy import _effect_two_way, _TestData
from .mixed import _mixed_model
from .responses import responses_prepare
from .simulate import simulated_accuracy_truth

__all__ = [
    "power_at",
    "power_capacity_advice",
    "power_capacity_text",
    "power_design_capacity",
    "power_from_fit",
    "power_from_pilot",
    "power_sample_size",
]

MAX_PARTICIPANTS_PER_ARM: Final = 5_000
_ARMS: Final = ("baseline", "explained")


def _chances(chance: Sequence[float] | None) -> np.ndarray | None:
    """The per-item chance values as float64, checked (each in [0, 1)); None for none."""
    if chance is None:
        return None
    values = np.asarray(chance, dtype=np.float64).reshape(-1)
    if not len(values) or not np.all(np.isfinite(values)) or np.any((values < 0.0) | (values >= 1.0)):
        raise ValueError("chance must be a non-empty list of per-item chances in [0, 1)")
    return values


def _logits(
    *, baseline_accuracy: float, effect: float, participant_sd: float, item_sd: float, chance: float = 0.0
) -> tuple[float, float]:
    """``(β_0, Δ)`` giving population accuracies ``baseline_accuracy`` and ``baseline_accuracy + effect``
    over a guessing floor of mean ``chance`` (module doc)."""
    if not 0.0 < baseline_accuracy < 1.0 or not 0.0 < baseline_accuracy + effect < 1.0:
        raise ValueError(
            f"baseline accuracy {baseline_accuracy} and effect {effect} must keep both arms' "
            f"accuracies strictly between 0 and 1"
        )
    if chance and min(baseline_accuracy, baseline_accuracy + effect) <= chance:
        raise ValueError(
            f"baseline accuracy {baseline_accuracy:.3f} and effect {effect} must keep both arms' accuracies "
            f"above chance ({chance:.3f}, one over the candidates shown, averaged over the items)"
        )

    def accuracy(logit: float) -> float:
        return simulated_accuracy_truth(logit=logit, participant_sd=participant_sd, item_sd=item_sd)

    def above_chance(value: float) -> float:
        return (value - chance) / (1.0 - chance)

    intercept = optimize.brentq(lambda x: accuracy(x) - above_chance(baseline_accuracy), -40.0, 40.0, xtol=1e-12)
    target = above_chance(baseline_accuracy + effect)
    treated = optimize.brentq(lambda x: accuracy(x) - target, -40.0, 40.0, xtol=1e-12)
    return float(intercept), float(treated - intercept)


def _study_draws(
    seed: int, simulation: int, *, n: int, n_items: int, items_per_participant: int, chance: np.ndarray | None = None
) -> dict[str, np.ndarray]:
    """Standard-normal effects and uniforms of simulated study ``simulation``, for ``n`` participants
    per arm. Each quantity has its own stream and is drawn participant by participant, so the
    draws for ``n`` are the first ``n`` of those for any larger ``n`` (common random numbers)."""
    streams = np.random.SeedSequence([int(seed), int(simulation)]).spawn(4)
    items = np.random.Generator(np.random.PCG64(streams[0])).standard_normal(n_items)
    per_arm = []
    for arm in range(2):
        arm_streams = streams[1 + arm].spawn(3)
        people = np.random.Generator(np.random.PCG64(arm_streams[0])).standard_normal(n)
        keys = np.random.Generator(np.random.PCG64(arm_streams[1])).random((n, n_items))
        uniforms = np.random.Generator(np.random.PCG64(arm_streams[2])).random((n, items_per_participant))
        per_arm.append((people, keys, uniforms))
    draws: dict = {"items": items, "arms": per_arm}
    if chance is not None:
        # Its own stream, so the draws above stay those of a study without a guessing floor.
        picker = np.random.Generator(np.random.PCG64(np.random.SeedSequence([int(seed), int(simulation), 1])))
        draws["chance"] = picker.choice(chance, size=n_items)
    return draws


def _simulated_effect(
    draws: dict, *, intercept: float, shift: float, participant_sd: float, item_sd: float, items_per_participant: int
) -> tuple[float, float | None, float | None]:
    participants, items, correct, arms = [], [], [], []
    for arm, (people, keys, uniforms) in enumerate(draws["arms"]):
        n = len(people)
        if items_per_participant < keys.shape[1]:
            chosen = np.argpartition(keys, items_per_participant - 1, axis=1)[:, :items_per_participant]
        else:
            chosen = np.broadcast_to(np.arange(keys.shape[1]), keys.shape)
        chosen = np.sort(chosen, axis=1)  # (n, m): each participant's items, in canonical order
        logit = intercept + shift * arm + participant_sd * people[:, None] + item_sd * draws["items"][chosen]
        probability = special.expit(logit)
        if "chance" in draws:  # a participant who does not know guesses among the item's candidates
            floor = draws["chance"][chosen]
            probability = floor + (1.0 - floor) * probability
        correct.append((uniforms < probability).ravel())
        participants.append(np.repeat(np.arange(n) + arm * n, items_per_participant))
        items.append(chosen.ravel())
        arms.append(np.full(n * items_per_participant, _ARMS[arm], dtype=object))
    data = _TestData(
        arms=_ARMS,
        items=np.arange(len(draws["items"])),
        arm=np.concatenate(arms),
        participant=np.concatenate(participants),
        item_code=np.concatenate(items),
        correct=np.concatenate(correct).astype(np.float64),
        model_correct=np.ones(sum(len(c) for c in correct), dtype=bool),
    )
    return _effect_two_way(data, arm=_ARMS[1], baseline=_ARMS[0])


def _check_design(
    *, n_items: int, items_per_participant: int, participant_sd: float, item_sd: float, n_simulations: int, alpha: float
) -> None:
    if int(n_items) < 2 or not 1 <= int(items_per_participant) <= int(n_items):
        raise ValueError(
            f"need 2+ items and 1 to n_items items per participant, got {n_items} items, "
            f"{items_per_participant} per participant"
        )
    if participant_sd < 0 or item_sd < 0:
        raise ValueError("standard deviations must be >= 0")
    if int(n_simulations) < 10:
        raise ValueError("n_simulations must be >= 10")
    if not 0.0 < alpha < 1.0:
        raise ValueError("alpha must lie strictly between 0 and 1")


def power_at(
    *,
    n_participants_per_arm: int,
    baseline_accuracy: float,
    effect: float,
    participant_sd: float,
    item_sd: float,
    n_items: int,
    items_per_participant: int,
    alpha: float = 0.05,
    n_simulations: int = 400,
    seed: int = 0,
    chance: Sequence[float] | None = None,
) -> dict[str, float]:
    """Simulated power of the two-way ``t`` test of the effect (see the module docstring;
    ``chance``: the items' per-item chances, or None for no guessing floor).

    Returns ``{"power", "power_se", "n_participants_per_arm"}``. Cost: ``n_simulations`` studies
    of ``2 · n · m`` answers each.
    """
    _check_design(
        n_items=n_items,
        items_per_participant=items_per_participant,
        participant_sd=participant_sd,
        item_sd=item_sd,
        n_simulations=n_simulations,
        alpha=alpha,
    )
    chances = _chances(chance)
    intercept, shift = _logits(
        baseline_accuracy=baseline_accuracy,
        effect=effect,
        participant_sd=participant_sd,
        item_sd=item_sd,
        chance=0.0 if chances is None else float(chances.mean()),
    )
    return _power(
        int(n_participants_per_arm),
        chance=chances,
        intercept=intercept,
        shift=shift,
        participant_sd=participant_sd,
        item_sd=item_sd,
        n_items=int(n_items),
        items_per_participant=int(items_per_participant),
        alpha=alpha,
        n_simulations=int(n_simulations),
        seed=int(seed),
    )


def _power(
    n: int,
    *,
    intercept: float,
    shift: float,
    participant_sd: float,
    item_sd: float,
    n_items: int,
    items_per_participant: int,
    alpha: float,
    n_simulations: int,
    seed: int,
    chance: np.ndarray | None = None,
) -> dict[str, float]:
    if n < 2:
        raise ValueError("need at least 2 participants per arm")
    rejections = 0
    for simulation in range(n_simulations):
        draws = _study_draws(
            seed, simulation, n=n, n_items=n_items, items_per_participant=items_per_participant, chance=chance
        )
        estimate, se, df = _simulated_effect(
            draws,
            intercept=intercept,
            shift=shift,
            participant_sd=participant_sd,
            item_sd=item_sd,
            items_per_participant=items_per_participant,
        )
        if se is None:
            continue
        if se == 0.0:
            rejections += estimate != 0.0
        elif df is not None:
            rejections += abs(estimate) / se > -special.stdtrit(df, alpha / 2.0)  # = stats.t.isf, without its checks
    power = float(rejections / n_simulations)
    return {"n_participants_per_arm": n, "power": power, "power_se": math.sqrt(power * (1 - power) / n_simulations)}


def power_design_capacity(*, n_items: int, raters_per_item: int, items_per_participant: int) -> int:
    """Participants an arm can take: every test item has ``raters_per_item`` places per arm and
    each participant fills ``items_per_participant`` of them."""
    if n_items < 0 or raters_per_item < 1 or items_per_participant < 1:
        raise ValueError(
            f"need 0+ items, 1+ raters per item and 1+ items per participant, got {n_items}, "
            f"{raters_per_item}, {items_per_participant}"
        )
    return (int(n_items) * int(raters_per_item)) // int(items_per_participant)


def power_capacity_advice(
    *, needed_per_arm: int | None, n_items: int, raters_per_item: int, items_per_participant: int
) -> dict[str, Any]:
    """Whether the design's capacity (:func:`power_design_capacity`) caps an arm below the
    ``needed_per_arm`` participants the power asks for, and what would lift the cap.

    Returns ``{"capacity_per_arm", "capped", "changes"}`` and the design's three numbers; ``changes`` (empty unless capped) lists
    ``{"setting", "now", "to"}`` for ``n_items`` (at least that many test items),
    ``raters_per_item`` and ``items_per_participant`` (at most that many; absent when even one
    item each cannot make room), each changed alone. More items only raise the power, so that
    change is enough; fewer items per participant lower it, so the power must be checked again
    at the new design. ``needed_per_arm`` ``None`` (not reached) is not capped by the design.
    """
    capacity = power_design_capacity(
        n_items=n_items, raters_per_item=raters_per_item, items_per_participant=items_per_participant
    )
    capped = needed_per_arm is not None and capacity < int(needed_per_arm)
    changes: list[dict[str, Any]] = []
    if capped:
        places = int(needed_per_arm) * int(items_per_participant)  # answers an arm must take
        changes.append({"setting": "n_items", "now": int(n_items), "to": -(-places // int(raters_per_item))})
        if n_items > 0:
            changes.append(
                {"setting": "raters_per_item", "now": int(raters_per_item), "to": -(-places // int(n_items))}
            )
            fewer = (int(n_items) * int(raters_per_item)) // int(needed_per_arm)
            if fewer >= 1:
                changes.append({"setting": "items_per_participant", "now": int(items_per_participant), "to": fewer})
    return {
        "capacity_per_arm": capacity,
        "capped": capped,
        "changes": changes,
        "n_items": int(n_items),
        "raters_per_item": int(raters_per_item),
        "items_per_participant": int(items_per_participant),
    }


_SETTING_NAMES: Final = {
    "n_items": "test items",
    "raters_per_item": "raters per item",
    "items_per_participant": "test items per participant",
}


def power_capacity_text(*, capacity: dict[str, Any], needed_per_arm: int) -> str:
    """What a capped design means and what to change, in a few sentences (``capacity``: a
    :func:`power_capacity_advice` result, with ``power_at_capacity`` when known)."""
    changes = "; ".join(
        f"{'at most' if c['setting'] == 'items_per_participant' else 'at least'} {c['to']} "
        f"{_SETTING_NAMES[c['setting']]} (now {c['now']})"
        for c in capacity["changes"]
    )
    reached = capacity.get("power_at_capacity")
    at_full = "" if reached is None else f", where the power is only about {reached:.2f}"
    return (
        f"The design fills an arm at {capacity['capacity_per_arm']} participants ({capacity['n_items']} test items "
        f"x {capacity['raters_per_item']} raters per item / {capacity['items_per_participant']} test items per "
        f"participant){at_full}, below the {needed_per_arm} the power needs. To make room, change one of: "
        f"{changes}. More items also raise the power; fewer items per participant lower it, so run the power "
        f"again for that design."
    )


def power_sample_size(
    *,
    baseline_accuracy: float,
    effect: float,
    participant_sd: float,
    item_sd: float,
    n_items: int,
    items_per_participant: int,
    target_power: float = 0.8,
    alpha: float = 0.05,
    n_simulations: int = 400,
    seed: int = 0,
    start: int = 10,
    max_participants_per_arm: int = MAX_PARTICIPANTS_PER_ARM,
    raters_per_item: int | None = None,
    chance: Sequence[float] | None = None,
) -> dict[str, Any]:
    """The smallest number of participants per arm whose simulated power reaches ``target_power``.

    With ``raters_per_item`` the result also has ``"capacity"``: :func:`power_capacity_advice`
    plus ``"power_at_capacity"`` and its ``"power_at_capacity_se"`` (the power of the full
    design, when it caps the arms; else ``None``).

    Returns ``{"n_participants_per_arm"`` (``None`` if not reached by ``max_participants_per_arm``:
    with few items the items' variance caps the power, and more items are needed),
    ``"power"`` (at that ``n``), ``"power_se"``, ``"curve"`` (every ``{n, power, power_se}``
    evaluated, by ``n``), the inputs, ``"intercept"`` and ``"logit_shift"`` (``β_0``, ``Δ``) and
    ``"chance"`` (the mean per-item chance, ``None`` without a guessing floor)}``.
    """
    _check_design(
        n_items=n_items,
        items_per_participant=items_per_participant,
        participant_sd=participant_sd,
        item_sd=item_sd,
        n_simulations=n_simulations,
        alpha=alpha,
    )
    if not 0.0 < target_power < 1.0:
        raise ValueError("target_power must lie strictly between 0 and 1")
    if effect == 0.0:
        raise ValueError("effect must not be 0: power is then alpha whatever the sample size")
    chances = _chances(chance)
    intercept, shift = _logits(
        baseline_accuracy=baseline_accuracy,
        effect=effect,
        participant_sd=participant_sd,
        item_sd=item_sd,
        chance=0.0 if chances is None else float(chances.mean()),
    )
    options = dict(
        chance=chances,
        intercept=intercept,
        shift=shift,
        participant_sd=float(participant_sd),
        item_sd=float(item_sd),
        n_items=int(n_items),
        items_per_participant=int(items_per_participant),
        alpha=float(alpha),
        n_simulations=int(n_simulations),
        seed=int(seed),
    )
    curve: dict[int, dict[str, float]] = {}

    def evaluate(n: int) -> float:
        if n not in curve:
            curve[n] = _power(n, **options)
        return curve[n]["power"]

    low, high = None, max(2, int(start))
    while evaluate(high) < target_power:
        low = high
        if high >= max_participants_per_arm:
            high = None
            break
        high = min(2 * high, int(max_participants_per_arm))
    if high is not None:
        low = low if low is not None else 1
        # invariant: power(low) < target <= power(high) (or low is below 2); stop within 5 %, well
        # inside the Monte Carlo error of each power
        while high - low > max(1, high // 20):
            middle = (low + high) // 2
            if middle >= 2 and evaluate(middle) >= target_power:
                high = middle
            else:
                low = middle
    found = curve.get(high) if high is not None else None
    capacity = None
    if raters_per_item is not None:
        capacity = power_capacity_advice(
            needed_per_arm=high,
            n_items=int(n_items),
            raters_per_item=int(raters_per_item),
            items_per_participant=int(items_per_participant),
        )
        full = capacity["capacity_per_arm"] if capacity["capped"] and capacity["capacity_per_arm"] >= 2 else None
        if full is not None:
            evaluate(full)
        capacity["power_at_capacity"] = None if full is None else curve[full]["power"]
        capacity["power_at_capacity_se"] = None if full is None else curve[full]["power_se"]
    return {
        "n_participants_per_arm": high,
        "power": None if found is None else found["power"],
        "power_se": None if found is None else found["power_se"],
        "target_power": float(target_power),
        "alpha": float(alpha),
        "baseline_accuracy": float(baseline_accuracy),
        "effect": float(effect),
        "participant_sd": float(participant_sd),
        "item_sd": float(item_sd),
        "n_items": int(n_items),
        "items_per_participant": int(items_per_participant),
        "intercept": intercept,
        "logit_shift": shift,
        "chance": None if chances is None else float(chances.mean()),
        "n_simulations": int(n_simulations),
        "seed": int(seed),
        "curve": [curve[n] for n in sorted(curve)],
        "capacity": capacity,
    }


def power_from_fit(
    fit: dict[str, Any],
    *,
    effect: float,
    n_items: int,
    items_per_participant: int,
    target_power: float = 0.8,
    alpha: float = 0.05,
    n_simulations: int = 400,
    seed: int = 0,
    raters_per_item: int | None = None,
    chance: Sequence[float] | None = None,
) -> dict[str, Any]:
    """:func:`power_sample_size` with the baseline accuracy and the variance components of a fitted
    :func:`~annotations.analysis.mixed_model` (``fit``); the baseline's population accuracy is the
    one implied by ``β_0``, ``σ_P`` and ``σ_I``; ``chance`` is passed on. Adds ``"source": "pilot"`` and ``"pilot":
    {"n_responses", "intercept", "participant_sd", "item_sd"}``."""
    participant_sd = fit["variance_components"]["participant"]["sd"]
    item_sd = fit["variance_components"]["item"]["sd"]
    base = simulated_accuracy_truth(logit=fit["intercept"]["log_odds"], participant_sd=participant_sd, item_sd=item_sd)
    result = power_sample_size(
        baseline_accuracy=base,
        effect=effect,
        participant_sd=participant_sd,
        item_sd=item_sd,
        n_items=int(n_items),
        items_per_participant=int(items_per_participant),
        target_power=target_power,
        alpha=alpha,
        n_simulations=n_simulations,
        seed=seed,
        raters_per_item=raters_per_item,
        chance=chance,
    )
    result["source"] = "pilot"
    result["pilot"] = {
        "n_responses": int(fit["n_responses"]),
        "intercept": fit["intercept"]["log_odds"],
        "participant_sd": participant_sd,
        "item_sd": item_sd,
    }
    return result


def power_from_pilot(
    df: pd.DataFrame,
    *,
    baseline: str,
    effect: float,
    n_items: int | None = None,
    items_per_participant: int | None = None,
    target_power: float = 0.8,
    alpha: float = 0.05,
    n_simulations: int = 400,
    seed: int = 0,
) -> dict[str, Any]:
    """:func:`power_from_fit` on the mixed model of a pilot's rows not flagged ``excluded``.

    The design defaults to the pilot's (its number of items and median answers per participant);
    ``"pilot"`` also gets ``"n_participants_per_arm"``. The guessing floor is each pilot item's
    chance, one over its candidates shown (``candidate_order``), when the rows say it.
    """
    prepared = responses_prepare(df)
    kept = prepared[~prepared["excluded"]].reset_index(drop=True)
    fit = _mixed_model(kept, baseline=baseline, seed=seed, confidence_level=0.95)
    test = kept[(kept["phase"] == "test") & kept["correct_simulation"].notna()]
    per_participant = test.groupby("participant")["item"].size()
    known = test[test["n_candidates"].notna() & (test["n_candidates"] >= 1)]
    chance = (1.0 / known.groupby("item", sort=True)["n_candidates"].mean()).to_numpy() if len(known) else None
    result = power_from_fit(
        fit,
        effect=effect,
        n_items=int(n_items if n_items is not None else test["item"].nunique()),
        items_per_participant=int(
            items_per_participant
            if items_per_participant is not None
            else max(1, round(float(per_participant.median())))
        ),
        target_power=target_power,
        alpha=alpha,
        n_simulations=n_simulations,
        seed=seed,
        chance=chance,
    )
    result["pilot"]["n_participants_per_arm"] = {
        str(arm): int(n) for arm, n in test.groupby("condition", sort=True)["participant"].nunique().items()
    }
    return result
