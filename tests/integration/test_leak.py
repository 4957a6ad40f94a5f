"""The "No leak" invariant: before a participant answers, nothing they can fetch (HTML, image
bytes, URLs, headers, alt text) reveals the model's prediction or the gold label of an item
they have yet to answer, nor any identifier that maps to them. Checked for every kind of
view (heatmap, tokens, share bars, interaction matrix, top pairs, MultiViz's features and
prediction views), in the pre-test and the
test phase (attention checks included), for both explanation displays.

The checks read what a person or a script can read (text, attribute values, comments,
script strings, URLs, headers, PNG chunks; see ``tests/integration/readable.py``), not raw
markup: the ``<circle>`` element of an icon names no answer. Pictures come inside the page as
``data:`` URIs: their bytes are checked like a fetched picture's (no text chunk, no secret
outside the pixels), their base64 text is not read as words. ``test_the_checker_catches_
planted_leaks`` proves that they still fail on a real leak."""

from __future__ import annotations

import base64
import re
import zlib
from pathlib import Path
from urllib.parse import unquote

import pytest
from django.conf import settings
from django.template.loader import render_to_string
from django.test import Client

from annotations.models import Assignment, Explanation, Item, Participant, Prediction
from annotations.services.studies import ConditionSpec
from tests.builders.demo_study import MULTIVIZ_ARMS, PLANT_ADAPTER, PLANT_ARMS, VIEW_ARMS, live_demo_study
from tests.integration import readable

pytestmark = pytest.mark.django_db

CSRF = re.compile(rb'name="csrfmiddlewaretoken" value="[^"]+"')
# The time left counts down between two fetches: it depends on the clock alone.
TIME_LEFT = re.compile(rb'<time id="time-left-value" datetime="PT\d+S">[^<]*</time>')
DESIGN = dict(
    conditions=MULTIVIZ_ARMS,
    n_items=4,
    items_per_participant=2,
    raters_per_item=2,
    n_candidates=3,
    learning_items=1,
    attention_checks=1,
    pretest=True,
)
PNG_TEXT_CHUNKS = (b"tEXt", b"zTXt", b"iTXt", b"eXIf")


def _enter(client: Client, study) -> Participant:
    client.get(f"/s/{study.public_id}/")
    client.post(f"/s/{study.public_id}/consent/")
    client.post(f"/s/{study.public_id}/instructions/")
    return Participant.objects.get(public_id=client.session[f"participant:{study.public_id}"])


def _page_urls(html: bytes) -> list[str]:
    """What the browser loads by itself: every ``src`` and ``srcset`` URL and every prefetched
    link, in order, once (``data:`` URIs are inside the page: nothing to load)."""
    root = readable.parse(html.decode())
    prefetched = [e.attrs.get("href", "") for e in root.iter() if e.tag == "link" and e.attrs.get("rel") == "prefetch"]
    found = readable.urls(root, attributes={"src", "srcset"}) + prefetched
    return [url for url in dict.fromkeys(found) if not url.startswith("data:")]


INLINE = re.compile(r"data:([^,]*),(.*)", re.S)


def _inline(value: str) -> tuple[str, bytes] | None:
    """The media type (with its parameters) and the bytes of a ``data:`` URI, or None."""
    match = INLINE.fullmatch(value.strip())
    if match is None:
        return None
    head, payload = match.groups()
    data = base64.b64decode(payload, validate=True) if head.endswith(";base64") else unquote(payload).encode()
    return head.removesuffix(";base64"), data


def _inline_leaks(root: readable.Element, words: set[str], secrets: set[str]) -> list[str]:
    """Every ``data:`` URI of the page: a PNG picture (``image/png``, no parameters) whose
    bytes pass the same checks as a fetched picture's."""
    found = []
    for element in root.iter():
        for name, value in element.attrs.items():
            inline = _inline(value) if value.strip().startswith("data:") else None
            if inline is None:
                continue
            where = f"the data URI in <{element.tag} {name}> (class={element.attrs.get('class', '')!r})"
            kind, data = inline
            if kind != "image/png":
                found.append(f"{where} is {kind!r}, not a bare image/png")
            found += [f"{w!r} in the head of {where}" for w in words if _names(kind, w)]
            found += _png_leaks(data, where, secrets)
    return found


def _fetch_all(client: Client, study) -> dict[str, tuple[bytes, dict]]:
    """The item page and every URL it loads, as the browser would load them, with the headers
    that could carry a name."""
    page = client.get(f"/s/{study.public_id}/item/")
    assert page.status_code == 200
    served = {"page": (TIME_LEFT.sub(b"", CSRF.sub(b"", page.content)), _headers(page))}
    for url in _page_urls(page.content):
        response = client.get(url)
        assert response.status_code == 200, url
        body = b"".join(response.streaming_content) if response.streaming else response.content
        served[url] = (body, _headers(response))
    return served


def _inlined_views(html: bytes) -> set[str]:
    """The kinds of explanation view the page shows as inlined pictures (``img.view-<kind>``
    with a ``data:`` source)."""
    root = readable.parse(html.decode())
    kinds = set()
    for element in root.iter():
        if element.tag == "img" and "view" in element.classes():
            assert element.attrs["src"].startswith("data:image/png;base64,"), element.attrs["src"][:80]
            kinds |= {c.removeprefix("view-") for c in element.classes() if c.startswith("view-")}
    return kinds


def _headers(response) -> dict:
    return {k: v for k, v in response.headers.items() if k.lower() not in ("date", "set-cookie", "vary")}


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
        client.post(
            f"/s/{study.public_id}/item/{assignment.public_id}/",
            {"guess": assignment.expected_answer or assignment.candidate_order[-1], "confidence": 2},
        )


def _names(text: str, secret: str) -> bool:
    """Whether ``text`` holds ``secret`` as a whole word (any case): "Circle" and
    "heatmap-circle.png" name circle, "circles" and "encircled" do not."""
    return re.search(rf"(?<![A-Za-z0-9]){re.escape(secret)}(?![A-Za-z0-9])", text, re.I) is not None


def _header_words(headers: dict) -> set[str]:
    """Header words, lower-cased; hyphenated tokens (``no-store``) stay whole, file names are
    also split at dots."""
    text = " ".join(f"{k} {v}" for k, v in headers.items()).lower()
    return set(re.split(r"[^a-z0-9._-]+", text)) | set(re.split(r"[^a-z0-9_-]+", text))


def _png_leaks(body: bytes, url: str, secrets: set[str]) -> list[str]:
    """Text chunks, or a secret in any chunk but the compressed pixels (IDAT)."""
    if not body.startswith(b"\x89PNG\r\n\x1a\n"):
        return [f"{url} is not a PNG"]
    found, offset = [], 8
    while offset < len(body):
        length = int.from_bytes(body[offset : offset + 4], "big")
        kind, data = body[offset + 4 : offset + 8], body[offset + 8 : offset + 8 + length]
        if kind in PNG_TEXT_CHUNKS:
            found.append(f"a {kind.decode()} chunk in {url}")
        if kind != b"IDAT":
            found += [f"{s!r} in a {kind!r} chunk of {url}" for s in secrets if s.encode() in kind + data]
        offset += 12 + length
    return found


def _wav_leaks(body: bytes, url: str, secrets: set[str]) -> list[str]:
    """Any RIFF chunk but the format and the samples (a LIST/INFO chunk holds free text), or a
    secret in any chunk but the samples."""
    if body[8:12] != b"WAVE":
        return [f"{url} is not a WAV file"]
    found, offset = [], 12
    while offset + 8 <= len(body):
        kind, length = body[offset : offset + 4], int.from_bytes(body[offset + 4 : offset + 8], "little")
        data = body[offset + 8 : offset + 8 + length]
        if kind not in (b"fmt ", b"data"):
            found.append(f"a {kind!r} chunk in {url}")
        if kind != b"data":
            found += [f"{s!r} in a {kind!r} chunk of {url}" for s in secrets if s.encode() in kind + data]
        offset += 8 + length + (length & 1)
    return found


def _static_leaks(body: bytes, url: str) -> list[str]:
    """A script the page loads (static/mmeval/timing.js) is one of the project's fixed files,
    byte for byte: the same for every item, so it can say nothing about one."""
    relative = url.split("/static/", 1)[1].split("?", 1)[0]
    fixed = [Path(folder) / relative for folder in settings.STATICFILES_DIRS]
    if not any(path.is_file() and path.read_bytes() == body for path in fixed):
        return [f"{url} is not one of the project's fixed static files"]
    return []


def _candidate_of(element: readable.Element) -> str | None:
    """The candidate answer whose block (``.candidate``, holding one ``guess`` radio) encloses
    ``element``, if any."""
    for node in element.ancestors():
        if "candidate" in node.classes():
            radios = [e.attrs.get("value") for e in node.iter() if e.tag == "input" and e.attrs.get("name") == "guess"]
            return radios[0] if len(radios) == 1 else None
    return None


def _leaks(
    served: dict[str, tuple[bytes, dict]],
    *,
    question: str,
    candidates: list[str],
    secrets: set[str],
    labels: set[str],
    shown_label: str = "",
) -> list[str]:
    """Where what the participant fetched names a secret: every URL (loaded or linked),
    header and PNG chunk; in the page, every text node, attribute value, comment and script
    string. Every one of the model's ``labels`` counts as a secret too, so the verdict does
    not hang on which items the model got right (a label in the page's fixed text fails on
    every item). Allowed: the question itself (its words show again as token highlights),
    each candidate's own name inside its own answer block, and ``shown_label``, the label an
    instructed attention check asks for. Secrets that are not labels (IDs, file names) must
    not appear anywhere in the page source. Also flagged: hidden ``data-`` attributes, and any
    candidate not offered exactly once."""
    words = (secrets | labels) - {shown_label}
    found = []
    for url, (body, headers) in served.items():
        header_words = _header_words(headers)
        found += [f"{w!r} in the headers of {url}" for w in words if w.lower() in header_words]
        if url != "page":
            found += [f"{w!r} in the URL {url}" for w in words if _names(unquote(url), w)]
            if url.startswith("/" + settings.STATIC_URL.lstrip("/")):
                found += _static_leaks(body, url)
                continue
            found += _wav_leaks(body, url, secrets) if body.startswith(b"RIFF") else _png_leaks(body, url, secrets)
    html = served["page"][0].decode()
    root = readable.parse(html)
    found += _inline_leaks(root, words, secrets)
    # Inlined pictures are bytes, checked above: their base64 text is not read as words (it may
    # hold "/no+" by chance), and an ID inside it would be in the pixels, which may be anything.
    source = re.sub(r"data:image/png;base64,[A-Za-z0-9+/=]+", "data:", html)
    # An ID is never markup. Whole tokens only: a random CSRF token holds a short ID such as
    # "s2" by chance on about one page in sixty.
    found += [f"{s!r} in the page source" for s in secrets - labels if _names(source, s)]
    found += [f"{marker!r} in the page" for marker in ("model-answer", "The model answered") if marker in source]
    for url in readable.urls(root):
        if not url.startswith("data:"):
            found += [f"{w!r} in the URL {url}" for w in words if _names(unquote(url), w)]
    question_words = set(re.findall(r"[a-z0-9]+", question.lower()))
    for piece in readable.readable(root):
        if piece.kind == "text" and piece.value.strip() == question.strip():
            continue
        if piece.kind.startswith("attribute") and piece.value.strip().startswith("data:"):
            continue  # a data URI: checked as bytes above
        for word in words - question_words - {_candidate_of(piece.element)}:
            if _names(piece.value, word):
                found.append(
                    f"{word!r} in {piece.kind} of <{piece.element.tag} "
                    f"class={piece.element.attrs.get('class', '')!r}>: {piece.value.strip()[:80]!r}"
                )
    for element in root.iter():
        for name, value in element.attrs.items():
            # data-timing (no value) marks a form for timing.js; a digit names a key.
            allowed = (name == "data-key" and re.fullmatch(r"\d", value)) or (name == "data-timing" and value == "")
            if name.startswith("data-") and not allowed:
                found.append(f"a hidden attribute {name}={value!r} on <{element.tag}>")
    # Every candidate is offered the same way: one radio each, and nothing else carries its value.
    radios = sorted(
        e.attrs.get("value", "") for e in root.iter() if e.tag == "input" and e.attrs.get("name") == "guess"
    )
    if radios != sorted(candidates):
        found.append(f"the radios offer {radios}, not the candidates {sorted(candidates)}")
    for candidate in candidates:
        carriers = [e for e in root.iter() if e.attrs.get("value") == candidate]
        if len(carriers) != 1:
            found.append(f"{len(carriers)} elements carry the value {candidate!r}")
    return found


def _page_leaks(study, assignment, served, secrets) -> list[str]:
    instructed = assignment.expected_answer if assignment.check_type == Assignment.Check.INSTRUCTED else ""
    return _leaks(
        served,
        question=assignment.item.payload.get("text", ""),
        candidates=assignment.candidate_order,
        secrets=secrets,
        labels=set(study.model.labels),
        shown_label=instructed,
    )


def _check_page(study, assignment, served, secrets) -> None:
    leaks = _page_leaks(study, assignment, served, secrets)
    assert not leaks, leaks


def _walk_and_check(study, *, counterfactual: bool, participants: int = len(MULTIVIZ_ARMS)) -> set[str]:
    """One participant per arm goes through every phase; each page before an answer is
    checked. Returns the view kinds that were served."""
    kinds = set()
    for _ in range(participants):
        client = Client()
        participant = _enter(client, study)
        test_items = set(participant.assignments.filter(phase="test").values_list("item_id", flat=True))
        learning = set(participant.assignments.filter(phase="learning").values_list("item_id", flat=True))
        assert learning and not learning & test_items  # what practice reveals is never tested
        while (
            assignment := Assignment.objects.filter(participant=participant, status="active")
            .order_by("position")
            .select_related("item")
            .first()
        ) is not None:
            if assignment.phase == "learning":
                client.get(f"/s/{study.public_id}/item/")
                _answer_current(client, study, assignment)
                continue
            served = _fetch_all(client, study)
            kinds |= _inlined_views(served["page"][0])
            # One request per page: every picture is inside it; only a sound and the fixed static
            # files (the timing script, checked byte for byte) are fetched.
            assert all("/input/audio" in url or "/static/" in url for url in served if url != "page"), list(served)
            if b'class="fbars"' in served["page"][0]:
                kinds.add("table")  # the feature bars are laid out in the page, not served as a picture
            if b'class="fbars shares"' in served["page"][0]:
                kinds.add("share")  # so are the modality shares, under the inputs' display names
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

    assert kinds == {"heatmap", "interaction", "top_pairs", "share", "features", "prediction"}
    assert {p.condition.name for p in Participant.objects.filter(study=study)} == {
        "baseline",
        "ig",
        "interactions",
        "multiviz",
    }


def test_the_unlabelled_predicted_explanation_reveals_no_name(alice, demo_jsonl):
    # Here the explanation shown is the predicted class's by design, so the counterfactual
    # check does not apply; names, URLs and bytes still must not give the class away.
    study = live_demo_study(owner=alice, jsonl=demo_jsonl, explanation_display="predicted_unlabelled", **DESIGN)

    kinds = _walk_and_check(study, counterfactual=False)

    assert kinds == {"heatmap", "interaction", "top_pairs", "share", "features", "prediction"}
    page_urls = _page_urls(Client().get(f"/s/{study.public_id}/").content)
    assert not page_urls or all("/v/" not in u for u in page_urls)


def test_no_view_of_the_tabular_demo_reveals_the_answer(alice, plants_jsonl):
    """The plants demo: the measurements as a table, the note as text, the feature bars and
    the share bars; counterfactual as above."""
    design = dict(DESIGN, conditions=PLANT_ARMS, n_candidates=4)
    study = live_demo_study(owner=alice, jsonl=plants_jsonl, adapter_path=PLANT_ADAPTER, **design)

    kinds = _walk_and_check(study, counterfactual=True, participants=len(PLANT_ARMS))

    assert kinds == {"table", "share"}
    page = Client()
    _enter(page, study)
    html = page.get(f"/s/{study.public_id}/item/").content.decode()
    assert "soil moisture %" in html and 'class="input-table"' in html  # the input itself is shown


@pytest.mark.parametrize("display", ["all_candidates", "predicted_unlabelled"])
def test_no_audio_or_series_view_reveals_the_answer(alice, tmp_path, display):
    """Audio (played through the assignment's opaque URL, and its waveform shaded over time)
    and a time series (drawn inline, and shaded over time), in both displays."""
    from tests.integration.adapters import sound_series_dataset

    jsonl = sound_series_dataset(tmp_path, n_items=8)
    arms = [ConditionSpec(name="baseline"), ConditionSpec(name="time", views=["audio", "series"])]
    design = dict(DESIGN, conditions=arms, n_candidates=3, explanation_display=display)
    study = live_demo_study(
        owner=alice, jsonl=jsonl, adapter_path="tests.integration.adapters:SoundSeriesAdapter", **design
    )
    kinds = _walk_and_check(study, counterfactual=display == "all_candidates", participants=len(arms))
    assert kinds == {"audio", "series"}
    client = Client()
    _enter(client, study)
    root = readable.parse(client.get(f"/s/{study.public_id}/item/").content.decode())
    [audio] = [e for e in root.iter() if e.tag == "audio"]
    served = client.get(audio.attrs["src"])
    assert served["Content-Type"] == "audio/wav" and re.search(r"/a/[0-9a-f-]{36}/input/audio$", audio.attrs["src"])
    assert [e for e in root.iter() if e.tag == "polyline"]  # the series itself


def test_a_second_study_redraws_every_candidate_of_an_item_on_one_scale(alice, demo_jsonl):
    """A pilot with 2 candidates, then a main study with 4 on the same model: if the main
    study drew only its 2 new candidates, their printed colour scale would differ from the
    pilot's pair, and the pair holding the model's answer would stand out."""
    from annotations.models import PrecomputeJob
    from annotations.selectors.studies import study_explanation_targets
    from annotations.services.precompute import precompute_job_create
    from annotations.services.studies import ConditionSpec, study_create
    from workers.pipeline import precompute_run

    pilot = live_demo_study(owner=alice, jsonl=demo_jsonl, n_candidates=2, reuse_precomputed=False)
    main = study_create(
        owner=alice,
        name="main",
        dataset=pilot.dataset,
        model=pilot.model,
        conditions=[ConditionSpec(name="baseline"), ConditionSpec(name="ig", views=["heatmap", "tokens"])],
        n_items=8,
        items_per_participant=4,
        raters_per_item=2,
        n_candidates=4,
        seed=pilot.seed,
    )
    job = precompute_job_create(study=main)
    assert precompute_run(job_id=job.pk)["status"] == "done"
    started = PrecomputeJob.objects.get(pk=job.pk).created_at

    shared = set(pilot.study_items.values_list("item_id", flat=True)) & set(
        main.study_items.values_list("item_id", flat=True)
    )
    assert shared, "the same seed should sample overlapping items"
    targets = study_explanation_targets(study=main)
    before = study_explanation_targets(study=pilot)
    assert max(len(labels) for labels in targets.values()) == 4  # k = 4 where the item has that many valid answers
    grown = [item_id for item_id in shared if set(targets[item_id]) > set(before[item_id])]
    assert grown, "colour and shape items offer more candidates in the main study"
    for item_id in shared:
        rows = Explanation.objects.filter(model=main.model, item_id=item_id, method=main.explanation_method)
        assert sorted(rows.values_list("target_label", flat=True)) == sorted(targets[item_id])
        # Every row of the item was drawn in one run: the main study's where it needed a new
        # candidate (all redrawn together), the pilot's where its two were all (a yes/no item).
        drawn_now = {row.updated_at >= started for row in rows}
        assert drawn_now == ({True} if item_id in grown else {False})


def _png_with_text(png: bytes, text: bytes) -> bytes:
    """``png`` with a tEXt chunk holding ``text`` inserted after IHDR."""
    chunk = b"tEXt" + b"Comment\x00" + text
    ihdr_end = 8 + 12 + int.from_bytes(png[8:12], "big")
    return (
        png[:ihdr_end]
        + len(chunk[4:]).to_bytes(4, "big")
        + chunk
        + zlib.crc32(chunk).to_bytes(4, "big")
        + png[ihdr_end:]
    )


def test_the_checker_catches_planted_leaks(alice, demo_jsonl):
    """A real test page passes; the same page with the model's answer planted in any one
    readable place fails, and so does a capitalised or script-built copy of it."""
    study = live_demo_study(owner=alice, jsonl=demo_jsonl, n_items=4, items_per_participant=2, n_candidates=3)
    for _ in range(2):  # balanced assignment: one of the first two is in the heatmap + tokens arm
        client = Client()
        participant = _enter(client, study)
        if participant.condition.name == "ig":
            break
    assert participant.condition.name == "ig"
    assignment = participant.assignments.filter(status="active").order_by("position").select_related("item").first()
    served = _fetch_all(client, study)
    question, candidates = assignment.item.payload["text"], assignment.candidate_order
    secrets = _secrets(study, participant, assignment.item)
    prediction = Prediction.objects.get(model=study.model, item=assignment.item).label
    assert prediction not in re.findall(r"[a-z]+", question) and len(candidates) >= 2
    other = next(c for c in candidates if c != prediction)

    def leaks(page: str | None = None, **changed: tuple[bytes, dict]) -> list[str]:
        planted = dict(served, **changed)
        if page is not None:
            planted["page"] = (page.encode(), served["page"][1])
        return _page_leaks(study, assignment, planted, secrets)

    assert leaks() == []
    html, page_headers = served["page"]
    html = html.decode()
    # One request besides the fixed static files: the pictures are inside the page.
    assert [url for url in served if url != "page" and "/static/" not in url] == []
    heatmap = re.search(r'class="view view-heatmap heatmap" src="(data:image/png;base64,[^"]+)"', html).group(1)
    image = base64.b64decode(heatmap.split(",", 1)[1])
    named = repr(prediction)

    def inlined(data: bytes, head: str = "data:image/png;base64,") -> str:
        return html.replace(heatmap, head + base64.b64encode(data).decode(), 1)

    plants = {  # where: (the page with the plant, what the report must say)
        "text node": (html.replace("</main>", f"<p>The model says {prediction}.</p></main>"), named),
        "text in another answer's block": (
            html.replace(f"<b>{other}</b>", f"<b>{other}</b> <i>{prediction}</i>"),
            named,
        ),
        "capitalised text": (html.replace("</main>", f"<p>{prediction.upper()}</p></main>"), named),
        "attribute value": (html.replace('id="submit"', f'id="submit" title="{prediction}"'), named),
        "alt text": (re.sub(r'alt="[^"]*"', f'alt="a picture of {prediction}"', html, count=1), named),
        "image URL": (html.replace(heatmap, f"/s/{study.public_id}/v/heatmap/0?label={prediction}", 1), named),
        "link URL": (html.replace("</main>", f'<a href="/explain/{prediction}.png">more</a></main>'), named),
        "comment": (html.replace("</main>", f"<!-- {prediction} --></main>"), named),
        "script string": (html.replace("</body>", f'<script>const answer = "{prediction}";</script></body>'), named),
        "markup a script builds": (
            html.replace(
                "</body>",
                f"<script>document.body.insertAdjacentHTML('beforeend', '<span title=\"{prediction}\">"
                "</span>');</script></body>",
            ),
            named,
        ),
        "hidden data attribute": (html.replace('id="submit"', 'id="submit" data-answer="1"'), "data-answer"),
        "a value on the timing marker": (html.replace("data-timing", 'data-timing="1"'), "data-timing"),
        "a second carrier of a candidate": (
            html.replace("</form>", f'<input type="hidden" name="x" value="{other}"></form>'),
            repr(other),
        ),
        "the dataset ID": (
            html.replace("</main>", f"<p hidden>{assignment.item.external_id}</p></main>"),
            repr(assignment.item.external_id),
        ),
        # The inlined pictures: a text chunk, a name in the data URI's head, another kind of file.
        "text chunk of an inlined picture": (inlined(_png_with_text(image, prediction.encode())), "tEXt"),
        "name in an inlined picture's text chunk": (inlined(_png_with_text(image, prediction.encode())), named),
        "data URI parameter": (inlined(image, f"data:image/png;name={prediction};base64,"), named),
        "an inlined picture of another kind": (
            inlined(f"<svg><text>{prediction}</text></svg>".encode(), "data:image/svg+xml;base64,"),
            "image/svg+xml",
        ),
        "an inlined picture that is not a PNG": (inlined(b"GIF89a" + image[6:]), "not a PNG"),
    }
    for where, (page, expected) in plants.items():
        assert page != html, f"could not plant in the {where}"
        assert any(expected in f for f in leaks(page)), f"a leak in the {where} went unnoticed"
    header = {"page": (served["page"][0], {**page_headers, "X-Label": prediction})}
    assert any(named in f and "headers" in f for f in _page_leaks(study, assignment, header, secrets))
    script_url = next(url for url in served if "/static/" in url)  # the timing script
    script, script_headers = served[script_url]
    altered = {script_url: (script + f"\nconst answer = {prediction!r};".encode(), script_headers)}
    assert any("fixed static files" in f for f in leaks(**altered))
    fetched = {f"/s/{study.public_id}/v/{prediction}.png": (image, {})}
    assert any(named in f and "URL" in f for f in leaks(**fetched))


def test_markup_names_no_answer():
    """The magnifier icon's ``<circle>`` element (an SVG the zoom script builds) is markup, not
    text: it names no answer. Text the same script would show does."""
    zoom = render_to_string("participant/_zoom.html")
    assert "<circle" in zoom
    page = f"<html><body><main><p class='question'>is there a red square?</p></main>{zoom}</body></html>"
    served = {"page": (page.encode(), {})}
    check = dict(question="is there a red square?", candidates=[], secrets={"circle"}, labels={"circle"})
    assert [f for f in _leaks(served, **check) if "circle" in f] == []
    titled = page.replace("<circle cx=", '<circle title="circle" cx=')
    assert titled != page and _leaks({"page": (titled.encode(), {})}, **check)


# --- verification studies -------------------------------------------------------------------
# The model's answer is the point of a verification page; the gold label never is: not before
# the answer, not after, nowhere a participant (or a script) can read.

VERIFICATION_DESIGN = dict(
    task="verification",
    explanation_display="predicted_unlabelled",
    conditions=VIEW_ARMS,
    n_items=6,
    items_per_participant=3,
    raters_per_item=2,
    attention_checks=1,
    survey=True,
)


def _other_labels_named(served, *, study, shown: str, question: str) -> list[str]:
    """Any label but the model's answer shown, anywhere readable: text, attributes, comments,
    scripts, URLs, headers, PNG chunks (the question's own words excepted, and the fixed verdict
    buttons and key help, whose "yes"/"no" are the same on every page: checked by the caller).
    The demo's labels include "yes" and "no"."""
    others = set(study.model.labels) - {shown}
    found = []
    for url, (body, headers) in served.items():
        found += [f"{w!r} in the headers of {url}" for w in others if w.lower() in _header_words(headers)]
        if url != "page":
            found += [f"{w!r} in the URL {url}" for w in others if _names(unquote(url), w)]
            if url.startswith("/" + settings.STATIC_URL.lstrip("/")):
                found += _static_leaks(body, url)
                continue
            found += _png_leaks(body, url, others)
    root = readable.parse(served["page"][0].decode())
    found += _inline_leaks(root, others, others)
    question_words = set(re.findall(r"[a-z0-9]+", question.lower()))
    for piece in readable.readable(root):
        if piece.kind == "text" and piece.value.strip() == question.strip():
            continue
        if piece.kind.startswith("attribute") and piece.value.strip().startswith("data:"):
            continue  # an inlined picture: its bytes are checked above, its base64 may hold "/no+"
        if any(node.attrs.get("id") in FIXED_VERDICT_PARTS for node in piece.element.ancestors()):
            continue
        # An instructed check's "please answer Yes/No here" is drawn at random, never from the gold label.
        allowed = {"yes", "no"} if any("instructed" in n.classes() for n in piece.element.ancestors()) else set()
        found += [
            f"{w!r} in {piece.kind}: {piece.value.strip()[:80]!r}"
            for w in others - question_words - allowed
            if _names(piece.value, w)
        ]
    return found


FIXED_VERDICT_PARTS = ("verdict", "keys")
FIXED_VERDICT_MARKUP = re.compile(
    r'<fieldset class="verdict" id="verdict">.*?</fieldset>|<p class="hint keys" id="keys">.*?</p>', re.S
)


def test_no_verification_page_reveals_the_gold_label(alice, demo_jsonl):
    study = live_demo_study(owner=alice, jsonl=demo_jsonl, **VERIFICATION_DESIGN)
    wrong_seen = 0
    fixed_parts = set()  # the verdict buttons and key help, which the label check skips: one markup for all
    for _ in range(len(VIEW_ARMS)):
        client = Client()
        participant = _enter(client, study)
        assert not participant.assignments.exclude(phase="test").exists()  # no practice, no warm-up
        while (
            assignment := Assignment.objects.filter(participant=participant, status="active")
            .order_by("position")
            .select_related("item")
            .first()
        ) is not None:
            prediction = Prediction.objects.get(model=study.model, item=assignment.item).label
            assert assignment.candidate_order == [prediction]  # the one answer shown is the model's
            served = _fetch_all(client, study)
            html = served["page"][0].decode()
            assert re.search(rf'id="model-answer">{re.escape(prediction)}<', html)
            leaks = _other_labels_named(
                served, study=study, shown=prediction, question=assignment.item.payload.get("text", "")
            )
            assert not leaks, leaks
            fixed_parts.add(tuple(FIXED_VERDICT_MARKUP.findall(html)))
            assert assignment.item.external_id not in html
            wrong_seen += assignment.item.gold_label != prediction
            # Counterfactual: another gold label changes no byte of the page or what it loads.
            gold = assignment.item.gold_label
            other = next(label for label in study.model.labels if label != gold)
            Item.objects.filter(pk=assignment.item_id).update(gold_label=other)
            after = _fetch_all(client, study)
            Item.objects.filter(pk=assignment.item_id).update(gold_label=gold)
            assert {k: v[0] for k, v in served.items()} == {k: v[0] for k, v in after.items()}
            client.post(f"/s/{study.public_id}/item/{assignment.public_id}/", {"verdict": "no", "confidence": 2})
        # After the answers (survey, then the end) no page names any label at all.
        for path in ("survey/", "instructions/"):
            page = client.get(f"/s/{study.public_id}/{path}", follow=True)
            text = " ".join(p.value for p in readable.readable(readable.parse(page.content.decode())))
            assert not [label for label in study.model.labels if _names(text, label)], path
        client.post(f"/s/{study.public_id}/survey/", {"helpfulness": 3, "comment": ""})
        done = client.get(f"/s/{study.public_id}/done/", follow=True)
        text = " ".join(p.value for p in readable.readable(readable.parse(done.content.decode())))
        assert not [label for label in study.model.labels if _names(text, label)]
    assert len(fixed_parts) == 1 and len(next(iter(fixed_parts))) == 2
    assert Assignment.objects.filter(participant__study=study, kind="attention").exists()
    assert wrong_seen  # the walk met wrong model answers, where the gold label is a different label


# --- counterfactual studies ------------------------------------------------------------------
# The model's answer on the original input is shown (Hase & Bansal); its answer on the edited
# input and the gold label are not, before the answer: no byte depends on them.

COUNTERFACTUAL_DESIGN = dict(
    task="counterfactual",
    explanation_display="predicted_unlabelled",
    conditions=VIEW_ARMS[:2],
    n_items=4,
    items_per_participant=2,
    raters_per_item=2,
    n_candidates=0,
    pretest=True,
    attention_checks=1,
    counterfactual={"edits": ["modality_baseline", "top_k_removed"], "k": 3},
    explanation_method="saliency",  # a cheap method: the page, not the method, is under test
)
ORIGINAL_ANSWER_CARD = re.compile(rb'<p class="reveal card" role="status" id="original-answer-card">.*?</p>', re.S)


def test_no_counterfactual_page_reveals_the_answer_on_the_edit(alice, demo_jsonl):
    from annotations.models import CounterfactualEdit

    study = live_demo_study(owner=alice, jsonl=demo_jsonl, **COUNTERFACTUAL_DESIGN)
    phases = set()
    for _ in range(len(COUNTERFACTUAL_DESIGN["conditions"])):
        client = Client()
        participant = _enter(client, study)
        while (
            assignment := Assignment.objects.filter(participant=participant, status="active")
            .order_by("position")
            .select_related("item")
            .first()
        ) is not None:
            phases.add(assignment.phase)
            edit = CounterfactualEdit.objects.get(study=study, item=assignment.item, shown=True)
            original = Prediction.objects.get(model=study.model, item=assignment.item).label
            served = _fetch_all(client, study)
            page = served["page"][0]
            [card] = ORIGINAL_ANSWER_CARD.findall(page)
            assert f'<b id="original-answer">{original}</b>'.encode() in card
            assert edit.description.encode() in page.replace(b"&#x27;", b"'")
            # Without the card that shows the original answer, no label is named outside its own
            # answer block: not the answer on the edit, not the gold label.
            stripped = {**served, "page": (ORIGINAL_ANSWER_CARD.sub(b"", page), served["page"][1])}
            secrets = _secrets(study, participant, assignment.item) | {edit.model_label}
            leaks = _page_leaks(study, assignment, stripped, secrets - {original})
            assert not leaks, leaks
            # Another answer on the edit, other probabilities and another gold label change no byte.
            other = next(c for c in assignment.candidate_order if c != edit.model_label)
            gold = assignment.item.gold_label
            CounterfactualEdit.objects.filter(pk=edit.pk).update(
                model_label=other, probabilities=list(reversed(edit.probabilities))
            )
            Item.objects.filter(pk=assignment.item_id).update(gold_label=other)
            after = _fetch_all(client, study)
            CounterfactualEdit.objects.filter(pk=edit.pk).update(
                model_label=edit.model_label, probabilities=edit.probabilities
            )
            Item.objects.filter(pk=assignment.item_id).update(gold_label=gold)
            assert {k: v[0] for k, v in served.items()} == {k: v[0] for k, v in after.items()}
            _answer_current(client, study, assignment)
    assert phases == {"pretest", "test"}
    assert Assignment.objects.filter(participant__study=study, kind="attention").exists()


# --- rationale studies ----------------------------------------------------------------------
# A rationale page names the gold answer (the participant marks the evidence for it) and never
# the model's: no other label anywhere readable, and another model answer changes no byte.


def test_no_rationale_page_reveals_the_models_answer(alice, tmp_path):
    from tests.builders.studies import build_study

    study = build_study(
        alice,
        tmp_path,
        n_dataset_items=12,
        n_items=4,
        items_per_participant=4,
        raters_per_item=1,
        conditions=[ConditionSpec("baseline"), ConditionSpec("ig", ["heatmap", "tokens"])],
        task="rationale",
        name="leak-rationale",
    )
    wrong_seen = 0
    for _ in range(2):  # both arms
        client = Client()
        participant = _enter(client, study)
        while (
            assignment := Assignment.objects.filter(participant=participant, status="active")
            .order_by("position")
            .select_related("item")
            .first()
        ) is not None:
            gold = assignment.item.gold_label
            served = _fetch_all(client, study)
            html = served["page"][0].decode()
            assert f'id="evidence-for">{gold}<' in html
            leaks = _other_labels_named(served, study=study, shown=gold, question=assignment.item.payload["text"])
            assert not leaks, leaks
            prediction = Prediction.objects.get(model=study.model, item=assignment.item)
            wrong_seen += prediction.label != gold
            other = next(label for label in study.model.labels if label not in (gold, prediction.label))
            Prediction.objects.filter(pk=prediction.pk).update(label=other)
            after = _fetch_all(client, study)
            Prediction.objects.filter(pk=prediction.pk).update(label=prediction.label)
            assert {k: v[0] for k, v in served.items()} == {k: v[0] for k, v in after.items()}
            client.post(f"/s/{study.public_id}/item/{assignment.public_id}/", {"mark": ["image:A1"], "confidence": 3})
    assert wrong_seen


# --- rating and preference studies -------------------------------------------------------------
# One explanation of the model's answer (rating) or two, A and B (preference): neither the answer,
# the gold label, nor which arm (or method) drew an explanation may be readable before the answer.

PREFERENCE_ARMS = [
    ConditionSpec(name="baseline"),
    ConditionSpec(name="m_heat", views=["heatmap"]),
    ConditionSpec(name="m_words", views=["tokens", "share"]),
]


@pytest.mark.parametrize("task", ["preference", "rating"])
def test_no_preference_page_reveals_the_answer_or_the_arms(alice, tmp_path, task):
    from tests.builders.studies import build_study

    # The stored explanations are the builder's (real PNGs, inlined as in any study): what is
    # checked is what the page says around them.
    study = build_study(
        alice,
        tmp_path,
        task=task,
        explanation_display="predicted_unlabelled",
        conditions=PREFERENCE_ARMS,
        n_items=4,
        items_per_participant=2,
        raters_per_item=2,
        name=task,
    )
    arms = {arm.name for arm in PREFERENCE_ARMS} | {study.explanation_method}
    client = Client()
    participant = _enter(client, study)
    while (
        assignment := Assignment.objects.filter(participant=participant, status="active")
        .order_by("position")
        .select_related("item")
        .first()
    ) is not None:
        served = _fetch_all(client, study)
        page = served["page"][0]
        if task == "preference":  # both sides are drawn
            assert b'class="view view-heatmap' in page and b'class="tokens"' in page
        else:
            assert b'id="explanation"' in page
        leaks = _leaks(
            served,
            question=assignment.item.payload.get("text", ""),
            candidates=[],
            secrets=_secrets(study, participant, assignment.item) | arms,
            labels=set(study.model.labels),
        )
        assert not leaks, leaks
        answer = {"preferred": "right", "helpfulness": 3, "trust": 3, "understanding": 3, "confidence": 2}
        client.post(f"/s/{study.public_id}/item/{assignment.public_id}/", answer)
    assert participant.responses.count() == 2
