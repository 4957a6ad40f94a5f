"""The rationale card of the dashboard (annotations/study_tasks.py, task ``rationale``): the
agreement between annotators and the plausibility table of the attribution methods. Formatting
only: the numbers come from the stored report (``services.rationales.study_rationale_report``)."""

from __future__ import annotations

from typing import Any

PLAUSIBILITY_TITLES = {
    "token_f1": "Token F1",
    "iou_f1": "IOU-F1",
    "auprc": "AUPRC",
    "pointing": "Pointing game",
}


def _num(value: float | None) -> str:
    return "—" if value is None else f"{value:.3f}"


def _interval(block: dict | None) -> str:
    if not block or block.get("ci_low") is None:
        return "—"
    return f"[{block['ci_low']:.3f}, {block['ci_high']:.3f}]"


def rationale_view(report: dict) -> dict[str, Any]:
    """The card's context: ``rationale_agreement`` rows, ``rationale_rows`` (method × slice ×
    measure) and what is unavailable."""
    block = report["rationale"]
    agreement = block["agreement"]
    out: dict[str, Any] = {
        "report": report,
        "rationale": True,
        "rationale_data": {**agreement["data"], "n_items_with_rationale": block["n_items_with_rationale"]},
        "rationale_agreement": [
            {
                "measure": "Mean pairwise IoU",
                "estimate": _num(agreement["pairwise_iou"]["estimate"]),
                "interval": _interval(agreement["pairwise_iou"]),
            },
            {
                "measure": "Krippendorff's α (nominal, marked / unmarked units)",
                "estimate": _num(agreement["alpha"]["estimate"]),
                "interval": _interval(agreement["alpha"]),
            },
        ],
        "rationale_unavailable": block["plausibility"].get("unavailable"),
    }
    rows = []
    for method, slices in (block["plausibility"].get("methods") or {}).items():
        for name, measures in slices.items():
            rows.append(
                {
                    "method": method,
                    "slice": name,
                    "n": measures["token_f1"]["n_cases"],
                    "cells": [
                        {
                            "estimate": _num(measures[m]["estimate"]),
                            "interval": _interval(measures[m]),
                            "chance": _num(measures[m]["chance"]),
                        }
                        for m in PLAUSIBILITY_TITLES
                    ],
                }
            )
    out["rationale_rows"] = rows
    out["rationale_lowest"] = [
        {"participant": name, "loo_iou": _num(value["loo_iou"]), "n": value["n_cases"]}
        for name, value in list((block.get("annotators") or {}).items())[:5]
    ]
    out["plausibility_titles"] = list(PLAUSIBILITY_TITLES.values())
    return out
