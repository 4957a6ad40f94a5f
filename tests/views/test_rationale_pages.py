"""The rationale task (annotations/study_tasks.py) through Django's test client: participants see
the gold answer and mark the evidence for it; the marks are checked on the server (a bad mark is a
400 naming what is wrong, and nothing is stored); the stored rationales export, aggregate, and
import back as the dataset's evidence."""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path

import numpy as np
import pytest
import yaml
from django.core.management import call_command
from django.test import Client
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from annotations.analysis.rationale import rationale_agreement
from annotations.models import Explanation, Item, Participant, Prediction, Response
from annotations.selectors.codebook import codebook_entry
from annotations.selectors.rationale_exports import (
    study_rationale_attributions,
    study_rationale_frame,
    study_rationale_items_csv_lines,
    study_rationales_csv_lines,
)
from annotations.selectors.studies import study_explanation_targets
from annotations.services.analysis import study_report_compute
from annotations.services.datasets import dataset_import
from annotations.services.participants import assignment_current, assignment_serve, response_submit
from annotations.services.rationales import EvidenceImportError, dataset_evidence_import
from annotations.services.spec import SpecError, study_spec_parse
from annotations.services.studies import ConditionSpec
from tests.builders.dashboard import dashboard_computed_at_once  # noqa: F401  (fixture)
from tests.builders.studies import build_study, enter_and_start, make_model, write_dataset
from workers.engine.dataset import cells_coverage
from workers.engine.rationale_units import RATIONALE_GRID

pytestmark = pytest.mark.django_db


@pytest.fixture
def owned(alice, tmp_path):
    dataset_import(owner=alice, name="shapes", jsonl_path=write_dataset(tmp_path / "src", 48))
    make_model(alice)
    return alice


@pytest.fixture
def rationale_study(alice, tmp_path):
    return build_study(
        alice,
        tmp_path,
        n_dataset_items=12,
        n_items=4,
        items_per_participant=2,
        raters_per_item=3,
        conditions=[ConditionSpec("baseline"), ConditionSpec("ig", ["heatmap", "tokens"])],
        task="rationale",
        name="mark",
    )


def _enter(study) -> tuple[Client, Participant]:
    client = Client()
    client.get(f"/s/{study.public_id}/")
    client.post(f"/s/{study.public_id}/consent/")
    instructions = client.get(f"/s/{study.public_id}/instructions/").content.decode()
    assert "Mark every part of the input that shows the answer is right" in instructions
    client.post(f"/s/{study.public_id}/instructions/")
    return client, Participant.objects.get(public_id=client.session[f"participant:{study.public_id}"])


BAD_MARKS = [
    ([], "mark at least one part"),
    (["image:Z9"], "no cell of the grid"),
    (["text:99"], "is no position on"),
    (["text:x"], "is no position on"),
    (["image:C4", "image:C4"], "marked twice"),
    (["audio:1"], "no part of this item that can be marked"),
]


def test_a_participant_marks_evidence_and_bad_marks_are_refused(rationale_study):
    study = rationale_study
    client, participant = _enter(study)
    answered = 0
    while (assignment := participant.assignments.filter(status="active").order_by("position").first()) is not None:
        page = client.get(f"/s/{study.public_id}/item/").content.decode()
        gold = assignment.item.gold_label
        assert f'Mark the evidence for: <b id="evidence-for">{gold}</b>' in page
        assert page.count('name="mark" value="image:') == 64 and 'value="image:H8"' in page
        words = assignment.item.payload["text"].replace("?", " ?").split()
        assert [f'value="text:{k}"' in page for k in range(len(words))] == [True] * len(words) == [True] * 6
        assert 'name="guess"' not in page and 'name="verdict"' not in page
        prediction = Prediction.objects.get(model=study.model, item=assignment.item).label
        if prediction != gold:
            assert prediction not in page
        url = f"/s/{study.public_id}/item/{assignment.public_id}/"
        for marks, message in BAD_MARKS:
            refused = client.post(url, {"mark": marks, "confidence": 3})
            assert refused.status_code == 400 and message in refused.content.decode(), marks
        # nothing lost: the refused page is the item again, with the marks that fit still ticked
        again = client.post(url, {"mark": ["image:B2", "text:1", "image:Z9"], "confidence": 3}).content.decode()
        assert 'id="refused"' in again and 'id="evidence-for"' in again
        assert re.search(r'value="image:B2"[^>]*checked', again) and re.search(r'value="text:1"[^>]*checked', again)
        assert len(re.findall(r"\bchecked\b", again)) == 2
        assert not Response.objects.filter(assignment=assignment).exists()
        marks = ["text:3", "image:D4", "image:C4"]
        assert client.post(url, {"mark": marks, "confidence": 4}).status_code == 302
        response = Response.objects.get(assignment=assignment)
        assert response.rationale == {"image": ["C4", "D4"], "text": [3]}
        assert (response.guess, response.verdict, response.confidence) == ("", None, 4)
        # the same answer again is idempotent (in any order); a different one is refused (409)
        assert client.post(url, {"mark": marks[::-1], "confidence": 4}).status_code == 302
        assert client.post(url, {"mark": ["image:C4"], "confidence": 4}).status_code == 409
        answered += 1
    assert answered == 2


def _answer_all(participant, marks_for) -> int:
    n = 0
    while (assignment := assignment_current(participant=participant)) is not None:
        assignment_serve(assignment=assignment)
        response_submit(
            participant=participant,
            assignment_public_id=assignment.public_id,
            guess="",
            confidence=4,
            rationale=marks_for(assignment),
        )
        n += 1
    return n


def test_rationales_export_aggregate_and_import_back_as_the_evidence_the_model_report_reads(
    rationale_study, alice, dashboard_computed_at_once
):
    study = rationale_study
    # Six annotators, three per item. Everyone marks C4 and D4 and the word "square" (position 3);
    # the first annotator also marks A1 and position 0: a minority, so not in the aggregate.
    participants = [enter_and_start(study, f"worker{k}") for k in range(6)]
    for k, participant in enumerate(participants):
        extra = {"image": ["A1"], "text": [0]} if k == 0 else {"image": [], "text": []}
        _answer_all(
            participant,
            lambda a, extra=extra: {"image": ["C4", "D4", *extra["image"]], "text": [3, *extra["text"]]},
        )
    rows = list(csv.DictReader(io.StringIO("".join(study_rationales_csv_lines(study=study)))))
    assert (
        len(rows) == 12 and {r["n_units:image"] for r in rows} == {"64"} and {r["n_units:text"] for r in rows} == {"6"}
    )
    first = {r["units:image"] for r in rows if r["participant"] == str(participants[0].public_id)}
    assert first == {"A1 C4 D4"} and {r["units:text"] for r in rows} == {"3", "0 3"}

    items_csv = "".join(study_rationale_items_csv_lines(study=study))
    for export, text in (
        ("rationales", "".join(study_rationales_csv_lines(study=study))),
        ("rationale_items", items_csv),
    ):
        header = next(csv.reader(io.StringIO(text)))
        assert [c for c in header if codebook_entry(export=export, column=c) is None] == [], export
        assert {"units:image", "n_units:text"} <= set(header)
    aggregated = list(csv.DictReader(io.StringIO(items_csv)))
    assert len(aggregated) == 4
    marked = cells_coverage(["C4", "D4"], RATIONALE_GRID)  # the picture's cells as the area they cover
    for row in aggregated:
        assert json.loads(row["evidence"]) == {"image": marked, "text": [3]}
        assert (row["units:image"], row["support:image"]) == ("C4 D4", "1.000 1.000")
    assert sum(int(row["n_annotators"]) for row in aggregated) == 12

    # Perfect agreement but for one annotator's extra marks: the analysis sees it.
    frame = study_rationale_frame(study=study)
    agreement = rationale_agreement(frame, seed=0, n_resamples=50)
    assert 0.5 < agreement["alpha"]["estimate"] < 1 and agreement["data"]["n_items"] == 4

    # Import back: a bad file stores nothing and names its lines; the export itself imports.
    bad = 'item,evidence\nq9999,"{""image"": [""C4""]}"\n' + aggregated[0]["item"] + ',"{""image"": [""c4""]}"\n'
    with pytest.raises(EvidenceImportError) as caught:
        dataset_evidence_import(dataset=study.dataset, text=bad)
    assert "no item 'q9999'" in caught.value.errors[0] and "no patch cell" in caught.value.errors[1]
    assert not study.dataset.items.exclude(evidence=None).exists()
    assert dataset_evidence_import(dataset=study.dataset, text=items_csv) == 4

    # The model report's evidence numbers over those regions (workers/engine/report/quantify.py:
    # group names as probes.group_names gives them for the demo model's 8 x 8 patches of 8 px and
    # its words, then evidence_mask, mass_inside and pointing_hit).
    from workers.engine.report import bias, probes

    patches = [
        {"group_id": k, "kind": "patch", "box": [(k % 8) * 8, (k // 8) * 8, (k % 8 + 1) * 8, (k // 8 + 1) * 8]}
        for k in range(64)
    ]
    for item in study.dataset.items.exclude(evidence=None):
        assert item.evidence == {"image": marked, "text": [3]}
        words = item.payload["text"].replace("?", " ?").split()
        tokens = [{"group_id": 64 + t, "kind": "token", "text": w} for t, w in enumerate(words)]
        tokens.append({"group_id": 64 + len(words), "kind": "token", "text": "<pad>", "hidden": True})
        names = list(probes.group_names(patches).values()) + list(probes.group_names(tokens).values())
        image_mask, unmatched = bias.evidence_mask(item.evidence["image"], names[:64])
        text_mask, unmatched_text = bias.evidence_mask(item.evidence["text"], names[64:])
        assert unmatched == unmatched_text == []
        assert np.flatnonzero(image_mask).tolist() == [3 * 8 + 2, 3 * 8 + 3] and np.flatnonzero(text_mask).tolist() == [
            3
        ]
        # an attribution with 3 of its 4 units of mass on C4 and the rest on A1: 75% inside, a hit
        scores = np.zeros(64)
        scores[[26, 27, 0]] = [2.0, 1.0, -1.0]
        assert bias.mass_inside(scores, image_mask) == pytest.approx(0.75)
        assert bias.pointing_hit(scores, image_mask) is True
        # a model with a finer grid (16 x 16 patches of 4 px) reads the same marks by area: the
        # 2 x 2 patches under each of C4 and D4
        fine = [
            {"group_id": k, "kind": "patch", "box": [(k % 16) * 4, (k // 16) * 4, (k % 16 + 1) * 4, (k // 16 + 1) * 4]}
            for k in range(256)
        ]
        fine_mask, _ = bias.evidence_mask(item.evidence["image"], list(probes.group_names(fine).values()))
        assert np.flatnonzero(fine_mask).tolist() == [6 * 16 + 4, 6 * 16 + 5, 6 * 16 + 6, 6 * 16 + 7] + [
            7 * 16 + 4,
            7 * 16 + 5,
            7 * 16 + 6,
            7 * 16 + 7,
        ]

    # The report and the dashboard card: agreement, and the plausibility of a stored attribution
    # of the gold answer. Image: C4 3, A1 2.5, D4 2 -> top-2 {C4, A1}: F1 1/2, IoU 1/3 (no match),
    # AP (1 + 2/3) / 2, pointing hit. Text: the word "square" scores highest: all four measures 1.
    image_scores = np.zeros(64)
    image_scores[[26, 0, 27]] = [3.0, 2.5, 2.0]
    text_scores = [0.1, 0.0, 0.0, 0.9, 0.2, 0.0, 0.5]  # six words, then padding
    for item in study.dataset.items.filter(external_id__in=[row["item"] for row in aggregated]):
        Explanation.objects.update_or_create(
            model=study.model,
            item=item,
            method=study.explanation_method,
            target_label=item.gold_label,
            defaults={
                "status": "done",
                "summary": {"group_scores": {"image": image_scores.tolist(), "text": text_scores}},
            },
        )
    # the workers explain each item's gold answer only: the analysis reads that explanation
    targets = study_explanation_targets(study=study)
    assert targets and all(labels == [Item.objects.get(pk=pk).gold_label] for pk, labels in targets.items())
    report = study_report_compute(study=study, n_resamples=50)
    methods = report["rationale"]["plausibility"]["methods"][study.explanation_method]
    expected = {"token_f1": 0.75, "iou_f1": 0.5, "auprc": (5 / 6 + 1) / 2, "pointing": 1.0}
    for measure, value in expected.items():
        assert methods["all"][measure]["estimate"] == pytest.approx(value)
    assert methods["modality:image"]["token_f1"]["estimate"] == pytest.approx(0.5)
    assert {name for name in methods if name.startswith("answer:")} == {
        f"answer:{label}"
        for label in study.dataset.items.filter(evidence__isnull=False).values_list("gold_label", flat=True)
    }
    # a null score (not finite at precompute) leaves that case unscored instead of failing
    items = [row["item"] for row in aggregated]
    assert len(study_rationale_attributions(study=study, items=items)) == 8
    first = Explanation.objects.get(
        model=study.model, item__dataset=study.dataset, item__external_id=items[0], method=study.explanation_method
    )
    first.summary["group_scores"]["text"][1] = None
    first.save()
    assert len(study_rationale_attributions(study=study, items=items)) == 7
    # a model with another patch grid (here 12 x 12 scores for the 8 x 8 rationale cells) is not
    # read cell by cell: its picture case is left out too, not scored against the wrong cells
    second = Explanation.objects.get(
        model=study.model, item__dataset=study.dataset, item__external_id=items[1], method=study.explanation_method
    )
    picture = second.summary["group_scores"]["image"]
    second.summary["group_scores"]["image"] = [*picture, *picture, *picture[:16]]
    second.save()
    assert len(study_rationale_attributions(study=study, items=items)) == 6
    second.summary["group_scores"]["image"] = picture
    second.save()
    researcher = Client()
    researcher.force_login(alice)
    dashboard = researcher.get(f"/studies/{study.pk}/dashboard/?section=all").content.decode()
    assert 'id="plausibility-table"' in dashboard and 'id="rationale-agreement"' in dashboard
    assert "0.750" in dashboard and 'id="accuracy-table"' not in dashboard
    # the first annotator's extra marks put them lowest against the others' majority
    lowest = next(iter(report["rationale"]["annotators"]))
    assert lowest == str(participants[0].public_id) and 'id="rationale-lowest"' in dashboard
    summary = researcher.get(f"/studies/{study.pk}/exports/summary.csv")
    assert summary.status_code == 200
    assert "rationale.agreement.alpha.estimate" in b"".join(summary.streaming_content).decode()
    download = researcher.get(f"/studies/{study.pk}/exports/rationale_items.csv")
    assert download.status_code == 200 and b"".join(download.streaming_content).decode() == items_csv
    printed = io.StringIO()
    call_command("analyze", str(study.pk), "--n-resamples", "50", stdout=printed)
    assert "Krippendorff's alpha" in printed.getvalue() and "token_f1 0.750" in printed.getvalue()


SPEC = {
    "name": "Mark",
    "task": "rationale",
    "dataset": "shapes",
    "model": "toy",
    "arms": [{"name": "baseline", "views": []}, {"name": "ig", "views": ["heatmap", "tokens"]}],
    "items": {"n": 6, "per_participant": 3, "raters_per_item": 2},
    "phases": {"learning_items": 0},
}


@pytest.mark.parametrize(
    "overrides, field, message",
    [
        ({"phases": {"learning_items": 2}}, "phases.learning_items", "no practice items"),
        ({"phases": {"pretest": True, "learning_items": 0}}, "phases.pretest", "no warm-up phase"),
    ],
)
def test_what_a_rationale_study_cannot_run_is_refused_naming_the_field(owned, overrides, field, message):
    with pytest.raises(SpecError) as caught:
        study_spec_parse(data={**SPEC, **overrides}, owner=owned)
    assert caught.value.field == field and message in str(caught.value)


@pytest.mark.urls("tests.api.urls")
def test_the_spec_template_loads_and_the_api_creates_a_rationale_study(owned):
    template = Path(__file__).resolve().parents[2] / "docs" / "specs" / "rationale.yaml"
    text = template.read_text().replace("YOUR-DATASET", "shapes").replace("YOUR-MODEL", "toy")
    spec = study_spec_parse(data=yaml.safe_load(text), owner=owned)
    assert spec.task == "rationale" and spec.learning_items == 0 and spec.attention_checks == 2
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=owned).key}")
    created = client.post("/api/studies/", SPEC, format="json")
    assert created.status_code == 201, created.content
    assert created.json()["task"] == "rationale"
    bad = client.post("/api/studies/", {**SPEC, "name": "bad", "phases": {"learning_items": 1}}, format="json")
    assert bad.status_code == 400 and bad.json()["field"] == "phases.learning_items"


def test_the_form_creates_a_rationale_study_and_shows_what_it_refuses_under_the_field(owned):
    from annotations.models import Dataset, RegisteredModel, Study

    client = Client()
    client.force_login(owned)
    assert 'value="rationale"' in client.get("/studies/new/").content.decode()
    form = {
        "name": "Designed rationale",
        "task": "rationale",
        "dataset": Dataset.objects.get(owner=owned).pk,
        "model": RegisteredModel.objects.get(owner=owned).pk,
        "seed": 1,
        "n_items": 6,
        "items_per_participant": 3,
        "raters_per_item": 3,
        "candidate_mode": "top_k",
        "n_candidates": 2,
        "n_distractors": 0,
        "explanation_method": "integrated_gradients",
        "interaction_method": "second_order",
        "explanation_display": "all_candidates",
        "lease_minutes": 30,
        "learning_items": 0,
        "attention_checks": 1,
        "min_rt_ms": 0,
        "arm_0_name": "baseline",
        "arm_1_name": "ig",
        "arm_1_views": ["heatmap"],
    }
    form["learning_items"] = 2
    refused = client.post("/studies/new/", form)
    assert refused.status_code == 200 and not Study.objects.filter(name="Designed rationale").exists()
    assert "has no practice items" in refused.content.decode()
    form["learning_items"] = 0
    assert client.post("/studies/new/", form).status_code == 302
    designed = Study.objects.get(name="Designed rationale")
    assert designed.task == "rationale" and designed.attention_checks == 1  # instructed checks


def test_a_rationale_attention_check_names_one_part_to_mark_and_stays_out_of_the_rationales(alice, tmp_path):
    """No marking is right by itself, so a check is instructed: its page names one cell, word or
    row to mark, and only exactly that passes. The checks' marks are not evidence: the
    rationale exports and their analysis leave them out; the responses export flags them."""
    study = build_study(
        alice,
        tmp_path,
        n_dataset_items=16,
        n_items=4,
        items_per_participant=2,
        raters_per_item=2,
        conditions=[ConditionSpec("baseline"), ConditionSpec("ig", ["heatmap", "tokens"])],
        task="rationale",
        attention_checks=2,
        name="checked marks",
    )
    asked = []
    for obey in (True, False):
        client, participant = _enter(study)
        assert participant.assignments.filter(kind="attention", check_type="instructed").count() == 2
        while (assignment := participant.assignments.filter(status="active").order_by("position").first()) is not None:
            page = client.get(f"/s/{study.public_id}/item/").content.decode()
            prediction = Prediction.objects.get(model=study.model, item=assignment.item).label
            assert prediction == assignment.item.gold_label or prediction not in page  # no leak on a check either
            url = f"/s/{study.public_id}/item/{assignment.public_id}/"
            if assignment.kind != "attention":
                assert 'class="instructed"' not in page
                assert client.post(url, {"mark": ["image:A1", "text:0"], "confidence": 3}).status_code == 302
                continue
            (modality, (unit,)), *_ = json.loads(assignment.expected_answer).items()
            words = assignment.item.payload["text"].replace("?", " ?").split()
            named = f"the cell {unit} of the picture" if modality == "image" else f"the word “{words[unit]}”"
            assert f"please mark only <b>{named}</b>" in page
            mark = f"{modality}:{unit}"
            asked.append(mark)
            marks = [mark] if obey else [mark, "image:H8" if mark != "image:H8" else "image:A1"]
            assert client.post(url, {"mark": marks, "confidence": 3}).status_code == 302
        passed = Response.objects.filter(participant=participant, is_attention_check=True)
        assert list(passed.values_list("attention_passed", flat=True)) == [obey, obey]
    assert len(asked) == 4
    checked_items = set(Response.objects.filter(is_attention_check=True).values_list("item__external_id", flat=True))
    assert checked_items and not checked_items & set(study_rationale_frame(study=study)["item"])
