"""Automatic explanation metrics: analytic cases, direct Captum calls, batching, costs."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from captum.attr import IntegratedGradients, Saliency
from captum.metrics import infidelity as captum_infidelity
from captum.metrics import sensitivity_max as captum_sensitivity_max

from tests.builders.toy_adapters import BilinearAdapter, ImageTabularAdapter, ToyAdapter, _weights
from workers.engine.attribution import attribute, prepare_batch, seeded
from workers.engine.interactions import modality_interaction
from workers.engine.metrics import (
    GroupRemoval,
    deletion_insertion,
    element_attributions,
    explanation_metrics,
    group_ranks,
    infidelity,
    interaction_strength,
    sensitivity,
)

pytestmark = [
    pytest.mark.filterwarnings("ignore:.*did not already require gradients:UserWarning"),
]

SEGMENTS = [[0, 0, 1, 1], [0, 0, 1, 1], [2, 2, 2, 2], [2, 2, 2, 2]]


class LinearAdapter(ToyAdapter):
    """``logits = W_a . vec(a) + W_b . b + c``: tokens ``a`` ``(3, 2)`` (one group per token,
    mask ``(B, 3, 1)``) and ``b`` ``(4,)`` in groups ``[3, 3, 4, 4]``; three classes. For a linear
    model, integrated gradients and feature ablation both give ``phi_g = sum_{i in g} w_i (x_i - x'_i)``
    exactly, so every removal effect is the sum of the removed groups' scores."""

    labels = ("x", "y", "z")
    modalities = ("a", "b")
    shapes = {"a": (3, 2), "b": (4,)}
    baseline_values = {"a": 0.3, "b": -0.2}

    def __init__(self) -> None:
        super().__init__()
        self.wa = _weights(40, 3, 6)
        self.wb = _weights(41, 3, 4)
        self.c = _weights(42, 3)

    def logits(self, a, b, *, batch):
        return a.reshape(a.shape[0], -1) @ self.wa.T + b @ self.wb.T + self.c

    def feature_groups(self, batch):
        n = batch["n"]
        return torch.arange(3).reshape(1, 3, 1).expand(n, 3, 1), torch.tensor([[3, 3, 4, 4]]).expand(n, 4)

    def numpy_logits(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return a.reshape(-1) @ self.wa.numpy().T + b @ self.wb.numpy().T + self.c.numpy()


def _linear(n: int = 3):
    adapter = LinearAdapter()
    items = adapter.make_items(n, seed=5)
    return adapter, items, adapter.encode(items)


def _image_tabular(context: bool, n: int = 3):
    adapter = ImageTabularAdapter(context=context)
    items = adapter.make_items(n)
    items[1]["segments"] = SEGMENTS  # ragged: 3 image groups for item 1, 4 for the others
    if context:
        items[2]["present"] = [1, 0, 1, 1, 0]
    return adapter, items, adapter.encode(items)


def _groups_in_order(attr) -> tuple[list[int], list[float]]:
    ids = np.concatenate([attr.group_ids[m] for m in attr.modalities])
    scores = np.concatenate([attr.group_scores[m] for m in attr.modalities])
    order = np.lexsort((ids, -scores))
    return ids[order].tolist(), scores[order].tolist()


def _apply(adapter: LinearAdapter, item: dict, removed: set[int], *, keep_removed_as_input: bool) -> tuple:
    """Numpy inputs of ``item`` with the groups in ``removed`` at the baseline (deletion) or,
    with ``keep_removed_as_input``, only those groups at the input (insertion)."""
    a = np.array(item["a"], dtype=np.float64).reshape(3, 2)
    b = np.array(item["b"], dtype=np.float64)
    a0 = np.full_like(a, adapter.baseline_values["a"])
    b0 = np.full_like(b, adapter.baseline_values["b"])
    groups_b = [3, 3, 4, 4]
    out_a, out_b = a.copy(), b.copy()
    for t in range(3):
        at_base = (t in removed) != keep_removed_as_input
        if at_base:
            out_a[t] = a0[t]
    for j, g in enumerate(groups_b):
        at_base = (g in removed) != keep_removed_as_input
        if at_base:
            out_b[j] = b0[j]
    return out_a, out_b


@pytest.mark.parametrize("method", ["integrated_gradients", "feature_ablation"])
def test_linear_model_curves_match_the_closed_form(method):
    adapter, items, batch = _linear()
    attrs = attribute(adapter, batch, method=method, targets=[0, 1, 2])
    p = prepare_batch(adapter, batch)

    for output in ("logit", "probability"):
        curves = deletion_insertion(p, attrs, output=output, max_rows=7)
        for b, (attr, curve) in enumerate(zip(attrs, curves)):
            order, scores = _groups_in_order(attr)
            assert curve.groups == list(range(6)) and curve.fractions == pytest.approx([k / 5 for k in range(6)])
            expected_del, expected_ins = [], []
            for k in range(6):
                removed = set(order[:k])
                for keep, bucket in ((False, expected_del), (True, expected_ins)):
                    logits = adapter.numpy_logits(*_apply(adapter, items[b], removed, keep_removed_as_input=keep))
                    if output == "probability":
                        logits = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
                    bucket.append(logits[attr.target])
            np.testing.assert_allclose(curve.deletion, expected_del, rtol=1e-9, atol=1e-9)
            np.testing.assert_allclose(curve.insertion, expected_ins, rtol=1e-9, atol=1e-9)
            x = np.arange(6) / 5
            assert curve.deletion_auc == pytest.approx(np.trapezoid(expected_del, x), abs=1e-9)
            assert curve.insertion_auc == pytest.approx(np.trapezoid(expected_ins, x), abs=1e-9)
            if output == "logit":
                # linear: the deletion curve drops by exactly the removed scores
                np.testing.assert_allclose(np.diff(curve.deletion), -np.array(scores), atol=1e-6)


@pytest.mark.parametrize("method", ["integrated_gradients", "feature_ablation"])
@pytest.mark.parametrize("normalize", [False, True])
def test_linear_model_has_zero_infidelity(method, normalize):
    adapter, _, batch = _linear()
    attrs = attribute(adapter, batch, method=method, targets=[0, 1, 2])
    p = prepare_batch(adapter, batch)
    values = infidelity(p, attrs, n_perturb_samples=12, normalize=normalize, seed=3)
    assert values == pytest.approx([0.0, 0.0, 0.0], abs=1e-9)


def test_saliency_of_a_linear_model_has_zero_sensitivity():
    adapter, _, batch = _linear()
    attrs = attribute(adapter, batch, method="saliency", targets=[0, 1, 2])
    p = prepare_batch(adapter, batch)
    assert sensitivity(p, attrs, n_perturb_samples=4, perturb_radius=0.5) == pytest.approx([0.0] * 3, abs=1e-12)


def test_element_attributions_sum_to_group_scores():
    adapter, _, batch = _image_tabular(context=True)
    attrs = attribute(adapter, batch, method="integrated_gradients", targets=[0, 1, 2])
    p = prepare_batch(adapter, batch)
    elements = element_attributions(p, attrs)
    for b, attr in enumerate(attrs):
        for m, name in enumerate(p.modalities):
            full = p.masks[m].expand_as(p.inputs[m])[b]
            for gid, score in zip(attr.group_ids[name], attr.group_scores[name]):
                assert float(elements[m][b][full == int(gid)].double().sum()) == pytest.approx(score, rel=1e-5)


def test_infidelity_matches_a_direct_captum_call_and_the_formula():
    adapter, items, batch = _image_tabular(context=False)
    attrs = attribute(adapter, batch, method="saliency", targets=[0, 1, 2])
    p = prepare_batch(adapter, batch)
    targets = torch.tensor([0, 1, 2])
    n = 10

    ours = infidelity(p, attrs, n_perturb_samples=n, normalize=False, seed=11, max_rows=None)

    def forward(image, tabular):
        return adapter.head(image, tabular, batch=batch)

    direct = captum_infidelity(
        forward,
        GroupRemoval(p, seed=11),
        p.inputs,
        element_attributions(p, attrs),
        baselines=p.baselines,
        target=targets,
        n_perturb_samples=n,
        normalize=False,
    )
    np.testing.assert_allclose(ours, direct.double().numpy(), rtol=1e-6, atol=1e-9)

    # The formula by hand: the same draws, removal effects from one-item batches.
    expanded = tuple(x.repeat_interleave(n, 0) for x in p.inputs)
    bases = tuple(x.repeat_interleave(n, 0) for x in p.baselines)
    _, perturbed = GroupRemoval(p, seed=11)(expanded, bases)
    ranks_ok = []
    for b, attr in enumerate(attrs):
        single = adapter.encode([items[b]])
        f_x = float(adapter.head(*(x[b : b + 1] for x in p.inputs), batch=single)[0, attr.target])
        scores = {int(g): s for name in attr.modalities for g, s in zip(attr.group_ids[name], attr.group_scores[name])}
        errors = []
        for s in range(n):
            r = b * n + s
            rows = tuple(x[r : r + 1] for x in perturbed)
            f_pert = float(adapter.head(*rows, batch=single)[0, attr.target])
            removed = set()
            for m, mask in enumerate(p.masks):
                changed = (rows[m][0] != p.inputs[m][b]).reshape(-1)
                removed |= set(mask[b].expand_as(p.inputs[m][b]).reshape(-1)[changed].tolist())
            errors.append((sum(scores[g] for g in removed) - (f_x - f_pert)) ** 2)
        ranks_ok.append(np.mean(errors))
    np.testing.assert_allclose(ours, ranks_ok, rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("method", ["saliency", "integrated_gradients"])
def test_sensitivity_matches_a_direct_captum_call(method):
    adapter, _, batch = _image_tabular(context=False)
    attrs = attribute(adapter, batch, method=method, targets=[2, 0, 1])
    p = prepare_batch(adapter, batch)
    targets = torch.tensor([2, 0, 1])

    ours = sensitivity(p, attrs, n_perturb_samples=3, perturb_radius=0.1, seed=5)

    def forward(image, tabular):
        return adapter.head(image, tabular, batch=batch)

    if method == "saliency":
        explain = Saliency(forward).attribute
        kwargs = {}
    else:
        explain = IntegratedGradients(forward).attribute
        kwargs = {"baselines": p.baselines, "n_steps": 50, "method": "gausslegendre"}
    with seeded(5):
        direct = captum_sensitivity_max(
            explain, p.inputs, perturb_radius=0.1, n_perturb_samples=3, target=targets, **kwargs
        )
    np.testing.assert_allclose(ours, direct.double().numpy(), rtol=1e-5, atol=1e-7)
    assert all(value > 0 for value in ours)


def test_batch_composition_does_not_change_the_curves():
    """Per-item context (``present``) and ragged groups: a batch of three gives each item the
    curves it gets alone."""
    adapter, items, batch = _image_tabular(context=True)
    attrs = attribute(adapter, batch, method="feature_ablation", targets=[0, 1, 2])
    together = deletion_insertion(prepare_batch(adapter, batch), attrs, max_rows=5)
    for b in range(3):
        single = adapter.encode([items[b]])
        alone = deletion_insertion(
            prepare_batch(adapter, single), attribute(adapter, single, method="feature_ablation", targets=[b])
        )[0]
        assert alone.groups == together[b].groups
        np.testing.assert_allclose(alone.deletion, together[b].deletion, rtol=1e-5)
        np.testing.assert_allclose(alone.insertion, together[b].insertion, rtol=1e-5)
    assert together[1].groups == [0, 1, 2, 3, 4, 5, 6]  # 3 image + 3 tabular groups
    assert together[0].groups == [0, 1, 2, 3, 4, 5, 6, 7]


def test_steps_subsample_the_curve():
    adapter, _, batch = _image_tabular(context=True)
    attrs = attribute(adapter, batch, method="saliency", targets=[0, 1, 2])
    curve = deletion_insertion(prepare_batch(adapter, batch), attrs, n_steps=2)[0]
    assert curve.groups == [0, 4, 7]
    assert curve.fractions == pytest.approx([0.0, 4 / 7, 1.0])


def test_ranks_break_ties_by_group_id():
    adapter, _, batch = _linear(1)
    p = prepare_batch(adapter, batch)
    attr = attribute(adapter, batch, method="saliency", targets=0)[0]
    attr.group_scores = {"a": np.array([1.0, 2.0, 1.0]), "b": np.array([2.0, 0.0])}
    ranks, n_groups = group_ranks(p, [attr])
    assert ranks[0, :5].tolist() == [2, 0, 3, 1, 4] and int(n_groups[0]) == 5


def test_explanation_metrics_bundle_costs_and_json():
    adapter, _, batch = _image_tabular(context=True)
    attrs = attribute(adapter, batch, method="integrated_gradients", targets=[0, 1, 2])
    p = prepare_batch(adapter, batch)

    adapter.reset_counts()
    only_curves = explanation_metrics(adapter, batch, attrs, prepared=p, metrics=["deletion_insertion"])
    assert adapter.head_rows == 2 * (7 + 1) * 3  # S = max G_b = 4 + 3 groups; 2 (S + 1) rows per item

    rows = explanation_metrics(adapter, batch, attrs, prepared=p, infidelity_samples=4, sensitivity_samples=2)
    json.dumps(rows, allow_nan=False)
    inter = modality_interaction(adapter, batch, targets=[0, 1, 2])
    for row, attr, it, curve_row in zip(rows, attrs, inter, only_curves):
        assert row["method"] == "integrated_gradients" and row["target"] == attr.target
        assert row["modality_share"] == pytest.approx(attr.modality_share)
        assert row["interaction_dividend"] == pytest.approx(it.dividend)
        assert row["interaction_strength"] == pytest.approx(
            abs(it.dividend) / (abs(it.effect_a) + abs(it.effect_b) + abs(it.dividend))
        )
        assert row["deletion_auc"] == curve_row["deletion_auc"]
        assert row["infidelity"] >= 0 and row["sensitivity_max"] >= 0
        assert len(row["deletion_curve"]) == len(row["curve_fractions"]) == row["n_groups"] + 1
        assert row["settings"]["infidelity_samples"] == 4


def test_interaction_strength_of_an_additive_and_a_bilinear_model():
    assert interaction_strength(dividend=0.0, effect_a=1.0, effect_b=-2.0) == 0.0
    assert interaction_strength(dividend=0.0, effect_a=0.0, effect_b=0.0) == 0.0
    assert interaction_strength(dividend=-1.0, effect_a=1.0, effect_b=2.0) == pytest.approx(0.25)
    adapter = BilinearAdapter()
    batch = adapter.encode(adapter.make_items(2))
    attrs = attribute(adapter, batch, method="saliency", targets=[0, 1])
    rows = explanation_metrics(adapter, batch, attrs, metrics=["interaction"])
    # f = (w.a)(v.b) with non-zero baselines: the dividend carries most of the change
    assert all(0 < row["interaction_strength"] <= 1 for row in rows)


def test_attributions_of_another_batch_are_refused():
    adapter, _, batch = _image_tabular(context=True)
    attrs = attribute(adapter, batch, method="saliency", targets=[0, 1, 2])
    other = adapter.encode(adapter.make_items(3, seed=9))  # no ragged item: other groups
    with pytest.raises(ValueError, match="groups"):
        explanation_metrics(adapter, other, attrs, metrics=["deletion_insertion"])
    with pytest.raises(ValueError, match="unknown metric"):
        explanation_metrics(adapter, batch, attrs, metrics=["faithfulness"])


class ChannelsLastAdapter(ImageTabularAdapter):
    """The image + tabular model with the image handed over in channels-last memory layout (as
    an adapter that permutes an H x W x C array does) and a convolution in the head, so gradients
    come back channels-last too: ``captum.metrics.sensitivity_max`` cannot ``view`` them."""

    def embed(self, batch):
        image, tabular = super().embed(batch)
        return image.contiguous(memory_format=torch.channels_last), tabular

    def logits(self, image, tabular, *, batch):
        mixed = torch.nn.functional.conv2d(image, torch.eye(3, dtype=image.dtype).reshape(3, 3, 1, 1))
        return super().logits(mixed, tabular, batch=batch)


def test_non_contiguous_embeddings_are_handled():
    adapter = ChannelsLastAdapter(context=False)
    batch = adapter.encode(adapter.make_items(2, seed=1))
    p = prepare_batch(adapter, batch)
    assert not p.inputs[0].is_contiguous()
    # the gradient of a convolution keeps the input's channels-last layout
    attrs = attribute(adapter, batch, method="saliency", targets=[0, 1], prepared=p)
    rows = explanation_metrics(adapter, batch, attrs, prepared=p, infidelity_samples=4, sensitivity_samples=2)
    assert all(row["infidelity"] >= 0 and row["sensitivity_max"] >= 0 for row in rows)
