"""The researcher's attention page and its JSON (issue 21): only the study's researchers see
it, one matrix at a time comes back exactly as stored, a bad choice is a 400 naming it, and
an item without stored attention says how to get it."""

from __future__ import annotations

import numpy as np
import pytest
from django.test import Client

from tests.builders.attention import GRID, WORDS, attention_study

pytestmark = pytest.mark.django_db


def test_the_attention_page_shows_stored_attention_to_its_researchers_only(alice, charlie, tmp_path):
    study, item = attention_study(alice, tmp_path)
    owner, stranger = Client(), Client()
    owner.force_login(alice)
    stranger.force_login(charlie)
    page = f"/studies/{study.pk}/items/{item.pk}/attention/"
    data = f"/studies/{study.pk}/items/{item.pk}/attention.json"

    html = owner.get(page).content.decode()
    image = owner.get(f"/studies/{study.pk}/items/{item.pk}/image")
    assert image.status_code == 200, image.status_code
    assert all(f'<span class="att-label">{w}</span>' in html for w in WORDS)
    assert 'class="head-summary"' in html and 'id="attention-data"' in html
    # Word w (unit 1 + w) attends to patch w alone: 100% across modalities for those rows.
    matrix = np.array(owner.get(data, {"stream": "joint", "layer": "1", "head": "0"}).json()["matrix"])
    first_patch = matrix.shape[0] - GRID * GRID
    for w in range(len(WORDS)):
        assert matrix[1 + w, first_patch + w] == 1.0 and matrix[1 + w].sum() == 1.0
    assert owner.get(data, {"stream": "joint", "layer": "rollout", "head": "mean"}).status_code == 200

    bad = owner.get(data, {"stream": "joint", "layer": "7", "head": "0"})
    assert bad.status_code == 400 and "layer must be 0 to 1" in bad.json()["error"]
    assert owner.get(data, {"stream": "towers", "layer": "0"}).status_code == 400
    assert stranger.get(page).status_code == 404 and stranger.get(data, {"stream": "joint"}).status_code == 404

    other = study.study_items.exclude(item=item).get().item
    assert (
        "No attention is stored for this item yet"
        in owner.get(f"/studies/{study.pk}/items/{other.pk}/attention/").content.decode()
    )
    assert (
        owner.get(f"/studies/{study.pk}/items/{other.pk}/attention.json", {"stream": "joint", "layer": "0"}).status_code
        == 404
    )
    # An item outside the study's pool is not the study's to show, as on the item's own page.
    outside = study.dataset.items.exclude(study_items__study=study).first()
    assert owner.get(f"/studies/{study.pk}/items/{outside.pk}/attention/").status_code == 404
