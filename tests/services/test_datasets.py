"""Dataset import: all or nothing, every bad line reported at once, and no stored file whose
name or metadata could tell a participant the label."""

from __future__ import annotations

import hashlib
import io
import json
import re
import struct
import zipfile
import zlib
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from PIL import Image

from annotations.models import Dataset, Item
from annotations.services.datasets import DatasetImportError, dataset_import, dataset_import_zip
from tests.builders.studies import LABELS, png_bytes, write_dataset

pytestmark = pytest.mark.django_db


def _png_chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    """(type, body) of every chunk of a PNG, zlib-compressed bodies left as they are."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    chunks, pos = [], 8
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        chunks.append((kind, data[pos + 8 : pos + 8 + length]))
        pos += 12 + length
    return chunks


def _files_under(path: Path) -> list[Path]:
    return [p for p in path.rglob("*") if p.is_file()] if path.exists() else []


def _assert_nothing_stored(media_root: Path) -> None:
    assert Dataset.objects.count() == 0
    assert Item.objects.count() == 0
    assert _files_under(media_root / "datasets") == []
    assert _files_under(media_root / "tmp") == [], "staging files were left behind"


# --- a good file --------------------------------------------------------------------------


def test_good_file_imports_every_item_in_order(alice, tmp_path):
    jsonl = write_dataset(tmp_path / "src", 6)

    dataset = dataset_import(owner=alice, name="shapes", jsonl_path=jsonl)

    assert dataset.owner == alice
    assert dataset.modalities == ["image", "text"]
    items = list(dataset.items.order_by("line_number"))
    assert [i.external_id for i in items] == [f"q{k}" for k in range(6)]
    assert [i.line_number for i in items] == list(range(1, 7))
    assert [i.gold_label for i in items] == [LABELS[k % 4] for k in range(6)]
    assert items[2].payload["text"] == "what colour is square 2?"


def test_stored_media_have_content_hash_names_without_label_or_id(alice, tmp_path, media_root):
    jsonl = write_dataset(tmp_path / "src", 8)

    dataset = dataset_import(owner=alice, name="shapes", jsonl_path=jsonl)

    stored_names = set()
    for item in dataset.items.all():
        relative = item.payload["image"]
        assert not Path(relative).is_absolute()
        path = media_root / relative
        assert path.is_file()
        assert path.parent == media_root / "datasets" / str(dataset.pk)
        data = path.read_bytes()
        # The name is the content hash, nothing else.
        assert path.name == hashlib.sha256(data).hexdigest()[:32] + ".png"
        assert re.fullmatch(r"datasets/\d+/[0-9a-f]{32}\.png", relative), relative
        for label in LABELS:
            assert label not in relative.lower()
        assert item.external_id not in relative
        stored_names.add(path.name)
    assert len(stored_names) == 8
    # The source names carried the label; none survived, and nothing else sits in the folder.
    assert {p.name for p in _files_under(media_root / "datasets")} == stored_names
    assert _files_under(media_root / "tmp") == []


def test_images_are_re_encoded_without_text_chunks(alice, tmp_path, media_root):
    src = tmp_path / "src"
    (src / "images").mkdir(parents=True)
    (src / "images" / "red_cat.png").write_bytes(
        png_bytes((10, 200, 30), text={"Comment": "label=red", "Description": "the answer is red"})
    )
    jsonl = src / "items.jsonl"
    jsonl.write_text(json.dumps({"id": "a", "image": "images/red_cat.png", "text": "q", "label": "red"}) + "\n")
    # The source really carries the label in its metadata.
    with Image.open(src / "images" / "red_cat.png") as source:
        assert source.info["Comment"] == "label=red"

    dataset = dataset_import(owner=alice, name="meta", jsonl_path=jsonl)

    stored = media_root / dataset.items.get().payload["image"]
    data = stored.read_bytes()
    assert b"label=red" not in data and b"the answer is red" not in data
    assert {kind for kind, _ in _png_chunks(data)} <= {b"IHDR", b"IDAT", b"IEND"}
    with Image.open(stored) as img:
        assert "Comment" not in img.info and "Description" not in img.info
        assert img.mode == "RGB"
        assert img.getpixel((3, 3)) == (10, 200, 30)  # the pixels themselves are kept


def test_images_are_re_encoded_without_icc_profile_metadata(alice, tmp_path, media_root):
    """An ICC profile is metadata too: a source whose profile carries the label must not be
    served with it. (iCCP is zlib-compressed, so look inside the decoded image info.)"""
    src = tmp_path / "src"
    (src / "images").mkdir(parents=True)
    (src / "images" / "x.png").write_bytes(png_bytes((10, 200, 30), icc_profile=b"profile: answer=red " * 8))
    jsonl = src / "items.jsonl"
    jsonl.write_text(json.dumps({"id": "a", "image": "images/x.png", "text": "q", "label": "red"}) + "\n")

    dataset = dataset_import(owner=alice, name="icc", jsonl_path=jsonl)

    stored = media_root / dataset.items.get().payload["image"]
    data = stored.read_bytes()
    decoded = b"".join(
        zlib.decompress(body[body.index(b"\0") + 2 :]) for kind, body in _png_chunks(data) if kind == b"iCCP"
    )
    assert b"answer=red" not in decoded
    assert {kind for kind, _ in _png_chunks(data)} <= {b"IHDR", b"IDAT", b"IEND"}


# --- bad files ----------------------------------------------------------------------------


def test_every_bad_line_is_reported_in_one_error_and_nothing_is_stored(alice, tmp_path, media_root):
    src = tmp_path / "src"
    write_dataset(src, 2)  # lines 1-2 are good
    (src / "images" / "broken.png").write_bytes(b"this is not an image at all")
    bad = [
        {"id": "m1", "image": "images/nope.png", "text": "q", "label": "red"},  # 3 missing file
        {"id": "m2", "image": "images/broken.png", "text": "q", "label": "red"},  # 4 unreadable
        {"id": "m3", "image": "images/red_0.png", "text": "q"},  # 5 no label
        {"id": "q0", "image": "images/red_0.png", "text": "q", "label": "red"},  # 6 duplicate of line 1
        '{"id": "m5", "image": ',  # 7 invalid JSON
        {"id": "m6", "image": "images/red_0.png", "text": "q", "caption": "x", "label": "red"},  # 8 extra
        {"id": "m7", "image": "images/red_0.png", "label": "red"},  # 9 missing modality
    ]
    lines = (src / "items.jsonl").read_text().splitlines()
    lines += [b if isinstance(b, str) else json.dumps(b) for b in bad]
    jsonl = src / "items.jsonl"
    jsonl.write_text("\n".join(lines) + "\n")

    with pytest.raises(DatasetImportError) as caught:
        dataset_import(owner=alice, name="bad", jsonl_path=jsonl)

    errors = caught.value.errors
    by_line: dict[int, str] = {}
    for error in errors:
        assert error.startswith("line "), error
        number = int(error.split(":", 1)[0].removeprefix("line "))
        by_line[number] = by_line.get(number, "") + error
    assert sorted(by_line) == [3, 4, 5, 6, 7, 8, 9]
    assert "not found" in by_line[3] and "nope.png" in by_line[3]
    assert "not a readable image" in by_line[4]
    assert "missing field 'label'" in by_line[5]
    assert "duplicate id 'q0'" in by_line[6] and "first on line 1" in by_line[6]
    assert "invalid JSON" in by_line[7]
    assert "unexpected field 'caption'" in by_line[8]
    assert "missing field 'text'" in by_line[9]
    # One error carries them all, and its message names every line.
    message = str(caught.value)
    for number in by_line:
        assert f"line {number}:" in message
    _assert_nothing_stored(media_root)


def test_image_that_verifies_but_cannot_be_decoded_is_reported_by_line(alice, tmp_path, media_root):
    """A PNG whose chunk checksums are right but whose pixel data is garbage passes
    ``Image.verify()``. The import must still report it as a bad line, not crash."""
    src = tmp_path / "src"
    write_dataset(src, 2)
    data = bytearray(png_bytes((1, 2, 3), size=(16, 16)))
    at = data.find(b"IDAT")
    (length,) = struct.unpack(">I", data[at - 4 : at])
    garbage = b"\xff" * length
    data[at + 4 : at + 4 + length] = garbage
    data[at + 4 + length : at + 8 + length] = struct.pack(">I", zlib.crc32(b"IDAT" + garbage) & 0xFFFFFFFF)
    (src / "images" / "corrupt.png").write_bytes(bytes(data))
    with open(src / "items.jsonl", "a") as fh:
        fh.write(json.dumps({"id": "c", "image": "images/corrupt.png", "text": "q", "label": "red"}) + "\n")

    with pytest.raises(DatasetImportError) as caught:
        dataset_import(owner=alice, name="corrupt", jsonl_path=src / "items.jsonl")

    assert any(e.startswith("line 3:") for e in caught.value.errors), caught.value.errors
    _assert_nothing_stored(media_root)


def test_empty_file_is_refused(alice, tmp_path, media_root):
    jsonl = tmp_path / "empty.jsonl"
    jsonl.write_text("\n\n")
    with pytest.raises(DatasetImportError, match="no items"):
        dataset_import(owner=alice, name="empty", jsonl_path=jsonl)
    _assert_nothing_stored(media_root)


def test_duplicate_dataset_name_is_refused_for_the_same_owner_only(alice, bob, tmp_path):
    jsonl = write_dataset(tmp_path / "src", 3)
    first = dataset_import(owner=alice, name="shapes", jsonl_path=jsonl)

    with pytest.raises(DatasetImportError, match="already have a dataset named 'shapes'"):
        dataset_import(owner=alice, name="shapes", jsonl_path=jsonl)

    assert list(Dataset.objects.filter(owner=alice)) == [first]
    assert first.items.count() == 3
    # Another researcher may use the same name.
    assert dataset_import(owner=bob, name="shapes", jsonl_path=jsonl).items.count() == 3


# --- zip uploads ---------------------------------------------------------------------------


def _zip_upload(members: dict[str, bytes], name: str = "upload.zip") -> SimpleUploadedFile:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for member, data in members.items():
            archive.writestr(member, data)
    return SimpleUploadedFile(name, buffer.getvalue(), content_type="application/zip")


def _zip_of_dataset(src: Path, prefix: str = "bundle/") -> dict[str, bytes]:
    return {prefix + str(p.relative_to(src)): p.read_bytes() for p in sorted(src.rglob("*")) if p.is_file()}


def test_zip_upload_imports_the_dataset(alice, tmp_path, media_root):
    src = tmp_path / "src"
    write_dataset(src, 5)

    dataset = dataset_import_zip(owner=alice, name="zipped", upload=_zip_upload(_zip_of_dataset(src)))

    assert dataset.items.count() == 5
    for item in dataset.items.all():
        assert (media_root / item.payload["image"]).is_file()
        assert item.gold_label not in item.payload["image"]
    # The extracted upload is gone; only the dataset's own files remain.
    assert _files_under(media_root / "tmp") == []
    assert len(_files_under(media_root / "datasets")) == 5


@pytest.mark.parametrize("evil", ["../evil.txt", "bundle/../../evil.txt", "/tmp/mmeval-zip-slip-evil.txt"])
def test_zip_slip_member_is_refused(alice, tmp_path, media_root, evil):
    src = tmp_path / "src"
    write_dataset(src, 2)
    members = _zip_of_dataset(src)
    members[evil] = b"pwned"

    with pytest.raises(DatasetImportError, match="outside the archive"):
        dataset_import_zip(owner=alice, name="slip", upload=_zip_upload(members))

    _assert_nothing_stored(media_root)
    assert not (media_root / "evil.txt").exists()
    assert not (media_root.parent / "evil.txt").exists()
    assert not Path("/tmp/mmeval-zip-slip-evil.txt").exists()


def test_zip_whose_jsonl_names_a_file_outside_the_archive_is_refused(alice, tmp_path, media_root):
    """A zip-slip by reference: the uploaded JSONL points at a file on the server outside
    the archive. Importing it would copy server files into the researcher's dataset."""
    secret = tmp_path / "server-secret.png"
    secret.write_bytes(png_bytes((9, 9, 9)))
    line = {"id": "a", "image": str(secret), "text": "q", "label": "red"}
    relative = {"id": "b", "image": "../../../../../../../../" + str(secret).lstrip("/"), "text": "q", "label": "red"}
    upload = _zip_upload({"bundle/items.jsonl": (json.dumps(line) + "\n" + json.dumps(relative) + "\n").encode()})

    with pytest.raises(DatasetImportError):
        dataset_import_zip(owner=alice, name="outside", upload=upload)

    _assert_nothing_stored(media_root)


def test_zip_must_hold_exactly_one_jsonl_and_be_a_zip(alice, tmp_path, media_root):
    src = tmp_path / "src"
    write_dataset(src, 2)
    members = _zip_of_dataset(src)
    members["bundle/other.jsonl"] = members["bundle/items.jsonl"]
    with pytest.raises(DatasetImportError, match="exactly one .jsonl file, found 2"):
        dataset_import_zip(owner=alice, name="two", upload=_zip_upload(members))

    images_only = {k: v for k, v in _zip_of_dataset(src).items() if k.endswith(".png")}
    with pytest.raises(DatasetImportError, match="found 0"):
        dataset_import_zip(owner=alice, name="none", upload=_zip_upload(images_only))

    with pytest.raises(DatasetImportError, match="not a zip"):
        dataset_import_zip(owner=alice, name="junk", upload=SimpleUploadedFile("x.zip", b"definitely not a zip file"))
    _assert_nothing_stored(media_root)


def test_upload_errors_name_files_as_in_the_upload_not_by_server_paths(alice, tmp_path, media_root):
    src = tmp_path / "src"
    write_dataset(src, 2, extra_lines=['{"id": "q9", "image": "images/missing.png", "text": "t", "label": "red"}'])
    with pytest.raises(DatasetImportError) as raised:
        dataset_import_zip(owner=alice, name="zipped", upload=_zip_upload(_zip_of_dataset(src)))
    assert raised.value.errors == ["line 3: image file 'bundle/images/missing.png' not found"]  # as in the zip
    assert str(media_root) not in str(raised.value) and "upload-" not in str(raised.value)


def test_the_upload_page_answers_a_refused_upload_with_400_and_no_server_path(alice, tmp_path, media_root, client):
    src = tmp_path / "src"
    write_dataset(src, 2, extra_lines=['{"id": "q9", "image": "images/missing.png", "text": "t", "label": "red"}'])
    client.force_login(alice)
    response = client.post("/datasets/", {"name": "zipped", "archive": _zip_upload(_zip_of_dataset(src))}, follow=False)
    assert response.status_code == 400
    page = response.content.decode()
    assert "image file &#x27;bundle/images/missing.png&#x27; not found" in page
    assert str(media_root) not in page and "upload-" not in page
    assert not Dataset.objects.filter(name="zipped").exists()


def test_the_plants_table_with_a_row_missing_a_column_is_refused_at_import(alice, tmp_path, media_root):
    """The tabular demo's file with one row short of a measurement and one with a word for a
    number: refused before anything is stored, naming the line and the column (precompute used
    to fail on it with a traceback)."""
    from workers.engine.demo.tabular.data import generate_dataset

    path = generate_dataset(tmp_path / "plants", n_items=6, seed=0)
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    column = sorted(rows[0]["tabular"])[0]
    del rows[2]["tabular"][column]
    rows[4]["tabular"][column] = "dry"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    with pytest.raises(DatasetImportError) as raised:
        dataset_import(owner=alice, name="plants", jsonl_path=path)
    assert raised.value.errors == [
        f"line 3: field 'tabular' lacks column '{column}' that line 1 has",
        f"line 5: field 'tabular' column '{column}' must be a finite number, not \"dry\"",
    ]
    _assert_nothing_stored(media_root)


def test_a_zip_with_answer_types_stores_each_items_valid_answers(alice, tmp_path, media_root):
    """The shapes demo, zipped with its answer_types.json: each item keeps its answer type and
    valid answers, the dataset the declaration as its items use it."""
    from workers.engine.demo import data as shapes

    src = tmp_path / "shapes"
    shapes.generate_dataset(src, n_items=12, seed=0)
    dataset = dataset_import_zip(owner=alice, name="shapes", upload=_zip_upload(_zip_of_dataset(src)))
    items = list(dataset.items.order_by("line_number"))
    assert {item.answer_type for item in items} == {"colour", "shape", "yes-no"}
    for item in items:
        assert item.choices == list(shapes.ANSWER_TYPES[item.answer_type]) and item.gold_label in item.choices
        assert set(item.payload) == {"image", "text"}  # no modality of its own
    assert dataset.answer_types == {key: list(value) for key, value in sorted(shapes.ANSWER_TYPES.items())}


def test_bad_valid_answers_are_reported_by_line_and_nothing_is_stored(alice, tmp_path, media_root):
    src = tmp_path / "bad"
    write_dataset(
        src,
        2,
        extra_lines=[
            json.dumps({"id": "x", "image": "images/red_0.png", "text": "q", "label": "red", "answer_type": "hue"}),
        ],
    )
    with pytest.raises(DatasetImportError) as exc:
        dataset_import(owner=alice, name="bad", jsonl_path=src / "items.jsonl")
    assert exc.value.errors == [
        "line 1: no 'choices' or 'answer_type' (line 3 declares its valid answers, so every line must)",
        "line 2: no 'choices' or 'answer_type' (line 3 declares its valid answers, so every line must)",
        "line 3: answer type 'hue' is not declared: put an answer_types.json beside the JSONL file that maps "
        "each answer type to its answers",
    ]
    assert not Dataset.objects.filter(name="bad").exists() and _files_under(media_root / "datasets") == []


def test_per_item_choices_import_from_a_plain_jsonl(alice, tmp_path):
    src = tmp_path / "choices"
    src.mkdir()
    (src / "items.jsonl").write_text(
        json.dumps({"id": "a", "text": "is it red?", "label": "yes", "choices": ["yes", "no"]})
        + "\n"
        + json.dumps({"id": "b", "text": "which colour?", "label": "red", "choices": ["red", "green", "blue"]})
        + "\n"
    )
    dataset = dataset_import(owner=alice, name="choices", jsonl_path=src / "items.jsonl")
    assert [(i.choices, i.answer_type) for i in dataset.items.order_by("line_number")] == [
        (["yes", "no"], ""),
        (["red", "green", "blue"], ""),
    ]
    assert dataset.answer_types == {} and dataset.modalities == ["text"]


def _with_bias_fields(jsonl: Path, extra: list[dict]) -> Path:
    """``jsonl``'s first two lines, then one line per ``extra`` (each a copy of line 1 with a new
    id and the given fields)."""
    lines = [json.loads(line) for line in jsonl.read_text().splitlines()]
    more = [{**lines[0], "id": f"b{k}", **fields} for k, fields in enumerate(extra)]
    jsonl.write_text("\n".join(json.dumps(line) for line in [*lines[:2], *more]) + "\n")
    return jsonl


def test_group_and_evidence_are_stored_and_reach_the_model_report_only(alice, tmp_path):
    from annotations.selectors.model_reports import dataset_raw_items
    from annotations.selectors.studies import item_raw

    jsonl = _with_bias_fields(
        write_dataset(tmp_path / "src", 2),
        [{"group": "b", "evidence": {"image": ["C4", "D4", "C4"], "text": [0, 3]}}, {"group": 7}],
    )

    dataset = dataset_import(owner=alice, name="biased", jsonl_path=jsonl)

    assert dataset.modalities == ["image", "text"]  # neither field is a modality
    items = {i.external_id: i for i in dataset.items.all()}
    assert (items["b0"].group, items["b0"].evidence) == ("b", {"image": ["C4", "D4"], "text": [0, 3]})
    assert (items["b1"].group, items["b1"].evidence) == ("7", None)
    assert (items["q0"].group, items["q0"].evidence) == ("", None)
    raws = {raw["id"]: raw for raw in dataset_raw_items(dataset=dataset)}
    assert raws["b0"]["group"] == "b" and raws["b0"]["evidence"]["image"] == ["C4", "D4"]
    assert "group" not in raws["q0"] and "evidence" not in raws["q0"]
    # Precompute and the adapter probe read items without them.
    assert "group" not in item_raw(items["b0"]) and "evidence" not in item_raw(items["b0"])


def test_a_mask_image_is_imported_as_its_coverage(alice, tmp_path, media_root):
    """``{"image": "masks/b0.png"}``: the mask's coverage is stored with the item (the file is
    not kept); a missing, unreadable or blank mask, or one outside the upload, is a line error."""
    import base64

    from PIL import Image

    from workers.engine.dataset import MASK_GRID

    jsonl = write_dataset(tmp_path / "src", 2)
    masks = jsonl.parent / "masks"
    masks.mkdir()
    top = Image.new("L", (40, 40), 0)
    top.paste(255, (0, 0, 40, 10))  # the top quarter
    top.save(masks / "top.png")
    Image.new("L", (40, 40), 0).save(masks / "blank.png")
    (masks / "notes.png").write_text("no picture")
    _with_bias_fields(jsonl, [{"evidence": {"image": "masks/top.png", "text": [1]}}])

    dataset = dataset_import(owner=alice, name="masked", jsonl_path=jsonl)
    region = dataset.items.get(external_id="b0").evidence
    assert region["text"] == [1] and region["image"]["mask_grid"] == MASK_GRID
    coverage = base64.b64decode(region["image"]["coverage"])
    rows = [coverage[r * MASK_GRID : (r + 1) * MASK_GRID] for r in range(MASK_GRID)]
    assert all(set(row) == {255} for row in rows[:16]) and all(set(row) == {0} for row in rows[16:])
    mask_bytes = (masks / "top.png").read_bytes()
    assert not [p for p in media_root.rglob("*") if p.is_file() and p.read_bytes() == mask_bytes]

    _with_bias_fields(
        jsonl,
        [
            {"evidence": {"image": "masks/gone.png"}},  # 3
            {"evidence": {"image": "masks/notes.png"}},  # 4
            {"evidence": {"image": "masks/blank.png"}},  # 5
            {"evidence": {"text": "masks/top.png"}},  # 6: a mask only for a picture
        ],
    )
    with pytest.raises(DatasetImportError) as caught:
        dataset_import(owner=alice, name="badmasks", jsonl_path=jsonl, files_within=jsonl.parent)
    by_line = {int(e.split(":", 1)[0].removeprefix("line ")): e for e in caught.value.errors}
    assert sorted(by_line) == [3, 4, 5, 6], caught.value.errors
    assert "mask file" in by_line[3] and "not found" in by_line[3]
    assert "not a readable image" in by_line[4]
    assert "marks no pixel" in by_line[5]
    assert "must be a non-empty list" in by_line[6]


def test_bad_group_and_evidence_are_reported_by_line(alice, tmp_path, media_root):
    jsonl = _with_bias_fields(
        write_dataset(tmp_path / "src", 2),
        [
            {"group": ""},  # 3
            {"group": ["a"]},  # 4
            {"evidence": ["C4"]},  # 5
            {"evidence": {"audio": [1]}},  # 6
            {"evidence": {"image": ["c4"]}},  # 7
            {"evidence": {"text": [-1]}},  # 8
            {"evidence": {"image": []}},  # 9
            {"evidence": {"text": ["what"]}},  # 10
        ],
    )

    with pytest.raises(DatasetImportError) as caught:
        dataset_import(owner=alice, name="bad", jsonl_path=jsonl)

    by_line = {int(e.split(":", 1)[0].removeprefix("line ")): e for e in caught.value.errors}
    assert sorted(by_line) == list(range(3, 11))
    assert "field 'group' must be a non-blank string" in by_line[3]
    assert "field 'group'" in by_line[4]
    assert "field 'evidence' must be an object of modalities to lists" in by_line[5]
    assert "names 'audio', which is no modality of the line" in by_line[6]
    assert '"c4" is no patch cell' in by_line[7]
    assert "-1 is no position" in by_line[8]
    assert "must be a non-empty list" in by_line[9]
    assert '"what" is no position' in by_line[10]
    _assert_nothing_stored(media_root)
