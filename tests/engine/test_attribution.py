"""Unimodal attributions: Captum agreement, completeness, conventions, non-finite handling."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from captum.attr import (
    FeatureAblation,
    GradientShap,
    InputXGradient,
    IntegratedGradients,
    KernelShap,
    Lime,
    Occlusion,
    Saliency,
    ShapleyValueSampling,
)

from tests.builders.toy_adapters import (
    AdditiveAdapter,
    BilinearAdapter,
    ImageTabularAdapter,
    NonFiniteAdapter,
)
from workers.engine.adapter import AdapterError
from workers.engine.attribution import (
    METHODS,
    NonFiniteError,
    WeightedLinearRegression,
    attribute,
    prepare_batch,
    run_method,
    seeded,
)

# The direct Captum calls below warn about what our wrappers silence on purpose.
pytestmark = [
    pytest.mark.filterwarnings("ignore:.*did not already require gradients:UserWarning"),
    pytest.mark.filterwarnings("ignore:.*multiple inputs for Lime:UserWarning"),
]

SEGMENTS = [[0, 0, 1, 1], [0, 0, 1, 1], [2, 2, 2, 2], [2, 2, 2, 2]]  # 3 image groups


def _image_tabular(context: bool = True, n: int = 3):
    adapter = ImageTabularAdapter(context=context)
    items = adapter.make_items(n)
    items[1]["segments"] = SEGMENTS  # ragged: item 1 has 3 image groups, the others 4
    if context:
        items[2]["present"] = [1, 0, 1, 1, 0]
    batch = adapter.encode(items)
    return adapter, items, batch


def _target_logits(adapter, inputs, batch, targets):
    with torch.no_grad():
        out = adapter.head(*inputs, batch=batch)
    return out[torch.arange(len(targets)), targets].double()


# -- completeness ---------------------------------------------------------------------------


def test_ig_completeness_image_tabular_within_delta():
    adapter, _, batch = _image_tabular()
    p = prepare_batch(adapter, batch)
    targets = torch.tensor([0, 1, 2])
    results = attribute(adapter, batch, method="integrated_gradients", targets=targets, prepared=p)
    expected = _target_logits(adapter, p.inputs, batch, targets) - _target_logits(adapter, p.baselines, batch, targets)
    for res, exp in zip(results, expected):
        total = sum(res.modality_totals.values())
        assert res.convergence_delta is not None
        assert abs(res.convergence_delta) < 1e-3
        assert abs(total - float(exp)) <= abs(res.convergence_delta) + 1e-4
        # group scores sum to the map sums (additive method)
        for m in res.modalities:
            assert res.group_scores[m].sum() == pytest.approx(res.maps[m].sum(), abs=1e-5)


def test_ig_completeness_float64_tight():
    adapter = AdditiveAdapter()
    batch = adapter.encode(adapter.make_items(4, seed=3))
    p = prepare_batch(adapter, batch)
    targets = torch.tensor([0, 1, 1, 0])
    results = attribute(adapter, batch, method="integrated_gradients", targets=targets, prepared=p, n_steps=64)
    expected = _target_logits(adapter, p.inputs, batch, targets) - _target_logits(adapter, p.baselines, batch, targets)
    for res, exp in zip(results, expected):
        total = sum(res.modality_totals.values())
        assert abs(res.convergence_delta) < 1e-6  # Captum builds its quadrature in float32
        assert total == pytest.approx(float(exp), abs=abs(res.convergence_delta) + 1e-10)


def test_ig_internal_batching_does_not_change_the_result():
    adapter, _, batch = _image_tabular()
    p = prepare_batch(adapter, batch)
    t = torch.tensor([2, 0, 1])
    whole = run_method(p, "integrated_gradients", t, max_rows=None)
    chunked = run_method(p, "integrated_gradients", t, max_rows=3 * 7)
    assert whole.head_calls == 3  # the whole path in one call, then f(x) and f(x') for the delta
    assert chunked.head_calls > whole.head_calls
    for a, b in zip(whole.attributions, chunked.attributions):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


# -- agreement with direct Captum calls -----------------------------------------------------


def _direct(method: str, fwd, inputs, baselines, masks, targets, size):
    """The Captum call each registered method should reproduce, with the same arguments."""
    ppe = 256 // size
    if method == "integrated_gradients":
        return IntegratedGradients(fwd).attribute(
            inputs, baselines=baselines, target=targets, n_steps=50, method="gausslegendre", internal_batch_size=256
        )
    if method == "saliency":
        return Saliency(fwd).attribute(inputs, target=targets, abs=True)
    if method == "input_x_gradient":
        return InputXGradient(fwd).attribute(inputs, target=targets)
    if method == "feature_ablation":
        return FeatureAblation(fwd).attribute(
            inputs, baselines=baselines, target=targets, feature_mask=masks, perturbations_per_eval=ppe
        )
    if method == "occlusion":
        windows = ((3, 1, 1), (1,))
        return Occlusion(fwd).attribute(
            inputs,
            sliding_window_shapes=windows,
            strides=windows,
            baselines=baselines,
            target=targets,
            perturbations_per_eval=ppe,
        )
    with seeded(0):
        if method == "gradient_shap":
            return GradientShap(fwd).attribute(inputs, baselines=baselines, target=targets, n_samples=20, stdevs=0.0)
        if method == "shapley_value_sampling":
            return ShapleyValueSampling(fwd).attribute(
                inputs,
                baselines=baselines,
                target=targets,
                feature_mask=masks,
                n_samples=25,
                perturbations_per_eval=ppe,
            )
        if method == "kernel_shap":
            ks = KernelShap(fwd)
            ks.interpretable_model = WeightedLinearRegression(alpha=0.0)
            return ks.attribute(
                inputs,
                baselines=baselines,
                target=targets,
                feature_mask=masks,
                n_samples=64,
                perturbations_per_eval=ppe,
            )
        if method == "lime":
            lime = Lime(fwd, interpretable_model=WeightedLinearRegression(alpha=1.0))
            return lime.attribute(
                inputs,
                baselines=baselines,
                target=targets,
                feature_mask=masks,
                n_samples=64,
                perturbations_per_eval=ppe,
            )
    raise AssertionError(method)


@pytest.mark.parametrize("method", sorted(METHODS))
def test_method_agrees_with_direct_captum_call(method):
    # A head that ignores ``batch`` can be handed to Captum directly, whatever row layout it uses.
    adapter, _, batch = _image_tabular(context=False)
    p = prepare_batch(adapter, batch)
    targets = torch.tensor([1, 0, 2])
    ours = run_method(p, method, targets)

    def fwd(*x):
        return adapter.logits(*x, batch=batch)

    inputs = tuple(x.clone() for x in p.inputs)
    theirs = _direct(method, fwd, inputs, p.baselines, p.masks, targets, p.size)
    theirs = theirs if isinstance(theirs, tuple) else (theirs,)
    assert len(ours.attributions) == len(theirs) == 2
    for a, b in zip(ours.attributions, theirs):
        torch.testing.assert_close(a.float(), b.detach().float(), atol=2e-5, rtol=1e-4)


def test_registry_documents_shapes_and_cost():
    for name, spec in METHODS.items():
        doc = spec.run.__doc__ or ""
        assert "Cost:" in doc and "(B," in doc, name
        assert "forward" in spec.cost, name


# -- the protocol's row layout with per-item context in ``batch`` ---------------------------


def test_gradient_shap_interleaved_rows_keep_per_item_context():
    # GradientShap interleaves samples (row r = item r // n); the caller must reorder rows so the
    # adapter's context (``present``) still matches. With zero baselines, masking the tabular
    # input by ``present`` inside the head gives the same attributions as masking it beforehand.
    adapter, items, batch = _image_tabular(context=True)
    items[0]["present"] = [0, 1, 1, 0, 1]
    batch = adapter.encode(items)
    plain = ImageTabularAdapter(context=False)
    pre = [dict(it, tabular=[x * f for x, f in zip(it["tabular"], it.get("present", [1] * 5))]) for it in items]
    t = torch.tensor([0, 2, 1])
    a = run_method(prepare_batch(adapter, batch), "gradient_shap", t, seed=5)
    b = run_method(prepare_batch(plain, plain.encode(pre)), "gradient_shap", t, seed=5)
    for x, y in zip(a.attributions, b.attributions):
        torch.testing.assert_close(x, y, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("method", ["lime", "kernel_shap"])
def test_per_example_methods_on_a_batch_match_one_item_batches(method):
    # Captum sends one item's rows at a time; the caller pads them into the protocol layout.
    adapter, items, batch = _image_tabular(context=True)
    items[0]["present"] = [1, 1, 0, 0, 1]
    batch = adapter.encode(items)
    t = torch.tensor([2, 1, 0])
    batched = attribute(adapter, batch, method=method, targets=t, seed=11)
    single = attribute(adapter, adapter.encode(items[:1]), method=method, targets=t[:1], seed=11)
    # same seed: the first item consumes the same random stream in both runs
    for m in adapter.modalities:
        np.testing.assert_allclose(batched[0].group_scores[m], single[0].group_scores[m], atol=1e-5)


# -- conventions ----------------------------------------------------------------------------


def test_maps_group_scores_and_share_follow_the_documented_convention():
    adapter = AdditiveAdapter()  # a: tokens (3, 2), one group per token; b: (4,) in 2 groups
    batch = adapter.encode(adapter.make_items(2, seed=1))
    p = prepare_batch(adapter, batch)
    t = torch.tensor([1, 0])
    raw = run_method(p, "input_x_gradient", t)
    results = attribute(adapter, batch, method="input_x_gradient", targets=t, prepared=p)
    for b, res in enumerate(results):
        attr_a, attr_b = raw.attributions[0][b], raw.attributions[1][b]
        assert res.maps["a"].shape == (3,) and res.maps["b"].shape == (4,)
        np.testing.assert_allclose(res.maps["a"], attr_a.sum(dim=1).numpy(), atol=1e-12)
        np.testing.assert_allclose(res.group_ids["a"], [0, 1, 2])
        np.testing.assert_allclose(res.group_ids["b"], [3, 4])
        np.testing.assert_allclose(res.group_scores["a"], attr_a.sum(dim=1).numpy(), atol=1e-12)
        np.testing.assert_allclose(res.group_scores["b"], [attr_b[:2].sum(), attr_b[2:].sum()], atol=1e-12)
        totals = {"a": float(attr_a.sum()), "b": float(attr_b.sum())}
        denom = abs(totals["a"]) + abs(totals["b"])
        assert res.modality_totals == pytest.approx(totals)
        assert res.modality_share == pytest.approx({k: v / denom for k, v in totals.items()})
        assert sum(abs(v) for v in res.modality_share.values()) == pytest.approx(1.0)
        assert res.convergence_delta is None and res.target == int(t[b])


def test_feature_ablation_group_scores_are_ablation_differences():
    adapter, items, batch = _image_tabular()
    p = prepare_batch(adapter, batch)
    t = torch.tensor([0, 1, 2])
    results = attribute(adapter, batch, method="feature_ablation", targets=t, prepared=p)
    f_x = _target_logits(adapter, p.inputs, batch, t)
    for b, res in enumerate(results):
        assert res.maps["image"].shape == (4, 4) and res.maps["tabular"].shape == (5,)
        n_img = 3 if b == 1 else 4
        assert list(res.group_ids["image"]) == list(range(n_img))
        assert list(res.group_ids["tabular"]) == [n_img, n_img + 1, n_img + 2]
        for m_idx, m in enumerate(adapter.modalities):
            for gid, score in zip(res.group_ids[m], res.group_scores[m]):
                ablated = [x.clone() for x in p.inputs]
                hit = (p.masks[m_idx][b] == int(gid)).expand_as(ablated[m_idx][b])
                ablated[m_idx][b][hit] = p.baselines[m_idx][b][hit]
                expected = f_x[b] - _target_logits(adapter, ablated, batch, t)[b]
                assert score == pytest.approx(float(expected), abs=1e-5)
        # the image map shows each pixel's group score (mean over channels, not the sum)
        seg = p.spatial_mask(0)[b].numpy()
        for gid, score in zip(res.group_ids["image"], res.group_scores["image"]):
            np.testing.assert_allclose(res.maps["image"][seg == gid], score, atol=1e-6)


def test_results_convert_to_json_and_arrays():
    import json

    adapter, _, batch = _image_tabular()
    res = attribute(adapter, batch, method="integrated_gradients", targets=[0, 1, 2], n_steps=8)[1]
    data = json.loads(json.dumps(res.to_json()))
    assert data["method"] == "integrated_gradients" and data["target"] == 1
    assert data["map_shapes"] == {"image": [4, 4], "tabular": [5]}
    assert set(res.to_arrays()) == {
        f"{m}/{k}" for m in ("image", "tabular") for k in ("map", "group_ids", "group_scores")
    }


def test_stochastic_methods_are_reproducible_and_restore_the_rng():
    adapter, _, batch = _image_tabular()
    torch.manual_seed(123)
    state = torch.get_rng_state()
    a = attribute(adapter, batch, method="shapley_value_sampling", targets=0, n_samples=4, seed=7)
    assert torch.equal(torch.get_rng_state(), state)
    b = attribute(adapter, batch, method="shapley_value_sampling", targets=0, n_samples=4, seed=7)
    np.testing.assert_array_equal(a[0].group_scores["image"], b[0].group_scores["image"])


# -- non-finite values and bad arguments ----------------------------------------------------


@pytest.mark.parametrize("kind", ["nan", "inf"])
@pytest.mark.parametrize("method", ["integrated_gradients", "saliency", "feature_ablation", "lime"])
def test_non_finite_logits_raise(kind, method):
    adapter = NonFiniteAdapter(kind)
    items = adapter.make_items(3)
    items[1]["poison"] = True
    with pytest.raises(NonFiniteError, match=r"NaN/Inf.*item\(s\) \[1\]"):
        attribute(adapter, adapter.encode(items), method=method, targets=0)


def test_non_finite_gradient_raises():
    adapter = NonFiniteAdapter("grad")
    items = adapter.make_items(2)
    items[1]["a"] = [0.0, 1.0]  # d sqrt(a0^2)/da0 = 0/0 at a0 = 0
    with pytest.raises(NonFiniteError, match=r"saliency.*item\(s\) \[1\]"):
        attribute(adapter, adapter.encode(items), method="saliency", targets=1)


def test_bad_method_option_and_targets():
    adapter, _, batch = _image_tabular()
    with pytest.raises(ValueError, match="unknown attribution method"):
        attribute(adapter, batch, method="deeplift", targets=0)
    with pytest.raises(TypeError, match="unknown option"):
        attribute(adapter, batch, method="saliency", targets=0, n_steps=3)
    with pytest.raises(ValueError, match="class indices"):
        attribute(adapter, batch, method="saliency", targets=[0, 1, 3])
    with pytest.raises(ValueError, match="targets for 3 items"):
        attribute(adapter, batch, method="saliency", targets=[0, 1])


def test_prepare_batch_rejects_group_ids_shared_across_modalities():
    class Overlapping(BilinearAdapter):
        def feature_groups(self, batch):
            a, b = super().feature_groups(batch)
            return a, b - 3  # b's groups now reuse a's IDs

    adapter = Overlapping()
    with pytest.raises(AdapterError, match="not unique across modalities"):
        prepare_batch(adapter, adapter.encode(adapter.make_items(2)))
