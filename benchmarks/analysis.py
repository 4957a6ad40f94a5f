"""Timing of the analysis on a synthetic study: ``python -m benchmarks.analysis [n_responses]``.

The study: 4 arms, 50 test items per participant out of 1,000 items (fewer below 100,000
responses: one item per 100 responses, at least 50), 10 pretest items per participant, 5 % of
participants excluded; ``n_responses`` counts test-phase responses (pretest rows come on top).
``analyze`` runs every statistic twice (all rows, after exclusions), without the mixed model; the
mixed model is timed on its own, on a study of ``mixed_model_responses`` test responses (10,000 by
default) of the same design.
"""

from __future__ import annotations

import io
import os
import sys
import time
from collections.abc import Callable
from typing import Any

from annotations.analysis import (
    agreement,
    analyze,
    arm_effects,
    arm_permutation_test,
    calibration,
    load_responses_csv,
    mixed_model,
    responses_prepare,
    responses_simulate,
    simulation_accuracy,
    simulation_gain,
    study_report,
    time_on_task,
)

__all__ = ["benchmark"]

ARMS = {"none": 0.0, "saliency": 0.4, "interaction": 0.8, "both": 1.0}


def _timed(function: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    value = function()
    return time.perf_counter() - start, value


def _synthetic_items(df, *, seed: int):
    """An items table with 8 random automatic-metric columns, one row per item."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    ids = sorted(df["item"].unique())
    frame = pd.DataFrame({"item": ids})
    for name in (
        "deletion_auc",
        "insertion_auc",
        "infidelity",
        "sensitivity_max",
        "interaction_strength",
        "interaction_dividend",
        "modality_share:image",
        "modality_share:text",
    ):
        frame[f"metric:integrated_gradients:{name}"] = rng.random(len(ids))
    return frame


def _study(n_responses: int, *, seed: int):
    items_per_participant = 50
    per_arm = max(2, n_responses // (len(ARMS) * items_per_participant))
    return responses_simulate(
        seed=seed,
        arm_logits=ARMS,
        n_participants_per_arm=per_arm,
        n_items=min(1000, max(60, n_responses // 100)),
        items_per_participant=items_per_participant,
        pretest_items_per_participant=10,
        exclusion_rate=0.05,
    )


def benchmark(
    n_responses: int = 100_000,
    *,
    seed: int = 0,
    n_resamples: int = 1000,
    n_permutations: int = 1000,
    mixed_model_responses: int = 10_000,
) -> dict:
    """Time each step on a synthetic study with ``n_responses`` test responses; seconds per step.

    Returns ``{"n_rows", "n_test_responses", "n_participants", "n_items", "n_resamples",
    "n_permutations", "mixed_model_responses", "cpus", "seconds": {step: seconds}}``.
    """
    seconds: dict[str, float] = {}
    seconds["simulate"], df = _timed(lambda: _study(n_responses, seed=seed))
    seconds["responses_prepare"], prepared = _timed(lambda: responses_prepare(df))
    seconds["simulation_accuracy"], _ = _timed(
        lambda: simulation_accuracy(prepared, seed=seed, n_resamples=n_resamples)
    )
    seconds["arm_effects (bootstrap + permutations)"], _ = _timed(
        lambda: arm_effects(
            prepared, baseline="none", seed=seed, n_resamples=n_resamples, n_permutations=n_permutations
        )
    )
    seconds["arm_permutation_test"], _ = _timed(
        lambda: arm_permutation_test(prepared, baseline="none", seed=seed, n_permutations=n_permutations)
    )
    seconds["simulation_gain"], _ = _timed(lambda: simulation_gain(prepared, seed=seed, n_resamples=n_resamples))
    seconds["agreement (alpha, kappa, Dawid-Skene)"], _ = _timed(lambda: agreement(prepared))
    seconds["calibration"], _ = _timed(lambda: calibration(prepared))
    seconds["time_on_task"], _ = _timed(lambda: time_on_task(prepared))
    seconds["analyze (both sections, no mixed model)"], _ = _timed(
        lambda: analyze(
            df, baseline="none", seed=seed, n_resamples=n_resamples, n_permutations=n_permutations, mixed_model=False
        )
    )
    items = _synthetic_items(df, seed=seed)
    rules = {"max_attention_failures": 0, "max_fast_share": 0.5, "min_median_rt_ms": 1500, "min_test_responses": 5}
    seconds["study_report (rules re-applied, 8 metrics vs accuracy)"], _ = _timed(
        lambda: study_report(
            df,
            baseline="none",
            seed=seed,
            n_resamples=n_resamples,
            n_permutations=n_permutations,
            exclusion_rules=rules,
            default_fast_rt_ms=800,
            items=items,
            mixed_model=False,
        )
    )
    small = _study(mixed_model_responses, seed=seed)
    seconds[f"mixed_model ({int((small['phase'] == 'test').sum()):,} responses)"], _ = _timed(
        lambda: mixed_model(small, baseline="none", seed=seed)
    )
    seconds["to_csv + load_responses_csv"], _ = _timed(lambda: load_responses_csv(io.StringIO(df.to_csv(index=False))))
    test = df[df["phase"] == "test"]
    return {
        "n_rows": int(len(df)),
        "n_test_responses": int(len(test)),
        "n_participants": int(df["participant"].nunique()),
        "n_items": int(test["item"].nunique()),
        "n_resamples": n_resamples,
        "n_permutations": n_permutations,
        "mixed_model_responses": mixed_model_responses,
        "cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "seconds": seconds,
    }


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    n_responses = int(args[0]) if args else 100_000
    result = benchmark(n_responses)
    print(
        f"{result['n_test_responses']:,} test responses ({result['n_rows']:,} rows), "
        f"{result['n_participants']:,} participants, {result['n_items']:,} items, "
        f"{result['n_resamples']} resamples, {result['n_permutations']} permutations, {result['cpus']} CPU(s)"
    )
    width = max(len(step) for step in result["seconds"])
    print(f"{'step':<{width}}  seconds")
    for step, value in result["seconds"].items():
        print(f"{step:<{width}}  {value:7.3f}")


if __name__ == "__main__":
    main()
