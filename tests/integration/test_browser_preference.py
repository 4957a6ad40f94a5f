"""One rating item and one preference item in headless Chromium, by keyboard alone, at desktop and
phone size: the explanations are shown and readable (A and B side by side on a desktop, stacked on a
phone), digits answer the rating scales in turn, A/B choose a side, Enter submits, and the answer is
stored. The helpers are test_browser.py's."""

from __future__ import annotations

import pytest

from annotations.models import Participant, Response
from annotations.services.studies import ConditionSpec
from tests.builders.studies import build_study
from tests.integration.test_browser import (
    DESKTOP,
    PHONE,
    _fits,
    _images_loaded,
    _readable,
)

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def _start(browser, live_server, study, viewport):
    touch = viewport is PHONE
    context = browser.new_context(viewport=viewport, has_touch=touch, is_mobile=touch)
    page = context.new_page()
    page.goto(f"{live_server.url}/s/{study.public_id}/")
    with page.expect_navigation():
        page.click("#consent")
    with page.expect_navigation():
        page.click("#start")
    participant = Participant.objects.get(study=study)
    return context, page, participant.assignments.filter(status="active").order_by("position").first()


@pytest.mark.parametrize("viewport, key, side", [(DESKTOP, "a", "left"), (PHONE, "b", "right")])
def test_one_preference_item_by_keyboard(browser, live_server, alice, tmp_path, viewport, key, side):
    study = build_study(
        alice,
        tmp_path,
        n_dataset_items=12,
        n_items=3,
        items_per_participant=2,
        raters_per_item=2,
        conditions=[ConditionSpec("baseline"), ConditionSpec("heat", ["heatmap"]), ConditionSpec("words", ["tokens"])],
        task="preference",
        explanation_display="predicted_unlabelled",
        name=f"prefer-{key}",
    )
    context, page, assignment = _start(browser, live_server, study, viewport)
    a, b = page.locator("#explanation-a").bounding_box(), page.locator("#explanation-b").bounding_box()
    if viewport is DESKTOP:
        assert b["x"] >= a["x"] + a["width"] - 1 and abs(b["y"] - a["y"]) < 2  # side by side
    else:
        assert b["y"] >= a["y"] + a["height"] - 1  # B below A
    _images_loaded(page)
    _fits(page, viewport)
    _readable(page, f"preference item at {viewport['width']} px")
    page.keyboard.press(key)
    assert page.locator(f'input[name="preferred"][value="{side}"]').is_checked()
    page.keyboard.press("4")
    assert page.locator('input[name="confidence"][value="4"]').is_checked()
    with page.expect_navigation():
        page.keyboard.press("Enter")
    response = Response.objects.get(assignment=assignment)
    assert (response.preferred, response.confidence, response.guess) == (side, 4, "")
    assert (response.left_condition_id, response.right_condition_id) == (
        assignment.left_condition_id,
        assignment.right_condition_id,
    )
    assert page.locator("#explanation-b").count() == 1  # the next item is served
    context.close()


@pytest.mark.parametrize("viewport", [DESKTOP, PHONE])
def test_one_rating_item_by_keyboard(browser, live_server, alice, tmp_path, viewport):
    study = build_study(
        alice,
        tmp_path,
        n_dataset_items=12,
        n_items=3,
        items_per_participant=2,
        raters_per_item=1,
        conditions=[ConditionSpec("baseline"), ConditionSpec("ig", ["heatmap", "tokens"])],
        task="rating",
        explanation_display="predicted_unlabelled",
        name=f"rate-{viewport['width']}",
    )
    context, page, assignment = _start(browser, live_server, study, viewport)
    assert page.locator("#explanation img.view").count() == 1
    _images_loaded(page)
    _fits(page, viewport)
    _readable(page, f"rating item at {viewport['width']} px")
    # each digit answers the highlighted question, then the next is highlighted; Backspace goes back
    for scale, digit in (("helpfulness", "4"), ("trust", "1"), ("trust", "2"), ("understanding", "5")):
        if scale == "trust" and digit == "2":
            page.keyboard.press("Backspace")
        assert "active" in page.locator(f"#scale-{scale}").get_attribute("class")
        page.keyboard.press(digit)
        assert page.locator(f'input[name="{scale}"][value="{digit}"]').is_checked()
    page.keyboard.press("3")
    assert page.locator('input[name="confidence"][value="3"]').is_checked()
    with page.expect_navigation():
        page.keyboard.press("Enter")
    response = Response.objects.get(assignment=assignment)
    assert (response.rating_helpfulness, response.rating_trust, response.rating_understanding) == (4, 2, 5)
    assert response.confidence == 3
    context.close()
