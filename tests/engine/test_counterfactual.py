"""Counterfactual edits on a linear toy model whose answer on any edited input is known in
closed form: logit(pos) = w . picture + sum of the words' values, logit(neg) = 0, baseline 0."""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np
import pytest
import torch
from PIL import Image

from workers.engine.adapter import GroupInfo
from workers.engine.attribution import attribute
from workers.engine.counterfactual import (
    ADAPTER_EDIT,
    MODALITY_BASELINE,
    TOP_K_REMOVED,
    WORD_SWAP,
    edit_predictions,
    edited_picture_png,
    item_edits,
    swap_pairs_parse,
    top_k_removed_edit,
    word_swap_edit,
)

WORD_VALUES = {"red": 2.0, "blue": -3.0, "big": 0.5, "is": 0.0, "it": 0.0, "small": -0.5}
PIXEL_WEIGHTS = torch.tensor([1.0, -1.0, 2.0, 0.5], dtype=torch.float64)  # 4 one-pixel patches
T = 4


class LinearPictureWords:
    """Picture: 4 numbers (a 2x2 grid, one patch each, groups 0..3); text: up to 4 words
    (groups 4..7, padding hidden, value 0)."""

    labels = ("neg", "pos")
    modalities = ("image", "text")

    def load(self, device) -> None:
        pass

    def encode(self, items):
        words = [item["text"].lower().split()[:T] for item in items]
        values = [[WORD_VALUES.get(w, 0.0) for w in ws] + [0.0] * (T - len(ws)) for ws in words]
        return {
            "pixels": torch.tensor([item["image"] for item in items], dtype=torch.float64).reshape(-1, 1, 2, 2),
            "words": torch.tensor(values, dtype=torch.float64).reshape(-1, T, 1),
            "tokens": words,
        }

    def embed(self, batch):
        return batch["pixels"].clone(), batch["words"].clone()

    def head(self, pixels, words, *, batch):
        pos = pixels.reshape(pixels.shape[0], -1) @ PIXEL_WEIGHTS + words.sum(dim=(1, 2))
        return torch.stack([torch.zeros_like(pos), pos], dim=1)

    def baselines(self, batch):
        return torch.zeros_like(batch["pixels"]), torch.zeros_like(batch["words"])

    def feature_groups(self, batch):
        n = batch["pixels"].shape[0]
        image = torch.arange(4).reshape(1, 1, 2, 2).expand(n, 1, 2, 2)
        return image, (4 + torch.arange(T)).reshape(1, T, 1).expand(n, T, 1)

    def describe_groups(self, batch):
        out = []
        for words in batch["tokens"]:
            patches = [GroupInfo(g, "patch", box=(g % 2, g // 2, g % 2 + 1, g // 2 + 1)) for g in range(4)]
            tokens = [
                GroupInfo(4 + t, "token", text=words[t] if t < len(words) else "", hidden=t >= len(words))
                for t in range(T)
            ]
            out.append([patches, tokens])
        return out


def closed_form(pixels: Sequence[float], words: Sequence[str]) -> str:
    pos = float(np.dot(pixels, PIXEL_WEIGHTS.numpy())) + sum(WORD_VALUES.get(w, 0.0) for w in words)
    return "pos" if pos > 0 else "neg"


@pytest.fixture(scope="module")
def adapter():
    return LinearPictureWords()


def explained(adapter, item, target="pos"):
    batch = adapter.encode([item])
    return attribute(adapter, batch, method="input_x_gradient", targets=[adapter.labels.index(target)])[0]


ITEM = {"id": "a", "image": [1.0, 0.0, 1.0, 0.0], "text": "it is red", "label": "pos"}


def test_each_edit_gives_the_closed_form_answer(adapter):
    attribution = explained(adapter, ITEM)
    hidden = [g.group_id for g in adapter.describe_groups(adapter.encode([ITEM]))[0][1] if g.hidden]
    edits = item_edits(
        adapter,
        ITEM,
        attribution,
        kinds=(MODALITY_BASELINE, TOP_K_REMOVED, WORD_SWAP),
        k=2,
        pairs=[("green", "red"), ("red", "blue")],
        hidden=hidden,
        names={"image": "the picture", "text": "the question"},
    )
    by_name = {e.name: e for e in edits}
    assert list(by_name) == [
        "modality_baseline:image",
        "modality_baseline:text",
        "top_k_removed:2",
        "word_swap:red->blue",
    ]
    # Scores w*x: patches 1, 0, 2, 0; words 0, 0, 2 -> the top two are patch 2 (2.0), then word
    # "red" (group 6, 2.0, tie broken by ID) -> patch 2 and the word removed.
    assert by_name["top_k_removed:2"].replaced == {"image": [2], "text": [6]}
    assert by_name["modality_baseline:image"].description == "the picture replaced by a blank one"
    assert by_name["top_k_removed:2"].description == (
        "the parts the explanation marked most important removed: 1 patch of the picture removed; "
        "1 word of the question removed"
    )
    assert by_name["word_swap:red->blue"].raw["text"] == "it is blue"
    expected = {
        "modality_baseline:image": closed_form([0, 0, 0, 0], ["it", "is", "red"]),  # 2 > 0: pos
        "modality_baseline:text": closed_form([1, 0, 1, 0], []),  # 3: pos
        "top_k_removed:2": closed_form([1, 0, 0, 0], ["it", "is"]),  # 1: pos
        "word_swap:red->blue": closed_form([1, 0, 1, 0], ["it", "is", "blue"]),  # 0: neg
    }
    predictions = edit_predictions(adapter, ITEM, edits)
    assert {e.name: p.label for e, p in zip(edits, predictions)} == expected
    assert expected["word_swap:red->blue"] == "neg"  # the case is not trivial: one edit flips the answer
    logit = {e.name: p.logits[1] for e, p in zip(edits, predictions)}
    assert logit["top_k_removed:2"] == pytest.approx(1.0) and logit["modality_baseline:text"] == pytest.approx(3.0)


def test_an_edit_flips_the_answer_when_the_evidence_is_removed(adapter):
    item = {"id": "b", "image": [0.0, 0.0, 1.0, 0.0], "text": "big small red", "label": "pos"}
    attribution = explained(adapter, item)
    edit = top_k_removed_edit(adapter, item, attribution, k=2)
    # scores: patch 2 -> 2, "big" 0.5, "red" 2 -> patch 2 and "red" (group 6) removed; left: 0.5 - 0.5 = 0
    assert edit.replaced == {"image": [2], "text": [6]}
    assert edit_predictions(adapter, item, [edit])[0].label == closed_form([0, 0, 0, 0], ["big", "small"]) == "neg"


def test_no_edit_where_none_applies(adapter):
    item = {"id": "c", "image": [0.0, 1.0, 0.0, 0.0], "text": "blue", "label": "neg"}
    attribution = explained(adapter, item)
    assert top_k_removed_edit(adapter, item, attribution, k=3) is None  # nothing speaks for "pos"
    assert word_swap_edit(adapter, item, attribution, pairs=[("red", "blue")]) is None
    assert word_swap_edit(adapter, {**item, "text": "Blueish"}, attribution, pairs=[("blue", "red")]) is None
    swapped = word_swap_edit(adapter, {**item, "text": "BLUE it"}, attribution, pairs=[("blue", "red")])
    assert swapped.raw["text"] == "red it"
    with pytest.raises(ValueError, match="k must be at least 1"):
        top_k_removed_edit(adapter, item, attribution, k=0)


def test_swap_pairs_are_parsed_and_bad_ones_named():
    assert swap_pairs_parse("red -> blue\n\n big->small ") == [("red", "blue"), ("big", "small")]
    with pytest.raises(ValueError, match="pair 2"):
        swap_pairs_parse(["red -> blue", "red blue"])
    with pytest.raises(ValueError, match="pair 1"):
        swap_pairs_parse(["two words -> one"])
    with pytest.raises(ValueError, match="itself"):
        swap_pairs_parse(["Red -> red"])


class WithHook(LinearPictureWords):
    def counterfactual_edits(self, item, *, attribution):
        return [
            {
                "name": "negated",
                "description": "the picture's colours inverted",
                "item": {**item, "image": [-v for v in item["image"]]},
            }
        ]


def test_the_adapter_hook_adds_its_own_edits():
    adapter = WithHook()
    attribution = explained(adapter, ITEM)
    edits = item_edits(adapter, ITEM, attribution, kinds=(ADAPTER_EDIT,))
    assert [(e.kind, e.name, e.description) for e in edits] == [
        ("adapter", "adapter:negated", "the picture's colours inverted")
    ]
    assert edit_predictions(adapter, ITEM, edits)[0].label == closed_form([-1, 0, -1, 0], ["it", "is", "red"])
    assert item_edits(LinearPictureWords(), ITEM, attribution, kinds=(ADAPTER_EDIT,)) == []


def test_the_edited_picture_greys_the_removed_patches():
    pixels = np.full((2, 2, 3), 200, dtype=np.uint8)
    drawn = np.asarray(Image.open(io.BytesIO(edited_picture_png(pixels, boxes=[(1, 0, 2, 1)], upscale=4))))
    assert drawn.shape == (8, 8, 3)
    assert tuple(drawn[2, 6]) == (128, 128, 128) and tuple(drawn[6, 2]) == (200, 200, 200)
    blank = np.asarray(Image.open(io.BytesIO(edited_picture_png(pixels, blank=True, upscale=1))))
    assert (blank == 128).all()
