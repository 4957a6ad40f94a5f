"""Shared builders for the analysis tests (pure pandas; no Django)."""

from __future__ import annotations

import pandas as pd
import pytest


def make_rows(rows: list[tuple]) -> pd.DataFrame:
    """Rows of (condition, participant, item, model_prediction, gold_label, guess, confidence, rt_ms, phase)."""
    frame = pd.DataFrame(
        rows,
        columns=[
            "condition",
            "participant",
            "item",
            "model_prediction",
            "gold_label",
            "guess",
            "confidence",
            "rt_ms",
            "phase",
        ],
    )
    frame.insert(0, "study", "S1")
    frame["correct_simulation"] = frame["guess"] == frame["model_prediction"]
    frame["created_at"] = pd.Timestamp("2025-01-01T00:00:00Z") + pd.to_timedelta(range(len(frame)), unit="s")
    return frame


@pytest.fixture
def hand_df() -> pd.DataFrame:
    """A tiny study whose statistics are worked out by hand in the tests.

    Arm "none" (baseline): p1 answers i1 (correct), i2 (wrong); p2 answers i1 and i2 (correct).
    Arm "expl": p3 and p4 answer i1 and i2, all correct.
    Item i1: model right (cat = gold); item i2: model wrong (dog vs gold cat).
    Pretest (item i3): none 1/2 correct, expl 0/2. Learning rows (no confidence) are ignored.
    """
    rows = [
        ("none", "p1", "i1", "cat", "cat", "cat", 5, 1000, "test"),
        ("none", "p1", "i2", "dog", "cat", "cat", 1, 2000, "test"),
        ("none", "p2", "i1", "cat", "cat", "cat", 4, 3000, "test"),
        ("none", "p2", "i2", "dog", "cat", "dog", 3, 4000, "test"),
        ("expl", "p3", "i1", "cat", "cat", "cat", 5, 1500, "test"),
        ("expl", "p3", "i2", "dog", "cat", "dog", 5, 2500, "test"),
        ("expl", "p4", "i1", "cat", "cat", "cat", 2, 3500, "test"),
        ("expl", "p4", "i2", "dog", "cat", "dog", 2, 4500, "test"),
        ("none", "p1", "i3", "cat", "cat", "dog", 3, 800, "pretest"),
        ("none", "p2", "i3", "cat", "cat", "cat", 3, 800, "pretest"),
        ("expl", "p3", "i3", "cat", "cat", "dog", 3, 800, "pretest"),
        ("expl", "p4", "i3", "cat", "cat", "dog", 3, 800, "pretest"),
        ("none", "p1", "i4", "cat", "cat", "dog", None, 500, "learning"),
        ("expl", "p3", "i4", "cat", "cat", "dog", None, 500, "learning"),
    ]
    return make_rows(rows)
