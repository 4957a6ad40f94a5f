"""Counterfactual items in headless Chromium, by keyboard alone, at desktop and phone size, in
one study: the original input, the model's answer on it and its evidence, then the edited input
with what changed, all shown and readable; a letter picks the answer on the edit, a digit the
confidence, Enter submits, and the guess is stored with the edit's answer. The helpers are
test_browser.py's; the Chromium is conftest.py's."""

from __future__ import annotations

import pytest

from annotations.models import CounterfactualEdit, Participant, Prediction, Response
from annotations.services.studies import ConditionSpec, study_launch
from tests.builders.counterfactual import make_counterfactual_edits
from tests.builders.studies import build_study
from tests.integration.test_browser import (
    DESKTOP,
    PHONE,
    _fits,
    _images_loaded,
    _readable,
)

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_counterfactual_items_by_keyboard_at_desktop_and_phone_size(browser, live_server, alice, tmp_path):
    study = build_study(
        alice,
        tmp_path,
        n_dataset_items=12,
        n_items=4,
        items_per_participant=2,
        raters_per_item=2,
        n_candidates=0,
        # only the explanation arm has places: the participant sees the evidence
        conditions=[ConditionSpec("baseline"), ConditionSpec("ig", ["heatmap", "tokens"])],
        task="counterfactual",
        explanation_display="predicted_unlabelled",
        launch=False,
        name="counterfactual-browser",
    )
    make_counterfactual_edits(study)
    study = study_launch(study=study)
    study.conditions.get(name="baseline").slots.all().delete()
    for viewport in (DESKTOP, PHONE):
        touch = viewport is PHONE
        context = browser.new_context(viewport=viewport, has_touch=touch, is_mobile=touch)
        page = context.new_page()
        page.goto(f"{live_server.url}/s/{study.public_id}/")
        with page.expect_navigation():
            page.click("#consent")
        with page.expect_navigation():
            page.click("#start")
        participant = Participant.objects.filter(study=study).order_by("-pk").first()
        assignment = participant.assignments.filter(status="active").order_by("position").first()
        edit = CounterfactualEdit.objects.get(study=study, item=assignment.item, shown=True)
        original = Prediction.objects.get(model=study.model, item=assignment.item).label
        where = f"counterfactual item at {viewport['width']} px"

        assert page.inner_text("#original-answer").strip() == original
        assert page.locator("#shared-evidence img.view").count() == 1  # the heatmap of the model's answer
        assert edit.description in page.inner_text("#edit-description")
        assert page.locator("#edited-image").is_visible()
        _images_loaded(page)
        _fits(page, viewport)
        _readable(page, where)
        # the letter of the edit's answer picks it, a digit the confidence, Enter submits
        letter = chr(ord("a") + assignment.candidate_order.index(edit.model_label))
        page.keyboard.press(letter)
        assert page.locator(f'input[name="guess"][value="{edit.model_label}"]').is_checked()
        focused = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
        assert focused != "none", where  # the focus ring of the chosen option is visible
        page.keyboard.press("4")
        with page.expect_navigation():
            page.keyboard.press("Enter")
        response = Response.objects.get(assignment=assignment)
        assert (response.guess, response.edit_prediction, response.confidence) == (edit.model_label,) * 2 + (4,)
        context.close()
