"""The dashboard cards of rating and preference studies (templates/researcher/dashboard/_judging.html):
what the stored report (``services/judging.py`` ``judging_report``) says, laid out for the page."""

from __future__ import annotations

from typing import Any


def _num(value: float | None, digits: int = 2, *, signed: bool = False) -> str:
    if value is None:
        return "—"
    text = f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"
    return text.replace("-", "−")


def _interval(low: float | None, high: float | None, *, signed: bool = False) -> str:
    if low is None or high is None:
        return ""
    return f"[{_num(low, signed=signed)}, {_num(high, signed=signed)}]"


def _ranking(fit: dict) -> dict[str, Any]:
    """The Bradley–Terry rows, best first, each with its interval drawn on a shared axis (percent
    positions of the score and the Wald interval's ends, and of zero)."""
    methods = fit["methods"]
    ranked = sorted(methods.items(), key=lambda kv: -(kv[1]["score"] if kv[1]["score"] is not None else -1e9))
    ends = [
        v
        for _, row in ranked
        for v in (row["wald_low"], row["wald_high"], row["boot_low"], row["boot_high"])
        if v is not None
    ]
    low, high = (min([*ends, 0.0]), max([*ends, 0.0])) if ends else (-1.0, 1.0)
    span = (high - low) or 1.0

    def at(value: float) -> float:
        return round(100 * (value - low) / span, 2)

    rows = []
    for rank, (name, row) in enumerate(ranked, 1):
        drawn = row["score"] is not None
        rows.append(
            {
                "rank": rank,
                "name": name,
                "score": _num(row["score"], signed=True),
                "wald": _interval(row["wald_low"], row["wald_high"], signed=True),
                "boot": _interval(row["boot_low"], row["boot_high"], signed=True),
                "wins": row["wins"],
                "comparisons": row["comparisons"],
                "win_share": "—" if row["win_share"] is None else f"{100 * row['win_share']:.0f}%",
                "drawn": drawn,
                "dot": at(row["score"]) if drawn else 0,
                "bar_left": at(row["wald_low"]) if drawn else 0,
                "bar_width": round(at(row["wald_high"]) - at(row["wald_low"]), 2) if drawn else 0,
            }
        )
    return {"rows": rows, "zero": at(0.0), "axis": (_num(low, signed=True), _num(high, signed=True))}


def _rating_rows(scales: dict) -> list[dict[str, Any]]:
    rows = []
    for scale, methods in scales.items():
        for k, (name, row) in enumerate(methods.items()):
            rows.append(
                {
                    "scale": scale if k == 0 else "",
                    "name": name,
                    "n": row["n"],
                    "mean": _num(row["mean"]),
                    "mean_interval": _interval(row["mean_low"], row["mean_high"]),
                    "median": _num(row["median"], 1),
                    "median_interval": _interval(row["median_low"], row["median_high"]),
                    "difference": _num(row["difference"], signed=True)
                    if row["difference"] is not None
                    else "reference",
                    "difference_interval": _interval(row["difference_low"], row["difference_high"], signed=True),
                    "superiority": _num(row["superiority"]) if row["superiority"] is not None else "",
                    "superiority_interval": _interval(row["superiority_low"], row["superiority_high"]),
                    "segments": [
                        {"point": point, "width": round(100 * share, 2), "count": count}
                        for point, (share, count) in enumerate(zip(row["shares"], row["distribution"]), 1)
                    ],
                }
            )
    return rows


def judging_view(report: dict, section: str) -> dict[str, Any]:
    """The template context of a rating or preference study's dashboard section."""
    block = report["judging"][section]
    out: dict[str, Any] = {
        "report": report,
        "judging": report["task"],
        "exclusions": report.get("exclusions"),
        "other_section": "all" if section == "after_exclusions" else "after_exclusions",
        "judging_unavailable": block.get("unavailable"),
        "judging_block": block,
    }
    if block.get("unavailable"):
        return out
    if "bradley_terry" in block:
        fit = block["bradley_terry"]
        out["ranking"] = _ranking(fit)
        share = block["triads"]["overall"]["share"]
        out["triads_share"] = "—" if share is None else f"{100 * share:.1f}%"
        alpha = block["agreement"]["alpha"]
        out["alpha"] = _num(alpha)
        out["left_share"] = f"{100 * block['left_share']:.1f}%"
    else:
        out["rating_rows"] = _rating_rows(block["scales"])
        out["reference"] = block["reference"]
    return out
