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
    mixed_model,
    responses_simulate,
    simulation_accuracy,
    simulation_gain,
    study_report,
    time_on_task,
)
from benchmarks.analysis import benchmark

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
        assert set(section) == {
            "settings",
            "data",
            "simulation_accuracy",
            "effects",
            "gain",
            "agreement",
            "calibration",
            "chance",
            "time_on_task",
            "mixed_model",
            "warnings",
            "unavailable",
        }
        assert section["unavailable"] == {}
        assert set(section["mixed_model"]["arms"]) == {"saliency", "multiviz"}
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
    assert section["mixed_model"] == mixed_model(study, baseline="none", seed=7)


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
        assert (
            kept["simulation_accuracy"][arm]["all"]["estimate"]
            > everything["simulation_accuracy"][arm]["all"]["estimate"]
        )
        assert (
            kept["time_on_task"]["per_arm"][arm]["median_rt_ms"]
            > everything["time_on_task"]["per_arm"][arm]["median_rt_ms"]
        )
    # the section equals a fresh analysis of the kept rows (bar the input's exclusion counts)
    fresh = analyze(study[~flagged], baseline="none", seed=7, **FAST)["all"]
    for key in ("simulation_accuracy", "effects", "gain", "agreement", "calibration", "time_on_task", "mixed_model"):
        assert kept[key] == fresh[key]


def test_without_exclusion_column_both_sections_agree(study: pd.DataFrame) -> None:
    plain = study[~study["excluded"]].drop(columns="excluded")
    out = analyze(plain, baseline="none", seed=3, n_resamples=50, n_permutations=50, mixed_model=False)
    for key in (
        "simulation_accuracy",
        "effects",
        "gain",
        "agreement",
        "calibration",
        "time_on_task",
        "data",
        "mixed_model",
        "unavailable",
    ):
        assert out["all"][key] == out["after_exclusions"][key]


def test_sections_stand_alone_when_the_baseline_is_gone(study: pd.DataFrame) -> None:
    """Every baseline participant excluded: the unexcluded section is whole, the excluded one
    reports accuracy per arm, agreement and the rest, and names why the effects are missing; the
    exclusions table is there."""
    flagged = study.assign(excluded=study["excluded"] | (study["condition"] == "none"))
    report = study_report(flagged, baseline="none", seed=7, mixed_model=False, **FAST)
    everything, kept = report["analysis"]["all"], report["analysis"]["after_exclusions"]
    assert everything["unavailable"] == {"mixed_model": "not requested"}
    assert set(everything["effects"]) == {"saliency", "multiviz"}
    assert kept["effects"] == {}
    assert "baseline arm 'none' has no test-phase responses after exclusions" in kept["unavailable"]["effects"]
    assert set(kept["simulation_accuracy"]) == {"saliency", "multiviz"}
    assert set(kept["agreement"]) == {"saliency", "multiviz"} and kept["calibration"]["per_arm"]
    assert report["exclusions"]["n_excluded"] == flagged.groupby("participant")["excluded"].any().sum()
    assert report["exclusions"]["per_arm"]["none"]["n_excluded"] == 25
    json.dumps(report, allow_nan=False)
    # the mixed model needs the baseline too, and says so
    alone = analyze(flagged, baseline="none", seed=7, **FAST)["after_exclusions"]
    assert alone["mixed_model"] is None and "baseline arm 'none'" in alone["unavailable"]["mixed_model"]


def test_few_clusters_are_flagged(study: pd.DataFrame) -> None:
    small = responses_simulate(seed=3, n_participants_per_arm=8, n_items=12, items_per_participant=6)
    warnings = analyze(small, baseline="baseline", seed=0, mixed_model=False, **FAST)["all"]["warnings"]
    assert any("only 12 items (fewer than 20)" in text for text in warnings)
    assert any("arm 'baseline' has only 8 participants" in text for text in warnings)
    assert analyze(study, baseline="none", seed=0, mixed_model=False, **FAST)["all"]["warnings"] == []


def test_refusals(study: pd.DataFrame) -> None:
    two = pd.concat([study, study.assign(study="S2")])
    with pytest.raises(ValueError, match="one study"):
        analyze(two, baseline="none", seed=0, n_resamples=10, n_permutations=10)
    with pytest.raises(ValueError, match="confidence"):
        analyze(study.assign(confidence=7), baseline="none", seed=0, n_resamples=10, n_permutations=10)
    with pytest.raises(ValueError, match="lacks columns"):
        analyze(study.drop(columns="guess"), baseline="none", seed=0, n_resamples=10, n_permutations=10)


def test_benchmark_runs_small() -> None:
    out = benchmark(4_000, n_resamples=20, n_permutations=20, mixed_model_responses=1_000)
    assert out["n_test_responses"] == 4_000
    assert out["seconds"]["analyze (both sections, no mixed model)"] > 0
    assert out["seconds"]["mixed_model (1,000 responses)"] > 0


def test_package_imports_neither_django_nor_pyplot() -> None:
    code = (
        "import sys, annotations.analysis, annotations.analysis.plots, benchmarks.analysis; "
        "bad = [m for m in sys.modules if m == 'django' or m.startswith('django.') or m == 'matplotlib.pyplot']; "
        "assert not bad, bad"
    )
    root = Path(__file__).resolve().parents[2]
    subprocess.run([sys.executable, "-c", code], cwd=root, check=True)
