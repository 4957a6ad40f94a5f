"""Inter-annotator agreement: Krippendorff's α, Fleiss' κ and Dawid–Skene consensus.

Within an arm, the *units* are items and the *coders* are participants; each test-phase response is
one value (the participant's ``guess`` for nominal α, Fleiss' κ and Dawid–Skene; ``confidence``
for ordinal α). The service stores at most one response per participant and item, so a unit's
values come from distinct coders.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

import numpy as np
import pandas as pd
from scipy import sparse

from .responses import responses_prepare, sorted_codes

__all__ = [
    "DawidSkeneResult",
    "agreement",
    "dawid_skene",
    "fleiss_kappa",
    "krippendorff_alpha",
    "krippendorff_alpha_from_counts",
]

Level = Literal["nominal", "ordinal", "interval"]
_LEVELS: Final = ("nominal", "ordinal", "interval")


def _distance(level: Level, *, values: np.ndarray | None, n_v: np.ndarray) -> np.ndarray:
    """Squared distance δ²(c, k) between the value columns (sorted ascending for ordinal/interval)."""
    size = len(n_v)
    if level == "nominal":
        return 1.0 - np.eye(size)
    if level == "ordinal":
        # δ²(c, k) = (sum_{g=c..k} n_g − (n_c + n_k) / 2)², c ≤ k (Krippendorff 2011)
        cumulative = np.concatenate([[0.0], np.cumsum(n_v)])
        low = np.minimum.outer(np.arange(size), np.arange(size))
        high = np.maximum.outer(np.arange(size), np.arange(size))
        between = cumulative[high + 1] - cumulative[low]
        return (between - (n_v[:, None] + n_v[None, :]) / 2.0) ** 2
    if level == "interval":
        if values is None:
            raise ValueError("interval alpha needs the numeric values of the columns")
        numeric = np.asarray(values, dtype=np.float64)
        return (numeric[:, None] - numeric[None, :]) ** 2
    raise ValueError(f"level must be one of {_LEVELS}, got {level!r}")


def krippendorff_alpha_from_counts(
    value_counts: np.ndarray, *, level: Level, values: np.ndarray | None = None
) -> float | None:
    """Krippendorff's α from a units × values count matrix (coincidence-matrix formulation).

    ``value_counts[u, c]`` is how many coders gave value ``c`` to unit ``u``; columns are ordered
    ascending for ``ordinal``/``interval`` (``values`` gives their numeric values, needed for
    ``interval``). With ``m_u = sum_c value_counts[u, c]`` and only *pairable* units
    (``m_u >= 2``):

    * coincidences ``o[c, k] = sum_u n_uc (n_uk − [c == k]) / (m_u − 1)``,
    * marginals ``n_c = sum_k o[c, k]``, ``n = sum_c n_c``,
    * ``α = 1 − (n − 1) · sum_{c,k} o[c, k] δ²(c, k) / sum_{c,k} n_c n_k δ²(c, k)``,

    with ``δ²`` nominal (``[c != k]``), ordinal (``(sum_{g=c..k} n_g − (n_c + n_k)/2)²``) or interval
    (``(v_c − v_k)²``). Returns ``None`` when α is undefined: no pairable unit, or no disagreement
    is possible (expected disagreement 0, e.g. a single value observed).
    """
    counts = np.asarray(value_counts, dtype=np.float64)
    if counts.ndim != 2:
        raise ValueError("value_counts must be a 2-D units × values array")
    per_unit = counts.sum(axis=1)
    pairable = per_unit >= 2
    if not pairable.any():
        return None
    counts = counts[pairable]
    weights = 1.0 / (per_unit[pairable] - 1.0)
    coincidence = (counts * weights[:, None]).T @ counts - np.diag((counts * weights[:, None]).sum(axis=0))
    n_v = coincidence.sum(axis=0)
    n = n_v.sum()
    delta = _distance(level, values=values, n_v=n_v)
    expected = (np.outer(n_v, n_v) * delta).sum()
    if n <= 1 or expected <= 0:
        return None
    observed = (coincidence * delta).sum()
    return float(1.0 - (n - 1.0) * observed / expected)


def krippendorff_alpha(reliability_data: np.ndarray, *, level: Level) -> float | None:
    """Krippendorff's α of a coders × units matrix; missing cells are NaN (or ``None``).

    Values are numbers for ``ordinal``/``interval`` (ordered by numeric value) and any hashable
    values for ``nominal``. Same definition as :func:`krippendorff_alpha_from_counts`; matches
    ``krippendorff.alpha(reliability_data=..., level_of_measurement=level)`` where that is defined
    (this function returns ``None`` where the package raises).
    """
    data = np.asarray(reliability_data, dtype=object)
    if data.ndim != 2:
        raise ValueError("reliability_data must be a 2-D coders × units array")
    present = ~pd.isna(data)
    unit = np.broadcast_to(np.arange(data.shape[1])[None, :], data.shape)[present]
    observed = data[present]
    try:
        numeric_values = observed.astype(np.float64)
    except (TypeError, ValueError):
        if level != "nominal":
            raise ValueError(f"{level} alpha needs numeric values") from None
        values, code = np.unique(observed.astype(str), return_inverse=True)
        numeric = None
    else:
        values, code = np.unique(numeric_values, return_inverse=True)
        numeric = values
    counts = np.bincount(unit * len(values) + code, minlength=data.shape[1] * len(values))
    counts = counts.reshape(data.shape[1], len(values))
    return krippendorff_alpha_from_counts(counts, level=level, values=numeric)


def fleiss_kappa(counts: np.ndarray) -> float | None:
    """Fleiss' κ of a subjects × categories count matrix where every row sums to the same ``n >= 2``.

    With ``N`` subjects: ``p_j = sum_i n_ij / (N n)``, ``P_i = (sum_j n_ij² − n) / (n (n − 1))``,
    ``P̄ = mean_i P_i``, ``P̄_e = sum_j p_j²`` and ``κ = (P̄ − P̄_e) / (1 − P̄_e)`` (Fleiss 1971; the
    same as ``statsmodels.stats.inter_rater.fleiss_kappa(counts, method="fleiss")``). Returns
    ``None`` when ``P̄_e == 1`` (all ratings in one category). Raises ``ValueError`` when rows
    have different sums or fewer than 2 raters.
    """
    table = np.asarray(counts, dtype=np.float64)
    if table.ndim != 2 or table.shape[0] == 0:
        raise ValueError("counts must be a non-empty 2-D subjects × categories array")
    raters = table.sum(axis=1)
    if not np.all(raters == raters[0]):
        raise ValueError(f"every subject needs the same number of raters (found {raters.min():g} to {raters.max():g})")
    n = raters[0]
    if n < 2:
        raise ValueError("Fleiss' kappa needs at least 2 raters per subject")
    p_j = table.sum(axis=0) / (table.shape[0] * n)
    p_i = ((table**2).sum(axis=1) - n) / (n * (n - 1))
    p_bar = p_i.mean()
    p_e = float((p_j**2).sum())
    if np.isclose(p_e, 1.0, rtol=0.0, atol=1e-15):
        return None
    return float((p_bar - p_e) / (1.0 - p_e))


# Floor on counts and class priors before logs are taken, as in crowd-kit (``_EPS = 1e-10``): an
# answer a rater never gave for some true class keeps a probability of 1e-10 instead of 0, so
# one surprising answer cannot make a class impossible (log 0).
DAWID_SKENE_FLOOR: Final = 1e-10


@dataclass(frozen=True)
class DawidSkeneResult:
    """Output of :func:`dawid_skene`.

    ``posterior[i, k]``: P(true class of item ``items[i]`` is ``classes[k]``), shape
    (n_items, n_classes). ``confusion[j, k, l]``: P(rater ``raters[j]`` answers ``classes[l]`` |
    true class ``classes[k]``), shape (n_raters, n_classes, n_classes). ``class_prior[k]``.
    ``consensus[item]``: the class of highest posterior (ties → first class in sorted order).
    ``majority_vote[item]``: the most frequent answer (ties → first class in sorted order).
    ``rater_accuracy[rater] = sum_k class_prior[k] * confusion[j, k, k]``. ``converged`` is true
    when the largest change of a posterior in the last round was at most ``tol``
    (``max_posterior_change``); false when ``max_iter`` rounds ran out first.
    """

    items: tuple[str, ...]
    raters: tuple[str, ...]
    classes: tuple[str, ...]
    posterior: np.ndarray
    confusion: np.ndarray
    class_prior: np.ndarray
    consensus: dict[str, str]
    majority_vote: dict[str, str]
    rater_accuracy: dict[str, float]
    n_iter: int
    converged: bool
    max_posterior_change: float
    log_likelihood: float


def dawid_skene(
    df: pd.DataFrame,
    *,
    item_column: str = "item",
    rater_column: str = "participant",
    label_column: str = "guess",
    max_iter: int = 10_000,
    tol: float = 1e-10,
    smoothing: float = 0.0,
) -> DawidSkeneResult:
    """Dawid–Skene (1979) latent-class consensus over the answers in ``df`` (one row per answer).

    Model: item ``i`` has a latent class ``z_i ~ Categorical(π)``; rater ``j`` answers ``l`` with
    probability ``θ_j[z_i, l]``, independently given ``z_i``. EM, the same steps as crowd-kit's
    ``DawidSkene`` (which it matches to about 1e-9 once both have converged; see
    ``docs/STATISTICS.md``):

    * **Init** (deterministic, no randomness): ``T[i, k]`` = share of item ``i``'s answers equal to
      class ``k`` (the soft majority vote).
    * **M-step**: ``π_k ∝ max(sum_i T[i, k] + smoothing, 1e-10)``;
      ``θ_j[k, l] ∝ max(n_j[k, l] + smoothing, 1e-10)`` with ``n_j[k, l] = sum over j's answers
      ``l`` of ``T[i, k]``. With ``smoothing = 0`` (the default: maximum likelihood, as Dawid &
      Skene and crowd-kit) ``θ_j[k, ·]`` runs over the labels rater ``j`` gave and the others get
      0; ``smoothing > 0`` is a symmetric Dirichlet(1 + smoothing) prior on every row of ``θ_j``
      and on ``π`` (the MAP estimate), which pulls sparse raters towards uniform confusion and
      slows EM down a great deal.
    * **E-step**: ``log T[i, k] = log π_k + sum_{answers (j, l) on i} log θ_j[k, l]`` − log-normaliser;
      the normalisers summed over items give the log-likelihood.
    * **Stop** when the largest change of any ``T[i, k]`` between two E-steps is at most ``tol``
      (the posteriors have converged), or after ``max_iter`` rounds (``converged = False``). A
      last M-step makes the reported ``π`` and ``θ`` those of the reported posteriors.

    Classes are the sorted distinct answers; rows with a missing label are ignored. Cost per
    iteration: ``O(n_answers * n_classes)``; simulated arms of 25,000 answers converged in 70–140
    rounds. The result does not depend on row order.
    """
    if max_iter < 1:
        raise ValueError("max_iter must be >= 1")
    if not smoothing >= 0.0:
        raise ValueError("smoothing must be >= 0")
    rows = df[[item_column, rater_column, label_column]].dropna()
    if rows.empty:
        raise ValueError("no answers to aggregate")
    items, item_code = sorted_codes(rows[item_column].astype("str"))
    raters, rater_code = sorted_codes(rows[rater_column].astype("str"))
    classes, label_code = sorted_codes(rows[label_column].astype("str"))
    # canonical answer order, so that floating-point sums do not depend on row order
    order = np.lexsort((label_code, rater_code, item_code))
    item_code, rater_code, label_code = item_code[order], rater_code[order], label_code[order]
    n_items, n_raters, n_classes, n_answers = len(items), len(raters), len(classes), len(rows)
    # answers[(j, l), i] = how often rater j answered l on item i (sparse; canonical order)
    answers = sparse.csr_matrix(
        (np.ones(n_answers), (rater_code * n_classes + label_code, item_code)), shape=(n_raters * n_classes, n_items)
    )
    answers.sum_duplicates()
    answers_t = answers.T.tocsr()
    given = np.asarray(answers.sum(axis=1)).reshape(n_raters, n_classes) > 0  # [j, l]
    kept = given[:, None, :] if smoothing == 0.0 else np.ones((1, 1, n_classes), dtype=bool)
    votes = np.zeros((n_items, n_classes))
    np.add.at(votes, (item_code, label_code), 1.0)
    posterior = votes / votes.sum(axis=1, keepdims=True)

    def m_step(posterior: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        prior = np.maximum(posterior.sum(axis=0) + smoothing, DAWID_SKENE_FLOOR)
        prior /= prior.sum()
        # counts[j, l, k] = sum over j's answers with label l of T[i, k]
        counts = (answers @ posterior).reshape(n_raters, n_classes, n_classes)
        confusion = counts.transpose(0, 2, 1) + smoothing  # [j, k(true), l(answer)]
        confusion = np.where(kept, np.maximum(confusion, DAWID_SKENE_FLOOR), 0.0)
        confusion /= confusion.sum(axis=2, keepdims=True)
        return prior, confusion

    log_likelihood = -np.inf
    change = np.inf
    converged = False
    n_iter = 0
    for n_iter in range(1, max_iter + 1):  # noqa: B007 (read after the loop)
        prior, confusion = m_step(posterior)
        # log θ_j[k, l] as rows (j, l): labels a rater never gave are never looked up (no answers)
        with np.errstate(divide="ignore"):
            log_confusion = np.log(confusion.transpose(0, 2, 1).reshape(n_raters * n_classes, n_classes))
        log_confusion[~np.isfinite(log_confusion)] = 0.0
        log_joint = np.log(prior)[None, :] + answers_t @ log_confusion
        top = log_joint.max(axis=1, keepdims=True)
        normaliser = top[:, 0] + np.log(np.exp(log_joint - top).sum(axis=1))
        updated = np.exp(log_joint - normaliser[:, None])
        change = float(np.abs(updated - posterior).max())
        posterior = updated
        log_likelihood = float(normaliser.sum())
        if change <= tol:
            converged = True
            break
    prior, confusion = m_step(posterior)

    consensus_code = np.argmax(posterior, axis=1)
    majority_code = np.argmax(votes, axis=1)
    accuracy = np.einsum("k,jkk->j", prior, confusion)
    return DawidSkeneResult(
        items=tuple(str(item) for item in items),
        raters=tuple(str(rater) for rater in raters),
        classes=tuple(str(label) for label in classes),
        posterior=posterior,
        confusion=confusion,
        class_prior=prior,
        consensus={str(item): str(classes[code]) for item, code in zip(items, consensus_code)},
        majority_vote={str(item): str(classes[code]) for item, code in zip(items, majority_code)},
        rater_accuracy={str(rater): float(value) for rater, value in zip(raters, accuracy)},
        n_iter=n_iter,
        converged=converged,
        max_posterior_change=change,
        log_likelihood=log_likelihood,
    )


def _unit_counts(units: pd.Series, values: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    unit_codes, _ = pd.factorize(units, sort=True)
    value_codes, uniques = pd.factorize(values, sort=True)
    n_units = int(unit_codes.max()) + 1 if len(unit_codes) else 0
    counts = np.bincount(unit_codes * len(uniques) + value_codes, minlength=n_units * len(uniques))
    return counts.reshape(n_units, len(uniques)), np.asarray(uniques)


def _arm_agreement(rows: pd.DataFrame, *, max_iter: int, tol: float) -> dict:
    guesses = rows[rows["guess"].notna()]
    out: dict = {"n_responses": int(len(rows)), "n_items": int(rows["item"].nunique())}
    reasons: dict[str, str] = {}
    if len(guesses):
        guess_counts, _ = _unit_counts(guesses["item"], guesses["guess"])
        out["alpha_nominal_guess"] = krippendorff_alpha_from_counts(guess_counts, level="nominal")
    else:
        guess_counts = np.zeros((0, 0))
        out["alpha_nominal_guess"] = None
    if out["alpha_nominal_guess"] is None:
        reasons["alpha_nominal_guess"] = "undefined: no item with 2+ guesses, or only one distinct guess"
    confident = rows[rows["confidence"].notna()]
    if len(confident):
        conf_counts, conf_values = _unit_counts(confident["item"], confident["confidence"])
        out["alpha_ordinal_confidence"] = krippendorff_alpha_from_counts(
            conf_counts, level="ordinal", values=conf_values.astype(np.float64)
        )
    else:
        out["alpha_ordinal_confidence"] = None
    if out["alpha_ordinal_confidence"] is None:
        reasons["alpha_ordinal_confidence"] = "undefined: no item with 2+ confidences, or only one distinct value"

    raters_per_item = guess_counts.sum(axis=1)
    out["fleiss_kappa"] = None
    if len(raters_per_item) == 0:
        reasons["fleiss_kappa"] = "no guesses"
    elif raters_per_item.min() != raters_per_item.max():
        reasons["fleiss_kappa"] = (
            f"items have unequal numbers of raters ({int(raters_per_item.min())} to {int(raters_per_item.max())})"
        )
    elif raters_per_item[0] < 2:
        reasons["fleiss_kappa"] = "fewer than 2 raters per item"
    else:
        out["fleiss_kappa"] = fleiss_kappa(guess_counts)
        if out["fleiss_kappa"] is None:
            reasons["fleiss_kappa"] = "undefined: every guess is the same class"
    out["raters_per_item_min"] = int(raters_per_item.min()) if len(raters_per_item) else 0
    out["raters_per_item_max"] = int(raters_per_item.max()) if len(raters_per_item) else 0

    if len(guesses):
        result = dawid_skene(guesses, max_iter=max_iter, tol=tol)
        model = guesses.groupby("item", sort=True)["model_prediction"].first()
        consensus = pd.Series(result.consensus)
        majority = pd.Series(result.majority_vote)
        known = model.dropna().index
        out["dawid_skene"] = {
            "consensus": result.consensus,
            "majority_vote": result.majority_vote,
            "consensus_matches_model": float((consensus[known] == model[known]).mean()) if len(known) else None,
            "majority_matches_model": float((majority[known] == model[known]).mean()) if len(known) else None,
            "rater_accuracy": result.rater_accuracy,
            "class_prior": dict(zip(result.classes, (float(value) for value in result.class_prior))),
            "n_iter": result.n_iter,
            "converged": result.converged,
            "max_posterior_change": result.max_posterior_change,
            "log_likelihood": result.log_likelihood,
        }
        if not result.converged:
            reasons["dawid_skene"] = (
                f"not converged: posteriors still moved by {result.max_posterior_change:.2g} after "
                f"{result.n_iter} rounds"
            )
    else:
        out["dawid_skene"] = None
    out["reasons"] = reasons
    return out


def agreement(df: pd.DataFrame, *, max_iter: int = 10_000, tol: float = 1e-10) -> dict[str, dict]:
    """Agreement per arm over test-phase rows.

    ``result[arm]`` holds ``alpha_nominal_guess`` (Krippendorff's α, nominal, on guesses),
    ``alpha_ordinal_confidence`` (α, ordinal, on confidence 1–5), ``fleiss_kappa`` (on guesses, only
    when every item of the arm has the same number ≥ 2 of guesses; else ``None``),
    ``raters_per_item_min``/``_max``, ``n_responses``, ``n_items``, ``dawid_skene`` (consensus and
    majority-vote guess per item, the share of items where each equals the model's prediction,
    per-rater estimated accuracy, class prior, EM diagnostics: ``n_iter``, ``converged``,
    ``max_posterior_change``, ``log_likelihood``) and ``reasons`` (why a value is ``None``, and
    ``dawid_skene`` when EM stopped at ``max_iter`` before the posteriors converged). Units are
    items, coders are participants; missing cells are simply absent rows.
    """
    return _agreement(responses_prepare(df), max_iter=max_iter, tol=tol)


def _agreement(prepared: pd.DataFrame, *, max_iter: int = 10_000, tol: float = 1e-10) -> dict[str, dict]:
    test = prepared[prepared["phase"] == "test"]
    return {
        str(arm): _arm_agreement(rows, max_iter=max_iter, tol=tol) for arm, rows in test.groupby("condition", sort=True)
    }
