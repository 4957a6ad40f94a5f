"""The "No leak" invariant: before a participant answers, nothing they can fetch (HTML, image
bytes, URLs, headers, alt text) reveals the model's prediction or the gold label of an item
they have yet to answer, nor any identifier that maps to them. Checked for every kind of
view (heatmap, tokens, share bars, interaction matrix, top pairs), in the pre-test and the
test phase (attention checks included), for both explanation displays."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from django.test import Client

from annotations.models import Assignment, Explanation, Item, Participant, Prediction
from tests.integration.builders import VIEW_ARMS, live_demo_study

pytestmark = pytest.mark.django_db

CSRF = re.compile(rb'name="csrfmiddlewaretoken" value="[^"]+"')
SRC = re.compile(r'src="([^"]+)"')
DESIGN = dict(conditions=VIEW_ARMS, n_items=4, items_per_participant=2, raters_per_item=2, n_candidates=3,
              learning_items=1, attention_checks=1, pretest=True)


def _enter(client: Client, study) -> Participant:
    client.get(f"/s/{study.public_id}/")
    client.post(f"/s/{study.public_id}/consent/")
    client.post(f"/s/{study.public_id}/instructions/")
    return Participant.objects.get(public_id=client.session[f"participant:{study.public_id}"])


def _fetch_all(client: Client, study) -> dict[str, tuple[bytes, dict]]:
    """The item page and every URL it references, as the browser would load them, with the
    headers that could carry a name."""
    page = client.get(f"/s/{study.public_id}/item/")
    assert page.status_code == 200
    served = {"page": (CSRF.sub(b"", page.content), _headers(page))}
    for url in SRC.findall(page.content.decode()):
        response = client.get(url)
        assert response.status_code == 200, url
        body = b"".join(response.streaming_content) if response.streaming else response.content
        served[url] = (body, _headers(response))
    return served


def _headers(response) -> dict:
    return {k: v for k, v in response.headers.items() if k.lower() not in ("date", "set-cookie", "vary")}


def _labels_outside_choices(html: str, question: str) -> str:
    """The page with the parts that must name labels removed: the question itself and the
    candidate answers (each candidate is offered, so naming them reveals nothing)."""
    text = html.replace(question, " ")
    return re.sub(r'<fieldset class="candidates">.*?</fieldset>', " ", text, flags=re.S)


def _secrets(study, participant, item) -> set[str]:
    """What must not show before an answer: this item's prediction and gold label, its
    dataset ID, and the stored file names of its input and explanations."""
    prediction = Prediction.objects.get(model=study.model, item=item).label
    names = {Path(value).name for value in item.payload.values() if "/" in str(value)}
    for row in Explanation.objects.filter(model=study.model, item=item):
        names |= {Path(p).name for p in [row.image_view, row.arrays_file, *row.extra_views.values()] if p}
    return {prediction, item.gold_label, item.external_id} | names


def _answer_current(client: Client, study, assignment: Assignment) -> None:
    if assignment.phase == "learning":
        client.post(f"/s/{study.public_id}/learn/{assignment.public_id}/")
    else:
        client.post(f"/s/{study.public_id}/item/{assignment.public_id}/",
                    {"guess": assignment.expected_answer or assignment.candidate_order[-1], "confidence": 2})


def _png_metadata(body: bytes) -> bytes:
    """Every PNG chunk but the compressed pixels (IDAT), where a name could be written as
    text; asserts there are no text chunks at all."""
    assert body.startswith(b"\x89PNG\r\n\x1a\n")
    offset, out = 8, []
    while offset < len(body):
        length = int.from_bytes(body[offset:offset + 4], "big")
        kind = body[offset + 4:offset + 8]
        assert kind not in (b"tEXt", b"zTXt", b"iTXt", b"eXIf"), f"a {kind!r} chunk"
        if kind != b"IDAT":
            out.append(kind + body[offset + 8:offset + 8 + length])
        offset += 12 + length
    return b"".join(out)


def _check_page(study, assignment, served, secrets) -> None:
    for url, (body, headers) in served.items():
        words = set(re.split(r"[^A-Za-z0-9._-]+", " ".join(f"{k} {v}" for k, v in headers.items())))
        for secret in secrets:
            assert secret not in url.split("/"), f"{secret!r} in {url}"
            assert secret not in words, f"{secret!r} in the headers of {url}"
        if url != "page":
            metadata = _png_metadata(body)
            for secret in secrets:
                assert secret.encode() not in metadata, f"{secret!r} in the metadata of {url}"
    html = served["page"][0].decode()
    item = assignment.item
    assert item.external_id not in html
    markup = re.sub(r"<script>.*?</script>", " ", html, flags=re.S)
    assert "data-" not in re.sub(r'data-key="\d"', "", markup)  # no hidden attributes on choices
    assert "model-answer" not in html and "The model answered" not in html
    outside = _labels_outside_choices(html, item.payload["text"])
    question_words = set(item.payload["text"].split())
    for label in secrets - question_words:
        assert not re.search(rf"\b{re.escape(label)}\b", outside), f"{label!r} outside the choices"
    # Every candidate is offered the same way: one radio each, nothing marks one out.
    for candidate in assignment.candidate_order:
        assert html.count(f'value="{candidate}"') == 1


def _walk_and_check(study, *, counterfactual: bool) -> set[str]:
    """One participant per arm goes through every phase; each page before an answer is
    checked. Returns the view kinds that were served."""
    kinds = set()
    for _ in range(len(VIEW_ARMS)):
        client = Client()
        participant = _enter(client, study)
        test_items = set(participant.assignments.filter(phase="test").values_list("item_id", flat=True))
        learning = set(participant.assignments.filter(phase="learning").values_list("item_id", flat=True))
        assert learning and not learning & test_items  # what practice reveals is never tested
        while (assignment := Assignment.objects.filter(participant=participant, status="active")
               .order_by("position").select_related("item").first()) is not None:
            if assignment.phase == "learning":
                client.get(f"/s/{study.public_id}/item/")
                _answer_current(client, study, assignment)
                continue
            served = _fetch_all(client, study)
            kinds |= {url.split("/v/")[1].split("/")[0] for url in served if "/v/" in url}
            _check_page(study, assignment, served, _secrets(study, participant, assignment.item))
            if counterfactual:
                # Change the stored prediction and gold label and fetch everything again: if
                # anything depended on them, some byte would change.
                prediction = Prediction.objects.get(model=study.model, item=assignment.item)
                others = [c for c in assignment.candidate_order if c != prediction.label]
                Prediction.objects.filter(pk=prediction.pk).update(label=others[0])
                Item.objects.filter(pk=assignment.item_id).update(gold_label=others[-1])
                after = _fetch_all(client, study)
                Prediction.objects.filter(pk=prediction.pk).update(label=prediction.label)
                Item.objects.filter(pk=assignment.item_id).update(gold_label=assignment.item.gold_label)
                assert {k: v[0] for k, v in served.items()} == {k: v[0] for k, v in after.items()}
            _answer_current(client, study, assignment)
        # A participant session reaches no researcher JSON (page or API, where it is wired).
        assert client.get(f"/studies/{study.pk}/progress.json").status_code == 302
        assert client.get(f"/api/studies/{study.pk}/progress/").status_code in (401, 403, 404)
    return kinds


def test_no_view_of_any_kind_reveals_the_answer(alice, demo_jsonl):
    study = live_demo_study(owner=alice, jsonl=demo_jsonl, **DESIGN)

    kinds = _walk_and_check(study, counterfactual=True)

    assert kinds == {"heatmap", "interaction", "top_pairs", "share"}
    assert {p.condition.name for p in Participant.objects.filter(study=study)} == {"baseline", "ig", "interactions"}


def test_the_unlabelled_predicted_explanation_reveals_no_name(alice, demo_jsonl):
    # Here the explanation shown is the predicted class's by design, so the counterfactual
    # check does not apply; names, URLs and bytes still must not give the class away.
    study = live_demo_study(owner=alice, jsonl=demo_jsonl, explanation_display="predicted_unlabelled", **DESIGN)

    kinds = _walk_and_check(study, counterfactual=False)

    assert kinds == {"heatmap", "interaction", "top_pairs", "share"}
    page_urls = [u for u in SRC.findall(Client().get(f"/s/{study.public_id}/").content.decode())]
    assert not page_urls or all("/v/" not in u for u in page_urls)


def test_a_second_study_redraws_every_candidate_of_an_item_on_one_scale(alice, demo_jsonl):
    """A pilot with 2 candidates, then a main study with 4 on the same model: if the main
    study drew only its 2 new candidates, their printed colour scale would differ from the
    pilot's pair, and the pair holding the model's answer would stand out."""
    from annotations.models import PrecomputeJob
    from annotations.services.precompute import precompute_job_create
    from annotations.services.studies import ConditionSpec, study_create
    from workers.pipeline import precompute_run

    pilot = live_demo_study(owner=alice, jsonl=demo_jsonl, n_candidates=2)
    main = study_create(
        owner=alice, name="main", dataset=pilot.dataset, model=pilot.model,
        conditions=[ConditionSpec(name="baseline"), ConditionSpec(name="ig", views=["heatmap", "tokens"])],
        n_items=8, items_per_participant=4, raters_per_item=2, n_candidates=4, seed=pilot.seed,
    )
    job = precompute_job_create(study=main)
    assert precompute_run(job_id=job.pk)["status"] == "done"
    started = PrecomputeJob.objects.get(pk=job.pk).created_at

    shared = set(pilot.study_items.values_list("item_id", flat=True)) & set(main.study_items.values_list("item_id", flat=True))
    assert shared, "the same seed should sample overlapping items"
    for item_id in shared:
        rows = Explanation.objects.filter(model=main.model, item_id=item_id, method=main.explanation_method)
        assert rows.count() == 4
        # Every row of the item was drawn in the main study's run, together.
        assert all(row.updated_at >= started for row in rows)
