"""What a user sees when a database-backed command goes wrong: one line naming the problem on
stderr and exit status 1, never a traceback (unless asked for with -v 2 or --traceback)."""

from __future__ import annotations

import json

import pytest

from annotations.models import Dataset, RegisteredModel, Study
from annotations.services.datasets import dataset_import
from tests.builders.studies import build_study, make_model, write_dataset
from tests.commandline import manage

pytestmark = pytest.mark.django_db(transaction=True)  # commands close the connections when they end


def test_import_dataset_names_a_missing_or_undecodable_file(alice, tmp_path, capsys):
    missing = tmp_path / "missing.jsonl"
    assert manage(capsys, "import_dataset", "d", str(missing), "--owner", "alice") == (
        1,
        "",
        f"CommandError: {missing}: no such file\n",
    )
    assert manage(capsys, "import_dataset", "d", str(tmp_path), "--owner", "alice") == (
        1,
        "",
        f"CommandError: {tmp_path}: is a folder, not a JSONL file\n",
    )

    jsonl = write_dataset(tmp_path / "data", 3)
    with jsonl.open("ab") as fh:
        fh.write(b'{"id": "q3", "text": "caf\xe9", "label": "red", "image": "images/red_0.png"}\n')
    assert manage(capsys, "import_dataset", "d", str(jsonl), "--owner", "alice") == (
        1,
        "",
        f"CommandError: {jsonl}: 1 bad line(s):\nline 4: not UTF-8 text (byte 0xe9 is byte 26 of the line)\n",
    )
    assert not Dataset.objects.exists()


def test_export_and_analyze_name_a_study_that_does_not_exist(capsys):
    for command in ("export_study", "analyze"):
        assert manage(capsys, command, "999") == (
            1,
            "",
            "CommandError: no study has the id 999 (nor that public id or name)\n",
        )
        assert manage(capsys, command, "my study") == (
            1,
            "",
            "CommandError: no study has the name or public id 'my study'\n",
        )


def test_an_unwritable_out_fails_before_the_work_and_leaves_earlier_files_alone(alice, tmp_path, capsys):
    study = build_study(alice, tmp_path)
    blocker = tmp_path / "a-file"
    blocker.write_text("keep me")
    for command in ("export_study", "analyze"):
        assert manage(capsys, command, str(study.pk), "--out", str(blocker / "x.csv")) == (
            1,
            "",
            f"CommandError: --out {blocker / 'x.csv'}: cannot write there ({blocker} is a file, not a folder)\n",
        )
        assert manage(capsys, command, str(study.pk), "--out", str(tmp_path)) == (
            1,
            "",
            f"CommandError: --out {tmp_path}: is a folder; give a file name\n",
        )
    assert manage(capsys, "bench_export", "--rows", "10", "--out", str(blocker / "x.csv")) == (
        1,
        "",
        f"CommandError: --out {blocker / 'x.csv'}: cannot write there (Not a directory)\n",
    )

    # A run that fails half-way leaves the earlier file as it was, and no partial file.
    earlier = tmp_path / "summary.csv"
    earlier.write_text("the earlier export\n")
    assert manage(capsys, "export_study", str(study.pk), "--what", "summary", "--out", str(earlier)) == (
        1,
        "",
        "CommandError: no summary: no responses yet\n",
    )
    assert earlier.read_text() == "the earlier export\n"
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []

    status, out, err = manage(capsys, "export_study", str(study.pk), "--what", "items", "--out", str(earlier))
    rows = earlier.read_text().splitlines()
    assert (status, out) == (0, "")
    assert err == f"Wrote the items export to {earlier} ({len(rows) - 1} rows).\n"
    assert rows[0].startswith("study,item,") and len(rows) - 1 == study.study_items.count()


@pytest.fixture
def dataset(alice, tmp_path) -> Dataset:
    return dataset_import(owner=alice, name="d", jsonl_path=write_dataset(tmp_path / "data", 2))


@pytest.mark.parametrize(
    "adapter, message",
    [
        (
            "tests.builders.toy_adapters:FactoryFailsAdapter",
            "adapter tests.builders.toy_adapters:FactoryFailsAdapter: creating it (FactoryFailsAdapter()) failed: "
            "RuntimeError: no config at /etc/toy.yaml (deliberate test failure)",
        ),
        (
            "tests.builders.toy_adapters:LoadFailsAdapter",
            "adapter tests.builders.toy_adapters:LoadFailsAdapter: load('{device}') failed: FileNotFoundError: weights "
            "file toy.pt not found (deliberate test failure)",
        ),
        (
            "tests.builders.toy_adapters:PairwiseAdapter",
            "adapter tests.builders.toy_adapters:PairwiseAdapter: the check on item 'q0' (line 1) failed: AdapterError: "
            "the check item lacks the modalities ['a', 'b'] the adapter needs",
        ),
    ],
)
def test_register_model_names_the_failing_step_and_the_adapters_message(dataset, settings, capsys, adapter, message):
    settings.MMEVAL_ADAPTER_PREFIXES = [*settings.MMEVAL_ADAPTER_PREFIXES, "tests."]
    message = message.format(device=settings.MMEVAL_DEVICE)
    argv = ["register_model", "m", adapter, "--dataset", "d", "--owner", "alice"]
    assert manage(capsys, *argv) == (1, "", f"CommandError: {message} (-v 2 shows the traceback)\n")

    status, out, err = manage(capsys, *argv, "-v", "2")
    assert (status, out) == (1, "")
    assert err.startswith("Traceback (most recent call last):\n")
    assert err.endswith(f"\nCommandError: {message}\n")
    assert not RegisteredModel.objects.exists()


def test_register_model_refuses_a_function_that_is_not_an_adapter_factory_without_calling_it(
    dataset, settings, capsys, tmp_path
):
    settings.MMEVAL_ADAPTER_PREFIXES = [*settings.MMEVAL_ADAPTER_PREFIXES, "tests."]
    marker = tmp_path / "called"
    adapter = "tests.builders.registration_adapters:writes_a_marker"
    argv = ["register_model", "m", adapter, "--options", f'{{"marker": "{marker}"}}', "--dataset", "d"]
    status, out, err = manage(capsys, *argv, "--owner", "alice")
    assert (status, out) == (1, "")
    assert err.startswith(
        f"CommandError: adapter {adapter}: writes_a_marker is a function not marked as an adapter factory; it was "
        "not called (name an adapter class, or a function decorated with workers.engine.adapter.adapter_factory)"
    )
    assert len(err.splitlines()) == 1
    assert not marker.exists() and not RegisteredModel.objects.exists()


def test_register_model_stops_a_factory_past_the_time_limit(dataset, settings, capsys):
    settings.MMEVAL_ADAPTER_PREFIXES = [*settings.MMEVAL_ADAPTER_PREFIXES, "tests."]
    settings.MMEVAL_REGISTER_TIMEOUT_SECONDS = 2
    adapter = "tests.builders.registration_adapters:sleeps"
    argv = ["register_model", "m", adapter, "--options", '{"seconds": 3600}', "--dataset", "d", "--owner", "alice"]
    assert manage(capsys, *argv) == (
        1,
        "",
        f"CommandError: adapter {adapter}: creating, loading and checking it took longer than the 2 s registration "
        "limit (MMEVAL_REGISTER_TIMEOUT_SECONDS) and was stopped\n",
    )
    assert not RegisteredModel.objects.exists()


@pytest.mark.parametrize("adapter", ["os:system", "builtins:eval"])
def test_register_model_refuses_paths_outside_the_allowed_packages(dataset, settings, capsys, adapter):
    settings.MMEVAL_ADAPTER_PREFIXES = ["workers.engine.demo.", "adapters."]
    assert manage(capsys, "register_model", "m", adapter, "--dataset", "d", "--owner", "alice") == (
        1,
        "",
        f"CommandError: '{adapter}' is not under an allowed adapter package (workers.engine.demo., "
        "adapters.); ask the operator to install your package and add it to MMEVAL_ADAPTER_PREFIXES\n",
    )


def test_register_model_refuses_the_standard_library_even_when_allowed(dataset, settings, capsys):
    settings.MMEVAL_ADAPTER_PREFIXES = ["os"]  # an operator's mistake must not make os:system runnable
    assert manage(capsys, "register_model", "m", "os:system", "--dataset", "d", "--owner", "alice") == (
        1,
        "",
        "CommandError: adapter path 'os:system' points into Python's standard library ('os'), not to an "
        "adapter package\n",
    )
    assert not Study.objects.exists() and not RegisteredModel.objects.exists()


def test_launch_study_names_a_missing_or_undecodable_spec(alice, tmp_path, capsys):
    missing = tmp_path / "spec.yaml"
    assert manage(capsys, "launch_study", str(missing), "--owner", "alice") == (
        1,
        "",
        f"CommandError: {missing}: no such file\n",
    )
    latin1 = tmp_path / "latin1.yaml"
    latin1.write_bytes(b"name: my study\ndescription: caf\xe9\n")
    assert manage(capsys, "launch_study", str(latin1), "--owner", "alice", "--check") == (
        1,
        "",
        f"CommandError: {latin1}: line 2: not UTF-8 text (byte 0xe9)\n",
    )


def test_launch_study_refuses_a_name_the_owner_already_uses_ignoring_case(alice, tmp_path, capsys):
    study = build_study(alice, tmp_path, name="ux draft ok", launch=False)
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        f"name: 'UX Draft OK '\ndataset: {study.dataset.name}\nmodel: {study.model.name}\n"
        "arms:\n  - {name: baseline, views: []}\n  - {name: ig, views: [heatmap]}\n"
        "items: {n: 4, per_participant: 2, raters_per_item: 1}\n"
    )
    assert manage(capsys, "launch_study", str(spec), "--owner", "alice") == (
        1,
        "",
        "CommandError: name: you already have a study named 'UX Draft OK' ('ux draft ok': names ignore case "
        "and surrounding spaces); choose another name\n",
    )
    assert Study.objects.filter(owner=alice).count() == 1


def test_launch_study_says_in_one_line_that_precompute_failed(alice, tmp_path, capsys, settings):
    """The model's adapter cannot be imported, so the first precompute chunk fails: one line
    naming the error and where the traceback is, exit status 1, the study left a draft."""
    dataset_import(owner=alice, name="shapes", jsonl_path=write_dataset(tmp_path / "data", 8))
    make_model(alice, name="toy")  # its adapter path, tests.toy:Adapter, names no module
    spec = tmp_path / "spec.json"
    spec.write_text(
        json.dumps(
            {
                "name": "failing",
                "dataset": "shapes",
                "model": "toy",
                "arms": [{"name": "baseline", "views": []}, {"name": "ig", "views": ["heatmap"]}],
                "items": {"n": 4, "per_participant": 2, "raters_per_item": 1},
                "candidates": {"mode": "top_k", "k": 2, "distractors": 0},
                "phases": {"survey": False},
            }
        )
    )
    status, out, err = manage(capsys, "launch_study", str(spec), "--owner", "alice")
    study = Study.objects.get(name="failing")
    assert status == 1
    assert out == f"Created study {study.pk} '{study.name}' ({study.public_id}).\n"
    page = f"{settings.SITE_URL}/studies/{study.pk}/"
    assert err == (
        "CommandError: precompute failed, the study stays a draft: workers.engine.adapter.AdapterError: adapter "
        "tests.toy:Adapter: import failed: ModuleNotFoundError: No module named 'tests.toy' (the full traceback is "
        f"on the study page, {page}; -v 2 shows the traceback)\n"
    )
    assert "Traceback" not in err and study.status == Study.Status.DRAFT


def _relabelled_toy_dataset(*, owner, directory, mapping):

    from tests.builders.report_adapters import LinearAdapter

    directory.mkdir(parents=True, exist_ok=True)
    items = LinearAdapter().make_items(10, seed=7)
    for item in items:
        item["label"] = mapping.get(item["label"], item["label"])
    path = directory / "toy.jsonl"
    path.write_text("".join(json.dumps(item) + "\n" for item in items))
    return dataset_import(owner=owner, name="toy", jsonl_path=path)


def test_register_model_refuses_a_model_whose_labels_are_none_of_the_gold_answers(alice, tmp_path, settings, capsys):
    settings.MMEVAL_ADAPTER_PREFIXES = [*settings.MMEVAL_ADAPTER_PREFIXES, "tests."]
    _relabelled_toy_dataset(owner=alice, directory=tmp_path, mapping={"neg": "no", "pos": "yes"})
    argv = ["register_model", "m", "tests.builders.report_adapters:CheckpointedAdapter", "--dataset", "toy"]
    status, out, err = manage(capsys, *argv, "--owner", "alice")
    assert (status, out) == (1, "")
    assert err.startswith("CommandError: none of the gold answers of dataset 'toy' is one of the model's labels: ")
    assert "unknown answers 'yes' (6 items), 'no' (4 items); the model's labels: 'neg', 'pos'" in err
    assert len(err.splitlines()) == 1 and not RegisteredModel.objects.exists()


def test_register_model_warns_with_counts_on_a_partial_overlap(alice, tmp_path, settings, capsys):
    settings.MMEVAL_ADAPTER_PREFIXES = [*settings.MMEVAL_ADAPTER_PREFIXES, "tests."]
    dataset = _relabelled_toy_dataset(owner=alice, directory=tmp_path, mapping={"pos": "yes"})
    n_yes = dataset.items.filter(gold_label="yes").count()
    argv = ["register_model", "m", "tests.builders.report_adapters:CheckpointedAdapter", "--dataset", "toy"]
    status, out, err = manage(capsys, *argv, "--owner", "alice")
    assert status == 0 and out.startswith("Registered 'm'")
    assert err == (
        f"warning: {n_yes} of 10 items of dataset 'toy' have a gold answer the model cannot give: "
        f"'yes' ({n_yes} items); the model counts as wrong on them\n"
    )
