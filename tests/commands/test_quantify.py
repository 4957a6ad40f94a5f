"""``manage.py quantify``: the model report written into a folder, and the one-line errors a user
sees for bad input (a slice's unknown field or malformed expression names the field and the
column; a checkpoint that fails to load is reported and the rest go on)."""

from __future__ import annotations

import csv
import json

import pytest

from annotations.models import ModelReport
from tests.builders.model_reports import FAST_OPTIONS, allow_test_adapters, toy  # noqa: F401 (fixtures)
from tests.commandline import manage

pytestmark = pytest.mark.django_db(transaction=True)  # commands close the connections when they end


@pytest.fixture
def toy_options(toy, tmp_path):
    options = tmp_path / "options.json"
    options.write_text(json.dumps(FAST_OPTIONS))
    return options


def test_quantify_writes_the_report_tables_and_figures(toy_options, tmp_path, capsys):
    options = toy_options
    slices = tmp_path / "slices.yaml"
    slices.write_text("fields:\n  sign: {from: label}\nslices:\n  positive: sign == pos\n")
    out = tmp_path / "out"
    status, stdout, stderr = manage(
        capsys,
        "quantify",
        "--model",
        "linear",
        "--dataset",
        "toy",
        "--out",
        str(out),
        "--slices",
        str(slices),
        "--options",
        str(options),
        "--checkpoints",
        "all",
        "--no-progress",
    )
    assert status == 0, stderr
    report = ModelReport.objects.get()
    assert report.status == "done"
    lines = stdout.splitlines()
    assert lines[0] == f"Model report {report.pk}: 'linear' on 'toy' (30 items)."
    assert any(line.startswith("  slice positive: ") for line in lines)
    assert "learning: 3 checkpoint(s), 1 failed: broken (OSError: checkpoint file broken.pt is truncated" in stdout
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted(
        [
            "report.json",
            "items.csv",
            "summary.csv",
            "slices.csv",
            "robustness.csv",
            "learning.csv",
            "reliance.svg",
            "distributions.svg",
            "types.svg",
            "slices.svg",
            "robustness.svg",
            "learning.svg",
        ]
    )
    assert json.loads((out / "report.json").read_text()) == report.result
    with (out / "items.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 30 and {"id", "prediction", "interaction", "share:a", "dividend:a+b"} <= set(rows[0])
    assert (out / "reliance.svg").read_text().startswith("<?xml")


def test_a_bad_slice_names_the_field_and_the_column(toy, tmp_path, capsys):
    slices = tmp_path / "slices.yaml"
    slices.write_text("slices:\n  bias: label == pos and sgn == 1\n")
    assert manage(
        capsys,
        "quantify",
        "--model",
        "linear",
        "--dataset",
        "toy",
        "--out",
        str(tmp_path / "out"),
        "--slices",
        str(slices),
    ) == (
        1,
        "",
        f"CommandError: --slices {slices}: slices.bias, column 18: unknown field 'sgn'; fields: a, b, "
        "confidence, correct, dominant, id, interaction, label, prediction\n",
    )
    slices.write_text("slices:\n  bias: label in [pos, neg\n")
    status, _, stderr = manage(
        capsys,
        "quantify",
        "--model",
        "linear",
        "--dataset",
        "toy",
        "--out",
        str(tmp_path / "out"),
        "--slices",
        str(slices),
    )
    assert (status, stderr) == (
        1,
        f"CommandError: --slices {slices}: slices.bias, column 19: expected ',' or ']' in the list, got 'the end' "
        "(field 'label')\n",
    )
    slices.write_text("slices: [unclosed\n")
    status, _, stderr = manage(
        capsys,
        "quantify",
        "--model",
        "linear",
        "--dataset",
        "toy",
        "--out",
        str(tmp_path / "out"),
        "--slices",
        str(slices),
    )
    assert status == 1 and stderr.startswith(f"CommandError: --slices {slices}: the slices file is not valid YAML")
    assert not ModelReport.objects.exists()


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--model", "nope", "--dataset", "toy"], "--model 'nope': alice has no such registered model; theirs: linear"),
        (["--model", "linear", "--dataset", "nope"], "--dataset 'nope': alice has no such dataset; theirs: toy"),
        (
            ["--model", "linear", "--dataset", "toy", "--checkpoints", ","],
            "--checkpoints: give 'all' or checkpoint names",
        ),
    ],
)
def test_unknown_names_are_one_line(toy, tmp_path, capsys, argv, message):
    assert manage(capsys, "quantify", *argv, "--out", str(tmp_path / "out")) == (1, "", f"CommandError: {message}\n")


def test_bad_options_name_the_option(toy, tmp_path, capsys):
    options = tmp_path / "bad.yaml"
    options.write_text("noise_levels: [0.5, 1]\n")
    status, _, stderr = manage(
        capsys,
        "quantify",
        "--model",
        "linear",
        "--dataset",
        "toy",
        "--out",
        str(tmp_path / "out"),
        "--options",
        str(options),
    )
    assert (status, stderr) == (1, "CommandError: options.noise_levels: must start at 0 and increase, got [0.5, 1]\n")


def test_a_failing_report_is_one_line_with_a_hint(toy_options, tmp_path, capsys, monkeypatch):
    from workers.engine.report import quantify

    options = toy_options

    def broken(ctx, state):
        raise RuntimeError("the permutation stage broke (deliberate test failure)")

    monkeypatch.setitem(quantify._STAGE_FUNCTIONS, "permutation", broken)
    status, _, stderr = manage(
        capsys,
        "quantify",
        "--model",
        "linear",
        "--dataset",
        "toy",
        "--out",
        str(tmp_path / "out"),
        "--options",
        str(options),
        "--no-progress",
    )
    assert (status, stderr) == (
        1,
        "CommandError: the report failed: RuntimeError: the permutation stage broke "
        "(deliberate test failure) (-v 2 shows the traceback)\n",
    )
    assert ModelReport.objects.get().status == "failed"
