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

from annotations.analysis.stages import MULTIVIZ_STAGES
from annotations.models import Assignment, Participant, Prediction, Response
from annotations.services.studies import ConditionSpec
from tests.builders.demo_study import PLANT_ADAPTER, PLANT_ARMS, VIEW_ARMS, live_demo_study

# Playwright's sync API runs an event loop in this thread; Django's ORM calls here are still
# synchronous and safe.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

DESKTOP, PHONE = {"width": 1200, "height": 900}, {"width": 390, "height": 844}
MTURK_SANDBOX = "https://workersandbox.mturk.com"


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
    no hover wording (word scores are printed)."""
    seen = page.evaluate(BOXES)
    views_drawn = [v for v in views if v != "tokens"]
    # The table view is text (feature bars), not a picture: it has no enlarge button. Views of
    # the steps not chosen in the step tabs are hidden, with their buttons.
    shown = page.evaluate("[...document.querySelectorAll('img.view')].filter(e => e.getClientRects().length).length")
    assert len(seen["buttons"]) == shown
    # Some picture is in sight, unless the views are laid out as text (table, share bars) or
    # the first step of the step tabs holds none.
    tabs = page.locator("[role=tab]").count()
    assert shown or tabs or set(views_drawn) <= {"table", "share"}, views_drawn
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
    # Word scores are printed under the words: no page tells anyone to hover or point.
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
                len(assignment.candidate_order) * len([v for v in views if v not in ("tokens", "table", "share")])
            )
            with page.expect_navigation():
                page.keyboard.press("Enter")
            continue
        # Before an answer: no reveal, explanations only in the test phase of explanation arms.
        seen[assignment.phase] += 1
        assert page.locator("#model-answer").count() == 0
        assert "The model answered" not in page.content()
        expected_views = len(assignment.candidate_order) * len(
            [v for v in views if v not in ("tokens", "table", "share")]
        )
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


# --- readable at 1x and on a phone ----------------------------------------------------------

LAPTOP = {"width": 1366, "height": 768}
MIN_PAGE_TEXT_PX = 11  # no HTML text of a participant page is smaller, in CSS pixels

READABLE = """() => {
  const width = document.documentElement.clientWidth;
  const shown = e => e.getClientRects().length > 0 && getComputedStyle(e).visibility !== "hidden" && !e.closest(".sr-only");
  const name = e => e.tagName.toLowerCase() + (e.className && typeof e.className === "string" ? "." + e.className.split(" ").join(".") : "");
  const small = [], wide = [], cut = [];
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    const e = node.parentElement, text = node.textContent.trim();
    if (!text || !shown(e) || e.closest("script, style")) continue;
    const range = document.createRange();
    range.selectNodeContents(node);
    const r = range.getBoundingClientRect();
    if (!r.width || !r.height) continue;
    const px = parseFloat(getComputedStyle(e).fontSize);
    if (px < 11) small.push({text: text.slice(0, 40), px, in: name(e)});
  }
  for (const e of document.body.querySelectorAll("*")) {
    if (!shown(e)) continue;
    const r = e.getBoundingClientRect(), style = getComputedStyle(e);
    if (r.right > width + 0.5 || r.left < -0.5) wide.push({in: name(e), left: r.left, right: r.right});
    const clips = style.textOverflow === "ellipsis" || style.overflowX === "hidden" || style.overflowX === "clip";
    if (clips && e.textContent.trim() && e.scrollWidth > e.clientWidth + 1) cut.push({in: name(e), text: e.textContent.trim().slice(0, 40)});
  }
  const stages = [...document.querySelectorAll(".stage-group")].filter(shown).map(e => e.className);
  return {small, wide, cut, stages, height: document.documentElement.scrollHeight, page_width: document.documentElement.scrollWidth, width};
}"""


def _readable(page, where: str) -> dict:
    """On a participant page: no visible text below MIN_PAGE_TEXT_PX, nothing wider than the
    viewport, and no text cut off (an ellipsis or a clipped box)."""
    seen = page.evaluate(READABLE)
    assert not seen["small"], f"{where}: text below {MIN_PAGE_TEXT_PX} px: {seen['small'][:5]}"
    assert not seen["wide"] and seen["page_width"] <= seen["width"], f"{where}: overflows: {seen['wide'][:5]}"
    assert not seen["cut"], f"{where}: cut off: {seen['cut'][:5]}"
    return seen


def _option_names(page) -> list[str]:
    """The accessible name of each answer option, as a screen reader reads it."""
    return re.findall(r'\bradio "([^"]*)"', page.locator("fieldset.candidates").aria_snapshot())


def _check_steps(page, n_candidates: int, where: str) -> int:
    """The step tabs: a tablist, operable by keyboard, one step shown at a time and the same
    step for every candidate, each step readable. Returns the tallest step's page height."""
    tabs, tallest = page.get_by_role("tab"), 0
    assert tabs.count() >= 2 and page.get_by_role("tablist").count() == 1
    for k in range(tabs.count()):
        if k:
            page.keyboard.press("ArrowRight")
        else:
            tabs.first.focus()
        selected = page.locator('[role=tab][aria-selected="true"]')
        assert selected.count() == 1 and selected.get_attribute("id") == tabs.nth(k).get_attribute("id")
        assert page.evaluate("document.activeElement.getAttribute('role')") == "tab"
        stage = tabs.nth(k).get_attribute("id").removeprefix("stage-tab-")
        seen = _readable(page, f"{where}, step {stage}")
        assert seen["stages"] == [f"stage-group stage-{stage}"] * n_candidates, seen["stages"]
        tallest = max(tallest, seen["height"])
    page.keyboard.press("Home")
    assert page.locator('[role=tab][aria-selected="true"]').get_attribute("id") == tabs.first.get_attribute("id")
    return tallest


def test_every_view_is_readable_at_1x_and_on_a_phone(browser, live_server, alice, bob, demo_jsonl, plants_jsonl):
    """Every kind of view of the demos (the shapes demo's MultiViz stage arms and its share
    arm, the plants demo's arms), on a laptop at 1x and on a phone with touch: text of at
    least 11 px, nothing wider than the screen, no name cut off, short option names that do
    not say which is the model's, a visible keyboard focus, and a full MultiViz item in
    about two laptop screens (step tabs)."""
    shapes_arms = [ConditionSpec(name=name, views=list(views)) for name, views in MULTIVIZ_STAGES]
    shapes_arms.append(ConditionSpec(name="share", views=["interaction", "top_pairs", "share"]))
    design = dict(n_items=len(shapes_arms), items_per_participant=1, raters_per_item=1, survey=False)
    shapes = live_demo_study(owner=alice, jsonl=demo_jsonl, conditions=shapes_arms, n_candidates=4, **design)
    design["n_items"] = len(PLANT_ARMS)
    plants = live_demo_study(  # another owner: the builder names every demo study alike
        owner=bob, jsonl=plants_jsonl, adapter_path=PLANT_ADAPTER, conditions=PLANT_ARMS, n_candidates=4, **design
    )
    heights = {}
    for study, arms in ((shapes, shapes_arms), (plants, PLANT_ARMS)):
        for k in range(len(arms)):  # one entry per arm: permuted blocks give each arm one
            context = browser.new_context(viewport=LAPTOP)
            page = context.new_page()
            page.goto(f"{live_server.url}/s/{study.public_id}/?PROLIFIC_PID=r{k}&STUDY_ID=s&SESSION_ID=r{k}")
            with page.expect_navigation():
                page.click("#consent")
            with page.expect_navigation():
                page.click("#start")
            participant = Participant.objects.get(study=study, platform_id=f"r{k}")
            arm, views = participant.condition.name, participant.condition.views
            assignment = _current(study, f"r{k}")
            _images_loaded(page)
            where = f"{arm} at {LAPTOP['width']} px"
            seen = _readable(page, where)
            heights[(study.pk, arm)] = seen["height"]
            # Short accessible names: the letter and the candidate, nothing of the evidence.
            names = _option_names(page)
            letters = "ABCDEFGH"
            assert names == [f"{letters[i]}: {label}" for i, label in enumerate(assignment.candidate_order)], names
            # A visible keyboard focus on the answer and confidence choices.
            page.keyboard.press("b")
            outline = "getComputedStyle(document.activeElement.closest('{}')).outlineStyle"
            assert page.evaluate(outline.format(".candidate")) != "none"
            page.keyboard.press("3")
            assert page.evaluate(outline.format("label")) != "none"
            if page.get_by_role("tab").count():
                heights[(study.pk, arm)] = _check_steps(page, len(assignment.candidate_order), where)
            phone = browser.new_context(
                storage_state=context.storage_state(), viewport=PHONE, has_touch=True, is_mobile=True
            )
            small = phone.new_page()
            small.goto(page.url)
            _images_loaded(small)
            _readable(small, f"{arm} at {PHONE['width']} px with touch")
            if "tokens" in views:  # each word's score is printed, for touch as for keyboard
                assert small.locator(".tok-score").count() == small.locator(".tok").count() > 0
            phone.close()
            context.close()
    # Every arm was seen, and the full MultiViz item fits in about two laptop screens.
    assert {arm for _, arm in heights} == {a.name for a in shapes_arms} | {a.name for a in PLANT_ARMS}
    assert heights[(shapes.pk, "U+C+R+P")] <= 2.2 * LAPTOP["height"], heights


def test_an_item_page_is_one_request(browser, live_server, alice, demo_jsonl):
    """Issue 22: loading an item page costs one document request; its pictures (the input and
    every candidate's views) are inside it, and nothing else is asked of the server but static
    files (the stylesheet, which whitenoise serves cacheable outside this test server)."""
    arms = [ConditionSpec(name="baseline"), ConditionSpec(name="every", views=["heatmap", "interaction", "top_pairs"])]
    study = live_demo_study(
        owner=alice,
        jsonl=demo_jsonl,
        conditions=arms,
        n_items=4,
        items_per_participant=2,
        raters_per_item=2,
        n_candidates=3,
        learning_items=1,
        survey=True,  # the last answer leads to the survey, on this server
    )
    item_url = f"{live_server.url}/s/{study.public_id}/item/"
    for k in range(2):  # balanced arms: one of the first two entrants sees explanations
        context = browser.new_context(viewport=DESKTOP)
        page = context.new_page()
        page.goto(f"{live_server.url}/s/{study.public_id}/?PROLIFIC_PID=one-{k}&STUDY_ID=s&SESSION_ID=x")
        with page.expect_navigation():
            page.click("#consent")
        with page.expect_navigation():
            page.click("#start")
        if Participant.objects.get(study=study, platform_id=f"one-{k}").condition.views:
            break
        context.close()
    requests = []
    page.on("request", lambda request: requests.append(request))
    explained_pages = 0
    while (assignment := _current(study, f"one-{k}")) is not None:
        requests.clear()
        response = page.goto(item_url)
        assert response.status == 200
        page.wait_for_load_state("load")
        _images_loaded(page)
        documents = [r for r in requests if r.resource_type == "document"]
        assert [(r.method, r.url) for r in documents] == [("GET", item_url)]
        others = [r for r in requests if r.resource_type != "document"]
        assert all(r.url.startswith(f"{live_server.url}/static/") for r in others), [r.url for r in others]
        sources = page.eval_on_selector_all("img", "imgs => imgs.map(i => i.getAttribute('src'))")
        assert sources and all(s.startswith("data:image/png;base64,") for s in sources)
        if assignment.phase != "pretest":
            assert page.locator("img.view").count() == 3 * len(assignment.candidate_order)
            explained_pages += 1
        if assignment.phase == "learning":
            with page.expect_navigation():
                page.click("#next")
        else:
            page.check(f'input[name="guess"][value="{assignment.expected_answer or assignment.candidate_order[0]}"]')
            page.check('input[name="confidence"][value="3"]')
            with page.expect_navigation():
                page.click("#submit")
    context.close()
    assert explained_pages == 3  # the practice item and two test items
