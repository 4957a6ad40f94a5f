"""Attention views (issue 21): rollout and block shares against hand computations, rollout of
identity attention, and Chefer et al.'s relevance against a straightforward implementation
written here (forward hooks, ``retain_grad`` and ``backward`` per item, explicit loops), on the
suite's tiny ViLT and CLIP folders (tests/builders/hf_models.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.builders.hf_models import clip_folder, image_items, vilt_folder
from workers.engine.attention import (
    AttentionRecord,
    attention_attribution,
    attention_record,
    attention_rollout,
    block_shares,
    chefer_relevance,
    cross_share,
    has_attention,
    patch_label,
    unit_attention,
)
from workers.engine.hf import from_folder

torch.set_num_threads(1)

TEXTS = ["What colour is the SQUARES?", "is it red"]


# -- hand-built stacks ----------------------------------------------------------------------------
def test_rollout_and_block_shares_equal_a_hand_computation():
    # Two positions, text then image; one layer of two heads, then one of one head (repeated).
    layer1 = np.array([[[0.5, 0.5], [0.0, 1.0]], [[0.5, 0.5], [0.0, 1.0]]])
    layer2 = np.array([[[0.0, 1.0], [1.0, 0.0]], [[0.0, 1.0], [1.0, 0.0]]])
    stack = np.stack([layer1, layer2])
    # By hand: Â1 = (A1 + I) / 2 = [[.75, .25], [0, 1]]; Â2 = [[.5, .5], [.5, .5]];
    # rollout = Â2 Â1 = [[.375, .625], [.375, .625]].
    np.testing.assert_allclose(attention_rollout(stack), [[0.375, 0.625], [0.375, 0.625]], atol=1e-12)
    shares = block_shares(stack, [0, 1])
    np.testing.assert_allclose(shares[0, 0], [[0.5, 0.5], [0.0, 1.0]], atol=1e-12)
    np.testing.assert_allclose(shares[1, 1], [[0.0, 1.0], [1.0, 0.0]], atol=1e-12)
    # Cross share: layer 1 (0.5 + 0) / 2 rows; layer 2 (1 + 1) / 2.
    np.testing.assert_allclose(cross_share(stack, [0, 1]), [[0.25, 0.25], [1.0, 1.0]], atol=1e-12)


def test_rollout_of_identity_attention_is_the_identity():
    stack = np.broadcast_to(np.eye(5), (3, 2, 5, 5))
    np.testing.assert_allclose(attention_rollout(stack), np.eye(5), atol=1e-12)
    # Chefer's relevance with no gradient stays the identity it starts from.
    np.testing.assert_allclose(chefer_relevance(stack, np.zeros_like(stack)), np.eye(5), atol=1e-12)


def test_unit_attention_averages_rows_and_sums_columns():
    rng = np.random.default_rng(0)
    a = rng.random((4, 4))
    a /= a.sum(axis=1, keepdims=True)
    units = unit_attention(a, [0, 1, 1, 2], 3)
    np.testing.assert_allclose(units[1, 1], (a[1, 1] + a[1, 2] + a[2, 1] + a[2, 2]) / 2)
    np.testing.assert_allclose(units.sum(axis=1), 1.0)
    assert [patch_label(k, 4) for k in (0, 5, 15)] == ["A1", "B2", "D4"]
    assert patch_label(26, 27) == "AA1"


# -- tiny Hugging Face models ---------------------------------------------------------------------
@pytest.fixture(scope="module")
def items(tmp_path_factory):
    return image_items(tmp_path_factory.mktemp("attention-images"), TEXTS)


@pytest.fixture(scope="module")
def vilt(tmp_path_factory):
    adapter = from_folder(path=str(vilt_folder(tmp_path_factory.mktemp("vilt") / "m")), kind="vqa")
    adapter.load(torch.device("cpu"))
    return adapter


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    folder = clip_folder(tmp_path_factory.mktemp("clip") / "m")
    adapter = from_folder(path=str(folder), kind="zero-shot", labels=["red", "blue", "green square"])
    adapter.load(torch.device("cpu"))
    return adapter


def test_vilt_with_uniform_attention_set_by_hand_gives_the_closed_forms(vilt, items):
    """Zero query weights make every score 0: each head attends uniformly over the N real
    positions. Then block shares are position counts over N, and with Â = (J/N + I)/2 per
    layer and J² = N·J, two layers give rollout = I/4 + 3J/(4N)."""
    layers = vilt.model.vilt.encoder.layer
    saved = [
        (layer.attention.attention.query.weight.clone(), layer.attention.attention.query.bias.clone())
        for layer in layers
    ]
    try:
        for layer in layers:
            layer.attention.attention.query.weight.zero_()
            layer.attention.attention.query.bias.zero_()
        maps = vilt.attention(items)
    finally:
        for layer, (weight, bias) in zip(layers, saved):
            layer.attention.attention.query.weight.copy_(weight)
            layer.attention.attention.query.bias.copy_(bias)
    for item_maps in maps:
        (stream,) = item_maps.streams
        n = stream.attention.shape[-1]
        n_image = 1 + vilt.grid**2  # the image's [CLS] and its patches
        n_text = n - n_image
        np.testing.assert_allclose(stream.attention, 1.0 / n, atol=1e-6)
        shares = block_shares(stream.attention, stream.modality_of)
        expected = [[n_text / n, n_image / n], [n_text / n, n_image / n]]
        np.testing.assert_allclose(shares, np.broadcast_to(expected, shares.shape), atol=1e-6)
        np.testing.assert_allclose(
            cross_share(stream.attention, stream.modality_of), 2 * n_text * n_image / n**2, atol=1e-6
        )
        np.testing.assert_allclose(attention_rollout(stream.attention), np.eye(n) / 4 + 3 / (4 * n), atol=1e-6)


def test_vilt_layout_matches_the_feature_groups(vilt, items):
    maps = vilt.attention(items)
    batch = vilt.encode(items)
    described = vilt.describe_groups(batch)
    for item_maps, groups in zip(maps, described):
        (stream,) = item_maps.streams
        assert item_maps.cross_modal and stream.units[stream.unit_of[stream.pooled]].label == "[CLS]"
        patches = [u for u in stream.units if u.modality == "image" and not u.special]
        words = [u for u in stream.units if u.modality == "text" and not u.special]
        assert [u.group for u in patches] == [g.group_id for g in groups[0]]
        shown = [g for g in groups[1] if not g.hidden]
        assert [(u.group, u.label) for u in words] == [(g.group_id, g.text) for g in shown]
        # Padding is gone: every row still sums to one.
        np.testing.assert_allclose(stream.attention.sum(axis=-1), 1.0, atol=1e-5)


def _straightforward_chefer(attentions, grads, row):
    """Chefer et al.'s update with explicit loops: R = I; R += mean_h(max(0, g*a)) @ R."""
    n = attentions[0].shape[-1]
    relevance = [[1.0 if i == j else 0.0 for j in range(n)] for i in range(n)]
    for a, g in zip(attentions, grads):
        heads = a.shape[0]
        weighted = [
            [sum(max(0.0, float(g[h, i, j] * a[h, i, j])) for h in range(heads)) / heads for j in range(n)]
            for i in range(n)
        ]
        update = [[sum(weighted[i][k] * relevance[k][j] for k in range(n)) for j in range(n)] for i in range(n)]
        relevance = [[relevance[i][j] + update[i][j] for j in range(n)] for i in range(n)]
    return np.array(relevance[row])


def _captured_attention(modules):
    """Forward hooks that keep each module's attention output with its gradient retained."""
    kept, handles = [], []

    def hook(_module, _inputs, output):
        output[1].retain_grad()
        kept.append(output[1])

    for module in modules:
        handles.append(module.register_forward_hook(hook))
    return kept, handles


def test_vilt_chefer_relevance_matches_a_straightforward_implementation(vilt, items):
    targets = [[0, 2], [3]]
    maps = vilt.attention(items, targets=targets)
    batch = vilt.encode(items)
    modules = [layer.attention.attention for layer in vilt.model.vilt.encoder.layer]
    vilt.model.config.output_attentions = True  # the self-attention modules then return their probabilities
    try:
        for b, item_targets in enumerate(targets):
            (stream,) = maps[b].streams
            keep = [p for p in range(vilt.text_length) if batch.attention_mask[b, p]]
            keep += list(range(vilt.text_length, vilt.text_length + 1 + vilt.grid**2))
            for target in item_targets:
                kept, handles = _captured_attention(modules)
                one = _one_item(batch, b)
                pixels, words = vilt.embed(one)
                words.requires_grad_(True)
                try:
                    with torch.enable_grad():
                        vilt.head(pixels, words, batch=one)[0, target].backward()
                finally:
                    for handle in handles:
                        handle.remove()
                attn = [a.detach()[0][:, keep][:, :, keep].double().numpy() for a in kept]
                grad = [a.grad[0][:, keep][:, :, keep].double().numpy() for a in kept]
                expected = _straightforward_chefer(attn, grad, row=0)
                ours = chefer_relevance(stream.targets[target].attention, stream.targets[target].gradient)[0]
                np.testing.assert_allclose(ours, expected, rtol=1e-5, atol=1e-7)
                # Unit level: a unit's positions summed.
                record = attention_record(maps[b]).streams[0]
                by_unit = np.zeros(len(stream.units))
                np.add.at(by_unit, stream.unit_of, expected)
                np.testing.assert_allclose(record.relevance[target], by_unit, rtol=1e-5, atol=1e-7)
    finally:
        vilt.model.config.output_attentions = False


def _one_item(batch, b):
    from dataclasses import replace

    return replace(
        batch,
        ids=batch.ids[b : b + 1],
        pixels=batch.pixels[b : b + 1],
        input_ids=batch.input_ids[b : b + 1],
        attention_mask=batch.attention_mask[b : b + 1],
        token_type_ids=batch.token_type_ids[b : b + 1],
        words=batch.words[b : b + 1],
        sizes=batch.sizes[b : b + 1],
    )


def test_clip_has_two_towers_and_says_so(clip, items):
    assert has_attention(clip)
    maps = clip.attention(items, targets=[[1], [0, 2]], hidden_states=True)
    batch = clip.encode(items)
    described = clip.describe_groups(batch)
    for item_maps, groups, words in zip(maps, described, batch.words):
        assert not item_maps.cross_modal and "never attend to each other" in item_maps.note
        image, text = item_maps.streams
        assert {u.modality for u in image.units} == {"image"} and {u.modality for u in text.units} == {"text"}
        assert image.hidden.shape[0] == len(clip.model.vision_model.encoder.layers) + 1
        record = attention_record(item_maps)
        assert all(s.shares is None and s.cross is None for s in record.streams)
        by_group = record.relevance_by_group(record.targets[0])
        assert sorted(by_group["image"]) == [g.group_id for g in groups[0]]
        assert sorted(by_group["text"]) == [g.group_id for g in groups[1] if not g.hidden]
        # The item's own words; the class names stay inside the one "[prompt]" unit.
        assert [u.label for u in text.units if not u.special] == list(words.texts)
        assert [u.label for u in text.units if u.special] == ["[prompt]"]


def test_clip_vision_chefer_matches_a_straightforward_implementation(clip, items):
    maps = clip.attention(items[:1], targets=[[2]])
    batch = clip.encode(items[:1])
    kept, handles = _captured_attention([layer.self_attn for layer in clip.model.vision_model.encoder.layers])
    pixels, tokens = clip.embed(batch)
    pixels.requires_grad_(True)
    try:
        with torch.enable_grad():
            clip.head(pixels, tokens, batch=batch)[0, 2].backward()
    finally:
        for handle in handles:
            handle.remove()
    attn = [a.detach()[0].double().numpy() for a in kept]
    grad = [a.grad[0].double().numpy() for a in kept]
    image = maps[0].streams[0]
    ours = chefer_relevance(image.targets[2].attention, image.targets[2].gradient)[0]
    np.testing.assert_allclose(ours, _straightforward_chefer(attn, grad, row=0), rtol=1e-5, atol=1e-7)


def test_the_record_round_trips_compactly(vilt, items):
    maps = vilt.attention(items, targets=[[0, 1], [2]], hidden_states=True)
    record = attention_record(maps[0], keep_hidden=True)
    data = record.to_bytes()
    back = AttentionRecord.from_bytes(data)
    (ours,), (theirs,) = record.streams, back.streams
    assert theirs.units == ours.units and theirs.pooled == ours.pooled
    np.testing.assert_allclose(theirs.attention, ours.attention, atol=1 / 510 + 1e-9)
    np.testing.assert_allclose(theirs.rollout, ours.rollout, rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(theirs.shares, ours.shares, rtol=1e-6)
    assert sorted(theirs.relevance) == [0, 1] and theirs.hidden.shape == ours.hidden.shape
    # Without the hidden states a record is a few kilobytes for this model.
    assert len(attention_record(maps[0]).to_bytes()) < len(data)


def test_the_attention_view_draws_relevance_over_the_feature_groups(vilt, clip, items):
    """Chefer's relevance per group fills each patch's box of the original image and each
    word; the rollout is the same for every target; CLIP's come from its two towers."""
    for adapter in (vilt, clip):
        batch = adapter.encode(items[:1])
        groups = adapter.describe_groups(batch)[0]
        record = attention_record(adapter.attention(items[:1], targets=[[0, 1]])[0])
        by_group = record.relevance_by_group(1)
        chefer = attention_attribution(
            record, groups=groups, modalities=adapter.modalities, target=1, source="chefer", method="attention:chefer"
        )
        width, height = batch.sizes[0]
        assert chefer.maps["image"].shape == (height, width)
        for g in groups[0]:
            x0, y0, x1, y1 = g.box
            assert np.all(chefer.maps["image"][y0:y1, x0:x1] == by_group["image"][g.group_id])
        words = [by_group["text"].get(g.group_id, 0.0) for g in groups[1]]
        np.testing.assert_array_equal(chefer.group_scores["text"], words)
        assert chefer.group_scores["text"][-1] == 0.0 if groups[1][-1].hidden else True
        rollouts = [
            attention_attribution(
                record, groups=groups, modalities=adapter.modalities, target=t, source="rollout", method="r"
            )
            for t in (0, 1)
        ]
        np.testing.assert_array_equal(rollouts[0].group_scores["text"], rollouts[1].group_scores["text"])
        assert not np.array_equal(
            chefer.group_scores["image"],
            attention_attribution(
                record, groups=groups, modalities=adapter.modalities, target=0, source="chefer", method="c"
            ).group_scores["image"],
        )
    with pytest.raises(ValueError, match="attention source"):
        attention_attribution(record, groups=groups, modalities=adapter.modalities, target=0, source="raw", method="x")
