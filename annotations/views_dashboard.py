"""The researcher's dashboard of one study: analysis plots and tables, participant quality, live
progress and the CSV downloads. Visible to the study's owner and collaborators only (404 for
anyone else). Numbers come from ``services.analysis`` (cached by data version); plots are drawn
server-side as SVG by ``annotations.analysis.plots`` (imported when a dashboard is drawn, so that
loading the URLs does not load matplotlib); the only script polls the progress."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.html import format_html_join
from django.utils.safestring import SafeString, mark_safe
from django.views.decorators.http import require_GET

from annotations.downloads import study_export_response
from annotations.selectors.exports import EXPORTS
from annotations.selectors.rationale_exports import RATIONALE_EXPORTS
from annotations.selectors.studies import study_progress
from annotations.services.analysis import SECTIONS, AnalysisUnavailable
from annotations.services.dashboard import study_dashboard_latest, study_dashboard_state
from annotations.study_tasks import COUNTERFACTUAL, RATIONALE, VERIFICATION
from annotations.views_access import study_for_researcher
from annotations.views_dashboard_counterfactual import counterfactual_view
from annotations.views_dashboard_judging import judging_view
from annotations.views_dashboard_rationale import rationale_view

SUBSET_TITLES = {"all": "all items", "model_correct": "model right", "model_incorrect": "model wrong"}
EXPORT_TITLES = {
    "responses": "Responses CSV",
    "items": "Items CSV (predictions, metrics)",
    "participants": "Participants CSV",
    "summary": "Summary CSV (analysis numbers)",
    "codebook": "Codebook CSV (what each column means)",
}
MAX_PARTICIPANT_ROWS = 500


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.1f}%"


def _num(value: float | None, digits: int = 3) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def _interval(block: dict | None) -> str:
    if not block or block.get("ci_low") is None:
        return "—"
    return f"[{_pct(block['ci_low'])}, {_pct(block['ci_high'])}]"


def _accuracy_rows(block: dict, baseline: str) -> list[dict[str, Any]]:
    rows = []
    arms = [baseline, *sorted(a for a in block["simulation_accuracy"] if a != baseline)]
    for arm in arms:
        if arm not in block["simulation_accuracy"]:
            continue
        for subset, title in SUBSET_TITLES.items():
            acc = block["simulation_accuracy"][arm][subset]
            effect = block["effects"].get(arm, {}).get(subset)
            rows.append(
                {
                    "arm": arm,
                    "subset": title,
                    "is_first": subset == "all",
                    "estimate": _pct(acc["estimate"]),
                    "interval": _interval(acc),
                    "n": acc["n_responses"],
                    "participants": acc["n_participants"],
                    "effect": _pct(effect["estimate"]) if effect else "baseline" if arm == baseline else "—",
                    "effect_interval": _interval(effect) if effect else "",
                    "p_value": _num(effect.get("p_value"), 4) if effect else "",
                }
            )
    return rows


def _chance_rows(block: dict) -> list[dict[str, Any]]:
    """Per arm and pooled: the per-item chance averaged over the answers, accuracy above it and
    chance-corrected (``annotations.analysis.chance``)."""
    found = block.get("chance") or {}
    tables = [*sorted((found.get("per_arm") or {}).items()), *([("all arms", found["pooled"])] if found else [])]
    return [
        {
            "arm": arm,
            "n": table["n"],
            "chance": _pct(table["chance"]),
            "above": _pct(table["above_chance"]),
            "corrected": _num(table["chance_corrected"]),
            "sizes": ", ".join(
                f"{count}×{size}" for size, count in sorted(table["candidates"].items(), key=lambda p: int(p[0]))
            ),
        }
        for arm, table in tables
    ]


def _agreement_rows(block: dict) -> list[dict[str, Any]]:
    rows = []
    for arm, found in block["agreement"].items():
        dawid = found.get("dawid_skene") or {}
        rows.append(
            {
                "arm": arm,
                "alpha_guess": _num(found["alpha_nominal_guess"]),
                "alpha_confidence": _num(found["alpha_ordinal_confidence"]),
                "kappa": _num(found["fleiss_kappa"]),
                "raters": f"{found['raters_per_item_min']}–{found['raters_per_item_max']}",
                "consensus_matches_model": _pct(dawid.get("consensus_matches_model")),
                "majority_matches_model": _pct(dawid.get("majority_matches_model")),
                "reasons": "; ".join(f"{k}: {v}" for k, v in found.get("reasons", {}).items()),
            }
        )
    return rows


def _calibration_rows(block: dict) -> list[dict[str, Any]]:
    if not block.get("calibration"):
        return []
    tables = dict(block["calibration"]["per_arm"])
    tables["all arms"] = block["calibration"]["pooled"]
    return [
        {
            "arm": arm,
            "n": table["n"],
            "accuracy": _pct(table["accuracy"]),
            "forecast": _pct(table["mean_forecast"]),
            "brier": _num(table["brier"]),
            "levels": [_pct(level["accuracy"]) for level in table["levels"]],
        }
        for arm, table in tables.items()
    ]


def _time_rows(block: dict) -> list[dict[str, Any]]:
    if not block.get("time_on_task"):
        return []
    tables = dict(block["time_on_task"]["per_arm"])
    tables["all arms"] = block["time_on_task"]["pooled"]
    return [
        {
            "arm": arm,
            "n": t["n"],
            "median": _num(t["median_rt_ms"], 0),
            "q1": _num(t["q1_rt_ms"], 0),
            "q3": _num(t["q3_rt_ms"], 0),
            "iqr": _num(t["iqr_rt_ms"], 0),
        }
        for arm, t in tables.items()
    ]


def _gain_rows(block: dict) -> list[dict[str, Any]]:
    return [
        {
            "arm": arm,
            "gain": _pct(g["estimate"]),
            "interval": _interval(g),
            "pretest": _pct(g["pretest_accuracy"]),
            "test": _pct(g["test_accuracy"]),
        }
        for arm, g in (block.get("gain") or {}).items()
        if g
    ]


def _mixed_model_view(block: dict) -> dict[str, Any] | None:
    fit = block.get("mixed_model")
    if not fit:
        return None
    components = fit["variance_components"]
    return {
        "formula": fit["formula"],
        "n": fit["n_responses"],
        "converged": fit["converged"],
        "baseline_accuracy": _pct(fit["intercept"]["accuracy"]),
        "arms": [
            {
                "arm": arm,
                "odds_ratio": _num(a["odds_ratio"], 2),
                "interval": f"[{_num(a['ci_low'], 2)}, {_num(a['ci_high'], 2)}]",
                "p_value": _num(a["p_value"], 4),
            }
            for arm, a in sorted(fit["arms"].items())
        ],
        "components": [
            {"name": name, "sd": _num(c["sd"], 2), "icc": _num(c["icc"], 2)} for name, c in components.items()
        ],
    }


def _sequential_view(sequential: dict | None) -> dict[str, Any] | None:
    if not sequential:
        return None
    plan = sequential["plan"]
    out: dict[str, Any] = {
        "spending": {"obrien_fleming": "O'Brien–Fleming", "pocock": "Pocock"}.get(
            plan.get("spending"), plan.get("spending")
        ),
        "alpha": plan.get("alpha", 0.05),
        "unavailable": sequential.get("unavailable"),
    }
    if out["unavailable"]:
        return out
    arms = sorted(sequential["comparisons"])
    out.update(
        {
            "status": sequential["status"],
            "may_stop": sequential["may_stop"],
            "arms": arms,
            "alpha_each": _num(sequential["alpha_per_comparison"], 4),
            "looks": [
                {
                    "look": look["look"],
                    "n": look["participants_per_arm"],
                    "reached": look["reached"],
                    "boundary": _num(look["boundary"], 3),
                    "z": [
                        _num((look["comparisons"].get(arm) or {}).get("z"), 2) if look["reached"] else ""
                        for arm in arms
                    ],
                    "crossed": [bool((look["comparisons"].get(arm) or {}).get("crossed")) for arm in arms],
                }
                for look in sequential["looks"]
            ],
        }
    )
    return out


def _power_view(power: dict | None) -> dict[str, Any] | None:
    if not power:
        return None
    if "unavailable" in power:
        return {"unavailable": power["unavailable"]}
    from annotations.analysis.power import power_capacity_text

    capacity = power.get("capacity") or {}
    return {
        **power,
        "capacity_text": power_capacity_text(capacity=capacity, needed_per_arm=power["needed_per_arm"])
        if capacity.get("capped")
        else "",
        "effect_points": f"{100 * power['effect']:.0f}",
        "power_pct": _pct(power["power"]),
        "baseline": _pct(power["baseline_accuracy"]),
        "participant_sd": _num(power["participant_sd"], 2),
        "item_sd": _num(power["item_sd"], 2),
        "chance_pct": _pct(power["chance"]) if power.get("chance") is not None else "",
    }


def _metric_name(column: str) -> str:
    parts = column.split(":")
    return f"{':'.join(parts[2:])} ({parts[1]})" if len(parts) >= 3 else column


def _correlation_rows(correlation: dict | None) -> list[dict[str, Any]]:
    if not correlation:
        return []
    rows = []
    for metric in correlation["metrics"]:
        pooled = correlation["pooled_explanation_arms"].get(metric, {})
        gains = {arm: found.get(metric, {}) for arm, found in correlation["gain_vs_baseline"].items()}
        rows.append(
            {
                "metric": _metric_name(metric),
                "n_items": pooled.get("n_items", 0),
                "rho_pooled": _num(pooled.get("spearman_rho"), 2),
                "p_pooled": _num(pooled.get("spearman_p"), 3),
                "gains": [
                    (arm, _num(g.get("spearman_rho"), 2), _num(g.get("spearman_p"), 3)) for arm, g in gains.items()
                ],
            }
        )
    return rows


def _participant_rows(participants: list[dict]) -> SafeString:
    """The participant table's rows as HTML, built here and not by a template loop: up to
    ``MAX_PARTICIPANT_ROWS`` rows of eleven cells were most of the dashboard request's time."""
    if not participants:
        return mark_safe('<tr><td colspan="11">No participants yet.</td></tr>')
    return format_html_join(
        "\n",
        '<tr class="{}"><td><code>{}</code></td><td class="arm">{}</td><td>{}</td><td>{}{}</td>'
        '<td class="num">{}</td><td class="num">{}</td><td class="num">{}</td><td class="num">{}</td>'
        '<td class="num">{}</td><td class="num">{}</td><td>{}</td></tr>',
        (
            (
                "excluded" if p["excluded"] else "",
                p["participant"][:8],
                p["condition"],
                p["platform"],
                p["phase"],
                " (screened out)" if p["screened_out"] else "",
                p["n_test"],
                f"{p['n_attention_passed']}/{p['n_attention']}" if p["n_attention"] else "—",
                _num(p["median_rt_ms"], 0),
                _pct(p["fast_share"]),
                _pct(p["test_accuracy"]),
                p["helpfulness"] or "—",
                "yes: " + (p["exclusion_reasons"] or "").replace(";", ", ") if p["excluded"] else "no",
            )
            for p in participants[:MAX_PARTICIPANT_ROWS]
        ),
    )


def _stage_view(stages: dict | None) -> dict[str, Any] | None:
    """Rows of the cumulative-stage card: each stage's accuracy, confidence and agreement, and
    each increment over the stage before with its interval."""
    if not stages:
        return None
    rows = []
    for stage in stages.get("stages", []):
        acc = (stage.get("accuracy") or {}).get("all")
        conf = stage.get("confidence") or {}
        agree = stage.get("agreement") or {}
        rows.append(
            {
                "arm": stage["arm"],
                "accuracy": _pct(acc["estimate"]) if acc else "—",
                "accuracy_interval": _interval(acc),
                "right": _pct(((stage.get("accuracy") or {}).get("model_correct") or {}).get("estimate")),
                "wrong": _pct(((stage.get("accuracy") or {}).get("model_incorrect") or {}).get("estimate")),
                "confidence": _num(conf.get("estimate"), 2),
                "confidence_interval": "—"
                if conf.get("ci_low") is None
                else f"[{conf['ci_low']:.2f}, {conf['ci_high']:.2f}]",
                "alpha": _num(agree.get("alpha_nominal_guess")),
            }
        )
    increments = []
    for step in stages.get("increments", []):
        acc = step["accuracy"]["all"]
        conf = step["confidence"]
        increments.append(
            {
                "step": f"{step['from']} → {step['to']}",
                "accuracy": _pct(acc["estimate"]),
                "accuracy_interval": _interval(acc),
                "p_value": _num(acc.get("p_value"), 4),
                "confidence": _num(conf.get("estimate"), 2),
                "confidence_interval": "—"
                if conf.get("ci_low") is None
                else f"[{conf['ci_low']:+.2f}, {conf['ci_high']:+.2f}]",
                "alpha": _num(step["agreement"].get("alpha_nominal_guess")),
            }
        )
    return {"rows": rows, "increments": increments, "unavailable": stages.get("unavailable") or {}}


RELIANCE_TITLES = {
    "verdict_accuracy": "Verdict accuracy",
    "over_reliance": "Over-reliance: P(accept | model wrong)",
    "under_reliance": "Under-reliance: P(reject | model right)",
    "trust": "Trust: P(accept)",
    "trust_gap": "Trust gap: P(accept) − model accuracy",
}


def _verification_view(report: dict, section: str) -> dict[str, Any]:
    """The verification card's rows: per arm and measure, the estimate with its interval and the
    effect against the baseline with its interval."""
    block = report["verification"][section]
    baseline = report["study"]["baseline"]
    out: dict[str, Any] = {
        "report": report,
        "baseline": baseline,
        "verification": True,
        "exclusions": report["exclusions"],
        "other_section": "all" if section == "after_exclusions" else "after_exclusions",
        "verification_unavailable": block.get("unavailable"),
    }
    if block.get("unavailable"):
        return out
    rows = []
    arms = [a for a in [baseline, *sorted(a for a in block["arms"] if a != baseline)] if a in block["arms"]]
    for arm in arms:
        for measure, title in RELIANCE_TITLES.items():
            value = block["arms"][arm][measure]
            effect = block["effects"].get(arm, {}).get(measure)
            signed = measure == "trust_gap"
            rows.append(
                {
                    "arm": arm,
                    "measure": title,
                    "is_first": measure == "verdict_accuracy",
                    "estimate": _signed_pct(value["estimate"]) if signed else _pct(value["estimate"]),
                    "interval": _interval(value),
                    "n": value["n_responses"],
                    "participants": value["n_participants"],
                    "effect": _signed_pct(effect["estimate"]) if effect else "baseline" if arm == baseline else "—",
                    "effect_interval": _interval(effect) if effect else "",
                }
            )
        rows[-1]["model_accuracy"] = _pct(block["arms"][arm]["model_accuracy"])
    out["verification_rows"] = rows
    out["verification_data"] = {**block["data"], "share_model_wrong_text": _pct(block["data"]["share_model_wrong"])}
    return out


def _signed_pct(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:+.1f}%".replace("-", "−")


def _age_text(seconds: float) -> str:
    if seconds < 90:
        return f"{max(0, round(seconds))} s"
    if seconds < 90 * 60:
        return f"{round(seconds / 60)} min"
    return f"{round(seconds / 3600)} h"


def _analysis_state(latest: dict[str, Any]) -> dict[str, Any]:
    computed_at = latest["computed_at"]
    return {
        "computed_at": computed_at,
        "computed_at_iso": computed_at.isoformat() if computed_at else "",
        "age": _age_text(latest["age_seconds"]) if computed_at else "",
        "n_responses": latest["n_responses"],
        "updating": latest["updating"],
        "error": latest["error"],
    }


@login_required
@require_GET
def study_dashboard(request, pk: int):
    study = study_for_researcher(request, pk)
    section = request.GET.get("section", "after_exclusions")
    if section not in SECTIONS:
        section = "after_exclusions"
    latest = study_dashboard_latest(study=study)  # never computes the analysis (services/dashboard.py)
    data = latest["data"] or {"participants": [], "points": {}}
    context: dict[str, Any] = {
        "study": study,
        "section": section,
        "progress": study_progress(study=study),
        "exports": [
            (what, EXPORT_TITLES[what], reverse("study-dashboard-export", args=[study.pk, what])) for what in EXPORTS
        ],
        "participant_rows": _participant_rows(data["participants"]),
        "n_participants": len(data["participants"]),
        "max_participants": MAX_PARTICIPANT_ROWS,
        "unavailable": data.get("unavailable"),
        "pending": latest["data"] is None,
        "analysis_state": _analysis_state(latest),
    }
    report = data.get("report")
    if report is not None and "judging" in report:  # rating and preference
        context.update(judging_view(report, section))
    elif report is not None and report.get("task") == VERIFICATION:
        context.update(_verification_view(report, section))
    elif report is not None and report.get("task") == COUNTERFACTUAL:
        context.update(counterfactual_view(report, section))
    elif report is not None and report.get("task") == RATIONALE:
        context.update(rationale_view(report))
    elif report is not None:
        baseline = report["study"]["baseline"]
        block = report["analysis"][section]
        correlation = (report.get("metrics_vs_human") or {}).get(section)
        # Drawn in the background with the result (services/dashboard.py): matplotlib takes
        # seconds on a loaded machine. A result stored before the drawings existed has none.
        svgs = (data.get("svgs") or {}).get(section) or {"accuracy": "", "calibration": "", "metrics": ""}
        context.update(
            {
                "report": report,
                "baseline": baseline,
                "block": block,
                "exclusions": report["exclusions"],
                # matplotlib escapes every text it writes into the SVG
                "svg": {name: mark_safe(svg) for name, svg in svgs.items()},
                "accuracy_rows": _accuracy_rows(block, baseline),
                "agreement_rows": _agreement_rows(block),
                "calibration_rows": _calibration_rows(block),
                "chance_rows": _chance_rows(block),
                "answer_options": report.get("answer_options"),
                "time_rows": _time_rows(block),
                "gain_rows": _gain_rows(block),
                "correlation_rows": _correlation_rows(correlation),
                "other_section": "all" if section == "after_exclusions" else "after_exclusions",
                "analysis_warnings": block.get("warnings", []),
                "missing": {
                    key: reason for key, reason in block.get("unavailable", {}).items() if reason != "not requested"
                },
                "mixed": _mixed_model_view(block),
                "sequential": _sequential_view(report.get("sequential")),
                "power": _power_view(data.get("power")),
                "stages": _stage_view((report.get("stages") or {}).get(section)),
            }
        )
    return render(request, "researcher/dashboard.html", context)


@login_required
@require_GET
def study_dashboard_progress(request, pk: int):
    """The live part of the dashboard, polled by its script: progress, and the state of the
    background analysis (``analysis``: ``computed_at``, ``n_responses``, ``updating``)."""
    study = study_for_researcher(request, pk)
    return JsonResponse({**study_progress(study=study), "analysis": study_dashboard_state(study=study)})


@login_required
@require_GET
def study_dashboard_export(request, pk: int, what: str):
    study = study_for_researcher(request, pk)
    if what not in (*EXPORTS, *RATIONALE_EXPORTS):
        raise Http404(f"no export named {what!r}")
    try:
        return study_export_response(study=study, what=what, filename_prefix="study")
    except (ValueError, AnalysisUnavailable) as exc:
        messages.error(request, f"Cannot export {what}: {exc}")
        return redirect("study-dashboard", pk=study.pk)
