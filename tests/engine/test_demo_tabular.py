"""The tabular + text demo (workers/engine/demo/tabular): deterministic data whose labels
follow the measurements, a model that learns the balcony shortcut, an adapter that keeps the
protocol, and views that show the shortcut. Margins are wide: no float difference between
CPUs crosses them. No Django."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.engine.adapter_checks import assert_ig_complete
from workers.engine.adapter import GroupInfo
from workers.engine.attribution import attribute, prepare_batch
from workers.engine.dataset import read_dataset_jsonl
from workers.engine.demo.tabular import data
from workers.engine.demo.tabular import model as plant_model
from workers.engine.demo.tabular.adapter import PlantAdapter
from workers.engine.presentation_modalities import render_modality_views, tabular_features

# The verdicts here depend on the trained demo weights: CI runs them for a second seed too.
pytestmark = pytest.mark.trained_model


@pytest.fixture(scope="session")
def plant_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cache = tmp_path_factory.mktemp("plant-cache")
    plant_model.load_or_train(cache)
    return cache


@pytest.fixture(scope="session")
def adapter(plant_cache: Path) -> PlantAdapter:
    adapter = PlantAdapter(cache_dir=plant_cache)
    adapter.load(torch.device("cpu"))
    return adapter


def test_generate_dataset_is_deterministic_and_well_formed(tmp_path: Path) -> None:
    a = data.generate_dataset(tmp_path / "a", n_items=60, seed=3).read_bytes()
    b = data.generate_dataset(tmp_path / "b", n_items=60, seed=3).read_bytes()
    assert a == b
    lines = read_dataset_jsonl(tmp_path / "a" / "plants.jsonl")
    assert len(lines) == 60
    for line in lines:
        assert set(line.item["tabular"]) == set(data.FEATURES) and line.item["label"] in data.LABELS
        assert line.item["label"] not in line.item["text"]  # the note never names the state


def test_true_labels_follow_the_measurements() -> None:
    ex = data.sample_examples(2000, seed=1, bias=data.UNBIASED)
    moisture, sun, temperature, spots = ex.features.T
    labels = np.array(ex.true_labels)
    assert (moisture[labels == "thirsty"] < 28).mean() > 0.99
    assert (sun[labels == "scorched"] > 8).mean() > 0.99 and (temperature[labels == "scorched"] > 26).mean() > 0.99
    assert (spots[labels == "diseased"] > 7).mean() > 0.99
    assert ex.labels == ex.true_labels


def test_the_shortcut_lives_in_the_training_labels_only() -> None:
    biased = data.sample_examples(4000, seed=2, bias=data.TRAIN_BIAS)
    unbiased = data.sample_examples(4000, seed=2, bias=data.UNBIASED)
    assert biased.notes == unbiased.notes and np.array_equal(biased.features, unbiased.features)
    balcony = np.array(["balcony" in n for n in biased.notes])
    assert 0.2 < balcony.mean() < 0.3
    scorched = np.array([label == "scorched" for label in biased.labels])
    assert scorched[balcony].mean() > 0.85  # 0.85 + 0.15 / 4 expected
    assert scorched[~balcony].mean() < 0.3
    assert unbiased.labels == unbiased.true_labels


def test_model_learns_the_table_and_the_shortcut(plant_cache: Path) -> None:
    model = plant_model.load_or_train(plant_cache)
    metrics = plant_model.evaluate(model)
    assert metrics["indoor"] > 0.9  # measured 0.999
    assert metrics["balcony_scorched"] > 0.7  # measured 1.0: the Bayes margin is 0.7


def test_training_is_deterministic_and_cached_atomically(plant_cache: Path) -> None:
    config = plant_model.TrainConfig()
    cached = plant_model.load_or_train(plant_cache)
    again = plant_model.train_plant_model(config=config, measure=False)
    for key, value in cached.state_dict().items():
        assert torch.equal(value, again.state_dict()[key]), key
    assert plant_model.weights_path(plant_cache, config).exists()
    assert not list(plant_cache.glob("*.tmp"))


def _items(tmp_path: Path, n: int = 40) -> list[dict]:
    path = data.generate_dataset(tmp_path, n_items=n, seed=0)
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_adapter_keeps_the_protocol(adapter: PlantAdapter, tmp_path: Path) -> None:
    items = _items(tmp_path)[:6]
    batch = adapter.encode(items)
    table, text = adapter.embed(batch)
    assert table.shape == (6, 4) and text.shape[:2] == (6, plant_model.MAX_TOKENS)
    logits = adapter.head(table, text, batch=batch)
    tiled = adapter.head(torch.cat([table] * 3), torch.cat([text] * 3), batch=batch)
    assert torch.allclose(tiled[:6], logits, atol=1e-6) and torch.allclose(tiled[12:], logits, atol=1e-6)
    groups = adapter.describe_groups(batch)
    assert [g.text for g in groups[0][0]] == list(data.FEATURES)
    p = prepare_batch(adapter, batch)
    assert_ig_complete(p, logits.argmax(dim=1))
    with pytest.raises(ValueError, match="p9"):
        adapter.encode([{"id": "p9", "tabular": {"x": 1}, "text": "hi"}])


def test_explanations_show_the_balcony_word(adapter: PlantAdapter, tmp_path: Path) -> None:
    """For balcony plants that are not scorched, the model answers "scorched", and the note's
    "balcony" is that answer's strongest supporting word."""
    items = [i for i in _items(tmp_path, 200) if "balcony" in i["text"] and i["label"] != "scorched"][:6]
    assert len(items) >= 4
    batch = adapter.encode(items)
    scorched = plant_model.LABELS.index("scorched")
    with torch.no_grad():
        assert (adapter.head(*adapter.embed(batch), batch=batch).argmax(dim=1) == scorched).all()
    results = attribute(adapter, batch, method="integrated_gradients", targets=[scorched] * len(items))
    for item, words, result in zip(items, batch.tokens, results):
        scores = result.group_scores["text"][: len(words)]
        assert words[int(np.argmax(scores))] == "balcony", (item["text"], scores)
        assert result.modality_totals["text"] > 0


def test_table_view_is_drawn_per_candidate_on_one_scale(adapter: PlantAdapter, tmp_path: Path) -> None:
    item = _items(tmp_path, 4)[0]
    batch = adapter.encode([item] * 4)
    results = attribute(adapter, batch, method="integrated_gradients", targets=[0, 1, 2, 3])
    views = render_modality_views(item=item, attributions=results, groups=adapter.describe_groups(batch)[0])
    assert all(set(v.pngs) == {"table"} for v in views)
    assert len({json.dumps(v.colour_scales, sort_keys=True) for v in views}) == 1
    expected = max(float(np.max(np.abs(r.group_scores["tabular"]))) for r in results)
    assert views[0].colour_scales["tabular"]["scale"] == pytest.approx(expected)
    assert (
        render_modality_views(
            item=item, attributions=results, groups=adapter.describe_groups(batch)[0], views=["tokens"]
        )[0].pngs
        == {}
    )


def test_tabular_features_pair_scores_with_names_in_name_order() -> None:
    groups = [GroupInfo(0, "feature", text="b"), GroupInfo(1, "feature", text="a"), GroupInfo(2, "pad", hidden=True)]
    names, values, scores = tabular_features({"b": 2.0, "a": 1.0}, groups, [0.5, -0.5, 9.0])
    assert names == ["a", "b"] and values == [1.0, 2.0] and scores.tolist() == [-0.5, 0.5]
    names, values, scores = tabular_features({"z": 1.0, "y": 3.0}, [], [0.1, 0.2])  # no names: the object's order
    assert names == ["y", "z"] and values == [3.0, 1.0] and scores.tolist() == [0.2, 0.1]
