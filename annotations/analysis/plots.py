"""SVG figures for the dashboard (matplotlib only: no pyplot, no Django, no global state).

Each function returns an SVG document as a string. Figures are drawn with ``Figure`` and the SVG
canvas, so nothing touches matplotlib's global figure manager or backend; the output is
deterministic (fixed ``svg.hashsalt``, no date metadata) for the same input. Text is drawn
literally (``text.parse_math`` off): an arm named ``$\\foo$`` is a name, not mathtext.
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib
from matplotlib.backends.backend_svg import FigureCanvasSVG
from matplotlib.figure import Figure

__all__ = ["accuracy_bar_svg", "metric_accuracy_svg", "reliability_plot_svg"]

_RC = {"svg.hashsalt": "mmeval", "svg.fonttype": "none", "font.size": 9, "text.parse_math": False}


def _to_svg(figure: Figure) -> str:
    FigureCanvasSVG(figure)
    buffer = io.StringIO()
    figure.savefig(buffer, format="svg", metadata={"Date": None})
    return buffer.getvalue()


def _tables(calibration: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    """Accept ``calibration(df)`` ({"per_arm", "pooled"}), a mapping arm → table, or one table."""
    if "levels" in calibration:
        return {"responses": calibration}
    if "per_arm" in calibration:
        return dict(calibration["per_arm"])
    return dict(calibration)


def reliability_plot_svg(calibration: Mapping[str, Any], *, title: str = "Confidence calibration") -> str:
    """Reliability diagram: forecast probability (x) vs observed simulation accuracy (y).

    One point per confidence level, at the level's mean forecast ``1/k + (c − 1)/4 · (1 − 1/k)``
    (``k`` candidates shown; ``(c − 1)/4`` where unknown, see :mod:`annotations.analysis.calibration`)
    and labelled with the rating ``c``. ``calibration`` is the output of
    :func:`annotations.analysis.calibration` (one line per arm), a mapping arm → table, or a single
    table from :func:`calibration_table`. Marker area grows with the number of responses at the
    level; levels without responses are skipped. The diagonal is perfect calibration. The legend
    gives each arm's Brier score.
    """
    with matplotlib.rc_context(_RC):
        figure = Figure(figsize=(4.8, 4.2))
        axes = figure.add_subplot()
        axes.plot([0, 1], [0, 1], linestyle="--", color="0.6", linewidth=1, label="perfect calibration")
        for name, table in _tables(calibration).items():
            levels = [level for level in table["levels"] if level["n"] and level["accuracy"] is not None]
            if not levels:
                continue
            xs = [level["forecast"] for level in levels]
            ys = [level["accuracy"] for level in levels]
            total = max(sum(level["n"] for level in levels), 1)
            sizes = [12 + 200 * level["n"] / total for level in levels]
            brier = table.get("brier")
            label = f"{name} (Brier {brier:.3f})" if brier is not None else str(name)
            (line,) = axes.plot(xs, ys, marker="", linewidth=1.2, label=label)
            axes.scatter(xs, ys, s=sizes, color=line.get_color(), zorder=3)
            for level, x, y in zip(levels, xs, ys):
                axes.annotate(
                    str(level["confidence"]),
                    (x, y),
                    xytext=(4, -9),
                    textcoords="offset points",
                    fontsize=7,
                    color=line.get_color(),
                )
        axes.set_xlim(-0.05, 1.05)
        axes.set_ylim(-0.05, 1.05)
        axes.set_xticks([0, 0.25, 0.5, 0.75, 1.0])
        axes.set_xlabel("forecast probability (points labelled with the confidence 1–5)")
        axes.set_ylabel("simulation accuracy")
        axes.set_title(title)
        axes.legend(loc="upper left", fontsize=7, frameon=False)
        figure.tight_layout()
        return _to_svg(figure)


def accuracy_bar_svg(
    accuracy: Mapping[str, Mapping[str, Mapping[str, Any]]],
    *,
    baseline: str,
    subset: str = "all",
    chance: float | None = None,
    title: str = "Simulation accuracy by arm",
) -> str:
    """Bar chart of simulation accuracy per arm with interval whiskers.

    ``accuracy`` is the output of :func:`annotations.analysis.simulation_accuracy` (arm → subset →
    estimate/interval). Bars show ``estimate`` for ``subset``, whiskers ``ci_low``..``ci_high``, a
    dashed line marks the ``baseline`` arm's estimate and a dotted one the ``chance`` level (a
    guess among the candidates shown). Arms with no estimate are drawn empty. The legend sits
    below the axes, so it never covers a bar.
    """
    if baseline not in accuracy:
        raise ValueError(f"baseline arm {baseline!r} not in the accuracy table")
    arms = [baseline, *sorted(name for name in accuracy if name != baseline)]
    estimates = [accuracy[name][subset]["estimate"] for name in arms]
    heights = [value if value is not None else 0.0 for value in estimates]
    lows = [accuracy[name][subset]["ci_low"] for name in arms]
    highs = [accuracy[name][subset]["ci_high"] for name in arms]
    with matplotlib.rc_context(_RC):
        figure = Figure(figsize=(max(3.6, 1.1 * len(arms) + 1.5), 3.8))
        axes = figure.add_subplot()
        colors = ["0.65" if name == baseline else "C0" for name in arms]
        axes.bar(range(len(arms)), heights, color=colors, width=0.6)
        for index, (value, low, high) in enumerate(zip(estimates, lows, highs)):
            if value is not None and low is not None and high is not None:
                axes.errorbar(index, value, yerr=[[value - low], [high - value]], color="black", capsize=4, linewidth=1)
        base = accuracy[baseline][subset]["estimate"]
        if base is not None:
            label = "baseline arm" if baseline == "baseline" else f"baseline arm ({baseline})"
            axes.axhline(base, color="0.3", linestyle="--", linewidth=1, label=label)
        if chance is not None:
            axes.axhline(chance, color="C3", linestyle=":", linewidth=1.2, label=f"chance ({chance:.2f})")
        if base is not None or chance is not None:
            axes.legend(loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=2, fontsize=7, frameon=False)
        axes.set_xticks(range(len(arms)), labels=arms)
        axes.set_ylim(0, 1)
        axes.set_ylabel("simulation accuracy")
        axes.set_title(title if subset == "all" else f"{title} ({subset.replace('_', ' ')})")
        figure.tight_layout()
        return _to_svg(figure)


def _short_metric(column: str) -> str:
    """``metric:integrated_gradients:deletion_auc`` -> ``deletion_auc (integrated_gradients)``."""
    parts = column.split(":")
    if len(parts) >= 3 and parts[0] == "metric":
        return f"{':'.join(parts[2:])} ({parts[1]})"
    return column


def metric_accuracy_svg(
    points: Mapping[str, Mapping[str, Sequence[tuple[float, float]]]],
    *,
    baseline: str,
    correlations: Mapping[str, Mapping[str, Mapping[str, Any]]] | None = None,
    columns: int = 3,
    title: str = "Automatic metric vs human simulation accuracy (per item)",
) -> str:
    """Small multiples: one panel per automatic metric, one point per item and arm.

    ``points[metric][arm]`` lists ``(metric value, simulation accuracy of the arm on the item)``;
    non-finite pairs are skipped. The baseline arm (no explanation shown) is drawn in grey as a
    reference. ``correlations[arm][metric]`` (e.g. ``metric_human_correlation(...)[section]
    ["per_arm"]``), when given, adds each explanation arm's Spearman rho to the legend of the
    panel. Returns an SVG document (a note in place of the panels when there is no metric).
    """
    metrics = list(points)
    with matplotlib.rc_context(_RC):
        if not metrics:
            figure = Figure(figsize=(4.8, 1.2))
            figure.text(0.5, 0.5, "No automatic metrics stored for this study's items yet.", ha="center", va="center")
            return _to_svg(figure)
        n_cols = max(1, min(columns, len(metrics)))
        n_rows = math.ceil(len(metrics) / n_cols)
        figure = Figure(figsize=(3.3 * n_cols, 2.9 * n_rows + 0.4))
        arms = sorted({arm for per_arm in points.values() for arm in per_arm}, key=lambda a: (a != baseline, a))
        colors = {arm: ("0.6" if arm == baseline else f"C{k % 10}") for k, arm in enumerate(arms)}
        for index, metric in enumerate(metrics):
            axes = figure.add_subplot(n_rows, n_cols, index + 1)
            for arm in arms:
                pairs = [
                    (x, y)
                    for x, y in points[metric].get(arm, ())
                    if x is not None and y is not None and math.isfinite(x) and math.isfinite(y)
                ]
                if not pairs:
                    continue
                label = arm + (" (baseline)" if arm == baseline else "")
                rho = ((correlations or {}).get(arm) or {}).get(metric, {}).get("spearman_rho")
                if rho is not None:
                    label += f", rho {rho:+.2f}"
                axes.scatter(
                    [x for x, _ in pairs],
                    [y for _, y in pairs],
                    s=14,
                    alpha=0.75,
                    color=colors[arm],
                    label=label,
                    marker="o" if arm != baseline else "s",
                )
            axes.set_ylim(-0.05, 1.05)
            axes.set_xlabel(_short_metric(metric), fontsize=8)
            if index % n_cols == 0:
                axes.set_ylabel("simulation accuracy")
            if axes.get_legend_handles_labels()[0]:
                axes.legend(loc="best", fontsize=6, frameon=False)
        figure.suptitle(title)
        figure.tight_layout()
        return _to_svg(figure)
