"""The responses export's COPY path (PostgreSQL) gives the same bytes as the Python path it
replaced, on studies with awkward text: quotes, commas, line breaks (``\\n`` and ``\\r``),
formula prefixes, unicode, empty and NULL cells, items answered outside the pool, excluded
participants under every rule, hashed and raw platform IDs, several chunks of output."""

from __future__ import annotations

import csv
import io
import random
from datetime import UTC, datetime

import pytest
from django.db import connection

from annotations.models import Condition, Item, Participant, Response, StudyItem
from annotations.selectors.exports import (
    RESPONSE_COLUMNS,
    csv_lines,
    study_response_records,
    study_responses_csv_lines,
    study_responses_csv_lines_copy,
    study_responses_csv_lines_python,
)
from benchmarks.export import generate_study
from tests.builders.answered_study import build_answered_study

pytestmark = [pytest.mark.django_db, pytest.mark.skipif("connection.vendor != 'postgresql'")]

AWKWARD = [
    'say "hi"',
    "a,b",
    "two\nlines",
    "carriage\rreturn",
    "crlf\r\nend",
    "=SUM(A1:A2)",
    "+1",
    "-2",
    "@cmd",
    "\tlead tab",
    "\rlead cr",
    "ünïcödé ✓ 日本",
    " spaced ",
    "'quoted'",
    "back\\slash",
    "\\.",
    "",
]


def _both(study) -> tuple[str, str]:
    return "".join(study_responses_csv_lines_python(study=study)), "".join(study_responses_csv_lines_copy(study=study))


def _make_awkward(study, *, raw_ids: bool) -> None:
    """Put every awkward string in every text cell the responses export writes."""
    rng = random.Random(5)
    for k, item in enumerate(Item.objects.filter(dataset=study.dataset).order_by("pk")):
        Item.objects.filter(pk=item.pk).update(external_id=f"{AWKWARD[k % len(AWKWARD)]}{k}")
    for k, condition in enumerate(Condition.objects.filter(study=study).order_by("pk")):
        Condition.objects.filter(pk=condition.pk).update(name=f"{AWKWARD[(k + 5) % len(AWKWARD)]}arm{k}")
    for k, participant in enumerate(Participant.objects.filter(study=study).order_by("pk")):
        Participant.objects.filter(pk=participant.pk).update(platform_id=AWKWARD[k % len(AWKWARD)])
    for k, response in enumerate(Response.objects.filter(participant__study=study).order_by("pk")):
        fields = {"guess": rng.choice(AWKWARD + [response.model_prediction] * 8)}
        if k % 7 == 0:
            fields["model_prediction"] = rng.choice(AWKWARD)
        if k % 11 == 0:
            fields["gold_label"] = rng.choice(AWKWARD)
        if k % 5 == 0:  # a whole second: no fraction in the ISO time
            fields["created_at"] = datetime(2025, 3, 4, 5, 6, k % 60, tzinfo=UTC)
        Response.objects.filter(pk=response.pk).update(**fields)
    study.export_raw_platform_ids = raw_ids
    study.save(update_fields=["export_raw_platform_ids"])


@pytest.fixture
def answered(alice, tmp_path):
    return build_answered_study(alice, tmp_path)


def test_copy_path_equals_the_python_path_on_the_answered_study(answered):
    python, copy = _both(answered)
    rows = list(csv.DictReader(io.StringIO(copy)))
    assert (
        len(rows)
        == Response.objects.filter(participant__study=answered).exclude(participant__platform="preview").count()
    )
    assert {row["excluded"] for row in rows} == {"True", "False"}  # the builder's bad participants
    assert copy == python
    assert "".join(study_responses_csv_lines(study=answered)) == python  # the default on PostgreSQL is COPY


@pytest.mark.parametrize("raw_ids", [True, False])
def test_copy_path_equals_the_python_path_on_awkward_text(answered, raw_ids):
    _make_awkward(answered, raw_ids=raw_ids)
    # An item answered outside the pool: no stratum.
    outside = StudyItem.objects.filter(study=answered).first()
    outside.delete()
    python, copy = _both(answered)
    assert copy == python
    rows = list(csv.reader(io.StringIO(copy)))
    assert all(len(row) == len(RESPONSE_COLUMNS) for row in rows)  # \r and \n cells are quoted
    cells = {cell for row in rows for cell in row}
    assert any("carriage\rreturn" in cell for cell in cells)
    platform = RESPONSE_COLUMNS.index("platform_id")
    if raw_ids:  # defused in SQL; other cells (labels, item ids) are written as the Python path writes them
        ids = {row[platform] for row in rows[1:]}
        assert "'=SUM(A1:A2)" in ids and "'\rlead cr" in ids and "=SUM(A1:A2)" not in ids
    else:
        assert all(row[platform].startswith("h:") for row in rows[1:] if row[platform])
    assert any(row[RESPONSE_COLUMNS.index("stratum")] == "" for row in rows[1:])


@pytest.mark.parametrize("chunk_bytes", [1, 7, 100])
def test_copy_path_is_the_same_whatever_the_chunk_size(answered, monkeypatch, chunk_bytes):
    """Chunks of one row (a chunk smaller than a row) or of a few rows, on multi-byte text
    ("ünïcödé ✓ 日本"): the same text as the Python path."""
    from annotations.selectors import exports

    _make_awkward(answered, raw_ids=True)
    python = "".join(study_responses_csv_lines_python(study=answered))
    monkeypatch.setattr(exports, "_COPY_CHUNK_BYTES", chunk_bytes)
    assert "日本" in python and "".join(study_responses_csv_lines_copy(study=answered)) == python


@pytest.mark.parametrize(
    "rules",
    [
        {},
        {"min_attention_pass_rate": 0.75, "fast_rt_ms": 0},
        {"max_fast_share": 0.2, "fast_rt_ms": 2000.5, "min_test_responses": 7},
        {"min_median_rt_ms": 4321.5, "exclude_screened_out": True, "max_attention_failures": 1},
    ],
)
def test_copy_path_applies_the_exclusion_rules_as_the_python_path(alice, tmp_path, rules):
    study = build_answered_study(alice, tmp_path, rules=rules, participants_per_arm=5)
    python, copy = _both(study)
    assert copy == python


def test_the_python_path_quotes_a_carriage_return_so_its_own_reader_reads_it_back():
    text = "".join(csv_lines(columns=["a", "b"], rows=[["x\ry", "plain"], ["z", "w\r\n"]]))
    assert text == 'a,b\n"x\ry",plain\nz,"w\r\n"\n'
    assert list(csv.reader(io.StringIO(text))) == [["a", "b"], ["x\ry", "plain"], ["z", "w\r\n"]]


def test_copy_path_on_many_participants_and_chunks(alice):
    """More participants than one batch of the temporary table and output of many 64 KiB
    chunks; each participant's rows in submission order."""
    study = generate_study(rows=12_500, per_participant=2, seed=1, report={})
    python, copy = _both(study)
    assert copy.count("\n") == 12_501
    assert copy == python
    assert "".join(csv_lines(columns=RESPONSE_COLUMNS, rows=study_response_records(study=study))) == python


def test_a_study_without_responses_is_the_header(alice, tmp_path):
    study = build_answered_study(alice, tmp_path, participants_per_arm=1)
    Response.objects.filter(participant__study=study).delete()
    python, copy = _both(study)
    assert copy == python == ",".join(RESPONSE_COLUMNS) + "\n"


def test_malformed_rules_fail_before_any_byte(answered):
    answered.exclusion_rules = {"max_fast_share": "lots"}
    answered.save(update_fields=["exclusion_rules"])
    with pytest.raises(ValueError, match="max_fast_share"):
        study_responses_csv_lines_copy(study=answered)


def test_a_participant_in_two_arms_is_an_error_on_both_paths(answered):
    response = Response.objects.filter(participant__study=answered).exclude(participant__platform="preview").first()
    other = Condition.objects.filter(study=answered).exclude(pk=response.condition_id).first()
    Response.objects.filter(pk=response.pk).update(condition=other)
    for path in (study_responses_csv_lines_python, study_responses_csv_lines_copy):
        with pytest.raises(ValueError, match="two arms"):
            "".join(path(study=answered))


def test_an_export_closed_early_leaves_the_connection_usable_and_no_table_behind(alice):
    study = generate_study(rows=6_000, per_participant=3, seed=2, report={})
    lines = study_responses_csv_lines_copy(study=study)
    next(lines)  # the header
    first = next(lines)
    assert first.count("\n") > 100
    lines.close()
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_tables WHERE tablename LIKE 'mmeval_export_%%'")
        assert cursor.fetchone()[0] == 0
    assert Response.objects.filter(participant__study=study).count() == 6_000
