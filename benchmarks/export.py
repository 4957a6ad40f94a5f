"""Benchmark the streamed CSV export on a large synthetic study (PostgreSQL only).

    python manage.py bench_export --rows 1000000

Django-side: it measures ``annotations.selectors.exports`` against the database (the command is a thin
wrapper that checks its options and prints the report).

1. **Generate** (not timed as export): a throw-away researcher, dataset, model, study (4 arms,
   1,000 items) and ``--rows`` answered assignments and responses, ``--items-per-participant``
   per participant, all inside one transaction. Assignments and responses go in with PostgreSQL
   ``COPY … FROM STDIN`` fed by a generator (every concrete column of the current models, new
   ones at their Django default), so generating needs little memory too.
2. **Export** (timed): ``study_responses_csv_lines`` — the same generator the download button and
   ``export_study`` use, with its server-side cursor — written to ``--out`` (default
   ``/dev/null``). The process's resident set size is sampled from ``/proc/self/status`` every
   256 rows; the report gives the RSS before the export, the peak during it and ``ru_maxrss`` (the
   whole process's peak, generation included).
3. **Roll back** the transaction: nothing stays in the database (``--keep`` commits instead).

Run it against a database of its own (``DATABASE_URL=…/mmeval_bench``, migrated) so a 1M-row
transaction does not slow anyone else down.
"""

from __future__ import annotations

import io
import json
import random
import resource
import time
import uuid
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TextIO

from django.contrib.auth import get_user_model
from django.db import connection, models, transaction

from annotations.models import (
    Assignment,
    Condition,
    Dataset,
    Item,
    Participant,
    RegisteredModel,
    Response,
    Study,
    StudyItem,
)
from annotations.selectors.exports import (
    study_responses_csv_lines,
    study_responses_csv_lines_copy,
    study_responses_csv_lines_python,
)

__all__ = [
    "format_report",
    "generate_study",
    "raw_copy_sql",
    "run_export_benchmark",
    "time_export",
    "time_export_paths",
]

LABELS = ["red", "green", "blue", "yellow", "purple", "orange"]
ARMS = [("baseline", []), ("heatmap", ["heatmap"]), ("tokens", ["tokens"]), ("both", ["heatmap", "tokens"])]


class _Rollback(Exception):
    pass


def _rss_kib() -> int:
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


class _GeneratorFile(io.RawIOBase):
    """A read-only file over an iterator of ``str`` chunks (for ``copy_expert``)."""

    def __init__(self, chunks: Iterable[str]):
        self._chunks = iter(chunks)
        self._buffer = b""

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        while size < 0 or len(self._buffer) < size:
            try:
                self._buffer += next(self._chunks).encode("utf-8")
            except StopIteration:
                break
        if size < 0:
            out, self._buffer = self._buffer, b""
        else:
            out, self._buffer = self._buffer[:size], self._buffer[size:]
        return out


def _copy_text(value: Any) -> str:
    if value is None:
        return r"\N"
    if isinstance(value, bool):
        return "t" if value else "f"
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, (dict, list)):
        value = json.dumps(value)
    return str(value).replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")


def _copy(model: type[models.Model], rows: Iterator[dict[str, Any]], *, batch: int = 2000) -> int:
    """COPY ``rows`` (dicts keyed by column) into ``model``'s table; columns a row lacks get the
    field's Django default. Returns the number of rows."""
    fields = list(model._meta.concrete_fields)
    columns = [f.column for f in fields]
    defaults = {f.column: (f.get_default() if f.has_default() or not f.null else None) for f in fields}
    count = 0

    def lines() -> Iterator[str]:
        nonlocal count
        pending = []
        for row in rows:
            pending.append("\t".join(_copy_text(row[c] if c in row else defaults[c]) for c in columns))
            count += 1
            if len(pending) == batch:
                yield "\n".join(pending) + "\n"
                pending = []
        if pending:
            yield "\n".join(pending) + "\n"

    table = connection.ops.quote_name(model._meta.db_table)
    sql = f"COPY {table} ({', '.join(connection.ops.quote_name(c) for c in columns)}) FROM STDIN"
    with connection.cursor() as cursor:
        cursor.cursor.copy_expert(sql, _GeneratorFile(lines()), size=1 << 16)
    return count


def _reserve_ids(model: type[models.Model], n: int) -> int:
    """Move the id sequence past ``n`` fresh ids; return the first."""
    table = model._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT COALESCE(MAX(id), 0) FROM {connection.ops.quote_name(table)}")
        start = int(cursor.fetchone()[0]) + 1
        cursor.execute("SELECT setval(pg_get_serial_sequence(%s, 'id'), %s)", [table, start + n])
    return start


def run_export_benchmark(
    *,
    rows: int,
    items_per_participant: int,
    out: Path,
    keep: bool,
    seed: int,
    study_id: int | None = None,
    profile: TextIO | None = None,
    compare: bool = False,
) -> dict[str, Any]:
    """Generate a study (or take ``study_id``), time its export, then roll everything back
    unless ``keep``.

    Args:
        rows: responses to generate.
        items_per_participant: test items per participant.
        out: where the CSV goes.
        keep: commit the synthetic study instead of rolling back.
        seed: seeds the generation.
        study_id: export this (earlier ``keep``) study instead of generating one.
        profile: see :func:`time_export`.
        compare: also time the Python path, the COPY path and a raw COPY of the same join
            (:func:`time_export_paths`).

    Returns:
        dict: the report, in the order it is printed (:func:`format_report`).
    """
    report: dict[str, Any] = {}
    try:
        with transaction.atomic():
            if study_id is not None:
                study = Study.objects.get(pk=study_id)
                report["rows"] = Response.objects.filter(participant__study=study).count()
            else:
                study = generate_study(rows=rows, per_participant=items_per_participant, seed=seed, report=report)
            time_export(study=study, out=out, report=report, profile=profile)
            if compare:
                time_export_paths(study=study, out=out, report=report)
            if not keep:
                raise _Rollback
    except _Rollback:
        report["kept"] = False
    else:
        report["kept"] = True
    report["ru_maxrss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    return report


def generate_study(*, rows: int, per_participant: int, seed: int, report: dict) -> Study:
    """A throw-away live study with ``rows`` answered test responses, ``per_participant`` per
    participant (4 arms, 1,000 items), written with ``COPY`` inside the caller's transaction.

    Args:
        rows: responses (and assignments) to write.
        per_participant: test items per participant.
        seed: seeds the plan and the answers.
        report: gets ``rows``, ``participants``, ``items`` and ``generate_seconds``.

    Returns:
        Study: the new study.
    """
    started = time.perf_counter()
    rng = random.Random(seed)
    tag = uuid.uuid4().hex[:10]
    owner = get_user_model().objects.create_user(username=f"bench-export-{tag}")
    dataset = Dataset.objects.create(owner=owner, name=f"bench-{tag}", modalities=["image", "text"])
    model = RegisteredModel.objects.create(
        owner=owner, name=f"bench-{tag}", adapter_path="bench:Adapter", labels=LABELS, modalities=["image", "text"]
    )
    n_items = 1000
    items = Item.objects.bulk_create(
        Item(
            dataset=dataset,
            external_id=f"q{k}",
            payload={"text": f"question {k}"},
            gold_label=LABELS[k % len(LABELS)],
            line_number=k + 1,
        )
        for k in range(n_items)
    )
    study = Study.objects.create(
        owner=owner,
        name=f"bench-export-{tag}",
        dataset=dataset,
        model=model,
        seed=seed,
        items_per_participant=per_participant,
        raters_per_item=1000,
        status=Study.Status.LIVE,
        min_rt_ms=800,
        exclusion_rules={"max_attention_failures": 0, "max_fast_share": 0.5},
    )
    StudyItem.objects.bulk_create(
        StudyItem(study=study, item=item, stratum="model_right" if k % 2 else "model_wrong")
        for k, item in enumerate(items)
    )
    conditions = Condition.objects.bulk_create(
        Condition(study=study, name=name, views=views, is_baseline=not views) for name, views in ARMS
    )
    n_participants = -(-rows // per_participant)
    participants = Participant.objects.bulk_create(
        (
            Participant(
                study=study,
                condition=conditions[k % len(conditions)],
                platform="prolific",
                platform_id=f"PROLIFIC{k:08d}",
                phase="done",
                helpfulness=1 + k % 5,
            )
            for k in range(n_participants)
        ),
        batch_size=5000,
    )
    predictions = {item.pk: LABELS[(k + (k % 3 == 0)) % len(LABELS)] for k, item in enumerate(items)}
    gold = {item.pk: item.gold_label for item in items}
    item_ids = [item.pk for item in items]
    base = datetime(2025, 1, 1, tzinfo=UTC)
    members = [(participant.pk, participant.condition_id) for participant in participants]

    def plan() -> Iterator[tuple[int, int, int, int]]:
        """(participant, condition, item, position) of every response, in order; drawn again
        from the seed on each pass rather than held in memory."""
        draw = random.Random(f"{seed}:plan")
        left = rows
        for participant_id, condition_id in members:
            if left <= 0:
                return
            chosen = draw.sample(item_ids, per_participant)[:left]
            for position, item_id in enumerate(chosen):
                yield participant_id, condition_id, item_id, position
            left -= len(chosen)

    first_assignment = _reserve_ids(Assignment, rows)
    first_response = _reserve_ids(Response, rows)

    def assignments() -> Iterator[dict[str, Any]]:
        for k, (participant_id, condition_id, item_id, position) in enumerate(plan()):
            when = base + timedelta(seconds=k)
            yield {
                "id": first_assignment + k,
                "participant_id": participant_id,
                "phase": "test",
                "kind": "item",
                "item_id": item_id,
                "condition_id": condition_id,
                "public_id": uuid.uuid4(),
                "position": position,
                "status": "answered",
                "candidate_order": LABELS[:4],
                "lease_expires_at": when,
                "served_at": when,
                "created_at": when,
            }

    def responses() -> Iterator[dict[str, Any]]:
        for k, (participant_id, condition_id, item_id, _) in enumerate(plan()):
            prediction = predictions[item_id]
            guess = prediction if rng.random() < 0.6 else LABELS[rng.randrange(len(LABELS))]
            rt = rng.randint(400, 12000)
            yield {
                "id": first_response + k,
                "assignment_id": first_assignment + k,
                "participant_id": participant_id,
                "item_id": item_id,
                "condition_id": condition_id,
                "phase": "test",
                "is_attention_check": False,
                "attention_passed": None,
                "guess": guess,
                "confidence": rng.randint(1, 5),
                "rt_ms": rt,
                "too_fast": rt < 800,
                "candidate_order": LABELS[:4],
                "model_prediction": prediction,
                "gold_label": gold[item_id],
                "created_at": base + timedelta(seconds=k, milliseconds=rt),
            }

    _copy(Assignment, assignments())
    written = _copy(Response, responses())
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE annotations_response")
    report.update(
        rows=written,
        participants=n_participants,
        items=n_items,
        generate_seconds=round(time.perf_counter() - started, 1),
    )
    return study


def time_export(*, study: Study, out: Path, report: dict, profile: TextIO | None = None) -> None:
    """Write ``study``'s responses CSV to ``out`` through ``study_responses_csv_lines`` (the export
    the download button and ``export_study`` use), timing it and sampling the resident set size.

    Args:
        study: the study to export.
        out: where the CSV goes.
        report: gets the row count, seconds, rows/s, CPU seconds and RSS before and during.
        profile: when given, a cProfile of one extra export is written here first.
    """
    if profile is not None:
        import cProfile
        import pstats

        profiler = cProfile.Profile()
        profiler.enable()
        for _ in study_responses_csv_lines(study=study):
            pass
        profiler.disable()
        text = io.StringIO()
        pstats.Stats(profiler, stream=text).sort_stats("tottime").print_stats(18)
        profile.write(text.getvalue())
    rss_before = _rss_kib()
    peak = rss_before
    lines = 0
    cpu_started = time.process_time()
    started = time.perf_counter()
    with open(out, "w", encoding="utf-8", newline="") as stream:
        for k, chunk in enumerate(study_responses_csv_lines(study=study)):
            stream.write(chunk)
            lines += chunk.count("\n")
            if k % 4 == 0:  # every 4 chunks of 256 rows
                peak = max(peak, _rss_kib())
    seconds = time.perf_counter() - started
    cpu = time.process_time() - cpu_started
    peak = max(peak, _rss_kib())
    report.update(
        exported_rows=lines - 1,
        export_seconds=round(seconds, 2),
        rows_per_second=round((lines - 1) / seconds),
        export_cpu_seconds_python=round(cpu, 2),
        rows_per_python_cpu_second=round((lines - 1) / cpu) if cpu else None,
        rss_before_export_mib=round(rss_before / 1024, 1),
        peak_rss_during_export_mib=round(peak / 1024, 1),
        rss_growth_during_export_mib=round((peak - rss_before) / 1024, 1),
    )


def raw_copy_sql(study: Study) -> str:
    """``COPY`` of the join the responses export reads (responses, participants, items, pool),
    in the export's order, with the columns as stored: no formatting, no exclusions, no hashes.
    The floor the COPY path is measured against."""
    return f"""COPY (
        SELECT r.*, p.public_id, p.platform, p.platform_id, p.screened_out, i.external_id, si.stratum
        FROM annotations_response r
        JOIN annotations_participant p ON p.id = r.participant_id
        JOIN annotations_item i ON i.id = r.item_id
        LEFT JOIN annotations_studyitem si ON si.study_id = {int(study.pk)} AND si.item_id = r.item_id
        WHERE p.study_id = {int(study.pk)} AND p.platform <> 'preview'
        ORDER BY r.participant_id, r.id
    ) TO STDOUT WITH (FORMAT csv)"""


def time_export_paths(*, study: Study, out: Path, report: dict) -> None:
    """Time the responses export three ways, each written to ``out``: the Python path (the
    reference, and the SQLite demo's), the COPY path (what PostgreSQL serves) and a raw
    ``COPY`` of the same join straight into the file (:func:`raw_copy_sql`).

    Args:
        study: the study to export.
        out: where each CSV goes (overwritten).
        report: gets ``<path>_seconds``, ``<path>_rows_per_second`` and
            ``<path>_rss_growth_mib`` per path, and ``copy_over_raw`` (the ratio of seconds).
    """

    def timed(name: str, write) -> None:
        rss_before = _rss_kib()
        peak = [rss_before]

        def sample() -> None:
            peak[0] = max(peak[0], _rss_kib())

        started = time.perf_counter()
        rows = write(sample)
        seconds = time.perf_counter() - started
        sample()
        report[f"{name}_seconds"] = round(seconds, 2)
        report[f"{name}_rows_per_second"] = round(rows / seconds)
        report[f"{name}_rss_growth_mib"] = round((peak[0] - rss_before) / 1024, 1)

    def lines_into(lines):
        def write(sample) -> int:
            count = 0
            with open(out, "w", encoding="utf-8", newline="") as stream:
                for k, chunk in enumerate(lines()):
                    stream.write(chunk)
                    count += chunk.count("\n")
                    if k % 8 == 0:
                        sample()
            return count - 1

        return write

    def raw(sample) -> int:
        with open(out, "wb") as stream, connection.cursor() as cursor:
            # Hash joins, the best plan for a whole study: on tables never analysed the planner
            # took a nested loop for this join (15 s against 3 s), and the floor would not be one.
            cursor.execute("SET enable_nestloop = off")
            try:
                cursor.cursor.copy_expert(raw_copy_sql(study), stream, size=1 << 16)
            finally:
                cursor.execute("RESET enable_nestloop")
            return cursor.cursor.rowcount

    timed("python_path", lines_into(lambda: study_responses_csv_lines_python(study=study)))
    timed("copy_path", lines_into(lambda: study_responses_csv_lines_copy(study=study)))
    timed("raw_copy", raw)
    report["copy_over_raw"] = round(report["copy_path_seconds"] / report["raw_copy_seconds"], 2)
    report["python_over_copy"] = round(report["python_path_seconds"] / report["copy_path_seconds"], 2)


def format_report(report: dict) -> list[str]:
    """One line per key (numbers with thousands separators), then the report as JSON."""
    width = max(len(k) for k in report)
    lines = [
        f"{key:<{width}}  {value:,}"
        if isinstance(value, (int, float)) and not isinstance(value, bool)
        else f"{key:<{width}}  {value}"
        for key, value in report.items()
    ]
    return [*lines, json.dumps(report)]
