"""The researcher's attention page in headless Chromium (issue 21): clicking a word shades the
patches by that word's attention, and another word shades them differently; a patch shades
the words."""

from __future__ import annotations

import os

import pytest
from django.test import Client

from tests.builders.attention import GRID, WORDS, attention_study
from tests.integration.test_browser import DESKTOP

os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PATCH_VALUES = "() => [...document.querySelectorAll('.att-patch')].map(p => p.dataset.value || '')"


def test_clicking_a_word_changes_the_patch_map(browser, live_server, alice, tmp_path):
    study, item = attention_study(alice, tmp_path)
    client = Client()
    client.force_login(alice)
    context = browser.new_context(viewport=DESKTOP)
    context.add_cookies([{"name": "sessionid", "value": client.cookies["sessionid"].value, "url": live_server.url}])
    page = context.new_page()
    page.goto(f"{live_server.url}/studies/{study.pk}/items/{item.pk}/attention/")
    assert page.evaluate(PATCH_VALUES) == [""] * GRID**2  # nothing chosen yet

    maps = []
    for word in WORDS[:2]:
        page.get_by_role("button", name=word).click()
        page.wait_for_function(
            "w => document.querySelector('.att-word.selected .att-label')?.textContent === w "
            "&& [...document.querySelectorAll('.att-patch')].every(p => p.dataset.value)",
            arg=word,
        )
        maps.append(page.evaluate(PATCH_VALUES))
    page.get_by_role("button", name="patch B1").click()
    page.wait_for_function("() => document.querySelector('.att-word .att-value').textContent !== ''")
    words_of_patch = [page.locator(".att-word .att-value").nth(k).inner_text() for k in range(len(WORDS))]
    patches_after = page.evaluate(PATCH_VALUES)
    context.close()
    # Word w attends to patch w alone (tests/builders/attention.py).
    assert maps[0] == ["1.0000", "0.0000", "0.0000", "0.0000"]
    assert maps[1] == ["0.0000", "1.0000", "0.0000", "0.0000"]
    # Patch B1 (patch 1) attends only to itself: nothing on the words.
    assert words_of_patch == ["0.000"] * len(WORDS) and patches_after == [""] * GRID**2
