"""MultiViz stage 4 (multimodal prediction): a sparse linear model over the decision-level
features that approximates the model's head.

Per class ``c`` the logit is approximated by ``logit_c(x) ≈ b_c + sum_f W[c, f] z_f(x)``,
``z`` the features (:mod:`workers.engine.features`). The support of each row of ``W`` is
chosen by the lasso (scikit-learn's coordinate descent, on standardised features, one
problem per class); the weights on that support are then refitted by least squares, so a
head that is already linear and sparse is recovered exactly instead of shrunk ("relaxed
lasso"). **Fidelity** is the share of held-out items on which the sparse model's answer
(its argmax) equals the model's. No Django, no torch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sklearn.linear_model import Lasso

__all__ = ["SparseHead", "fit_sparse_head", "top_contributions"]


@dataclass
class SparseHead:
    """A fitted sparse linear head.

    Attributes:
        weights: ``(C, F)``, most entries exactly zero.
        intercept: ``(C,)``.
        alpha: the relative L1 strength it was fitted with.
        fidelity: share of held-out items whose sparse argmax equals the model's answer (None
            with no held-out items).
        train_fidelity: the same on the training items.
        train_rows, test_rows: row indices of the items each part used.
    """

    weights: np.ndarray
    intercept: np.ndarray
    alpha: float
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


def fit_sparse_head(
    features: np.ndarray,
    logits: np.ndarray,
    *,
    alpha: float = 0.05,
    test_fraction: float = 0.25,
    seed: int = 0,
    max_iter: int = 20_000,
) -> SparseHead:
    """Fit the sparse linear head to the model's logits.

    Args:
        features: ``(N, F)`` decision-level features of ``N`` items.
        logits: ``(N, C)`` the model's logits of the same items.
        alpha: L1 strength relative to each class's logit spread: the lasso of class ``c``
            runs with ``alpha * std(logit_c)`` on standardised features. Larger: sparser.
        test_fraction: share of items held out for the fidelity (chosen by ``seed``).
        seed: the held-out split's seed.

    Returns:
        A :class:`SparseHead`. Raises ``ValueError`` for mismatched or non-finite inputs.
        Cost: ``C`` lasso fits and least-squares refits on ``(N_train, F)``.
    """
    x = np.asarray(features, dtype=np.float64)
    y = np.asarray(logits, dtype=np.float64)
    if x.ndim != 2 or y.ndim != 2 or x.shape[0] != y.shape[0]:
        raise ValueError(f"features {x.shape} and logits {y.shape} must be (N, F) and (N, C)")
    if x.shape[0] < 2:
        raise ValueError("the sparse head needs at least two items")
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise ValueError("features or logits contain NaN/Inf")
    if alpha <= 0:
        raise ValueError("alpha must be positive")
    train, test = _split(x.shape[0], test_fraction, seed)
    xt, yt = x[train], y[train]
    mean, std = xt.mean(axis=0), xt.std(axis=0)
    live = std > 1e-12  # a constant feature explains nothing beyond the intercept
    z = np.zeros_like(xt)
    z[:, live] = (xt[:, live] - mean[live]) / std[live]
    n_classes, n_features = y.shape[1], x.shape[1]
    weights = np.zeros((n_classes, n_features))
    intercept = np.zeros(n_classes)
    for c in range(n_classes):
        target = yt[:, c]
        spread = float(target.std())
        support = np.zeros(n_features, dtype=bool)
        if spread > 1e-12:
            lasso = Lasso(alpha=alpha * spread, max_iter=max_iter, tol=1e-8)
            lasso.fit(z, target)
            support = (np.abs(lasso.coef_) > 1e-10) & live
        cols = np.flatnonzero(support)
        # Refit on the support without the penalty: a linear head is recovered exactly.
        design = np.hstack([xt[:, cols], np.ones((xt.shape[0], 1))])
        coef, *_ = np.linalg.lstsq(design, target, rcond=None)
        weights[c, cols] = coef[:-1]
        intercept[c] = coef[-1]
    head = SparseHead(
        weights=weights,
        intercept=intercept,
        alpha=float(alpha),
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
