"""The "No leak" invariant: before a participant answers, nothing they can fetch reveals the
model's prediction or the gold label of the current item."""

from __future__ import annotations

import re

import pytest
from django.test import Client

from annotations.models import Assignment, Condition, Item, Participant, Prediction
from tests.integration.builders import live_demo_study

pytestmark = pytest.mark.django_db

CSRF = re.compile(rb'name="csrfmiddlewaretoken" value="[^"]+"')
SRC = re.compile(r'src="([^"]+)"')


def _enter(client: Client, study) -> Participant:
    client.get(f"/s/{study.public_id}/")
    client.post(f"/s/{study.public_id}/consent/")
    client.post(f"/s/{study.public_id}/instructions/")
    return Participant.objects.get(public_id=client.session[f"participant:{study.public_id}"])


def _fetch_all(client: Client, study) -> dict[str, bytes]:
    """The item page and every URL it references, as the browser would load them."""
    page = client.get(f"/s/{study.public_id}/item/")
    assert page.status_code == 200
    served = {"page": CSRF.sub(b"", page.content)}
    for url in SRC.findall(page.content.decode()):
        response = client.get(url)
        assert response.status_code == 200, url
        served[url] = b"".join(response.streaming_content) if response.streaming else response.content
    return served


def _labels_outside_choices(html: str, question: str, candidates: list[str]) -> str:
    """The page with the parts that must name labels removed: the question itself and the
    candidate answers (each candidate is offered, so naming them reveals nothing)."""
    text = html.replace(question, " ")
    text = re.sub(r'<fieldset class="candidates">.*?</fieldset>', " ", text, flags=re.S)
    return text


@pytest.fixture
def study(alice, demo_jsonl):
    return live_demo_study(owner=alice, jsonl=demo_jsonl, n_items=8, items_per_participant=4, raters_per_item=2)


def test_served_bytes_do_not_depend_on_prediction_or_gold_label(study):
    """Counterfactual check: change the stored prediction and gold label of the current item
    and fetch everything again. If anything depended on them, some byte would change."""
    for _ in range(2):  # one participant per arm
        client = Client()
        participant = _enter(client, study)
        for _ in range(study.items_per_participant):
            assignment = Assignment.objects.filter(participant=participant, status="active").order_by("position").first()
            before = _fetch_all(client, study)

            prediction = Prediction.objects.get(model=study.model, item=assignment.item)
            others = [c for c in assignment.candidate_order if c != prediction.label]
            Prediction.objects.filter(pk=prediction.pk).update(label=others[0])
            Item.objects.filter(pk=assignment.item_id).update(gold_label=others[-1])
            after = _fetch_all(client, study)
            Prediction.objects.filter(pk=prediction.pk).update(label=prediction.label)
            Item.objects.filter(pk=assignment.item_id).update(gold_label=assignment.item.gold_label)

            assert before == after
            client.post(f"/s/{study.public_id}/item/{assignment.public_id}/",
                        {"guess": assignment.candidate_order[0], "confidence": 3})
    assert {c.name for c in Condition.objects.filter(participants__isnull=False)} == {"baseline", "ig"}


def test_no_url_image_or_text_names_the_prediction_or_gold_label(study):
    for _ in range(2):
        client = Client()
        participant = _enter(client, study)
        for _ in range(study.items_per_participant):
            assignment = Assignment.objects.filter(participant=participant, status="active").order_by("position").first()
            item = assignment.item
            prediction = Prediction.objects.get(model=study.model, item=item).label
            secrets = {prediction, item.gold_label, item.external_id}
            served = _fetch_all(client, study)
            for url, body in served.items():
                for secret in secrets:
                    assert secret not in url
                if url != "page":
                    assert body.startswith(b"\x89PNG")
                    for secret in secrets:
                        assert secret.encode() not in body, f"{secret!r} in the bytes of {url}"
            html = served["page"].decode()
            assert item.external_id not in html
            assert "data-" not in re.sub(r'data-key="\d"', "", html)  # no hidden attributes on choices
            outside = _labels_outside_choices(html, item.payload["text"], assignment.candidate_order)
            for label in {prediction, item.gold_label} - set(item.payload["text"].split()):
                assert not re.search(rf"\b{re.escape(label)}\b", outside), f"{label!r} outside the choices"
            # Every candidate is offered the same way: one radio each, nothing marks one out.
            for candidate in assignment.candidate_order:
                assert html.count(f'value="{candidate}"') == 1
            client.post(f"/s/{study.public_id}/item/{assignment.public_id}/",
                        {"guess": assignment.candidate_order[-1], "confidence": 2})
