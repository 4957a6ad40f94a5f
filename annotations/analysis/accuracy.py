"""Simulation accuracy, its intervals, arm effects, the permutation test and the pre/post gain.

Definitions
-----------
**Simulation accuracy** of an arm (over a subset of its test-phase responses) is the response-level
mean of ``correct_simulation``: ``sum(correct) / count`` over the rows with
``phase == "test"`` whose ``correct_simulation`` is not missing. Subsets: ``"all"``,
``"model_correct"`` (rows with ``model_prediction == gold_label``) and ``"model_incorrect"``
(the rest).

**Design.** Responses are crossed with two random factors: participants (each in one arm,
between-subjects) and items (shared by all arms). Both vary from one replication of a study to
the next, so an interval must count the variance both bring, and count the answer-level noise
once.

**Primary interval: two-way moment variance** (Owen 2007; Gao & Owen 2017). Within each arm
``g`` the answers follow the crossed model ``y = μ_g + u_p + v_i + e`` with variance components
``σ²_P,g``, ``σ²_I,g``, ``σ²_E,g`` (participants are nested in arms; an item's effect may differ
between arms, with covariance ``c_gh`` between arms ``g`` and ``h``). A statistic linear in the
answers, ``θ = sum_r w_r y_r`` (an arm's accuracy: ``w_r = 1/N``; an effect: ``1/N_a`` in arm ``a``,
``−1/N_0`` in the baseline), then has the variance::

    var(θ) = sum_g [ σ²_P,g · sum_p W_p² + σ²_I,g · sum_i W_ig² + σ²_E,g · sum_{r in g} w_r² ]
             + 2 sum_{g<h} c_gh · sum_i W_ig W_ih

with ``W_p`` and ``W_ig`` the weights summed over participant ``p`` and over item ``i`` in arm ``g``.
This counts each source of variation once, whatever the design: a participant's own items, items
shared by the arms (whose main effects cancel in an effect; only the part that differs between
arms stays), fully crossed or sparse. The components are estimated without bias by U-statistics
of squared differences, computed in ``O(N)``: with ``m_p`` answers per participant, ``n_i`` per
item, ``N`` per arm,

* ``U_P = sum_p [m_p sum y² − (sum y)²]`` (pairs within a participant): ``E = (σ²_I + σ²_E) sum m_p(m_p − 1)``,
* ``U_I = sum_i [n_i sum y² − (sum y)²]`` (pairs within an item): ``E = (σ²_P + σ²_E) sum n_i(n_i − 1)``,
* ``U_E = N sum y² − (sum y)²`` (all pairs): ``E = σ²_P (N(N−1) − sum m(m−1)) + σ²_I (N(N−1) − sum n(n−1))
  + σ²_E N(N−1)``,

solved for the three components, each then floored at 0; the item covariance between arms is
``c_gh = [(Σ n_g n_h)(Σ T_g T_h) − (Σ T_g n_h)(Σ T_h n_g)] / [(Σ n_g n_h)² − Σ (n_g n_h)²]`` over
items (``T`` = item sums of ``y``, ``n`` = item counts), the unbiased U-statistic of products of
within-arm item differences. The interval uses Student's ``t`` with Satterthwaite's degrees of
freedom ``df = var² / ((V_P + V_E)² / (G_P − A) + V_I² / (G_I − 1))`` (``V_P``, ``V_I``, ``V_E`` the
participant, item and answer parts of ``var``; ``G_P`` participants in ``A`` arms, ``G_I`` items;
the answers, nested in participants, count with the participants' degrees of freedom, which keeps
the ``t`` test at its level with 10 participants per arm): with few items or few participants,
``df`` falls towards the number of clusters of the part that dominates, and the interval widens
accordingly. An arm with fewer than 2
participants has no interval.

Where the components cannot be estimated (every participant gave one answer, or every item got
one answer) the two-way cluster-robust variance of Cameron, Gelbach & Miller (2011) is used
instead: with the per-row scores ``s_r = w_r (y_r − mean of its arm)`` and ``S_p``, ``S_i``,
``S_pi`` their sums by participant, item (over all arms) and cell,
``var = V_P + V_I − V_PI`` with ``V_P = sum_arms G_a/(G_a − 1) sum_{p in a} S_p²``,
``V_I = G_I/(G_I − 1) sum_i S_i²``, ``V_PI = G_PI/(G_PI − 1) sum S_pi²`` (``max(V_P, V_I)`` if that
is ≤ 0), same ``t`` and ``df`` rule without the answer part. The pre/post gain, where participants
and items are both shared by the two phases, always uses this estimator. (In the simulations of
``docs/STATISTICS.md`` it underestimated an effect's spread by up to 20 % with 10 items or fully
crossed designs, because ``V_PI`` then also holds main effects that ``V_P`` and ``V_I`` do not
double-count; the moment variance stayed within 10 %.)

* Arm accuracy: the interval is computed on the logit scale and transformed back
  (``logit(acc) ± t · se / (acc (1 − acc))``), so it stays inside (0, 1) and is not symmetric near
  the bounds; an accuracy of exactly 0 or 1 has a zero-width interval.
* Effect and gain: ``θ ± t · se``, clipped to [−1, 1] (with very few clusters ``t`` is large).

Why not a bootstrap: no resampling of a crossed design reproduces its variance (McCullagh 2000;
Owen 2007). Drawing participants and items independently weights an answer by the product of
two counts, which counts the answer-level noise about three times: the product bootstrap's
standard error of an effect was 1.2–1.7 times its true spread in our simulations
(``docs/STATISTICS.md``), while the moment variance is within 10 %.

**Two-way cluster ("pigeonhole" / product) bootstrap**, kept as a second, conservative interval
(``bootstrap``; Owen 2007; McCullagh 2000). One resample draws, independently and with
replacement, ``P_a`` participants of arm ``a`` out of its ``P_a`` and ``I`` items out of the ``I``
items answered in the analysed data (the union over arms). With ``w_p`` and ``v_i`` the number of
times participant ``p`` and item ``i`` were drawn, a response of ``p`` on ``i`` enters the resample
``w_p * v_i`` times (zero unless both were drawn), so the resampled accuracy is::

    sum_{p,i} w_p v_i S[p, i] / sum_{p,i} w_p v_i N[p, i]

with ``S``/``N`` the participant × item matrices of correct answers / answers. It is computed for
all resamples at once as sparse-matrix products (cost ``O(B * (nnz + I))`` per arm, ``B``
resamples). The interval is the percentile interval (``numpy.quantile``, linear interpolation) of
the resampled statistic. Resamples in which no response of the subset was drawn (ratio 0/0) are
dropped and counted (``n_resamples_valid``). Participants are resampled within their arm, while
the item counts ``v`` of one resample are *shared by all arms*, because the arms answer the same
items; the effect's bootstrap interval is the percentile interval of the per-resample differences.

**Random streams**: resample ``b``'s item counts come from ``SeedSequence([seed, 1, 0])`` and arm
``a``'s participant counts from ``SeedSequence([seed, 1, key(a)])`` (``key`` = first 8 bytes of
SHA-256 of the arm name), drawn in fixed chunks of 100 resamples. An arm's numbers thus depend
only on the seed, its own data and the item set, not on which other arms exist, and the first
``B`` resamples are the same for any ``n_resamples >= B``. Participants and items are ordered by
their string identifiers, and the scores are summed in that order, so row order is irrelevant.

**Permutation test** (arm ``a`` vs the baseline): pool the participants of both arms and keep each
participant's totals (correct, answered) per subset. One permutation draws which ``P_a`` of the
pooled participants are labelled ``a`` (uniformly, all participant labels permuted together, a
participant's responses always move together); the statistic is the same response-level
difference of accuracies. Two-sided p-value with the +1 correction (Phipson & Smyth 2010)::

    p = (1 + #{ |T*| >= |T_obs| - 1e-12 }) / (1 + n_valid)

where permutations with an empty side in the subset are dropped (``n_valid``). Exact under the null
that arm labels are exchangeable across participants (the items, shared by both arms, are held
fixed). Stream: ``SeedSequence([seed, 2, key(a)])``.

**Gain** (pre/post designs): ``acc_test - acc_pretest`` per arm. Its two-way variance takes the
participant sums over both phases (a participant's pretest and test answers are paired) and the
item sums over both phases; its bootstrap draws participants (of the arm, in either phase) and
items (union of both phases) once per resample and uses them for both phases. Stream:
``SeedSequence([seed, 3, ...])``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, TypedDict

import numpy as np
import pandas as pd
from scipy import sparse, special

from .responses import responses_prepare, sorted_codes, stable_stream_key

__all__ = [
    "SUBSETS",
    "BootstrapInterval",
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


class BootstrapInterval(TypedDict):
    """The percentile interval of the two-way product bootstrap (see the module docstring)."""

    ci_low: float | None
    ci_high: float | None
    se: float | None
    n_resamples_valid: int


class Interval(TypedDict):
    """A point estimate with its two-way ``t`` interval and the bootstrap's.

    ``se`` is the square root of the two-way variance, ``df`` the Satterthwaite degrees of
    freedom of the ``t`` quantile (``None`` when the variance is 0 or undefined).
    """

    estimate: float | None
    ci_low: float | None
    ci_high: float | None
    se: float | None
    df: float | None
    bootstrap: BootstrapInterval


def _float(value: float) -> float | None:
    value = float(value)
    return value if np.isfinite(value) else None


def _levels(confidence_level: float) -> list[float]:
    # rounded so that confidence_level=0.95 asks for exactly the 0.025 and 0.975 quantiles
    return [round((1.0 - confidence_level) / 2, 12), round((1.0 + confidence_level) / 2, 12)]


def _bootstrap_interval(estimate: float, replicates: np.ndarray, *, confidence_level: float) -> BootstrapInterval:
    valid = replicates[np.isfinite(replicates)]
    if not np.isfinite(estimate) or len(valid) == 0:
        return BootstrapInterval(ci_low=None, ci_high=None, se=None, n_resamples_valid=len(valid))
    low, high = np.quantile(valid, _levels(confidence_level))
    se = float(np.std(valid, ddof=1)) if len(valid) > 1 else None
    return BootstrapInterval(ci_low=float(low), ci_high=float(high), se=se, n_resamples_valid=int(len(valid)))


def _interval(
    estimate: float,
    variance: tuple[float | None, float | None],
    replicates: np.ndarray,
    *,
    confidence_level: float,
    logit: bool = False,
) -> Interval:
    """The two-way ``t`` interval of ``estimate`` (on the logit scale if ``logit``) and the
    bootstrap's percentile interval of ``replicates``."""
    boot = _bootstrap_interval(estimate, replicates, confidence_level=confidence_level)
    value, df = variance
    if not np.isfinite(estimate) or value is None:
        return Interval(estimate=_float(estimate), ci_low=None, ci_high=None, se=None, df=None, bootstrap=boot)
    se = float(np.sqrt(value))
    estimate = float(estimate)
    if se == 0.0 or df is None or (logit and estimate in (0.0, 1.0)):
        # no spread, or an accuracy of exactly 0 or 1 (every answer alike): nothing to widen
        return Interval(estimate=estimate, ci_low=estimate, ci_high=estimate, se=se, df=df, bootstrap=boot)
    # scipy's stats.t.ppf is special.stdtrit behind argument checks that cost more than the quantile
    quantile = float(special.stdtrit(df, _levels(confidence_level)[1]))
    if logit:
        centre = float(np.log(estimate / (1.0 - estimate)))
        half = quantile * se / (estimate * (1.0 - estimate))
        low, high = float(special.expit(centre - half)), float(special.expit(centre + half))
    else:  # a difference of two accuracies lies in [−1, 1]
        low, high = max(estimate - quantile * se, -1.0), min(estimate + quantile * se, 1.0)
    return Interval(estimate=estimate, ci_low=low, ci_high=high, se=se, df=float(df), bootstrap=boot)


def _two_way_variance(
    score: np.ndarray, *, participant: np.ndarray, item: np.ndarray, group: np.ndarray
) -> tuple[float | None, float | None]:
    """``(variance, df)`` of a statistic linearised into per-row ``score`` (module docstring).

    Rows must be in the canonical order of :class:`_TestData` (sorted by participant, then item),
    so that every sum runs in an order that does not depend on the input's row order.
    ``participant``/``item`` are int codes; ``group`` is the arm of each row (participants are
    nested in arms). ``(None, None)`` when an arm has fewer than 2 participants.
    """
    if len(score) == 0:
        return None, None
    p_sums = np.bincount(participant, weights=score)
    p_present = np.bincount(participant) > 0
    p_group = np.full(len(p_sums), -1, dtype=np.int64)
    p_group[participant] = group
    v_participants = 0.0
    n_participants = 0
    groups = np.unique(group)
    for value in groups:
        sums = p_sums[p_present & (p_group == value)]
        if len(sums) < 2:
            return None, None
        v_participants += len(sums) / (len(sums) - 1) * float((sums**2).sum())
        n_participants += len(sums)
    df_participants = n_participants - len(groups)
    i_sums = np.bincount(item, weights=score)[np.bincount(item) > 0]
    if len(i_sums) < 2:  # one item: its variance cannot be told from the participants'
        return v_participants, float(df_participants)
    v_items = len(i_sums) / (len(i_sums) - 1) * float((i_sums**2).sum())
    starts = np.flatnonzero(np.concatenate([[True], (participant[1:] != participant[:-1]) | (item[1:] != item[:-1])]))
    cell_sums = np.add.reduceat(score, starts)
    v_cells = len(cell_sums) / (len(cell_sums) - 1) * float((cell_sums**2).sum()) if len(cell_sums) > 1 else 0.0
    variance = v_participants + v_items - v_cells
    if variance <= 0.0:
        if v_participants >= v_items:
            return v_participants, float(df_participants)
        return v_items, float(len(i_sums) - 1)
    df = variance**2 / (v_participants**2 / df_participants + v_items**2 / (len(i_sums) - 1))
    return variance, float(max(df, 1.0))


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


def _moment_components(y: np.ndarray, participant: np.ndarray, item: np.ndarray) -> tuple[float, float, float] | None:
    """``(σ²_P, σ²_I, σ²_E)`` of one arm's answers by U-statistics (module docstring), each floored
    at 0; ``None`` when pairs within participants or within items are missing."""

    def within(codes: np.ndarray) -> tuple[float, float]:
        counts = np.bincount(codes)
        sums, squares = np.bincount(codes, weights=y), np.bincount(codes, weights=y * y)
        present = counts > 0
        m = counts[present].astype(np.float64)
        return float((m * squares[present] - sums[present] ** 2).sum()), float((m * (m - 1.0)).sum())

    u_participants, pairs_participants = within(participant)
    u_items, pairs_items = within(item)
    if pairs_participants == 0.0 or pairs_items == 0.0:
        return None
    n = float(len(y))
    all_pairs = n * (n - 1.0)
    u_all = n * float((y * y).sum()) - float(y.sum()) ** 2
    within_participant = u_participants / pairs_participants  # σ²_I + σ²_E
    within_item = u_items / pairs_items  # σ²_P + σ²_E
    residual = (
        u_all - (all_pairs - pairs_participants) * within_item - (all_pairs - pairs_items) * within_participant
    ) / (pairs_participants + pairs_items - all_pairs)
    return max(within_item - residual, 0.0), max(within_participant - residual, 0.0), max(residual, 0.0)


def _item_covariance(y_g: np.ndarray, item_g: np.ndarray, y_h: np.ndarray, item_h: np.ndarray, n_items: int) -> float:
    """Covariance of an item's effects in two arms (module docstring); 0 without two shared items."""
    n_g = np.bincount(item_g, minlength=n_items).astype(np.float64)
    n_h = np.bincount(item_h, minlength=n_items).astype(np.float64)
    t_g = np.bincount(item_g, weights=y_g, minlength=n_items)
    t_h = np.bincount(item_h, weights=y_h, minlength=n_items)
    both = float((n_g * n_h).sum())
    denominator = both**2 - float(((n_g * n_h) ** 2).sum())
    if denominator <= 0.0:
        return 0.0
    return (both * float((t_g * t_h).sum()) - float((t_g * n_h).sum()) * float((t_h * n_g).sum())) / denominator


def _moment_variance(data: _TestData, groups: list[tuple[np.ndarray, float]]) -> tuple[float | None, float | None]:
    """``(variance, df)`` of ``sum_g sign_g · mean of y over rows_g`` (``groups`` = ``[(rows_g,
    sign_g)]``, arms with their own participants, sharing items): the moment variance of the
    module docstring, or ``None`` where its components cannot be estimated."""
    n_items = len(data.items)
    parts = {"participants": 0.0, "items": 0.0, "answers": 0.0}
    arms = []
    n_participants = n_answers = 0
    for rows, sign in groups:
        y, participant, item = data.correct[rows], data.participant[rows], data.item_code[rows]
        found = _moment_components(y, participant, item)
        participants = np.unique(participant)
        if found is None or len(participants) < 2:
            return None, None
        weight = np.full(len(y), sign / len(y))
        item_weights = np.bincount(item, weights=weight, minlength=n_items)
        parts["participants"] += found[0] * float((np.bincount(participant, weights=weight) ** 2).sum())
        parts["items"] += found[1] * float((item_weights**2).sum())
        parts["answers"] += found[2] * float((weight**2).sum())
        arms.append((y, item, item_weights))
        n_participants += len(participants)
        n_answers += len(y)
    for g in range(len(arms)):
        for h in range(g + 1, len(arms)):
            covariance = _item_covariance(arms[g][0], arms[g][1], arms[h][0], arms[h][1], n_items)
            parts["items"] += 2.0 * covariance * float((arms[g][2] * arms[h][2]).sum())
    parts["items"] = max(parts["items"], 0.0)
    variance = sum(parts.values())
    if variance <= 0.0:
        return 0.0, None
    n_items_seen = len(np.unique(np.concatenate([arm[1] for arm in arms])))
    # the answers are nested in participants: their part counts with the participants' degrees of
    # freedom (conservative; Satterthwaite over all three parts gave too many with 10 per arm)
    df = variance**2 / (
        (parts["participants"] + parts["answers"]) ** 2 / max(n_participants - len(arms), 1)
        + parts["items"] ** 2 / max(n_items_seen - 1, 1)
    )
    return variance, float(max(df, 1.0))


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
    participants: np.ndarray | None = None  # the sorted identifiers the codes index, where known


def _test_data(prepared: pd.DataFrame) -> _TestData:
    test = prepared[(prepared["phase"] == "test") & prepared["correct_simulation"].notna()]
    _check_between_subjects(test)
    arm = test["condition"].to_numpy(dtype=object)
    items, item_code = sorted_codes(test["item"])
    participants, participant_code = sorted_codes(test["participant"])
    correct = test["correct_simulation"].to_numpy(dtype=bool)
    model_correct = test["model_correct"].to_numpy(dtype=bool)
    # canonical row order (participant, item, values): every sum below runs in an order the
    # input's row order cannot change
    order = np.lexsort((model_correct, correct, item_code, participant_code))
    return _TestData(
        arms=tuple(sorted(set(arm))),
        items=items,
        arm=arm[order],
        participant=participant_code[order],
        item_code=item_code[order],
        correct=correct[order].astype(np.float64),
        model_correct=model_correct[order],
        participants=participants,
    )


def _test_data_of(data: _TestData, participant_codes: np.ndarray) -> _TestData:
    """The test data of some participants (codes into ``data.participants``): the same arrays as
    :func:`_test_data` of their rows alone, without going through pandas again. Rows sorted
    canonically stay sorted when some are dropped, and renumbering the codes in sorted order is
    what ``sorted_codes`` of the remaining identifiers gives."""
    rows = np.isin(data.participant, participant_codes)
    kept_participants, participant = np.unique(data.participant[rows], return_inverse=True)
    kept_items, item_code = np.unique(data.item_code[rows], return_inverse=True)
    arm = data.arm[rows]
    return _TestData(
        arms=tuple(sorted(set(arm))),
        items=data.items[kept_items],
        arm=arm,
        participant=participant.astype(np.int64),
        item_code=item_code.astype(np.int64),
        correct=data.correct[rows],
        model_correct=data.model_correct[rows],
        participants=None if data.participants is None else data.participants[kept_participants],
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


def _subset_masks(data: _TestData) -> dict[str, np.ndarray]:
    return {
        "all": np.ones(len(data.correct), dtype=bool),
        "model_correct": data.model_correct,
        "model_incorrect": ~data.model_correct,
    }


def _arm_scores(data: _TestData, rows: np.ndarray) -> np.ndarray:
    """Per-row scores ``(y − acc) / N`` of the accuracy over ``rows`` (zero elsewhere)."""
    score = np.zeros(len(data.correct))
    n = int(rows.sum())
    if n:
        accuracy = data.correct[rows].sum() / n
        score[rows] = (data.correct[rows] - accuracy) / n
    return score


def _scored_variance(data: _TestData, score: np.ndarray, rows: np.ndarray) -> tuple[float | None, float | None]:
    group = np.zeros(len(data.arm), dtype=np.int64)
    for index, name in enumerate(data.arms):
        group[data.arm == name] = index
    return _two_way_variance(
        score[rows], participant=data.participant[rows], item=data.item_code[rows], group=group[rows]
    )


def _difference_variance(
    data: _TestData, in_arm: np.ndarray, in_base: np.ndarray | None = None
) -> tuple[float | None, float | None]:
    """Variance and df of the accuracy over ``in_arm`` (minus that over ``in_base``, if given): the
    moment variance, or the cluster-robust one where the moments are not identified."""
    groups = [(in_arm, 1.0)] + ([] if in_base is None else [(in_base, -1.0)])
    variance, df = _moment_variance(data, groups)
    if variance is not None:
        return variance, df
    score = _arm_scores(data, in_arm) - (0.0 if in_base is None else _arm_scores(data, in_base))
    return _scored_variance(data, score, in_arm if in_base is None else in_arm | in_base)


def _accuracy_result(boot: _AccuracyBootstrap, *, confidence_level: float) -> dict[str, dict[str, dict]]:
    data = boot.data
    masks = _subset_masks(data)
    out: dict[str, dict[str, dict]] = {}
    for name in data.arms:
        in_arm = data.arm == name
        point = _subset_ratios(boot.clusters[name].totals)
        replicates = _subset_ratios(boot.totals[name])
        arm_out: dict[str, dict] = {}
        for subset in SUBSETS:
            rows = in_arm & masks[subset]
            variance = _difference_variance(data, rows) if rows.any() else (None, None)
            result = dict(
                _interval(
                    float(point[subset]), variance, replicates[subset], confidence_level=confidence_level, logit=True
                )
            )
            result["n_responses"] = int(rows.sum())
            result["n_correct"] = int(data.correct[rows].sum())
            result["n_participants"] = int(len(np.unique(data.participant[rows])))
            result["n_items"] = int(len(np.unique(data.item_code[rows])))
            arm_out[subset] = result
        out[name] = arm_out
    return out


def simulation_accuracy(
    df: pd.DataFrame, *, seed: int, n_resamples: int = 1000, confidence_level: float = 0.95
) -> dict[str, dict[str, dict]]:
    """Simulation accuracy per arm and subset, with two-way intervals.

    ``result[arm][subset]`` for subset in ``("all", "model_correct", "model_incorrect")`` holds
    ``estimate`` (= correct / answered over the arm's test-phase rows in the subset), ``ci_low``,
    ``ci_high`` (two-way ``t`` interval at ``confidence_level``, on the logit
    scale), ``se`` and ``df`` (its standard error and degrees of freedom), ``bootstrap`` (the
    product bootstrap's percentile interval: ``ci_low``, ``ci_high``, ``se``,
    ``n_resamples_valid``), ``n_responses``, ``n_correct``, ``n_participants`` and ``n_items``.
    Undefined values (empty subset) are ``None``. Definitions and random streams: see the module
    docstring. Cost: ``O(n_resamples * (n_responses + n_arms * n_items))``.
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


def _permutation_result(data: _TestData, *, arm: str, baseline: str, seed: int, n_permutations: int) -> dict[str, dict]:
    totals, n_arm = _permutation_totals(data, arm=arm, baseline=baseline)
    n_pooled = totals.shape[0]
    grand = totals.sum(axis=0)
    observed_arm = totals[:n_arm].sum(axis=0)
    arm_point = _subset_ratios(observed_arm)
    base_point = _subset_ratios(grand - observed_arm)
    observed = {subset: float(arm_point[subset] - base_point[subset]) for subset in SUBSETS}
    rng = _rng(seed, _STREAM_PERMUTATION, stable_stream_key(arm))
    extreme = dict.fromkeys(SUBSETS, 0)
    valid = dict.fromkeys(SUBSETS, 0)
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


def _effect_two_way(data: _TestData, *, arm: str, baseline: str) -> tuple[float, float | None, float | None]:
    """``(acc_arm − acc_baseline, se, df)`` over all items, with the two-way variance only (no
    bootstrap, no permutations): what the sequential looks and the power simulations need."""
    in_arm = data.arm == arm
    in_base = data.arm == baseline
    if not in_arm.any() or not in_base.any():
        return float("nan"), None, None
    estimate = data.correct[in_arm].mean() - data.correct[in_base].mean()
    variance, df = _difference_variance(data, in_arm, in_base)
    return float(estimate), None if variance is None else float(np.sqrt(variance)), df


def _effects_result(
    boot: _AccuracyBootstrap, *, baseline: str, seed: int, n_permutations: int, confidence_level: float
) -> dict[str, dict[str, dict]]:
    data = boot.data
    _check_baseline(data, baseline)
    masks = _subset_masks(data)
    base_point = _subset_ratios(boot.clusters[baseline].totals)
    base_reps = _subset_ratios(boot.totals[baseline])
    out: dict[str, dict[str, dict]] = {}
    for name in data.arms:
        if name == baseline:
            continue
        point = _subset_ratios(boot.clusters[name].totals)
        reps = _subset_ratios(boot.totals[name])
        permutation = _permutation_result(data, arm=name, baseline=baseline, seed=seed, n_permutations=n_permutations)
        arm_out: dict[str, dict] = {}
        for subset in SUBSETS:
            in_arm = (data.arm == name) & masks[subset]
            in_base = (data.arm == baseline) & masks[subset]
            variance = (None, None)
            if in_arm.any() and in_base.any():
                variance = _difference_variance(data, in_arm, in_base)
            result = dict(
                _interval(
                    float(point[subset] - base_point[subset]),
                    variance,
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
    (two-way ``t`` interval: participants within arm, items jointly across the two
    arms), ``se``, ``df``, ``bootstrap`` (percentile interval of the per-resample differences;
    participants resampled within arm, item counts shared across arms), ``p_value``
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
    items, item_code = sorted_codes(rows["item"])
    participant = sorted_codes(rows["participant"])[1]
    correct = rows["correct_simulation"].to_numpy(dtype=bool).astype(np.float64)
    is_test = (rows["phase"] == "test").to_numpy(dtype=np.float64)
    order = np.lexsort((correct, is_test, item_code, participant))  # canonical order, as in _test_data
    arm = rows["condition"].to_numpy(dtype=object)[order]
    item_code, participant, correct, is_test = item_code[order], participant[order], correct[order], is_test[order]
    blocks = np.column_stack([correct * is_test, is_test, correct * (1 - is_test), 1 - is_test])
    arms = tuple(sorted(set(arm)))
    clusters = _build_clusters(
        arm=arm,
        participant=participant,
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
        test_accuracy = float(_ratio(observed[0], observed[1]))
        pretest_accuracy = float(_ratio(observed[2], observed[3]))
        in_arm = arm == name
        test_rows = in_arm & (is_test == 1.0)
        pretest_rows = in_arm & (is_test == 0.0)
        score = np.zeros(len(correct))
        score[test_rows] = (correct[test_rows] - test_accuracy) / observed[1]
        score[pretest_rows] = -(correct[pretest_rows] - pretest_accuracy) / observed[3]
        variance = _two_way_variance(
            score[in_arm],
            participant=participant[in_arm],
            item=item_code[in_arm],
            group=np.zeros(int(in_arm.sum()), dtype=np.int64),
        )
        reps = _ratio(totals[name][0], totals[name][1]) - _ratio(totals[name][2], totals[name][3])
        result = dict(_interval(test_accuracy - pretest_accuracy, variance, reps, confidence_level=confidence_level))
        result["test_accuracy"] = test_accuracy
        result["pretest_accuracy"] = pretest_accuracy
        result["n_test_responses"] = int(observed[1])
        result["n_pretest_responses"] = int(observed[3])
        out[name] = result
    return out


def simulation_gain(
    df: pd.DataFrame, *, seed: int, n_resamples: int = 1000, confidence_level: float = 0.95
) -> dict[str, dict | None]:
    """Post − pre gain per arm: ``acc(test) - acc(pretest)`` with a two-way interval.

    ``result[arm]`` holds ``estimate``, ``ci_low``, ``ci_high``, ``se``, ``df`` (two-way interval:
    participant sums and item sums over both phases), ``bootstrap``, ``test_accuracy``,
    ``pretest_accuracy``, ``n_test_responses``, ``n_pretest_responses``; it is ``None`` for an arm
    lacking one of the phases, and the result is ``{}`` when the data has no pretest rows. Each
    bootstrap resample draws the arm's participants and the items (union of both phases) once and
    uses the same counts in both phases, so the within-participant pairing is kept.
    """
    _check_resamples(n_resamples, confidence_level)
    return _gain_result(
        responses_prepare(df), seed=seed, n_resamples=int(n_resamples), confidence_level=confidence_level
    )
