"""Registering a Hugging Face model folder (``register_model NAME --hf PATH``) and a dotted path
with options, as a user sees it: one line on success, one line naming the problem otherwise."""

from __future__ import annotations

import pytest
import torch
from django.urls import reverse

from annotations.models import RegisteredModel
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


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("hf")
    return {"vqa": vilt_folder(root / "vilt"), "zero-shot": clip_folder(root / "clip")}


@pytest.fixture
def dataset(alice, tmp_path):
    return dataset_import(owner=alice, name="d", jsonl_path=write_dataset(tmp_path / "data", 3))


def _register(capsys, *argv: str) -> tuple[int, str, str]:
    return manage(capsys, "register_model", *argv, "--dataset", "d", "--owner", "alice")


def test_register_a_vqa_folder_and_load_it_back_as_a_worker_does(dataset, folders, capsys, alice, client):
    assert _register(capsys, "vilt", "--hf", str(folders["vqa"])) == (
        0,
        "Registered 'vilt': 4 labels, modalities ['image', 'text'].\n",
        "",
    )
    model = RegisteredModel.objects.get(name="vilt")
    assert model.adapter_path == HF_ADAPTER
    assert model.adapter_options == {"path": str(folders["vqa"].absolute()), "kind": "vqa"}
    assert model.labels == list(VILT_LABELS) and model.modalities == ["image", "text"]
    client.force_login(alice)  # the Models page says which folder the model reads
    assert f"vqa · {folders['vqa'].absolute()}" in client.get(reverse("models")).content.decode()

    # A worker loads the model from the stored row: the same predictions as the folder read directly.
    from annotations.selectors.studies import item_raw

    raws = [item_raw(item) for item in dataset.items.order_by("line_number")]
    stored = predict(registered_model_adapter(model=model), raws)
    direct = predict(load_adapter(HF_ADAPTER, options={"path": str(folders["vqa"])}), raws)
    assert [p.label for p in stored] == [p.label for p in direct]
    assert all(p.label in VILT_LABELS for p in stored)


def test_register_a_zero_shot_folder_with_labels_and_a_prompt(dataset, folders, capsys):
    argv = [
        "clip",
        "--hf",
        str(folders["zero-shot"]),
        "--labels",
        "red",
        "green",
        "blue",
        "yellow",
        "--prompt",
        "{text} it is {label}.",
    ]
    assert _register(capsys, *argv) == (0, "Registered 'clip': 4 labels, modalities ['image', 'text'].\n", "")
    model = RegisteredModel.objects.get(name="clip")
    assert model.adapter_options == {
        "path": str(folders["zero-shot"].absolute()),
        "kind": "zero-shot",
        "labels": ["red", "green", "blue", "yellow"],
        "prompt": "{text} it is {label}.",
    }
    assert model.labels == ["red", "green", "blue", "yellow"]


def test_a_label_subset_is_stored_with_the_options(dataset, folders, capsys):
    assert _register(capsys, "two", "--hf", str(folders["vqa"]), "--kind", "vqa", "--labels", "blue", "red")[0] == 0
    model = RegisteredModel.objects.get(name="two")
    assert model.labels == ["blue", "red"] and model.adapter_options["labels"] == ["blue", "red"]


def test_a_hub_id_or_a_missing_folder_is_one_line(dataset, capsys, tmp_path):
    assert _register(capsys, "m", "--hf", "openai/clip-vit-base-patch32") == (
        1,
        "",
        "CommandError: openai/clip-vit-base-patch32: not a local model folder: no such file or folder (a hub "
        "ID is never downloaded: fetch the model once on a machine with internet, e.g. with `huggingface-cli "
        "download ID --local-dir DIR`, and pass DIR)\n",
    )
    assert _register(capsys, "m", "--hf", str(tmp_path)) == (
        1,
        "",
        f"CommandError: {tmp_path}: not a local model folder: it has no config.json (save the model with "
        "save_pretrained(folder))\n",
    )
    assert not RegisteredModel.objects.exists()


def test_a_folder_of_the_wrong_kind_is_one_line(dataset, folders, capsys):
    clip = folders["zero-shot"].absolute()
    assert _register(capsys, "m", "--hf", str(folders["zero-shot"]), "--kind", "vqa") == (
        1,
        "",
        f"CommandError: {clip} holds CLIPModel (model_type 'clip'), not a vqa model: --kind vqa reads "
        "ViltForQuestionAnswering; it fits --kind zero-shot\n",
    )
    assert _register(capsys, "m", "--hf", str(folders["zero-shot"])) == (
        1,
        "",
        "CommandError: a zero-shot model needs the class names: --labels NAME NAME ...\n",
    )
    assert not RegisteredModel.objects.exists()


def test_a_folder_without_weights_names_the_load_step(dataset, folders, capsys, tmp_path, settings):
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text((folders["vqa"] / "config.json").read_text())
    status, out, err = _register(capsys, "m", "--hf", str(broken))
    assert (status, out) == (1, "")
    assert err.startswith(f"CommandError: adapter {HF_ADAPTER}: load('{settings.MMEVAL_DEVICE}') failed: OSError: ")
    assert str(broken) in err and err.endswith(" (-v 2 shows the traceback)\n") and err.count("\n") == 1


@pytest.mark.parametrize(
    "argv, message",
    [
        (["m"], "give either an adapter path (package.module:Factory) or --hf PATH"),
        (
            ["m", "workers.engine.demo.adapter:DemoAdapter", "--hf", "/x"],
            "give either an adapter path (package.module:Factory) or --hf PATH",
        ),
        (
            ["m", "workers.engine.demo.adapter:DemoAdapter", "--kind", "vqa"],
            "--kind goes with --hf PATH; a dotted-path adapter takes --options JSON",
        ),
        (
            ["m", "workers.engine.demo.adapter:DemoAdapter", "--labels", "a", "--prompt", "{text} {label}"],
            "--labels, --prompt go with --hf PATH; a dotted-path adapter takes --options JSON",
        ),
        (
            ["m", "--hf", "/x", "--options", "{}"],
            "--options goes with an adapter path; a --hf folder takes --kind, --labels, --prompt and --image-size",
        ),
        (
            ["m", "workers.engine.demo.adapter:DemoAdapter", "--options", "{path: 1}"],
            "--options: not JSON: Expecting property name enclosed in double quotes: line 1 column 2 (char 1)",
        ),
        (
            ["m", "workers.engine.demo.adapter:DemoAdapter", "--options", "[1]"],
            '--options must be a JSON object, e.g. \'{"path": "/models/x"}\'',
        ),
    ],
)
def test_options_that_do_not_fit_together_are_one_line(dataset, capsys, argv, message):
    assert _register(capsys, *argv) == (1, "", f"CommandError: {message}\n")


def test_options_the_factory_does_not_take_name_the_create_step(dataset, capsys):
    status, out, err = _register(
        capsys, "m", "workers.engine.demo.adapter:DemoAdapter", "--options", '{"colour": "red"}'
    )
    assert (status, out) == (1, "")
    assert err.startswith(
        "CommandError: adapter workers.engine.demo.adapter:DemoAdapter: creating it "
        "(DemoAdapter(colour=…)) failed: TypeError: "
    )
    assert "colour" in err and err.count("\n") == 1
