"""The four CSV exports, and the round trip: the statistics recomputed from the exported CSVs
alone equal the numbers the service computes from its database."""

from __future__ import annotations

import csv
import io
import itertools
import json
from datetime import UTC

import pandas as pd
import pytest
from django.core.management import call_command

from annotations.analysis import analyze, load_items_csv, load_responses_csv, participant_quality, study_report
from annotations.analysis.report import report_flatten
from annotations.models import Explanation, Participant, Prediction, Response
from annotations.selectors.analysis import study_items_frame, study_responses_frame
from annotations.selectors.exports import (
    ITEM_BASE_COLUMNS,
    PARTICIPANT_COLUMNS,
    RESPONSE_COLUMNS,
    csv_lines,
    platform_id_exported,
    report_summary_csv_lines,
    study_items_csv_lines,
    study_participants_csv_lines,
    study_response_records,
    study_responses_csv_lines,
)
from annotations.services.analysis import AnalysisUnavailable, study_report_compute
from tests.builders.answered_study import RULES, build_answered_study

pytestmark = pytest.mark.django_db

FAST = {"n_resamples": 200, "n_permutations": 200}


@pytest.fixture
def answered(alice, tmp_path):
    return build_answered_study(alice, tmp_path)


def _read(lines) -> tuple[list[str], list[dict]]:
    reader = csv.DictReader(io.StringIO("".join(lines)))
    return list(reader.fieldnames), list(reader)


def test_round_trip_db_to_csv_gives_identical_analysis(answered, tmp_path):
    """analyze on the DB-built frame == analyze on the exported responses CSV; the full report
    (exclusion rules recomputed, metrics vs human from the items CSV) too; and so do the
    service and ``manage.py analyze --json``."""
    settings = {"baseline": "baseline", "seed": answered.seed, **FAST}
    from_db = study_responses_frame(study=answered)
    items_db = study_items_frame(study=answered)
    responses_path, items_path = tmp_path / "responses.csv", tmp_path / "items.csv"
    call_command("export_study", str(answered.pk), what="responses", out=responses_path)
    call_command("export_study", answered.public_id, what="items", out=items_path)
    from_csv = load_responses_csv(responses_path)
    items_csv = load_items_csv(items_path)

    plain_db = analyze(from_db, **settings)
    assert plain_db == analyze(from_csv, **settings)
    assert plain_db["all"] != plain_db["after_exclusions"]  # the exclusions bite

    full = dict(exclusion_rules=answered.exclusion_rules, default_fast_rt_ms=answered.min_rt_ms)
    report_db = study_report(from_db, items=items_db, **full, **settings)
    report_csv = study_report(from_csv, items=items_csv, **full, **settings)
    assert report_db == report_csv
    assert report_db["analysis"] == plain_db  # the exported flags are the rules' flags
    assert report_db["metrics_vs_human"]["all"]["n_items_with_metrics"] == 8

    service = study_report_compute(study=answered, **FAST)
    # "study" and "answer_options" describe the study's design, not its answers; the items export
    # carries the latter per item (n_candidates, model_answer_valid).
    assert {k: v for k, v in service.items() if k not in ("study", "answer_options")} == report_db
    assert service["answer_options"]["mean_chance"] == 0.25 and not service["answer_options"]["declared"]
    out = io.StringIO()
    call_command("analyze", str(answered.pk), "--json", "--n-resamples", "200", "--n-permutations", "200", stdout=out)
    assert json.loads(out.getvalue()) == json.loads(json.dumps(service))
    text = io.StringIO()
    call_command("analyze", answered.public_id, "--n-resamples", "200", "--n-permutations", "200", stdout=text)
    assert "After pre-registered exclusions" in text.getvalue() and "vs baseline" in text.getvalue()


def test_responses_export_rows_flags_and_hashed_ids(answered, alice, tmp_path):
    text = "".join(study_responses_csv_lines(study=answered))
    # the fast path (participant columns formatted once) writes what the plain writer would
    assert text == "".join(csv_lines(columns=RESPONSE_COLUMNS, rows=study_response_records(study=answered)))
    header, rows = _read([text])
    assert header == RESPONSE_COLUMNS
    real = Response.objects.filter(participant__study=answered).exclude(participant__platform="preview")
    assert len(rows) == real.count() and Response.objects.filter(participant__platform="preview").exists()

    attention = [r for r in rows if r["is_attention_check"] == "True"]
    assert attention and {r["attention_passed"] for r in attention} == {"True", "False"}
    assert {r["phase"] for r in rows} == {"test", "pretest"}
    assert all(r["attention_passed"] == "" for r in rows if r["is_attention_check"] == "False")
    for row in rows:
        assert row["correct_simulation"] == str(row["guess"] == row["model_prediction"])
        assert row["fast_response"] == str(int(row["rt_ms"]) < 700)
        assert json.loads(row["candidate_order"]) and row["explanation_methods"] in ("none", "integrated_gradients")
        assert row["views"] == ("none" if row["condition"] == "baseline" else "heatmap")

    for _participant, group in itertools.groupby(rows, key=lambda r: r["participant"]):
        stamps = [r["created_at"] for r in group]
        assert stamps == sorted(stamps)  # each participant's rows in submission order
    by_participant: dict[str, set] = {}
    for row in rows:
        by_participant.setdefault(row["participant"], set()).add((row["excluded"], row["exclusion_reasons"]))
    assert all(len(flags) == 1 for flags in by_participant.values())  # a participant-level decision
    reasons = sorted(next(iter(flags))[1] for flags in by_participant.values())
    assert "max_fast_share;min_median_rt_ms" in reasons  # the fast clicker (k = 1), one per arm
    assert "max_attention_failures" in reasons  # failed the attention check (k = 2)
    assert "exclude_screened_out;min_test_responses" in reasons  # screened out before the test phase

    # platform IDs: keyed hashes, stable within a study, unlinkable across studies
    participant = Participant.objects.filter(study=answered, platform="prolific").first()
    mine = [r for r in rows if r["participant"] == str(participant.public_id)]
    assert {r["platform_id"] for r in mine} == {
        platform_id_exported(study=answered, platform="prolific", platform_id=participant.platform_id)
    }
    assert mine[0]["platform_id"].startswith("h:") and participant.platform_id not in "".join(
        study_responses_csv_lines(study=answered)
    )
    other = build_answered_study(alice, tmp_path, name="other", participants_per_arm=2)
    assert (
        platform_id_exported(study=other, platform="prolific", platform_id=participant.platform_id)
        != mine[0]["platform_id"]
    )
    answered.export_raw_platform_ids = True
    answered.save(update_fields=["export_raw_platform_ids"])
    _, raw = _read(study_responses_csv_lines(study=answered))
    assert participant.platform_id in {r["platform_id"] for r in raw}


def test_items_export(answered):
    header, rows = _read(study_items_csv_lines(study=answered))
    assert header[: len(ITEM_BASE_COLUMNS)] == ITEM_BASE_COLUMNS
    method = answered.explanation_method
    assert f"metric:{method}:deletion_auc" in header and f"metric:{method}:modality_share:image" in header
    pool = answered.study_items.select_related("item")
    assert len(rows) == pool.count()
    labels = list(answered.model.labels)
    for row in rows:
        prediction = Prediction.objects.get(
            model=answered.model, item__external_id=row["item"], item__dataset=answered.dataset
        )
        assert row["model_prediction"] == prediction.label
        assert row["model_correct"] == str(prediction.label == row["gold_label"])
        # keyed by label, in the model's label order
        assert list(json.loads(row["probabilities"]).items()) == list(zip(labels, prediction.probabilities))
        assert float(row["prediction_probability"]) == prediction.probabilities[labels.index(prediction.label)]
        stored = Explanation.objects.get(
            model=answered.model, item=prediction.item, method=method, target_label=prediction.label
        ).metrics
        assert float(row[f"metric:{method}:deletion_auc"]) == stored["deletion_auc"]
        assert float(row[f"metric:{method}:modality_share:text"]) == stored["modality_share"]["text"]
        assert row[f"metric:{method}:interaction_dividend"] == ""  # not stored: empty, not 0
    assert {row["stratum"] for row in rows} == {"model_right", "model_wrong"}
    assert {row["group"] for row in rows} == {""} and {row["evidence"] for row in rows} == {""}  # none imported


def test_items_export_carries_the_group_and_the_evidence_region(answered):
    """The bias report's item fields leave with the items, in their import format, a formula-like
    group defused like every other text cell."""
    first, second = [
        shown.item for shown in answered.study_items.select_related("item").order_by("item__line_number")[:2]
    ]
    first.group, first.evidence = "women", {"image": ["A1", "B2"], "text": [0, 3]}
    second.group = "=HYPERLINK(1)"
    first.save(update_fields=["group", "evidence"])
    second.save(update_fields=["group"])
    _, rows = _read(study_items_csv_lines(study=answered))
    by_item = {row["item"]: row for row in rows}
    assert by_item[first.external_id]["group"] == "women"
    assert json.loads(by_item[first.external_id]["evidence"]) == {"image": ["A1", "B2"], "text": [0, 3]}
    assert by_item[second.external_id]["group"] == "'=HYPERLINK(1)"
    assert by_item[second.external_id]["evidence"] == ""


def test_participants_export_matches_the_statistics_module(answered):
    header, rows = _read(study_participants_csv_lines(study=answered))
    assert header == PARTICIPANT_COLUMNS
    assert len(rows) == Participant.objects.filter(study=answered).exclude(platform="preview").count() == 12
    quality = participant_quality(
        study_responses_frame(study=answered), rules=RULES, default_fast_rt_ms=answered.min_rt_ms
    ).set_index("participant")
    for row in rows:
        expected = quality.loc[row["participant"]]
        for column in ("n_test", "n_attention", "n_attention_failed", "n_fast"):
            assert int(row[column]) == expected[column]
        assert row["excluded"] == str(bool(expected["excluded"]))
        assert row["exclusion_reasons"] == expected["exclusion_reasons"]
        median = expected["median_rt_ms"]
        assert (row["median_rt_ms"] == "") if pd.isna(median) else float(row["median_rt_ms"]) == median
        assert row["platform_data"] == ""  # session IDs only with the opt-in
    comments = {row["comment"] for row in rows}
    assert '\'=HYPERLINK("x")' in comments  # formula injection defused
    assert any("\n" in comment for comment in comments)  # multi-line text survives quoting


def test_summary_export_is_the_flattened_report(answered, tmp_path):
    report = study_report_compute(study=answered, **FAST)
    header, rows = _read(report_summary_csv_lines(report=report))
    assert header == ["key", "value"]
    flat = dict(report_flatten(report))
    assert {row["key"] for row in rows} == set(flat)
    key = "analysis.after_exclusions.simulation_accuracy.heatmap.all.estimate"
    assert (
        float(next(r["value"] for r in rows if r["key"] == key))
        == report["analysis"]["after_exclusions"]["simulation_accuracy"]["heatmap"]["all"]["estimate"]
    )
    assert not any(".consensus." in r["key"] for r in rows)

    path = tmp_path / "summary.csv"
    call_command("export_study", str(answered.pk), what="summary", out=path, n_resamples=200, n_permutations=200)
    assert path.read_text(encoding="utf-8") == "".join(report_summary_csv_lines(report=report))


def test_malformed_rules_and_empty_studies_are_refused_before_any_row(answered, alice, tmp_path):
    answered.exclusion_rules = {"max_attention_failure": 0}  # a typo
    answered.save(update_fields=["exclusion_rules"])
    with pytest.raises(ValueError, match="unknown exclusion rule"):
        study_responses_csv_lines(study=answered)
    with pytest.raises(AnalysisUnavailable, match="malformed"):
        study_report_compute(study=answered, **FAST)

    from tests.builders.studies import build_study

    quiet = build_study(alice, tmp_path, n_items=4, items_per_participant=2, name="quiet")
    assert _read(study_responses_csv_lines(study=quiet)) == (RESPONSE_COLUMNS, [])
    assert _read(study_participants_csv_lines(study=quiet))[1] == []
    with pytest.raises(AnalysisUnavailable, match="no responses"):
        study_report_compute(study=quiet, **FAST)


def test_postgres_timestamp_text_becomes_python_isoformat():
    from datetime import datetime, timedelta, timezone

    from annotations.selectors.exports import pg_timestamp_isoformat

    for stamp in (
        datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC),
        datetime(2025, 1, 2, 3, 4, 5, 500000, tzinfo=UTC),
        datetime(2025, 12, 31, 23, 59, 59, 123, tzinfo=UTC),
    ):
        text = str(stamp).replace("+00:00", "+00")
        if stamp.microsecond:  # PostgreSQL trims trailing zeros of the fraction
            head, fraction = text[:-3].split(".")
            text = f"{head}.{fraction.rstrip('0')}+00"
        assert pg_timestamp_isoformat(text) == stamp.isoformat()
    other = datetime(2025, 1, 2, 5, 4, 5, tzinfo=timezone(timedelta(hours=2)))
    assert pg_timestamp_isoformat("2025-01-02 05:04:05+02:00") == other.astimezone(UTC).isoformat()


def test_bench_export_command_runs_and_leaves_nothing_behind():
    from annotations.models import Study

    before = Study.objects.count()
    out = io.StringIO()
    call_command("bench_export", "--rows", "300", "--items-per-participant", "7", stdout=out)
    report = json.loads(out.getvalue().strip().splitlines()[-1])
    assert report["rows"] == report["exported_rows"] == 300 and report["kept"] is False
    assert report["participants"] == 43 and report["rows_per_second"] > 0 and report["peak_rss_during_export_mib"] > 0
    assert Study.objects.count() == before


def test_raw_platform_ids_are_defused_against_csv_formulas(answered):
    """With ``export_raw_platform_ids``, a platform ID arriving as ``=HYPERLINK(…)`` (it comes
    from the participant's URL) is written with a leading ``'`` in both exports; the hashed form
    is still the hash of the ID as received."""
    participant = Participant.objects.filter(study=answered, platform="prolific").order_by("pk").first()
    evil = '=HYPERLINK("http://x","y")'
    Participant.objects.filter(pk=participant.pk).update(platform_id=evil)
    hashed = platform_id_exported(study=answered, platform="prolific", platform_id=evil)
    assert hashed.startswith("h:")
    _, rows = _read(study_participants_csv_lines(study=answered))
    assert {r["platform_id"] for r in rows if r["participant"] == str(participant.public_id)} == {hashed}

    answered.export_raw_platform_ids = True
    answered.save(update_fields=["export_raw_platform_ids"])
    assert platform_id_exported(study=answered, platform="prolific", platform_id=evil) == "'" + evil
    assert platform_id_exported(study=answered, platform="prolific", platform_id="PID-7") == "PID-7"
    for lines in (study_responses_csv_lines(study=answered), study_participants_csv_lines(study=answered)):
        _, rows = _read(lines)
        mine = {r["platform_id"] for r in rows if r["participant"] == str(participant.public_id)}
        assert mine == {"'" + evil}
        assert not any(r["platform_id"][:1] in ("=", "+", "-", "@") for r in rows)


def test_study_export_response_streams_each_export(answered):
    from annotations.downloads import study_export_response
    from annotations.selectors.exports import EXPORTS

    for what in EXPORTS:
        response = study_export_response(study=answered, what=what)
        assert response["Content-Type"] == "text/csv; charset=utf-8" and response["Cache-Control"] == "no-store"
        assert response["Content-Disposition"] == f'attachment; filename="study-{answered.pk}-{what}.csv"'
        body = b"".join(response.streaming_content).decode("utf-8")
        if what == "responses":
            assert body == "".join(study_responses_csv_lines(study=answered))
    with pytest.raises(ValueError, match="unknown export"):
        study_export_response(study=answered, what="secrets")
