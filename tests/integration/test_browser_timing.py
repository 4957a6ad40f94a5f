"""Response timing in real headless Chromium (static/mmeval/timing.js): the browser's clock starts
when every image of the item is decoded (served by URL or inlined as data: URIs) and stops at the
submission; leaving the tab is counted; without JavaScript the answer is stored all the same,
with the browser's time missing. No assertion on how long anything took: only orderings and
the bound against the server's time."""

from __future__ import annotations

import base64
import os
import re
import time

import pytest

from annotations.models import Participant, Response
from annotations.services.client_timing import CLIENT_RT_TOLERANCE_MS
from tests.builders.studies import build_study
from tests.integration.test_browser import DESKTOP
from tests.isolation import media_root  # noqa: F401  (autouse fixture: the study's PNGs)

os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

LEAVE_AND_COME_BACK = """async () => {
  const state = value => Object.defineProperty(document, "visibilityState", {value, configurable: true});
  window.dispatchEvent(new Event("blur"));
  state("hidden");
  document.dispatchEvent(new Event("visibilitychange"));
  await new Promise(done => setTimeout(done, 120));
  state("visible");
  document.dispatchEvent(new Event("visibilitychange"));
  window.dispatchEvent(new Event("focus"));
}"""

# The end of every image download of the page and the moment the script called the stimulus shown.
LOADED_AND_SHOWN = """() => ({
  images: performance.getEntriesByType("resource")
    .filter(e => [...document.querySelectorAll("#answer-form img")].some(img => img.src === e.name))
    .map(e => e.responseEnd),
  shown: Number(document.querySelector('input[name="client_display_ms"]').value),
  srcs: [...document.querySelectorAll("#answer-form img")].map(img => img.getAttribute("src")),
  decoded: [...document.querySelectorAll("#answer-form img")].every(img => img.complete && img.naturalWidth > 0),
})"""


@pytest.fixture
def study(alice, tmp_path):
    return build_study(alice, tmp_path, n_items=4, items_per_participant=3, raters_per_item=1, n_candidates=3)


def _enter(page, live_server, study, pid: str) -> None:
    page.goto(f"{live_server.url}/s/{study.public_id}/?PROLIFIC_PID={pid}&STUDY_ID=s&SESSION_ID=x")
    with page.expect_navigation():
        page.click("#consent")
    with page.expect_navigation():
        page.click("#start")


def _answer(page) -> None:
    page.locator('input[name="guess"]').first.check()
    page.check('input[name="confidence"][value="3"]')
    with page.expect_navigation():
        page.click("#submit")


def _pictures_by_url(context, delay: float = 0.2):
    """Serve item pages with every inlined picture turned back into a URL whose picture arrives
    ``delay`` seconds late, as a page that links its pictures would be built."""
    pictures: dict[str, bytes] = {}

    def link(match):
        url = f"/late-picture/{len(pictures)}.png"
        pictures[url] = base64.b64decode(match.group(1))
        return f'src="{url}"'

    def page(route):
        response = route.fetch()
        route.fulfill(response=response, body=re.sub(r'src="data:image/png;base64,([^"]+)"', link, response.text()))

    def late(route):
        time.sleep(delay)
        path = "/" + route.request.url.split("/", 3)[3]
        route.fulfill(status=200, content_type="image/png", body=pictures[path])

    context.route(re.compile(r".*/item/$"), page)
    context.route(re.compile(r".*/late-picture/\d+\.png$"), late)


def test_the_browser_clock_runs_from_the_decoded_stimulus_and_counts_leaving(browser, live_server, study):
    context = browser.new_context(viewport=DESKTOP)
    page = context.new_page()
    _enter(page, live_server, study, "t-1")
    participant = Participant.objects.get(study=study, platform_id="t-1")

    # Item 1, the pictures inlined as data: URIs, as the server sends them: the clock waits for
    # their decoding.
    page.wait_for_selector("#answer-form[data-timing-shown]", state="attached", timeout=60_000)
    seen = page.evaluate(LOADED_AND_SHOWN)
    assert seen["decoded"] and seen["srcs"] and all(s.startswith("data:image/png;base64,") for s in seen["srcs"])
    page.evaluate(LEAVE_AND_COME_BACK)
    _answer(page)

    # Item 2, the same kind of page linking its pictures by URL, each arriving late: displayed
    # only after every picture arrived and was decoded.
    _pictures_by_url(context)
    page.reload()
    page.wait_for_selector("#answer-form[data-timing-shown]", state="attached", timeout=60_000)
    seen = page.evaluate(LOADED_AND_SHOWN)
    assert seen["decoded"] and seen["srcs"] and all(s.startswith("/late-picture/") for s in seen["srcs"])
    assert len(seen["images"]) >= len(seen["srcs"])
    assert max(seen["images"]) <= seen["shown"]
    _answer(page)
    context.close()

    first, second = Response.objects.filter(participant=participant).order_by("id")
    for response in (first, second):
        assert response.client_timing_flags == ""
        assert response.client_rt_ms is not None and response.client_display_ms is not None
        assert response.client_rt_ms <= response.rt_ms + CLIENT_RT_TOLERANCE_MS
    # Leaving the tab once on item 1: one departure (blur and hidden together), hidden at least the
    # 120 ms the page waited between the two events; nothing on item 2.
    assert first.blur_count == 1 and first.hidden_ms >= 100  # timers may round a little short
    assert first.hidden_ms <= first.rt_ms + CLIENT_RT_TOLERANCE_MS
    assert (second.blur_count, second.hidden_ms) == (0, 0)


def test_without_javascript_the_answer_is_stored_with_the_client_time_missing(browser, live_server, study):
    context = browser.new_context(viewport=DESKTOP, java_script_enabled=False)
    page = context.new_page()
    _enter(page, live_server, study, "t-nojs")
    assert page.locator('input[name="client_timing"]').count() == 0  # nothing measured, nothing sent
    _answer(page)
    context.close()
    (response,) = Response.objects.filter(participant__platform_id="t-nojs")
    assert response.guess in response.candidate_order and response.rt_ms >= 0
    assert (response.client_rt_ms, response.client_display_ms, response.blur_count, response.hidden_ms) == (
        None,
        None,
        None,
        None,
    )
    assert response.client_timing_flags == "no_client_timing"
