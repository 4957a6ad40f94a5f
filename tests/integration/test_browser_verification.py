"""One verification item in headless Chromium, by keyboard alone, at desktop and phone size:
the model's answer and its evidence are shown and readable, Y/N give the verdict, a digit the
confidence, Enter submits, and the verdict is stored. The helpers are test_browser.py's."""

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


@pytest.mark.parametrize("viewport, key, verdict", [(DESKTOP, "y", True), (PHONE, "n", False)])
def test_one_verification_item_by_keyboard(browser, live_server, alice, tmp_path, viewport, key, verdict):
    study = build_study(
        alice,
        tmp_path,
        n_dataset_items=12,
        n_items=4,
        items_per_participant=2,
        raters_per_item=2,
        # only the explanation arm has places: the participant sees the evidence
        conditions=[ConditionSpec("baseline"), ConditionSpec("ig", ["heatmap", "tokens"])],
        task="verification",
        explanation_display="predicted_unlabelled",
        name=f"verify-{key}",
    )
    study.conditions.get(name="baseline").slots.all().delete()
    touch = viewport is PHONE
    context = browser.new_context(viewport=viewport, has_touch=touch, is_mobile=touch)
    page = context.new_page()
    page.goto(f"{live_server.url}/s/{study.public_id}/")
    with page.expect_navigation():
        page.click("#consent")
    assert "Y" in page.inner_text(".keys-note") and "N" in page.inner_text(".keys-note")
    with page.expect_navigation():
        page.click("#start")
    participant = Participant.objects.get(study=study)
    assignment = participant.assignments.filter(status="active").order_by("position").first()
    prediction = Prediction.objects.get(model=study.model, item=assignment.item).label

    assert page.inner_text("#model-answer").strip() == prediction
    assert page.locator("#shared-evidence img.view").count() == 1  # the heatmap of the model's answer
    _images_loaded(page)
    _fits(page, viewport)
    _readable(page, f"verification item at {viewport['width']} px")
    page.keyboard.press(key)
    assert page.locator('input[name="verdict"]').nth(0 if verdict else 1).is_checked()
    page.keyboard.press("3")
    assert page.locator('input[name="confidence"][value="3"]').is_checked()
    with page.expect_navigation():
        page.keyboard.press("Enter")
    response = Response.objects.get(assignment=assignment)
    assert (response.verdict, response.confidence, response.guess) == (verdict, 3, "")
    # the next item is served; the focus ring of a chosen option is visible (keyboard use)
    assert page.locator("#model-answer").count() == 1
    page.keyboard.press("y")
    focused = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
    assert focused != "none"
    context.close()
