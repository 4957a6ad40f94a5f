"""Interaction scores against closed forms: additive (all zero), bilinear (exact matrices),
a known pairwise term, an explicit Hessian, and a brute-force Integrated Hessians integral."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.builders.toy_adapters import (
    AdditiveAdapter,
    BilinearAdapter,
    ImageTabularAdapter,
    NonFiniteAdapter,
    PairwiseAdapter,
)
from workers.engine.attribution import NonFiniteError, prepare_batch
from workers.engine.interactions import (
    CROSS_METHODS,
    cross_modal_interaction,
    emap,
    modality_interaction,
    pick_modalities,
)


def _setup(adapter, n=3, seed=0):
    items = adapter.make_items(n, seed=seed)
    batch = adapter.encode(items)
    return items, batch, prepare_batch(adapter, batch)


# -- additive model: no interaction anywhere ------------------------------------------------


def test_additive_model_has_zero_modality_interaction_and_exact_effects():
    adapter = AdditiveAdapter()
    _, batch, p = _setup(adapter, n=4)
    t = torch.tensor([0, 1, 1, 0])
    results = modality_interaction(adapter, batch, targets=t, prepared=p)
    a, b = p.inputs
    a0, b0 = p.baselines
    g_diff = (adapter.g(a) - adapter.g(a0))[torch.arange(4), t]
    h_diff = (adapter.h(b) - adapter.h(b0))[torch.arange(4), t]
    for k, res in enumerate(results):
        assert res.modalities == ("a", "b")
        assert res.dividend == pytest.approx(0.0, abs=1e-12)
        assert res.effect_a == pytest.approx(float(g_diff[k]), abs=1e-12)
        assert res.effect_b == pytest.approx(float(h_diff[k]), abs=1e-12)
        assert res.f_inputs - res.f_baselines == pytest.approx(res.effect_a + res.effect_b + res.dividend)


@pytest.mark.parametrize("method", sorted(CROSS_METHODS))
def test_additive_model_has_zero_interaction_matrix(method):
    adapter = AdditiveAdapter()
    _, batch, p = _setup(adapter, n=3)
    results = cross_modal_interaction(adapter, batch, method=method, targets=[0, 1, 0], prepared=p)
    for res in results:
        assert res.matrix.shape == (3, 2)  # 3 tokens x 2 groups of b
        np.testing.assert_allclose(res.matrix, 0.0, atol=1e-12)
        assert list(res.group_ids_a) == [0, 1, 2] and list(res.group_ids_b) == [3, 4]


@pytest.mark.parametrize("pairing", ["items", "embedded"])
def test_additive_model_emap_projection_equals_the_model(pairing):
    adapter = AdditiveAdapter()
    items = adapter.make_items(7, seed=2)
    result = emap(adapter, items, pairing=pairing, batch_size=3)
    np.testing.assert_allclose(result.projection, result.logits, atol=1e-12)
    assert result.emap_gap == 0.0 and result.agreement == 1.0
    assert result.model_accuracy is not None and result.n == 7
    # the diagonal of the pair logits is the model itself
    p = prepare_batch(adapter, adapter.encode(items))
    with torch.no_grad():
        direct = adapter.head(*p.inputs, batch=p.batch).numpy()
    np.testing.assert_allclose(result.logits, direct, atol=1e-12)


# -- bilinear model: closed forms -----------------------------------------------------------


def _bilinear_expected(adapter, p, t, kind):
    """Closed forms for f = (w.a)(v.b): H_ab = w v^T is constant, so
    second_order[g, h]     = (w_g . a_g)(v_h . b_h)
    perturbation[g, h]     = (w_g . (a_g - a'_g))(v_h . (b_h - b'_h))
    integrated_hessians    = perturbation / 4   (int int alpha beta = 1/4)."""
    a, b = p.inputs[0], p.inputs[1]
    if kind != "second_order":
        a, b = a - p.baselines[0], b - p.baselines[1]
    scale = 0.25 if kind == "integrated_hessians" else 1.0
    out = []
    for k in range(p.size):
        w, v = adapter.w[t[k]], adapter.v[t[k]]
        ga = [float((w[idx] * a[k, idx]).sum()) for idx in adapter.group_members("a")]
        gb = [float((v[idx] * b[k, idx]).sum()) for idx in adapter.group_members("b")]
        out.append(scale * np.outer(ga, gb))
    return out


@pytest.mark.parametrize("swap", [False, True], ids=["A-larger", "B-larger"])
@pytest.mark.parametrize("method", sorted(CROSS_METHODS))
def test_bilinear_matrices_match_closed_forms(method, swap):
    adapter = BilinearAdapter(swap=swap)
    _, batch, p = _setup(adapter, n=4, seed=5)
    t = torch.tensor([0, 1, 1, 0])
    adapter.reset_counts()
    results = cross_modal_interaction(adapter, batch, method=method, targets=t, prepared=p)
    expected = _bilinear_expected(adapter, p, t, method)
    for res, exp in zip(results, expected):
        assert res.matrix.shape == exp.shape == (len(adapter.group_members("a")), len(adapter.group_members("b")))
        np.testing.assert_allclose(res.matrix, exp, rtol=1e-10, atol=1e-12)
    if method == "second_order":
        # all Hessian-vector products come from one forward and one vmapped double-backward
        assert adapter.head_calls == 1


def test_bilinear_second_order_of_differences_is_four_times_integrated_hessians():
    adapter = BilinearAdapter()
    _, batch, p = _setup(adapter, n=2)
    so = cross_modal_interaction(adapter, batch, method="second_order", targets=1, prepared=p, multiply_by="difference")
    ih = cross_modal_interaction(adapter, batch, method="integrated_hessians", targets=1, prepared=p, n_steps=3)
    for x, y in zip(so, ih):
        np.testing.assert_allclose(x.matrix, 4 * y.matrix, rtol=1e-10)


def test_bilinear_modality_dividend_closed_form():
    adapter = BilinearAdapter()
    _, batch, p = _setup(adapter, n=3)
    t = torch.tensor([1, 0, 1])
    res = modality_interaction(adapter, batch, targets=t, prepared=p, max_rows=3)  # one config per call
    da, db = p.inputs[0] - p.baselines[0], p.inputs[1] - p.baselines[1]
    for k, r in enumerate(res):
        exp = float((adapter.w[t[k]] * da[k]).sum() * (adapter.v[t[k]] * db[k]).sum())
        assert r.dividend == pytest.approx(exp, rel=1e-10)
        # the perturbation matrix sums to the modality dividend for a bilinear model
    pert = cross_modal_interaction(adapter, batch, method="perturbation", targets=t, prepared=p)
    for r, m in zip(res, pert):
        assert m.matrix.sum() == pytest.approx(r.dividend, rel=1e-10)


def test_more_than_two_modalities_need_names():
    adapter = BilinearAdapter(third=True)
    _, batch, p = _setup(adapter, n=2)
    with pytest.raises(ValueError, match="name the two"):
        cross_modal_interaction(adapter, batch, method="second_order", targets=0, prepared=p)
    with pytest.raises(ValueError, match="unknown modality"):
        pick_modalities(p.modalities, ("a", "d"))
    ab = cross_modal_interaction(adapter, batch, method="second_order", targets=0, prepared=p, modalities=("a", "b"))
    ba = cross_modal_interaction(adapter, batch, method="second_order", targets=0, prepared=p, modalities=("b", "a"))
    expected = _bilinear_expected(adapter, p, torch.tensor([0, 0]), "second_order")
    for x, y, exp in zip(ab, ba, expected):
        np.testing.assert_allclose(x.matrix, exp, rtol=1e-10)
        np.testing.assert_allclose(y.matrix, exp.T, rtol=1e-10)
        assert y.modalities == ("b", "a")
    # the additive third modality does not interact with a
    ac = cross_modal_interaction(adapter, batch, method="perturbation", targets=0, prepared=p, modalities=("a", "c"))
    np.testing.assert_allclose(ac[0].matrix, 0.0, atol=1e-12)
    mi = modality_interaction(adapter, batch, targets=0, prepared=p, modalities=("c", "b"))
    assert mi[0].dividend == pytest.approx(0.0, abs=1e-12)


# -- known pairwise term --------------------------------------------------------------------


@pytest.mark.parametrize("max_rows", [None, 5])
def test_perturbation_dividend_recovers_the_pairwise_term(max_rows):
    adapter = PairwiseAdapter()
    _, batch, p = _setup(adapter, n=4, seed=9)
    expected = adapter.expected_dividend(*p.inputs)
    for target, sign in ((1, 1.0), (0, -1.0)):
        results = cross_modal_interaction(
            adapter, batch, method="perturbation", targets=target, prepared=p, max_rows=max_rows
        )
        for k, res in enumerate(results):
            assert list(res.group_ids_a) == [0, 1] and list(res.group_ids_b) == [2, 3]
            want = np.zeros((2, 2))
            want[adapter.G_STAR, adapter.H_STAR - 2] = sign * float(expected[k])
            np.testing.assert_allclose(res.matrix, want, atol=1e-12)
            assert abs(want).max() > 1e-3  # the term is really there


# -- general models: explicit Hessian and brute-force integral ------------------------------


def test_second_order_matches_an_explicit_hessian_with_ragged_groups():
    adapter = ImageTabularAdapter(context=True)
    items = adapter.make_items(3, seed=4)
    items[1]["segments"] = [[0, 0, 1, 1], [0, 0, 1, 1], [2, 2, 2, 2], [2, 2, 2, 2]]
    items[2]["present"] = [1, 0, 1, 1, 0]
    batch = adapter.encode(items)
    p = prepare_batch(adapter, batch)
    t = torch.tensor([2, 0, 1])
    results = cross_modal_interaction(adapter, batch, method="second_order", targets=t, prepared=p)
    for k, res in enumerate(results):
        img, tab = p.inputs[0][k : k + 1].double(), p.inputs[1][k : k + 1].double()
        sub = adapter.encode([items[k]])

        def f(x_img, x_tab):
            ad = ImageTabularAdapter(context=True)
            ad.w_img, ad.w_tab, ad.v, ad.bias = (
                w.double() for w in (adapter.w_img, adapter.w_tab, adapter.v, adapter.bias)
            )
            return ad.logits(x_img, x_tab, batch={**sub, "present": sub["present"].double()})[0, t[k]]

        hess = torch.autograd.functional.hessian(f, (img, tab))[0][1]  # d2f / dimg dtab
        hess = hess.reshape(48, 5)
        full = img.reshape(48, 1) * hess * tab.reshape(1, 5)
        seg = p.spatial_mask(0)[k].reshape(-1)  # (16,) per pixel -> 3 channels
        seg48 = seg.repeat(3)
        tab_groups = p.masks[1][k]
        want = np.array(
            [[float(full[seg48 == g][:, tab_groups == h].sum()) for h in res.group_ids_b] for g in res.group_ids_a]
        )
        assert res.matrix.shape == (3 if k == 1 else 4, 3)
        np.testing.assert_allclose(res.matrix, want, rtol=2e-4, atol=2e-5)


@pytest.mark.filterwarnings("ignore:.*torch.jit.script.*:DeprecationWarning")  # torch.func.hessian, here only
def test_integrated_hessians_match_a_brute_force_double_integral():
    adapter = PairwiseAdapter()
    _, batch, p = _setup(adapter, n=2, seed=1)
    res = cross_modal_interaction(
        adapter, batch, method="integrated_hessians", targets=1, prepared=p, n_steps=64, max_rows=40
    )
    n = 200
    grid = (torch.arange(n, dtype=torch.float64) + 0.5) / n
    alpha, beta = torch.meshgrid(grid, grid, indexing="ij")
    ab = (alpha * beta).reshape(-1)
    for k in range(2):
        x = torch.cat([p.inputs[0][k], p.inputs[1][k]])
        x0 = torch.cat([p.baselines[0][k], p.baselines[1][k]])

        def f(z):
            return adapter.logits(z[:4].unsqueeze(0), z[4:].unsqueeze(0), batch=batch)[0, 1]

        points = x0 + ab[:, None] * (x - x0)
        hess = torch.vmap(torch.func.hessian(f))(points)[:, :4, 4:]  # (n*n, 4, 3) cross block
        integral = (ab[:, None, None] * hess).mean(0)
        gamma = (x - x0)[:4, None] * integral * (x - x0)[None, 4:]
        want = np.array(
            [
                [float(gamma[0:2, 0:1].sum()), float(gamma[0:2, 1:3].sum())],
                [float(gamma[2:4, 0:1].sum()), float(gamma[2:4, 1:3].sum())],
            ]
        )
        np.testing.assert_allclose(res[k].matrix, want, rtol=2e-3, atol=1e-5)
        assert abs(want).max() > 1e-2


# -- EMAP with per-item context --------------------------------------------------------------


def test_emap_pairings_agree_with_per_item_context():
    adapter = ImageTabularAdapter(context=True)
    items = adapter.make_items(5, seed=8)
    for i, it in enumerate(items):
        it["present"] = [1.0 if (i + j) % 3 else 0.0 for j in range(5)]
        it["label"] = adapter.labels[i % 3]
    # "present" is tabular context: with A = tabular, pairing="items" carries it with the tabular item,
    # and pairing="embedded" keeps the tabular items' batch (context_modality) while swapping images.
    by_items = emap(adapter, items, modalities=("tabular", "image"), keep_pair_logits=True, batch_size=4)
    embedded = emap(
        adapter,
        items,
        modalities=("image", "tabular"),
        pairing="embedded",
        context_modality="tabular",
        keep_pair_logits=True,
        batch_size=2,
        max_rows=3,
    )
    np.testing.assert_allclose(embedded.pair_logits, by_items.pair_logits.transpose(1, 0, 2), atol=1e-5)
    np.testing.assert_allclose(embedded.projection, by_items.projection, atol=1e-5)
    assert embedded.emap_gap == by_items.emap_gap
    assert embedded.model_accuracy - embedded.projection_accuracy == embedded.emap_gap
    data = embedded.to_json()
    assert set(data) >= {"model_accuracy", "projection_accuracy", "emap_gap", "agreement"}
    assert "emap/pair_logits" in embedded.to_arrays()


def test_emap_without_gold_labels_reports_agreement_only():
    adapter = BilinearAdapter()
    items = adapter.make_items(4)
    for it in items:
        del it["label"]
    result = emap(adapter, items)
    assert result.emap_gap is None and result.model_accuracy is None
    assert 0.0 <= result.agreement <= 1.0


# -- non-finite -----------------------------------------------------------------------------


@pytest.mark.parametrize("what", ["modality_interaction", "emap", *sorted(CROSS_METHODS)])
def test_non_finite_logits_raise(what):
    adapter = NonFiniteAdapter("nan")
    items = adapter.make_items(3)
    items[2]["poison"] = True
    batch = adapter.encode(items)
    with pytest.raises(NonFiniteError, match="NaN/Inf"):
        if what == "modality_interaction":
            modality_interaction(adapter, batch, targets=0)
        elif what == "emap":
            emap(adapter, items)
        else:
            cross_modal_interaction(adapter, batch, method=what, targets=0)


def test_unknown_interaction_method():
    adapter = BilinearAdapter()
    with pytest.raises(ValueError, match="unknown interaction method"):
        cross_modal_interaction(adapter, adapter.encode(adapter.make_items(2)), method="shapley_taylor", targets=0)
