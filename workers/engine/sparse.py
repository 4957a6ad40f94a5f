"""MultiViz stage 4 (multimodal prediction): a sparse linear model over the decision-level
features that approximates the model's head.

Per class ``c`` the logit is approximated by ``logit_c(x) ≈ b_c + sum_f W[c, f] z_f(x)``,
``z`` the features (:mod:`workers.engine.features`). The support of each row of ``W`` is
chosen on the lasso's regularisation path (scikit-learn's ``lars_path``, which gives every
knot of the path exactly, on standardised features, one path per class): every support the path passes through is refitted by least
squares (no shrinkage, the "relaxed lasso") and scored by ``folds``-fold cross-validation on
the training items, and the **sparsest support whose cross-validated error is within one
standard error of the best** (the one-standard-error rule; with a floor of ``1e-9`` of the
logit's variance for float noise) is kept. So no fixed strength decides what a feature must
weigh to be kept: a head that is already linear and sparse is recovered exactly, whatever
the features' scales and however little one used feature moves its class score, and a head
that is not linear gets the sparsest support that fits it as well as any within its noise.
**Fidelity** is the share of held-out items on which the sparse model's answer (its argmax)
equals the model's. No Django, no torch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sklearn.linear_model import Lasso, lars_path

__all__ = ["ScoreParts", "SparseHead", "fit_sparse_head", "score_parts", "top_contributions"]


@dataclass
class SparseHead:
    """A fitted sparse linear head.

    Attributes:
        weights: ``(C, F)``, most entries exactly zero.
        intercept: ``(C,)``.
        alpha: the largest relative L1 strength of the classes' chosen supports.
        alphas: per class, the relative L1 strength (``alpha / std(logit_c)``) on the path
            where its chosen support first appears (or the fixed one).
        fidelity: share of held-out items whose sparse argmax equals the model's answer (None
            with no held-out items).
        train_fidelity: the same on the training items.
        train_rows, test_rows: row indices of the items each part used.
    """

    weights: np.ndarray
    intercept: np.ndarray
    alpha: float
    alphas: list[float]
    fidelity: float | None
    train_fidelity: float
    train_rows: np.ndarray = field(repr=False)
    test_rows: np.ndarray = field(repr=False)

    def logits(self, features: np.ndarray) -> np.ndarray:
        """``(N, C)`` sparse logits of ``(N, F)`` features."""
        return np.asarray(features, dtype=np.float64) @ self.weights.T + self.intercept

    def contributions(self, features: np.ndarray) -> np.ndarray:
        """``(C, F)`` terms ``W[c, f] * z_f`` of one item's ``(F,)`` features: the sparse
        logit of class ``c`` is their sum plus ``intercept[c]``."""
        return self.weights * np.asarray(features, dtype=np.float64)[None, :]

    def support(self) -> list[list[int]]:
        """Per class, the features with a non-zero weight."""
        return [np.flatnonzero(row).tolist() for row in self.weights]

    def to_arrays(self, prefix: str = "sparse/") -> dict[str, np.ndarray]:
        return {
            f"{prefix}weights": self.weights,
            f"{prefix}intercept": self.intercept,
            f"{prefix}train_rows": self.train_rows,
            f"{prefix}test_rows": self.test_rows,
        }

    def to_json(self) -> dict[str, Any]:
        return {
            "alpha": self.alpha,
            "alphas": self.alphas,
            "fidelity": self.fidelity,
            "train_fidelity": self.train_fidelity,
            "n_train": int(self.train_rows.size),
            "n_test": int(self.test_rows.size),
            "nonzero_per_class": [len(s) for s in self.support()],
        }


def _split(n: int, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    order = np.random.default_rng(seed).permutation(n)
    n_test = int(round(n * test_fraction)) if n >= 4 else 0
    return np.sort(order[n_test:]), np.sort(order[:n_test])


#: Supports whose cross-validated error is within this share of the logit's variance of the
#: best one's count as equally good (float noise; an exact refit leaves ~1e-30).
NOISE_FLOOR = 1e-9


def _refit(z: np.ndarray, target: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Least squares of ``target`` on the columns ``cols`` of standardised ``z`` plus an
    intercept: ``(len(cols) + 1,)`` coefficients, the intercept last. Solved from the normal
    equations (standardised columns keep them well conditioned; SVD only for collinear ones)."""
    design = np.hstack([z[:, cols], np.ones((z.shape[0], 1))])
    gram, moment = design.T @ design, design.T @ target
    try:
        return np.linalg.solve(gram, moment)
    except np.linalg.LinAlgError:
        return np.linalg.lstsq(design, target, rcond=None)[0]


def _cv_errors(z: np.ndarray, target: np.ndarray, cols: np.ndarray, folds: list[_Fold]) -> np.ndarray:
    """Per fold, the mean squared error on the fold of the least-squares refit on the other
    folds, solved from the folds' Gram matrices (one small solve per support)."""
    out = []
    idx = np.append(cols, z.shape[1])  # the intercept's column
    for fold in folds:
        gram, moment = fold.gram[np.ix_(idx, idx)], fold.moment[idx]  # type: ignore[index]
        try:
            coef = np.linalg.solve(gram, moment)
        except np.linalg.LinAlgError:  # collinear features on this fold
            coef = np.linalg.lstsq(gram, moment, rcond=None)[0]
        predicted = z[np.ix_(fold.held, cols)] @ coef[:-1] + coef[-1]
        out.append(float(np.mean((predicted - target[fold.held]) ** 2)))
    return np.asarray(out)


@dataclass
class _Fold:
    held: np.ndarray  # rows of the fold
    kept: np.ndarray  # the other rows' design (with a column of ones), transposed
    gram: np.ndarray  # (F + 1, F + 1) of the other rows
    moment: np.ndarray | None = None  # (F + 1,) their design times the class's target


def _folds(z: np.ndarray, *, n_folds: int, seed: int) -> list[_Fold]:
    """``n_folds`` folds of the rows of ``z`` with their complements' Gram matrices (shared
    by every class)."""
    order = np.random.default_rng([seed, 1]).permutation(z.shape[0])
    design = np.hstack([z, np.ones((z.shape[0], 1))])
    out = []
    for k in range(n_folds):
        held = np.sort(order[k::n_folds])
        keep = np.ones(z.shape[0], dtype=bool)
        keep[held] = False
        kept = design[keep].T
        out.append(_Fold(held=held, kept=kept, gram=kept @ kept.T))
    return out


def _support_on_path(
    z: np.ndarray, target: np.ndarray, *, folds: list[_Fold], max_iter: int
) -> tuple[np.ndarray, float]:
    """The sparsest support on the lasso path within one standard error of the best
    cross-validated refit, and the path's (relative) strength where it first appears."""
    spread = float(target.std())
    # LARS gives every knot of the lasso path exactly: each support the path passes through.
    alphas, _, coefs = lars_path(z, target - target.mean(), method="lasso", max_iter=max_iter)
    candidates: dict[tuple[int, ...], float] = {(): float(alphas[0])}
    for k in range(alphas.size):
        support = tuple(np.flatnonzero(np.abs(coefs[:, k]) > 1e-12 * spread).tolist())
        candidates.setdefault(support, float(alphas[max(k - 1, 0)]))  # the knot where it appeared
    for fold in folds:
        keep = np.ones(z.shape[0], dtype=bool)
        keep[fold.held] = False
        fold.moment = fold.kept @ target[keep]
    scored = []
    for support, alpha in candidates.items():
        errors = _cv_errors(z, target, np.asarray(support, dtype=np.int64), folds)
        scored.append((support, alpha, float(errors.mean()), float(errors.std(ddof=1) / np.sqrt(len(folds)))))
    _, _, best, best_se = min(scored, key=lambda row: row[2])
    bound = best + max(best_se, NOISE_FLOOR * spread**2)
    support, alpha, _, _ = min((row for row in scored if row[2] <= bound), key=lambda row: (len(row[0]), -row[1]))
    return np.asarray(support, dtype=np.int64), alpha / spread


def fit_sparse_head(
    features: np.ndarray,
    logits: np.ndarray,
    *,
    alpha: float | None = None,
    test_fraction: float = 0.25,
    seed: int = 0,
    folds: int = 5,
    max_iter: int = 20_000,
) -> SparseHead:
    """Fit the sparse linear head to the model's logits.

    Args:
        features: ``(N, F)`` decision-level features of ``N`` items.
        logits: ``(N, C)`` the model's logits of the same items.
        alpha: None (the default) chooses each class's support on the regularisation path by
            cross-validation (see the module doc). A number fixes the L1 strength relative to
            each class's logit spread instead: the lasso of class ``c`` runs with
            ``alpha * std(logit_c)`` on standardised features (larger: sparser).
        test_fraction: share of items held out for the fidelity (chosen by ``seed``).
        seed: the held-out split's and the folds' seed.
        folds: cross-validation folds over the training items (fewer when there are fewer
            training items; below 2 the fixed strength 0.05 is used).

    Returns:
        A :class:`SparseHead`. Raises ``ValueError`` for mismatched or non-finite inputs.
        Cost: per class, one LARS lasso path and ``folds`` least-squares refits per distinct
        support on it, on ``(N_train, F)``.
    """
    x = np.asarray(features, dtype=np.float64)
    y = np.asarray(logits, dtype=np.float64)
    if x.ndim != 2 or y.ndim != 2 or x.shape[0] != y.shape[0]:
        raise ValueError(f"features {x.shape} and logits {y.shape} must be (N, F) and (N, C)")
    if x.shape[0] < 2:
        raise ValueError("the sparse head needs at least two items")
    bad = ~(np.isfinite(x).all(axis=1) & np.isfinite(y).all(axis=1))
    if bad.any():
        raise ValueError(f"features or logits contain NaN/Inf (rows {np.flatnonzero(bad)[:10].tolist()})")
    if alpha is not None and alpha <= 0:
        raise ValueError("alpha must be positive")
    train, test = _split(x.shape[0], test_fraction, seed)
    xt, yt = x[train], y[train]
    mean, std = xt.mean(axis=0), xt.std(axis=0)
    live = np.flatnonzero(std > 1e-12 * max(1.0, float(np.abs(xt).max())))  # constant: nothing beyond the intercept
    z = (xt[:, live] - mean[live]) / std[live]
    n_folds = min(int(folds), xt.shape[0] // 2)
    fold_parts = _folds(z, n_folds=n_folds, seed=seed) if alpha is None and n_folds >= 2 and live.size else []
    n_classes, n_features = y.shape[1], x.shape[1]
    weights = np.zeros((n_classes, n_features))
    intercept = np.zeros(n_classes)
    chosen = np.zeros(n_classes)
    for c in range(n_classes):
        target = yt[:, c]
        spread = float(target.std())
        cols = np.zeros(0, dtype=np.int64)
        if spread > 1e-12 and live.size:
            if fold_parts:
                cols, chosen[c] = _support_on_path(z, target, folds=fold_parts, max_iter=max_iter)
            else:
                chosen[c] = 0.05 if alpha is None else float(alpha)
                lasso = Lasso(alpha=chosen[c] * spread, max_iter=max_iter, tol=1e-8)
                lasso.fit(z, target)
                cols = np.flatnonzero(np.abs(lasso.coef_) > 1e-10)
        # Refit on the support without the penalty, on the standardised features (well
        # conditioned whatever the raw scales), then undo the standardisation.
        coef = _refit(z, target, cols)
        scaled = coef[:-1] / std[live[cols]]
        weights[c, live[cols]] = scaled
        intercept[c] = coef[-1] - float(scaled @ mean[live[cols]])
    head = SparseHead(
        weights=weights,
        intercept=intercept,
        alpha=float(chosen.max()) if alpha is None else float(alpha),
        alphas=chosen.tolist(),
        fidelity=None,
        train_fidelity=0.0,
        train_rows=train,
        test_rows=test,
    )
    agree = head.logits(x).argmax(axis=1) == y.argmax(axis=1)
    head.train_fidelity = float(agree[train].mean())
    head.fidelity = float(agree[test].mean()) if test.size else None
    return head


def top_contributions(head: SparseHead, features: np.ndarray, *, target: int, k: int = 3) -> list[tuple[int, float]]:
    """The ``k`` features contributing most (largest ``|W[target, f] * z_f|``, ties by feature
    index) to class ``target``'s sparse logit for one item: ``[(feature, contribution), ...]``.
    Features with zero weight never appear, so fewer than ``k`` may come back."""
    terms = head.contributions(features)[target]
    order = sorted((f for f in np.flatnonzero(head.weights[target])), key=lambda f: (-abs(terms[f]), f))
    return [(int(f), float(terms[f])) for f in order[:k]]


def candidate_contributions(
    head: SparseHead, features: np.ndarray, targets: Sequence[int], *, k: int = 5
) -> dict[int, list[tuple[int, float]]]:
    """:func:`top_contributions` for each of an item's candidate classes."""
    return {int(t): top_contributions(head, features, target=int(t), k=k) for t in targets}


@dataclass(frozen=True)
class ScoreParts:
    """One answer's sparse score in parts that add up to it: ``score = sum(top) + rest + base``.

    Attributes:
        top: the ``k`` largest ``(feature, weight × activation)`` terms.
        rest: the sum of the other non-zero terms (``n_rest`` of them).
        base: the intercept (the score with every feature at 0).
        score: the sparse logit of the answer.
    """

    top: list[tuple[int, float]]
    rest: float
    n_rest: int
    base: float
    score: float


def score_parts(head: SparseHead, features: np.ndarray, *, target: int, k: int = 5) -> ScoreParts:
    """The parts of class ``target``'s sparse score for one item's ``(F,)`` features. Bars of
    the top terms alone omit the intercepts (which differ between classes) and the smaller
    terms, so they can favour an answer the sparse model does not give: the parts add up."""
    top = top_contributions(head, features, target=target, k=k)
    terms = head.contributions(features)[target]
    shown = {f for f, _ in top}
    others = [f for f in np.flatnonzero(head.weights[target]) if int(f) not in shown]
    rest = float(sum(terms[f] for f in others))
    base = float(head.intercept[target])
    return ScoreParts(top=top, rest=rest, n_rest=len(others), base=base, score=float(terms.sum()) + base)
