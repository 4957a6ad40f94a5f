"""The researcher's study designer, preview and pre-registered rules through the pages."""

from __future__ import annotations

import json
from html.parser import HTMLParser

import pytest
from django.test import Client

from annotations.forms import StudyForm
from annotations.models import Participant, Response, Slot, Study
from annotations.services.datasets import dataset_import
from tests.builders.studies import answer_all, build_study, make_model, write_dataset

pytestmark = pytest.mark.django_db


@pytest.fixture
def researcher(alice, tmp_path) -> Client:
    dataset_import(owner=alice, name="shapes", jsonl_path=write_dataset(tmp_path / "src", 12))
    make_model(alice)
    client = Client()
    client.force_login(alice)
    return client


def _form(alice, **overrides) -> dict:
    from annotations.models import Dataset, RegisteredModel

    data = {
        "name": "Designed",
        "dataset": Dataset.objects.get(owner=alice).pk,
        "model": RegisteredModel.objects.get(owner=alice).pk,
        "seed": 5,
        "n_items": 6,
        "items_per_participant": 3,
        "raters_per_item": 2,
        "candidate_mode": "top_k",
        "n_candidates": 2,
        "n_distractors": 1,
        "explanation_method": "integrated_gradients",
        "interaction_method": "second_order",
        "explanation_display": "all_candidates",
        "lease_minutes": 45,
        "consent_text": "Consent?",
        "instructions": "Predict the model.",
        "learning_items": 2,
        "pretest": "on",
        "survey": "on",
        "attention_checks": 1,
        "min_rt_ms": 900,
        "max_attention_failures": 0,
        "max_fast_share": 0.5,
        "screen_out_at_attention_failures": 2,
        "completion_code": "",
        "screened_out_code": "",
        "arm_0_name": "baseline",
        "arm_1_name": "ig",
        "arm_1_views": ["heatmap", "tokens"],
        "arm_2_name": "pairs",
        "arm_2_views": ["interaction", "top_pairs", "share"],
    }
    data.update(overrides)
    return {k: v for k, v in data.items() if v is not None}


def test_the_form_creates_the_study_it_describes(researcher, alice):
    assert researcher.get("/studies/new/").status_code == 200
    response = researcher.post("/studies/new/", _form(alice))
    assert response.status_code == 302, response.content.decode()[:3000]
    study = Study.objects.get(name="Designed")
    assert {c.name: c.views for c in study.conditions.all()} == {
        "baseline": [],
        "ig": ["heatmap", "tokens"],
        "pairs": ["interaction", "top_pairs", "share"],
    }
    assert (study.n_candidates, study.n_distractors, study.learning_items, study.pretest, study.survey) == (
        2,
        1,
        2,
        True,
        True,
    )
    assert (study.attention_checks, study.min_rt_ms, study.lease_minutes, study.seed) == (1, 900, 45, 5)
    assert study.exclusion_rules == {
        "max_attention_failures": 0,
        "max_fast_share": 0.5,
        "screen_out_at_attention_failures": 2,
    }
    page = researcher.get(f"/studies/{study.pk}/").content.decode()
    assert "top 2 + 1 distractor(s)" in page and "2 learning item(s)" in page


@pytest.mark.parametrize(
    "overrides, field_message",
    [
        ({"arm_0_name": "", "arm_1_name": "", "arm_2_name": ""}, "arms: must be a list"),
        ({"arm_0_views": ["heatmap"]}, "arms: need exactly one baseline arm"),
        ({"items_per_participant": 9}, "cannot exceed items.n"),
        ({"explanation_method": "magic"}, "unknown value &#x27;magic&#x27;"),
        ({"n_distractors": 5}, "exceeds the model&#x27;s 4 labels"),
        ({"completion_code": "SAME", "screened_out_code": "SAME"}, "must differ from codes.completed"),
    ],
)
def test_bad_designs_are_refused_with_the_field_named(researcher, alice, overrides, field_message):
    response = researcher.post("/studies/new/", _form(alice, **overrides))
    assert response.status_code == 200
    assert field_message in response.content.decode()
    assert not Study.objects.exists()


def test_preview_walks_a_ready_study_without_taking_slots_or_recording_data(alice, tmp_path):
    study = build_study(alice, tmp_path, n_items=4, items_per_participant=2, launch=False, name="preview")
    client = Client()
    client.force_login(alice)
    arm = study.conditions.get(is_baseline=False)
    response = client.post(f"/studies/{study.pk}/preview/", {"condition": arm.pk})
    assert response.status_code == 302 and response.url == f"/s/{study.public_id}/"
    assert b'id="preview-badge"' in client.get(response.url).content
    client.post(f"/s/{study.public_id}/consent/")
    client.post(f"/s/{study.public_id}/instructions/")
    preview = Participant.objects.get(study=study)
    assert (preview.platform, preview.condition_id) == ("preview", arm.pk)
    answer_all(preview)
    done = client.get(f"/s/{study.public_id}/done/").content.decode()
    assert "Preview finished" in done and f"/studies/{study.pk}/" in done
    assert not Slot.objects.exists() and Response.objects.count() == 2
    export = b"".join(client.get(f"/studies/{study.pk}/export.csv").streaming_content).decode()
    assert str(preview.public_id) not in export
    # Someone else's study cannot be previewed.
    charlie = Client()
    from django.contrib.auth import get_user_model

    charlie.force_login(get_user_model().objects.create_user("mallory", password="x" * 12))
    assert charlie.post(f"/studies/{study.pk}/preview/").status_code == 404


def test_the_form_takes_the_browser_timing_rules_and_shows_them_again(researcher, alice):
    from annotations.forms import StudyForm

    rules = {"min_median_client_rt_ms": 700, "max_blur_count": 3, "max_hidden_ms": 20000}
    response = researcher.post("/studies/new/", _form(alice, name="Timed", **rules))
    assert response.status_code == 302, response.content.decode()[:3000]
    study = Study.objects.get(name="Timed")
    assert {key: study.exclusion_rules[key] for key in rules} == rules
    assert {key: StudyForm.initial_for(study)[key] for key in rules} == rules
    refused = researcher.post("/studies/new/", _form(alice, name="Bad", max_blur_count=-1))
    assert refused.status_code == 200 and not Study.objects.filter(name="Bad").exists()


def test_exclusion_rules_can_change_until_launch_only(alice, tmp_path):
    study = build_study(alice, tmp_path, n_items=4, items_per_participant=2, launch=False, name="rules")
    client = Client()
    client.force_login(alice)
    client.post(f"/studies/{study.pk}/exclusion-rules/", {"rules": json.dumps({"max_fast_share": 0.3})})
    assert Study.objects.get(pk=study.pk).exclusion_rules == {"max_fast_share": 0.3}
    bad = client.post(f"/studies/{study.pk}/exclusion-rules/", {"rules": '{"max_fails": 1}'}, follow=True)
    assert "unknown field" in bad.content.decode()
    client.post(f"/studies/{study.pk}/launch/")
    assert Study.objects.get(pk=study.pk).status == "live"
    locked = client.post(f"/studies/{study.pk}/exclusion-rules/", {"rules": "{}"}, follow=True)
    assert "fixed once the study is live" in locked.content.decode()
    assert Study.objects.get(pk=study.pk).exclusion_rules == {"max_fast_share": 0.3}


def _edit_post(study, **changes) -> dict:
    """The edit form's answers as a browser posts them (unchecked boxes and blanks left out)."""
    data = {**StudyForm.initial_for(study), **changes}
    return {
        key: "on" if value is True else value
        for key, value in data.items()
        if value is not None and value is not False and value != ""
    }


def test_a_ready_study_is_edited_back_to_draft_with_a_fresh_pool(alice, tmp_path):
    study = build_study(alice, tmp_path, name="editable", launch=False, n_dataset_items=20, n_items=8)
    preview = Participant.objects.create(study=study, condition=study.conditions.last(), platform="preview")
    client = Client()
    client.force_login(alice)
    form = client.get(f"/studies/{study.pk}/edit/").content.decode()
    assert 'value="editable"' in form and "Save design" in form and "back to draft" in form

    response = client.post(
        f"/studies/{study.pk}/edit/",
        _edit_post(
            study,
            name="edited",
            public_title="Guess the robot",
            n_items=6,
            arm_1_views=["tokens"],
            arm_2_name="shares",
            arm_2_views=["share"],
        ),
    )

    assert response.status_code == 302, response.content.decode()[:2000]
    study.refresh_from_db()
    assert (study.name, study.public_title, study.status, study.design["n_items"]) == (
        "edited",
        "Guess the robot",
        "draft",
        6,
    )
    assert {c.name: c.views for c in study.conditions.all()} == {
        "baseline": [],
        "heatmap": ["tokens"],
        "shares": ["share"],
    }
    assert not study.study_items.exists() and not Participant.objects.filter(pk=preview.pk).exists()
    assert "Participants see <b>Guess the robot</b>" in client.get(f"/studies/{study.pk}/").content.decode()


def test_a_draft_is_deleted_but_a_live_study_is_neither_edited_nor_deleted(alice, bob, tmp_path):
    draft = build_study(alice, tmp_path, name="draft", launch=False)
    live = build_study(alice, tmp_path, name="live")
    client = Client()
    client.force_login(alice)

    assert Client().post(f"/studies/{draft.pk}/delete/").status_code == 302  # to the sign-in page
    draft.collaborators.add(bob)
    collaborator = Client()
    collaborator.force_login(bob)
    assert collaborator.post(f"/studies/{draft.pk}/delete/").status_code == 404  # only the owner
    assert client.post(f"/studies/{draft.pk}/delete/").status_code == 302
    assert not Study.objects.filter(pk=draft.pk).exists()

    page = client.post(f"/studies/{live.pk}/delete/", follow=True).content.decode()
    assert "holds participants" in page and Study.objects.filter(pk=live.pk).exists()
    edit = client.post(f"/studies/{live.pk}/edit/", _edit_post(live, name="renamed"))
    assert "only a draft or a ready study can be edited" in edit.content.decode()
    assert Study.objects.get(pk=live.pk).name == "live"
    assert "Edit design" not in client.get(f"/studies/{live.pk}/").content.decode()


def test_a_second_study_with_the_same_name_is_refused_on_the_form(researcher, alice):
    assert researcher.post("/studies/new/", _form(alice)).status_code == 302
    again = researcher.post("/studies/new/", _form(alice)).content.decode()
    assert "already have a study named" in again and Study.objects.filter(name="Designed").count() == 1


class _Nesting(HTMLParser):
    """Each field container of the form (``div.field``): the names of its inputs and the text of
    its error list; and whether an error list ever opened inside a ``<p>``."""

    def __init__(self):
        super().__init__()
        self.stack: list[tuple[str, dict]] = []
        self.fields: list[dict] = []
        self.list_in_p = False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "ul" and any(t == "p" for t, _ in self.stack):
            self.list_in_p = True
        if tag in ("input", "select", "textarea"):
            for t, box in reversed(self.stack):
                if t == "div" and "field" in (box.get("class") or "").split():
                    box["inputs"].append(attrs.get("name"))
                    break
            return
        box = {"class": attrs.get("class"), "inputs": [], "errors": "", "in_errors": False}
        if tag == "div" and "field" in (attrs.get("class") or "").split():
            self.fields.append(box)
        if tag == "ul" and "errorlist" in (attrs.get("class") or ""):
            for t, outer in reversed(self.stack):
                if t == "div" and "field" in (outer.get("class") or "").split():
                    outer["in_errors"] = True
                    box["owner"] = outer
                    break
        if tag not in ("br", "img", "meta", "link", "hr"):
            self.stack.append((tag, box))

    def handle_endtag(self, tag):
        while self.stack:
            t, box = self.stack.pop()
            if "owner" in box:
                box["owner"]["in_errors"] = False
            if t == tag:
                break

    def handle_data(self, data):
        for t, box in reversed(self.stack):
            if t == "div" and "field" in (box.get("class") or "").split():
                if box["in_errors"]:
                    box["errors"] += data
                break


def _field_errors(html: str) -> dict[str, str]:
    parsed = _Nesting()
    parsed.feed(html)
    assert not parsed.list_in_p, "an error list inside a <p> leaves its field"
    return {name: box["errors"].strip() for box in parsed.fields for name in box["inputs"] if name}


def test_a_name_differing_only_in_case_and_spaces_is_refused_under_the_name_field(researcher, alice):
    assert researcher.post("/studies/new/", _form(alice, name="ux draft ok")).status_code == 302
    page = researcher.post("/studies/new/", _form(alice, name="UX Draft OK ")).content.decode()
    errors = _field_errors(page)
    assert errors["name"].startswith("you already have a study named 'UX Draft OK' ('ux draft ok'")
    assert not errors["seed"] and "errorbox" not in page  # under its field, not at the top
    assert list(Study.objects.filter(owner=alice).values_list("name", flat=True)) == ["ux draft ok"]


def test_every_error_sits_in_its_own_fields_box(researcher, alice):
    """Errors from the form (a missing number) and from the design checks (the dataset is too
    small for the items asked) each land in the box of the field they are about."""
    page = researcher.post("/studies/new/", _form(alice, n_items=12, lease_minutes="")).content.decode()
    errors = _field_errors(page)
    assert errors["lease_minutes"] == "This field is required."
    assert not errors["name"] and not errors["items_per_participant"]
    boxes = {name for name, text in errors.items() if text}
    assert boxes == {"lease_minutes"}
    page = researcher.post("/studies/new/", _form(alice, n_items=12)).content.decode()
    errors = _field_errors(page)
    assert "fewer than the 15 this design needs" in errors["n_items"]
    assert {name for name, text in errors.items() if text} == {"n_items"}


def test_a_design_larger_than_the_dataset_is_refused_next_to_its_field(researcher, alice):
    page = researcher.post("/studies/new/", _form(alice, n_items=12)).content.decode()
    assert "has 12 items, fewer than the 15 this design needs" in page
    assert not Study.objects.exists()


def test_a_view_the_model_cannot_give_is_refused_under_its_arm(researcher, alice, plants_jsonl):
    """The plants model (a table and a note) cannot show a heatmap: the error names the arm and
    the view, sits with that arm's views (arm 3 here: a blank row before it is skipped), and
    nothing is created."""
    form = _form(alice, arm_1_name="", arm_1_views=None, arm_2_name="ig", arm_2_views=["heatmap", "tokens"])
    form["dataset"] = dataset_import(owner=alice, name="plants", jsonl_path=plants_jsonl).pk
    form["model"] = make_model(alice, name="plants", modalities=("tabular", "text")).pk
    response = researcher.post("/studies/new/", form)
    assert response.status_code == 200
    page = response.content.decode()
    message = "arm &#x27;ig&#x27; shows &#x27;heatmap&#x27;, but model &#x27;plants&#x27; has no image modality"
    arm_3 = page.split("<legend>Arm 3</legend>")[1].split("</fieldset>")[0]
    assert message in arm_3
    assert not Study.objects.exists()


def test_the_names_of_the_inputs_are_set_on_the_form_and_kept_on_edit(researcher, alice):
    response = researcher.post("/studies/new/", _form(alice, modality_names="image: the photo\ntext: the caption"))
    assert response.status_code == 302, response.content.decode()[:2000]
    study = Study.objects.get(name="Designed")
    assert study.design["modality_names"] == {"image": "the photo", "text": "the caption"}
    assert StudyForm.initial_for(study)["modality_names"] == "image: the photo\ntext: the caption"
    refused = researcher.post("/studies/new/", _form(alice, name="Other", modality_names="tabular: the table"))
    assert (
        "model &#x27;toy&#x27; has no modality &#x27;tabular&#x27;; its modalities: image, text"
        in refused.content.decode()
    )
    bad_line = researcher.post("/studies/new/", _form(alice, name="Other", modality_names="just words"))
    assert "Line 1: write modality: name" in bad_line.content.decode()
    assert Study.objects.count() == 1
