"""The researcher's new-study form in headless Chromium: each error sits in its own field's
box, under its input, in that field's grid column (an error list inside a ``<p>`` used to break
out of it into a grid cell of its own)."""

from __future__ import annotations

import os

import pytest
from django.test import Client

from annotations.services.datasets import dataset_import
from tests.builders.studies import make_model, write_dataset
from tests.integration.test_browser import DESKTOP, PHONE

os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

ERRORS_IN_PLACE = """() => [...document.querySelectorAll("#study-form .errorlist")].map(list => {
  const field = list.closest(".field");
  const input = field && field.querySelector("input, select, textarea");
  const box = e => e.getBoundingClientRect();
  return {
    text: list.textContent.trim(),
    field: field ? (input ? input.name : "") : null,
    parent: list.parentElement.className,
    inside: !!field && box(list).left >= box(field).left - 0.5 && box(list).right <= box(field).right + 0.5,
    below: !!input && box(list).top >= box(input).bottom - 0.5,
    sameColumn: !!input && Math.abs(box(list).left - box(field).left) < 1,
  };
})"""


def _design(page, *, name: str, **numbers: str) -> None:
    page.fill("input[name=name]", name)
    page.select_option("select[name=dataset]", label="shapes")
    page.select_option("select[name=model]", index=1)
    page.fill("input[name=arm_0_name]", "baseline")
    page.fill("input[name=arm_1_name]", "ig")
    page.check("input[name=arm_1_views][value=heatmap]")
    for field, value in {"n_items": "4", "items_per_participant": "2", **numbers}.items():
        page.fill(f"input[name={field}]", value)


@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["desktop", "phone"])
def test_form_errors_sit_under_their_own_field(browser, live_server, alice, tmp_path, viewport):
    dataset_import(owner=alice, name="shapes", jsonl_path=write_dataset(tmp_path / "src", 12))
    make_model(alice)
    client = Client()
    client.force_login(alice)
    cookie = client.cookies["sessionid"].value
    context = browser.new_context(viewport=viewport)
    context.add_cookies([{"name": "sessionid", "value": cookie, "url": live_server.url}])
    page = context.new_page()
    page.goto(f"{live_server.url}/studies/new/")
    _design(page, name="ux draft ok")
    with page.expect_navigation():
        page.click("#create-study")
    assert "/studies/new/" not in page.url, page.locator("#study-form").inner_text()
    # the server's own check: a name taken but for case and spaces
    page.goto(f"{live_server.url}/studies/new/")
    _design(page, name="UX Draft OK ")
    with page.expect_navigation():
        page.click("#create-study")
    page.wait_for_selector("#study-form .errorlist")
    clash = page.evaluate(ERRORS_IN_PLACE)
    # the form's checks, two at once (the browser's own required-field check switched off)
    _design(page, name="another", lease_minutes="", items_per_participant="")
    page.evaluate("document.getElementById('study-form').noValidate = true")
    with page.expect_navigation():
        page.click("#create-study")
    page.wait_for_selector("#study-form .errorlist")
    missing = page.evaluate(ERRORS_IN_PLACE)
    context.close()
    assert [error["field"] for error in clash] == ["name"], clash
    assert {error["field"] for error in missing} == {"lease_minutes", "items_per_participant"}, missing
    for error in clash + missing:
        assert error["inside"] and error["below"] and error["sameColumn"], error
        assert "field" in error["parent"].split(), error
    assert clash[0]["text"].startswith("you already have a study named 'UX Draft OK' ('ux draft ok'")
    assert {error["text"] for error in missing} == {"This field is required."}


def test_choosing_a_task_fills_in_a_design_it_can_run(browser, live_server, alice, tmp_path):
    """The form's defaults (practice items, one explanation per candidate) are refused by the
    verification task: choosing that task sets them to what it runs, says so, and the study is
    created with no further edit; switching back restores the forward defaults."""
    from annotations.models import Study

    dataset_import(owner=alice, name="shapes", jsonl_path=write_dataset(tmp_path / "src", 12))
    make_model(alice)
    client = Client()
    client.force_login(alice)
    cookie = client.cookies["sessionid"].value
    context = browser.new_context(viewport=DESKTOP)
    context.add_cookies([{"name": "sessionid", "value": cookie, "url": live_server.url}])
    page = context.new_page()
    page.goto(f"{live_server.url}/studies/new/")
    _design(page, name="verify by form")
    page.select_option("select[name=task]", "verification")
    adjusted = page.locator("#task-adjusted").inner_text()
    display = page.eval_on_selector("#id_explanation_display", "s => [s.value, s.options[0].disabled]")
    learning = page.input_value("input[name=learning_items]")
    page.select_option("select[name=task]", "forward")
    back = [page.input_value("input[name=learning_items]"), page.input_value("#id_explanation_display")]
    page.select_option("select[name=task]", "verification")
    with page.expect_navigation():
        page.click("#create-study")
    landed = page.url
    context.close()
    assert adjusted.startswith("Set for this task:") and "Learning items" in adjusted, adjusted
    assert display == ["predicted_unlabelled", True] and learning == "0"
    assert back == ["4", "all_candidates"]
    assert "/studies/new/" not in landed
    study = Study.objects.get(name="verify by form")
    assert (study.task, study.learning_items, study.explanation_display) == ("verification", 0, "predicted_unlabelled")
