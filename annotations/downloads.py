"""Streamed CSV downloads, for every interface that offers one (the API, the dashboard, the
researcher pages). The rows come from ``annotations.selectors.exports``; this module only
wraps them in an HTTP response."""

from __future__ import annotations

from django.http import StreamingHttpResponse

from annotations.models import Study
from annotations.selectors.exports import (
    EXPORTS,
    report_summary_csv_lines,
    study_codebook_csv_lines,
    study_items_csv_lines,
    study_participants_csv_lines,
    study_responses_csv_lines,
)
from annotations.selectors.rationale_exports import RATIONALE_EXPORTS, rationale_export_lines
from annotations.services.analysis import study_report_get


def study_export_response(*, study: Study, what: str, filename_prefix: str = "study") -> StreamingHttpResponse:
    """A streamed CSV download of one export (``EXPORTS``). File name
    ``<filename_prefix>-<study pk>-<what>.csv``; not cached by the browser.

    Raises ``ValueError`` for an unknown export or malformed exclusion rules, and
    ``annotations.services.analysis.AnalysisUnavailable`` for a summary of a study that cannot
    be analysed yet; both before any byte is sent.
    """
    if what == "responses":
        lines = study_responses_csv_lines(study=study)
    elif what == "items":
        lines = study_items_csv_lines(study=study)
    elif what == "participants":
        lines = study_participants_csv_lines(study=study)
    elif what == "summary":
        lines = report_summary_csv_lines(report=study_report_get(study=study))
    elif what == "codebook":
        lines = study_codebook_csv_lines(study=study)
    elif what in RATIONALE_EXPORTS:
        lines = rationale_export_lines(study=study, what=what)
    else:
        raise ValueError(f"unknown export {what!r}; known: {', '.join(EXPORTS)}")
    response = StreamingHttpResponse(lines, content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{filename_prefix}-{study.pk}-{what}.csv"'
    response["Cache-Control"] = "no-store"
    return response
