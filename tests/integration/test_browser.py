"""Participant sessions in real headless Chromium: one per kind of view (baseline, heatmap +
tokens, interaction views, MultiViz's features and prediction views), through every phase, entering from Prolific and MTurk; then the
database and the CSV."""

from __future__ import annotations

import csv
import io
import os
import re
from urllib.parse import parse_qs

import pytest
from django.core.management import call_command

from annotations.models import Assignment, Participant, Prediction, Response
from annotations.services.studies import ConditionSpec
from tests.builders.demo_study import PLANT_ADAPTER, PLANT_ARMS, VIEW_ARMS, live_demo_study

# Playwright's sync API runs an event loop in this thread; Django's ORM calls here are still
# synchronous and safe.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
DESKTOP, PHONE = {"width": 1200, "height": 900}, {"width": 390, "height": 844}
MTURK_SANDBOX = "https://workersandbox.mturk.com"


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    if not os.path.exists(CHROMIUM):
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium (./run test does)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def _current(study, platform_id: str) -> Assignment:
    participant = Participant.objects.get(study=study, platform_id=platform_id)
    return participant.assignments.filter(status="active").order_by("position").select_related("item").first()


def _images_loaded(page) -> None:
    for img in page.locator("img").all():
        assert img.evaluate("img => img.complete && img.naturalWidth > 0"), img.get_attribute("src")


def _fits(page, viewport) -> None:
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= viewport["width"], f"the page is {width} px wide in a {viewport['width']} px viewport"


# What the layout checks measure, in CSS pixels.
MIN_TEXT_PX = 12  # the colour scale's numbers and signs: text at 1x, never shrunk pixels
MIN_DIGIT_PX = 8  # the drawn height of those digits (a 12 px sans-serif font's digits are ~8.7 px)
MIN_GRID_LABEL_PX = 11  # the patch grid's letters and numbers around the picture

BOXES = """() => {
  const box = e => { const r = e.getBoundingClientRect(); return {x: r.x, y: r.y, w: r.width, h: r.height}; };
  const visible = e => e.getClientRects().length > 0 && getComputedStyle(e).visibility !== "hidden";
  const font = e => parseFloat(getComputedStyle(e).fontSize);
  const ink = document.createElement("canvas").getContext("2d");
  const glyphs = e => {  // the drawn height of the text's glyphs, in CSS pixels
    ink.font = getComputedStyle(e).font;
    const m = ink.measureText(e.textContent);
    return m.actualBoundingBoxAscent + m.actualBoundingBoxDescent;
  };
  return {
    buttons: [...document.querySelectorAll(".zoom-btn")].filter(visible).map(box),
    // everything a button could hide: the views, their captions, the token lines, the legend
    content: [...document.querySelectorAll("img.view, .view-name, .tokens, .fbars, .legend .scale, .choice")]
      .filter(visible).map(e => ({what: e.className || e.tagName, ...box(e)})),
    ticks: [...document.querySelectorAll(".scale-ticks > span")].filter(visible)
      .map(e => ({text: e.textContent, font: font(e), glyphs: glyphs(e), ...box(e)})),
    picture: [...document.querySelectorAll(".grid-picture")].map(box)[0] || null,
    columns: [...document.querySelectorAll(".grid-columns > span")].map(e => ({text: e.textContent, font: font(e), ...box(e)})),
    rows: [...document.querySelectorAll(".grid-rows > span")].map(e => ({text: e.textContent, font: font(e), ...box(e)})),
    text: document.body.innerText,
  };
}"""


def _overlap(a: dict, b: dict) -> bool:
    return (
        a["x"] < b["x"] + b["w"] and b["x"] < a["x"] + a["w"] and a["y"] < b["y"] + b["h"] and b["y"] < a["y"] + a["h"]
    )


def _check_layout(page, views: list[str], *, touch: bool) -> None:
    """On an item page with explanations: no enlarge button covers any view, caption, token
    line or legend; the colour scales are text of at least MIN_TEXT_PX with their signs;
    the patch grid's labels sit over and beside the picture, each on its column or row;
    no hover wording on a touch screen."""
    seen = page.evaluate(BOXES)
    views_drawn = [v for v in views if v != "tokens"]
    # The table view is text (feature bars), not a picture: it has no enlarge button.
    assert (seen["buttons"] or views_drawn == ["table"]) and len(seen["buttons"]) == page.locator("img.view").count()
    for button in seen["buttons"]:
        hidden = [c["what"] for c in seen["content"] if _overlap(button, c)]
        assert not hidden, f"an enlarge button at {button} covers {hidden}"
    # The views whose colour scale the legend states (share and the MultiViz views have fixed axes).
    if set(views) & {"heatmap", "tokens", "interaction", "table", "series", "audio"}:
        assert seen["ticks"], "no colour scale stated on the page"
    for low, zero, high in zip(*[iter(seen["ticks"])] * 3):
        assert (low["text"][0], zero["text"], high["text"][0]) == ("\u2212", "0", "+"), (low, zero, high)
        for tick in (low, zero, high):
            assert tick["font"] >= MIN_TEXT_PX and tick["glyphs"] >= MIN_DIGIT_PX, tick
    if {"interaction", "top_pairs"} & set(views_drawn):
        picture = seen["picture"]
        assert [c["text"] for c in seen["columns"]] == list("ABCDEFGH")
        assert [r["text"] for r in seen["rows"]] == [str(k) for k in range(1, 9)]
        for k, column in enumerate(seen["columns"]):
            centre = picture["x"] + (k + 0.5) * picture["w"] / 8
            assert abs(column["x"] + column["w"] / 2 - centre) < 2 and column["y"] + column["h"] <= picture["y"] + 1
            assert column["font"] >= MIN_GRID_LABEL_PX
        for k, row in enumerate(seen["rows"]):
            centre = picture["y"] + (k + 0.5) * picture["h"] / 8
            assert abs(row["y"] + row["h"] / 2 - centre) < 2 and row["x"] + row["w"] <= picture["x"] + 1
            assert row["font"] >= MIN_GRID_LABEL_PX
    if "tokens" in views:
        # A mouse user is told to point at a word for its score; a touch screen has no pointer
        # to hover with, so it is not told: the same page, seen on each kind of device.
        other = page.context.browser.new_context(
            storage_state=page.context.storage_state(),
            viewport=DESKTOP if touch else PHONE,
            has_touch=not touch,
            is_mobile=not touch,
        )
        again = other.new_page()
        again.goto(page.url)
        text = again.inner_text("body")
        other.close()
        with_touch, with_mouse = (seen["text"], text) if touch else (text, seen["text"])
        assert re.search(r"\bpoint at a word\b", with_mouse, flags=re.IGNORECASE)
        assert not re.findall(r"\b(hover|point at)\b", with_touch, flags=re.IGNORECASE)
    elif touch:
        assert not re.findall(r"\b(hover|point at)\b", seen["text"], flags=re.IGNORECASE)


def _session(browser, live_server, study, *, query: str, platform_id: str, viewport: dict, check=None) -> dict:
    """One participant from entry to exit. Returns what happened, for the checks after.
    ``check(page)``, if given, runs on every item page before it is answered."""
    touch = viewport is PHONE
    context = browser.new_context(viewport=viewport, has_touch=touch, is_mobile=touch)
    exits: list[dict] = []

    def external(route):  # the platforms' own pages are outside this test
        request = route.request
        exits.append({"url": request.url, "method": request.method, "post": request.post_data or ""})
        route.fulfill(status=200, content_type="text/html", body="<p id='platform'>back on the platform</p>")

    def last_submit(route):
        # Playwright routes only the first request of a redirect chain (submit -> /done/ ->
        # Prolific): follow our own redirects here and record where the server sends people.
        response = route.fetch(max_redirects=0)
        location = response.headers.get("location", "")
        if response.status == 302 and location.endswith("/done/"):
            done = context.request.get(f"{live_server.url}{location}", max_redirects=0)
            if done.status == 302 and done.headers["location"].startswith("https://app.prolific.com/"):
                exits.append({"url": done.headers["location"], "method": "GET", "post": ""})
                route.fulfill(status=200, content_type="text/html", body="<p id='platform'>back on the platform</p>")
                return
        route.fulfill(response=response)

    context.route("**/survey/", last_submit)
    context.route("**/item/*/", last_submit)
    context.route("https://app.prolific.com/**", external)
    context.route(f"{MTURK_SANDBOX}/**", external)
    page = context.new_page()
    page.goto(f"{live_server.url}/s/{study.public_id}/{query}")
    with page.expect_navigation():
        page.click("#consent")
    with page.expect_navigation():
        page.click("#start")
    seen = {"learning": 0, "pretest": 0, "test": 0, "checks": 0, "checked": 0}
    participant = Participant.objects.get(study=study, platform_id=platform_id)
    views = participant.condition.views
    while True:
        assignment = _current(study, platform_id)
        if assignment is None:
            break
        _images_loaded(page)
        _fits(page, viewport)
        if check is not None:
            check(page)
        prediction = Prediction.objects.get(model=study.model, item=assignment.item).label
        if assignment.phase == "learning":
            seen["learning"] += 1
            # The practice phase reveals the model's answer, with its evidence.
            assert page.inner_text("#model-answer").strip() == prediction
            assert page.locator("img.view").count() == (
                len(assignment.candidate_order) * len([v for v in views if v not in ("tokens", "table")])
            )
            with page.expect_navigation():
                page.keyboard.press("Enter")
            continue
        # Before an answer: no reveal, explanations only in the test phase of explanation arms.
        seen[assignment.phase] += 1
        assert page.locator("#model-answer").count() == 0
        assert "The model answered" not in page.content()
        expected_views = len(assignment.candidate_order) * len([v for v in views if v not in ("tokens", "table")])
        assert page.locator("img.view").count() == (expected_views if assignment.phase == "test" else 0)
        if "table" in views and assignment.phase == "test":
            assert page.locator(".candidate .fbars").count() == len(assignment.candidate_order)
        if "tokens" in views and assignment.phase == "test":
            assert page.locator(".candidate .tokens").count() == len(assignment.candidate_order)
            assert page.locator("#legend").is_visible()
        if views and assignment.phase == "test":
            _check_layout(page, views, touch=touch)
            seen["checked"] += 1
        if assignment.kind == "attention":
            seen["checks"] += 1
        if assignment.check_type == "instructed":
            label = page.inner_text(".instructed b").strip()
            page.check(f'input[name="guess"][value="{label}"]')
        elif assignment.check_type == "gold":
            page.check(f'input[name="guess"][value="{assignment.expected_answer}"]')
        else:
            page.keyboard.press("a")  # a letter picks that candidate
            assert page.locator('input[name="guess"]').first.is_checked()
        page.keyboard.press("4")  # a digit sets the confidence
        assert page.locator('input[name="confidence"][value="4"]').is_checked()
        with page.expect_navigation():
            page.keyboard.press("Enter")  # and Enter submits
    if page.locator("#survey-form").count():
        if views:
            page.check('input[name="helpfulness"][value="4"]')
        page.fill("#comment", f"session {platform_id}")
        with page.expect_navigation():
            page.click("#survey-submit")
    if page.locator("#mturk-form").count():
        _fits(page, viewport)
        page.click("#mturk-submit")
    page.wait_for_selector("#platform")
    context.close()
    return {"seen": seen, "exits": exits, "views": views}


def test_one_session_per_kind_of_view(browser, live_server, alice, demo_jsonl, tmp_path):
    study = live_demo_study(
        owner=alice,
        jsonl=demo_jsonl,
        conditions=VIEW_ARMS,
        n_items=4,
        items_per_participant=2,
        raters_per_item=2,
        n_candidates=3,
        learning_items=1,
        attention_checks=1,
        survey=True,
    )
    sessions = [
        ("pp-1", "?PROLIFIC_PID=pp-1&STUDY_ID=s1&SESSION_ID=x1", DESKTOP),
        ("W-2", f"?workerId=W-2&assignmentId=A-2&hitId=H1&turkSubmitTo={MTURK_SANDBOX}", PHONE),
        ("pp-3", "?PROLIFIC_PID=pp-3&STUDY_ID=s1&SESSION_ID=x3", PHONE),
    ]
    results = {
        pid: _session(browser, live_server, study, query=q, platform_id=pid, viewport=v) for pid, q, v in sessions
    }

    # Balanced assignment gave each arm one of the three sessions.
    participants = {p.platform_id: p for p in Participant.objects.filter(study=study)}
    assert {p.condition.name for p in participants.values()} == {"baseline", "ig", "interactions"}
    for pid, result in results.items():
        checked = 3 if result["views"] else 0  # the layout of every explanation page
        assert result["seen"] == {"learning": 1, "pretest": 0, "test": 3, "checks": 1, "checked": checked}, result
        assert participants[pid].phase == "done" and not participants[pid].screened_out
    # Exit codes: Prolific redirects with the completion code; MTurk posts the assignment back.
    for pid in ("pp-1", "pp-3"):
        (exit_,) = results[pid]["exits"]
        assert exit_["url"] == f"https://app.prolific.com/submissions/complete?cc={study.completion_code}"
    (turk,) = results["W-2"]["exits"]
    assert (turk["url"], turk["method"]) == (f"{MTURK_SANDBOX}/mturk/externalSubmit", "POST")
    posted = parse_qs(turk["post"])
    assert posted["assignmentId"] == ["A-2"] and posted["completion_code"] == [study.completion_code]
    assert participants["W-2"].platform == "mturk"
    assert participants["W-2"].platform_data["turkSubmitTo"] == MTURK_SANDBOX
    for p in participants.values():
        assert p.helpfulness == (4 if p.condition.views else None)

    responses = Response.objects.filter(participant__study=study)
    assert responses.count() == 3 * 3
    assert responses.filter(is_attention_check=True, attention_passed=True).count() == 3
    assert all(r.guess in r.candidate_order and r.confidence == 4 and r.rt_ms >= 0 for r in responses)
    out = tmp_path / "responses.csv"
    call_command("export_study", str(study.pk), out=out)
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    assert len(rows) == responses.count()
    assert sorted(r["guess"] for r in rows) == sorted(responses.values_list("guess", flat=True))


def test_a_whole_study_of_the_tabular_demo(browser, live_server, alice, plants_jsonl):
    """The plants demo (a table of measurements + a note) through every phase, one session per
    arm: the participant reads the table and the note, and the feature bars of every candidate
    load beside the note's highlighted words."""
    study = live_demo_study(
        owner=alice,
        jsonl=plants_jsonl,
        adapter_path=PLANT_ADAPTER,
        conditions=PLANT_ARMS,
        n_items=4,
        items_per_participant=2,
        raters_per_item=2,
        n_candidates=4,
        learning_items=1,
        attention_checks=1,
        survey=True,
    )

    def reads_the_input(page) -> None:
        table = page.locator(".input-table")
        assert table.is_visible()
        assert table.locator("tbody th").all_inner_texts() == [  # in name order, as the feature bars
            "leaf spots",
            "soil moisture %",
            "sun hours a day",
            "temperature °C",
        ]
        assert all(re.fullmatch(r"\u2212?[0-9.]+", v) for v in table.locator("tbody td").all_inner_texts())
        assert re.search(r"\bon the [a-z]+\b", page.inner_text(".item-input .question"))

    sessions = [
        ("pp-1", "?PROLIFIC_PID=pp-1&STUDY_ID=s1&SESSION_ID=x1", DESKTOP),
        ("pp-2", "?PROLIFIC_PID=pp-2&STUDY_ID=s1&SESSION_ID=x2", PHONE),
        ("pp-3", "?PROLIFIC_PID=pp-3&STUDY_ID=s1&SESSION_ID=x3", DESKTOP),
    ]
    results = {
        pid: _session(browser, live_server, study, query=q, platform_id=pid, viewport=v, check=reads_the_input)
        for pid, q, v in sessions
    }

    participants = {p.platform_id: p for p in Participant.objects.filter(study=study)}
    assert {p.condition.name for p in participants.values()} == {arm.name for arm in PLANT_ARMS}
    for pid, result in results.items():
        checked = 3 if result["views"] else 0
        assert result["seen"] == {"learning": 1, "pretest": 0, "test": 3, "checks": 1, "checked": checked}, result
        assert participants[pid].phase == "done"
        (exit_,) = result["exits"]
        assert exit_["url"] == f"https://app.prolific.com/submissions/complete?cc={study.completion_code}"
    responses = Response.objects.filter(participant__study=study)
    assert responses.count() == 3 * 3
    assert all(r.guess in r.candidate_order and r.confidence == 4 for r in responses)


def test_the_multiviz_views_at_desktop_and_phone_size(browser, live_server, alice, demo_jsonl):
    arms = [ConditionSpec(name="baseline"), ConditionSpec(name="multiviz", views=["features", "prediction"])]
    study = live_demo_study(
        owner=alice,
        jsonl=demo_jsonl,
        conditions=arms,
        n_items=4,
        items_per_participant=2,
        raters_per_item=2,
        n_candidates=3,
        learning_items=1,
        survey=False,
    )
    # Balanced assignment puts one of each consecutive pair in each arm: one desktop and one
    # phone session in the MultiViz arm.
    sessions = [("d-1", DESKTOP), ("d-2", DESKTOP), ("p-3", PHONE), ("p-4", PHONE)]
    results = {
        pid: _session(
            browser,
            live_server,
            study,
            query=f"?PROLIFIC_PID={pid}&STUDY_ID=s&SESSION_ID={pid}",
            platform_id=pid,
            viewport=v,
        )
        for pid, v in sessions
    }

    shown = {pid for pid, result in results.items() if result["views"]}
    assert len(shown) == 2 and len(shown & {"d-1", "d-2"}) == 1 and len(shown & {"p-3", "p-4"}) == 1
    for pid in shown:
        assert results[pid]["seen"]["checked"] == 2 and results[pid]["seen"]["learning"] == 1
