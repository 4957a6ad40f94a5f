"""Partial information decomposition (PID) of two modalities about a target, in bits.

After Liang et al., "Quantifying & Modeling Multimodal Interactions: An Information
Decomposition Framework" (NeurIPS 2023), who use the definitions of Bertschinger, Rauh,
Olbrich, Jost & Ay (2014, "BROJA"). For a joint distribution ``p(x1, x2, y)`` of discrete
variables, let ``Δ_p`` be the distributions ``q`` with the same ``(x1, y)`` and ``(x2, y)``
marginals as ``p``, and

    q* = argmin_{q ∈ Δ_p} I_q(X1, X2; Y)      (= argmax H_q(Y | X1, X2): q(y) is fixed)

Then

    U1 = I_q*(X1; Y | X2)       uniqueness of X1
    U2 = I_q*(X2; Y | X1)       uniqueness of X2
    R  = I_p(X1; Y) − U1        redundancy  (= the co-information I_q*(X1; X2; Y), the max over Δ_p)
    S  = I_p(X1, X2; Y) − I_q*(X1, X2; Y)   synergy

so that ``R + U1 + U2 + S = I_p(X1, X2; Y)``, ``I(X1; Y) = R + U1`` and ``I(X2; Y) = R + U2``
(every ``q ∈ Δ_p`` has ``p``'s ``I(X1; Y)`` and ``I(X2; Y)``). The minimisation is convex:
``−H_q(Y | X1, X2) = Σ q(x1,x2,y) log(q(x1,x2,y) / q(x1,x2))`` is a sum of relative entropies
of linear functions of ``q``: an exponential-cone program, built here as Clarabel's matrices
(the interior-point solver cvxpy would call; building it through cvxpy costs more than solving
it, and the bootstrap solves hundreds) over the cells where ``q`` may be positive
(``p(x1,y) > 0`` and ``p(x2,y) > 0``), then polished onto the marginals by a few rounds of
iterative proportional fitting per ``y``. ``tests/engine/test_pid.py`` checks it against the
same program written in cvxpy and against a grid search.

Continuous representations are made discrete first (:func:`discretise`: principal components,
then k-means), as the paper does for high-dimensional features; estimates on samples are plug-in
(empirical frequencies), and their intervals a percentile bootstrap over items
(:func:`pid_bootstrap`). No Django, no torch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

__all__ = [
    "COMPONENTS",
    "PidResult",
    "discretise",
    "kmeans",
    "joint_from_samples",
    "mutual_information",
    "pid_bootstrap",
    "pid_from_joint",
    "pid_from_samples",
    "sketch",
]

#: Principal components kept before k-means (fewer when the data have fewer).
COMPONENTS = 32
#: Clarabel's gap and feasibility tolerances.
SOLVER_TOLERANCE = 1e-7
_LOG2 = math.log(2.0)


@dataclass(frozen=True)
class PidResult:
    """The decomposition, in bits. ``total`` = ``I(X1, X2; Y)``; ``mi_1`` = ``I(X1; Y)``,
    ``mi_2`` = ``I(X2; Y)``; ``optimum`` = ``I_q*(X1, X2; Y)``."""

    redundancy: float
    unique_1: float
    unique_2: float
    synergy: float
    total: float
    mi_1: float
    mi_2: float
    optimum: float

    def to_json(self) -> dict[str, float]:
        return asdict(self)


def _entropy_bits(p: np.ndarray) -> float:
    p = p[p > 0]
    return float(-(p * np.log(p)).sum() / _LOG2)


def mutual_information(joint: np.ndarray) -> float:
    """``I(A; B)`` in bits of a 2-D joint distribution ``joint[a, b]``."""
    joint = np.asarray(joint, dtype=np.float64)
    return _entropy_bits(joint.sum(1)) + _entropy_bits(joint.sum(0)) - _entropy_bits(joint.ravel())


def _conditional_mi(q: np.ndarray) -> float:
    """``I(X1; Y | X2)`` in bits of ``q[x1, x2, y]``."""
    h_x1x2 = _entropy_bits(q.sum(2).ravel())
    h_x2y = _entropy_bits(q.sum(0).ravel())
    h_x2 = _entropy_bits(q.sum((0, 2)))
    return h_x1x2 + h_x2y - h_x2 - _entropy_bits(q.ravel())


def _normalised(p: np.ndarray) -> np.ndarray:
    p = np.asarray(p, dtype=np.float64)
    if p.ndim != 3:
        raise ValueError(f"the joint distribution must be 3-D (x1, x2, y), got shape {p.shape}")
    if not np.all(np.isfinite(p)) or (p < 0).any():
        raise ValueError("the joint distribution must be finite and non-negative")
    total = p.sum()
    if total <= 0:
        raise ValueError("the joint distribution is empty")
    return p / total


def _polish(q: np.ndarray, p1y: np.ndarray, p2y: np.ndarray, rounds: int = 50) -> np.ndarray:
    """Iterative proportional fitting of each ``q[:, :, y]`` onto the row marginal
    ``p1y[:, y]`` and column marginal ``p2y[:, y]``: removes the solver's residual in the
    constraints (moves ``q`` by about that residual)."""
    q = q.copy()
    for _ in range(rounds):
        rows = q.sum(1)
        q *= np.divide(p1y, rows, out=np.zeros_like(p1y), where=rows > 0)[:, None, :]
        cols = q.sum(0)
        q *= np.divide(p2y, cols, out=np.zeros_like(p2y), where=cols > 0)[None, :, :]
        if np.abs(q.sum(1) - p1y).max() < 1e-14:
            break
    return q


def _solve(p: np.ndarray) -> np.ndarray:
    """``q*`` for a normalised ``p[x1, x2, y]`` (see the module doc).

    The exponential-cone program handed to Clarabel, over the ``n`` cells ``k = (i, j, y)``
    where ``q`` may be positive, with the pair totals ``m_ij = Σ_y q_ijy`` as variables of their
    own (keeps the solver's linear systems sparse; writing ``Σ_y q`` into every cone instead
    makes them denser and the solve several times slower at K = 16)::

        minimise Σ_k t_k  subject to  (−t_k, q_k, m_pair(k)) ∈ K_exp   (t_k ≥ q_k log(q_k / m_pair(k)))
                                      Σ_j q_ijy = p(i, y),  Σ_i q_ijy = p(j, y),  m = Σ_y q
    """
    import clarabel
    import scipy.sparse as sp

    k1, k2, c = p.shape
    p1y, p2y = p.sum(1), p.sum(0)
    # Cells (i, j, y) where q may be positive; q = 0 elsewhere (its marginals are 0 there).
    cells = np.argwhere((p1y[:, None, :] > 0) & (p2y[None, :, :] > 0))
    q_out = np.zeros_like(p)
    n = len(cells)
    if n == 0:
        return q_out
    i, j, y = cells[:, 0], cells[:, 1], cells[:, 2]
    rows_u, row_index = np.unique(i * c + y, return_inverse=True)
    cols_u, col_index = np.unique(j * c + y, return_inverse=True)
    pairs_u, pair_index = np.unique(i * k2 + j, return_inverse=True)
    n_pairs = len(pairs_u)
    cell = np.arange(n)
    ones = np.ones(n)
    # Per y the rows and the columns both sum to p(y): one column constraint per y is implied
    # (and left out: redundant equalities make the linear systems singular).
    col_y = cols_u % c
    implied = np.zeros(len(cols_u), dtype=bool)
    implied[[np.flatnonzero(col_y == t)[-1] for t in np.unique(col_y)]] = True
    kept_cols = np.flatnonzero(~implied)
    col_position = np.full(len(cols_u), -1)
    col_position[kept_cols] = np.arange(len(kept_cols))
    n_rows, n_cols = len(rows_u), len(kept_cols)
    # Variables x = [q (n), t (n), m (n_pairs)]; Clarabel's form: A x + s = b, s in the cones.
    kept = col_position[col_index] >= 0
    eq_rows = np.r_[
        row_index,
        n_rows + col_position[col_index][kept],
        n_rows + n_cols + pair_index,
        n_rows + n_cols + np.arange(n_pairs),
    ]
    eq_cols = np.r_[cell, cell[kept], cell, 2 * n + np.arange(n_pairs)]
    eq_vals = np.r_[ones, ones[kept], ones, -np.ones(n_pairs)]
    n_eq = n_rows + n_cols + n_pairs
    # Cone k: s = (−t_k, q_k, m_pair(k)) = −A x.
    cone_rows = n_eq + np.r_[3 * cell, 3 * cell + 1, 3 * cell + 2]
    cone_cols = np.r_[n + cell, cell, 2 * n + pair_index]
    cone_vals = np.r_[ones, -ones, -ones]
    size = 2 * n + n_pairs
    a = sp.csc_matrix(
        (np.r_[eq_vals, cone_vals], (np.r_[eq_rows, cone_rows], np.r_[eq_cols, cone_cols])), shape=(n_eq + 3 * n, size)
    )
    b = np.r_[p1y.ravel()[rows_u], p2y.ravel()[cols_u[kept_cols]], np.zeros(n_pairs), np.zeros(3 * n)]
    cost = np.r_[np.zeros(n), np.ones(n), np.zeros(n_pairs)]
    settings = clarabel.DefaultSettings()
    settings.verbose = False
    # 1e-7 instead of Clarabel's 1e-8: a third fewer iterations, the PID within about 1e-6 bits.
    settings.tol_gap_abs = settings.tol_gap_rel = settings.tol_feas = SOLVER_TOLERANCE
    cones = [clarabel.ZeroConeT(n_eq)] + [clarabel.ExponentialConeT()] * n
    solution = clarabel.DefaultSolver(sp.csc_matrix((size, size)), cost, a, b, cones, settings).solve()
    if str(solution.status) not in ("Solved", "AlmostSolved"):
        raise RuntimeError(f"the PID convex program was not solved (Clarabel: {solution.status})")
    q_out[i, j, y] = np.maximum(np.asarray(solution.x[:n], dtype=np.float64), 0.0)
    return _polish(q_out, p1y, p2y)


def pid_from_joint(p: np.ndarray) -> PidResult:
    """The PID of ``p[x1, x2, y]`` (any non-negative array; normalised here), in bits."""
    p = _normalised(p)
    q = _solve(p)
    total = mutual_information(p.reshape(-1, p.shape[2]))
    mi_1 = mutual_information(p.sum(1))
    mi_2 = mutual_information(p.sum(0))
    unique_1 = _conditional_mi(q)
    unique_2 = _conditional_mi(q.transpose(1, 0, 2))
    redundancy = mi_1 - unique_1
    optimum = mutual_information(q.reshape(-1, q.shape[2]))
    return PidResult(
        redundancy=redundancy,
        unique_1=unique_1,
        unique_2=unique_2,
        synergy=total - redundancy - unique_1 - unique_2,
        total=total,
        mi_1=mi_1,
        mi_2=mi_2,
        optimum=optimum,
    )


def joint_from_samples(x1: Sequence[int], x2: Sequence[int], y: Sequence[int]) -> np.ndarray:
    """Empirical ``p[x1, x2, y]`` of integer codes (each ``>= 0``), one sample per position."""
    a, b, t = (np.asarray(v, dtype=np.int64) for v in (x1, x2, y))
    if not (a.shape == b.shape == t.shape) or a.ndim != 1 or a.size == 0:
        raise ValueError("x1, x2 and y must be non-empty 1-D sequences of the same length")
    if min(a.min(), b.min(), t.min()) < 0:
        raise ValueError("codes must be >= 0")
    joint = np.zeros((a.max() + 1, b.max() + 1, t.max() + 1))
    np.add.at(joint, (a, b, t), 1.0)
    return joint / a.size


def pid_from_samples(x1: Sequence[int], x2: Sequence[int], y: Sequence[int]) -> PidResult:
    """Plug-in PID of the samples' empirical distribution."""
    return pid_from_joint(joint_from_samples(x1, x2, y))


_PARTS = ("redundancy", "unique_1", "unique_2", "synergy", "total")


def pid_bootstrap(
    x1: Sequence[int],
    x2: Sequence[int],
    y: Sequence[int],
    *,
    n_resamples: int,
    seed: int,
    confidence: float = 0.95,
) -> dict[str, Any]:
    """Plug-in PID with percentile-bootstrap intervals over items (resampled with replacement).

    Returns ``{part: {"estimate", "ci_low", "ci_high", "bootstrap_mean", "n"}}`` for
    ``redundancy``, ``unique_1``, ``unique_2``, ``synergy`` and ``total``, plus ``n`` and
    ``n_resamples``. Plug-in information is biased upwards on few items per cell, and more so on
    a resample (its repeated items look like structure), so the interval can sit above the
    estimate; ``bootstrap_mean − estimate`` is the bootstrap's estimate of that bias. Cost: one
    convex program per resample."""
    a, b, t = (np.asarray(v, dtype=np.int64) for v in (x1, x2, y))
    point = pid_from_samples(a, b, t)
    rng = np.random.default_rng([seed, 8])
    drawn = np.empty((n_resamples, len(_PARTS)))
    for r in range(n_resamples):
        index = rng.integers(0, a.size, size=a.size)
        result = pid_from_samples(a[index], b[index], t[index])
        drawn[r] = [getattr(result, part) for part in _PARTS]
    tail = 100 * (1 - confidence) / 2
    low, high = np.percentile(drawn, [tail, 100 - tail], axis=0)
    middle = drawn.mean(axis=0)
    out: dict[str, Any] = {
        part: {
            "estimate": getattr(point, part),
            "ci_low": float(low[k]),
            "ci_high": float(high[k]),
            "bootstrap_mean": float(middle[k]),
            "n": int(a.size),
        }
        for k, part in enumerate(_PARTS)
    }
    out.update(n=int(a.size), n_resamples=n_resamples)
    return out


def discretise(features: np.ndarray, *, k: int, seed: int, components: int = COMPONENTS) -> np.ndarray:
    """Cluster codes ``(N,)`` of ``features`` ``(N, ...)`` (flattened per item): centred,
    projected on their first ``components`` principal components, then k-means with ``k``
    clusters (:func:`kmeans`: k-means++ starts, ``restarts=4``, seeded by ``seed``). Fewer
    distinct items than ``k`` give fewer clusters; codes are renumbered ``0..K-1`` by first
    appearance."""
    x = np.asarray(features, dtype=np.float64).reshape(len(features), -1)
    if x.shape[0] == 0:
        raise ValueError("no items to cluster")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    x = x - x.mean(axis=0)
    keep = min(components, x.shape[0] - 1, x.shape[1])
    if keep >= 1 and x.shape[1] > keep:
        x = _principal_scores(x, keep)
    distinct = len(np.unique(x.round(9), axis=0))
    labels = kmeans(x, k=max(1, min(k, distinct)), seed=seed)
    _, first = np.unique(labels, return_index=True)
    renumber = np.empty(labels.max() + 1, dtype=np.int64)
    renumber[labels[np.sort(first)]] = np.arange(len(first))
    return renumber[labels]


def kmeans(x: np.ndarray, *, k: int, seed: int, restarts: int = 4, iterations: int = 100) -> np.ndarray:
    """Lloyd's k-means on the rows of ``x`` ``(N, d)``: ``restarts`` k-means++ starts (Arthur &
    Vassilvitskii 2007), each iterated until the assignment stops changing (at most
    ``iterations``); the labels ``(N,)`` of the start with the least within-cluster sum of
    squares. Written here (numpy only) because importing scikit-learn costs seconds."""
    rng = np.random.default_rng([seed, 10])
    n = x.shape[0]
    best_labels, best_cost = np.zeros(n, dtype=np.int64), np.inf
    for _ in range(restarts):
        centres = [x[rng.integers(n)]]
        nearest = ((x - centres[0]) ** 2).sum(1)
        for _ in range(1, k):
            total = nearest.sum()
            pick = rng.choice(n, p=nearest / total) if total > 0 else rng.integers(n)
            centres.append(x[pick])
            nearest = np.minimum(nearest, ((x - x[pick]) ** 2).sum(1))
        centre = np.array(centres)
        labels = np.full(n, -1)
        for _ in range(iterations):
            distance = (x**2).sum(1)[:, None] - 2 * x @ centre.T + (centre**2).sum(1)[None, :]
            new = distance.argmin(1)
            if np.array_equal(new, labels):
                break
            labels = new
            for c in range(k):
                members = labels == c
                if members.any():
                    centre[c] = x[members].mean(0)
        cost = float(((x - centre[labels]) ** 2).sum())
        if cost < best_cost:
            best_labels, best_cost = labels, cost
    return best_labels.astype(np.int64)


def _principal_scores(x: np.ndarray, keep: int) -> np.ndarray:
    """The first ``keep`` principal component scores of centred ``x`` ``(N, d)``, from the
    eigenvectors of the smaller of ``x xᵀ`` and ``xᵀ x`` (signs as the eigensolver gives)."""
    if x.shape[0] <= x.shape[1]:
        values, vectors = np.linalg.eigh(x @ x.T)
        order = np.argsort(values)[::-1][:keep]
        return vectors[:, order] * np.sqrt(np.maximum(values[order], 0.0))
    values, vectors = np.linalg.eigh(x.T @ x)
    order = np.argsort(values)[::-1][:keep]
    return x @ vectors[:, order]


def sketch(features: np.ndarray, *, width: int, seed: int) -> np.ndarray:
    """``(N, min(d, width))`` sketch of ``features`` ``(N, d)`` (flattened per item): column
    ``c < width`` is kept where it is, and each column ``c >= width`` is added, with a sign
    ``±1``, into column ``h(c) < width`` (feature hashing; ``h`` and the signs are fixed
    functions of ``c`` and ``seed``, so inner products are kept in expectation). Because a
    column's place depends on its index only, batches of different widths (sequences padded per
    batch) give comparable rows once the narrower ones are padded with zeros. Bounds the memory
    of very wide embeddings before :func:`discretise`."""
    x = np.asarray(features, dtype=np.float32).reshape(len(features), -1)
    if x.shape[1] <= width:
        return x
    extra = np.arange(width, x.shape[1], dtype=np.uint64)
    mixed = (extra * np.uint64(0x9E3779B97F4A7C15) + np.uint64(seed * 7919 + 1)) & np.uint64(0xFFFFFFFFFFFF)
    bucket = (mixed % np.uint64(width)).astype(np.int64)
    sign = np.where((mixed >> np.uint64(40)) & np.uint64(1), 1.0, -1.0).astype(np.float32)
    out = x[:, :width].copy()
    for row in range(x.shape[0]):
        out[row] += np.bincount(bucket, weights=x[row, width:] * sign, minlength=width).astype(np.float32)
    return out
