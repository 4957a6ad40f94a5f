"""A Hugging Face model folder through the model report (``manage.py quantify``) and through
``manage.py explain --hf PATH`` / ``--options JSON``, on the tiny ViLT and CLIP folders the suite
builds. Both build the adapter with the registered (or given) options, so the folder is read,
and what they write equals a direct call of the adapter over the same folder."""

from __future__ import annotations

import csv
import json

import pytest
import torch

from annotations.models import ModelReport, RegisteredModel
from annotations.services.datasets import dataset_import
from tests.builders.hf_models import VILT_LABELS, clip_folder, vilt_folder
from tests.builders.studies import write_dataset
from tests.commandline import manage
from workers.adapters import registered_model_adapter
from workers.engine.explain import predict
from workers.engine.hf import HF_ADAPTER
from workers.engine.registry import load_adapter

pytestmark = pytest.mark.django_db(transaction=True)  # commands close the connections when they end

torch.set_num_threads(1)

#: A report of six items in seconds: few resamples, two noise and corruption levels.
REPORT_OPTIONS = {
    "n_resamples": 50,
    "noise_levels": [0.0, 1.0],
    "noise_samples": 1,
    "permutations": 1,
    "corruption_levels": [0.0, 1.0],
    "batch_size": 8,
}
CLIP_LABELS = ["red", "green", "blue", "yellow"]


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("hf")
    return {"vqa": vilt_folder(root / "vilt"), "zero-shot": clip_folder(root / "clip")}


@pytest.fixture
def data(tmp_path):
    return write_dataset(tmp_path / "data", 6)


@pytest.fixture
def dataset(alice, data):
    return dataset_import(owner=alice, name="d", jsonl_path=data)


def _raw_items(dataset) -> list[dict]:
    from annotations.selectors.studies import item_raw

    return [item_raw(item) for item in dataset.items.order_by("line_number")]


def _quantify(capsys, tmp_path, model: str) -> tuple[int, str, str]:
    options = tmp_path / "options.json"
    options.write_text(json.dumps(REPORT_OPTIONS))
    argv = [
        "--model",
        model,
        "--dataset",
        "d",
        "--owner",
        "alice",
        "--out",
        str(tmp_path / "out"),
        "--options",
        str(options),
    ]
    return manage(capsys, "quantify", *argv, "--no-progress")


@pytest.mark.parametrize(
    "kind, argv",
    [("vqa", []), ("zero-shot", ["--labels", *CLIP_LABELS, "--prompt", "{text} it is {label}."])],
)
def test_a_model_report_of_a_hugging_face_folder(dataset, folders, capsys, tmp_path, kind, argv):
    registered = manage(
        capsys, "register_model", "m", "--hf", str(folders[kind]), *argv, "--dataset", "d", "--owner", "alice"
    )
    assert registered[0] == 0, registered
    model = RegisteredModel.objects.get(name="m")
    assert model.adapter_options["path"] == str(folders[kind].absolute())

    status, stdout, stderr = _quantify(capsys, tmp_path, "m")
    assert status == 0, stderr
    report = ModelReport.objects.get()
    assert report.status == "done" and report.error == ""
    assert stdout.splitlines()[0] == f"Model report {report.pk}: 'm' on 'd' (6 items)."
    # The report's predictions are the folder's: the adapter a worker builds from the stored row
    # (options included) and the folder read directly agree item by item.
    with (tmp_path / "out" / "items.csv").open() as fh:
        rows = {row["id"]: row["prediction"] for row in csv.DictReader(fh)}
    raws = _raw_items(dataset)
    direct = predict(load_adapter(HF_ADAPTER, options=model.adapter_options), raws)
    assert rows == {raw["id"]: p.label for raw, p in zip(raws, direct)}
    assert [p.label for p in predict(registered_model_adapter(model=model), raws)] == [p.label for p in direct]
    assert report.result["modalities"] == ["image", "text"] and report.result["summary"]["n_items"] == 6
    for modality in ("image", "text"):
        assert 0 <= report.result["reliance"]["baseline"][modality]["reliance"]["estimate"] <= 1


def _explain(capsys, data, out, *argv: str) -> tuple[int, str, str]:
    return manage(
        capsys, "explain", "--data", str(data), "--out", str(out), "--methods", "saliency", *argv, "--no-progress"
    )


def _predictions(out) -> dict[str, str]:
    return {
        doc["item_id"]: doc["prediction"]["label"]
        for doc in (json.loads(p.read_text()) for p in sorted(out.glob("q*.json")))
    }


def test_explain_reads_a_hugging_face_folder(data, folders, capsys, tmp_path):
    from workers.engine.dataset import read_dataset_jsonl

    raws = [line.item for line in read_dataset_jsonl(data)]
    for kind, extra in [("vqa", []), ("zero-shot", ["--labels", *CLIP_LABELS])]:
        out = tmp_path / kind
        status, stdout, stderr = _explain(capsys, data, out, "--hf", str(folders[kind]), *extra)
        assert (status, stderr) == (0, ""), stderr
        assert stdout.startswith("Explained 6 of 6 item(s) with saliency")
        options = {"path": str(folders[kind])} | ({"labels": CLIP_LABELS} if extra else {})
        direct = predict(load_adapter(HF_ADAPTER, options=options), raws)
        assert _predictions(out) == {raw["id"]: p.label for raw, p in zip(raws, direct)}
        if kind == "vqa":
            assert set(_predictions(out).values()) <= set(VILT_LABELS)

    # The same folder by dotted path and --options: the same answers.
    by_path = tmp_path / "by-path"
    options = json.dumps({"path": str(folders["vqa"])})
    assert _explain(capsys, data, by_path, "--adapter", HF_ADAPTER, "--options", options)[0] == 0
    assert _predictions(by_path) == _predictions(tmp_path / "vqa")


@pytest.mark.parametrize(
    "argv, message",
    [
        ([], "give either --adapter (package.module:Factory) or --hf PATH"),
        (["--adapter", HF_ADAPTER, "--hf", "x"], "give either --adapter (package.module:Factory) or --hf PATH"),
        (
            ["--adapter", HF_ADAPTER, "--labels", "red"],
            "--labels goes with --hf PATH; a dotted-path adapter takes --options JSON",
        ),
        (
            ["--hf", "x", "--options", "{}"],
            "--options goes with an adapter path; a --hf folder takes --kind, --labels, --prompt and --image-size",
        ),
        (
            ["--adapter", HF_ADAPTER, "--options", "{path"],
            "--options: not JSON: Expecting property name enclosed in double quotes: line 1 column 2 (char 1)",
        ),
        (
            ["--adapter", HF_ADAPTER, "--options", "[1]"],
            '--options must be a JSON object, e.g. \'{"path": "/models/x"}\'',
        ),
    ],
)
def test_explain_refuses_a_bad_adapter_choice_in_one_line(data, tmp_path, capsys, argv, message):
    assert _explain(capsys, data, tmp_path / "out", *argv) == (1, "", f"CommandError: {message}\n")
    assert not (tmp_path / "out").exists()


def test_explain_names_a_missing_hugging_face_folder(data, tmp_path, capsys):
    status, stdout, stderr = _explain(capsys, data, tmp_path / "out", "--hf", str(tmp_path / "nowhere"))
    assert (status, stdout) == (1, "")
    assert stderr.startswith(f"CommandError: {tmp_path / 'nowhere'}: not a local model folder: no such file or folder")
    assert stderr.count("\n") == 1
