"""Limits on dataset uploads: the request body (refused while it streams in, with a form
error), zip members checked from the directory before extraction (size, compression ratio,
total, count), and image pixel counts reported as that line's error. The import stays all
or nothing, every bad line reported with its number."""

from __future__ import annotations

import io
import json
import random
import struct
import zipfile
import zlib
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.files.uploadhandler import FileUploadHandler
from django.test import Client

from annotations.models import Dataset, Item
from annotations.services.datasets import DatasetImportError, dataset_import_jsonl_upload, dataset_import_zip
from tests.builders.studies import png_bytes, write_dataset

pytestmark = pytest.mark.django_db

GIB = 2**30
MIB = 2**20


def _png_header_sized(width: int, height: int) -> bytes:
    """A valid 1-bit greyscale PNG of width x height, all black: small on disk, whatever its
    pixel count."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    row = bytes(1 + (width + 7) // 8)  # filter byte + packed bits
    compressor = zlib.compressobj(9)
    idat = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0))
        + chunk(b"IDAT", idat)
        + chunk(b"IEND", b"")
    )


def _zip(members: dict[str, bytes], *, level: int = 6) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=level) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def _dataset_zip(
    tmp_path: Path, n_items: int = 3, *, extra: dict[str, bytes] | None = None, extra_lines: list[str] | None = None
) -> bytes:
    jsonl = write_dataset(tmp_path / "src", n_items, extra_lines=extra_lines)
    members = {str(p.relative_to(jsonl.parent)): p.read_bytes() for p in jsonl.parent.rglob("*") if p.is_file()}
    return _zip({**members, **(extra or {})})


def _upload(data: bytes, name: str = "data.zip") -> SimpleUploadedFile:
    return SimpleUploadedFile(name, data, content_type="application/zip")


def _assert_nothing_stored(media_root: Path) -> None:
    assert not Dataset.objects.exists() and not Item.objects.exists()
    assert not [p for p in media_root.rglob("*") if p.is_file()], "files were left under MEDIA_ROOT"


@pytest.fixture
def zip_reads(monkeypatch) -> list[str]:
    """Names of the zip members opened for reading (extraction opens each one)."""
    opened: list[str] = []
    original = zipfile.ZipFile.open

    def spy(self, name, mode="r", *args, **kwargs):
        if mode == "r":
            opened.append(getattr(name, "filename", name))
        return original(self, name, mode, *args, **kwargs)

    monkeypatch.setattr(zipfile.ZipFile, "open", spy)
    return opened


# --- zip members, from the directory ------------------------------------------------------------


@pytest.fixture(scope="module")
def zip_bomb() -> bytes:
    """About 1 MiB on disk, one member of 1 GiB of zeros (deflate's best ratio, ~1000:1)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        with archive.open("data/items.bin", "w", force_zip64=True) as member:
            zeros = bytes(MIB)
            for _ in range(GIB // MIB):
                member.write(zeros)
    return buffer.getvalue()


def test_a_1_mib_zip_holding_a_1_gib_member_is_refused_without_extracting(alice, zip_bomb, zip_reads, media_root):
    assert len(zip_bomb) < 1.1 * MIB

    with pytest.raises(DatasetImportError) as refused:
        dataset_import_zip(owner=alice, name="bomb", upload=_upload(zip_bomb))

    assert str(refused.value) == (
        "zip member 'data/items.bin' unpacks to 1,024.0 MiB; the limit per file is "
        "100.0 MiB (MMEVAL_ZIP_MAX_MEMBER_BYTES)"
    )
    assert zip_reads == []
    _assert_nothing_stored(media_root)


def test_a_member_compressed_suspiciously_well_is_refused(alice, tmp_path, zip_reads, media_root):
    data = _dataset_zip(tmp_path, extra={"padding.bin": bytes(8 * MIB)})

    with pytest.raises(
        DatasetImportError,
        match=r"zip member 'padding\.bin' unpacks [\d,]+ times larger than it "
        r"is stored .* the limit is 100x \(MMEVAL_ZIP_MAX_RATIO\)",
    ):
        dataset_import_zip(owner=alice, name="ratio", upload=_upload(data))

    assert zip_reads == []
    _assert_nothing_stored(media_root)


def test_the_total_unpacked_size_is_capped(alice, tmp_path, settings, zip_reads, media_root):
    settings.MMEVAL_ZIP_MAX_TOTAL_BYTES = 3 * MIB
    noise = random.Random(0)
    data = _dataset_zip(tmp_path, extra={f"extra/{k}.bin": noise.randbytes(MIB) for k in range(3)})

    with pytest.raises(
        DatasetImportError,
        match=r"the zip unpacks to 3\.\d MiB in total; the limit is 3\.0 MiB "
        r"\(MMEVAL_ZIP_MAX_TOTAL_BYTES\)",
    ):
        dataset_import_zip(owner=alice, name="total", upload=_upload(data))

    assert zip_reads == []
    _assert_nothing_stored(media_root)


def test_many_small_members_that_compress_too_well_together_are_refused(alice, tmp_path, zip_reads, media_root):
    """Members under the ratio floor each (text compresses well) that together unpack to far
    more than was uploaded: the total ratio is checked too (here 60 x 0.99 MiB of zeros)."""
    zeros = bytes(MIB - 1024)
    data = _dataset_zip(tmp_path, extra={f"pad/{k}.bin": zeros for k in range(60)})
    assert len(data) < MIB

    with pytest.raises(
        DatasetImportError,
        match=r"the zip unpacks to 59\.\d MiB, [\d,]+ times what it stores .* the limit is 100x "
        r"\(MMEVAL_ZIP_MAX_RATIO\)",
    ):
        dataset_import_zip(owner=alice, name="many", upload=_upload(data))

    assert zip_reads == []
    _assert_nothing_stored(media_root)


def test_the_default_total_is_far_below_what_was_imported_before():
    from django.conf import settings

    assert settings.MMEVAL_ZIP_MAX_TOTAL_BYTES <= GIB  # 1,500 members of just under 1 MiB were imported


def test_extraction_stops_at_the_total_on_its_own(alice, tmp_path, settings, monkeypatch, media_root):
    """The total is enforced while the members are written too, not only from the directory:
    with the directory check switched off, extraction still stops at the cap."""
    from annotations.services import datasets

    settings.MMEVAL_ZIP_MAX_TOTAL_BYTES = 2 * MIB
    noise = random.Random(1)
    data = _dataset_zip(tmp_path, extra={f"extra/{k}.bin": noise.randbytes(MIB) for k in range(3)})
    monkeypatch.setattr(datasets, "zip_members_check", lambda **kwargs: None)

    with pytest.raises(
        DatasetImportError, match=r"the zip unpacks to more than 2\.0 MiB in total \(MMEVAL_ZIP_MAX_TOTAL_BYTES\)"
    ):
        dataset_import_zip(owner=alice, name="unchecked", upload=_upload(data))

    _assert_nothing_stored(media_root)


def test_the_number_of_members_is_capped(alice, tmp_path, settings, media_root):
    settings.MMEVAL_ZIP_MAX_MEMBERS = 4
    data = _dataset_zip(tmp_path, n_items=4)  # the JSONL and four images

    with pytest.raises(DatasetImportError, match=r"the zip holds 5 files; the limit is 4 \(MMEVAL_ZIP_MAX_MEMBERS\)"):
        dataset_import_zip(owner=alice, name="many", upload=_upload(data))

    _assert_nothing_stored(media_root)


def test_a_zip_within_every_limit_imports(alice, tmp_path):
    dataset = dataset_import_zip(owner=alice, name="fine", upload=_upload(_dataset_zip(tmp_path, n_items=3)))

    assert dataset.items.count() == 3


def test_an_oversized_jsonl_upload_is_refused(alice, settings, media_root):
    settings.MMEVAL_UPLOAD_MAX_BYTES = 1024
    lines = "\n".join(json.dumps({"id": f"q{k}", "text": "x" * 40, "label": "red"}) for k in range(40))

    with pytest.raises(DatasetImportError, match=r"more than the 0\.0 MiB limit \(MMEVAL_UPLOAD_MAX_BYTES\)"):
        dataset_import_jsonl_upload(owner=alice, name="big", upload=_upload(lines.encode(), "items.jsonl"))

    _assert_nothing_stored(media_root)


# --- image pixel counts ----------------------------------------------------------------------------


def test_a_900_megapixel_png_is_that_lines_error_and_nothing_is_stored(alice, tmp_path, media_root):
    bomb_line = json.dumps({"id": "huge", "image": "images/huge.png", "text": "what colour?", "label": "red"})
    bad_line = json.dumps({"id": "nolabel", "image": "images/red_0.png", "text": "what colour?"})
    data = _dataset_zip(
        tmp_path,
        n_items=2,
        extra={"images/huge.png": _png_header_sized(30_000, 30_000)},
        extra_lines=[bomb_line, bad_line],
    )

    with pytest.raises(DatasetImportError) as refused:
        dataset_import_zip(owner=alice, name="pixels", upload=_upload(data))

    errors = refused.value.errors
    assert len(errors) == 2
    assert errors[0].startswith("line 3: image file '") and errors[0].endswith(
        "huge.png' has 900,000,000 pixels, more than the limit of 40,000,000 pixels"
    )
    assert errors[1] == "line 4: missing field 'label'"
    _assert_nothing_stored(media_root)


def test_an_image_over_the_configured_limit_reports_its_size(alice, tmp_path, settings, media_root):
    settings.MMEVAL_IMAGE_MAX_PIXELS = 1_000
    line = json.dumps({"id": "big", "image": "images/big.png", "text": "what colour?", "label": "red"})
    data = _dataset_zip(tmp_path, n_items=1, extra={"images/big.png": png_bytes(size=(40, 40))}, extra_lines=[line])

    with pytest.raises(DatasetImportError) as refused:
        dataset_import_zip(owner=alice, name="pixels", upload=_upload(data))

    assert [e.split("' ", 1)[1] for e in refused.value.errors] == [
        "has 1,600 pixels (40x40), more than the limit of 1,000 pixels"
    ]
    assert refused.value.errors[0].startswith("line 2: image file '")
    _assert_nothing_stored(media_root)


# --- through the page --------------------------------------------------------------------------------


class RecordingUploadHandler(FileUploadHandler):
    """Stands in for the storing handlers: counts the file bytes that reach it."""

    received: list[int] = []

    def receive_data_chunk(self, raw_data, start):
        RecordingUploadHandler.received.append(len(raw_data))
        return None

    def file_complete(self, file_size):
        return None


@pytest.fixture
def researcher(alice) -> Client:
    client = Client(enforce_csrf_checks=True)
    client.force_login(alice)
    client.get("/datasets/")  # sets the CSRF cookie, as the browser's first visit does
    return client


def _post_dataset(client: Client, name: str, data: bytes, filename: str = "data.zip"):
    return client.post(
        "/datasets/",
        {"csrfmiddlewaretoken": client.cookies["csrftoken"].value, "name": name, "archive": _upload(data, filename)},
    )


def test_an_upload_over_the_cap_is_a_form_error_and_is_never_stored(researcher, settings, media_root):
    settings.MMEVAL_UPLOAD_MAX_BYTES = 256 * 1024
    settings.FILE_UPLOAD_HANDLERS = [
        "mmeval.uploads.CappedUploadHandler",
        "tests.serving.test_upload_limits.RecordingUploadHandler",
    ]
    RecordingUploadHandler.received = []
    data = _zip({"items.bin": random.Random(1).randbytes(MIB)}, level=0)

    response = _post_dataset(researcher, "too-big", data)

    assert response.status_code == 400  # the page again, as the client's error: the CSRF token and the name arrived
    errors = response.context["form"].errors
    assert errors["archive"] == [
        "The upload is 1.0 MiB, more than the 0.2 MiB limit (MMEVAL_UPLOAD_MAX_BYTES); nothing was stored."
    ]
    assert response.context["form"]["name"].value() == "too-big"
    assert RecordingUploadHandler.received == [], "file bytes reached a storing handler"
    _assert_nothing_stored(media_root)


def test_an_upload_under_the_cap_imports(researcher, settings, tmp_path):
    settings.MMEVAL_UPLOAD_MAX_BYTES = 256 * 1024
    data = _dataset_zip(tmp_path, n_items=3)
    assert len(data) < 256 * 1024

    response = _post_dataset(researcher, "small", data)

    assert response.status_code == 302
    assert Dataset.objects.get(name="small").items.count() == 3


def test_a_900_megapixel_png_through_the_page_is_a_line_error_not_a_500(researcher, tmp_path, media_root):
    line = json.dumps({"id": "huge", "image": "images/huge.png", "text": "what colour?", "label": "red"})
    data = _dataset_zip(
        tmp_path, n_items=1, extra={"images/huge.png": _png_header_sized(30_000, 30_000)}, extra_lines=[line]
    )

    response = _post_dataset(researcher, "pixels", data)

    assert response.status_code == 400  # the page again with the line's error: the client's error, not a 500
    errors = response.context["form"].errors["archive"]
    assert any(
        e.startswith("line 2: image file") and "has 900,000,000 pixels, more than the limit of 40,000,000" in e
        for e in errors
    ), errors
    _assert_nothing_stored(media_root)
