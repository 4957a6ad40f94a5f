"""One rationale item in headless Chromium: at desktop size by keyboard alone (Tab to the grid,
arrow keys, Space, a digit, Enter), at phone size by touch (a tap on a cell, a drag across a row,
a tap on a word). The marks are stored as the page showed them. The helpers are test_browser.py's."""

from __future__ import annotations

import pytest

from annotations.models import Participant, Prediction, Response
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


def _focused_mark(page) -> str:
    return page.evaluate("document.activeElement.name === 'mark' ? document.activeElement.value : ''")


def _centre(page, selector: str) -> tuple[float, float]:
    box = page.locator(selector).bounding_box()
    return box["x"] + box["width"] / 2, box["y"] + box["height"] / 2


@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["desktop-keyboard", "phone-touch"])
def test_one_rationale_item(browser, live_server, alice, tmp_path, viewport):
    phone = viewport is PHONE
    study = build_study(
        alice,
        tmp_path,
        n_dataset_items=12,
        n_items=4,
        items_per_participant=2,
        raters_per_item=2,
        conditions=[ConditionSpec("baseline"), ConditionSpec("ig", ["heatmap", "tokens"])],
        task="rationale",
        name="mark-phone" if phone else "mark-desktop",
    )
    context = browser.new_context(viewport=viewport, has_touch=phone, is_mobile=phone)
    page = context.new_page()
    page.goto(f"{live_server.url}/s/{study.public_id}/")
    with page.expect_navigation():
        page.click("#consent")
    assert "Space" in page.inner_text(".keys-note")
    with page.expect_navigation():
        page.click("#start")
    assignment = Participant.objects.get(study=study).assignments.filter(status="active").order_by("position").first()
    gold = assignment.item.gold_label
    assert page.inner_text("#evidence-for").strip() == gold
    prediction = Prediction.objects.get(model=study.model, item=assignment.item).label
    if prediction != gold:
        assert prediction not in page.content()
    _images_loaded(page)
    _fits(page, viewport)
    _readable(page, f"rationale item at {viewport['width']} px")
    # the grid's cells are targets a finger can hit (8 across, at least 30 px each)
    assert page.locator(".rationale-grid").bounding_box()["width"] >= 8 * 30

    if not phone:
        for _ in range(30):  # Tab to the grid: one stop per part
            page.keyboard.press("Tab")
            if _focused_mark(page):
                break
        assert _focused_mark(page) == "image:A1"
        for key in ["ArrowRight"] * 2 + ["ArrowDown"] * 3:
            page.keyboard.press(key)
        assert _focused_mark(page) == "image:C4"
        page.keyboard.press("Space")
        page.keyboard.press("ArrowRight")
        page.keyboard.press("Space")
        page.keyboard.press("Tab")  # the words: the next part's single stop
        assert _focused_mark(page) == "text:0"
        for _ in range(3):
            page.keyboard.press("ArrowRight")
        page.keyboard.press("Space")
        page.keyboard.press("4")
        expected = {"image": ["C4", "D4"], "text": [3]}
        assert page.locator('input[value="image:D4"]').is_checked()
        focus_ring = page.evaluate("getComputedStyle(document.activeElement.closest('label')).outlineStyle")
        assert focus_ring != "none"
        with page.expect_navigation():
            page.keyboard.press("Enter")
    else:
        page.touchscreen.tap(*_centre(page, "label.cell:has(input[value='image:E5'])"))
        assert page.locator('input[value="image:E5"]').is_checked()
        # a drag across the top row, A1 to C1, marks the three cells
        page.mouse.move(*_centre(page, "label.cell:has(input[value='image:A1'])"))
        page.mouse.down()
        for cell in ("B1", "C1"):
            page.mouse.move(*_centre(page, f"label.cell:has(input[value='image:{cell}'])"), steps=4)
        page.mouse.up()
        assert [page.locator(f'input[value="image:{c}"]').is_checked() for c in ("A1", "B1", "C1", "D1")] == [
            True,
            True,
            True,
            False,
        ]
        page.touchscreen.tap(*_centre(page, "label.word:has(input[value='text:3'])"))
        page.touchscreen.tap(*_centre(page, "fieldset.confidence label:has(input[value='4'])"))
        expected = {"image": ["A1", "B1", "C1", "E5"], "text": [3]}
        with page.expect_navigation():
            page.touchscreen.tap(*_centre(page, "#submit"))
    response = Response.objects.get(assignment=assignment)
    assert (response.rationale, response.confidence, response.guess) == (expected, 4, "")
    assert page.locator("#evidence-for").count() == 1  # the next item is served
    context.close()
