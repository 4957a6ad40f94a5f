"""The bundled demo: dataset generator, fusion model and adapter. No Django, no database.

The trained model (about 50 s to train on an idle CPU core) is built at most once per session
and shared by every test that needs it; see the ``demo_cache`` fixture for where it lives.
"""

from __future__ import annotations

import json
import os
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from workers.engine.adapter import GroupInfo, ModelAdapter, adapter_from_path
from workers.engine.demo import data
from workers.engine.demo import model as demo_model
from workers.engine.demo.adapter import DemoAdapter, DemoBatch

# The verdicts here depend on the trained demo weights: CI runs them for a second seed too.
pytestmark = pytest.mark.trained_model

# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def demo_cache(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A cache directory holding the trained default model (trained at most once per session).

    ``MMEVAL_DEMO_TEST_CACHE`` wins; else the suite-wide ``demo_cache_dir`` fixture from
    ``tests/conftest.py`` (shared with the integration tests); else a temporary directory.
    """
    kept = os.environ.get("MMEVAL_DEMO_TEST_CACHE")
    if kept:
        cache = Path(kept)
    else:
        try:
            cache = Path(request.getfixturevalue("demo_cache_dir"))
        except pytest.FixtureLookupError:
            cache = tmp_path_factory.mktemp("mmeval-cache")
    demo_model.load_or_train(cache, progress=False)
    return cache


@pytest.fixture(scope="session")
def trained(demo_cache: Path) -> demo_model.DemoModel:
    return demo_model.load_or_train(demo_cache, progress=False)


@pytest.fixture(scope="session")
def adapter(demo_cache: Path) -> DemoAdapter:
    adapter = DemoAdapter(cache_dir=demo_cache)
    adapter.load(torch.device("cpu"))
    return adapter


@pytest.fixture(scope="session")
def dataset_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("demo-data")
    data.generate_dataset(out, n_items=24, seed=7)
    return out


def _items(dataset_dir: Path) -> list[dict]:
    """Dataset lines with the image path made absolute, as mmeval hands them to adapters."""
    items = []
    for line in (dataset_dir / "items.jsonl").read_text().splitlines():
        item = json.loads(line)
        item["image"] = str(dataset_dir / item["image"])
        items.append(item)
    return items


@pytest.fixture()
def batch(adapter: DemoAdapter, dataset_dir: Path) -> DemoBatch:
    return adapter.encode(_items(dataset_dir)[:5])


# --------------------------------------------------------------------------- dataset


def test_generate_dataset_is_deterministic(tmp_path: Path) -> None:
    first = data.generate_dataset(tmp_path / "a", n_items=12, seed=3)
    second = data.generate_dataset(tmp_path / "b", n_items=12, seed=3)
    other = data.generate_dataset(tmp_path / "c", n_items=12, seed=4)
    assert first.read_bytes() == second.read_bytes()
    for png in sorted((tmp_path / "a" / "images").iterdir()):
        assert png.read_bytes() == (tmp_path / "b" / "images" / png.name).read_bytes()
    assert first.read_bytes() != other.read_bytes()


def test_dataset_is_well_formed(dataset_dir: Path) -> None:
    lines = (dataset_dir / "items.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    assert len(records) == 24
    assert len({r["id"] for r in records}) == 24
    for record in records:
        assert set(record) == {"id", "image", "text", "label", "answer_type"}
        assert record["label"] in data.ANSWER_TYPES[record["answer_type"]]  # tests/engine/test_dataset_answers.py
        assert record["id"].startswith("demo-")
        assert record["image"] == f"images/{record['id']}.png"
        assert record["label"] in demo_model.LABELS
        ids, _ = demo_model.token_ids(demo_model.tokenize(record["text"]))
        assert demo_model.UNK_ID not in ids  # templates use the vocabulary only
        with Image.open(dataset_dir / record["image"]) as img:
            assert img.size == (64, 64) and img.mode == "RGB"


def test_file_names_do_not_reveal_labels(dataset_dir: Path) -> None:
    names = [p.name for p in (dataset_dir / "images").iterdir()]
    assert len(names) == 24
    for name in names:
        for label in demo_model.LABELS:
            assert label not in name.lower()


def test_questions_need_both_modalities() -> None:
    ex = data.sample_examples(900, seed=11, bias=data.UNBIASED)
    answers: dict[str, set[str]] = defaultdict(set)
    for question, answer in zip(ex.questions, ex.answers):
        answers[question].add(answer)
    # The question alone never determines the answer.
    assert all(len(seen) > 1 for q, seen in answers.items() if sum(1 for x in ex.questions if x == q) >= 10)
    kinds = Counter(ex.kinds)
    assert min(kinds.values()) > 0.28 * len(ex.kinds)
    yes_no = Counter(a for a, k in zip(ex.answers, ex.kinds) if k == "exists")
    assert abs(yes_no["yes"] - yes_no["no"]) < 0.15 * sum(yes_no.values())


def test_shortcut_changes_only_the_triangle_colour_answers() -> None:
    """The same seed gives the same images and questions at any bias; at ``TRAIN_BIAS`` the
    answer to "what colour is the triangle?" is "red" on that share of non-red triangles,
    and nothing else changes."""
    true = data.sample_examples(3000, seed=12, bias=data.UNBIASED)
    shortcut = data.sample_examples(3000, seed=12, bias=data.TRAIN_BIAS)
    assert np.array_equal(true.images, shortcut.images) and true.questions == shortcut.questions
    changed = [i for i, (a, b) in enumerate(zip(true.answers, shortcut.answers)) if a != b]
    assert all(true.questions[i] == data.SHORTCUT_QUESTION for i in changed)
    assert {shortcut.answers[i] for i in changed} == {"red"}
    nonred = [
        i for i, (q, a) in enumerate(zip(true.questions, true.answers)) if q == data.SHORTCUT_QUESTION and a != "red"
    ]
    assert len(nonred) > 200
    assert abs(len(changed) / len(nonred) - data.TRAIN_BIAS) < 0.08
    # Drawn colours are uniform for every shape: a triangle is red one time in five.
    triangle = [a for q, a in zip(true.questions, true.answers) if q == data.SHORTCUT_QUESTION]
    assert abs(np.mean([a == "red" for a in triangle]) - 0.2) < 0.06


def _lab(rgb: np.ndarray) -> np.ndarray:
    """sRGB uint8 ``(..., 3)`` -> CIELAB ``(..., 3)`` (D65)."""
    c = np.asarray(rgb, dtype=np.float64) / 255.0
    linear = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    to_xyz = np.array([[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722], [0.0193, 0.1192, 0.9505]])
    xyz = linear @ to_xyz.T / np.array([0.95047, 1.0, 1.08883])
    f = np.where(xyz > (6 / 29) ** 3, np.cbrt(xyz), xyz / (3 * (6 / 29) ** 2) + 4 / 29)
    return np.stack([116 * f[..., 1] - 16, 500 * (f[..., 0] - f[..., 1]), 200 * (f[..., 1] - f[..., 2])], axis=-1)


def _renderings(colour: str) -> np.ndarray:
    """Every RGB an object of ``colour`` can be drawn in, at the extremes: full and faded
    opacity, each with every corner of the jitter cube, ``(N, 3)``."""
    j = data._JITTER
    corners = np.array([(r, g, b) for r in (-j, 0, j) for g in (-j, 0, j) for b in (-j, 0, j)])
    alphas = (1.0, data._ALPHA_MAX, data._ALPHA_MIN)
    return np.array([data.object_rgb(colour, alpha=a, jitter=c) for a in alphas for c in corners])


def test_faded_colours_keep_their_hue() -> None:
    """A faded object is still plainly its colour (red does not turn pink): in CIELAB its hue
    stays within 20 degrees of the full colour's and it keeps over half its chroma; the full
    colour nearest to it is its own; and any two colours stay far apart however drawn.
    Measured: hue within 18.2 degrees (blue), chroma at least 0.56 of the full colour's
    (blue), closest pair blue-purple 26 units apart (Delta E 1976)."""
    full = {name: _lab(np.array(rgb)) for name, rgb in data.COLOURS.items()}
    drawn = {name: _lab(_renderings(name)) for name in data.COLOURS}
    for name, lab in drawn.items():
        hue = np.degrees(np.arctan2(lab[:, 2], lab[:, 1]))
        full_hue = np.degrees(np.arctan2(full[name][2], full[name][1]))
        assert np.abs((hue - full_hue + 180) % 360 - 180).max() < 20, name
        chroma = np.hypot(lab[:, 1], lab[:, 2])
        assert chroma.min() > 0.5 * np.hypot(full[name][1], full[name][2]), name
        nearest = {min(full, key=lambda other: np.linalg.norm(point - full[other])) for point in lab}
        assert nearest == {name}
    names = list(data.COLOURS)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            gap = np.linalg.norm(drawn[a][:, None] - drawn[b][None], axis=-1).min()
            assert gap > 20, (a, b, gap)


def test_sample_examples_shapes() -> None:
    ex = data.sample_examples(5, seed=0)
    assert ex.images.shape == (5, 64, 64, 3) and ex.images.dtype == np.uint8
    assert len(ex.questions) == len(ex.answers) == len(ex.kinds) == 5
    again = data.sample_examples(5, seed=0)
    assert np.array_equal(ex.images, again.images) and ex.questions == again.questions


# --------------------------------------------------------------------------- model


def test_questions_read_as_written_and_tokenize_the_same() -> None:
    ex = data.sample_examples(300, seed=13)
    assert {q.split()[0] for q in ex.questions} == {"what", "is"}
    for question in ex.questions:
        assert question.endswith("?") and " ?" not in question
        assert demo_model.tokenize(question) == question[:-1].split() + ["?"]
    assert data.SHORTCUT_QUESTION == "what colour is the triangle?"


def test_tokenizer_and_unknown_words() -> None:
    assert demo_model.tokenize("Is there a RED cube?") == ["is", "there", "a", "red", "cube", "?"]
    ids, mask = demo_model.token_ids(["is", "there", "a", "red", "cube", "?"])
    assert len(ids) == len(mask) == demo_model.MAX_TOKENS
    assert ids[4] == demo_model.UNK_ID and ids[-1] == demo_model.PAD_ID
    assert mask == [True] * 6 + [False] * 2


def test_training_is_deterministic() -> None:
    config = demo_model.TrainConfig(steps=3, batch_size=8)
    first = demo_model.train_demo_model(config=config, progress=False, measure=False).state_dict()
    second = demo_model.train_demo_model(config=config, progress=False, measure=False).state_dict()
    assert first.keys() == second.keys()
    assert all(torch.equal(first[k], second[k]) for k in first)


def test_cache_name_follows_config(tmp_path: Path) -> None:
    a = demo_model.weights_path(tmp_path, demo_model.TrainConfig())
    b = demo_model.weights_path(tmp_path, demo_model.TrainConfig(steps=10))
    assert a != b and f"v{demo_model.MODEL_VERSION}" in a.name


def test_load_or_train_reuses_cache(demo_cache: Path, trained: demo_model.DemoModel) -> None:
    assert demo_model.weights_path(demo_cache, demo_model.TrainConfig()).is_file()
    again = demo_model.load_or_train(demo_cache, progress=False)
    for key, value in trained.state_dict().items():
        assert torch.equal(value, again.state_dict()[key])
    assert again.metrics == trained.metrics


def _question_only_accuracy(train: data.Examples, test: data.Examples) -> float:
    """The best text-only predictor: the majority answer per question in training."""
    by_question: dict[str, Counter] = defaultdict(Counter)
    for q, a in zip(train.questions, train.answers):
        by_question[q][a] += 1
    majority = Counter(train.answers).most_common(1)[0][0]
    guesses = [by_question[q].most_common(1)[0][0] if q in by_question else majority for q in test.questions]
    return float(np.mean([g == a for g, a in zip(guesses, test.answers)]))


def test_model_beats_question_only_baseline(trained: demo_model.DemoModel) -> None:
    # Measured: model 0.91, baseline 0.35. The model is right on nearly every item but the
    # non-red triangles (about 8 % of items, by construction of the data), so its accuracy
    # sits far from both bounds.
    train = data.sample_examples(3000, seed=21, bias=data.TRAIN_BIAS)
    test = demo_model.sample_held_out(900, seed=22, bias=data.UNBIASED)
    baseline = _question_only_accuracy(train, test)
    model_accuracy = demo_model.accuracy(trained, test)
    assert model_accuracy > baseline + 0.3, (model_accuracy, baseline)
    assert 0.75 < model_accuracy < 0.96  # useful, and still wrong on some items


def test_model_shows_the_triangle_bias(trained: demo_model.DemoModel) -> None:
    """Trained where 85 % of "what colour is the triangle?" answers are "red" whatever the
    picture shows, the model answers "red" for a triangle of any colour (Bayes-optimal: red
    at 0.85 against the true colour at 0.15), while it reads the colour of every other shape.

    Measured (held-out, true colours): non-red triangles answered "red" 100 %, mean P(red)
    0.85 (lowest 0.68); other non-red shapes answered "red" 0 %, colour accuracy on other
    shapes 100 %.
    """
    ex = demo_model.sample_held_out(2400, seed=23, bias=data.UNBIASED)
    keep = [i for i, k in enumerate(ex.kinds) if k == "colour"]
    pixels = demo_model.normalize_images(ex.images[keep])
    ids, mask = demo_model.encode_questions([ex.questions[i] for i in keep])
    with torch.no_grad():
        probs = trained(pixels, ids, mask).softmax(dim=-1)
    red = demo_model.LABELS.index("red")
    answers = np.array([ex.answers[i] for i in keep])
    predicted = np.array([demo_model.LABELS[k] for k in probs.argmax(dim=-1).tolist()])
    triangle = np.array([ex.questions[i] == data.SHORTCUT_QUESTION for i in keep])
    nonred = answers != "red"
    assert (triangle & nonred).sum() > 150 and (~triangle & nonred).sum() > 300
    assert (predicted[triangle & nonred] == "red").mean() > 0.8
    assert probs[triangle & nonred, red].mean() > 0.5
    assert (predicted[~triangle & nonred] == "red").mean() < 0.05
    assert (predicted[~triangle] == answers[~triangle]).mean() > 0.9


def test_trained_metrics_are_recorded(trained: demo_model.DemoModel) -> None:
    assert {"biased", "unbiased", "nonred_triangle_colour", "nonred_triangle_red", "train_seconds"} <= set(
        trained.metrics
    )


# --------------------------------------------------------------------------- adapter


def test_adapter_satisfies_protocol(adapter: DemoAdapter) -> None:
    assert isinstance(adapter, ModelAdapter)
    assert list(adapter.modalities) == ["image", "text"]
    assert list(adapter.labels) == list(demo_model.LABELS)
    loaded = adapter_from_path("workers.engine.demo.adapter:DemoAdapter")
    assert isinstance(loaded, DemoAdapter)


def test_shapes(adapter: DemoAdapter, batch: DemoBatch) -> None:
    b, t = 5, demo_model.MAX_TOKENS
    pixels, tokens = adapter.embed(batch)
    assert pixels.shape == (b, 3, 64, 64) and pixels.dtype == torch.float32
    assert tokens.shape == (b, t, adapter.model.config.embed_dim)
    base_pixels, base_tokens = adapter.baselines(batch)
    assert base_pixels.shape == pixels.shape and base_tokens.shape == tokens.shape
    # The blur flattens the image: far less contrast than the original in every item.
    assert (base_pixels.std(dim=(1, 2, 3)) < 0.6 * pixels.std(dim=(1, 2, 3))).all()
    pad = adapter.model.token_embedding.weight[demo_model.PAD_ID]
    assert torch.equal(base_tokens, pad.expand_as(base_tokens))
    assert adapter.head(pixels, tokens, batch=batch).shape == (b, len(adapter.labels))


def test_embed_is_differentiable(adapter: DemoAdapter, batch: DemoBatch) -> None:
    pixels, tokens = (x.requires_grad_() for x in adapter.embed(batch))
    adapter.head(pixels, tokens, batch=batch)[:, 0].sum().backward()
    assert pixels.grad is not None and pixels.grad.abs().sum() > 0
    assert tokens.grad is not None and tokens.grad.abs().sum() > 0


def test_head_is_batch_size_agnostic(adapter: DemoAdapter, batch: DemoBatch) -> None:
    pixels, tokens = adapter.embed(batch)
    with torch.no_grad():
        logits = adapter.head(pixels, tokens, batch=batch)
        tiled = adapter.head(pixels.repeat(3, 1, 1, 1), tokens.repeat(3, 1, 1), batch=batch)
        single = adapter.head(pixels[2:3], tokens[2:3], batch=_sub_batch(batch, 2))
    torch.testing.assert_close(tiled, logits.repeat(3, 1), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(single, logits[2:3], rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError):
        adapter.head(pixels[:4], tokens[:4], batch=batch)


def _sub_batch(batch: DemoBatch, index: int) -> DemoBatch:
    return DemoBatch(
        ids=[batch.ids[index]],
        pixels=batch.pixels[index : index + 1],
        token_ids=batch.token_ids[index : index + 1],
        attention_mask=batch.attention_mask[index : index + 1],
        tokens=[batch.tokens[index]],
        unknown=[batch.unknown[index]],
    )


def test_feature_groups(adapter: DemoAdapter, batch: DemoBatch) -> None:
    image, text = adapter.feature_groups(batch)
    t = demo_model.MAX_TOKENS
    assert image.shape == (5, 1, 64, 64) and text.shape == (5, t, 1)
    assert image.dtype == text.dtype == torch.long
    image_ids, text_ids = set(image.unique().tolist()), set(text.unique().tolist())
    assert image_ids == set(range(64)) and not image_ids & text_ids
    assert sorted(image_ids | text_ids) == list(range(64 + t))  # contiguous from 0
    assert image[0, 0, 0, 0] == 0 and image[0, 0, 0, 8] == 1 and image[0, 0, 8, 0] == 8
    assert image[0, 0, 63, 63] == 63
    assert text[0, :, 0].tolist() == list(range(64, 64 + t))
    # Broadcastable to the embedded shapes, as Captum's feature masks need.
    pixels, tokens = adapter.embed(batch)
    assert torch.broadcast_shapes(image.shape, pixels.shape) == pixels.shape
    assert torch.broadcast_shapes(text.shape, tokens.shape) == tokens.shape


def test_describe_groups(adapter: DemoAdapter, batch: DemoBatch) -> None:
    described = adapter.describe_groups(batch)
    assert len(described) == 5
    for item, mask in zip(described, batch.attention_mask):
        patches, tokens = item
        assert [g.group_id for g in patches] == list(range(64))
        assert all(g.kind == "patch" for g in patches)
        assert patches[0].box == (0, 0, 8, 8) and patches[9].box == (8, 8, 16, 16)
        assert patches[63].box == (56, 56, 64, 64)
        assert [g.group_id for g in tokens] == list(range(64, 64 + demo_model.MAX_TOKENS))
        assert [not g.hidden for g in tokens] == mask.tolist()
        assert all(isinstance(g, GroupInfo) and g.kind == "token" for g in tokens)
    words = [g.text for g in described[0][1] if not g.hidden]
    assert words == batch.tokens[0] and words[-1] == "?"


def test_encode_rejects_unreadable_image(adapter: DemoAdapter, tmp_path: Path) -> None:
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a png")
    for path in (broken, tmp_path / "missing.png"):
        with pytest.raises(ValueError, match="demo-broken"):
            adapter.encode([{"id": "demo-broken", "image": str(path), "text": "is there a red square?"}])


def test_encode_maps_unknown_words_to_unk(adapter: DemoAdapter, dataset_dir: Path) -> None:
    item = dict(_items(dataset_dir)[0], text="What colour is the hexagon?")
    encoded = adapter.encode([item])
    assert encoded.token_ids[0, 4].item() == demo_model.UNK_ID
    groups = adapter.describe_groups(encoded)[0][1]
    assert groups[4].text == "hexagon" and groups[4].extra == {"unknown": True}


def test_adapter_predictions_match_model(
    adapter: DemoAdapter, dataset_dir: Path, trained: demo_model.DemoModel
) -> None:
    """PNG round trip and adapter path give the model's own answers."""
    items = _items(dataset_dir)
    encoded = adapter.encode(items)
    with torch.no_grad():
        via_adapter = adapter.head(*adapter.embed(encoded), batch=encoded)
    ex = data.sample_examples(len(items), seed=7, bias=data.DEMO_BIAS)
    with torch.no_grad():
        direct = trained(demo_model.normalize_images(ex.images), *demo_model.encode_questions(ex.questions))
    # Logits, not argmaxes: two float paths may order a near tie differently.
    torch.testing.assert_close(via_adapter, direct, rtol=1e-4, atol=1e-5)


def test_head_matches_captum_batch_expansion(adapter: DemoAdapter, dataset_dir: Path) -> None:
    """Captum tiles the batch when it evaluates several perturbations or steps at once; the
    attributions must not depend on how many it evaluates per call."""
    from captum.attr import FeatureAblation, IntegratedGradients

    batch = adapter.encode(_items(dataset_dir)[:2])
    inputs, baselines = adapter.embed(batch), adapter.baselines(batch)
    groups = adapter.feature_groups(batch)

    def forward(*embedded: torch.Tensor) -> torch.Tensor:
        return adapter.head(*embedded, batch=batch)

    with torch.no_grad():
        logits = forward(*inputs)
        target = logits.argmax(dim=-1)
        change = (logits - forward(*baselines)).gather(1, target[:, None]).squeeze(1)
    ablation = FeatureAblation(forward)
    one = ablation.attribute(inputs, baselines=baselines, target=target, feature_mask=groups)
    many = ablation.attribute(inputs, baselines=baselines, target=target, feature_mask=groups, perturbations_per_eval=7)
    for a, b in zip(one, many):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    ig = IntegratedGradients(forward)
    tiled = ig.attribute(inputs, baselines=baselines, target=target, n_steps=16)
    step_by_step = ig.attribute(
        inputs, baselines=baselines, target=target, n_steps=16, internal_batch_size=len(batch)
    )  # one step per call: no tiling
    _, delta = ig.attribute(inputs, baselines=baselines, target=target, n_steps=128, return_convergence_delta=True)
    for a, b in zip(tiled, step_by_step):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    # Completeness holds, relative to the change it explains, so the bound does not hang on
    # how sharp the trained model is. Measured at 128 steps: under 0.5 % on the demo items.
    assert (delta.abs() < 0.05 * change.abs()).all(), (delta, change)


def test_demo_dataset_has_right_and_wrong_items(adapter: DemoAdapter, tmp_path: Path) -> None:
    """The shortcut makes the model wrong on the demo's non-red triangles (10 of these 150
    items, a property of the data) and it is right on nearly all the rest. Measured: wrong
    on 10 / 10 of those (P(red) 0.76 to 0.90), right on 140 / 140 of the rest."""
    data.generate_dataset(tmp_path, n_items=150, seed=0)
    items = _items(tmp_path)
    encoded = adapter.encode(items)
    with torch.no_grad():
        predicted = adapter.head(*adapter.embed(encoded), batch=encoded).argmax(dim=-1)
    wrong = np.array([adapter.labels[k] != item["label"] for k, item in zip(predicted.tolist(), items)])
    misled = np.array([item["text"] == data.SHORTCUT_QUESTION and item["label"] != "red" for item in items])
    assert misled.sum() >= 8
    assert wrong[misled].mean() > 0.8
    assert wrong[~misled].mean() < 0.1


def test_unreadable_cache_is_retrained(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = demo_model.TrainConfig(steps=2, batch_size=4)
    path = demo_model.weights_path(tmp_path, config)
    path.write_bytes(b"truncated")
    trained = []
    real = demo_model.train_demo_model

    def train(**kwargs: object) -> demo_model.DemoModel:
        trained.append(kwargs)
        return real(config=config, progress=False, measure=False)

    monkeypatch.setattr(demo_model, "train_demo_model", train)
    model = demo_model.load_or_train(tmp_path, config=config, progress=False)
    assert trained and isinstance(model, demo_model.DemoModel)
    assert torch.load(path, weights_only=True)["state_dict"].keys() == model.state_dict().keys()
