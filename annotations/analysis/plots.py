"""SVG figures for the dashboard (matplotlib only: no pyplot, no Django, no global state).

Each function returns an SVG document as a string. Figures are drawn with ``Figure`` and the SVG
canvas, so nothing touches matplotlib's global figure manager or backend; the output is
deterministic (fixed ``svg.hashsalt``, no date metadata) for the same input.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from typing import Any

import matplotlib
from matplotlib.backends.backend_svg import FigureCanvasSVG
from matplotlib.figure import Figure

__all__ = ["accuracy_bar_svg", "reliability_plot_svg"]

_RC = {"svg.hashsalt": "mmeval", "svg.fonttype": "none", "font.size": 9}


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
    """Reliability diagram: forecast ``(confidence − 1)/4`` (x) vs observed simulation accuracy (y).

    ``calibration`` is the output of :func:`annotations.analysis.calibration` (one line per arm), a
    mapping arm → table, or a single table from :func:`calibration_table`. Marker area grows with
    the number of responses at the level; levels without responses are skipped. The diagonal is
    perfect calibration. The legend gives each arm's Brier score.
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
        axes.set_xlim(-0.05, 1.05)
        axes.set_ylim(-0.05, 1.05)
        axes.set_xticks([0, 0.25, 0.5, 0.75, 1.0], labels=["1\n0", "2\n0.25", "3\n0.5", "4\n0.75", "5\n1"])
        axes.set_xlabel("confidence / forecast probability")
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
    title: str = "Simulation accuracy by arm",
) -> str:
    """Bar chart of simulation accuracy per arm with interval whiskers.

    ``accuracy`` is the output of :func:`annotations.analysis.simulation_accuracy` (arm → subset →
    estimate/interval). Bars show ``estimate`` for ``subset``, whiskers ``ci_low``..``ci_high``, and a
    horizontal line marks the ``baseline`` arm's estimate. Arms with no estimate are drawn empty.
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
                axes.errorbar(
                    index, value, yerr=[[value - low], [high - value]], color="black", capsize=4, linewidth=1
                )
        base = accuracy[baseline][subset]["estimate"]
        if base is not None:
            axes.axhline(base, color="0.3", linestyle="--", linewidth=1, label=f"baseline ({baseline})")
            axes.legend(loc="lower right", fontsize=7, frameon=False)
        axes.set_xticks(range(len(arms)), labels=arms)
        axes.set_ylim(0, 1)
        axes.set_ylabel("simulation accuracy")
        axes.set_title(title if subset == "all" else f"{title} ({subset.replace('_', ' ')})")
        figure.tight_layout()
        return _to_svg(figure)
