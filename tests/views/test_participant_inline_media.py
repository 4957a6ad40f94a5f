"""One request per participant page: the item and practice pages carry their pictures (the
input's and every explanation view's) as ``data:`` URIs of the stored PNG's pixel chunks, so a
browser fetches no picture; what the inlined bytes may hold is checked here and, against the
model's answer, in tests/integration/test_leak.py."""

from __future__ import annotations

import base64
import io
import os
import zlib
from pathlib import Path

import pytest
from django.conf import settings
from django.test import Client
from PIL import Image

from annotations.models import Assignment, Explanation, Participant
from annotations.selectors.inline_media import PNG_PIXEL_CHUNKS, media_data_uri, png_pixels_only
from annotations.services.studies import ConditionSpec
from tests.builders.studies import build_study, png_bytes
from tests.integration import readable

DATA_PNG = "data:image/png;base64,"


def _chunks(png: bytes) -> list[bytes]:
    kinds, offset = [], 8
    while offset < len(png):
        length = int.from_bytes(png[offset : offset + 4], "big")
        kinds.append(png[offset + 4 : offset + 8])
        offset += 12 + length
    return kinds


def _with_chunk(png: bytes, kind: bytes, data: bytes) -> bytes:
    """``png`` with a ``kind`` chunk holding ``data`` right after IHDR."""
    end = 8 + 12 + int.from_bytes(png[8:12], "big")
    chunk = kind + data
    return png[:end] + len(data).to_bytes(4, "big") + chunk + zlib.crc32(chunk).to_bytes(4, "big") + png[end:]


def _pixels(png: bytes) -> bytes:
    with Image.open(io.BytesIO(png)) as image:
        return image.convert("RGBA").tobytes()


# ---------------------------------------------------------------------------- no database


def test_only_the_chunks_that_draw_the_pixels_are_kept():
    plain = png_bytes((10, 200, 30), size=(5, 3))
    tagged = png_bytes((10, 200, 30), size=(5, 3), text={"Comment": "answer=red"}, icc_profile=b"answer=red " * 8)
    for kind, data in ((b"tIME", b"\x07\xea\x0c\x07\x0c\x00\x00"), (b"eXIf", b"MM\x00*answer=red")):
        tagged = _with_chunk(tagged, kind, data)
    tagged = _with_chunk(tagged, b"iTXt", b"label\x00\x00\x00\x00\x00red")
    assert {b"tEXt", b"iCCP", b"tIME", b"eXIf", b"iTXt"} <= set(_chunks(tagged))

    kept = png_pixels_only(tagged)

    assert set(_chunks(kept)) <= PNG_PIXEL_CHUNKS and b"answer" not in kept and b"red" not in kept
    assert _pixels(kept) == _pixels(tagged) == _pixels(plain)
    assert png_pixels_only(plain) == plain  # what the renderer writes passes unchanged


def test_what_is_not_a_whole_png_is_not_inlined():
    png = png_bytes()
    assert png_pixels_only(b"GIF89a" + png[6:]) is None
    assert png_pixels_only(png[:-12]) is None  # no IEND
    assert png_pixels_only(png[:40]) is None  # a chunk runs past the end


def test_a_replaced_file_is_read_again(settings, tmp_path):
    settings.MEDIA_ROOT = str(tmp_path)
    (tmp_path / "views").mkdir()
    path = tmp_path / "views" / "x.png"
    path.write_bytes(png_bytes((1, 2, 3), size=(4, 4)))
    first = media_data_uri("views/x.png")
    assert first.startswith(DATA_PNG) and media_data_uri("views/x.png") == first
    path.write_bytes(png_bytes((200, 2, 3), size=(6, 4)))
    os.utime(path, ns=(1, 1))  # another size and time, as a file replaced in place would have
    second = media_data_uri("views/x.png")
    assert second != first and _pixels(base64.b64decode(second[len(DATA_PNG) :])) == _pixels(path.read_bytes())
    assert media_data_uri("views/missing.png") == "" and media_data_uri("views/sound.wav") == ""


# ---------------------------------------------------------------------------- pages


@pytest.fixture
def study(alice, tmp_path):
    return build_study(
        alice,
        tmp_path,
        n_dataset_items=24,
        n_items=6,
        items_per_participant=3,
        raters_per_item=2,
        conditions=[
            ConditionSpec("baseline"),
            ConditionSpec("everything", ["heatmap", "tokens", "share", "interaction", "top_pairs"]),
        ],
        learning_items=2,
        attention_checks=1,
        pretest=True,
        survey=True,
        name="inline",
    )


def _enter(study) -> tuple[Client, Participant]:
    """A browser and its participant in the explanation arm (arms are balanced: one of the
    first two entrants)."""
    for _ in range(2):
        client = Client()
        client.get(f"/s/{study.public_id}/")
        client.post(f"/s/{study.public_id}/consent/")
        client.post(f"/s/{study.public_id}/instructions/")
        participant = Participant.objects.get(public_id=client.session[f"participant:{study.public_id}"])
        if participant.condition.views:
            return client, participant
    raise AssertionError("no entrant reached the explanation arm")


def _page_pictures(html: str, study) -> list[tuple[readable.Element, bytes]]:
    """Each ``<img>`` of the page with the bytes of its data URI; fails on any picture the
    browser would fetch, and on any URL of the participant media routes."""
    root = readable.parse(html)
    for url in readable.urls(root):
        assert f"/s/{study.public_id}/a/" not in url, url
    pictures = []
    for element in root.iter():
        if element.tag == "img":
            src = element.attrs["src"]
            assert src.startswith(DATA_PNG), src[:100]
            pictures.append((element, base64.b64decode(src[len(DATA_PNG) :], validate=True)))
    return pictures


@pytest.mark.django_db
def test_every_page_of_a_walk_carries_its_pictures(study):
    """Pre-test, practice and test pages: the input picture and every explanation view are
    inside the page, as the stored file's pixels; nothing on the page is fetched from the
    participant media routes."""
    client, participant = _enter(study)
    seen = set()
    while (
        assignment := participant.assignments.filter(status="active")
        .order_by("position")
        .select_related("item")
        .first()
    ) is not None:
        html = client.get(f"/s/{study.public_id}/item/").content.decode()
        pictures = _page_pictures(html, study)
        inputs = [data for element, data in pictures if "input-image" in element.classes()]
        assert inputs == [png_pixels_only((Path(settings.MEDIA_ROOT) / assignment.item.payload["image"]).read_bytes())]
        views = [(element, data) for element, data in pictures if "view" in element.classes()]
        n = len(assignment.candidate_order)
        assert len(views) == (0 if assignment.phase == "pretest" else 4 * n)  # heatmap, interaction, top pairs, share
        stored = {
            png_pixels_only((Path(settings.MEDIA_ROOT) / path).read_bytes())
            for row in Explanation.objects.filter(item=assignment.item, target_label__in=assignment.candidate_order)
            for path in [row.image_view, *row.extra_views.values()]
            if path
        }
        assert {data for _, data in views} <= stored
        for _, data in views:
            assert set(_chunks(data)) <= PNG_PIXEL_CHUNKS
        seen.add(assignment.phase)
        if assignment.phase == Assignment.Phase.LEARNING:
            client.post(f"/s/{study.public_id}/learn/{assignment.public_id}/")
        else:
            guess = assignment.expected_answer or assignment.candidate_order[0]
            client.post(f"/s/{study.public_id}/item/{assignment.public_id}/", {"guess": guess, "confidence": 3})
    assert seen == {"pretest", "learning", "test"}


@pytest.mark.django_db
def test_a_picture_stored_with_metadata_reaches_the_page_without_it(study):
    """A view file holding text, time and profile chunks (a renderer that forgot to strip
    them) is inlined with its pixels only."""
    client, participant = _enter(study)
    assignment = participant.assignments.filter(phase="test").order_by("position").first()
    row = Explanation.objects.filter(item=assignment.item, target_label=assignment.candidate_order[0]).first()
    path = Path(settings.MEDIA_ROOT) / row.image_view
    clean = path.read_bytes()
    tagged = _with_chunk(_with_chunk(clean, b"tEXt", f"Comment\x00{row.target_label}".encode()), b"tIME", b"\x07" * 7)
    path.write_bytes(tagged)
    os.utime(path, ns=(2, 2))
    while (current := participant.assignments.filter(status="active").order_by("position").first()) != assignment:
        client.get(f"/s/{study.public_id}/item/")
        if current.phase == Assignment.Phase.LEARNING:
            client.post(f"/s/{study.public_id}/learn/{current.public_id}/")
        else:
            guess = current.expected_answer or current.candidate_order[0]
            client.post(f"/s/{study.public_id}/item/{current.public_id}/", {"guess": guess, "confidence": 3})
    html = client.get(f"/s/{study.public_id}/item/").content.decode()
    views = [data for element, data in _page_pictures(html, study) if "view" in element.classes()]

    assert png_pixels_only(tagged) in views and tagged not in views
    assert all(b"tEXt" not in _chunks(data) and b"tIME" not in _chunks(data) for data in views)
    assert row.target_label.encode() not in b"".join(views)


@pytest.mark.django_db
def test_a_picture_that_cannot_be_inlined_falls_back_to_its_url(study):
    """A stored file that is gone: the page names the picture's URL (which answers 404, as
    before) instead of failing."""
    client, participant = _enter(study)
    assignment = participant.assignments.filter(status="active").order_by("position").select_related("item").first()
    (Path(settings.MEDIA_ROOT) / assignment.item.payload["image"]).unlink()

    response = client.get(f"/s/{study.public_id}/item/")

    assert response.status_code == 200
    [image] = [e for e in readable.parse(response.content.decode()).iter() if e.tag == "img"]
    assert image.attrs["src"] == f"/s/{study.public_id}/a/{assignment.public_id}/input/image"
    assert client.get(image.attrs["src"]).status_code == 404


@pytest.mark.django_db
def test_the_page_benchmark_counts_one_request_per_page(study):
    """``manage.py bench_participant_pages``: a walk asks for its pages and no picture."""
    import io
    import re

    from django.core.management import call_command

    out = io.StringIO()
    call_command("bench_participant_pages", study=study.public_id, walks=2, stdout=out)
    table = out.getvalue()

    assert "media GET" not in table, table
    rows = {m.group(1): float(m.group(2)) for m in re.finditer(r"^(\w+ (?:GET|POST)) +(\d+\.\d) ", table, re.M)}
    # 3 pre-test, 2 practice and 4 test pages (3 items and the attention check); the last answer
    # leads to the survey
    assert rows["item GET"] == 3 + 2 + 4
    assert rows["answer POST"] == 3 + 4 and rows["learn POST"] == 2
    total = float(re.search(r"^all +(\d+\.\d) ", table, re.M).group(1))
    assert total == sum(rows.values())
    # the warm-up walk went through the study too, and is not in the table
    assert "over 2 walks" in table
    assert Participant.objects.filter(study=study, phase=Participant.Phase.DONE).count() == 2 + 1
