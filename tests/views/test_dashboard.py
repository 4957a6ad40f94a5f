"""The study dashboard: who sees it (alice owns, bob collaborates, charlie sees nothing), what it
shows (server-side SVG plots, tables, live progress, downloads) and its downloads."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ElementTree

import pytest

from annotations.selectors.exports import study_items_csv_lines, study_participants_csv_lines, study_responses_csv_lines
from tests.builders.answered_study import build_answered_study
from tests.builders.dashboard import dashboard_computed_at_once  # noqa: F401  (fixture)
from tests.builders.studies import build_study

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.urls("tests.api.urls"),
    pytest.mark.usefixtures("dashboard_computed_at_once"),
]


@pytest.fixture(autouse=True)
def media_root(settings, tmp_path):
    path = tmp_path / "media"
    path.mkdir()
    settings.MEDIA_ROOT = path
    return path


@pytest.fixture(autouse=True)
def fast(settings, monkeypatch):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    monkeypatch.setattr("annotations.services.analysis.DEFAULT_RESAMPLES", 200)
    monkeypatch.setattr("annotations.services.analysis.DEFAULT_PERMUTATIONS", 200)


@pytest.fixture
def shared(alice, bob, tmp_path):
    study = build_answered_study(alice, tmp_path, participants_per_arm=4)
    study.collaborators.add(bob)
    return study


def _urls(study) -> list[str]:
    base = f"/studies/{study.pk}"
    return [
        f"{base}/dashboard/",
        f"{base}/dashboard/?section=all",
        f"{base}/dashboard/progress.json",
        *[f"{base}/exports/{what}.csv" for what in ("responses", "items", "participants", "summary")],
    ]


def test_outsiders_and_anonymous_visitors_see_nothing(client, charlie, shared):
    for url in _urls(shared):
        response = client.get(url)
        assert response.status_code == 302 and "/accounts/login/" in response["Location"], url
    client.force_login(charlie)
    for url in _urls(shared):
        assert client.get(url).status_code == 404, url


def test_owner_and_collaborator_see_the_dashboard(client, alice, bob, shared):
    for user in (alice, bob):
        client.force_login(user)
        response = client.get(f"/studies/{shared.pk}/dashboard/")
        assert response.status_code == 200
        html = response.content.decode("utf-8")
        for section in (
            "progress",
            "exports",
            "analysis-warnings",
            "accuracy",
            "mixed-model",
            "sequential",
            "power",
            "agreement",
            "calibration",
            "metrics",
            "exclusions",
            "participants",
        ):
            assert f'id="{section}"' in html, section
        # 4 participants per arm and 8 items: the intervals rest on few clusters, and the page says so
        assert "only 8 items (fewer than 20)" in html
        assert "correct ~ arm + (1 | participant) + (1 | item)" in html
        assert "No interim looks were declared" in html
        # three server-side plots, inline SVG, no external script or stylesheet from elsewhere
        assert html.count("<svg") == 3
        assert not re.search(r'(src|href)="(https?:)?//', html)  # nothing fetched from elsewhere (no CDN)
        assert "<script src" not in html
        assert "baseline (baseline)" in html  # the baseline drawn as a line on the bar chart
        assert "Brier" in html and "deletion_auc (integrated_gradients)" in html
        for what in ("responses", "items", "participants", "summary", "codebook"):
            assert f'href="/studies/{shared.pk}/exports/{what}.csv"' in html
        assert "max_fast_share" in html  # participant quality: the fast clicker's reasons
        assert "the pre-registered exclusions applied" in html
        context = response.context
        assert context["section"] == "after_exclusions"
        assert {row["arm"] for row in context["agreement_rows"]} == {"baseline", "heatmap"}
        table = html[html.index('id="participant-table"') :]
        body = table[table.index("<tbody>") : table.index("</tbody>")]
        assert body.count("<tr") == 8 == context["n_participants"]
        assert body.count('<tr class="excluded">') >= 3 and body.count("<td>yes: ") >= 3
        ElementTree.fromstring(str(context["svg"]["accuracy"]))

    other = client.get(f"/studies/{shared.pk}/dashboard/?section=all")
    assert other.context["section"] == "all" and "all participants" in other.content.decode("utf-8")
    n_all = other.context["block"]["data"]["n_test_responses"]
    assert n_all > response.context["block"]["data"]["n_test_responses"]


def test_sequential_and_power_cards(client, alice, tmp_path):
    from annotations.models import Study

    study = build_answered_study(alice, tmp_path, participants_per_arm=6, name="planned")
    Study.objects.filter(pk=study.pk).update(
        sequential_monitoring={"spending": "obrien_fleming", "looks": [2, 6], "effect_of_interest": 0.2}
    )
    client.force_login(alice)
    response = client.get(f"/studies/{study.pk}/dashboard/")
    html = response.content.decode("utf-8")
    sequential = response.context["sequential"]
    assert sequential["spending"] == "O'Brien–Fleming" and [look["n"] for look in sequential["looks"]] == [2, 6]
    assert sequential["looks"][0]["reached"] and not sequential["looks"][1]["reached"]
    assert 'id="sequential-status"' in html and "the next look comes at 6 complete participants per arm" in html
    power = response.context["power"]
    assert power["effect"] == 0.2 and not power["effect_assumed"]
    assert power["needed_per_arm"] is None or power["more_per_arm"] == max(
        0, power["needed_per_arm"] - power["current_per_arm"]
    )
    assert 'id="power-answer"' in html and "a gain of 20 points" in html
    # 8 test items x 6 raters per item / 6 per participant: arms fill at 8, fewer than the power needs
    capacity = power["capacity"]
    assert (capacity["capacity_per_arm"], capacity["capped"]) == (8, True)
    assert power["needed_per_arm"] > 8
    assert 'id="power-capacity"' in html and "The design fills an arm at 8 participants" in html
    assert f"below the {power['needed_per_arm']} the power needs" in html
    items_change = capacity["changes"][0]
    assert items_change["setting"] == "n_items" and items_change["to"] == -(-power["needed_per_arm"] * 6 // 6)
    assert f"at least {items_change['to']} test items (now 8)" in html


def test_a_section_with_everyone_excluded_still_shows_its_reasons(client, alice, tmp_path):
    """A rule every participant breaks: the excluded section names why each statistic is missing,
    the exclusions table is there, and the unexcluded section is whole (``tests/analysis/
    test_report.py`` has the case of a lost baseline arm)."""
    from annotations.models import Study

    study = build_answered_study(alice, tmp_path, participants_per_arm=4, name="no-baseline")
    rules = {"min_test_responses": 100}  # nobody answered 100 items
    Study.objects.filter(pk=study.pk).update(exclusion_rules=rules)
    client.force_login(alice)
    html = client.get(f"/studies/{study.pk}/dashboard/").content.decode("utf-8")
    assert "No analysis yet" not in html
    assert 'id="exclusions"' in html and "8 of 8 participants excluded" in html
    assert 'id="effects-missing"' in html and "Not computed: <b>effects</b>" in html
    everything = client.get(f"/studies/{study.pk}/dashboard/?section=all")
    assert everything.context["block"]["unavailable"] == {}
    assert set(everything.context["block"]["effects"]) == {"heatmap"}


def test_progress_json_and_downloads(client, bob, shared):
    client.force_login(bob)
    progress = client.get(f"/studies/{shared.pk}/dashboard/progress.json").json()
    assert progress["status"] == "live" and progress["responses"] > 0
    expected = {
        "responses": study_responses_csv_lines,
        "items": study_items_csv_lines,
        "participants": study_participants_csv_lines,
    }
    for what, lines in expected.items():
        response = client.get(f"/studies/{shared.pk}/exports/{what}.csv")
        assert response.status_code == 200 and response["Content-Type"].startswith("text/csv")
        assert f'filename="study-{shared.pk}-{what}.csv"' in response["Content-Disposition"]
        assert b"".join(response.streaming_content).decode("utf-8") == "".join(lines(study=shared))
    summary = b"".join(client.get(f"/studies/{shared.pk}/exports/summary.csv").streaming_content).decode("utf-8")
    assert summary.startswith("key,value\n") and "analysis.all.simulation_accuracy.heatmap.all.ci_low" in summary
    assert client.get(f"/studies/{shared.pk}/exports/secrets.csv").status_code == 404


def test_a_study_without_responses_shows_progress_and_no_analysis(client, alice, tmp_path):
    study = build_study(alice, tmp_path, name="quiet")
    client.force_login(alice)
    response = client.get(f"/studies/{study.pk}/dashboard/")
    assert response.status_code == 200
    html = response.content.decode("utf-8")
    assert "No analysis yet: no responses yet" in html and "No participants yet" in html
    assert 'id="progress"' in html and "<svg" not in html
    follow = client.get(f"/studies/{study.pk}/exports/summary.csv", follow=True)
    assert "Cannot export summary" in follow.content.decode("utf-8")


def test_dashboard_cache_follows_survey_submissions_and_participant_changes(alice, tmp_path):
    """The cached dashboard is rebuilt when a participant submits the survey (no response or
    participant is added) and when a participant's phase, finish time or exclusion flag changes
    — the cache key carries those, whatever the cache backend (the default is per-process
    LocMemCache)."""
    from django.utils import timezone

    from annotations.models import Participant
    from annotations.selectors.analysis import study_data_version
    from annotations.services.analysis import study_dashboard_get
    from annotations.services.participants import participant_survey_submit

    study = build_answered_study(alice, tmp_path, participants_per_arm=3)
    participant = Participant.objects.filter(study=study, condition__is_baseline=False).order_by("pk").first()
    Participant.objects.filter(pk=participant.pk).update(
        phase=Participant.Phase.SURVEY, helpfulness=None, comment="", finished_at=None
    )

    def row() -> dict:
        found = study_dashboard_get(study=study)
        return next(p for p in found["participants"] if p["participant"] == str(participant.public_id))

    before = row()
    assert (before["phase"], before["helpfulness"], before["finished_at"]) == ("survey", None, None)
    assert study_dashboard_get(study=study) is not None and row() == before  # served from the cache

    participant.refresh_from_db()
    participant_survey_submit(participant=participant, helpfulness=4, comment="helpful maps")
    after = row()
    assert (after["phase"], after["helpfulness"], after["comment"]) == ("done", 4, "helpful maps")
    assert after["finished_at"] is not None

    versions = {study_data_version(study=study)}
    for change in (
        {"phase": Participant.Phase.TEST},
        {"finished_at": timezone.now()},
        {"excluded": True},
        {"screened_out": True},
        {"comment": "edited in the admin"},
    ):
        Participant.objects.filter(pk=participant.pk).update(**change)
        versions.add(study_data_version(study=study))
    assert len(versions) == 6  # each change moved the key
    assert row()["phase"] == "test" and row()["comment"] == "edited in the admin"


def test_dashboard_exports_go_through_the_downloads_module_not_the_api():
    """An interface does not import another: the dashboard streams its CSVs with
    ``annotations.downloads.study_export_response``, as the API does."""
    import ast
    import inspect

    import annotations.views_dashboard as views_dashboard
    from annotations import api, downloads

    imported = {
        node.module
        for node in ast.walk(ast.parse(inspect.getsource(views_dashboard)))
        if isinstance(node, ast.ImportFrom)
    }
    assert "annotations.api" not in imported and "annotations.downloads" in imported
    assert views_dashboard.study_export_response is downloads.study_export_response
    assert api.study_export_response is downloads.study_export_response
    assert "def study_export_response" not in inspect.getsource(api)


def test_loading_the_urls_imports_no_numerical_stack():
    """Web processes load matplotlib, pandas and scipy only when a dashboard or an analysis is
    computed, not when the URL configuration is imported."""
    import os
    import subprocess
    import sys

    code = (
        "import django, os, sys; os.environ['DJANGO_SETTINGS_MODULE'] = 'mmeval.settings'; django.setup(); "
        "import mmeval.urls; print([m for m in ('matplotlib', 'pandas', 'scipy', 'torch') if m in sys.modules])"
    )
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "mmeval.settings"}
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]"


def test_a_staged_study_shows_accuracy_confidence_and_agreement_by_stage(client, alice, shared, monkeypatch):
    arms = [c.name for c in shared.conditions.order_by("pk")]
    baseline = next(c.name for c in shared.conditions.all() if c.is_baseline)
    order = [baseline, *[a for a in arms if a != baseline]]
    monkeypatch.setattr("annotations.services.analysis.study_stage_order", lambda *, study: order)
    client.force_login(alice)
    html = client.get(f"/studies/{shared.pk}/dashboard/?section=all").content.decode("utf-8")

    assert 'id="stages"' in html and 'id="stage-increments"' in html
    increments = re.search(r'id="stage-increments".*?<tbody>(.*?)</tbody>', html, re.S).group(1)
    assert f"{order[0]} → {order[1]}" in increments and "%" in increments and "[" in increments
    stages = re.search(r'id="stages-table".*?<tbody>(.*?)</tbody>', html, re.S).group(1)
    assert stages.count("<tr>") == len(order)


def test_a_study_without_stages_shows_no_stage_card(client, alice, shared):
    client.force_login(alice)
    assert 'id="stages"' not in client.get(f"/studies/{shared.pk}/dashboard/").content.decode("utf-8")
