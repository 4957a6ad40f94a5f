"""CSV exports, streamed row by row so memory stays flat at any study size."""

from __future__ import annotations

import csv
import json
from typing import Iterable, Iterator

from annotations.models import Response, Study

RESPONSE_COLUMNS = [
    "study", "condition", "is_baseline", "participant", "platform", "item", "phase", "model_prediction",
    "gold_label", "model_correct", "guess", "correct_simulation", "confidence", "rt_ms", "candidate_order",
    "views", "created_at",
]


def responses_export_rows(*, study: Study) -> Iterator[dict]:
    rows = (
        Response.objects.filter(participant__study=study)
        .exclude(participant__platform="preview")
        .order_by("created_at", "id")
        .values_list("condition__name", "condition__is_baseline", "condition__views", "participant__public_id",
                     "participant__platform", "item__external_id", "model_prediction", "gold_label", "guess",
                     "confidence", "rt_ms", "candidate_order", "created_at")
    )
    for (condition, is_baseline, views, participant, platform, item, prediction, gold, guess, confidence, rt_ms,
         candidates, created_at) in rows.iterator(chunk_size=2000):
        yield {
            "study": study.public_id, "condition": condition, "is_baseline": is_baseline,
            "participant": str(participant), "platform": platform, "item": item, "phase": "test",
            "model_prediction": prediction, "gold_label": gold, "model_correct": prediction == gold,
            "guess": guess, "correct_simulation": guess == prediction, "confidence": confidence, "rt_ms": rt_ms,
            "candidate_order": json.dumps(candidates), "views": "+".join(views) or "none",
            "created_at": created_at.isoformat(),
        }


class _Echo:
    def write(self, value: str) -> str:
        return value


def csv_lines(*, columns: list[str], rows: Iterable[dict]) -> Iterator[str]:
    """Yield CSV text line by line (for a StreamingHttpResponse or a file)."""
    writer = csv.DictWriter(_Echo(), fieldnames=columns, lineterminator="\n")
    yield writer.writeheader()
    for row in rows:
        yield writer.writerow(row)


def responses_csv_lines(*, study: Study) -> Iterator[str]:
    return csv_lines(columns=RESPONSE_COLUMNS, rows=responses_export_rows(study=study))
