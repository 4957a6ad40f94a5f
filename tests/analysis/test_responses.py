"""CSV parsing and the canonical response frame."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest

from annotations.analysis import analyze, load_responses_csv, responses_prepare

from .conftest import make_rows


def _tricky() -> pd.DataFrame:
    """Labels that pandas would read as missing, zero-padded string ids, learning rows without confidence."""
    frame = make_rows(
        [
            ("none", "007", "1", "NA", "NA", "NA", 5, 1200, "test"),
            ("none", "007", "2", "None", "null", "null", 2, 900, "test"),
            ("none", "008", "1", "NA", "NA", "None", 3, 1500, "test"),
            ("none", "008", "2", "None", "null", "None", 4, 1000, "test"),
            ("expl", "009", "1", "NA", "NA", "NA", 4, 2000, "test"),
            ("expl", "009", "2", "None", "null", "None", 4, 2100, "test"),
            ("expl", "010", "1", "NA", "NA", "NA", 5, 1700, "test"),
            ("expl", "010", "2", "None", "null", "nan", 1, 1800, "test"),
            ("expl", "010", "3", "None", "null", "None", None, 400, "learning"),
        ]
    )
    frame["confidence"] = frame["confidence"].astype("Int64")
    frame["excluded"] = [False] * 8 + [True]
    return frame


def test_load_keeps_labels_and_ids() -> None:
    frame = _tricky()
    loaded = load_responses_csv(io.StringIO(frame.to_csv()))
    assert list(loaded.columns) == list(frame.columns)
    assert loaded["guess"].tolist() == frame["guess"].tolist()
    assert loaded["participant"].tolist()[:2] == ["007", "007"]
    assert loaded["correct_simulation"].dtype == bool and loaded["excluded"].dtype == bool
    assert str(loaded["confidence"].dtype) == "Int64" and loaded["confidence"].isna().sum() == 1
    assert str(loaded["rt_ms"].dtype) == "Int64"
    assert (loaded["created_at"] == frame["created_at"]).all()
    assert str(loaded["created_at"].dt.tz) == "UTC"


def test_round_trip_with_tricky_labels() -> None:
    frame = _tricky()
    options = {"baseline": "none", "seed": 1, "n_resamples": 50, "n_permutations": 50}
    direct = analyze(frame, **options)
    assert direct == analyze(load_responses_csv(io.StringIO(frame.to_csv(index=False))), **options)
    accuracy = direct["all"]["simulation_accuracy"]
    assert accuracy["none"]["all"]["estimate"] == 0.5  # "NA" == "NA" and "None" == "None" are hits
    assert accuracy["expl"]["all"]["estimate"] == 0.75  # "nan" is a label, not a missing guess


def test_numeric_ids_and_bool_text_agree() -> None:
    frame = _tricky()
    as_ints = frame.assign(participant=frame["participant"].astype(int), item=frame["item"].astype(int))
    as_text = frame.assign(
        correct_simulation=frame["correct_simulation"].map({True: "true", False: "false"}),
        participant=frame["participant"].astype(int).astype(str),
    )
    options = {"baseline": "none", "seed": 1, "n_resamples": 50, "n_permutations": 50}
    assert analyze(as_ints, **options) == analyze(as_text.assign(item=frame["item"]), **options)


def test_prepare_canonical_types() -> None:
    prepared = responses_prepare(_tricky().assign(participant=lambda f: f["participant"].astype(int)))
    assert prepared["participant"].tolist()[0] == "7"
    assert prepared["confidence"].dtype == np.float64
    assert prepared["model_correct"].tolist()[:2] == [True, False]
    with pytest.raises(ValueError, match="not booleans"):
        load_responses_csv(io.StringIO(_tricky().assign(correct_simulation="maybe").to_csv(index=False)))
