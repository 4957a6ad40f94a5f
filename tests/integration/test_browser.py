"""A full participant session in real headless Chromium, then the database and the CSV."""

from __future__ import annotations

import csv
import io
import os

import pytest
from django.core.management import call_command

from annotations.models import Participant, Response
from tests.integration.builders import live_demo_study

# Playwright's sync API runs an event loop in this thread; Django's ORM calls here are still
# synchronous and safe.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    if not os.path.exists(CHROMIUM):
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium (./run test does)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def test_participant_session_end_to_end(browser, live_server, alice, demo_jsonl, tmp_path):
    study = live_demo_study(owner=alice, jsonl=demo_jsonl, n_items=8, items_per_participant=4, raters_per_item=2)
    codes = []
    for viewport in ({"width": 1200, "height": 900}, {"width": 390, "height": 844}):  # desktop, then a phone
        page = browser.new_page(viewport=viewport)
        page.goto(f"{live_server.url}/s/{study.public_id}/?PROLIFIC_PID=pp-{viewport['width']}&STUDY_ID=s1&SESSION_ID=x1")
        page.click("#consent")
        page.click("#start")
        for n in range(study.items_per_participant):
            page.wait_for_selector("#answer-form")
            assert page.locator(".input-image").evaluate("img => img.complete && img.naturalWidth > 0")
            heatmaps = page.locator("img.heatmap")
            for k in range(heatmaps.count()):
                assert heatmaps.nth(k).evaluate("img => img.complete && img.naturalWidth > 0")
            page.keyboard.press(str(1 + n % 2))  # keyboard shortcut picks a candidate
            page.check(f'input[name="confidence"][value="{1 + n % 5}"]')
            page.click("#submit")
        page.wait_for_selector("#completion-code")
        codes.append(page.inner_text("#completion-code").strip())
        page.close()

    assert codes == [study.completion_code] * 2
    participants = Participant.objects.filter(study=study)
    assert participants.count() == 2
    assert {p.platform_id for p in participants} == {"pp-1200", "pp-390"}
    assert all(p.phase == Participant.Phase.DONE for p in participants)
    assert {p.condition.name for p in participants} == {"baseline", "ig"}
    responses = Response.objects.filter(participant__study=study)
    assert responses.count() == 2 * study.items_per_participant
    assert all(r.guess in r.candidate_order and 1 <= r.confidence <= 5 and r.rt_ms >= 0 for r in responses)

    out = tmp_path / "responses.csv"
    call_command("export_study", str(study.pk), out=out)
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    assert len(rows) == responses.count()
    by_key = {(r["participant"], r["item"]): r for r in rows}
    for response in responses:
        row = by_key[(str(response.participant.public_id), response.item.external_id)]
        assert row["guess"] == response.guess
        assert row["model_prediction"] == response.model_prediction
        assert row["correct_simulation"] == str(response.guess == response.model_prediction)
        assert int(row["confidence"]) == response.confidence
