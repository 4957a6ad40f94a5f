"""The counterfactual card of the dashboard (``templates/researcher/dashboard/_counterfactual.html``):
rows of the stored report's counterfactual section, formatted; no computation."""

from __future__ import annotations

from typing import Any

EDIT_TITLES = {
    "all": "All edits",
    "modality_baseline": "A modality replaced by its baseline",
    "top_k_removed": "Most attributed parts removed",
    "word_swap": "A word swapped",
    "adapter": "The model's own edits",
}


def _pct(value, signed: bool = False) -> str:
    if value is None:
        return "—"
    return f"{100 * value:+.1f}%".replace("-", "−") if signed else f"{100 * value:.1f}%"


def _interval(value: dict | None, signed: bool = False) -> str:
    if not value or value.get("ci_low") is None:
        return ""
    return f"[{_pct(value['ci_low'], signed)}, {_pct(value['ci_high'], signed)}]"


def counterfactual_view(report: dict, section: str) -> dict[str, Any]:
    """Per edit kind and arm: counterfactual simulation accuracy, its effect against the
    baseline, the pre-test accuracy and the pre→post change (with its difference from the
    baseline's), each with its 95% interval."""
    block = report["counterfactual"][section]
    baseline = report["study"]["baseline"]
    out: dict[str, Any] = {
        "report": report,
        "baseline": baseline,
        "counterfactual": True,
        "exclusions": report["exclusions"],
        "other_section": "all" if section == "after_exclusions" else "after_exclusions",
        "counterfactual_unavailable": block.get("unavailable"),
    }
    if block.get("unavailable"):
        return out
    rows = []
    for kind, part in [("all", block["all"]), *sorted(block["by_edit_kind"].items())]:
        arms = [a for a in [baseline, *sorted(a for a in part["arms"] if a != baseline)] if a in part["arms"]]
        for k, arm in enumerate(arms):
            values, effect = part["arms"][arm], part["effects"].get(arm, {})
            rows.append(
                {
                    "kind": EDIT_TITLES.get(kind, kind) if k == 0 else "",
                    "arm": arm,
                    "accuracy": _pct(values["accuracy"]["estimate"]),
                    "interval": _interval(values["accuracy"]),
                    "n": values["accuracy"]["n_responses"],
                    "effect": _pct(effect["accuracy"]["estimate"], True)
                    if effect
                    else "baseline"
                    if arm == baseline
                    else "—",
                    "effect_interval": _interval(effect.get("accuracy"), True),
                    "pretest": _pct(values["pretest_accuracy"]),
                    "change": _pct(values["pre_post_change"]["estimate"], True),
                    "change_interval": _interval(values["pre_post_change"], True),
                    "change_effect": _pct(effect["pre_post_change"]["estimate"], True) if effect else "",
                    "change_effect_interval": _interval(effect.get("pre_post_change"), True),
                }
            )
    out["counterfactual_rows"] = rows
    out["counterfactual_data"] = {"n_responses": block["all"]["n_responses"], "n_items": block["all"]["n_items"]}
    return out
