"""Hugging Face adapters on tiny random models built in code (tests/builders/hf_models.py), saved
to a temporary folder and read back through the adapter, as a real model folder would be:
logits equal the model's own forward pass, every attribution method and interaction runs, IG is
complete, groups follow the model's patch grid and the tokenizer's words, and bad folders or
options are refused with one line."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch

from tests.builders.hf_models import VILT_LABELS, clip_folder, image_items, vilt_folder
from tests.engine.adapter_checks import assert_ig_complete
from workers.engine.adapter import AdapterError, adapter_from_path
from workers.engine.attribution import METHODS, attribute, prepare_batch
from workers.engine.hf import HF_ADAPTER, from_folder, hf_options
from workers.engine.hf.clip import fill_prompt
from workers.engine.hf.inputs import patch_boxes
from workers.engine.interactions import CROSS_METHODS, cross_modal_interaction
from workers.engine.registry import check_adapter

# Tiny models: intra-op threads only add contention on a shared CPU.
torch.set_num_threads(1)

TEXTS = ["What colour is the SQUARES?", "is it red", "a photo of a blue circle on the left"]
ZERO_SHOT_LABELS = ["red", "blue", "green square"]
# Methods whose score for a group where input == baseline is exactly zero.
# (GradientShap is not one: it draws its baselines from the whole batch's.)
ZERO_WHERE_UNCHANGED = ("integrated_gradients", "feature_ablation", "shapley_value_sampling")


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("hf")
    return {
        "vqa": vilt_folder(root / "vilt-vqa", kind="vqa"),
        "classify": vilt_folder(root / "vilt-classify", kind="classify", seed=3),
        "zero-shot": clip_folder(root / "clip"),
    }


@pytest.fixture(scope="module")
def items(tmp_path_factory):
    return image_items(tmp_path_factory.mktemp("hf-images"), TEXTS)


def _options(kind: str, folders) -> dict:
    if kind == "zero-shot":
        return {"path": str(folders[kind]), "kind": kind, "labels": ZERO_SHOT_LABELS}
    return {"path": str(folders[kind]), "kind": kind}


@pytest.fixture(scope="module")
def adapters(folders):
    out = {}
    for kind in folders:
        adapter = adapter_from_path(HF_ADAPTER, _options(kind, folders))
        adapter.load(torch.device("cpu"))
        out[kind] = adapter
    return out


KINDS = ["vqa", "classify", "zero-shot"]


def _own_logits(adapter, batch, items) -> torch.Tensor:
    """The logits of the model's own forward pass, from token IDs and pixel values."""
    model = adapter.model
    if adapter.options.kind != "zero-shot":
        out = model(
            input_ids=batch.input_ids,
            attention_mask=batch.attention_mask,
            token_type_ids=batch.token_type_ids,
            pixel_values=batch.pixels,
        ).logits
        return out[:, list(adapter.options.label_indices)]
    rows = []
    for b, item in enumerate(items):
        prompts = [fill_prompt(adapter.options.prompt, item["text"], label)[0] for label in adapter.labels]
        enc = adapter.tokenizer(prompts, padding=True, return_tensors="pt")
        rows.append(
            model(
                input_ids=enc["input_ids"], attention_mask=enc["attention_mask"], pixel_values=batch.pixels[b : b + 1]
            ).logits_per_image[0]
        )
    return torch.stack(rows)


# -- embed + head reproduce the model ------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_head_of_embed_equals_the_models_own_forward_pass(adapters, items, kind):
    adapter = adapters[kind]
    batch = adapter.encode(items)
    with torch.no_grad():
        ours = adapter.head(*adapter.embed(batch), batch=batch)
        theirs = _own_logits(adapter, batch, items)
    assert ours.shape == (len(items), len(adapter.labels))
    assert float(theirs.abs().max()) > 0.1  # a model whose logits vary, not all zeros
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-5)
    # the protocol's row layout: k copies of the batch give k copies of the logits
    with torch.no_grad():
        tiled = adapter.head(*(x.repeat(3, *([1] * (x.dim() - 1))) for x in adapter.embed(batch)), batch=batch)
    torch.testing.assert_close(tiled, ours.repeat(3, 1), atol=1e-5, rtol=1e-5)


def test_a_label_subset_picks_the_models_own_columns(folders, adapters, items):
    subset = adapter_from_path(HF_ADAPTER, {"path": str(folders["vqa"]), "labels": ["yellow", "red"]})
    subset.load(torch.device("cpu"))
    assert list(subset.labels) == ["yellow", "red"] and subset.options.kind == "vqa"
    full = adapters["vqa"]
    with torch.no_grad():
        a = subset.head(*subset.embed(subset.encode(items)), batch=subset.encode(items))
        b = full.head(*full.embed(full.encode(items)), batch=full.encode(items))
    torch.testing.assert_close(a, b[:, [VILT_LABELS.index("yellow"), VILT_LABELS.index("red")]])


@pytest.mark.parametrize("prompt", ["{label}: {text}", "a picture. {text} -> {label}!"])
def test_zero_shot_prompts_put_the_text_anywhere(folders, items, prompt):
    adapter = from_folder(path=str(folders["zero-shot"]), labels=ZERO_SHOT_LABELS, prompt=prompt)
    adapter.load(torch.device("cpu"))
    batch = adapter.encode(items)
    with torch.no_grad():
        torch.testing.assert_close(
            adapter.head(*adapter.embed(batch), batch=batch), _own_logits(adapter, batch, items), atol=1e-5, rtol=1e-5
        )


def test_zero_shot_reads_features_where_old_clip_configs_do(tmp_path, items):
    # OpenAI's CLIP folders keep eos_token_id 2 in their config: CLIPTextModel then pools at
    # the highest token ID (end of text, last in their vocabulary), not at the first ID 2.
    adapter = from_folder(path=str(clip_folder(tmp_path / "old-clip", old_config=True)), labels=ZERO_SHOT_LABELS)
    adapter.load(torch.device("cpu"))
    assert adapter.model.config.text_config.eos_token_id == 2
    batch = adapter.encode(items)
    assert torch.equal(batch.pool_index, (batch.prompt_mask.sum(-1) - 1))  # the end-of-text position
    with torch.no_grad():
        torch.testing.assert_close(
            adapter.head(*adapter.embed(batch), batch=batch), _own_logits(adapter, batch, items), atol=1e-5, rtol=1e-5
        )


def test_zero_shot_refuses_a_template_that_runs_the_text_into_the_label(folders, items):
    adapter = from_folder(path=str(folders["zero-shot"]), labels=["d", "blue"], prompt="{text}{label}")
    adapter.load(torch.device("cpu"))
    with pytest.raises(
        ValueError,
        match=r"item 'it1': the prompt template joins the text and the label 'd' into one "
        r"word; put a space between \{text\} and \{label\}",
    ):
        adapter.encode([items[0], dict(items[1], text="is it re")])  # "re" + "d": the one piece "red</w>"


def test_zero_shot_names_an_item_whose_prompt_is_too_long(adapters, items):
    long_item = dict(items[0], id="long", text=" ".join(["photo"] * 40))
    with pytest.raises(
        ValueError, match=r"item 'long': the prompt for 'red' has \d+ tokens; the model reads at most 32"
    ):
        adapters["zero-shot"].encode([items[0], long_item])


# -- groups: the model's patch grid and the tokenizer's words -------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_groups_follow_the_patch_grid_and_merge_word_pieces(adapters, folders, items, kind):
    from transformers import AutoTokenizer

    adapter = adapters[kind]
    batch = adapter.encode(items)
    image, text = adapter.feature_groups(batch)
    assert image.shape == (3, 1, 32, 32)
    y, x = torch.meshgrid(torch.arange(32), torch.arange(32), indexing="ij")
    assert torch.equal(image[1, 0], (y // 8) * 4 + x // 8)  # 8x8 patches, row-major

    described = adapter.describe_groups(batch)
    words = [[g.text for g in item[1] if not g.hidden] for item in described]
    # Shown as written (case kept, although both tokenizers lower-case), pieces merged: the
    # WordPiece vocabulary has "square" + "##s"; the learnt BPE never saw "left" twice.
    assert words[0] == ["What", "colour", "is", "the", "SQUARES", "?"]
    assert words[2] == ["a", "photo", "of", "a", "blue", "circle", "on", "the", "left"]
    b, word = (2, "left") if kind == "zero-shot" else (0, "SQUARES")
    pieces = AutoTokenizer.from_pretrained(folders[kind]).tokenize(word)
    assert len(pieces) >= 2, pieces
    group = next(g for g in described[b][1] if g.text == word)
    assert int((text[b, :, 0] == group.group_id).sum()) == len(pieces)  # one group of all its pieces
    for b, item in enumerate(described):
        patches, tokens = item
        assert [g.group_id for g in patches] == list(range(16))
        ids = torch.unique(text[b]).tolist()
        assert [g.group_id for g in tokens] == ids == list(range(16, 16 + len(ids)))
        assert [g.hidden for g in tokens] == [False] * (len(ids) - 1) + [True]  # padding: one hidden group last
    # boxes are in the original image's pixels (40x24 here), and tile it
    assert [g.box for g in described[0][0][:2]] == [(0, 0, 10, 6), (10, 0, 20, 6)]
    check_adapter(adapter, items)


def test_patch_boxes_tile_any_image_without_empty_boxes():
    for size in [(40, 24), (3, 2), (17, 50), (640, 480)]:
        boxes = patch_boxes(size, 4)
        cover = np.zeros(size[::-1], dtype=int)
        for x0, y0, x1, y1 in boxes:
            assert x1 > x0 and y1 > y0
            cover[y0:y1, x0:x1] += 1
        assert cover.min() >= 1


def test_unknown_words_are_marked(adapters, items):
    adapter = adapters["vqa"]
    batch = adapter.encode([dict(items[0], text="what colour is the zebra")])
    tokens = adapter.describe_groups(batch)[0][1]
    assert [(g.text, g.extra) for g in tokens if not g.hidden][-2:] == [("the", {}), ("zebra", {"unknown": True})]


def test_vilt_baselines_blank_the_words_and_keep_the_special_tokens(adapters, items):
    adapter = adapters["vqa"]
    batch = adapter.encode(items)
    base_image, base_text = adapter.baselines(batch)
    _, text = adapter.embed(batch)
    assert torch.equal(base_image, torch.zeros_like(batch.pixels))
    pad = adapter.model.vilt.embeddings.text_embeddings.word_embeddings.weight[adapter.tokenizer.pad_token_id]
    words = [p for positions in batch.words[1].positions for p in positions]
    others = [p for p in range(text.shape[1]) if p not in words]
    assert words == [1, 2, 3]  # "[CLS] is it red [SEP]"
    torch.testing.assert_close(base_text[1, words], pad.expand(len(words), -1))
    torch.testing.assert_close(base_text[1, others], text[1, others])


# -- every method, the interaction matrix, IG completeness ----------------------------------


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("method", sorted(METHODS))
def test_every_attribution_method_runs_on_every_kind(adapters, items, kind, method):
    adapter = adapters[kind]
    batch = adapter.encode(items[:2])
    targets = torch.tensor([0, 1])
    results = attribute(adapter, batch, method=method, targets=targets)
    groups = adapter.describe_groups(batch)
    for b, res in enumerate(results):
        assert res.maps["image"].shape == (32, 32)
        assert res.maps["text"].shape == (adapter.text_length,)
        assert [int(g) for g in res.group_ids["text"]] == [g.group_id for g in groups[b][1]]
        for m in ("image", "text"):
            assert np.isfinite(res.group_scores[m]).all()
        assert sum(abs(v) for v in res.modality_share.values()) == pytest.approx(1.0)
        assert np.abs(res.group_scores["image"]).max() > 0 and np.abs(res.group_scores["text"][:-1]).max() > 0
        if method in ZERO_WHERE_UNCHANGED:  # special tokens and padding equal their baseline
            assert abs(res.group_scores["text"][-1]) <= 1e-5 * np.abs(res.group_scores["text"]).max()


@pytest.mark.parametrize("kind", KINDS)
def test_integrated_gradients_is_complete(adapters, items, kind):
    adapter = adapters[kind]
    assert_ig_complete(prepare_batch(adapter, adapter.encode(items)), torch.tensor([0, 1, 2]))


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("method", sorted(CROSS_METHODS))
def test_interaction_matrix_is_patches_by_words(adapters, items, kind, method):
    adapter = adapters[kind]
    batch = adapter.encode(items[:2])
    results = cross_modal_interaction(adapter, batch, method=method, targets=[0, 1])
    groups = adapter.describe_groups(batch)
    for b, res in enumerate(results):
        assert res.matrix.shape == (16, len(groups[b][1]))
        assert np.isfinite(res.matrix).all() and np.abs(res.matrix).max() > 0
        assert list(res.group_ids_b) == [g.group_id for g in groups[b][1]]


@pytest.mark.parametrize("kind", KINDS)
def test_perturbation_dividend_of_a_patch_and_a_word_by_hand(adapters, items, kind):
    # The matrix's groups are the adapter's: blanking patch 5 and the word "red" by hand gives
    # the same double difference.
    adapter = adapters[kind]
    batch = adapter.encode(items[1:2])  # "is it red"
    p = prepare_batch(adapter, batch)
    res = cross_modal_interaction(adapter, batch, method="perturbation", targets=[0], prepared=p)[0]
    word = next(g.group_id for g in adapter.describe_groups(batch)[0][1] if g.text == "red")

    def f(blank_patch: bool, blank_word: bool) -> float:
        x = [t.clone() for t in p.inputs]
        if blank_patch:
            hit = (p.masks[0] == 5).expand_as(x[0])
            x[0][hit] = p.baselines[0][hit]
        if blank_word:
            hit = (p.masks[1] == word).expand_as(x[1])
            x[1][hit] = p.baselines[1][hit]
        with torch.no_grad():
            return float(adapter.head(*x, batch=batch)[0, 0])

    expected = f(False, False) - f(True, False) - f(False, True) + f(True, True)
    column = list(res.group_ids_b).index(word)
    assert res.matrix[5, column] == pytest.approx(expected, abs=1e-5)


# -- bad folders and options: one line, before any weight is read ---------------------------


def test_a_path_that_is_not_a_local_model_folder_is_refused(tmp_path):
    with pytest.raises(AdapterError) as hub:
        hf_options(path="openai/clip-vit-base-patch32")
    assert str(hub.value) == (
        "openai/clip-vit-base-patch32: not a local model folder: no such file or folder (a hub ID is never "
        "downloaded: fetch the model once on a machine with internet, e.g. with `huggingface-cli download ID "
        "--local-dir DIR`, and pass DIR)"
    )
    missing = tmp_path / "nope"
    with pytest.raises(AdapterError, match=r"^.*/nope: not a local model folder: no such file or folder$"):
        hf_options(path=str(missing))
    (tmp_path / "weights.bin").write_bytes(b"x")
    with pytest.raises(AdapterError, match=r"weights.bin: not a local model folder: it is a file"):
        hf_options(path=str(tmp_path / "weights.bin"))
    with pytest.raises(AdapterError, match=r"not a local model folder: it has no config.json"):
        hf_options(path=str(tmp_path))
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(AdapterError, match=r"config.json: cannot read it"):
        hf_options(path=str(tmp_path))


def test_a_folder_of_the_wrong_kind_is_refused(folders, tmp_path):
    with pytest.raises(AdapterError) as wrong:
        hf_options(path=folders["zero-shot"], kind="vqa")
    assert str(wrong.value) == (
        f"{folders['zero-shot']} holds CLIPModel (model_type 'clip'), not a vqa model: "
        "--kind vqa reads ViltForQuestionAnswering; it fits --kind zero-shot"
    )
    with pytest.raises(AdapterError, match="not a classify model: .*it fits --kind vqa"):
        hf_options(path=folders["vqa"], kind="classify")
    with pytest.raises(AdapterError, match="unknown kind 'captioning'; choose one of vqa, zero-shot, classify"):
        hf_options(path=folders["vqa"], kind="captioning")
    bert = tmp_path / "bert"
    bert.mkdir()
    (bert / "config.json").write_text(json.dumps({"architectures": ["BertForMaskedLM"], "model_type": "bert"}))
    with pytest.raises(
        AdapterError,
        match=r"holds BertForMaskedLM \(model_type 'bert'\); mmeval's Hugging Face "
        r"adapters read ViltForQuestionAnswering \(--kind vqa\)",
    ):
        hf_options(path=bert)


def test_bad_options_are_refused(folders, tmp_path):
    with pytest.raises(AdapterError, match="a zero-shot model needs the class names: --labels"):
        hf_options(path=folders["zero-shot"])
    with pytest.raises(AdapterError, match=r"must contain \{label\} exactly once"):
        hf_options(path=folders["zero-shot"], labels=["a", "b"], prompt="a photo of {text}")
    with pytest.raises(AdapterError, match=r"only \{text\} and \{label\} may stand in braces"):
        hf_options(path=folders["zero-shot"], labels=["a", "b"], prompt="{text} {label} {oops}")
    with pytest.raises(AdapterError, match="labels are repeated: a"):
        hf_options(path=folders["zero-shot"], labels=["a", "b", "a"])
    with pytest.raises(AdapterError, match=r"labels not among the model's 4 classes: 'purple', 'Red'"):
        hf_options(path=folders["vqa"], labels=["red", "purple", "Red"])
    with pytest.raises(AdapterError, match="prompt applies to zero-shot models"):
        hf_options(path=folders["vqa"], prompt="{text} {label}")
    with pytest.raises(AdapterError, match="image_size must be a positive multiple of the patch size 8, got 20"):
        hf_options(path=folders["vqa"], image_size=20)
    nlvr = vilt_folder(tmp_path / "nlvr", kind="classify", num_images=2)
    with pytest.raises(AdapterError, match="compares 2 images per item"):
        hf_options(path=nlvr)


def test_a_larger_image_size_keeps_the_patch_size(folders, items):
    adapter = from_folder(path=str(folders["vqa"]), image_size=64)
    adapter.load(torch.device("cpu"))
    batch = adapter.encode(items)
    image, _ = adapter.feature_groups(batch)
    assert batch.pixels.shape == (3, 3, 64, 64) and int(image.max()) == 63  # an 8x8 grid of 8-pixel patches
    with torch.no_grad():
        torch.testing.assert_close(
            adapter.head(*adapter.embed(batch), batch=batch), _own_logits(adapter, batch, items), atol=1e-5, rtol=1e-5
        )


def test_loading_is_offline_and_names_missing_weights(folders, tmp_path):
    import workers.engine.hf.loading  # noqa: F401  (sets the switch on import)

    assert os.environ["HF_HUB_OFFLINE"] == "1"
    broken = tmp_path / "no-weights"
    broken.mkdir()
    (broken / "config.json").write_text((folders["vqa"] / "config.json").read_text())
    adapter = from_folder(path=str(broken))
    with pytest.raises(OSError, match="no-weights"):
        adapter.load(torch.device("cpu"))
