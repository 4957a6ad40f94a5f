"""Chance: the simulation accuracy of a blind guess, a per-item quantity.

Each test answer ``r`` chose among the ``k_r`` candidates shown for its item (the length of its
``candidate_order``; items offer only their valid answers, so ``k_r`` varies: 2 for a yes/no
question, more for a colour). A blind guess is right with probability ``c_r = 1/k_r``. Per arm
(and pooled):

* ``chance`` = mean of ``c_r`` over the answers, the accuracy expected of guessing;
* ``above_chance`` = accuracy − chance;
* ``chance_corrected`` = ``Σ (y_r − c_r) / Σ (1 − c_r)``: 0 at chance, 1 when every answer is
  right (Cohen's correction with each answer's own chance; with one ``k`` for all answers it is
  ``(accuracy − 1/k) / (1 − 1/k)``).

Answers whose ``k`` is unknown (no ``candidate_order``) are left out of these figures and counted
in ``n_unknown``. Sums run over sorted distinct ``k`` so the result does not depend on row order.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .responses import responses_prepare

__all__ = ["chance_levels", "chance_table"]


def chance_table(*, correct: np.ndarray, n_candidates: np.ndarray) -> dict:
    """Chance figures of one group of answers (module doc).

    Args:
        correct: simulation correctness ``y`` per answer, shape ``(n,)``.
        n_candidates: ``k`` per answer, shape ``(n,)``; NaN or < 1 where unknown.

    Returns ``{"n", "n_unknown", "accuracy", "chance", "above_chance", "chance_corrected",
    "candidates": {k: answers}}`` (``None`` where undefined).
    """
    y = np.asarray(correct, dtype=np.float64).reshape(-1)
    k = np.asarray(n_candidates, dtype=np.float64).reshape(-1)
    known = np.isfinite(k) & (k >= 1)
    n = int(known.sum())
    counts: dict[int, int] = {}
    hits = chance = slack = 0.0
    for value in np.unique(k[known]):
        at = known & (k == value)
        count = int(at.sum())
        counts[int(value)] = count
        hits += float(y[at].sum())
        chance += count / value
        slack += count * (1.0 - 1.0 / value)
    accuracy = hits / n if n else None
    mean_chance = chance / n if n else None
    return {
        "n": n,
        "n_unknown": int(len(y) - n),
        "accuracy": accuracy,
        "chance": mean_chance,
        "above_chance": None if accuracy is None else accuracy - mean_chance,
        "chance_corrected": (hits - chance) / slack if slack > 0 else None,
        "candidates": {str(size): count for size, count in counts.items()},
    }


def chance_levels(df: pd.DataFrame) -> dict:
    """Chance per arm and pooled over the test answers (attention checks left out):
    ``{"per_arm": {arm: table}, "pooled": table}`` with ``table`` as in :func:`chance_table`."""
    return _chance_levels(responses_prepare(df))


def _chance_levels(prepared: pd.DataFrame) -> dict:
    # Attention checks are phase "attention" after responses_prepare, so they are left out here.
    rows = prepared[(prepared["phase"] == "test") & prepared["correct_simulation"].notna()]

    def table(group: pd.DataFrame) -> dict:
        return chance_table(
            correct=group["correct_simulation"].to_numpy(dtype=bool),
            n_candidates=group["n_candidates"].to_numpy(dtype=np.float64),
        )

    return {
        "per_arm": {str(arm): table(group) for arm, group in rows.groupby("condition", sort=True)},
        "pooled": table(rows),
    }
