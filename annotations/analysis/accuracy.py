"""Simulation accuracy, its two-way cluster bootstrap, arm effects and the permutation test.

Definitions
-----------
**Simulation accuracy** of an arm (over a subset of its test-phase responses) is the response-level
mean of ``correct_simulation``: ``sum(correct) / count`` over the rows with
``phase == "test"`` whose ``correct_simulation`` is not missing. Subsets: ``"all"``,
``"model_correct"`` (rows with ``model_prediction == gold_label``) and ``"model_incorrect"``
(the rest).

**Two-way cluster ("pigeonhole" / product) bootstrap** (Owen 2007; McCullagh 2000). Responses are
crossed with two random factors, participants and items, so neither one-way bootstrap is right.
One resample draws, independently and with replacement, ``P_a`` participants of arm ``a`` out of its
``P_a`` and ``I`` items out of the ``I`` items answered in the analysed data (the union over arms).
With ``w_p`` and ``v_i`` the number of times participant ``p`` and item ``i`` were drawn, a
response of ``p`` on ``i`` enters the resample ``w_p * v_i`` times (zero unless both were drawn),
so the resampled accuracy is::

    sum_{p,i} w_p v_i S[p, i] / sum_{p,i} w_p v_i N[p, i]

with ``S``/``N`` the participant × item matrices of correct answers / answers. It is computed for
all resamples at once as sparse-matrix products (cost ``O(B * (nnz + I))`` per arm, ``B``
resamples). The interval is the percentile interval (``numpy.quantile``, linear interpolation) of
the resampled statistic. Resamples in which no response of the subset was drawn (ratio 0/0) are
dropped and counted (``n_resamples_valid``). The product bootstrap is known to be mildly
*conservative*: it counts the response-level noise about three times, so intervals are somewhat wide
when participant and item effects are small compared with the binomial noise.

**Arms**: participants are between-subjects, so each arm's participants are resampled on their own
(their own counts ``w``), while the item counts ``v`` of one resample are *shared by all arms*,
because the arms answer the same items. The effect of arm ``a`` is the per-resample difference
``acc_a - acc_baseline``; its interval is the percentile interval of those differences.

**Random streams**: resample ``b``'s item counts come from ``SeedSequence([seed, 1, 0])`` and arm
``a``'s participant counts from ``SeedSequence([seed, 1, key(a)])`` (``key`` = first 8 bytes of
SHA-256 of the arm name), drawn in fixed chunks of 100 resamples. An arm's numbers thus depend
only on the seed, its own data and the item set, not on which other arms exist, and the first
``B`` resamples are the same for any ``n_resamples >= B``. Participants and items are ordered by
their string identifiers, so row order is irrelevant.

**Permutation test** (arm ``a`` vs the baseline): pool the participants of both arms and keep each
participant's totals (correct, answered) per subset. One permutation draws which ``P_a`` of the
pooled participants are labelled ``a`` (uniformly, all participant labels permuted together, a
participant's responses always move together); the statistic is the same response-level
difference of accuracies. Two-sided p-value with the +1 correction (Phipson & Smyth 2010)::

    p = (1 + #{ |T*| >= |T_obs| - 1e-12 }) / (1 + n_valid)

where permutations with an empty side in the subset are dropped (``n_valid``). Exact under the null
that arm labels are exchangeable across participants. Stream: ``SeedSequence([seed, 2, key(a)])``.

**Gain** (pre/post designs): ``acc_test - acc_pretest`` per arm, bootstrapped the same way with
participants (of the arm, in either phase) and items (union of both phases) drawn once per
resample and used for both phases. Stream: ``SeedSequence([seed, 3, ...])``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, TypedDict

import numpy as np
import pandas as pd
from scipy import sparse

from .responses import responses_prepare, sorted_codes, stable_stream_key

__all__ = [
    "SUBSETS",
    "Interval",
    "arm_effects",
    "arm_permutation_test",
    "simulation_accuracy",
    "simulation_gain",
]

SUBSETS: Final = ("all", "model_correct", "model_incorrect")
CHUNK: Final = 100  # resamples drawn per chunk; fixed so that results do not depend on data size
_STREAM_ACCURACY: Final = 1
_STREAM_PERMUTATION: Final = 2
_STREAM_GAIN: Final = 3


class Interval(TypedDict):
    """A point estimate with its bootstrap percentile interval (see the module docstring)."""

    estimate: float | None
    ci_low: float | None
    ci_high: float | None
    se: float | None
    n_resamples_valid: int


def _float(value: float) -> float | None:
    value = float(value)
    return value if np.isfinite(value) else None


def _interval(estimate: float, replicates: np.ndarray, *, confidence_level: float) -> Interval:
    valid = replicates[np.isfinite(replicates)]
    if not np.isfinite(estimate) or len(valid) == 0:
        return Interval(estimate=_float(estimate), ci_low=None, ci_high=None, se=None, n_resamples_valid=len(valid))
    # rounded so that confidence_level=0.95 asks for exactly the 0.025 and 0.975 quantiles
    levels = [round((1.0 - confidence_level) / 2, 12), round((1.0 + confidence_level) / 2, 12)]
    low, high = np.quantile(valid, levels)
    se = float(np.std(valid, ddof=1)) if len(valid) > 1 else None
    return Interval(
        estimate=float(estimate), ci_low=float(low), ci_high=float(high), se=se, n_resamples_valid=int(len(valid))
    )


def _ratio(numerator: np.ndarray | float, denominator: np.ndarray | float) -> np.ndarray:
    numerator = np.asarray(numerator, dtype=np.float64)
    denominator = np.asarray(denominator, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(denominator > 0, numerator / np.where(denominator > 0, denominator, 1.0), np.nan)


def _rng(seed: int, *key: int) -> np.random.Generator:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence([int(seed), *key])))


def _draw_counts(rng: np.random.Generator, *, n: int, size: int) -> np.ndarray:
    """``size`` rows of draw counts: how often each of ``n`` units is drawn in ``n`` draws with replacement."""
    draws = rng.integers(0, n, size=(size, n))
    draws += (np.arange(size) * n)[:, None]
    return np.bincount(draws.ravel(), minlength=size * n).reshape(size, n).astype(np.float64)


def _check_resamples(n_resamples: int, confidence_level: float) -> None:
    if int(n_resamples) < 1:
        raise ValueError("n_resamples must be >= 1")
    if not 0.0 < confidence_level < 1.0:
        raise ValueError("confidence_level must lie strictly between 0 and 1")


@dataclass(frozen=True)
class _Cluster:
    """One arm's responses as sparse participant × (block, item) matrices.

    ``matrix_t`` has shape ``(n_blocks * n_items, n_participants)``: row ``b * n_items + i`` holds,
    for every participant, the value of block ``b`` on item ``i`` (e.g. block 0 = correct answers,
    block 1 = answers).
    """

    participants: np.ndarray
    matrix_t: sparse.csr_matrix
    totals: np.ndarray  # (n_blocks,) totals over all responses


def _build_clusters(
    *,
    arm: np.ndarray,
    participant: np.ndarray,
    item_code: np.ndarray,
    n_items: int,
    blocks: np.ndarray,
    arms: Sequence[str],
) -> dict[str, _Cluster]:
    """``blocks`` is (n_rows, n_blocks) of per-row values to sum (e.g. correct, 1)."""
    n_blocks = blocks.shape[1]
    clusters: dict[str, _Cluster] = {}
    for name in arms:
        rows = np.flatnonzero(arm == name)
        participants, p_code = np.unique(participant[rows], return_inverse=True)
        row_index = (np.arange(n_blocks)[None, :] * n_items + item_code[rows][:, None]).ravel()
        col_index = np.repeat(p_code, n_blocks)
        data = blocks[rows].ravel()
        matrix_t = sparse.coo_matrix(
            (data, (row_index, col_index)), shape=(n_blocks * n_items, len(participants))
        ).tocsr()
        matrix_t.sum_duplicates()
        clusters[name] = _Cluster(participants=participants, matrix_t=matrix_t, totals=blocks[rows].sum(axis=0))
    return clusters


def _two_way_bootstrap_totals(
    clusters: dict[str, _Cluster], *, n_items: int, n_resamples: int, seed: int, stream: int
) -> dict[str, np.ndarray]:
    """Resampled block totals per arm, shape ``(n_blocks, n_resamples)`` (see the module docstring).

    Replicate ``b`` of arm ``a``, block ``k`` is ``sum_{p,i} w[a,b,p] v[b,i] X_k[p,i]``.
    """
    item_rng = _rng(seed, stream, 0)
    arm_rngs = {name: _rng(seed, stream, stable_stream_key(name)) for name in clusters}
    out = {
        name: np.empty((cluster.totals.shape[0], n_resamples), dtype=np.float64) for name, cluster in clusters.items()
    }
    for start in range(0, n_resamples, CHUNK):
        size = min(CHUNK, n_resamples - start)
        item_counts = _draw_counts(item_rng, n=n_items, size=size)  # (size, I)
        for name, cluster in clusters.items():
            n_participants = len(cluster.participants)
            n_blocks = cluster.totals.shape[0]
            participant_counts = _draw_counts(arm_rngs[name], n=n_participants, size=size)  # (size, P)
            by_item = cluster.matrix_t @ participant_counts.T  # (n_blocks * I, size)
            by_item = np.asarray(by_item).reshape(n_blocks, n_items, size)
            out[name][:, start : start + size] = np.einsum("kis,si->ks", by_item, item_counts)
    return out


@dataclass(frozen=True)
class _TestData:
    arms: tuple[str, ...]
    items: np.ndarray
    arm: np.ndarray
    participant: np.ndarray  # int codes of the sorted participant identifiers
    item_code: np.ndarray
    correct: np.ndarray
    model_correct: np.ndarray


def _test_data(prepared: pd.DataFrame) -> _TestData:
    test = prepared[(prepared["phase"] == "test") & prepared["correct_simulation"].notna()]
    _check_between_subjects(test)
    arm = test["condition"].to_numpy(dtype=object)
    items, item_code = sorted_codes(test["item"])
    _, participant_code = sorted_codes(test["participant"])
    return _TestData(
        arms=tuple(sorted(set(arm))),
        items=items,
        arm=arm,
        participant=participant_code,
        item_code=item_code,
        correct=test["correct_simulation"].to_numpy(dtype=bool).astype(np.float64),
        model_correct=test["model_correct"].to_numpy(dtype=bool),
    )


def _check_between_subjects(rows: pd.DataFrame) -> None:
    arms_per_participant = rows.groupby("participant", sort=True)["condition"].nunique()
    crossed = arms_per_participant[arms_per_participant > 1]
    if len(crossed):
        raise ValueError(
            f"participants must belong to one arm (between-subjects); {len(crossed)} answered in several, "
            f"e.g. {crossed.index[0]!r}"
        )


def _accuracy_blocks(data: _TestData) -> np.ndarray:
    """Per-row blocks: correct, answered, correct & model right, answered & model right."""
    right = data.model_correct.astype(np.float64)
    return np.column_stack([data.correct, np.ones_like(data.correct), data.correct * right, right])


def _subset_ratios(totals: np.ndarray) -> dict[str, np.ndarray]:
    """Block totals (4, ...) → accuracy per subset."""
    correct, answered, correct_right, answered_right = totals
    return {
        "all": _ratio(correct, answered),
        "model_correct": _ratio(correct_right, answered_right),
        "model_incorrect": _ratio(correct - correct_right, answered - answered_right),
    }


@dataclass(frozen=True)
class _AccuracyBootstrap:
    data: _TestData
    clusters: dict[str, _Cluster]
    totals: dict[str, np.ndarray]  # arm → (4, B)


def _accuracy_bootstrap(prepared: pd.DataFrame, *, seed: int, n_resamples: int) -> _AccuracyBootstrap:
    data = _test_data(prepared)
    clusters = _build_clusters(
        arm=data.arm,
        participant=data.participant,
        item_code=data.item_code,
        n_items=len(data.items),
        blocks=_accuracy_blocks(data),
        arms=data.arms,
    )
    totals = _two_way_bootstrap_totals(
        clusters, n_items=len(data.items), n_resamples=n_resamples, seed=seed, stream=_STREAM_ACCURACY
    )
    return _AccuracyBootstrap(data=data, clusters=clusters, totals=totals)


def _accuracy_result(boot: _AccuracyBootstrap, *, confidence_level: float) -> dict[str, dict[str, dict]]:
    data = boot.data
    out: dict[str, dict[str, dict]] = {}
    for name in data.arms:
        rows = data.arm == name
        observed = boot.clusters[name].totals
        point = _subset_ratios(observed)
        replicates = _subset_ratios(boot.totals[name])
        masks = {"all": np.ones(rows.sum(), dtype=bool), "model_correct": data.model_correct[rows]}
        masks["model_incorrect"] = ~masks["model_correct"]
        arm_out: dict[str, dict] = {}
        for subset in SUBSETS:
            mask = masks[subset]
            result = dict(_interval(float(point[subset]), replicates[subset], confidence_level=confidence_level))
            result["n_responses"] = int(mask.sum())
            result["n_correct"] = int(data.correct[rows][mask].sum())
            result["n_participants"] = int(len(np.unique(data.participant[rows][mask])))
            result["n_items"] = int(len(np.unique(data.item_code[rows][mask])))
            arm_out[subset] = result
        out[name] = arm_out
    return out


def simulation_accuracy(
    df: pd.DataFrame, *, seed: int, n_resamples: int = 1000, confidence_level: float = 0.95
) -> dict[str, dict[str, dict]]:
    """Simulation accuracy per arm and subset, with two-way cluster bootstrap intervals.

    ``result[arm][subset]`` for subset in ``("all", "model_correct", "model_incorrect")`` holds
    ``estimate`` (= correct / answered over the arm's test-phase rows in the subset), ``ci_low``,
    ``ci_high`` (percentile interval at ``confidence_level``), ``se`` (bootstrap standard
    deviation), ``n_resamples_valid``, ``n_responses``, ``n_correct``, ``n_participants`` and
    ``n_items``. Undefined values (empty subset) are ``None``. Definitions and random streams: see
    the module docstring. Cost: ``O(n_resamples * (n_responses + n_arms * n_items))``.
    """
    _check_resamples(n_resamples, confidence_level)
    boot = _accuracy_bootstrap(responses_prepare(df), seed=seed, n_resamples=int(n_resamples))
    return _accuracy_result(boot, confidence_level=confidence_level)


def _permutation_totals(data: _TestData, *, arm: str, baseline: str) -> tuple[np.ndarray, int]:
    """Pooled participant totals (P, 4): arm's participants first (sorted), then the baseline's."""
    keep = (data.arm == arm) | (data.arm == baseline)
    blocks = _accuracy_blocks(data)[keep]
    is_arm = data.arm[keep] == arm
    # participant identifiers are unique within a study and each belongs to one arm
    participants, code = np.unique(data.participant[keep], return_inverse=True)
    first_arm = np.zeros(len(participants), dtype=bool)
    first_arm[code[is_arm]] = True
    order = np.concatenate([np.flatnonzero(first_arm), np.flatnonzero(~first_arm)])
    totals = np.zeros((len(participants), blocks.shape[1]))
    np.add.at(totals, code, blocks)
    return totals[order], int(first_arm.sum())


def _permutation_result(
    data: _TestData, *, arm: str, baseline: str, seed: int, n_permutations: int
) -> dict[str, dict]:
    totals, n_arm = _permutation_totals(data, arm=arm, baseline=baseline)
    n_pooled = totals.shape[0]
    grand = totals.sum(axis=0)
    observed_arm = totals[:n_arm].sum(axis=0)
    arm_point = _subset_ratios(observed_arm)
    base_point = _subset_ratios(grand - observed_arm)
    observed = {subset: float(arm_point[subset] - base_point[subset]) for subset in SUBSETS}
    rng = _rng(seed, _STREAM_PERMUTATION, stable_stream_key(arm))
    extreme = {subset: 0 for subset in SUBSETS}
    valid = {subset: 0 for subset in SUBSETS}
    for start in range(0, n_permutations, CHUNK):
        size = min(CHUNK, n_permutations - start)
        keys = rng.random((size, n_pooled))
        chosen = np.argpartition(keys, n_arm - 1, axis=1)[:, :n_arm] if 0 < n_arm < n_pooled else None
        labels = np.zeros((size, n_pooled))
        if chosen is not None:
            labels[np.arange(size)[:, None], chosen] = 1.0
        elif n_arm == n_pooled:
            labels[:] = 1.0
        arm_totals = (labels @ totals).T  # (4, size)
        arm_ratio = _subset_ratios(arm_totals)
        base_ratio = _subset_ratios(grand[:, None] - arm_totals)
        for subset in SUBSETS:
            stat = arm_ratio[subset] - base_ratio[subset]
            ok = np.isfinite(stat)
            valid[subset] += int(ok.sum())
            if np.isfinite(observed[subset]):
                extreme[subset] += int((np.abs(stat[ok]) >= abs(observed[subset]) - 1e-12).sum())
    out: dict[str, dict] = {}
    for subset in SUBSETS:
        defined = np.isfinite(observed[subset]) and valid[subset] > 0
        out[subset] = {
            "difference": _float(observed[subset]),
            "p_value": (1 + extreme[subset]) / (1 + valid[subset]) if defined else None,
            "n_permutations_valid": valid[subset],
        }
    return out


def _check_baseline(data: _TestData, baseline: str) -> None:
    if baseline not in data.arms:
        raise ValueError(f"baseline arm {baseline!r} has no test-phase responses; arms: {list(data.arms)}")


def arm_permutation_test(
    df: pd.DataFrame, *, baseline: str, seed: int, n_permutations: int = 1000
) -> dict[str, dict[str, dict]]:
    """Permutation test of each arm against ``baseline`` (participants' arm labels permuted).

    ``result[arm][subset] = {"difference", "p_value", "n_permutations_valid"}`` for every arm but
    the baseline; ``difference = acc_arm - acc_baseline`` (response-level accuracies). Two-sided
    p-value with the +1 correction; see the module docstring. Cost:
    ``O(n_permutations * n_participants)`` per arm.
    """
    if int(n_permutations) < 1:
        raise ValueError("n_permutations must be >= 1")
    data = _test_data(responses_prepare(df))
    _check_baseline(data, baseline)
    return {
        name: _permutation_result(data, arm=name, baseline=baseline, seed=seed, n_permutations=int(n_permutations))
        for name in data.arms
        if name != baseline
    }


def _effects_result(
    boot: _AccuracyBootstrap, *, baseline: str, seed: int, n_permutations: int, confidence_level: float
) -> dict[str, dict[str, dict]]:
    data = boot.data
    _check_baseline(data, baseline)
    base_point = _subset_ratios(boot.clusters[baseline].totals)
    base_reps = _subset_ratios(boot.totals[baseline])
    out: dict[str, dict[str, dict]] = {}
    for name in data.arms:
        if name == baseline:
            continue
        point = _subset_ratios(boot.clusters[name].totals)
        reps = _subset_ratios(boot.totals[name])
        permutation = _permutation_result(
            data, arm=name, baseline=baseline, seed=seed, n_permutations=n_permutations
        )
        arm_out: dict[str, dict] = {}
        for subset in SUBSETS:
            result = dict(
                _interval(
                    float(point[subset] - base_point[subset]),
                    reps[subset] - base_reps[subset],
                    confidence_level=confidence_level,
                )
            )
            result["p_value"] = permutation[subset]["p_value"]
            result["n_permutations_valid"] = permutation[subset]["n_permutations_valid"]
            arm_out[subset] = result
        out[name] = arm_out
    return out


def arm_effects(
    df: pd.DataFrame,
    *,
    baseline: str,
    seed: int,
    n_resamples: int = 1000,
    n_permutations: int = 1000,
    confidence_level: float = 0.95,
) -> dict[str, dict[str, dict]]:
    """Effect of each arm vs ``baseline``: difference in simulation accuracy per subset.

    ``result[arm][subset]`` holds ``estimate`` (``acc_arm - acc_baseline``), ``ci_low``/``ci_high``
    (percentile interval of the per-resample differences; arms resampled independently by
    participant, item counts shared across arms), ``se``, ``n_resamples_valid``, ``p_value``
    (participant-level permutation test) and ``n_permutations_valid``. The bootstrap resamples are
    exactly those of :func:`simulation_accuracy` with the same seed. See the module docstring.
    """
    _check_resamples(n_resamples, confidence_level)
    if int(n_permutations) < 1:
        raise ValueError("n_permutations must be >= 1")
    boot = _accuracy_bootstrap(responses_prepare(df), seed=seed, n_resamples=int(n_resamples))
    return _effects_result(
        boot, baseline=baseline, seed=seed, n_permutations=int(n_permutations), confidence_level=confidence_level
    )


def _gain_result(prepared: pd.DataFrame, *, seed: int, n_resamples: int, confidence_level: float) -> dict:
    rows = prepared[prepared["phase"].isin(["test", "pretest"]) & prepared["correct_simulation"].notna()]
    if not (rows["phase"] == "pretest").any():
        return {}
    _check_between_subjects(rows)
    arm = rows["condition"].to_numpy(dtype=object)
    items, item_code = sorted_codes(rows["item"])
    correct = rows["correct_simulation"].to_numpy(dtype=bool).astype(np.float64)
    is_test = (rows["phase"] == "test").to_numpy(dtype=np.float64)
    blocks = np.column_stack([correct * is_test, is_test, correct * (1 - is_test), 1 - is_test])
    arms = tuple(sorted(set(arm)))
    clusters = _build_clusters(
        arm=arm,
        participant=sorted_codes(rows["participant"])[1],
        item_code=item_code,
        n_items=len(items),
        blocks=blocks,
        arms=arms,
    )
    totals = _two_way_bootstrap_totals(
        clusters, n_items=len(items), n_resamples=n_resamples, seed=seed, stream=_STREAM_GAIN
    )
    out: dict[str, dict | None] = {}
    for name in arms:
        observed = clusters[name].totals
        if observed[1] == 0 or observed[3] == 0:
            out[name] = None
            continue
        point = float(_ratio(observed[0], observed[1]) - _ratio(observed[2], observed[3]))
        reps = _ratio(totals[name][0], totals[name][1]) - _ratio(totals[name][2], totals[name][3])
        result = dict(_interval(point, reps, confidence_level=confidence_level))
        result["test_accuracy"] = float(_ratio(observed[0], observed[1]))
        result["pretest_accuracy"] = float(_ratio(observed[2], observed[3]))
        result["n_test_responses"] = int(observed[1])
        result["n_pretest_responses"] = int(observed[3])
        out[name] = result
    return out


def simulation_gain(
    df: pd.DataFrame, *, seed: int, n_resamples: int = 1000, confidence_level: float = 0.95
) -> dict[str, dict | None]:
    """Post − pre gain per arm: ``acc(test) - acc(pretest)`` with a two-way bootstrap interval.

    ``result[arm]`` holds ``estimate``, ``ci_low``, ``ci_high``, ``se``, ``n_resamples_valid``,
    ``test_accuracy``, ``pretest_accuracy``, ``n_test_responses``, ``n_pretest_responses``; it is
    ``None`` for an arm lacking one of the phases, and the result is ``{}`` when the data has no
    pretest rows. Each resample draws the arm's participants and the items (union of both phases)
    once and uses the same counts in both phases, so the within-participant pairing is kept.
    """
    _check_resamples(n_resamples, confidence_level)
    return _gain_result(
        responses_prepare(df), seed=seed, n_resamples=int(n_resamples), confidence_level=confidence_level
    )
