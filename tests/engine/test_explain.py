"""The top-level engine API: predictions, explanations per item, serialisation, batch-size
autotuning and the command line."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
import torch

from tests.builders.toy_adapters import AdditiveAdapter, ImageTabularAdapter, NonFiniteAdapter
from workers.engine.attribution import NonFiniteError, attribute, prepare_batch
from workers.engine.explain import (
    INTERACTIONS,
    ItemExplanation,
    ItemFailure,
    explain_items,
    explain_items_iter,
    main,
    measure_best_batch_size,
    predict,
)

SEGMENTS = [[0, 0, 1, 1], [0, 0, 1, 1], [2, 2, 2, 2], [2, 2, 2, 2]]


def _items(n: int = 5):
    adapter = ImageTabularAdapter()
    items = adapter.make_items(n, seed=3)
    items[1]["segments"] = SEGMENTS
    items[2]["present"] = [1, 1, 0, 1, 0]
    return adapter, items


def test_predict_matches_the_head():
    adapter, items = _items()
    preds = predict(adapter, items, batch_size=2)
    batch = adapter.encode(items)
    p = prepare_batch(adapter, batch)
    with torch.no_grad():
        logits = adapter.head(*p.inputs, batch=batch).double()
    probs = torch.softmax(logits, dim=1)
    assert [x.item_id for x in preds] == [it["id"] for it in items]
    for k, pred in enumerate(preds):
        assert pred.label_index == int(logits[k].argmax())
        assert pred.label == adapter.labels[pred.label_index]
        np.testing.assert_allclose(pred.probabilities, probs[k].numpy(), atol=1e-6)
        assert json.loads(json.dumps(pred.to_json()))["label"] == pred.label


def test_explain_items_runs_each_method_and_interaction_per_target():
    adapter, items = _items()
    seen = []
    targets = [0, [1, 2], "predicted", "high", None]
    results = explain_items(
        adapter,
        items,
        methods=["integrated_gradients", "feature_ablation"],
        interactions=list(INTERACTIONS),
        targets=targets,
        batch_size=3,
        method_options={"integrated_gradients": {"n_steps": 16}, "integrated_hessians": {"n_steps": 4}},
        progress=lambda done, total: seen.append((done, total)),
    )
    assert seen == [(3, 5), (5, 5)]
    preds = predict(adapter, items)
    want_targets = [[0], [1, 2], [preds[2].label_index], [2], [preds[4].label_index]]
    assert [r.targets for r in results] == want_targets
    for res, want, item in zip(results, want_targets, items):
        assert res.item_id == item["id"] and res.prediction.label_index == preds[res.position].label_index
        assert [a.target for a in res.attributions["integrated_gradients"]] == want
        assert [a.target for a in res.attributions["feature_ablation"]] == want
        assert [m.target for m in res.modality_interactions] == want
        assert set(res.cross_interactions) == {"second_order", "integrated_hessians", "perturbation"}
        for _method, mats in res.cross_interactions.items():
            assert [m.target for m in mats] == want
        # describe_groups of the item, in group-ID order, matching the attribution's groups
        ig = res.attributions["integrated_gradients"][0]
        assert ig.options["n_steps"] == 16
        for m_idx, m in enumerate(res.modalities):
            assert [g["group_id"] for g in res.groups[m_idx]] == list(ig.group_ids[m])
    assert results[1].groups[0][0]["kind"] == "patch" and len(results[1].groups[0]) == 3
    assert results[1].attribution("feature_ablation", 2).target == 2


def test_explanations_equal_direct_calls_on_the_same_batch():
    adapter, items = _items(4)
    results = explain_items(adapter, items, methods=["integrated_gradients", "lime"], targets="all", batch_size=4)
    batch = adapter.encode(items)
    for target in range(3):
        direct = attribute(adapter, batch, method="integrated_gradients", targets=target)
        for res, d in zip(results, direct):
            np.testing.assert_allclose(
                res.attribution("integrated_gradients", target).group_scores["image"],
                d.group_scores["image"],
                atol=1e-6,
            )
    # lime (per-example) runs on one-item batches, so it does not depend on the batching
    for k in (0, 3):
        single = attribute(adapter, adapter.encode([items[k]]), method="lime", targets=1, seed=0)[0]
        np.testing.assert_allclose(
            results[k].attribution("lime", 1).group_scores["tabular"], single.group_scores["tabular"], atol=1e-6
        )


def test_results_serialise_to_json_and_npz():
    adapter, items = _items(3)
    results = explain_items(adapter, items, methods=["saliency"], interactions=["second_order"], targets="all")
    text = json.dumps([r.to_json() for r in results])
    data = json.loads(text)
    assert data[1]["attributions"]["saliency"][2]["target"] == 2
    assert data[1]["cross_interactions"]["second_order"][0]["modalities"] == ["image", "tabular"]
    arrays = {}
    for r in results:
        arrays.update(r.to_arrays(prefix=f"{r.position}/"))
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    buffer.seek(0)
    loaded = np.load(buffer)
    assert loaded["1/attr/saliency/t2/image/map"].shape == (4, 4)
    assert loaded["1/cross/second_order/t0/matrix"].shape == (3, 3)
    np.testing.assert_array_equal(loaded["0/targets"], [0, 1, 2])


def test_explain_items_rejects_bad_arguments():
    adapter, items = _items(3)
    items = items[:2]
    with pytest.raises(ValueError, match="unknown attribution method"):
        explain_items(adapter, items, methods=["gradcam"])
    with pytest.raises(ValueError, match="unknown interaction"):
        explain_items(adapter, items, methods=[], interactions=["emap"])
    with pytest.raises(ValueError, match="target entries for 2 items"):
        explain_items(adapter, items, targets=[0])
    with pytest.raises(ValueError, match="not one of the adapter's labels"):
        explain_items(adapter, items, targets=["low", "huge"])


def test_non_finite_model_raises_through_the_api():
    adapter = NonFiniteAdapter("inf")
    items = adapter.make_items(3)
    items[0]["poison"] = True
    with pytest.raises(NonFiniteError, match=r"^item\(s\) 'it0': "):
        predict(adapter, items)
    with pytest.raises(NonFiniteError, match=r"^item\(s\) 'it0' \(line 4\): "):
        predict(adapter, items, lines={"it0": 4})
    with pytest.raises(NonFiniteError):
        explain_items(adapter, items, methods=["feature_ablation"], targets=0)


def test_a_non_finite_error_names_the_dataset_line_when_given():
    adapter = NonFiniteAdapter("nan")
    items = adapter.make_items(4)
    items[3]["poison"] = True
    with pytest.raises(NonFiniteError) as raised:
        explain_items(adapter, items, methods=["saliency"], batch_size=2, lines={"it3": 7})
    assert str(raised.value).startswith("item(s) 'it3' (line 7): adapter.head returned NaN/Inf logits")


def test_a_non_finite_error_names_the_item_by_id_and_position_not_by_batch_index():
    adapter = NonFiniteAdapter("nan")
    items = adapter.make_items(4)
    items[3]["poison"] = True  # batch index 1 of the second batch of two
    with pytest.raises(NonFiniteError) as raised:
        explain_items(adapter, items, methods=["saliency"], batch_size=2)
    assert str(raised.value) == (
        "item(s) 'it3' (position 3): adapter.head returned NaN/Inf logits during "
        "predict (1 of 2 rows); refusing to compute scores from them"
    )


class _NanWhenPerturbed(NonFiniteAdapter):
    """Finite predictions; NaN logits for poisoned items once the head sees perturbed rows
    (more rows than items), so only an attribution method fails."""

    def logits(self, a, b, *, batch):
        out = super().logits(a, b, batch={**batch, "poison": torch.zeros_like(batch["poison"])})
        if a.shape[0] == batch["n"]:
            return out
        poison = self.tile(batch["poison"], a.shape[0])
        return torch.where(poison[:, None], torch.full_like(out, float("nan")), out)


def test_a_per_example_method_names_the_item_of_the_whole_batch():
    """Lime runs on one-item batches; its error must still name the item, not "batch item 0"."""
    adapter = _NanWhenPerturbed()
    items = adapter.make_items(3)
    items[1]["poison"] = True
    with pytest.raises(NonFiniteError) as raised:
        explain_items(adapter, items, methods=["lime"], batch_size=3, method_options={"lime": {"n_samples": 8}})
    assert str(raised.value).startswith("item(s) 'it1' (position 1): adapter.head returned NaN/Inf logits during lime")


def test_keep_going_isolates_the_failing_item_and_keeps_the_others():
    adapter = NonFiniteAdapter("inf")
    items = adapter.make_items(5)
    items[2]["poison"] = True
    progress: list[tuple[int, int]] = []
    results = list(
        explain_items_iter(
            adapter,
            items,
            methods=["saliency", "integrated_gradients"],
            batch_size=2,
            keep_going=True,
            progress=lambda d, n: progress.append((d, n)),
        )
    )
    assert [type(r) for r in results] == [
        ItemExplanation,
        ItemExplanation,
        ItemFailure,
        ItemExplanation,
        ItemExplanation,
    ]
    failure = results[2]
    assert (failure.item_id, failure.position) == ("it2", 2)
    assert failure.error == (
        "NonFiniteError: adapter.head returned NaN/Inf logits during predict (1 of 1 rows); "
        "refusing to compute scores from them"
    )
    assert "Traceback (most recent call last)" in failure.traceback
    assert progress == [(2, 5), (4, 5), (5, 5)]
    good = [it for k, it in enumerate(items) if k != 2]
    want = explain_items(adapter, good, methods=["saliency", "integrated_gradients"], batch_size=2)
    got = [r for r in results if isinstance(r, ItemExplanation)]
    assert [r.position for r in got] == [0, 1, 3, 4]
    for res, ref in zip(got, want):
        for method in ("saliency", "integrated_gradients"):
            np.testing.assert_allclose(
                res.attribution(method).group_scores["a"],
                ref.attribution(method).group_scores["a"],
                rtol=1e-6,
                atol=1e-9,
            )


def test_bad_arguments_raise_before_any_work_even_when_keeping_going():
    adapter, items = _items(3)
    adapter.reset_counts()
    with pytest.raises(ValueError, match="unknown attribution method"):
        explain_items_iter(adapter, items, methods=["gradcam"], keep_going=True)
    assert adapter.head_calls == 0


class _SmallMemory(AdditiveAdapter):
    """Pretends to run out of memory on head calls above 40 rows."""

    def head(self, *embedded, batch):
        if embedded[0].shape[0] > 40:
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return super().head(*embedded, batch=batch)


def test_measure_best_batch_size_picks_a_working_candidate():
    adapter = _SmallMemory()
    items = adapter.make_items(4)
    report = measure_best_batch_size(
        adapter, items, method="integrated_gradients", candidates=(8, 16, 40, 80, 160), options={"n_steps": 20}
    )
    assert set(report.seconds) == {8, 16, 40}
    assert list(report.failed) == [80] and "out of memory" in report.failed[80]
    assert report.best in report.seconds
    report = measure_best_batch_size(adapter, items, method="perturbation", candidates=(4, 8))
    assert report.best in (4, 8) and not report.failed


def test_command_line(tmp_path, capsys):
    adapter = AdditiveAdapter()
    data = tmp_path / "data.jsonl"
    data.write_text("\n".join(json.dumps(it) for it in adapter.make_items(3)) + "\n")
    out = tmp_path / "out.npz"
    code = main(
        [
            "tests.builders.toy_adapters:AdditiveAdapter",
            str(data),
            "--methods",
            "input_x_gradient",
            "--interactions",
            "perturbation",
            "--targets",
            "all",
            "--out",
            str(out),
            "--json",
            "-",
        ]
    )
    assert code == 0
    printed = json.loads(capsys.readouterr().out)
    assert [r["item_id"] for r in printed] == ["it0", "it1", "it2"]
    assert np.load(out)["2/cross/perturbation/t1/matrix"].shape == (3, 2)


def test_command_line_errors_are_one_line(tmp_path, capsys):
    adapter = NonFiniteAdapter("nan")
    items = adapter.make_items(3)
    for item in items:
        item["poison"] = item["id"] == "it1"
    data = tmp_path / "data.jsonl"
    data.write_text("".join(json.dumps(it) + "\n" for it in items))
    assert main(["os:system", str(data)]) == 1
    assert capsys.readouterr().err == (
        "error: adapter path 'os:system' points into Python's standard library ('os'), not to an adapter package\n"
    )
    assert main(["tests.builders.toy_adapters:NonFiniteAdapter", str(tmp_path / "missing.jsonl")]) == 1
    assert capsys.readouterr().err == (f"error: [Errno 2] No such file or directory: '{tmp_path / 'missing.jsonl'}'\n")
    assert main(["tests.builders.toy_adapters:NonFiniteAdapter", str(data), "--methods", "saliency"]) == 1
    assert capsys.readouterr().err.splitlines()[-1] == (
        "error: item(s) 'it1' (line 2): adapter.head returned NaN/Inf logits during predict (1 of 3 rows); "
        "refusing to compute scores from them"
    )
