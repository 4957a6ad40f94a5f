"""Model report pages: the list with the "new report" form, one report with its figures (SVG drawn
on the server) and tables, its progress (polled while it runs) and its downloads. A researcher
sees only their own reports (404 for anyone else's). Thin: the service checks and starts, the
selectors read, ``workers.engine.report`` draws and tabulates (no torch in the web process)."""

from __future__ import annotations

import json
from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.safestring import mark_safe
from django.views.decorators.http import require_GET, require_POST

from annotations.forms_model_reports import ModelReportForm
from annotations.models import ModelReport
from annotations.selectors.model_reports import (
    model_report_figures,
    model_report_pid_rows,
    model_report_progress,
    user_model_report_list,
    user_model_reports,
)
from annotations.services.model_reports import (
    ModelReportError,
    model_report_create,
    model_report_delete,
    model_report_slices_load,
    model_report_start,
)

TABLE_TITLES = {
    "items": "Items CSV (one row per item)",
    "summary": "Summary CSV (every number, with intervals)",
    "slices": "Slices CSV",
    "robustness": "Robustness CSV",
    "learning": "Learning CSV",
}


def _report_for(request, pk: int) -> ModelReport:
    return get_object_or_404(user_model_reports(user=request.user), pk=pk)


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.1f}%"


def _num(value: float | None, digits: int = 3) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def _ci(block: dict | None, fmt=_pct) -> str:
    if not block or block.get("estimate") is None:
        return "—"
    if block.get("ci_low") is None:
        return fmt(block["estimate"])
    return f"{fmt(block['estimate'])} [{fmt(block['ci_low'])}, {fmt(block['ci_high'])}]"


def _pid_rows(result: dict) -> list[dict[str, str]]:
    """One row per PID part: its name, then the dataset's and the model's value [interval], in bits."""

    def bits(v: float) -> str:
        return f"{v:.3f}"

    return [
        {**row, "dataset": _ci(row["dataset"], bits), "model": _ci(row["model"], bits)}
        for row in model_report_pid_rows(result=result)
    ]


def _reliance_rows(result: dict) -> list[dict[str, str]]:
    reliance = result["reliance"]
    rows = []
    for m in result["modalities"]:
        base, alone, perm = reliance["baseline"][m], reliance["only"][m], reliance["permutation"].get(m) or {}
        share = reliance["share"][m]
        rows.append(
            {
                "modality": m,
                "accuracy_without": _ci(base["accuracy"]),
                "changed_without": _ci(base["reliance"]),
                "accuracy_permuted": _ci(perm.get("accuracy")),
                "changed_permuted": _ci(perm.get("reliance")),
                "accuracy_alone": _ci(alone["accuracy"]),
                "kept_alone": _ci(alone["agreement"]),
                "share": _ci(share.get("interval"), lambda v: f"{v:+.2f}"),
                "share_quartiles": f"{_num(share.get('q25'), 2)} – {_num(share.get('q75'), 2)}",
            }
        )
    return rows


def _slice_rows(result: dict) -> list[dict[str, Any]]:
    columns = [("correct", "accuracy")]
    for m in result["modalities"]:
        columns += [
            (f"agree_without:{m}", f"answers kept without {m}"),
            (f"agree_perm:{m}", f"answers kept with another item's {m}"),
            (f"share:{m}", f"{m} share"),
        ]
    columns += [(f"type:{t}", t) for t in ("conflict", "dominance", "complementarity", "none")]
    out = []
    for s in result["slices"]:
        rows = []
        for column, title in columns:
            parts = s["stats"].get(column)
            if not parts:
                continue
            fmt = (lambda v: f"{v:+.2f}") if column.startswith("share:") else _pct
            diff = parts["difference"]
            rows.append(
                {
                    "title": title,
                    "slice": _ci(parts["slice"], fmt),
                    "rest": _ci(parts["rest"], fmt),
                    "difference": _ci(diff, fmt),
                    "clear": diff.get("ci_low") is not None and (diff["ci_low"] > 0 or diff["ci_high"] < 0),
                }
            )
        out.append({"name": s["name"], "expression": s["expression"], "n": s["n"], "n_rest": s["n_rest"], "rows": rows})
    return out


def _robustness_rows(result: dict) -> list[dict[str, str]]:
    robustness = result["robustness"] or {}
    rows = []
    noise = (robustness.get("noise") or {}).get("curves") or {}
    corruption = (robustness.get("corruption") or {}).get("curves") or {}
    for target in [*result["modalities"], "all"]:
        missing = robustness["missing"].get(target) if target != "all" else None
        rows.append(
            {
                "target": target,
                "missing": _pct(missing["accuracy"]) if missing else "",
                "relative": _num((noise.get(target) or {}).get("relative")),
                "effective": _num((noise.get(target) or {}).get("effective")),
                "corruption": _num((corruption.get(target) or {}).get("relative")) if target in corruption else "",
            }
        )
    return rows


def _bias_rows(result: dict) -> dict[str, Any]:
    """The bias section as the page shows it: per group, then amplification, leakage and the
    evidence measures (each with its interval)."""
    bias = result.get("bias") or {"skipped": "not computed (a report from before the bias section)"}
    if bias.get("skipped"):
        return {"skipped": bias["skipped"]}

    def gap(block: dict) -> str:
        return _ci(block, lambda v: f"{100 * v:+.1f} points")

    groups = [
        {
            "name": name,
            "n": block["n"],
            "accuracy": _ci(block["accuracy"]),
            "error": _ci(block["error"]),
            "gap": gap(block["accuracy_gap"]),
            "clear": (block["accuracy_gap"].get("ci_low") or 0) > 0 or (block["accuracy_gap"].get("ci_high") or 0) < 0,
        }
        for name, block in bias["per_group"].items()
    ]
    amplification = bias.get("amplification") or {}
    leakage = bias.get("leakage") or {}
    evidence = bias.get("evidence") or {}
    methods = [
        {
            "method": method,
            "rows": [
                {
                    "group": "all items",
                    "mass": _ci(block["all"]["mass_inside"]),
                    "pointing": _ci(block["all"]["pointing"]),
                }
            ]
            + [
                {"group": name, "mass": _ci(part["mass_inside"]), "pointing": _ci(part["pointing"])}
                for name, part in block["per_group"].items()
            ],
        }
        for method, block in evidence.items()
        if isinstance(block, dict) and "all" in block
    ]
    return {
        "groups": groups,
        "n_without_group": bias.get("n_without_group", 0),
        "amplification": {
            "skipped": amplification.get("skipped", ""),
            "value": _ci(amplification, lambda v: f"{v:+.3f}") if "estimate" in amplification else "",
            "reference": amplification.get("reference", ""),
            "note": amplification.get("note", ""),
            "pairs": [
                {
                    **p,
                    "b_train": _pct(p["b_train"]),
                    "b_predicted": _pct(p["b_predicted"]),
                    "difference": gap({"estimate": p["difference"]}),
                }
                for p in amplification.get("pairs") or []
            ],
        },
        "leakage": {
            "skipped": leakage.get("skipped", ""),
            "model": _ci(leakage.get("model")),
            "data": _ci(leakage.get("data")),
            "difference": gap(leakage.get("difference")) if leakage.get("difference") else "—",
            "majority": _pct(leakage.get("majority")),
            "folds": leakage.get("folds"),
        },
        "evidence": methods,
        "evidence_skipped": evidence.get("skipped", ""),
        "unmatched": bias.get("evidence_unmatched") or [],
    }


def _learning_rows(result: dict) -> dict[str, Any]:
    learning = result.get("learning") or {}
    checkpoints = learning.get("checkpoints") or []
    heads = list(checkpoints[0]["losses"]["val"]) if checkpoints else []
    loss_rows = [
        {
            "name": c["name"],
            "step": c.get("step") if c.get("step") is not None else "",
            "cells": [(_num(c["losses"].get("train", {}).get(h)), _num(c["losses"]["val"].get(h))) for h in heads],
        }
        for c in checkpoints
    ]
    interval_rows = []
    for interval in [*(learning.get("intervals") or []), *([learning["overall"]] if learning.get("overall") else [])]:
        weights = interval.get("weights") or {}
        interval_rows.append(
            {
                "span": f"{interval['from']} → {interval['to']}",
                "overall": interval is learning.get("overall"),
                "cells": [
                    (_num(interval["heads"].get(h, {}).get("ogr"), 2), _num(weights.get(h), 2) if weights else "—")
                    for h in heads
                ],
            }
        )
    return {
        "heads": heads,
        "losses": loss_rows,
        "intervals": interval_rows,
        "failed": learning.get("failed") or [],
        "skipped": learning.get("skipped", ""),
        "note": learning.get("note", ""),
    }


@login_required
def model_report_list(request):
    form = ModelReportForm(
        request.POST or None,
        user=request.user,
        initial={"model": request.GET.get("model"), "dataset": request.GET.get("dataset")},
    )
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            options = model_report_slices_load(text=data["options"] or "") or {}
            if not isinstance(options, dict):
                raise ModelReportError("options must be a mapping, e.g. {seed: 0, permutations: 3}", field="options")
            if form.checkpoint_names():
                options["checkpoints"] = form.checkpoint_names()
            report = model_report_create(
                owner=request.user,
                model=data["model"],
                dataset=data["dataset"],
                slices=model_report_slices_load(text=data["slices"] or ""),
                options=options,
                train_dataset=data["train_dataset"],
            )
            model_report_start(report=report)
        except ModelReportError as exc:
            form.add_service_error(exc.field, str(exc))
        else:
            return redirect("model-report", pk=report.pk)
    return render(
        request, "researcher/model_reports.html", {"form": form, "reports": user_model_report_list(user=request.user)}
    )


@login_required
@require_GET
def model_report_detail(request, pk: int):
    report = _report_for(request, pk)
    context: dict[str, Any] = {
        "report": report,
        "progress": model_report_progress(report=report),
        "tables": list(TABLE_TITLES.items()),
        "slices_text": json.dumps(report.slices, indent=1) if report.slices else "",
        "options_text": json.dumps(report.options, sort_keys=True),
        "error_line": (report.error.strip().splitlines() or [""])[-1],
    }
    result = report.result
    if report.status == ModelReport.Status.DONE and result:
        context.update(
            {
                "result": result,
                # matplotlib escapes every text it writes into the SVG
                "svg": {name: mark_safe(svg) for name, svg in model_report_figures(report=report).items()},
                "reliance_rows": _reliance_rows(result),
                "slice_rows": _slice_rows(result),
                "robustness_rows": _robustness_rows(result),
                "learning": _learning_rows(result),
                "bias": _bias_rows(result),
                "accuracy": _ci(result["summary"].get("accuracy")),
                "types": result["interactions"]["types"],
                "emap": result["interactions"].get("emap") or {},
                "emap_gap": _ci(
                    (result["interactions"].get("emap") or {}).get("gap"), lambda v: f"{100 * v:+.1f} points"
                ),
                "pid": result["interactions"].get("pid") or {},
                "pid_rows": _pid_rows(result),
                "group_pairs": result["interactions"].get("group_pairs") or {},
                "corruption": (result["robustness"] or {}).get("corruption") or {},
                "noise": (result["robustness"] or {}).get("noise") or {},
            }
        )
    return render(request, "researcher/model_report.html", context)


@login_required
@require_GET
def model_report_progress_json(request, pk: int):
    return JsonResponse(model_report_progress(report=_report_for(request, pk)))


def _finished(request, pk: int) -> ModelReport:
    report = _report_for(request, pk)
    if report.status != ModelReport.Status.DONE or not report.result:
        raise Http404("the report has not finished")
    return report


@login_required
@require_GET
def model_report_json(request, pk: int):
    report = _finished(request, pk)
    response = HttpResponse(json.dumps(report.result, indent=1, allow_nan=False), content_type="application/json")
    response["Content-Disposition"] = f'attachment; filename="model-report-{report.pk}.json"'
    return response


@login_required
@require_GET
def model_report_csv(request, pk: int, table: str):
    from workers.engine.report.tables import TABLES, report_table_csv

    if table not in TABLES:
        raise Http404(f"no table named {table!r}")
    report = _finished(request, pk)
    response = HttpResponse(report_table_csv(report.result, table), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="model-report-{report.pk}-{table}.csv"'
    return response


@login_required
@require_POST
def model_report_delete_view(request, pk: int):
    report = _report_for(request, pk)
    try:
        model_report_delete(report=report)
    except ModelReportError as exc:
        messages.error(request, str(exc))
        return redirect("model-report", pk=pk)
    messages.success(request, f"Deleted report {pk}.")
    return redirect("model-reports")
