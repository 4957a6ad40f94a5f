"""The two sections of every task's report: after the pre-registered exclusions (the export's
``excluded`` flag) and for all participants."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

SECTIONS = ("after_exclusions", "all")


def report_sections(responses: pd.DataFrame, analyse: Callable[[pd.DataFrame], Any]) -> dict[str, Any]:
    """``analyse`` on each section's responses, ready for JSON; a section it cannot compute (a
    ``ValueError``) says why instead: ``{"unavailable": ...}``."""
    from annotations.analysis.report import jsonable

    sections: dict[str, Any] = {}
    for section in SECTIONS:
        frame = responses if section == "after_exclusions" else responses.drop(columns=["excluded"])
        try:
            sections[section] = jsonable(analyse(frame))
        except ValueError as exc:
            sections[section] = {"unavailable": str(exc)}
    return sections
