"""``manage.py explain``: one JSON + one NPZ per item, from a dataset JSONL, without a database.

The toy adapters read inline list-of-numbers modalities, which is exactly what a dataset line
holds for a non-file modality, so a JSONL of ``PairwiseAdapter`` items works as it is.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from annotations.management.commands.explain import item_file_stem, item_file_stems
from tests.engine.toy_adapters import PairwiseAdapter
from workers.engine.explain import explain_items

ADAPTER = "tests.engine.toy_adapters:PairwiseAdapter"


def _write_jsonl(path: Path, items: list[dict]) -> Path:
    path.write_text("".join(json.dumps(it) + "\n" for it in items))
    return path


def _items(n: int = 3) -> list[dict]:
    return PairwiseAdapter().make_items(n, seed=7)


def _run(tmp_path: Path, items: list[dict], *, out_name: str = "out", **options) -> tuple[Path, str, str]:
    data = _write_jsonl(tmp_path / "items.jsonl", items)
    out_dir = tmp_path / out_name
    out, err = io.StringIO(), io.StringIO()
    call_command("explain", adapter=ADAPTER, data=str(data), out=str(out_dir), stdout=out, stderr=err,
                 **options)
    return out_dir, out.getvalue(), err.getvalue()


def test_writes_one_json_and_one_npz_per_item(tmp_path):
    items = _items(3)
    methods = "integrated_gradients,saliency,second_order,modality_interaction,perturbation"
    out_dir, out, err = _run(tmp_path, items, methods=methods, batch_size=2)
    assert sorted(p.name for p in out_dir.iterdir()) == sorted(
        f"{it['id']}.{ext}" for it in items for ext in ("json", "npz"))
    assert "Explained 3 item(s)" in out
    assert "3/3" in err  # the progress bar went to stderr

    adapter = PairwiseAdapter()
    want = explain_items(adapter, items, methods=["integrated_gradients", "saliency"],
                         interactions=["second_order", "modality_interaction", "perturbation"],
                         batch_size=2)
    for item, ref in zip(items, want):
        doc = json.loads((out_dir / f"{item['id']}.json").read_text())
        assert doc["item_id"] == item["id"]
        assert doc["methods"] == ["integrated_gradients", "saliency"]
        assert doc["interactions"] == ["second_order", "modality_interaction", "perturbation"]
        assert doc["prediction"]["label"] == ref.prediction.label
        assert doc["targets"] == [ref.prediction.label_index]
        # what each group is
        assert [[g["group_id"] for g in mod] for mod in doc["groups"]] == [[0, 1], [2, 3]]
        assert doc["groups"][0][0]["text"] == "a[0]"
        ig = doc["attributions"]["integrated_gradients"][0]
        np.testing.assert_allclose(ig["group_scores"]["a"], ref.attributions["integrated_gradients"][0].group_scores["a"])
        assert sum(abs(v) for v in ig["modality_share"].values()) == pytest.approx(1.0)
        assert abs(ig["convergence_delta"]) < 1e-3
        assert set(doc["attributions"]) == {"integrated_gradients", "saliency"}
        so = doc["cross_interactions"]["second_order"][0]
        assert np.asarray(so["matrix"]).shape == (2, 2)
        np.testing.assert_allclose(so["matrix"], ref.cross_interactions["second_order"][0].matrix)
        # the pairwise term lives between group 1 of a and group 3 of b only
        pert = np.asarray(doc["cross_interactions"]["perturbation"][0]["matrix"])
        assert np.count_nonzero(np.abs(pert) > 1e-9) <= 1
        mi = doc["modality_interactions"][0]
        assert mi["dividend"] == pytest.approx(ref.modality_interactions[0].dividend)
        with np.load(out_dir / f"{item['id']}.npz") as arrays:
            k = ref.prediction.label_index
            np.testing.assert_allclose(arrays[f"attr/integrated_gradients/t{k}/a/map"],
                                       ref.attributions["integrated_gradients"][0].maps["a"])
            np.testing.assert_allclose(arrays[f"cross/second_order/t{k}/matrix"],
                                       ref.cross_interactions["second_order"][0].matrix)
            np.testing.assert_allclose(arrays["prediction/probabilities"], ref.prediction.probabilities)


def test_targets_all_and_index_and_limit(tmp_path):
    items = _items(3)
    out_dir, _, _ = _run(tmp_path, items, methods="saliency", targets="all", limit=2, no_progress=True)
    assert len(list(out_dir.glob("*.json"))) == 2 and len(list(out_dir.glob("*.npz"))) == 2
    doc = json.loads((out_dir / f"{items[0]['id']}.json").read_text())
    assert doc["targets"] == [0, 1]
    assert [a["target"] for a in doc["attributions"]["saliency"]] == [0, 1]

    out_dir2, _, _ = _run(tmp_path, items, out_name="by-label", methods="saliency", targets="pos",
                          no_progress=True)
    doc = json.loads((out_dir2 / f"{items[0]['id']}.json").read_text())
    assert doc["targets"] == [1]


def test_file_names_are_sanitized_and_stay_in_the_folder(tmp_path):
    items = _items(4)
    items[0]["id"] = "../escape"
    items[1]["id"] = "a/b c"
    items[2]["id"] = "a_b_c"
    items[3]["id"] = ".hidden"
    out_dir, _, _ = _run(tmp_path, items, methods="saliency", no_progress=True)
    names = sorted(p.name for p in out_dir.iterdir())
    assert len(names) == 8 and all("/" not in n and not n.startswith(".") for n in names)
    assert not (tmp_path / "escape.json").exists()
    assert "a_b_c.json" in names  # a safe id keeps its name ...
    stem = item_file_stem("a/b c")
    assert stem.startswith("a_b_c-") and f"{stem}.json" in names  # ... an unsafe one gets a hash
    for it in items:
        doc = json.loads((out_dir / f"{item_file_stem(it['id'])}.json").read_text())
        assert doc["item_id"] == it["id"] and doc["file_stem"] == item_file_stem(it["id"])


def test_stems_differing_only_by_case_are_kept_apart():
    stems = item_file_stems(["Item", "item", "other"])
    assert len({s.lower() for s in stems}) == 3 and stems[2] == "other"


def test_a_bad_dataset_line_is_a_command_error_naming_the_line(tmp_path):
    items = _items(2)
    data = tmp_path / "bad.jsonl"
    data.write_text(json.dumps(items[0]) + "\n{not json\n" + json.dumps(items[1]) + "\n")
    with pytest.raises(CommandError, match=r"line 2"):
        call_command("explain", adapter=ADAPTER, data=str(data), out=str(tmp_path / "out"),
                     methods="saliency", stderr=io.StringIO(), stdout=io.StringIO())
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("options, message", [
    ({"methods": "saliency,telepathy"}, "unknown method"),
    ({"methods": "saliency", "targets": "maybe"}, "--targets"),
    ({"methods": "saliency", "targets": "7"}, "class index"),
    ({"methods": "saliency", "adapter": "tests.engine.toy_adapters:Nope"}, "no attribute"),
    ({"methods": "saliency", "device": "warp-drive"}, "--device"),
    ({"methods": "saliency", "batch_size": 0}, "--batch-size"),
])
def test_bad_options_are_command_errors(tmp_path, options, message):
    data = _write_jsonl(tmp_path / "items.jsonl", _items(1))
    kwargs = {"adapter": ADAPTER, "data": str(data), "out": str(tmp_path / "out"), **options}
    with pytest.raises(CommandError, match=message):
        call_command("explain", stderr=io.StringIO(), stdout=io.StringIO(), **kwargs)


def test_an_item_the_adapter_cannot_read_is_a_command_error(tmp_path):
    items = _items(2)
    items[1]["a"] = [1.0, 2.0]  # PairwiseAdapter wants 4 numbers
    with pytest.raises(CommandError, match="explaining failed"):
        _run(tmp_path, items, methods="saliency", no_progress=True)
