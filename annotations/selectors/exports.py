"""CSV exports, streamed so that memory stays flat at any study size.

Four exports (``EXPORTS``), each a header plus rows, produced by a generator over database
cursors (``QuerySet.iterator``, server-side cursors on PostgreSQL) — nothing is materialised
beyond one participant's rows and the study's small lookup tables (arms, items):

* **responses** — one row per response (researcher previews left out), columns
  :data:`RESPONSE_COLUMNS`. Rows come grouped by participant (in participant creation order),
  each participant's in submission order, so each
  participant's exclusion decision is taken from their own rows just before they are written
  (``annotations.analysis.exclusions.participant_stats``, the same function the statistics use).
  Excluded participants' rows are kept and flagged (``excluded``, ``exclusion_reasons``).
  Attention-check rows are included with ``is_attention_check = True``.
* **items** — one row per item of the study's pool: model prediction, its probability and the
  probability of every label (a JSON object keyed by label, in the model's label order), gold
  label, stratum, role, the item's answer type, the number of candidates its participants choose
  from (``n_candidates``; chance is one over it) and whether the model's answer is one of the
  item's declared valid answers (``model_answer_valid``; empty when the dataset declares none),
  the item's own fields (``item:<field>``, one per dataset field: the question and other text as
  is, tables and series as JSON, files as their stored path) and the automatic metrics of the
  explanation of the predicted class, one column ``metric:<method>:<metric>`` per method found
  (and the study's method).
* **participants** — one row per participant (previews left out): arm, platform, phase,
  screened out, timed out (the time limit ran out before any answer: no completion code),
  survey answers, timing, attention checks, exclusion decision.
* **summary** — the analysis flattened to ``key,value`` rows (see
  ``annotations.analysis.report_flatten``).
* **codebook** — every column of the four above for this study: type, unit, meaning
  (``annotations.selectors.codebook``, where the column names are defined).

Platform IDs (Prolific PID, MTurk worker ID…) are personal data: unless the study opts in with
``export_raw_platform_ids``, they are replaced by ``h:`` + the first 20 hex digits of
``HMAC-SHA256(salt, platform + ":" + id)``, with a per-study salt derived from ``SECRET_KEY`` and
the study's public ID. The same worker thus gets the same code within a study (to spot repeat
entries) but unlinkable codes across studies, and the codes cannot be reversed by hashing
guessed IDs without the server's key. ``platform_data`` (session IDs…) is exported only with the
opt-in.

Free text typed by participants (``comment``), the items' text fields, raw platform IDs (they come from the URL the
participant arrived with) and ``platform_data`` are defused against CSV formula injection: a cell starting with ``=``, ``+``, ``-``, ``@``, tab or carriage return gets a
leading ``'``.
"""

from __future__ import annotations

import csv
import hashlib
import hmac
import io
import itertools
import json
import math
import operator
import queue
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from uuid import uuid4

import psycopg2.extensions
from django.conf import settings
from django.db import connection
from django.db.models import F, JSONField, OuterRef, Subquery, TextField
from django.db.models.functions import Cast

from annotations.models import (
    Condition,
    CounterfactualEdit,
    Explanation,
    Item,
    Participant,
    Prediction,
    Response,
    Study,
    StudyItem,
)
from annotations.selectors.codebook import (
    CODEBOOK_COLUMNS,
    ITEM_BASE_CODEBOOK,
    ITEM_METRIC_CODEBOOK,
    PARTICIPANT_CODEBOOK,
    RESPONSE_PARTICIPANT_CODEBOOK,
    RESPONSE_ROW_CODEBOOK,
    SUMMARY_CODEBOOK,
    codebook_rows,
)
from annotations.selectors.participants import response_correct
from annotations.selectors.precompute import study_attention_method
from annotations.selectors.studies import study_candidates

if TYPE_CHECKING:  # the analysis package pulls numpy/pandas/scipy: imported where used, not at URL load
    from annotations.analysis.exclusions import ExclusionRules

EXPORTS = ("responses", "items", "participants", "summary", "codebook")

# Column names come from the codebook, which describes each one (selectors/codebook.py).
RESPONSE_PARTICIPANT_COLUMNS = [c.name for c in RESPONSE_PARTICIPANT_CODEBOOK]
RESPONSE_ROW_COLUMNS = [c.name for c in RESPONSE_ROW_CODEBOOK]
RESPONSE_COLUMNS = RESPONSE_PARTICIPANT_COLUMNS + RESPONSE_ROW_COLUMNS
ITEM_BASE_COLUMNS = [c.name for c in ITEM_BASE_CODEBOOK]
ITEM_METRICS = [c.name.split(":", 2)[2] for c in ITEM_METRIC_CODEBOOK if c.name.count(":") == 2]
PARTICIPANT_COLUMNS = [c.name for c in PARTICIPANT_CODEBOOK]
SUMMARY_COLUMNS = [c.name for c in SUMMARY_CODEBOOK]
_INTERACTION_VIEWS = {Condition.View.INTERACTION, Condition.View.TOP_PAIRS}
_MULTIVIZ_VIEWS = {Condition.View.FEATURES, Condition.View.PREDICTION}
_ATTENTION_VIEWS = {Condition.View.ATTENTION}
_CHUNK = 5000
_LINES_PER_YIELD = 256


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------


def _platform_salt(study: Study) -> bytes:
    return hmac.new(
        settings.SECRET_KEY.encode("utf-8"), f"mmeval-platform-id:{study.public_id}".encode(), hashlib.sha256
    ).digest()


def platform_id_exported(*, study: Study, platform: str, platform_id: str, salt: bytes | None = None) -> str:
    """The platform ID as exported: raw (defused against CSV formulas, like free text) with
    ``study.export_raw_platform_ids``, else a keyed hash of the raw ID (module docstring). Empty
    stays empty."""
    if not platform_id:
        return ""
    if study.export_raw_platform_ids:
        return _defuse(platform_id)
    key = salt if salt is not None else _platform_salt(study)
    return "h:" + hmac.new(key, f"{platform}:{platform_id}".encode(), hashlib.sha256).hexdigest()[:20]


def _defuse(text: str) -> str:
    return "'" + text if text and text[0] in "=+-@\t\r" else text


def study_exclusion_rules(*, study: Study) -> ExclusionRules:
    """The study's validated exclusion rules (``ValueError`` if they are malformed)."""
    from annotations.analysis.exclusions import exclusion_rules_validate

    return exclusion_rules_validate(study.exclusion_rules, default_fast_rt_ms=study.min_rt_ms)


@dataclass(frozen=True)
class _Arm:
    name: str
    is_baseline: bool
    views: str
    methods: str
    display: str


def _arms(study: Study) -> dict[int, _Arm]:
    arms = {}
    for condition in Condition.objects.filter(study=study):
        views = list(condition.views or [])
        methods = []
        if views:
            if set(views) - _ATTENTION_VIEWS:  # an attention-only arm shows no attribution method
                methods.append(condition.method or study.explanation_method)
            if _INTERACTION_VIEWS & set(views):
                methods.append(study.interaction_method)
            if _MULTIVIZ_VIEWS & set(views):  # feature heatmaps by the study's method, over the sparse head
                methods.append(f"multiviz:{study.explanation_method}")
            if _ATTENTION_VIEWS & set(views):
                methods.append(study_attention_method(study=study))
        arms[condition.pk] = _Arm(
            name=condition.name,
            is_baseline=condition.is_baseline,
            views="+".join(views) or "none",
            methods="+".join(methods) or "none",
            display=study.explanation_display if views else "none",
        )
    return arms


def _items(study: Study) -> dict[int, tuple[str, str]]:
    """item pk -> (external id, stratum) for the study's pool."""
    return {
        pk: (external_id, stratum)
        for pk, external_id, stratum in StudyItem.objects.filter(study=study).values_list(
            "item_id", "item__external_id", "stratum"
        )
    }


def _item_lookup(items: dict[int, tuple[str, str]]) -> Callable[[int], tuple[str, str]]:
    def lookup(pk: int) -> tuple[str, str]:
        found = items.get(pk)
        if found is None:  # an item answered outside the pool: fetch it once
            found = items[pk] = (Item.objects.filter(pk=pk).values_list("external_id", flat=True).first() or "", "")
        return found

    return lookup


def _participants(study: Study):
    return Participant.objects.filter(study=study).exclude(platform=Participant.Platform.PREVIEW).order_by("pk")


def _responses(study: Study):
    """The study's responses (previews left out), grouped by participant. Ordered by
    participant only — PostgreSQL then walks the participant index instead of sorting a million
    rows on disk; callers that need submission order sort each participant's few rows by id."""
    return (
        Response.objects.filter(participant__study=study)
        .exclude(participant__platform=Participant.Platform.PREVIEW)
        .order_by("participant_id")
    )


def _stats(
    rows: Sequence[tuple],
    *,
    screened_out: bool,
    rules: ExclusionRules,
    phase: int,
    attention: int,
    passed: int,
    rt: int,
    guess: int,
    prediction: int,
    verdict: int,
    gold: int,
    client_rt: int,
    blur_count: int,
    hidden_ms: int,
    edit: int | None = None,
) -> dict[str, Any]:
    """``participant_stats`` of one participant's rows (tuples; the ints are column positions)."""
    from annotations.analysis.exclusions import participant_stats

    def known(value) -> float:
        return math.nan if value is None else float(value)

    scored = [r for r in rows if not r[attention] and r[phase] == "test"]
    return participant_stats(
        test_client_rt_ms=[known(r[client_rt]) for r in scored],
        test_blur_count=[known(r[blur_count]) for r in scored],
        test_hidden_ms=[known(r[hidden_ms]) for r in scored],
        test_rt_ms=[float(r[rt]) for r in scored],
        test_correct=[
            response_correct(r[guess], r[prediction], r[verdict], r[gold], r[edit] if edit else "") for r in scored
        ],
        n_pretest=sum(1 for r in rows if not r[attention] and r[phase] == "pretest"),
        attention_passed=[r[passed] for r in rows if r[attention]],
        screened_out=screened_out,
        rules=rules,
    )


class _Echo:
    def write(self, value: str) -> str:
        return value


def _crlf_safe(text: str, rows: list[list], prefixes: list[list] | None = None) -> str:
    """``text`` (CSV lines of ``rows``) again with every cell holding a carriage return quoted.

    Python's writer quotes a cell with ``\\n`` (the line terminator) but writes a bare ``\\r``
    unquoted, which its own reader and spreadsheets take for a line break; PostgreSQL's ``COPY``
    quotes it. So a chunk with a ``\\r`` (rare: dataset ids, raw platform ids) is written again
    with ``\\r\\n`` as terminator, whose characters are quoted, then the terminator put back."""
    if "\r" not in text:
        return text
    writer = csv.writer(_Echo(), lineterminator="\r\n")
    if prefixes is None:
        return "".join(writer.writerow(row)[:-2] + "\n" for row in rows)
    return "".join(writer.writerow(prefix + row)[:-2] + "\n" for prefix, row in zip(prefixes, rows))


def csv_lines(*, columns: list[str], rows: Iterable[Any]) -> Iterator[str]:
    """CSV text for a StreamingHttpResponse or a file: the header, then the rows in chunks of
    a few hundred lines. ``rows`` are dicts (keyed by column) or sequences in column order;
    ``None`` is written as an empty cell, bools as ``True``/``False``; a cell holding a line
    break (``\\n`` or ``\\r``) is quoted."""
    header = csv.writer(_Echo(), lineterminator="\n").writerow(columns)
    yield header
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    pending: list[list] = []
    for row in rows:
        values = [row.get(column) for column in columns] if isinstance(row, dict) else list(row)
        writer.writerow(values)
        pending.append(values)
        if len(pending) == _LINES_PER_YIELD:
            yield _crlf_safe(buffer.getvalue(), pending)
            buffer.seek(0)
            buffer.truncate()
            pending = []
    if pending:
        yield _crlf_safe(buffer.getvalue(), pending)


# --------------------------------------------------------------------------------------------
# Responses
# --------------------------------------------------------------------------------------------


def study_response_records(*, study: Study) -> Iterator[list]:
    """Rows of the responses export as lists in :data:`RESPONSE_COLUMNS` order (module doc).

    Raises ``ValueError`` at once (before any row) if the study's exclusion rules are malformed.
    """
    groups = _responses_by_participant(study, study_exclusion_rules(study=study))
    return (prefix + row for prefix, rows in groups for row in rows)


_BY_ID = operator.itemgetter(13)


def pg_timestamp_isoformat(text: str) -> str:
    """PostgreSQL's text form of a ``timestamptz`` in UTC (``2025-01-02 03:04:05.5+00``) as
    Python's ``datetime.isoformat()`` gives it (``2025-01-02T03:04:05.500000+00:00``; no fraction
    when the microseconds are 0, like PostgreSQL). The server writes timestamps as text anyway;
    reformatting that text is ~5x cheaper than parsing it into ``datetime`` objects and formatting
    them back, which was a third of the export's time. Other offsets go through ``datetime``."""
    if text.endswith("+00") and " " in text:
        body = text[:-3]
        if "." in body:
            head, fraction = body.split(".", 1)
            body = f"{head}.{fraction.ljust(6, '0')}"
        return body.replace(" ", "T", 1) + "+00:00"
    return datetime.fromisoformat(text).astimezone(UTC).isoformat()


def _responses_by_participant(study: Study, rules: ExclusionRules) -> Iterator[tuple[list, list[list]]]:
    """``(participant columns, [response columns, …])`` per participant, in participant order."""
    arms = _arms(study)
    items = _items(study)
    item_of = _item_lookup(items)
    salt = _platform_salt(study)
    fast = rules.fast_rt_ms
    in_sql = connection.vendor == "postgresql"
    participants = (
        _participants(study)
        .values_list("pk", "public_id", "platform", "platform_id", "screened_out")
        .iterator(chunk_size=_CHUNK)
    )
    responses = (
        _responses(study)
        .annotate(
            candidates_text=Cast("candidate_order", TextField()),
            created_text=Cast("created_at", TextField()) if in_sql else F("created_at"),
        )
        .values_list(
            "participant_id",
            "condition_id",
            "item_id",
            "phase",
            "is_attention_check",
            "attention_passed",
            "guess",
            "confidence",
            "rt_ms",
            "candidates_text",
            "model_prediction",
            "gold_label",
            "created_text",
            "id",
            "verdict",
            "client_rt_ms",
            "client_display_ms",
            "blur_count",
            "hidden_ms",
            "client_timing_flags",
            "edit_prediction",
            "counterfactual_edit__kind",
            "counterfactual_edit__description",
            "left_condition_id",
            "right_condition_id",
            "preferred",
            "rating_helpfulness",
            "rating_trust",
            "rating_understanding",
        )
        .iterator(chunk_size=_CHUNK)
    )
    public_id = study.public_id
    current = None
    for participant_pk, group in itertools.groupby(responses, key=lambda r: r[0]):
        while current is None or current[0] < participant_pk:
            current = next(participants)
        _, uuid, platform, platform_id, screened_out = current
        group = sorted(group, key=_BY_ID)  # submission order
        stats = _stats(
            group,
            screened_out=screened_out,
            rules=rules,
            phase=3,
            attention=4,
            passed=5,
            rt=8,
            guess=6,
            prediction=10,
            verdict=14,
            gold=11,
            client_rt=15,
            blur_count=17,
            hidden_ms=18,
            edit=20,
        )
        arm = arms[group[0][1]]
        prefix = [
            public_id,
            study.task,
            arm.name,
            arm.is_baseline,
            arm.views,
            arm.methods,
            arm.display,
            str(uuid),
            platform,
            platform_id_exported(study=study, platform=platform, platform_id=platform_id, salt=salt),
            screened_out,
            stats["excluded"],
            stats["exclusion_reasons"],
        ]
        rows = []
        for (
            _,
            condition_id,
            item_id,
            phase,
            attention,
            passed,
            guess,
            confidence,
            rt_ms,
            candidates,
            prediction,
            gold,
            created,
            _,
            verdict,
            client_rt_ms,
            client_display_ms,
            blur_count,
            hidden_ms,
            client_timing_flags,
            edit_prediction,
            edit_kind,
            edit_description,
            left_id,
            right_id,
            preferred,
            *ratings,
        ) in group:
            if condition_id != group[0][1]:
                raise ValueError(f"participant {uuid} answered in two arms")
            item, stratum = items.get(item_id) or item_of(item_id)
            rows.append(
                [
                    item,
                    stratum,
                    phase,
                    attention,
                    passed,
                    prediction,
                    gold,
                    prediction == gold,
                    guess,
                    guess == prediction if verdict is None and guess and not edit_prediction else None,
                    confidence,
                    rt_ms,
                    fast > 0 and rt_ms < fast,
                    client_rt_ms,
                    client_display_ms,
                    blur_count,
                    hidden_ms,
                    client_timing_flags,
                    candidates,
                    pg_timestamp_isoformat(created) if in_sql else created.isoformat(),
                    verdict,
                    None if verdict is None else verdict == (prediction == gold),
                    edit_kind,
                    edit_description,
                    edit_prediction,
                    guess == edit_prediction if edit_prediction else None,
                    *_judged_cells(arms, left_id, right_id, preferred),
                    *ratings,
                ]
            )
        yield prefix, rows


def _judged_cells(arms: dict, left_id: int | None, right_id: int | None, preferred: str) -> list:
    """method_left, method_right, preferred and preferred_method of a preference answer (empty otherwise)."""
    left = arms[left_id].name if left_id else None
    right = arms[right_id].name if right_id else None
    return [left, right, preferred or None, {"left": left, "right": right}.get(preferred)]


def study_response_rows(*, study: Study) -> Iterator[dict]:
    """The responses export as dicts keyed by :data:`RESPONSE_COLUMNS`."""
    return (dict(zip(RESPONSE_COLUMNS, row)) for row in study_response_records(study=study))


def study_responses_csv_lines(*, study: Study) -> Iterator[str]:
    """The responses export as CSV text, in chunks (module doc): on PostgreSQL streamed from
    ``COPY … TO STDOUT`` (:func:`study_responses_csv_lines_copy`), elsewhere (the embedded
    demo's SQLite) written by Python (:func:`study_responses_csv_lines_python`). Both give the
    same bytes (``tests/exports/test_export_copy.py``).

    Raises ``ValueError`` at once if the study's exclusion rules are malformed.
    """
    if connection.vendor == "postgresql":
        return study_responses_csv_lines_copy(study=study)
    return study_responses_csv_lines_python(study=study)


def study_responses_csv_lines_python(*, study: Study) -> Iterator[str]:
    """The responses export written by Python: each participant's columns are formatted once,
    then prefixed to each of their rows: the same text as
    ``csv_lines(columns=RESPONSE_COLUMNS, rows=study_response_records(study=study))``, faster.
    The reference the COPY path is tested against.

    Raises ``ValueError`` at once if the study's exclusion rules are malformed.
    """
    groups = _responses_by_participant(study, study_exclusion_rules(study=study))
    return _prefixed_csv(groups)


# The COPY path (PostgreSQL). Python's csv writer and COPY's CSV agree on quoting (a cell with
# a comma, a quote or a line break is quoted, quotes doubled) except on two points the query
# settles: COPY writes an empty string as "" (to tell it from NULL), so every text cell goes
# through NULLIF(…, ''); and booleans are written True/False, as Python does.
_COPY_CHUNK_BYTES = 1 << 16
_COPY_QUEUE_CHUNKS = 8


def _sql_bool(expression: str) -> str:
    return f"CASE WHEN {expression} THEN 'True' WHEN NOT {expression} THEN 'False' END"


def _sql_defused(expression: str) -> str:
    """``_defuse`` in SQL: a leading ' before a cell that a spreadsheet would run as a formula."""
    return (
        f"CASE WHEN left({expression}, 1) IN ('=', '+', '-', '@', chr(9), chr(13)) "
        f"THEN '''' || {expression} ELSE {expression} END"
    )


def study_responses_csv_lines_copy(*, study: Study) -> Iterator[str]:
    """The responses export streamed from PostgreSQL's ``COPY (…) TO STDOUT WITH CSV``.

    Three steps, none holding more than a chunk of rows in memory:

    1. one ``GROUP BY participant`` query counts what the exclusion rules need (scored
       responses, attention checks passed and failed, fast answers, the median time: the same
       numbers as ``participant_stats``) and Python decides with the one definition of the rules
       (``annotations.analysis.exclusions.exclusion_reasons``) and hashes the platform IDs;
    2. those per-participant cells go into a temporary table, a batch at a time;
    3. ``COPY`` of the responses joined with it, the arms (a ``VALUES`` list) and the items
       formats every row in the server (formula defusing of raw platform IDs included).
       ``copy_expert`` pushes rows into a file object, so it runs in a side thread that hands
       chunks of ~64 KiB through a bounded queue to this generator.

    Raises ``ValueError`` at once if the study's exclusion rules are malformed, and while
    streaming if a participant answered in two arms (as the Python path). The connection must
    not be used for anything else until the generator is exhausted or closed.
    """
    rules = study_exclusion_rules(study=study)
    return _copy_csv_lines(study, rules)


_PREFIX_CELLS = RESPONSE_PARTICIPANT_COLUMNS[1:]  # after the study's public ID, a constant


def _copy_csv_lines(study: Study, rules: ExclusionRules) -> Iterator[str]:
    yield csv.writer(_Echo(), lineterminator="\n").writerow(RESPONSE_COLUMNS)
    table = f"mmeval_export_{uuid4().hex}"
    cells = ", ".join(f"{connection.ops.quote_name(name)} text" for name in _PREFIX_CELLS)
    with connection.cursor() as cursor:
        cursor.execute(f"CREATE TEMPORARY TABLE {table} (participant_id bigint PRIMARY KEY, {cells})")
    try:
        arms = _arms(study)
        if _copy_participants_fill(study, rules, table, arms):
            yield from _copy_out_chunks(_copy_responses_sql(study, rules, table, sorted(arms)))
    finally:
        if not connection.needs_rollback and not _transaction_aborted():
            with connection.cursor() as cursor:
                cursor.execute(f"DROP TABLE IF EXISTS {table}, {table}_counts")
        # else the rollback that must come drops it (it was created in the same transaction)


def _transaction_aborted() -> bool:
    return connection.connection.get_transaction_status() == psycopg2.extensions.TRANSACTION_STATUS_INERROR


def _copy_participants_fill(study: Study, rules: ExclusionRules, table: str, arms: dict[int, _Arm]) -> int:
    """Steps 1 and 2 of :func:`study_responses_csv_lines_copy`: each participant's columns of
    the export (``RESPONSE_PARTICIPANT_COLUMNS`` but the study), as the CSV writes them, into
    ``table``; a raw platform ID goes in as is (the ``COPY`` defuses it). Returns the
    participants written."""
    from annotations.analysis.exclusions import exclusion_reasons

    fast = rules.fast_rt_ms
    scored = "NOT r.is_attention_check AND r.phase = 'test'"
    fast_count = f"count(*) FILTER (WHERE {scored} AND r.rt_ms < %(fast)s)" if fast > 0 else "0"
    median = (
        f"percentile_cont(0.5) WITHIN GROUP (ORDER BY r.rt_ms::float8) FILTER (WHERE {scored})"
        if rules.min_median_rt_ms is not None
        else "NULL"  # no rule reads it
    )
    # The browser's numbers over the known values only (NULL when none is known, as in Python).
    client_median = (
        f"percentile_cont(0.5) WITHIN GROUP (ORDER BY r.client_rt_ms::float8) FILTER (WHERE {scored})"
        if rules.min_median_client_rt_ms is not None
        else "NULL"
    )
    query = f"""
        SELECT c.*, p.public_id::text AS public_id, p.platform, p.platform_id, p.screened_out
        FROM (
            SELECT r.participant_id, min(r.condition_id) AS arm, max(r.condition_id) AS other_arm,
                   count(*) FILTER (WHERE {scored}) AS n_test,
                   count(*) FILTER (WHERE r.is_attention_check) AS n_attention,
                   count(*) FILTER (WHERE r.is_attention_check AND r.attention_passed) AS n_passed,
                   count(*) FILTER (WHERE r.is_attention_check AND NOT r.attention_passed) AS n_failed,
                   {fast_count} AS n_fast,
                   {median} AS median_rt,
                   {client_median} AS client_median_rt,
                   sum(r.blur_count) FILTER (WHERE {scored}) AS n_blurs,
                   sum(r.hidden_ms) FILTER (WHERE {scored}) AS hidden_ms
            FROM {Response._meta.db_table} r
            WHERE r.participant_id IN (
                SELECT id FROM {Participant._meta.db_table} WHERE study_id = %(study)s AND platform <> %(preview)s
            )
            GROUP BY r.participant_id
        ) c JOIN {Participant._meta.db_table} p ON p.id = c.participant_id
    """
    arm_cells = {pk: (arm.name, str(arm.is_baseline), arm.views, arm.methods, arm.display) for pk, arm in arms.items()}
    salt = _platform_salt(study)
    raw_ids = study.export_raw_platform_ids
    written = 0
    # The counts go into a table of their own first: a query behind a server-side cursor never
    # gets a parallel plan, CREATE TABLE AS may (0.25 s instead of 0.38 s at 1M rows), and
    # reading the small table back a chunk at a time keeps the memory flat.
    counts = f"{table}_counts"
    with connection.cursor() as cursor:
        cursor.execute(
            f"CREATE TEMPORARY TABLE {counts} AS {query}",
            {"fast": fast, "study": study.pk, "preview": Participant.Platform.PREVIEW},
        )
    with connection.chunked_cursor() as found, connection.cursor() as writer:
        found.execute(f"SELECT * FROM {counts} ORDER BY participant_id")
        while batch := found.fetchmany(_CHUNK):
            lines = []
            for row in batch:
                pk, arm, other_arm, n_test, n_attention, n_passed, n_failed, n_fast, median_rt = row[:9]
                client_median_rt, n_blurs, hidden_ms = row[9:12]
                uuid_text, platform, platform_id, screened_out = row[12:]
                if arm != other_arm:
                    raise ValueError(f"participant {uuid_text} answered in two arms")
                reasons = exclusion_reasons(
                    n_test=n_test,
                    n_attention_failed=n_failed,
                    attention_pass_rate=n_passed / n_attention if n_attention else None,
                    fast_share=n_fast / n_test if n_test else None,
                    median_rt_ms=median_rt,
                    screened_out=bool(screened_out),
                    rules=rules,
                    median_client_rt_ms=client_median_rt,
                    n_blurs=n_blurs,
                    hidden_ms=hidden_ms,
                )
                exported = (
                    platform_id
                    if raw_ids
                    else platform_id_exported(study=study, platform=platform, platform_id=platform_id, salt=salt)
                )
                cells = (
                    str(pk),
                    study.task,
                    *arm_cells[arm],
                    uuid_text,
                    platform,
                    exported,
                    str(bool(screened_out)),
                    str(bool(reasons)),
                    ";".join(sorted(reasons)),
                )
                lines.append("\t".join(_copy_in_text(cell) for cell in cells) + "\n")
            writer.cursor.copy_expert(f"COPY {table} FROM STDIN", io.StringIO("".join(lines)))
            written += len(lines)
    with connection.cursor() as cursor:
        cursor.execute(f"DROP TABLE {counts}")
        cursor.execute(f"ANALYZE {table}")
    return written


def _copy_in_text(value: str) -> str:
    """A cell of ``COPY … FROM`` text format (an empty string goes in as NULL, which the CSV
    writes as an empty cell, as the Python path writes an empty string)."""
    if not value:
        return r"\N"
    return value.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")


def _copy_responses_sql(study: Study, rules: ExclusionRules, table: str, arm_ids: list[int]) -> str:
    """The ``COPY`` statement of step 3, its values quoted in by the driver (``mogrify``)."""
    fast = rules.fast_rt_ms
    prefix = [f"t.{connection.ops.quote_name(name)}" for name in _PREFIX_CELLS]
    if study.export_raw_platform_ids:
        where = _PREFIX_CELLS.index("platform_id")
        prefix[where] = _sql_defused(prefix[where])
    text = "NULLIF({}, '')".format
    # PostgreSQL's to_char always writes the microseconds; isoformat() drops them when they are 0
    created = (
        "replace(to_char(r.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"+00:00\"'), '.000000+', '+')"
    )
    query = f"""
        SELECT %s, {", ".join(prefix)},
               {text("i.external_id")}, {text("si.stratum")}, {text("r.phase")},
               {_sql_bool("r.is_attention_check")}, {_sql_bool("r.attention_passed")},
               {text("r.model_prediction")}, {text("r.gold_label")}, {_sql_bool("r.model_prediction = r.gold_label")},
               {text("r.guess")},
               CASE WHEN r.verdict IS NULL AND r.guess <> '' AND r.edit_prediction = '' THEN {_sql_bool("r.guess = r.model_prediction")} END,
               r.confidence, r.rt_ms, {"CASE WHEN r.rt_ms < %s THEN 'True' ELSE 'False' END" if fast > 0 else "'False'"},
               r.client_rt_ms, r.client_display_ms, r.blur_count, r.hidden_ms, {text("r.client_timing_flags")},
               r.candidate_order::text, {created},
               {_sql_bool("r.verdict")}, {_sql_bool("r.verdict = (r.model_prediction = r.gold_label)")},
               {text("e.kind")}, {text("e.description")}, {text("r.edit_prediction")},
               CASE WHEN r.edit_prediction <> '' THEN {_sql_bool("r.guess = r.edit_prediction")} END,
               cl.name, cr.name, {text("r.preferred")},
               CASE r.preferred WHEN 'left' THEN cl.name WHEN 'right' THEN cr.name END,
               r.rating_helpfulness, r.rating_trust, r.rating_understanding
        FROM {Response._meta.db_table} r
        LEFT JOIN {CounterfactualEdit._meta.db_table} e ON e.id = r.counterfactual_edit_id
        JOIN {table} t ON t.participant_id = r.participant_id
        JOIN {Item._meta.db_table} i ON i.id = r.item_id
        LEFT JOIN {StudyItem._meta.db_table} si ON si.study_id = %s AND si.item_id = r.item_id
        LEFT JOIN {Condition._meta.db_table} cl ON cl.id = r.left_condition_id
        LEFT JOIN {Condition._meta.db_table} cr ON cr.id = r.right_condition_id
        WHERE r.condition_id = ANY(%s)
        ORDER BY r.participant_id, r.id
    """
    # ``arm_ids``, the study's arms: redundant with the join, but it lets the hash-join plan read
    # only this study's responses (their condition index) instead of scanning every study's.
    params = [study.public_id, *([fast] if fast > 0 else []), study.pk, arm_ids]  # in the order of the %s
    with connection.cursor() as cursor:
        statement = cursor.mogrify(query, params).decode("utf-8")
    return f"COPY ({statement}) TO STDOUT WITH (FORMAT csv)"


def _copy_out_chunks(sql: str) -> Iterator[str]:
    """Run ``COPY … TO STDOUT`` in a side thread on this thread's connection and yield its
    output as text, ~64 KiB at a time. Closing the generator early lets the COPY run to its
    end, its rows dropped, so the connection (and a transaction around it) stays usable."""
    connection.ensure_connection()
    raw = connection.connection
    chunks: queue.Queue = queue.Queue(maxsize=_COPY_QUEUE_CHUNKS)
    abandoned = threading.Event()
    finished = object()

    def put(item: object) -> None:
        while not abandoned.is_set():
            try:
                chunks.put(item, timeout=0.5)
                return
            except queue.Full:
                continue

    class Sink:
        def __init__(self) -> None:
            self.parts: list[bytes] = []
            self.size = 0

        def write(self, data: bytes) -> None:  # psycopg2 calls this once per row
            if abandoned.is_set():
                return
            self.parts.append(data)
            self.size += len(data)
            if self.size >= _COPY_CHUNK_BYTES:
                self.flush()

        def flush(self) -> None:
            if self.parts:
                put(b"".join(self.parts).decode("utf-8"))
            self.parts, self.size = [], 0

    def produce() -> None:
        sink = Sink()
        try:
            with raw.cursor() as cursor:
                # The whole study's rows: hash joins and one sort beat a probe of the responses'
                # index per participant, which the planner picks for the small temporary table
                # (measured in docs/BENCHMARKS.md: the first version was 2.1x a raw COPY of the join).
                cursor.execute("SET enable_nestloop = off")
                try:
                    cursor.copy_expert(sql, sink, size=_COPY_CHUNK_BYTES)
                finally:
                    if raw.get_transaction_status() != psycopg2.extensions.TRANSACTION_STATUS_INERROR:
                        cursor.execute("RESET enable_nestloop")  # else the rollback undoes the SET
            sink.flush()
            put(finished)
        except BaseException as exc:  # handed to the consumer, which raises it
            put(exc)

    thread = threading.Thread(target=produce, name="export-copy", daemon=True)
    thread.start()
    try:
        while True:
            item = chunks.get()
            if item is finished:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        abandoned.set()
        thread.join()


def _prefixed_csv(groups: Iterator[tuple[list, list[list]]]) -> Iterator[str]:
    yield csv.writer(_Echo(), lineterminator="\n").writerow(RESPONSE_COLUMNS)
    prefix_writer = csv.writer(_Echo(), lineterminator=",")
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    pending: list[tuple[list, list[list]]] = []
    n_pending = 0
    for prefix, rows in groups:
        prefix_text = prefix_writer.writerow(prefix)
        for row in rows:
            buffer.write(prefix_text)
            writer.writerow(row)
        pending.append((prefix, rows))
        n_pending += len(rows)
        if n_pending >= _LINES_PER_YIELD:
            yield _prefixed_crlf_safe(buffer.getvalue(), pending)
            buffer.seek(0)
            buffer.truncate()
            pending = []
            n_pending = 0
    if n_pending:
        yield _prefixed_crlf_safe(buffer.getvalue(), pending)


def _prefixed_crlf_safe(text: str, groups: list[tuple[list, list[list]]]) -> str:
    if "\r" not in text:
        return text
    prefixes = [prefix for prefix, rows in groups for _ in rows]
    return _crlf_safe(text, [row for _, rows in groups for row in rows], prefixes)


# --------------------------------------------------------------------------------------------
# Items
# --------------------------------------------------------------------------------------------


def _metric_methods(study: Study) -> list[str]:
    found = set(
        Explanation.objects.filter(model=study.model, item__study_items__study=study)
        .exclude(metrics={})
        .values_list("method", flat=True)
        .distinct()
    )
    return sorted(found | {study.explanation_method})


def _metric_names(study: Study) -> list[str]:
    return ITEM_METRICS + [f"modality_share:{modality}" for modality in study.model.modalities]


def _item_fields(study: Study) -> list[str]:
    """The dataset's item fields (every line carries the same: ``workers/engine/dataset.py``)."""
    return list(study.dataset.modalities or [])


def _item_field_value(value: Any) -> str | None:
    if value is None:
        return None
    return _defuse(value) if isinstance(value, str) else json.dumps(value)


def study_item_columns(*, study: Study) -> list[str]:
    names = _metric_names(study)
    return (
        ITEM_BASE_COLUMNS
        + [f"item:{field}" for field in _item_fields(study)]
        + [f"metric:{method}:{name}" for method in _metric_methods(study) for name in names]
    )


def _metric_value(metrics: dict | None, name: str) -> float | None:
    if not metrics:
        return None
    if name.startswith("modality_share:"):
        value = (metrics.get("modality_share") or {}).get(name.split(":", 1)[1])
    else:
        value = metrics.get(name)
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def study_item_records(*, study: Study) -> Iterator[list]:
    """Rows of the items export in :func:`study_item_columns` order (module doc)."""
    methods = _metric_methods(study)
    names = _metric_names(study)
    fields = _item_fields(study)
    labels = list(study.model.labels)
    prediction = Prediction.objects.filter(model=study.model, item=OuterRef("item_id"))
    predicted_label = Subquery(
        Prediction.objects.filter(model=study.model, item=OuterRef(OuterRef("item_id"))).values("label")[:1]
    )
    annotations: dict[str, Any] = {
        "predicted": Subquery(prediction.values("label")[:1]),
        "probabilities": Subquery(prediction.values("probabilities")[:1], output_field=JSONField()),
    }
    for k, method in enumerate(methods):
        annotations[f"metrics_{k}"] = Subquery(
            Explanation.objects.filter(
                model=study.model,
                item=OuterRef("item_id"),
                method=method,
                status=Explanation.Status.DONE,
                target_label=predicted_label,
            ).values("metrics")[:1],
            output_field=JSONField(),
        )
    rows = (
        StudyItem.objects.filter(study=study)
        .order_by("item__line_number", "item_id")
        .annotate(**annotations)
        .values_list(
            "item__external_id",
            "role",
            "stratum",
            "item__gold_label",
            "predicted",
            "probabilities",
            "item__payload",
            "item_id",
            "item__choices",
            "item__answer_type",
            "item__group",
            "item__evidence",
            *[f"metrics_{k}" for k in range(len(methods))],
        )
    )
    for row in rows.iterator(chunk_size=_CHUNK):
        (
            external_id,
            role,
            stratum,
            gold,
            predicted,
            probabilities,
            payload,
            item_id,
            choices,
            answer_type,
            group,
            evidence,
            *metrics,
        ) = row
        probability = None
        n_candidates = None
        if predicted is not None and probabilities and predicted in labels:
            probability = float(probabilities[labels.index(predicted)])
            shown = Prediction(label=predicted, probabilities=probabilities)
            shown.item = Item(pk=item_id, choices=choices)
            n_candidates = len(study_candidates(study=study, prediction=shown))
        yield [
            study.public_id,
            external_id,
            role,
            stratum,
            gold,
            predicted,
            None if predicted is None else predicted == gold,
            probability,
            None if probabilities is None else json.dumps(dict(zip(labels, probabilities))),
            answer_type,
            n_candidates,
            None if predicted is None or not choices else predicted in choices,
            _item_field_value(group or None),
            None if evidence is None else json.dumps(evidence, separators=(",", ":")),
            *[_item_field_value((payload or {}).get(field)) for field in fields],
            *[_metric_value(found, name) for found in metrics for name in names],
        ]


def study_items_csv_lines(*, study: Study) -> Iterator[str]:
    return csv_lines(columns=study_item_columns(study=study), rows=study_item_records(study=study))


# --------------------------------------------------------------------------------------------
# Participants
# --------------------------------------------------------------------------------------------


def study_participant_records(*, study: Study) -> Iterator[list]:
    """Rows of the participants export in :data:`PARTICIPANT_COLUMNS` order (module doc).

    Raises ``ValueError`` at once if the study's exclusion rules are malformed.
    """
    rules = study_exclusion_rules(study=study)
    return _participants_records(study, rules)


def _participants_records(study: Study, rules: ExclusionRules) -> Iterator[list]:
    arms = _arms(study)
    salt = _platform_salt(study)
    responses = (
        _responses(study)
        .values_list(
            "participant_id",
            "phase",
            "is_attention_check",
            "attention_passed",
            "rt_ms",
            "guess",
            "model_prediction",
            "verdict",
            "gold_label",
            "client_rt_ms",
            "blur_count",
            "hidden_ms",
            "edit_prediction",
        )
        .iterator(chunk_size=_CHUNK)
    )
    groups = itertools.groupby(responses, key=lambda r: r[0])
    pending = next(groups, None)
    participants = (
        _participants(study)
        .values_list(
            "pk",
            "public_id",
            "platform",
            "platform_id",
            "condition_id",
            "phase",
            "screened_out",
            "timed_out",
            "partial",
            "started_at",
            "finished_at",
            "helpfulness",
            "comment",
            "platform_data",
        )
        .iterator(chunk_size=_CHUNK)
    )
    for (
        pk,
        uuid,
        platform,
        platform_id,
        condition_id,
        phase,
        screened_out,
        timed_out,
        partial,
        started_at,
        finished_at,
        helpfulness,
        comment,
        platform_data,
    ) in participants:
        rows: list[tuple] = []
        while pending is not None and pending[0] <= pk:
            if pending[0] == pk:
                rows = list(pending[1])
            pending = next(groups, None)
        stats = _stats(
            rows,
            screened_out=screened_out,
            rules=rules,
            phase=1,
            attention=2,
            passed=3,
            rt=4,
            guess=5,
            prediction=6,
            verdict=7,
            gold=8,
            client_rt=9,
            blur_count=10,
            hidden_ms=11,
            edit=12,
        )
        arm = arms[condition_id]
        raw = study.export_raw_platform_ids
        yield [
            study.public_id,
            str(uuid),
            platform,
            platform_id_exported(study=study, platform=platform, platform_id=platform_id, salt=salt),
            arm.name,
            arm.is_baseline,
            phase,
            screened_out,
            timed_out,
            partial,
            started_at.isoformat(),
            finished_at.isoformat() if finished_at else None,
            (finished_at - started_at).total_seconds() if finished_at else None,
            helpfulness,
            _defuse(comment or ""),
            stats["n_test"],
            stats["n_pretest"],
            stats["n_attention"],
            stats["n_attention_passed"],
            stats["n_attention_failed"],
            stats["attention_pass_rate"],
            stats["median_rt_ms"],
            stats["n_fast"],
            stats["fast_share"],
            stats["test_accuracy"],
            stats["median_client_rt_ms"],
            stats["n_blurs"],
            stats["hidden_ms"],
            stats["excluded"],
            stats["exclusion_reasons"],
            _defuse(json.dumps(platform_data, sort_keys=True)) if raw and platform_data else "",
        ]


def study_participants_csv_lines(*, study: Study) -> Iterator[str]:
    return csv_lines(columns=PARTICIPANT_COLUMNS, rows=study_participant_records(study=study))


# --------------------------------------------------------------------------------------------
# Summary and codebook
# --------------------------------------------------------------------------------------------


def study_codebook_records(*, study: Study) -> Iterator[list[str]]:
    """Every column of the study's exports (``EXPORTS``) with its type, unit and meaning, in
    ``CODEBOOK_COLUMNS`` order (``annotations.selectors.codebook``)."""
    return codebook_rows(
        columns={
            "responses": RESPONSE_COLUMNS,
            "items": study_item_columns(study=study),
            "participants": PARTICIPANT_COLUMNS,
            "summary": SUMMARY_COLUMNS,
        }
    )


def study_codebook_csv_lines(*, study: Study) -> Iterator[str]:
    return csv_lines(columns=CODEBOOK_COLUMNS, rows=study_codebook_records(study=study))


def report_summary_csv_lines(*, report: dict) -> Iterator[str]:
    """The analysis report (``annotations.services.analysis.study_report_get``) as ``key,value``
    rows."""
    from annotations.analysis.report import report_flatten

    return csv_lines(columns=SUMMARY_COLUMNS, rows=report_flatten(report))
