"""What the researcher's pages say about answer options: the datasets page and the study page
warn about a dataset that declares no valid answers; a declared study's page counts the model
answers outside them; the dashboard shows per-item chance and the chance-corrected figures."""

from __future__ import annotations

import pytest

from annotations.selectors.answers import UNDECLARED_WARNING
from annotations.services.datasets import dataset_import
from tests.builders.answered_study import build_answered_study
from tests.builders.dashboard import dashboard_computed_at_once  # noqa: F401  (fixture)
from tests.builders.studies import build_study
from tests.selectors.test_answer_options import _demo_study
from workers.engine.demo import data as shapes

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("dashboard_computed_at_once")]


@pytest.fixture(autouse=True)
def media_root(settings, tmp_path):
    settings.MEDIA_ROOT = str(tmp_path / "media")
    return tmp_path / "media"


def test_the_datasets_page_warns_about_a_dataset_without_valid_answers(client, alice, tmp_path):
    dataset_import(owner=alice, name="declared", jsonl_path=shapes.generate_dataset(tmp_path / "s", n_items=6, seed=0))
    client.force_login(alice)
    html = client.get("/datasets/").content.decode("utf-8")
    assert "colour (5)" in html and "yes-no (2)" in html
    assert 'id="answers-undeclared"' not in html
    build_study(alice, tmp_path, n_items=4, launch=False, name="plain")
    html = client.get("/datasets/").content.decode("utf-8")
    assert 'id="answers-undeclared"' in html and "not declared: every label is offered" in html
    assert "does not say which answers are valid for each item" in html


def test_the_study_page_warns_or_counts_the_model_answers_outside(client, alice, tmp_path):
    client.force_login(alice)
    plain = build_study(alice, tmp_path, n_items=4, launch=False, name="plain")
    html = client.get(f"/studies/{plain.pk}/").content.decode("utf-8")
    assert 'id="answers-undeclared"' in html and "Candidates: top 4" in html
    declared = _demo_study(alice, tmp_path, outside=2)
    response = client.get(f"/studies/{declared.pk}/")
    html = response.content.decode("utf-8")
    answers = response.context["answers"]
    assert 'id="answers-undeclared"' not in html
    assert f'<b id="answers-outside">{answers["model_answer_outside"]}</b> of 20 test items' in html
    assert answers["model_answer_outside"] >= 1
    assert "the next most probable valid answers" in html


def test_the_dashboard_shows_per_item_chance_and_the_undeclared_warning(client, alice, tmp_path):
    study = build_answered_study(alice, tmp_path, participants_per_arm=4)
    client.force_login(alice)
    response = client.get(f"/studies/{study.pk}/dashboard/?section=all")
    html = response.content.decode("utf-8")
    assert 'id="chance-table"' in html and 'id="answer-options"' in html
    assert response.context["answer_options"]["warning"] == UNDECLARED_WARNING
    assert "does not say which answers are valid for each item" in html
    rows = {row["arm"]: row for row in response.context["chance_rows"]}
    assert set(rows) == {"baseline", "heatmap", "all arms"}
    assert all(row["chance"] == "25.0%" for row in rows.values())  # 4 candidates on every item
    block = response.context["block"]["chance"]["pooled"]
    accuracy = block["accuracy"]
    assert block["chance_corrected"] == pytest.approx((accuracy - 0.25) / 0.75)
    assert "chance (0.25)" in str(response.context["svg"]["accuracy"])
    assert response.context["report"]["answer_options"]["declared"] is False
