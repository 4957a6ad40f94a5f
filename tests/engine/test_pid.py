"""Partial information decomposition (workers/engine/pid.py) against closed forms, an independent
cvxpy formulation and a grid search. No Django."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from workers.engine.pid import (
    discretise,
    joint_from_samples,
    kmeans,
    mutual_information,
    pid_bootstrap,
    pid_from_joint,
    pid_from_samples,
    sketch,
)


def _joint(rule, *, c: int) -> np.ndarray:
    """Uniform independent bits x1, x2 and y = rule(x1, x2)."""
    p = np.zeros((2, 2, c))
    for a, b in itertools.product((0, 1), repeat=2):
        p[a, b, rule(a, b)] += 0.25
    return p


def _assert_parts(result, *, redundancy, unique_1, unique_2, synergy, tol=1e-6):
    assert result.redundancy == pytest.approx(redundancy, abs=tol)
    assert result.unique_1 == pytest.approx(unique_1, abs=tol)
    assert result.unique_2 == pytest.approx(unique_2, abs=tol)
    assert result.synergy == pytest.approx(synergy, abs=tol)


def test_xor_is_one_bit_of_synergy():
    _assert_parts(pid_from_joint(_joint(lambda a, b: a ^ b, c=2)), redundancy=0, unique_1=0, unique_2=0, synergy=1)


def test_a_copied_bit_is_one_bit_of_redundancy():
    p = np.zeros((2, 2, 2))
    p[0, 0, 0] = p[1, 1, 1] = 0.5  # x1 = x2 = y
    _assert_parts(pid_from_joint(p), redundancy=1, unique_1=0, unique_2=0, synergy=0)


def test_two_independent_bits_each_deciding_half_the_label_are_unique():
    result = pid_from_joint(_joint(lambda a, b: 2 * a + b, c=4))  # y = (x1, x2)
    _assert_parts(result, redundancy=0, unique_1=1, unique_2=1, synergy=0)
    assert result.total == pytest.approx(2.0)


def test_and_gate_matches_the_broja_closed_form():
    """AND of two uniform bits (Bertschinger et al. 2014): no uniqueness, redundancy
    I(X1; Y) = 3/4 log2(4/3) + ... = h(1/4) - 1/2, synergy 1/2."""
    h = -(0.25 * math.log2(0.25) + 0.75 * math.log2(0.75))
    result = pid_from_joint(_joint(lambda a, b: a & b, c=2))
    _assert_parts(result, redundancy=h - 0.5, unique_1=0, unique_2=0, synergy=0.5)


def test_one_modality_that_is_the_label_and_one_that_is_noise():
    p = np.zeros((3, 4, 3))
    for a, b in itertools.product(range(3), range(4)):
        p[a, b, a] = 1 / 12
    _assert_parts(pid_from_joint(p), redundancy=0, unique_1=math.log2(3), unique_2=0, synergy=0)


def _random_joint(rng: np.random.Generator, shape: tuple[int, int, int], zeros: float = 0.3) -> np.ndarray:
    p = rng.gamma(0.5, size=shape) * (rng.random(shape) > zeros)
    p[0, 0, 0] += 0.01  # never empty
    return p / p.sum()


@pytest.mark.parametrize("seed", range(6))
def test_identities_and_signs_on_random_distributions(seed):
    rng = np.random.default_rng(seed)
    shape = tuple(int(v) for v in rng.integers(2, 7, size=3))
    p = _random_joint(rng, shape)
    r = pid_from_joint(p)
    assert r.redundancy + r.unique_1 + r.unique_2 + r.synergy == pytest.approx(r.total, abs=1e-6)
    assert r.redundancy + r.unique_1 == pytest.approx(mutual_information(p.sum(1)), abs=1e-6)
    assert r.redundancy + r.unique_2 == pytest.approx(mutual_information(p.sum(0)), abs=1e-6)
    assert r.total == pytest.approx(mutual_information(p.reshape(-1, shape[2])), abs=1e-12)
    # BROJA's parts are non-negative (Bertschinger et al. 2014, Lemma 5).
    assert min(r.redundancy, r.unique_1, r.unique_2, r.synergy) > -1e-6
    # Swapping the modalities swaps the uniqueness.
    swapped = pid_from_joint(p.transpose(1, 0, 2))
    assert (swapped.unique_1, swapped.unique_2, swapped.synergy) == pytest.approx(
        (r.unique_2, r.unique_1, r.synergy), abs=1e-6
    )


def _cvxpy_min_information(p: np.ndarray) -> float:
    """min over Q in Δ_p of I_Q(X1, X2; Y), in bits, written independently in cvxpy: one matrix
    variable per y, the full (k1, k2) grid, conditional entropy through rel_entr of the pair
    totals, solved by SCS (a first-order solver, not Clarabel's interior point)."""
    cp = pytest.importorskip("cvxpy")
    k1, k2, c = p.shape
    q = [cp.Variable((k1, k2), nonneg=True) for _ in range(c)]
    total = sum(q)
    negative_conditional_entropy = sum(cp.sum(cp.rel_entr(q[y], total)) for y in range(c))
    constraints = []
    for y in range(c):
        constraints += [cp.sum(q[y], axis=1) == p[:, :, y].sum(1), cp.sum(q[y], axis=0) == p[:, :, y].sum(0)]
    problem = cp.Problem(cp.Minimize(negative_conditional_entropy), constraints)
    problem.solve(solver="SCS", eps=1e-9, max_iters=200_000)
    py = p.sum((0, 1))
    h_y = -float((py[py > 0] * np.log(py[py > 0])).sum())
    return (h_y + problem.value) / math.log(2)


@pytest.mark.filterwarnings("ignore:Solution may be inaccurate")  # SCS to 1e-9 still meets 1e-4 bits
@pytest.mark.parametrize("seed", range(3))
def test_the_optimum_matches_an_independent_cvxpy_formulation(seed):
    rng = np.random.default_rng(100 + seed)
    p = _random_joint(rng, (3, 4, 3))
    assert pid_from_joint(p).optimum == pytest.approx(_cvxpy_min_information(p), abs=1e-4)


def test_the_optimum_matches_a_grid_search_on_binary_variables():
    """Binary x1, x2, y: each Q(., . | y) is a 2x2 coupling with fixed marginals, one free
    number t_y = Q(0, 0, y) per y, so the whole of Δ_p is a rectangle searched on a grid."""
    rng = np.random.default_rng(7)
    p = _random_joint(rng, (2, 2, 2), zeros=0.0)
    a, b = p.sum(1), p.sum(0)  # (x1, y), (x2, y)
    ranges = [np.linspace(max(0.0, a[0, y] + b[0, y] - a[:, y].sum()), min(a[0, y], b[0, y]), 801) for y in (0, 1)]
    best = math.inf
    for t0 in ranges[0]:
        t1 = ranges[1]
        q = np.zeros((len(t1), 2, 2, 2))
        for y, t in ((0, t0), (1, t1)):
            q[:, 0, 0, y] = t
            q[:, 0, 1, y] = a[0, y] - t
            q[:, 1, 0, y] = b[0, y] - t
            q[:, 1, 1, y] = a[1, y] - b[0, y] + t
        q = np.clip(q, 0, None)
        pair = q.sum(3, keepdims=True)
        with np.errstate(divide="ignore", invalid="ignore"):
            terms = np.where(q > 0, q * np.log(q / pair), 0.0)
        negative = terms.sum((1, 2, 3))
        py = p.sum((0, 1))
        best = min(best, float((-(py * np.log(py)).sum() + negative.min()) / math.log(2)))
    assert pid_from_joint(p).optimum == pytest.approx(best, abs=1e-5)


def test_samples_give_the_empirical_distribution_and_refuse_bad_input():
    x1, x2, y = [0, 0, 1, 1], [0, 1, 0, 1], [0, 1, 1, 0]
    joint = joint_from_samples(x1, x2, y)
    assert joint.shape == (2, 2, 2) and joint[0, 1, 1] == 0.25 and joint.sum() == 1
    assert pid_from_samples(x1, x2, y).synergy == pytest.approx(1.0, abs=1e-6)
    with pytest.raises(ValueError, match="same length"):
        joint_from_samples([0, 1], [0], [1, 0])
    with pytest.raises(ValueError, match=">= 0"):
        joint_from_samples([0, -1], [0, 1], [1, 0])
    with pytest.raises(ValueError, match="non-negative"):
        pid_from_joint(-np.ones((2, 2, 2)))
    with pytest.raises(ValueError, match="3-D"):
        pid_from_joint(np.ones((2, 2)))


def test_bootstrap_intervals_are_seeded_and_hold_the_resampled_values():
    rng = np.random.default_rng(3)
    x1, x2 = rng.integers(0, 2, 200), rng.integers(0, 2, 200)
    y = x1 ^ x2
    out = pid_bootstrap(x1, x2, y, n_resamples=60, seed=4)
    assert out == pid_bootstrap(x1, x2, y, n_resamples=60, seed=4)
    assert out["n"] == 200 and out["n_resamples"] == 60
    synergy = out["synergy"]
    assert synergy["estimate"] == pytest.approx(pid_from_samples(x1, x2, y).synergy)
    assert 0.9 < synergy["ci_low"] <= synergy["bootstrap_mean"] <= synergy["ci_high"] <= 1.0 + 1e-6
    for part in ("redundancy", "unique_1", "unique_2"):
        assert out[part]["ci_high"] < 0.1  # XOR: nothing but synergy, up to sampling


def test_kmeans_recovers_separated_clusters_and_discretise_numbers_them():
    rng = np.random.default_rng(1)
    centres = rng.normal(size=(5, 40)) * 10
    truth = rng.integers(0, 5, 300)
    x = centres[truth] + rng.normal(size=(300, 40))
    codes = discretise(x, k=5, seed=0)
    assert len(set(zip(codes.tolist(), truth.tolist()))) == 5  # a relabelling of the truth
    assert codes[0] == 0 and set(codes.tolist()) == set(range(5))
    assert np.array_equal(kmeans(x, k=5, seed=0), kmeans(x, k=5, seed=0))
    two = np.repeat(np.eye(2), 10, axis=0)
    assert sorted(np.bincount(discretise(two, k=8, seed=0)).tolist()) == [10, 10]  # 2 distinct rows, 2 clusters


def test_sketch_keeps_narrow_inputs_and_inner_products_in_expectation():
    x = np.arange(12, dtype=np.float32).reshape(3, 4)
    assert np.array_equal(sketch(x, width=8, seed=0), x)
    rng = np.random.default_rng(2)
    wide = rng.normal(size=(2, 20_000)).astype(np.float32)
    wide[1] = wide[0] + 0.5 * wide[1]
    small = sketch(wide, width=2048, seed=0)
    assert small.shape == (2, 2048)
    exact = float(wide[0] @ wide[1])
    assert float(small[0] @ small[1]) == pytest.approx(exact, rel=0.1)
    # A column lands where its index says, whatever the width: a batch padded to fewer
    # positions sketches like the same rows padded with zeros to the full width.
    narrow = wide[:, :3000]
    padded = np.pad(narrow, ((0, 0), (0, 17_000)))
    assert np.allclose(sketch(narrow, width=2048, seed=0), sketch(padded, width=2048, seed=0))
    assert np.array_equal(sketch(wide[:, :100], width=2048, seed=0), wide[:, :100])
