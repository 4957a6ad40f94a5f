"""SVG figures of a finished model report (matplotlib's object API and SVG canvas: no pyplot, no
global state, no torch, no Django). Output is deterministic for the same report (fixed hash salt,
no date). Each function takes the report JSON and returns an SVG document, or ``""`` when the
report has nothing to draw for it. :func:`report_figures` draws them all.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from typing import Any

import matplotlib
from matplotlib.backends.backend_svg import FigureCanvasSVG
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter

__all__ = ["FIGURES", "report_figures"]

_RC = {"svg.hashsalt": "mmeval-report", "svg.fonttype": "none", "font.size": 8, "text.parse_math": False}


def _svg(figure: Figure) -> str:
    FigureCanvasSVG(figure)
    buffer = io.StringIO()
    figure.savefig(buffer, format="svg", metadata={"Date": None})
    return buffer.getvalue()


def _whisker(axes, x: float, block: Mapping[str, Any] | None, color: str = "black") -> None:
    if block and block.get("estimate") is not None and block.get("ci_low") is not None:
        est = block["estimate"]
        axes.errorbar(
            x, est, yerr=[[est - block["ci_low"]], [block["ci_high"] - est]], color=color, capsize=3, linewidth=0.9
        )


def reliance_svg(report: Mapping[str, Any]) -> str:
    """Per modality: the share of answers that change when it is replaced by its baseline, and by
    another item's (permutation), with 95% intervals; and its mean modality share."""
    modalities = report["modalities"]
    reliance = report["reliance"]
    with matplotlib.rc_context(_RC):
        figure = Figure(figsize=(max(4.2, 1.6 * len(modalities) + 2), 3.4))
        axes = figure.add_subplot()
        bars = [
            ("replaced by its baseline", "C0", lambda m: reliance["baseline"][m]["reliance"]),
            ("taken from another item", "C1", lambda m: (reliance["permutation"].get(m) or {}).get("reliance")),
            ("mean modality share", "C2", lambda m: reliance["share"][m].get("interval")),
        ]
        width = 0.8 / len(bars)
        for k, (label, color, get) in enumerate(bars):
            xs, heights, blocks = [], [], []
            for i, m in enumerate(modalities):
                block = get(m)
                if block and block.get("estimate") is not None:
                    xs.append(i + (k - 1) * width)
                    heights.append(block["estimate"])
                    blocks.append(block)
            axes.bar(xs, heights, width=width, color=color, label=label)
            for x, block in zip(xs, blocks):
                _whisker(axes, x, block)
        axes.axhline(0, color="0.5", linewidth=0.6)
        axes.set_xticks(range(len(modalities)), labels=modalities)
        axes.set_ylabel("share of answers that change / modality share")
        axes.set_title("Modality reliance")
        axes.legend(loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=3, fontsize=7, frameon=False)
        figure.tight_layout()
        return _svg(figure)


def distributions_svg(report: Mapping[str, Any]) -> str:
    """Histograms: the modality share of every item, and the 2x2 interaction dividend."""
    reliance = report["reliance"]
    panels = [("Modality share per item", reliance["share"]), ("Interaction dividend per item", reliance["dividend"])]
    panels = [(title, dists) for title, dists in panels if any(d.get("histogram") for d in dists.values())]
    if not panels:
        return ""
    with matplotlib.rc_context(_RC):
        figure = Figure(figsize=(4.0 * len(panels), 3.0))
        for k, (title, dists) in enumerate(panels, start=1):
            axes = figure.add_subplot(1, len(panels), k)
            for colour, (name, dist) in enumerate(dists.items()):
                if not dist.get("histogram"):
                    continue
                edges, counts = dist["histogram"]["edges"], dist["histogram"]["counts"]
                label, colour = f"{name} (median {dist['median']:.2f})", f"C{colour}"
                if len(counts) == 1:  # every item at one value (rounding apart): its bin is too thin to see
                    axes.vlines((edges[0] + edges[1]) / 2, 0, counts[0], colors=colour, label=label, linewidth=2.4)
                else:
                    axes.stairs(counts, edges, label=label, linewidth=1.2, color=colour)
            axes.set_title(title)
            axes.set_ylabel("items")
            axes.legend(fontsize=7, frameon=False)
        figure.tight_layout()
        return _svg(figure)


def types_svg(report: Mapping[str, Any]) -> str:
    """Interaction types: shares of the items, overall and in each slice and its rest."""
    order = ["conflict", "dominance", "complementarity", "none"]
    groups = [("all items", report["interactions"]["types"]["counts"])]
    for s in report["slices"]:
        groups += [
            (f"{s['name']} ({s['n']})", s["type_counts"]["slice"]),
            (f"rest of {s['name']} ({s['n_rest']})", s["type_counts"]["rest"]),
        ]
    colors = {"conflict": "C3", "dominance": "C0", "complementarity": "C2", "none": "0.75"}
    with matplotlib.rc_context(_RC):
        figure = Figure(figsize=(6.0, 0.45 * len(groups) + 1.4))
        axes = figure.add_subplot()
        for row, (_, counts) in enumerate(groups):
            total = max(1, sum(counts.values()))
            left = 0.0
            for t in order:
                width = counts.get(t, 0) / total
                axes.barh(row, width, left=left, color=colors[t], label=t if row == 0 else None)
                left += width
        axes.set_yticks(range(len(groups)), labels=[g[0] for g in groups])
        axes.invert_yaxis()
        axes.set_xlim(0, 1)
        axes.set_xlabel("share of items")
        axes.set_title("Interaction types (M2Lens)")
        axes.legend(loc="upper center", bbox_to_anchor=(0.5, -0.25), ncol=4, fontsize=7, frameon=False)
        figure.tight_layout()
        return _svg(figure)


def slices_svg(report: Mapping[str, Any]) -> str:
    """Each slice minus the rest of the data, with 95% intervals: accuracy, answers kept without
    each modality and with another item's, and each modality's share."""
    if not report["slices"]:
        return ""
    columns = ["correct"] + [
        f"{kind}:{m}" for m in report["modalities"] for kind in ("agree_without", "agree_perm", "share")
    ]
    names = {"correct": "accuracy"}
    for m in report["modalities"]:
        names[f"agree_without:{m}"] = f"kept without {m}"
        names[f"agree_perm:{m}"] = f"kept with another item's {m}"
        names[f"share:{m}"] = f"{m} share"
    with matplotlib.rc_context(_RC):
        figure = Figure(figsize=(6.0, 0.32 * len(columns) * len(report["slices"]) + 1.5))
        axes = figure.add_subplot()
        labels, row = [], 0
        for k, s in enumerate(report["slices"]):
            for column in columns:
                block = (s["stats"].get(column) or {}).get("difference")
                if not block or block.get("estimate") is None:
                    continue
                color = f"C{k % 10}"
                axes.plot([block["estimate"]], [row], "o", color=color, markersize=4)
                if block.get("ci_low") is not None:
                    axes.plot([block["ci_low"], block["ci_high"]], [row, row], color=color, linewidth=1.2)
                labels.append(f"{s['name']}: {names[column]}")
                row += 1
        if not labels:
            return ""
        axes.axvline(0, color="0.5", linewidth=0.8, linestyle="--")
        axes.set_yticks(range(len(labels)), labels=labels)
        axes.invert_yaxis()
        axes.set_xlabel("slice minus the rest (95% interval)")
        axes.set_title("Bias slices against the rest of the data")
        figure.tight_layout()
        return _svg(figure)


def robustness_svg(report: Mapping[str, Any]) -> str:
    """Accuracy (or agreement without gold labels) against Gaussian noise in embedding space
    per modality, and against the adapter's own corruptions when it has them."""
    robustness = report["robustness"] or {}
    panels = [(k, robustness[k]) for k in ("noise", "corruption") if (robustness.get(k) or {}).get("curves")]
    if not panels:
        return ""
    with matplotlib.rc_context(_RC):
        figure = Figure(figsize=(4.2 * len(panels), 3.3))
        for k, (kind, block) in enumerate(panels, start=1):
            axes = figure.add_subplot(1, len(panels), k)
            measure = block["measure"]
            for target, curve in block["curves"].items():
                values = curve[measure]
                if values is None:
                    continue
                label = f"{target} (relative {curve['relative']:.2f}"
                label += f", effective {curve['effective']:+.2f})" if "effective" in curve else ")"
                axes.plot(
                    block["levels"],
                    values,
                    marker="o",
                    markersize=3,
                    linewidth=1.2,
                    label=label,
                    linestyle="--" if target == "all" else "-",
                )
            axes.set_xlabel("noise (x the modality's spread)" if kind == "noise" else "corruption severity")
            axes.set_ylabel(measure)
            axes.set_ylim(-0.02, 1.02)
            axes.set_title("Gaussian noise in embedding space" if kind == "noise" else "Adapter's corruptions")
            axes.legend(fontsize=6.5, frameon=False, loc="lower left")
        figure.tight_layout()
        return _svg(figure)


def learning_svg(report: Mapping[str, Any]) -> str:
    """Training (dashed) and validation (solid) loss per checkpoint, of the full model and of
    each modality alone; and the OGR between consecutive checkpoints."""
    learning = report.get("learning") or {}
    checkpoints = learning.get("checkpoints") or []
    if not checkpoints:
        return ""
    xs = [c["step"] if c.get("step") is not None else k for k, c in enumerate(checkpoints)]
    heads = list(checkpoints[0]["losses"]["val"])
    intervals = learning.get("intervals") or []
    with matplotlib.rc_context(_RC):
        figure = Figure(figsize=(8.4 if intervals else 4.4, 3.3))
        axes = figure.add_subplot(1, 2 if intervals else 1, 1)
        for k, head in enumerate(heads):
            color = f"C{k}"
            axes.plot(
                xs,
                [c["losses"]["val"][head] for c in checkpoints],
                color=color,
                marker="o",
                markersize=3,
                label=f"{head} (validation)",
            )
            if all("train" in c["losses"] for c in checkpoints):
                axes.plot(
                    xs,
                    [c["losses"]["train"][head] for c in checkpoints],
                    color=color,
                    linestyle="--",
                    linewidth=1,
                    label=f"{head} (training)",
                )
        axes.set_xlabel("training step" if all(c.get("step") is not None for c in checkpoints) else "checkpoint")
        axes.set_ylabel("cross-entropy")
        axes.set_title("Loss of the full model and of each modality alone")
        axes.legend(fontsize=6.5, frameon=False)
        if intervals:
            axes = figure.add_subplot(1, 2, 2)
            labels = [f"{i['from']}→{i['to']}" for i in intervals]
            width = 0.8 / len(heads)
            for k, head in enumerate(heads):
                values = [i["heads"].get(head, {}).get("ogr") for i in intervals]
                axes.bar(
                    [x + (k - (len(heads) - 1) / 2) * width for x in range(len(intervals))],
                    [v if v is not None else 0.0 for v in values],
                    width=width,
                    color=f"C{k}",
                    label=head,
                )
            axes.axhline(0, color="0.5", linewidth=0.6)
            axes.set_yscale("symlog", linthresh=1.0)  # a small ΔG makes a huge ratio: keep the rest readable
            axes.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))  # no mathtext here
            axes.set_xticks(range(len(intervals)), labels=labels, rotation=30, ha="right")
            axes.set_ylabel("OGR = ΔO / ΔG (symmetric log)")
            axes.set_title("Overfitting-to-generalization ratio")
            axes.legend(fontsize=7, frameon=False)
        figure.tight_layout()
        return _svg(figure)


FIGURES = {
    "reliance": reliance_svg,
    "distributions": distributions_svg,
    "types": types_svg,
    "slices": slices_svg,
    "robustness": robustness_svg,
    "learning": learning_svg,
}


def report_figures(report: Mapping[str, Any]) -> dict[str, str]:
    """Every figure of :data:`FIGURES` that has something to draw, name -> SVG."""
    out = {}
    for name, draw in FIGURES.items():
        svg = draw(report)
        if svg:
            out[name] = svg
    return out
