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
from tests.builders.toy_adapters import AdditiveAdapter, NonFiniteAdapter, PairwiseAdapter
from tests.commandline import manage, manage_py
from workers.engine.explain import explain_items
from workers.engine.interactions import emap
from workers.engine.registry import load_adapter

ADAPTER = "tests.builders.toy_adapters:PairwiseAdapter"
DEFAULT_PREFIXES = ["workers.engine.demo.", "adapters."]


@pytest.fixture(autouse=True)
def allow_test_adapters(settings):
    """These tests run adapters defined in tests/; the refusal tests set the prefixes back."""
    settings.MMEVAL_ADAPTER_PREFIXES = [*DEFAULT_PREFIXES, "tests."]


def _write_jsonl(path: Path, items: list[dict]) -> Path:
    path.write_text("".join(json.dumps(it) + "\n" for it in items))
    return path


def _items(n: int = 3) -> list[dict]:
    return PairwiseAdapter().make_items(n, seed=7)


def _run(tmp_path: Path, items: list[dict], *, out_name: str = "out", **options) -> tuple[Path, str, str]:
    data = _write_jsonl(tmp_path / "items.jsonl", items)
    out_dir = tmp_path / out_name
    out, err = io.StringIO(), io.StringIO()
    call_command("explain", adapter=ADAPTER, data=str(data), out=str(out_dir), stdout=out, stderr=err, **options)
    return out_dir, out.getvalue(), err.getvalue()


def test_writes_one_json_and_one_npz_per_item(tmp_path):
    items = _items(3)
    methods = "integrated_gradients,saliency,second_order,modality_interaction,perturbation"
    out_dir, out, err = _run(tmp_path, items, methods=methods, batch_size=2)
    assert sorted(p.name for p in out_dir.iterdir()) == sorted(
        f"{it['id']}.{ext}" for it in items for ext in ("json", "npz")
    )
    assert "Explained 3 of 3 item(s)" in out
    assert "3/3" in err  # the progress bar went to stderr

    adapter = PairwiseAdapter()
    want = explain_items(
        adapter,
        items,
        methods=["integrated_gradients", "saliency"],
        interactions=["second_order", "modality_interaction", "perturbation"],
        batch_size=2,
    )
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
        np.testing.assert_allclose(
            ig["group_scores"]["a"], ref.attributions["integrated_gradients"][0].group_scores["a"]
        )
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
            np.testing.assert_allclose(
                arrays[f"attr/integrated_gradients/t{k}/a/map"], ref.attributions["integrated_gradients"][0].maps["a"]
            )
            np.testing.assert_allclose(
                arrays[f"cross/second_order/t{k}/matrix"], ref.cross_interactions["second_order"][0].matrix
            )
            np.testing.assert_allclose(arrays["prediction/probabilities"], ref.prediction.probabilities)


def test_targets_all_and_index_and_limit(tmp_path):
    items = _items(3)
    out_dir, _, _ = _run(tmp_path, items, methods="saliency", targets="all", limit=2, no_progress=True)
    assert len(list(out_dir.glob("*.json"))) == 2 and len(list(out_dir.glob("*.npz"))) == 2
    doc = json.loads((out_dir / f"{items[0]['id']}.json").read_text())
    assert doc["targets"] == [0, 1]
    assert [a["target"] for a in doc["attributions"]["saliency"]] == [0, 1]

    out_dir2, _, _ = _run(tmp_path, items, out_name="by-label", methods="saliency", targets="pos", no_progress=True)
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
        call_command(
            "explain",
            adapter=ADAPTER,
            data=str(data),
            out=str(tmp_path / "out"),
            methods="saliency",
            stderr=io.StringIO(),
            stdout=io.StringIO(),
        )
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "options, message",
    [
        ({"methods": "saliency,telepathy"}, "unknown method"),
        ({"methods": "saliency", "targets": "maybe"}, "--targets"),
        ({"methods": "saliency", "targets": "7"}, "class index"),
        ({"methods": "saliency", "adapter": "tests.builders.toy_adapters:Nope"}, "no attribute"),
        ({"methods": "saliency", "device": "warp-drive"}, "--device"),
        ({"methods": "saliency", "batch_size": 0}, "--batch-size"),
    ],
)
def test_bad_options_are_command_errors(tmp_path, options, message):
    data = _write_jsonl(tmp_path / "items.jsonl", _items(1))
    kwargs = {"adapter": ADAPTER, "data": str(data), "out": str(tmp_path / "out"), **options}
    with pytest.raises(CommandError, match=message):
        call_command("explain", stderr=io.StringIO(), stdout=io.StringIO(), **kwargs)


def test_an_item_the_adapter_cannot_read_is_listed_and_the_run_fails(tmp_path):
    items = _items(2)
    items[1]["a"] = [1.0, 2.0]  # PairwiseAdapter wants 4 numbers
    with pytest.raises(CommandError, match=r"^1 of 2 item\(s\) failed") as failed:
        _run(tmp_path, items, methods="saliency", no_progress=True)
    assert failed.value.returncode == 1
    [record] = [json.loads(line) for line in (tmp_path / "out" / "errors.jsonl").read_text().splitlines()]
    assert record["id"] == "it1" and record["line"] == 2
    assert record["error"].startswith("ValueError: ") and "cannot read modality 'a'" in record["error"]
    assert (tmp_path / "out" / "it0.json").exists()


# -- what a user sees: exit status and the exact lines ---------------------------------------


def _nonfinite_items(poisoned: set[int], n: int = 5) -> list[dict]:
    items = NonFiniteAdapter().make_items(n, seed=3)
    for k, item in enumerate(items):
        item["poison"] = k in poisoned  # every line carries the field: it is part of the item
    return items


def _jsonl_with_blank_first_line(path: Path, items: list[dict]) -> Path:
    """Line numbers then differ from positions + 1: an error must name the line."""
    path.write_text("\n" + "".join(json.dumps(it) + "\n" for it in items))
    return path


def test_a_nan_item_is_listed_by_id_and_line_and_the_others_are_kept(tmp_path, capsys):
    items = _nonfinite_items({2})
    data = _jsonl_with_blank_first_line(tmp_path / "items.jsonl", items)
    out_dir = tmp_path / "out"
    status, out, err = manage(
        capsys,
        "explain",
        "--adapter",
        "tests.builders.toy_adapters:NonFiniteAdapter",
        "--data",
        str(data),
        "--out",
        str(out_dir),
        "--methods",
        "saliency",
        "--batch-size",
        "2",
        "--no-progress",
    )
    error = (
        "NonFiniteError: adapter.head returned NaN/Inf logits during predict (1 of 1 rows); "
        "refusing to compute scores from them"
    )
    assert status == 1
    assert out == f"Explained 4 of 5 item(s) with saliency; wrote 8 file(s) to {out_dir}.\n"
    assert err == (
        f"item 'it2' (line 4): {error}\n"
        f"CommandError: 1 of 5 item(s) failed (above); they are listed in {out_dir / 'errors.jsonl'} "
        "(-v 2 shows the traceback)\n"
    )
    records = [json.loads(line) for line in (out_dir / "errors.jsonl").read_text().splitlines()]
    assert records == [{"id": "it2", "line": 4, "error": error}]
    status, _, err = manage(
        capsys,
        "explain",
        "--adapter",
        "tests.builders.toy_adapters:NonFiniteAdapter",
        "--data",
        str(data),
        "--out",
        str(out_dir),
        "--methods",
        "saliency",
        "--batch-size",
        "2",
        "--no-progress",
        "-v",
        "2",
    )
    assert status == 1
    assert err.startswith(f"item 'it2' (line 4): {error}\nTraceback (most recent call last):\n")
    assert err.endswith(f"they are listed in {out_dir / 'errors.jsonl'}\n")
    # The good items, including it3 of the same batch, are written as if the bad one were absent.
    good = [it for k, it in enumerate(items) if k != 2]
    assert sorted(p.name for p in out_dir.glob("*.json")) == sorted(f"{it['id']}.json" for it in good)
    want = explain_items(NonFiniteAdapter(), good, methods=["saliency"])
    for item, ref in zip(good, want):
        doc = json.loads((out_dir / f"{item['id']}.json").read_text())
        np.testing.assert_allclose(
            doc["attributions"]["saliency"][0]["group_scores"]["a"], ref.attributions["saliency"][0].group_scores["a"]
        )


def test_a_rerun_without_failures_removes_the_old_errors_file(tmp_path, capsys):
    out_dir = tmp_path / "out"
    common = [
        "explain",
        "--adapter",
        "tests.builders.toy_adapters:NonFiniteAdapter",
        "--out",
        str(out_dir),
        "--methods",
        "saliency",
        "--no-progress",
    ]
    data = _jsonl_with_blank_first_line(tmp_path / "bad.jsonl", _nonfinite_items({0}, n=2))
    assert manage(capsys, *common, "--data", str(data))[0] == 1
    assert (out_dir / "errors.jsonl").exists()
    data = _jsonl_with_blank_first_line(tmp_path / "good.jsonl", _nonfinite_items(set(), n=2))
    status, out, err = manage(capsys, *common, "--data", str(data))
    assert (status, err) == (0, "")
    assert not (out_dir / "errors.jsonl").exists()


def test_every_item_failing_still_exits_non_zero_with_the_list(tmp_path, capsys):
    data = _jsonl_with_blank_first_line(tmp_path / "items.jsonl", _nonfinite_items({0, 1}, n=2))
    out_dir = tmp_path / "out"
    status, out, err = manage(
        capsys,
        "explain",
        "--adapter",
        "tests.builders.toy_adapters:NonFiniteAdapter",
        "--data",
        str(data),
        "--out",
        str(out_dir),
        "--methods",
        "saliency",
        "--no-progress",
    )
    assert status == 1
    assert out == f"Explained 0 of 2 item(s) with saliency; wrote 0 file(s) to {out_dir}.\n"
    assert [r["line"] for r in map(json.loads, (out_dir / "errors.jsonl").read_text().splitlines())] == [2, 3]
    assert err.splitlines()[-1] == (
        f"CommandError: 2 of 2 item(s) failed (above); they are listed in "
        f"{out_dir / 'errors.jsonl'} (-v 2 shows the traceback)"
    )


def test_emap_writes_the_accuracies_and_the_gap(tmp_path, capsys):
    items = _items(6)
    data = _write_jsonl(tmp_path / "items.jsonl", items)
    out_dir = tmp_path / "out"
    status, out, err = manage(
        capsys,
        "explain",
        "--adapter",
        ADAPTER,
        "--data",
        str(data),
        "--out",
        str(out_dir),
        "--methods",
        "saliency",
        "--emap",
        "--no-progress",
    )
    assert (status, err) == (0, "")
    ref = emap(PairwiseAdapter(), items)
    assert ref.emap_gap is not None  # the items' labels are the adapter's: accuracies are defined
    doc = json.loads((out_dir / "emap.json").read_text())
    assert doc == {
        "modalities": ["a", "b"],
        "n": 6,
        "item_ids": [it["id"] for it in items],
        "model_accuracy": ref.model_accuracy,
        "projection_accuracy": ref.projection_accuracy,
        "emap_gap": ref.emap_gap,
        "agreement": ref.agreement,
        "gold": "the items' label field",
    }
    assert out.splitlines()[-1] == (
        f"EMAP (a x b, 6 items): model accuracy {ref.model_accuracy:.1%}, projection accuracy "
        f"{ref.projection_accuracy:.1%}, gap {100 * ref.emap_gap:+.1f} points. Wrote {out_dir / 'emap.json'}."
    )
    with np.load(out_dir / "emap.npz") as arrays:
        np.testing.assert_allclose(arrays["projection"], ref.projection)


def test_emap_of_an_additive_model_has_no_gap(tmp_path, capsys):
    """An additive model is its own EMAP projection: the same argmax everywhere."""
    items = AdditiveAdapter().make_items(5, seed=2)
    data = _write_jsonl(tmp_path / "items.jsonl", items)
    status, _, _ = manage(
        capsys,
        "explain",
        "--adapter",
        "tests.builders.toy_adapters:AdditiveAdapter",
        "--data",
        str(data),
        "--out",
        str(tmp_path / "out"),
        "--methods",
        "saliency",
        "--emap",
        "--no-progress",
    )
    doc = json.loads((tmp_path / "out" / "emap.json").read_text())
    assert status == 0
    assert (doc["emap_gap"], doc["agreement"]) == (0.0, 1.0)


def test_an_item_named_like_a_run_file_keeps_its_own_file(tmp_path, capsys):
    items = _items(3)
    items[0]["id"], items[1]["id"] = "emap", "ERRORS"
    data = _write_jsonl(tmp_path / "items.jsonl", items)
    out_dir = tmp_path / "out"
    status, _, _ = manage(
        capsys,
        "explain",
        "--adapter",
        ADAPTER,
        "--data",
        str(data),
        "--out",
        str(out_dir),
        "--methods",
        "saliency",
        "--emap",
        "--no-progress",
    )
    assert status == 0
    assert json.loads((out_dir / "emap.json").read_text())["n"] == 3  # the run's file, not the item's
    assert (
        json.loads((out_dir / f"{item_file_stems(['emap'], reserved=('emap',))[0]}.json").read_text())["item_id"]
        == "emap"
    )
    assert not (out_dir / "ERRORS.json").exists()


def test_three_modalities_need_a_pair_checked_before_any_work(tmp_path, capsys):
    path = "tests.builders.toy_adapters:three_modality_adapter"
    model = load_adapter(path)  # the instance the command gets (cached per process)
    data = _write_jsonl(tmp_path / "items.jsonl", model.make_items(3, seed=1))
    out_dir = tmp_path / "out"
    common = ["explain", "--adapter", path, "--data", str(data), "--out", str(out_dir), "--no-progress"]
    model.reset_counts()

    status, out, err = manage(capsys, *common, "--methods", "saliency,second_order")
    assert (status, out) == (1, "")
    assert err == ("CommandError: the adapter's modalities are a, b, c; name two of them with --pair A,B\n")
    status, out, err = manage(capsys, *common, "--methods", "saliency", "--pair", "a,image")
    assert (status, out) == (1, "")
    assert err == (
        "CommandError: --pair a,image: the adapter's modalities are a, b, c; name two of them with --pair A,B\n"
    )
    status, _, err = manage(capsys, *common, "--methods", "saliency", "--pair", "a,a")
    assert (status, err) == (1, "CommandError: --pair a,a: name two different modalities, e.g. --pair image,text\n")
    assert model.head_calls == 0 and not list(out_dir.glob("*.json"))

    status, _, err = manage(capsys, *common, "--methods", "second_order", "--pair", "a,c", "--emap")
    assert (status, err) == (0, "")
    doc = json.loads((out_dir / "it0.json").read_text())
    assert np.asarray(doc["cross_interactions"]["second_order"][0]["matrix"]).shape == (3, 1)  # 3 groups x 1
    assert json.loads((out_dir / "emap.json").read_text())["modalities"] == ["a", "c"]


def test_adapters_outside_the_allowed_packages_are_refused_before_import(tmp_path, capsys, settings, monkeypatch):
    settings.MMEVAL_ADAPTER_PREFIXES = DEFAULT_PREFIXES
    marker = tmp_path / "imported"
    (tmp_path / "sideeffect_adapter.py").write_text(
        f"open({str(marker)!r}, 'w').close()\nfrom tests.builders.toy_adapters import PairwiseAdapter as Adapter\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    data = _write_jsonl(tmp_path / "items.jsonl", _items(2))
    common = ["--data", str(data), "--out", str(tmp_path / "out"), "--methods", "saliency", "--no-progress"]

    status, out, err = manage(capsys, "explain", "--adapter", "sideeffect_adapter:Adapter", *common)
    assert (status, out) == (1, "")
    assert err == (
        "CommandError: adapter sideeffect_adapter:Adapter is not under an allowed adapter package "
        "(workers.engine.demo., adapters.); add its package to MMEVAL_ADAPTER_PREFIXES, or pass "
        "--allow-any-adapter to run code you trust\n"
    )
    assert not marker.exists()

    status, out, err = manage(
        capsys, "explain", "--adapter", "sideeffect_adapter:Adapter", "--allow-any-adapter", *common
    )
    assert (status, err) == (0, "") and marker.exists()
    assert out == f"Explained 2 of 2 item(s) with saliency; wrote 4 file(s) to {tmp_path / 'out'}.\n"


@pytest.mark.parametrize(
    "path, message",
    [
        (
            "os:system",
            "adapter path 'os:system' points into Python's standard library ('os'), not to an adapter package",
        ),
        (
            "builtins:eval",
            "adapter path 'builtins:eval' points into Python's standard library ('builtins'), not to an "
            "adapter package",
        ),
        (
            "tests.builders.toy_adapters",
            "adapter path 'tests.builders.toy_adapters' must look like 'package.module:Factory'",
        ),
        ("tests/engine:Pairwise", "adapter path 'tests/engine:Pairwise' must look like 'package.module:Factory'"),
        (
            "tests.builders.toy_adapters:torch",
            "adapter tests.builders.toy_adapters:torch: torch is a module, not an adapter class or factory function",
        ),
    ],
)
def test_paths_that_cannot_be_adapters_are_refused_even_when_any_is_allowed(tmp_path, capsys, path, message):
    data = _write_jsonl(tmp_path / "items.jsonl", _items(1))
    status, out, err = manage(
        capsys,
        "explain",
        "--adapter",
        path,
        "--allow-any-adapter",
        "--data",
        str(data),
        "--out",
        str(tmp_path / "out"),
        "--no-progress",
    )
    assert (status, out, err) == (1, "", f"CommandError: {message}\n")


@pytest.mark.parametrize(
    "factory, message",
    [
        (
            "FactoryFailsAdapter",
            "adapter tests.builders.toy_adapters:FactoryFailsAdapter: creating it "
            "(FactoryFailsAdapter()) failed: RuntimeError: no config at /etc/toy.yaml (deliberate "
            "test failure)",
        ),
        (
            "LoadFailsAdapter",
            "adapter tests.builders.toy_adapters:LoadFailsAdapter: load('cpu') failed: "
            "FileNotFoundError: weights file toy.pt not found (deliberate test failure)",
        ),
    ],
)
def test_an_adapter_that_raises_names_the_step_and_its_message(tmp_path, capsys, factory, message):
    data = _write_jsonl(tmp_path / "items.jsonl", _items(1))
    argv = [
        "explain",
        "--adapter",
        f"tests.builders.toy_adapters:{factory}",
        "--data",
        str(data),
        "--out",
        str(tmp_path / "out"),
        "--no-progress",
    ]
    status, out, err = manage(capsys, *argv)
    assert (status, out, err) == (1, "", f"CommandError: {message} (-v 2 shows the traceback)\n")

    status, _, err = manage(capsys, *argv, "-v", "2")
    assert status == 1
    assert err.startswith("Traceback (most recent call last):\n")
    assert "deliberate test failure" in err.splitlines()[-3] or "(deliberate test failure)" in err
    assert err.endswith(f"\nCommandError: {message}\n")


def test_bad_files_are_one_line_each(tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    good = _write_jsonl(tmp_path / "items.jsonl", _items(1))
    undecodable = tmp_path / "latin1.jsonl"
    undecodable.write_bytes(json.dumps(_items(1)[0]).encode() + b"\n" + b'{"id": "caf\xe9"}\n')
    cases = [
        ({"--data": tmp_path / "missing.jsonl"}, f"--data {tmp_path / 'missing.jsonl'}: no such file"),
        ({"--data": tmp_path}, f"--data {tmp_path}: is a folder, not a JSONL file"),
        (
            {"--data": undecodable},
            f"{undecodable}: 1 bad line(s):\nline 2: not UTF-8 text (byte 0xe9 is byte 12 of the line)",
        ),
        ({"--out": blocker}, f"--out {blocker}: is a file, not a folder"),
        (
            {"--out": blocker / "out"},
            f"--out {blocker / 'out'}: cannot write there ({blocker} is a file, not a folder)",
        ),
    ]
    for options, message in cases:
        argv = {"--data": good, "--out": tmp_path / "out", **options}
        status, out, err = manage(
            capsys, "explain", "--adapter", ADAPTER, "--no-progress", *[str(x) for kv in argv.items() for x in kv]
        )
        assert (status, out, err) == (1, "", f"CommandError: {message}\n"), options


def test_the_real_command_line_prints_no_traceback(tmp_path):
    """The whole path: a fresh `python manage.py explain` process, as a user runs it."""
    data = _jsonl_with_blank_first_line(tmp_path / "items.jsonl", _nonfinite_items({1}, n=3))
    out_dir = tmp_path / "out"
    done = manage_py(
        "explain",
        "--adapter",
        "tests.builders.toy_adapters:NonFiniteAdapter",
        "--data",
        str(data),
        "--out",
        str(out_dir),
        "--methods",
        "integrated_gradients",
        "--no-progress",
        env={"MMEVAL_ADAPTER_PREFIXES": "tests."},
    )
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert done.stderr.splitlines() == [
        "item 'it1' (line 3): NonFiniteError: adapter.head returned NaN/Inf logits during predict (1 of 1 rows); "
        "refusing to compute scores from them",
        f"CommandError: 1 of 3 item(s) failed (above); they are listed in {out_dir / 'errors.jsonl'} "
        "(-v 2 shows the traceback)",
    ]
    assert sorted(p.name for p in out_dir.iterdir()) == ["errors.jsonl", "it0.json", "it0.npz", "it2.json", "it2.npz"]


def test_emap_without_the_adapters_labels_gives_the_agreement_only(tmp_path, capsys):
    items = _items(4)
    for item in items:
        item["label"] = "unknown"  # not one of the adapter's labels: no accuracy to compute
    data = _write_jsonl(tmp_path / "items.jsonl", items)
    out_dir = tmp_path / "out"
    status, out, err = manage(
        capsys,
        "explain",
        "--adapter",
        ADAPTER,
        "--data",
        str(data),
        "--out",
        str(out_dir),
        "--methods",
        "saliency",
        "--emap",
        "--no-progress",
    )
    ref = emap(PairwiseAdapter(), items)
    doc = json.loads((out_dir / "emap.json").read_text())
    assert (status, err) == (0, "")
    assert (doc["model_accuracy"], doc["projection_accuracy"], doc["emap_gap"], doc["gold"]) == (None, None, None, None)
    assert out.splitlines()[-1] == (
        f"EMAP (a x b, 4 items): the items' labels are not the adapter's, so no "
        f"accuracies; the projection agrees with the model on {ref.agreement:.1%}. "
        f"Wrote {out_dir / 'emap.json'}."
    )


def test_emap_over_too_few_good_items_is_reported_with_the_failures(tmp_path, capsys):
    data = _jsonl_with_blank_first_line(tmp_path / "items.jsonl", _nonfinite_items({0}, n=2))
    out_dir = tmp_path / "out"
    status, _, err = manage(
        capsys,
        "explain",
        "--adapter",
        "tests.builders.toy_adapters:NonFiniteAdapter",
        "--data",
        str(data),
        "--out",
        str(out_dir),
        "--methods",
        "saliency",
        "--emap",
        "--no-progress",
    )
    assert status == 1
    assert err.splitlines()[-1] == (
        f"CommandError: 1 of 2 item(s) failed (above); they are listed in "
        f"{out_dir / 'errors.jsonl'} (-v 2 shows the traceback); EMAP needs at least "
        "two explained items, got 1"
    )
    assert not (out_dir / "emap.json").exists()


def test_bench_explain_refuses_an_unwritable_json_before_the_benchmark(tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    assert manage(capsys, "bench_explain", "--json", str(blocker / "bench.json")) == (
        1,
        "",
        f"CommandError: --json {blocker / 'bench.json'}: cannot write there (Not a directory)\n",
    )
