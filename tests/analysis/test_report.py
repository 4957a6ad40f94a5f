"""analyze(): structure, JSON, CSV round trip, exclusions, consistency with the building blocks."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from annotations.analysis import (
    agreement,
    analyze,
    arm_effects,
    calibration,
    load_responses_csv,
    responses_simulate,
    simulation_accuracy,
    simulation_gain,
    time_on_task,
)
from annotations.analysis.bench import benchmark

FAST = {"n_resamples": 200, "n_permutations": 200}


@pytest.fixture(scope="module")
def study() -> pd.DataFrame:
    return responses_simulate(
        seed=21,
        arm_logits={"none": 0.0, "saliency": 0.5, "multiviz": 1.0},
        n_participants_per_arm=25,
        n_items=30,
        items_per_participant=12,
        pretest_items_per_participant=4,
        exclusion_rate=0.2,
    )


@pytest.fixture(scope="module")
def result(study: pd.DataFrame) -> dict:
    return analyze(study, baseline="none", seed=7, **FAST)


def test_structure_and_json(result: dict) -> None:
    assert set(result) == {"all", "after_exclusions"}
    for section in result.values():
        assert set(section) == {"settings", "data", "simulation_accuracy", "effects", "gain", "agreement",
                                "calibration", "time_on_task"}
        assert set(section["effects"]) == {"saliency", "multiviz"}
    text = json.dumps(result, allow_nan=False)
    assert json.loads(text) == result
    assert result["all"]["settings"]["exclusions_applied"] is False
    assert result["after_exclusions"]["settings"]["exclusions_applied"] is True


def test_csv_round_trip_is_exact(study: pd.DataFrame, result: dict, tmp_path: Path) -> None:
    from_text = analyze(load_responses_csv(io.StringIO(study.to_csv())), baseline="none", seed=7, **FAST)
    assert from_text == result
    path = tmp_path / "responses.csv"
    study.to_csv(path, index=False)
    assert analyze(load_responses_csv(path), baseline="none", seed=7, **FAST) == result


def test_row_order_does_not_matter(study: pd.DataFrame, result: dict) -> None:
    assert analyze(study.sample(frac=1.0, random_state=0), baseline="none", seed=7, **FAST) == result


def test_building_blocks_give_the_same_numbers(study: pd.DataFrame, result: dict) -> None:
    section = result["all"]
    assert section["simulation_accuracy"] == simulation_accuracy(study, seed=7, n_resamples=200)
    assert section["effects"] == arm_effects(study, baseline="none", seed=7, **FAST)
    assert section["gain"] == simulation_gain(study, seed=7, n_resamples=200)
    assert section["agreement"] == json.loads(json.dumps(agreement(study)))
    assert section["calibration"] == calibration(study)
    assert section["time_on_task"] == time_on_task(study)


def test_exclusions_change_the_numbers_as_expected(study: pd.DataFrame, result: dict) -> None:
    """Excluded participants click at random (1/3 correct) and fast; dropping them raises accuracy."""
    everything, kept = result["all"], result["after_exclusions"]
    flagged = study["excluded"]
    test = study["phase"] == "test"
    assert everything["data"]["n_excluded_rows_in_input"] == int(flagged.sum()) > 0
    assert everything["data"]["n_test_responses"] == int(test.sum())
    assert kept["data"]["n_test_responses"] == int((test & ~flagged).sum())
    for arm in ("none", "saliency", "multiviz"):
        rows = study[test & ~flagged & (study["condition"] == arm)]
        assert kept["simulation_accuracy"][arm]["all"]["estimate"] == rows["correct_simulation"].mean()
        assert kept["simulation_accuracy"][arm]["all"]["estimate"] > everything["simulation_accuracy"][arm]["all"][
            "estimate"]
        assert kept["time_on_task"]["per_arm"][arm]["median_rt_ms"] > everything["time_on_task"]["per_arm"][arm][
            "median_rt_ms"]
    # the section equals a fresh analysis of the kept rows (bar the input's exclusion counts)
    fresh = analyze(study[~flagged], baseline="none", seed=7, **FAST)["all"]
    for key in ("simulation_accuracy", "effects", "gain", "agreement", "calibration", "time_on_task"):
        assert kept[key] == fresh[key]


def test_without_exclusion_column_both_sections_agree(study: pd.DataFrame) -> None:
    plain = study[~study["excluded"]].drop(columns="excluded")
    out = analyze(plain, baseline="none", seed=3, n_resamples=50, n_permutations=50)
    for key in ("simulation_accuracy", "effects", "gain", "agreement", "calibration", "time_on_task", "data"):
        assert out["all"][key] == out["after_exclusions"][key]


def test_refusals(study: pd.DataFrame) -> None:
    with pytest.raises(ValueError, match="baseline"):
        analyze(study, baseline="missing", seed=0, n_resamples=10, n_permutations=10)
    two = pd.concat([study, study.assign(study="S2")])
    with pytest.raises(ValueError, match="one study"):
        analyze(two, baseline="none", seed=0, n_resamples=10, n_permutations=10)
    with pytest.raises(ValueError, match="confidence"):
        analyze(study.assign(confidence=7), baseline="none", seed=0, n_resamples=10, n_permutations=10)
    with pytest.raises(ValueError, match="lacks columns"):
        analyze(study.drop(columns="guess"), baseline="none", seed=0, n_resamples=10, n_permutations=10)


def test_benchmark_runs_small() -> None:
    out = benchmark(4_000, n_resamples=20, n_permutations=20)
    assert out["n_test_responses"] == 4_000
    assert out["seconds"]["analyze (both sections)"] > 0


def test_package_imports_neither_django_nor_pyplot() -> None:
    code = (
        "import sys, annotations.analysis, annotations.analysis.plots, annotations.analysis.bench; "
        "bad = [m for m in sys.modules if m == 'django' or m.startswith('django.') or m == 'matplotlib.pyplot']; "
        "assert not bad, bad"
    )
    root = Path(__file__).resolve().parents[2]
    subprocess.run([sys.executable, "-c", code], cwd=root, check=True)
