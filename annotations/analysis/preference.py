"""Pairwise preference and Likert ratings of explanations (issue 20, deliverable 4).

Preference
----------
A participant sees two methods' explanations of the same item, one left and one right, and says
which helps more. Each answer is a comparison ``(winner, loser)`` between methods.

* **Bradley–Terry scores** (Bradley & Terry 1952): ``P(i beats j) = 1 / (1 + exp(θ_j − θ_i))``.
  ``θ`` is the maximum-likelihood estimate (Newton's method on the log-likelihood, started at 0),
  identified by the sum-to-zero constraint ``Σ θ = 0``. The same fit is a logistic regression
  without intercept of "the first method won" on the contrast ``e_i − e_j``, which the tests
  check against statsmodels. The MLE exists exactly when the comparison graph (an edge
  ``loser → winner`` per comparison) is strongly connected (Zermelo 1929; Ford 1957); otherwise
  no score is reported and ``estimable`` says why.
* **Intervals**: the Wald interval ``θ ± z·se`` from the Fisher information
  ``I = Σ_pairs n_ij p_ij (1 − p_ij) (e_i − e_j)(e_i − e_j)ᵀ``, whose Moore–Penrose inverse is the
  covariance of the sum-to-zero estimate; and the participant-cluster bootstrap's percentile
  interval (participants resampled with replacement, every comparison of a drawn participant
  kept; resamples where the MLE does not exist are dropped and counted). Stream
  ``SeedSequence([seed, 20])``.
* **Circular triads** (Kendall & Babington Smith 1940): per participant, each pair of methods
  gets the direction of the participant's majority over the items where they compared it (a tie
  gives no direction). A triad of methods whose three pairs all have a direction is circular when
  ``i > j > k > i``. A participant's share is circular / directed triads; the overall share pools
  the counts of all participants. Under random choices a triad is circular with probability 1/4.
  For a complete tournament of ``n`` methods with scores ``a_i`` the count equals
  ``n(n−1)(2n−1)/12 − Σ a_i² / 2``.
* **Agreement**: Krippendorff's α (nominal) with unit = (item, unordered pair of methods) and
  value = the preferred method (not the side), over units that two or more participants judged;
  and the raw pairwise agreement (share of pairs of judgements of one unit that agree).

Ratings
-------
Each rating is a Likert answer (1..``points``) on a scale (helpfulness, trust, understanding) of
one explanation of one method. Per method and scale: ``n``, the mean and the median with
participant-cluster bootstrap percentile intervals, and the distribution (count and share per
point). Against a reference method: the difference of means, and the ordinal **probability of
superiority** ``P(X > Y) + P(X = Y)/2`` (X a rating of the method, Y one of the reference;
0.5 = no difference; Vargha & Delaney's A), each with a bootstrap interval (participants
resampled once for all methods, so within- and between-subjects designs are both handled).
Stream ``SeedSequence([seed, 21])``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from itertools import combinations
from typing import Final

import numpy as np
import pandas as pd
from scipy import stats
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import connected_components
from scipy.special import expit

from .agreement import krippendorff_alpha
from .responses import _as_bool

__all__ = [
    "RATING_SCALES",
    "BradleyTerry",
    "bradley_terry",
    "bradley_terry_fit",
    "circular_triads",
    "preference_agreement",
    "preference_prepare",
    "preference_report",
    "preference_simulate",
    "ratings_prepare",
    "ratings_report",
    "ratings_summary",
]

RATING_SCALES: Final = ("helpfulness", "trust", "understanding")
_STREAM_PREFERENCE: Final = 20
_STREAM_RATINGS: Final = 21
_SIDES: Final = ("left", "right")


def _drop_flagged(df: pd.DataFrame) -> pd.DataFrame:
    keep = np.ones(len(df), dtype=bool)
    if "phase" in df.columns:
        keep &= df["phase"].astype(str).to_numpy() == "test"
    for flag in ("is_attention_check", "excluded"):
        if flag in df.columns:
            keep &= ~_as_bool(df[flag], column=flag, missing=False).to_numpy(dtype=bool)
    return df.loc[keep]


def preference_prepare(df: pd.DataFrame) -> pd.DataFrame:
    """The test-phase choices of a response frame as ``participant``, ``item``, ``winner`` and
    ``loser`` (method names as strings) plus ``method_left``/``method_right``. Needs the columns
    ``participant``, ``item``, ``method_left``, ``method_right`` and ``preferred`` ("left" or
    "right"); rows of the pre-test, attention checks and excluded participants are left out when
    those columns exist, and rows without a choice are left out. Raises ``ValueError`` on a
    missing column, a side other than left/right, or a method compared with itself."""
    missing = [c for c in ("participant", "item", "method_left", "method_right", "preferred") if c not in df.columns]
    if missing:
        raise ValueError(f"preference frame lacks columns {missing}")
    df = _drop_flagged(df.reset_index(drop=True))
    df = df.loc[df["preferred"].notna() & (df["preferred"].astype(str) != "")]
    side = df["preferred"].astype(str)
    bad = sorted(set(side) - set(_SIDES))
    if bad:
        raise ValueError(f"preferred must be 'left' or 'right', got {bad[:3]}")
    left, right = df["method_left"].astype(str), df["method_right"].astype(str)
    if (left == right).any():
        raise ValueError("a comparison of a method with itself")
    left_won = (side == "left").to_numpy()
    return pd.DataFrame(
        {
            "participant": df["participant"].astype(str).to_numpy(),
            "item": df["item"].astype(str).to_numpy(),
            "method_left": left.to_numpy(),
            "method_right": right.to_numpy(),
            "winner": np.where(left_won, left, right),
            "loser": np.where(left_won, right, left),
        }
    )


# --------------------------------------------------------------------------- Bradley–Terry


@dataclass(frozen=True)
class BradleyTerry:
    """A Bradley–Terry fit: ``scores[m]`` (sum to zero), ``covariance`` (Fisher, in ``methods``
    order), or ``estimable=False`` with ``reason`` when the MLE does not exist."""

    methods: tuple[str, ...]
    estimable: bool
    reason: str = ""
    scores: dict[str, float] = field(default_factory=dict)
    covariance: np.ndarray | None = None
    iterations: int = 0


def _strongly_connected(winner: np.ndarray, loser: np.ndarray, k: int) -> bool:
    graph = csr_matrix((np.ones(len(winner)), (loser, winner)), shape=(k, k))
    n_components, _ = connected_components(graph, directed=True, connection="strong")
    return n_components == 1


def bradley_terry_fit(
    winner: np.ndarray, loser: np.ndarray, k: int, *, tol: float = 1e-12, max_iter: int = 200
) -> tuple[np.ndarray | None, np.ndarray | None, int]:
    """``(θ, covariance, iterations)`` for comparisons given as method indices ``0..k-1``;
    ``(None, None, 0)`` when the MLE does not exist (the comparison graph is not strongly
    connected). Newton's method with ``θ_0`` fixed at 0, then centred to sum to zero."""
    winner, loser = np.asarray(winner, dtype=np.int64), np.asarray(loser, dtype=np.int64)
    if k < 2 or len(winner) == 0 or not _strongly_connected(winner, loser, k):
        return None, None, 0
    wins = np.zeros((k, k))
    np.add.at(wins, (winner, loser), 1.0)
    games = wins + wins.T
    total_wins = wins.sum(axis=1)
    theta = np.zeros(k)
    for iteration in range(1, max_iter + 1):  # noqa: B007 (returned)
        p = expit(theta[:, None] - theta[None, :])  # p[i, j] = P(i beats j)
        gradient = total_wins - (games * p).sum(axis=1)
        weight = games * p * p.T
        information = np.diag(weight.sum(axis=1)) - weight
        step = np.linalg.solve(information[1:, 1:], gradient[1:])
        theta[1:] += step
        if np.max(np.abs(step)) < tol:
            break
    theta -= theta.mean()
    p = expit(theta[:, None] - theta[None, :])
    weight = games * p * p.T
    information = np.diag(weight.sum(axis=1)) - weight
    # The information's null space is the all-ones vector, so its pseudo-inverse is the
    # covariance of the sum-to-zero estimate.
    return theta, np.linalg.pinv(information, hermitian=True), iteration


def _method_codes(
    prepared: pd.DataFrame, methods: Sequence[str] | None
) -> tuple[tuple[str, ...], np.ndarray, np.ndarray]:
    names = tuple(methods) if methods is not None else tuple(sorted(set(prepared["winner"]) | set(prepared["loser"])))
    index = {name: i for i, name in enumerate(names)}
    unknown = (set(prepared["winner"]) | set(prepared["loser"])) - set(index)
    if unknown:
        raise ValueError(f"methods not listed: {sorted(unknown)[:3]}")
    winner = prepared["winner"].map(index).to_numpy(dtype=np.int64)
    loser = prepared["loser"].map(index).to_numpy(dtype=np.int64)
    return names, winner, loser


def bradley_terry(
    prepared: pd.DataFrame,
    *,
    methods: Sequence[str] | None = None,
    confidence_level: float = 0.95,
    n_boot: int = 1000,
    seed: int = 0,
) -> dict:
    """Bradley–Terry scores of the methods in a :func:`preference_prepare` frame, with Wald and
    participant-bootstrap intervals (module docstring). Returns ``{"estimable", "reason",
    "methods": {name: {score, se, wald_low, wald_high, boot_low, boot_high, wins, comparisons,
    win_share}}, "comparisons", "participants", "boot_valid", "boot_dropped"}``; scores are
    ``None`` when not estimable."""
    names, winner, loser = _method_codes(prepared, methods)
    k = len(names)
    theta, covariance, _ = bradley_terry_fit(winner, loser, k)
    wins = np.bincount(winner, minlength=k)
    games = wins + np.bincount(loser, minlength=k)
    z = stats.norm.ppf((1 + confidence_level) / 2)
    result: dict = {
        "estimable": theta is not None,
        "reason": ""
        if theta is not None
        else "not every method both won and lost against the others (the comparison graph is not strongly "
        "connected), so the maximum-likelihood scores do not exist",
        "comparisons": len(winner),
        "participants": int(prepared["participant"].nunique()),
        "boot_valid": 0,
        "boot_dropped": 0,
        "methods": {},
    }
    boot = np.full((0, k), np.nan)
    if theta is not None and n_boot > 0:
        boot, dropped = _bootstrap_scores(prepared, names, n_boot=n_boot, seed=seed)
        result["boot_valid"], result["boot_dropped"] = len(boot), dropped
    levels = [100 * (1 - confidence_level) / 2, 100 * (1 + confidence_level) / 2]
    for i, name in enumerate(names):
        row = {"wins": int(wins[i]), "comparisons": int(games[i])}
        row["win_share"] = float(wins[i] / games[i]) if games[i] else None
        if theta is None:
            row.update(score=None, se=None, wald_low=None, wald_high=None, boot_low=None, boot_high=None)
        else:
            se = float(np.sqrt(covariance[i, i]))
            row.update(
                score=float(theta[i]), se=se, wald_low=float(theta[i] - z * se), wald_high=float(theta[i] + z * se)
            )
            low, high = np.percentile(boot[:, i], levels) if len(boot) else (np.nan, np.nan)
            row.update(boot_low=_finite(low), boot_high=_finite(high))
        result["methods"][name] = row
    return result


def _finite(value: float) -> float | None:
    value = float(value)
    return value if np.isfinite(value) else None


def _bootstrap_scores(
    prepared: pd.DataFrame, names: tuple[str, ...], *, n_boot: int, seed: int
) -> tuple[np.ndarray, int]:
    index = {name: i for i, name in enumerate(names)}
    winner = prepared["winner"].map(index).to_numpy(dtype=np.int64)
    loser = prepared["loser"].map(index).to_numpy(dtype=np.int64)
    codes, participants = pd.factorize(prepared["participant"], sort=True)
    rows_of = [np.flatnonzero(codes == p) for p in range(len(participants))]
    rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([int(seed), _STREAM_PREFERENCE])))
    replicates, dropped = [], 0
    for _ in range(n_boot):
        drawn = rng.integers(0, len(rows_of), size=len(rows_of))
        rows = np.concatenate([rows_of[p] for p in drawn])
        theta, _, _ = bradley_terry_fit(winner[rows], loser[rows], len(names))
        if theta is None:
            dropped += 1
        else:
            replicates.append(theta)
    return (np.array(replicates) if replicates else np.full((0, len(names)), np.nan)), dropped


# --------------------------------------------------------------------------- triads and agreement


def _circular_counts(winner: Sequence[str], loser: Sequence[str]) -> tuple[int, int]:
    """(circular, directed) triads of one participant's majority preferences."""
    margin: dict[tuple[str, str], int] = {}
    for w, lo in zip(winner, loser, strict=True):
        a, b = sorted((w, lo))
        margin[(a, b)] = margin.get((a, b), 0) + (1 if w == a else -1)
    beats = {pair if m > 0 else pair[::-1] for pair, m in margin.items() if m != 0}
    methods = sorted({m for pair in margin for m in pair})
    circular = directed = 0
    for a, b, c in combinations(methods, 3):
        edges = [(a, b), (b, c), (a, c)]
        if not all(e in beats or e[::-1] in beats for e in edges):
            continue
        directed += 1
        # circular iff each method wins exactly once within the triad
        if (
            (a, b) in beats
            and (b, c) in beats
            and (c, a) in beats
            or (b, a) in beats
            and (c, b) in beats
            and (a, c) in beats
        ):
            circular += 1
    return circular, directed


def circular_triads(prepared: pd.DataFrame) -> dict:
    """Circular (intransitive) triads per participant and overall (module docstring):
    ``{"overall": {circular, directed, share}, "mean_participant_share", "chance_share": 0.25,
    "participants": {id: {circular, directed, share}}}``; a share is ``None`` without a directed
    triad."""
    per: dict[str, dict] = {}
    for participant, rows in prepared.groupby("participant", sort=True):
        circular, directed = _circular_counts(rows["winner"].tolist(), rows["loser"].tolist())
        per[str(participant)] = {
            "circular": circular,
            "directed": directed,
            "share": circular / directed if directed else None,
        }
    circular = sum(v["circular"] for v in per.values())
    directed = sum(v["directed"] for v in per.values())
    shares = [v["share"] for v in per.values() if v["share"] is not None]
    return {
        "overall": {"circular": circular, "directed": directed, "share": circular / directed if directed else None},
        "mean_participant_share": float(np.mean(shares)) if shares else None,
        "chance_share": 0.25,
        "participants": per,
    }


def preference_agreement(prepared: pd.DataFrame) -> dict:
    """Agreement between participants on the same (item, pair of methods): Krippendorff's α
    (nominal, value = the preferred method) and the raw pairwise agreement, over units with two
    or more judgements. ``{"alpha", "pairwise_agreement", "units"}``; ``None`` where undefined."""
    pair = [" | ".join(sorted(p)) for p in zip(prepared["winner"], prepared["loser"], strict=True)]
    units = prepared["item"].astype(str) + " :: " + pd.Series(pair, index=prepared.index)
    frame = pd.DataFrame({"unit": units, "participant": prepared["participant"], "value": prepared["winner"]})
    counts = frame.groupby("unit")["value"].agg(list)
    counts = counts[counts.map(len) >= 2]
    if counts.empty:
        return {"alpha": None, "pairwise_agreement": None, "units": 0}
    matrix = np.full((int(counts.map(len).max()), len(counts)), None, dtype=object)
    agree = pairs = 0
    for u, values in enumerate(counts):
        matrix[: len(values), u] = values
        _, n = np.unique(values, return_counts=True)
        agree += int((n * (n - 1) // 2).sum())
        pairs += len(values) * (len(values) - 1) // 2
    return {
        "alpha": krippendorff_alpha(matrix, level="nominal"),
        "pairwise_agreement": agree / pairs,
        "units": len(counts),
    }


# --------------------------------------------------------------------------- simulation


def preference_simulate(
    *,
    strengths: Mapping[str, float],
    n_participants: int,
    items_per_participant: int,
    seed: int,
) -> pd.DataFrame:
    """Simulated choices with known Bradley–Terry strengths: participant ``p`` on item ``i``
    compares the pair ``i mod #pairs`` (each unordered pair equally often), the left side
    alternating with ``p``, and prefers method ``a`` over ``b`` with probability
    ``expit(strengths[a] − strengths[b])``. Columns as the export: participant, item,
    method_left, method_right, preferred, phase."""
    names = list(strengths)
    pairs = list(combinations(names, 2))
    rng = np.random.default_rng(seed)
    rows = []
    for p in range(n_participants):
        for i in range(items_per_participant):
            a, b = pairs[(i + p) % len(pairs)]
            left, right = (a, b) if (p + i // len(pairs)) % 2 == 0 else (b, a)
            left_wins = rng.random() < expit(strengths[left] - strengths[right])
            rows.append((f"p{p}", f"i{i}", left, right, "left" if left_wins else "right", "test"))
    return pd.DataFrame(rows, columns=["participant", "item", "method_left", "method_right", "preferred", "phase"])


# --------------------------------------------------------------------------- ratings


def ratings_prepare(df: pd.DataFrame, *, scales: Sequence[str] = RATING_SCALES, points: int = 5) -> pd.DataFrame:
    """The test-phase ratings of a response frame (the export's columns), long: ``participant``,
    ``item``, ``method`` (the arm: ``condition``), ``scale``, ``rating`` (int 1..points). Needs
    ``participant``, ``item``, ``condition`` and ``rating_<scale>`` per scale (empty ratings are
    left out, as are pre-test rows, attention checks and excluded participants where those
    columns exist). Raises ``ValueError`` on a missing column or a rating outside 1..points."""
    columns = {f"rating_{scale}": scale for scale in scales}
    missing = [c for c in ("participant", "item", "condition", *columns) if c not in df.columns]
    if missing:
        raise ValueError(f"ratings frame lacks columns {missing}")
    df = _drop_flagged(df.reset_index(drop=True)).rename(columns={**columns, "condition": "method"})
    long = df.melt(
        id_vars=["participant", "item", "method"], value_vars=list(scales), var_name="scale", value_name="rating"
    )
    long = long.loc[long["rating"].notna() & (long["rating"].astype(str) != "")]
    rating = pd.to_numeric(long["rating"], errors="coerce")
    if rating.isna().any() or (rating % 1 != 0).any() or ((rating < 1) | (rating > points)).any():
        raise ValueError(f"ratings must be whole numbers 1..{points}")
    return pd.DataFrame(
        {
            "participant": long["participant"].astype(str).to_numpy(),
            "item": long["item"].astype(str).to_numpy(),
            "method": long["method"].astype(str).to_numpy(),
            "scale": long["scale"].astype(str).to_numpy(),
            "rating": rating.astype(np.int64).to_numpy(),
        }
    )


def _count_stats(counts: np.ndarray, reference: np.ndarray | None) -> dict[str, np.ndarray]:
    """Mean, median, difference of means and probability of superiority from rating counts
    ``counts[..., point]`` (points 1..K on the last axis; ``reference`` the same shape)."""
    points = np.arange(1, counts.shape[-1] + 1)
    n = counts.sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = (counts * points).sum(axis=-1) / n
        cumulative = np.cumsum(counts, axis=-1)
        # numpy's median: the average of the ((n-1)//2)-th and (n//2)-th sorted values (0-based)
        lower = (cumulative <= ((n - 1) // 2)[..., None]).sum(axis=-1) + 1
        upper = (cumulative <= (n // 2)[..., None]).sum(axis=-1) + 1
        median = np.where(n > 0, (lower + upper) / 2, np.nan)
        out = {"mean": mean, "median": median}
        if reference is not None:
            m = reference.sum(axis=-1)
            share, ref_share = counts / n[..., None], reference / m[..., None]
            below = np.cumsum(ref_share, axis=-1) - ref_share
            out["difference"] = mean - (reference * points).sum(axis=-1) / m
            out["superiority"] = (share * (below + ref_share / 2)).sum(axis=-1)
    return out


def ratings_summary(
    prepared: pd.DataFrame,
    *,
    reference: str | None = None,
    points: int = 5,
    confidence_level: float = 0.95,
    n_boot: int = 1000,
    seed: int = 0,
) -> dict:
    """Per scale and method: ``n``, ``distribution`` (count per point 1..points), ``shares``,
    ``mean``/``median`` with bootstrap intervals and, against ``reference``, ``difference`` of
    means and ``superiority`` (probability of superiority) with bootstrap intervals (module
    docstring). ``{scale: {method: {...}}}``; a reference's own effects are ``None``."""
    scales, scale_code = np.unique(prepared["scale"].to_numpy(dtype=str), return_inverse=True)
    methods, method_code = np.unique(prepared["method"].to_numpy(dtype=str), return_inverse=True)
    person, participants = pd.factorize(prepared["participant"], sort=True)
    # per participant, scale, method and point: how many ratings
    counts = np.zeros((len(participants), len(scales), len(methods), points))
    np.add.at(counts, (person, scale_code, method_code, prepared["rating"].to_numpy() - 1), 1.0)
    ref = int(np.flatnonzero(methods == reference)[0]) if reference in set(methods) else None

    def compute(total: np.ndarray) -> dict[str, np.ndarray]:
        reference_counts = None if ref is None else np.broadcast_to(total[..., ref : ref + 1, :], total.shape)
        return _count_stats(total, reference_counts)

    total = counts.sum(axis=0)
    point = compute(total)
    rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([int(seed), _STREAM_RATINGS])))
    # a resample = how often each participant is drawn; its counts are the weighted sum
    weights = rng.multinomial(len(participants), np.full(len(participants), 1 / len(participants)), size=n_boot)
    boot = compute(np.einsum("bp,psmk->bsmk", weights, counts)) if n_boot and len(participants) else {}
    levels = [(1 - confidence_level) / 2, (1 + confidence_level) / 2]
    summary: dict[str, dict] = {}
    for s, scale in enumerate(scales):
        for m, method in enumerate(methods):
            n = int(total[s, m].sum())
            if n == 0:
                continue
            row: dict = {"n": n, "distribution": total[s, m].astype(int).tolist(), "shares": (total[s, m] / n).tolist()}
            for stat, value in point.items():
                row[stat] = _finite(value[s, m])
                replicates = boot[stat][:, s, m] if boot else np.array([])
                replicates = replicates[np.isfinite(replicates)]
                low, high = np.quantile(replicates, levels) if len(replicates) else (np.nan, np.nan)
                row[f"{stat}_low"], row[f"{stat}_high"] = _finite(low), _finite(high)
            if m == ref:
                for stat in ("difference", "superiority"):
                    row[stat] = row[f"{stat}_low"] = row[f"{stat}_high"] = None
            summary.setdefault(str(scale), {})[str(method)] = row
    return summary


# --------------------------------------------------------------------------- reports


def preference_report(df: pd.DataFrame, *, seed: int = 0, n_boot: int = 1000, confidence_level: float = 0.95) -> dict:
    """A preference study's analysis from the responses export: ``bradley_terry``,
    ``circular_triads`` (without the per-participant rows), ``agreement`` and the counts.
    Raises ``ValueError`` when no choice is left."""
    prepared = preference_prepare(df)
    if prepared.empty:
        raise ValueError("no preference answers yet")
    triads = circular_triads(prepared)
    return {
        "bradley_terry": bradley_terry(prepared, confidence_level=confidence_level, n_boot=n_boot, seed=seed),
        "triads": {key: value for key, value in triads.items() if key != "participants"},
        "agreement": preference_agreement(prepared),
        "n_choices": len(prepared),
        "n_participants": int(prepared["participant"].nunique()),
        "n_items": int(prepared["item"].nunique()),
        "left_share": float((prepared["winner"] == prepared["method_left"]).mean()),
    }


def ratings_report(
    df: pd.DataFrame, *, reference: str | None, seed: int = 0, n_boot: int = 1000, confidence_level: float = 0.95
) -> dict:
    """A rating study's analysis from the responses export: :func:`ratings_summary` per scale and
    method, and the counts. Raises ``ValueError`` when no rating is left."""
    prepared = ratings_prepare(df)
    if prepared.empty:
        raise ValueError("no ratings yet")
    return {
        "scales": ratings_summary(
            prepared, reference=reference, confidence_level=confidence_level, n_boot=n_boot, seed=seed
        ),
        "reference": reference,
        "n_participants": int(prepared["participant"].nunique()),
        "n_items": int(prepared["item"].nunique()),
    }
