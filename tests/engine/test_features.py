"""MultiViz stages 3 and 4 in the engine, against a model whose features are known by
construction (tests/builders/feature_adapters.py): closed forms, no tolerance a float could
cross by chance."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.builders.feature_adapters import (
    BIAS,
    N_FEATURES,
    NoFeaturesAdapter,
    PlantedFeatureAdapter,
    W,
    planted_items,
)
from workers.engine.adapter import AdapterError
from workers.engine.attribution import NonFiniteError
from workers.engine.features import (
    decision_features,
    feature_attributions,
    feature_interactions,
    has_features,
    top_activating,
)
from workers.engine.sparse import fit_sparse_head, score_parts, top_contributions


def _adapter(**kwargs) -> PlantedFeatureAdapter:
    adapter = PlantedFeatureAdapter(**kwargs)
    adapter.load(torch.device("cpu"))
    return adapter


def test_decision_features_are_the_planted_ones_batched():
    adapter = _adapter()
    items = planted_items(11)
    table = decision_features(adapter, items, batch_size=4)
    a = np.array([it["a"] for it in items])
    b = np.array([it["b"] for it in items])
    expected = np.stack([a[:, 0], a[:, 1] * b[:, 0], b[:, 1] + b[:, 2], a[:, 2] - a[:, 3], a[:, 2] + a[:, 3]], 1)
    np.testing.assert_allclose(table.activations, expected, rtol=0, atol=1e-12)
    np.testing.assert_allclose(table.logits, expected @ W.T + BIAS, rtol=0, atol=1e-12)
    assert adapter.head_calls == 3  # 4 + 4 + 3 items: one head call per batch


def test_the_top_activating_items_are_exactly_the_planted_ones():
    items = planted_items(60, seed=1, loud={0: [(17, 30.0), (3, 40.0), (42, 35.0)], 2: [(8, 25.0), (50, 26.0)]})
    table = decision_features(_adapter(), items, batch_size=16)

    assert top_activating(table.activations, 0, k=3) == [3, 42, 17]
    assert top_activating(table.activations, 2, k=2) == [50, 8]


def test_a_features_attribution_is_its_closed_form():
    adapter = _adapter()
    items = planted_items(3, seed=2)
    batch = adapter.encode(items)
    # Item 0 explains feature 0 (= a0), item 1 feature 1 (= a1 * b0), item 2 feature 2 (= b1 + b2).
    result = feature_attributions(
        adapter, batch, features=[0, 1, 2], n_features=N_FEATURES, method="integrated_gradients", n_steps=64
    )
    a0 = items[0]["a"]
    np.testing.assert_allclose(result[0].group_scores["a"], [a0[0], 0, 0, 0], atol=1e-9)
    np.testing.assert_allclose(result[0].group_scores["b"], [0, 0, 0], atol=1e-9)
    a1, b1 = items[1]["a"], items[1]["b"]
    # IG of a product from a zero baseline splits it equally between its two factors.
    np.testing.assert_allclose(result[1].group_scores["a"], [0, a1[1] * b1[0] / 2, 0, 0], atol=1e-6)
    np.testing.assert_allclose(result[1].group_scores["b"], [a1[1] * b1[0] / 2, 0, 0], atol=1e-6)
    b2 = items[2]["b"]
    np.testing.assert_allclose(result[2].group_scores["b"], [0, b2[1], b2[2]], atol=1e-9)
    assert [r.target for r in result] == [0, 1, 2]


def test_a_features_cross_modal_interaction_is_its_closed_form():
    adapter = _adapter()
    items = planted_items(2, seed=3)
    batch = adapter.encode(items)
    result = feature_interactions(adapter, batch, features=[1, 0], n_features=N_FEATURES, method="perturbation")
    # z1 = a1 * b0 interacts only between group 1 of a and group 4 (b0) of b, by exactly a1 * b0.
    expected = np.zeros((4, 3))
    expected[1, 0] = items[0]["a"][1] * items[0]["b"][0]
    np.testing.assert_allclose(result[0].matrix, expected, atol=1e-12)
    np.testing.assert_allclose(result[1].matrix, np.zeros((4, 3)), atol=1e-12)  # z0 = a0: no interaction


def test_the_sparse_weights_are_exactly_the_planted_ones_and_fidelity_is_one():
    table = decision_features(_adapter(), planted_items(300, seed=4), batch_size=64)
    head = fit_sparse_head(table.activations, table.logits, test_fraction=0.25, seed=0)

    assert head.support() == [[0, 2], [1], [3]]
    np.testing.assert_allclose(head.weights, W, atol=1e-9)
    np.testing.assert_allclose(head.intercept, BIAS, atol=1e-9)
    assert head.fidelity == 1.0 and head.train_fidelity == 1.0
    assert head.test_rows.size == 75 and not set(head.test_rows) & set(head.train_rows)


def _planted_head(*, scales: np.ndarray, weights: np.ndarray, n: int = 300, seed: int = 0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, weights.shape[1])) * scales
    return x, x @ weights.T + np.array([0.3, -0.2, 0.1])


def test_a_planted_head_is_recovered_exactly_whatever_the_features_scales():
    scales = np.array([1.0, 1000.0, 1.0, 1.0, 1e-3, 5.0])
    weights = np.array([[3.0, 0, 0, 0, 0, 0], [0, 0.002, 0, 0, 0, 0], [0, 0, -2.0, 0, 400.0, 0]])
    x, logits = _planted_head(scales=scales, weights=weights)
    head = fit_sparse_head(x, logits, seed=0)
    assert head.support() == [[0], [1], [2, 4]]
    np.testing.assert_allclose(head.weights, weights, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(head.intercept, [0.3, -0.2, 0.1], atol=1e-9)
    assert head.fidelity == 1.0


def test_a_weak_but_used_feature_is_kept():
    """Feature 3 moves class 0's score by 0.05 per unit against feature 0's 3.0 (a share of
    0.03 % of its variance): the fixed strength 0.05 dropped it; the path keeps it."""
    weights = np.array([[3.0, 0, 0, 0.05, 0, 0], [0, 1.0, 0, 0, 0, 0], [0, 0, -2.0, 0, 0.5, 0]])
    x, logits = _planted_head(scales=np.ones(6), weights=weights, seed=1)
    head = fit_sparse_head(x, logits, seed=0)
    assert head.support() == [[0, 3], [1], [2, 4]]
    np.testing.assert_allclose(head.weights, weights, rtol=1e-9, atol=1e-12)
    # The fixed strength drops it: what the path replaces.
    assert fit_sparse_head(x, logits, alpha=0.05, seed=0).support()[0] == [0]
    # Unused features stay exactly zero: the sparsest support within the noise, not all.
    assert head.to_json()["nonzero_per_class"] == [2, 1, 2]


def test_a_nonlinear_head_is_approximated_with_fidelity_below_one_reported():
    table = decision_features(_adapter(linear_head=False), planted_items(300, seed=5), batch_size=64)
    head = fit_sparse_head(table.activations, table.logits, seed=0)

    assert head.fidelity is not None and 0.0 <= head.fidelity < 1.0
    assert head.to_json()["n_test"] == 75


def test_the_contributions_of_a_prediction_rank_its_features():
    table = decision_features(_adapter(), planted_items(200, seed=6), batch_size=64)
    head = fit_sparse_head(table.activations, table.logits, seed=0)
    z = np.array([2.0, 0.5, 1.0, -1.0, 9.0])

    # Class 0: 1.5 * 2 = 3 and -2 * 1 = -2; feature 4 (weight 0) never appears.
    top = top_contributions(head, z, target=0, k=3)
    assert [f for f, _ in top] == [0, 2]
    np.testing.assert_allclose([c for _, c in top], [3.0, -2.0], atol=1e-9)
    assert [f for f, _ in top_contributions(head, z, target=2, k=3)] == [3]


def test_the_prediction_bars_add_up_to_the_sparse_score_intercepts_included():
    """Issue 18: top bars alone favoured green (+4.7) while the model answered red. Here class
    0 has a large intercept and small terms, class 1 a negative intercept and large terms: the
    top terms favour class 1, the scores (what the model and the sparse head answer) class 0."""
    weights = np.array([[0.5, 0.0, 0.0], [0.0, 2.0, 1.0]])
    bias = np.array([6.0, -3.0])
    rng = np.random.default_rng(3)
    x = rng.uniform(0.0, 2.0, size=(200, 3))  # non-negative, like ReLU features
    head = fit_sparse_head(x, x @ weights.T + bias, seed=0)
    z = np.array([1.0, 1.5, 1.0])  # logits: 6.5 and 1.0
    parts = [score_parts(head, z, target=c, k=1) for c in range(2)]
    assert sum(c for _, c in parts[1].top) > sum(c for _, c in parts[0].top)  # what the old bars showed
    for c, part in enumerate(parts):
        total = sum(v for _, v in part.top) + part.rest + part.base
        assert total == pytest.approx(part.score, abs=1e-12)
        assert part.score == pytest.approx(float(z @ weights[c] + bias[c]), abs=1e-9)
    assert parts[1].n_rest == 1 and parts[1].rest == pytest.approx(1.0, abs=1e-9)
    assert max(range(2), key=lambda c: parts[c].score) == 0  # the scores give the model's answer


def test_the_prediction_view_draws_the_rest_and_the_base_bars():
    from workers.engine.feature_views import _bars

    parts = score_parts(
        fit_sparse_head(*_planted_head(scales=np.ones(6), weights=np.eye(3, 6) * 2.0)), np.ones(6), target=0, k=1
    )
    assert [name for name, _ in _bars(parts.top, parts)] == ["feature 0", "base"]


def test_features_are_optional_and_refused_with_a_reason():
    adapter = NoFeaturesAdapter()
    adapter.load(torch.device("cpu"))
    assert not has_features(adapter) and has_features(_adapter())
    with pytest.raises(AdapterError, match="features"):
        decision_features(adapter, planted_items(2))


def test_non_finite_features_name_the_items_by_id():
    items = planted_items(6, seed=7)
    items[4]["a"][0] = float("nan")  # feature 0 = a0 and every logit go NaN for it4 only
    with pytest.raises(NonFiniteError) as raised:
        decision_features(_adapter(), items, batch_size=4)
    assert str(raised.value) == "item(s) 'it4': decision-level features or logits contain NaN/Inf"


def test_bad_inputs_to_the_sparse_head_are_refused():
    with pytest.raises(ValueError):
        fit_sparse_head(np.zeros((3, 2)), np.zeros((4, 2)))
    with pytest.raises(ValueError):
        fit_sparse_head(np.full((4, 2), np.nan), np.zeros((4, 2)))


@pytest.mark.trained_model
def test_the_demo_adapters_features_are_its_penultimate_layer(demo_cache_dir, demo_jsonl):
    import json

    from workers.engine.demo.adapter import DemoAdapter

    adapter = DemoAdapter(cache_dir=demo_cache_dir)
    adapter.load(torch.device("cpu"))
    root = demo_jsonl.parent
    items = [json.loads(line) for line in demo_jsonl.read_text().splitlines()]
    for item in items:
        item["image"] = str(root / item["image"])
    table = decision_features(adapter, items, batch_size=16)
    assert table.activations.shape == (len(items), 64)
    # The logits are one linear map of the features: the features carry the whole decision.
    final = adapter.model.classifier[2]
    relinked = torch.as_tensor(table.activations, dtype=torch.float32) @ final.weight.T + final.bias
    np.testing.assert_allclose(relinked.numpy(), table.logits, atol=1e-4)
    head = fit_sparse_head(table.activations, table.logits, seed=0)
    assert head.fidelity is not None and 0.0 <= head.fidelity <= 1.0
