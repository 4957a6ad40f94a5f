"""CSV tables of a finished model report (the JSON that
:func:`workers.engine.report.quantify.model_report_assemble` returns). No torch, no Django.

Tables (:data:`TABLES`), all in long format so that a script reads each with one loop:

* ``items``: one row per item (answers with and without each modality, shares, dividends,
  interaction type);
* ``summary``: every headline number with its 95% interval (section, subject, measure);
* ``slices``: every slice against the rest, per compared column;
* ``robustness``: accuracy and agreement per noise or corruption level;
* ``learning``: losses per checkpoint, split and head, then OGR and weights per interval.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

__all__ = ["TABLES", "report_table", "report_table_csv"]

TABLES: tuple[str, ...] = ("items", "summary", "slices", "robustness", "learning")

Row = dict[str, Any]


def _interval_row(section: str, subject: str, measure: str, block: Mapping[str, Any] | None) -> Row:
    block = block or {}
    return {
        "section": section,
        "subject": subject,
        "measure": measure,
        "estimate": block.get("estimate"),
        "ci_low": block.get("ci_low"),
        "ci_high": block.get("ci_high"),
        "n": block.get("n"),
    }


def _value_row(section: str, subject: str, measure: str, value: Any) -> Row:
    return {
        "section": section,
        "subject": subject,
        "measure": measure,
        "estimate": value,
        "ci_low": None,
        "ci_high": None,
        "n": None,
    }


def _summary(report: Mapping[str, Any]) -> list[Row]:
    rows = [_interval_row("model", "all items", "accuracy", report["summary"]["accuracy"])]
    reliance = report["reliance"]
    for m in report["modalities"]:
        base = reliance["baseline"][m]
        rows += [
            _interval_row("reliance", m, "accuracy without it (baseline)", base["accuracy"]),
            _interval_row("reliance", m, "answers kept without it (baseline)", base["agreement"]),
            _interval_row("reliance", m, "reliance (baseline)", base["reliance"]),
            _interval_row("reliance", m, "accuracy with it alone", reliance["only"][m]["accuracy"]),
            _interval_row("reliance", m, "answers kept with it alone", reliance["only"][m]["agreement"]),
        ]
        if m in reliance["permutation"]:
            perm = reliance["permutation"][m]
            rows += [
                _interval_row("reliance", m, "accuracy with another item's (permutation)", perm["accuracy"]),
                _interval_row("reliance", m, "answers kept with another item's (permutation)", perm["agreement"]),
                _interval_row("reliance", m, "reliance (permutation)", perm["reliance"]),
            ]
        rows.append(
            _interval_row(
                "reliance", m, f"mean modality share ({reliance['share_method']})", reliance["share"][m].get("interval")
            )
        )
    for pair, dist in reliance["dividend"].items():
        rows += [
            _value_row("interaction", pair, "mean dividend", dist.get("mean")),
            _value_row("interaction", pair, "median dividend", dist.get("median")),
        ]
    for pair, dist in report["interactions"]["strength"].items():
        rows.append(_value_row("interaction", pair, "mean interaction strength", dist.get("mean")))
    types = report["interactions"]["types"]
    for name, count in types["counts"].items():
        rows.append({**_value_row("interaction type", name, "items", count), "n": report["summary"]["n_items"]})
    for m, count in types["dominant"].items():
        rows.append(
            {**_value_row("interaction type", f"dominance by {m}", "items", count), "n": report["summary"]["n_items"]}
        )
    emap = report["interactions"].get("emap") or {}
    if "gap" in emap:
        rows += [
            _interval_row("emap", "+".join(emap["modalities"]), "EMAP gap", emap["gap"]),
            _value_row("emap", "+".join(emap["modalities"]), "model accuracy", emap["model_accuracy"]),
            _value_row("emap", "+".join(emap["modalities"]), "projection accuracy", emap["projection_accuracy"]),
        ]
    rows += _pid_rows(report["interactions"].get("pid") or {})
    noise = (report["robustness"] or {}).get("noise")
    if noise:
        for target, curve in noise["curves"].items():
            rows += [
                _value_row("robustness", target, "relative robustness (noise)", curve["relative"]),
                _value_row("robustness", target, "effective robustness (noise)", curve["effective"]),
            ]
    corruption = (report["robustness"] or {}).get("corruption") or {}
    for target, curve in (corruption.get("curves") or {}).items():
        rows.append(_value_row("robustness", target, "relative robustness (corruption)", curve["relative"]))
    for m, missing in report["robustness"]["missing"].items():
        rows.append(_value_row("robustness", m, "accuracy with it missing", missing["accuracy"]))
    rows += _bias_summary(report.get("bias") or {})
    overall = (report.get("learning") or {}).get("overall") or {}
    for head, weight in (overall.get("weights") or {}).items():
        rows.append(
            _value_row("learning", head, f"Gradient-Blending weight ({overall['from']} to {overall['to']})", weight)
        )
    return rows


def _bias_summary(bias: Mapping[str, Any]) -> list[Row]:
    """The bias section's numbers (docs/MODEL_REPORT.md, "Social bias")."""
    if not bias or bias.get("skipped"):
        return []
    rows = []
    for name, block in bias["per_group"].items():
        rows += [
            _interval_row("bias", f"group {name}", "accuracy (Wilson)", block["accuracy"]),
            _interval_row("bias", f"group {name}", "error (Wilson)", block["error"]),
            _interval_row("bias", f"group {name}", "accuracy minus the other items'", block["accuracy_gap"]),
        ]
    amplification = bias.get("amplification") or {}
    if "estimate" in amplification:
        rows.append(_interval_row("bias", "all items", "bias amplification", amplification))
        rows += [
            _value_row(
                "bias",
                f"{p['output']} & group {p['group']}",
                "b(answer, group) answers minus reference",
                p["difference"],
            )
            for p in amplification.get("pairs") or []
        ]
    leakage = bias.get("leakage") or {}
    if "model" in leakage:
        rows += [
            _interval_row("bias", "all items", "model leakage", leakage["model"]),
            _interval_row("bias", "all items", "data leakage", leakage["data"]),
            _interval_row("bias", "all items", "model minus data leakage", leakage["difference"]),
        ]
    for method, block in (bias.get("evidence") or {}).items():
        if not isinstance(block, Mapping) or "all" not in block:
            continue
        for subject, part in [("all items", block["all"]), *((f"group {g}", p) for g, p in block["per_group"].items())]:
            rows += [
                _interval_row("bias", subject, f"attribution mass inside the evidence ({method})", part["mass_inside"]),
                _interval_row("bias", subject, f"pointing game ({method})", part["pointing"]),
            ]
    return rows


def _slices(report: Mapping[str, Any]) -> list[Row]:
    rows = []
    for s in report["slices"]:
        for column, parts in s["stats"].items():
            for part in ("slice", "rest", "difference"):
                block = parts[part]
                rows.append(
                    {
                        "slice": s["name"],
                        "expression": s["expression"],
                        "column": column,
                        "part": part,
                        "estimate": block["estimate"],
                        "ci_low": block["ci_low"],
                        "ci_high": block["ci_high"],
                        "n": block["n"],
                    }
                )
    return rows


def _robustness(report: Mapping[str, Any]) -> list[Row]:
    rows = []
    noise = (report["robustness"] or {}).get("noise")
    if noise:
        for target, curve in noise["curves"].items():
            for k, level in enumerate(noise["levels"]):
                sigma = noise["sigma"].get(target, [None] * len(noise["levels"]))[k] if target != "all" else None
                rows.append(
                    {
                        "kind": "noise",
                        "target": target,
                        "level": level,
                        "sigma": sigma,
                        "accuracy": curve["accuracy"][k],
                        "agreement": curve["agreement"][k],
                    }
                )
    corruption = (report["robustness"] or {}).get("corruption") or {}
    for target, curve in (corruption.get("curves") or {}).items():
        for k, level in enumerate(corruption["levels"]):
            rows.append(
                {
                    "kind": "corruption",
                    "target": target,
                    "level": level,
                    "sigma": None,
                    "accuracy": (curve["accuracy"] or [None] * len(corruption["levels"]))[k],
                    "agreement": (curve["agreement"] or [None] * len(corruption["levels"]))[k],
                }
            )
    return rows


def _learning(report: Mapping[str, Any]) -> list[Row]:
    learning = report.get("learning") or {}
    rows: list[Row] = []
    for checkpoint in learning.get("checkpoints") or []:
        for split, losses in checkpoint["losses"].items():
            for head, loss in losses.items():
                rows.append(
                    {
                        "row": "loss",
                        "checkpoint": checkpoint["name"],
                        "step": checkpoint["step"],
                        "to": None,
                        "split": split,
                        "head": head,
                        "value": loss,
                    }
                )
    for interval in [*(learning.get("intervals") or []), *([learning["overall"]] if learning.get("overall") else [])]:
        for head, numbers in interval["heads"].items():
            for measure in ("delta_o", "delta_g", "ogr"):
                rows.append(
                    {
                        "row": measure,
                        "checkpoint": interval["from"],
                        "step": None,
                        "to": interval["to"],
                        "split": None,
                        "head": head,
                        "value": numbers[measure],
                    }
                )
            weights = interval.get("weights") or {}
            rows.append(
                {
                    "row": "blending_weight",
                    "checkpoint": interval["from"],
                    "step": None,
                    "to": interval["to"],
                    "split": None,
                    "head": head,
                    "value": weights.get(head),
                }
            )
    for failure in learning.get("failed") or []:
        rows.append(
            {
                "row": "failed",
                "checkpoint": failure["name"],
                "step": None,
                "to": None,
                "split": None,
                "head": None,
                "value": failure["error"],
            }
        )
    return rows


def report_table(report: Mapping[str, Any], name: str) -> list[Row]:
    """The rows of table ``name`` (one of :data:`TABLES`); raises ``ValueError`` for others."""
    if name == "items":
        return [dict(row) for row in report["items"]]
    builders = {"summary": _summary, "slices": _slices, "robustness": _robustness, "learning": _learning}
    if name not in builders:
        raise ValueError(f"no table named {name!r}; tables: {', '.join(TABLES)}")
    return builders[name](report)


def _header(rows: Sequence[Row]) -> list[str]:
    seen: dict[str, None] = {}
    for row in rows:
        for key in row:
            seen.setdefault(key, None)
    return list(seen)


def _cell(value: Any) -> Any:
    """Empty for None, floats in full, text defused against spreadsheet formulas (a leading
    ``'`` before ``=``, ``+``, ``-``, ``@``, tab or carriage return, as the study exports do)."""
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, str) and value and value[0] in "=+-@\t\r":
        return "'" + value
    return value


def report_table_csv(report: Mapping[str, Any], name: str) -> str:
    """Table ``name`` as CSV text (empty cells for undefined values)."""
    rows = report_table(report, name)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    header = _header(rows)
    writer.writerow(header)
    for row in rows:
        writer.writerow([_cell(row.get(key)) for key in header])
    return buffer.getvalue()


def rows_of(report: Mapping[str, Any]) -> Iterable[tuple[str, list[Row]]]:
    """Every table, in :data:`TABLES` order."""
    for name in TABLES:
        yield name, report_table(report, name)


#: The PID's parts as the summary table and the page name them (``unique_1`` is the pair's first).
PID_PARTS = ("redundancy", "unique_1", "unique_2", "synergy", "total")


def pid_part_names(modalities: Sequence[str]) -> dict[str, str]:
    """``redundancy`` -> "redundancy (bits)", ``unique_1`` -> "uniqueness of <first> (bits)"..."""
    first, second = modalities
    return {
        "redundancy": "redundancy (bits)",
        "unique_1": f"uniqueness of {first} (bits)",
        "unique_2": f"uniqueness of {second} (bits)",
        "synergy": "synergy (bits)",
        "total": f"I({first}, {second}; target) (bits)",
    }


def _pid_rows(pid: Mapping[str, Any]) -> list[Row]:
    if "model" not in pid:
        return []
    pair = "+".join(pid["modalities"])
    names = pid_part_names(pid["modalities"])
    rows = []
    for target, subject in (("dataset", f"{pair} about the gold labels"), ("model", f"{pair} about the answers")):
        block = pid.get(target) or {}
        if "total" not in block:
            continue
        rows += [_interval_row("pid", subject, names[part], block[part]) for part in PID_PARTS]
    return rows
