"""Dataset import: validate a JSONL file and its media, then store it all or nothing.

Uploads are bounded (settings ``MMEVAL_UPLOAD_MAX_BYTES``, ``MMEVAL_ZIP_MAX_*``,
``MMEVAL_IMAGE_MAX_PIXELS``): a zip is checked from its directory (member count, each
member's size and compression ratio, the total and its ratio) before a single byte is
extracted, and extraction counts what it writes against the total cap.
"""

from __future__ import annotations

import hashlib
import io
import shutil
import tempfile
import zipfile
from pathlib import Path

from django.conf import settings
from django.db import transaction
from PIL import Image

from annotations.models import Dataset, Item
from mmeval.uploads import mib
from workers.engine.audio import wav_bytes, wav_read
from workers.engine.dataset import (
    AUDIO_MODALITIES,
    IMAGE_MODALITIES,
    DatasetFormatError,
    is_file_modality,
    read_dataset_jsonl,
)

# Members up to this size are exempt from the compression-ratio check.
ZIP_RATIO_FLOOR_BYTES = 2**20


class DatasetImportError(Exception):
    def __init__(self, message: str, errors: list[str] | None = None):
        self.errors = errors or []
        super().__init__(message)


def _store_media(*, source: Path, modality: str, dataset_dir: Path) -> str:
    """Copy one file under a content-hash name. Images are re-encoded as PNG and audio as
    16-bit mono WAV, both without metadata, so neither the name nor EXIF/text chunks can
    carry a label."""
    if modality in IMAGE_MODALITIES:
        with Image.open(source) as img:
            rgb = img.convert("RGB")
        rgb.info = {}  # ICC profiles and text chunks could carry a label
        buffer = io.BytesIO()
        rgb.save(buffer, format="PNG")
        data = buffer.getvalue()
        suffix = ".png"
    elif modality in AUDIO_MODALITIES:
        # Only the samples are kept: WAV LIST/INFO chunks (a title, a comment) could carry a label.
        data = wav_bytes(*wav_read(source))
        suffix = ".wav"
    else:
        data = source.read_bytes()
        suffix = source.suffix.lower()
    name = hashlib.sha256(data).hexdigest()[:32] + suffix
    target = dataset_dir / name
    if not target.exists():
        target.write_bytes(data)
    return str(target.relative_to(settings.MEDIA_ROOT))


def dataset_import(*, owner, name: str, jsonl_path: Path, files_within: Path | None = None) -> Dataset:
    """Import ``jsonl_path`` as dataset ``name``. Raises :class:`DatasetImportError` listing
    every bad line by number; on any error nothing is stored."""
    if Dataset.objects.filter(owner=owner, name=name).exists():
        raise DatasetImportError(f"you already have a dataset named '{name}'")
    try:
        lines = read_dataset_jsonl(
            Path(jsonl_path), files_within=files_within, max_image_pixels=settings.MMEVAL_IMAGE_MAX_PIXELS
        )
    except DatasetFormatError as exc:
        if files_within is None:
            raise DatasetImportError(str(exc), [str(e) for e in exc.errors]) from None
        # An upload's files sit in a temporary folder of the server: name them as in the upload.
        raise DatasetImportError(
            _upload_relative(str(exc), root=files_within),
            [_upload_relative(str(e), root=files_within) for e in exc.errors],
        ) from None
    modalities = sorted(k for k in lines[0].item if k not in ("id", "label"))
    answer_types = {line.answer_type: list(line.choices) for line in lines if line.answer_type}

    staging = Path(tempfile.mkdtemp(prefix="import-", dir=_media_tmp()))
    final_dir: Path | None = None
    try:
        stored = [
            (
                line,
                {
                    m: (
                        _store_media(source=Path(line.item[m]), modality=m, dataset_dir=staging)
                        if is_file_modality(m)
                        else line.item[m]
                    )
                    for m in modalities
                },
            )
            for line in lines
        ]
        with transaction.atomic():
            dataset = Dataset.objects.create(
                owner=owner, name=name, modalities=modalities, answer_types=dict(sorted(answer_types.items()))
            )
            final_dir = Path(settings.MEDIA_ROOT) / "datasets" / str(dataset.pk)
            old_prefix = str(staging.relative_to(settings.MEDIA_ROOT))
            new_prefix = str(final_dir.relative_to(settings.MEDIA_ROOT))
            Item.objects.bulk_create(
                Item(
                    dataset=dataset,
                    external_id=line.id,
                    gold_label=line.item["label"],
                    line_number=line.line,
                    choices=list(line.choices),
                    answer_type=line.answer_type,
                    group=line.group or "",
                    evidence=line.evidence,
                    payload={
                        m: (v.replace(old_prefix, new_prefix, 1) if is_file_modality(m) else v)
                        for m, v in payload.items()
                    },
                )
                for line, payload in stored
            )
            final_dir.parent.mkdir(parents=True, exist_ok=True)
            shutil.rmtree(final_dir, ignore_errors=True)  # left over from a rolled-back import
            shutil.move(str(staging), final_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        if final_dir is not None:
            shutil.rmtree(final_dir, ignore_errors=True)
        raise
    return dataset


def _upload_relative(text: str, *, root: Path) -> str:
    """``text`` with the server's paths under an upload's folder ``root`` made relative to it."""
    for prefix in sorted({str(Path(root).resolve()), str(Path(root))}, key=len, reverse=True):
        text = text.replace(prefix + "/", "").replace(prefix, ".")
    return text


def dataset_import_zip(*, owner, name: str, upload) -> Dataset:
    """Import an uploaded zip holding one ``.jsonl`` file plus the media it names."""
    _upload_size_check(upload=upload)
    with tempfile.TemporaryDirectory(prefix="upload-", dir=_media_tmp()) as tmp:
        root = Path(tmp)
        try:
            with zipfile.ZipFile(upload) as archive:
                for member in archive.namelist():
                    if not (root / member).resolve().is_relative_to(root.resolve()):
                        raise DatasetImportError(f"zip member '{member}' points outside the archive")
                zip_members_check(members=archive.infolist())
                _zip_extract(archive=archive, root=root)
        except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError) as exc:
            raise DatasetImportError(f"the upload is not a readable zip file ({exc})") from None
        jsonl_files = sorted(p for p in root.rglob("*.jsonl") if "__MACOSX" not in p.parts)
        if len(jsonl_files) != 1:
            raise DatasetImportError(f"the zip must hold exactly one .jsonl file, found {len(jsonl_files)}")
        return dataset_import(owner=owner, name=name, jsonl_path=jsonl_files[0], files_within=root)


def dataset_import_jsonl_upload(*, owner, name: str, upload) -> Dataset:
    """Import an uploaded JSONL with inline modalities only (no files)."""
    _upload_size_check(upload=upload)
    with tempfile.TemporaryDirectory(prefix="upload-", dir=_media_tmp()) as tmp:
        path = Path(tmp) / "items.jsonl"
        with open(path, "wb") as fh:
            for chunk in upload.chunks():
                fh.write(chunk)
        return dataset_import(owner=owner, name=name, jsonl_path=path, files_within=Path(tmp))


def _zip_extract(*, archive: zipfile.ZipFile, root: Path) -> None:
    """Write every member under ``root``, counting what is written: the total cap holds while
    extracting too, whatever the directory said (zipfile also stops each member at its
    directory size and checks its CRC)."""
    limit = settings.MMEVAL_ZIP_MAX_TOTAL_BYTES
    written = 0
    for member in archive.infolist():
        target = root / member.filename
        if member.is_dir():
            target.mkdir(parents=True, exist_ok=True)
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        with archive.open(member) as source, open(target, "wb") as sink:
            while chunk := source.read(2**20):
                written += len(chunk)
                if written > limit:
                    raise DatasetImportError(
                        f"the zip unpacks to more than {mib(limit)} in total (MMEVAL_ZIP_MAX_TOTAL_BYTES)"
                    )
                sink.write(chunk)


def zip_members_check(*, members: list[zipfile.ZipInfo]) -> None:
    """Refuse a zip whose directory promises too much: too many members, a member too large
    or compressed suspiciously well (a zip bomb), too much in total, or a total compressed
    suspiciously well (many small members, each under the ratio floor). Reads only the
    directory, so nothing is decompressed."""
    if len(members) > settings.MMEVAL_ZIP_MAX_MEMBERS:
        raise DatasetImportError(
            f"the zip holds {len(members):,} files; the limit is "
            f"{settings.MMEVAL_ZIP_MAX_MEMBERS:,} (MMEVAL_ZIP_MAX_MEMBERS)"
        )
    total = stored = 0
    for member in members:
        size = member.file_size
        if size > settings.MMEVAL_ZIP_MAX_MEMBER_BYTES:
            raise DatasetImportError(
                f"zip member '{member.filename}' unpacks to {mib(size)}; the limit per file is "
                f"{mib(settings.MMEVAL_ZIP_MAX_MEMBER_BYTES)} (MMEVAL_ZIP_MAX_MEMBER_BYTES)"
            )
        # Small files may compress very well (text); only large ones can make a bomb.
        ratio = size / max(member.compress_size, 1)
        if size > ZIP_RATIO_FLOOR_BYTES and ratio > settings.MMEVAL_ZIP_MAX_RATIO:
            raise DatasetImportError(
                f"zip member '{member.filename}' unpacks {ratio:,.0f} times larger than it is "
                f"stored ({mib(member.compress_size)} to {mib(size)}); the limit is "
                f"{settings.MMEVAL_ZIP_MAX_RATIO}x (MMEVAL_ZIP_MAX_RATIO)"
            )
        total += size
        stored += member.compress_size
    if total > settings.MMEVAL_ZIP_MAX_TOTAL_BYTES:
        raise DatasetImportError(
            f"the zip unpacks to {mib(total)} in total; the limit is "
            f"{mib(settings.MMEVAL_ZIP_MAX_TOTAL_BYTES)} (MMEVAL_ZIP_MAX_TOTAL_BYTES)"
        )
    ratio = total / max(stored, 1)
    if total > ZIP_RATIO_FLOOR_BYTES and ratio > settings.MMEVAL_ZIP_MAX_RATIO:
        raise DatasetImportError(
            f"the zip unpacks to {mib(total)}, {ratio:,.0f} times what it stores ({mib(stored)}); "
            f"the limit is {settings.MMEVAL_ZIP_MAX_RATIO}x (MMEVAL_ZIP_MAX_RATIO)"
        )


def _upload_size_check(*, upload) -> None:
    refusal = getattr(upload, "refusal", "")  # mmeval.uploads dropped it while it streamed in
    if refusal:
        raise DatasetImportError(refusal)
    if upload.size > settings.MMEVAL_UPLOAD_MAX_BYTES:
        raise DatasetImportError(
            f"the upload is {mib(upload.size)}, more than the "
            f"{mib(settings.MMEVAL_UPLOAD_MAX_BYTES)} limit (MMEVAL_UPLOAD_MAX_BYTES)"
        )


def _media_tmp() -> Path:
    path = Path(settings.MEDIA_ROOT) / "tmp"
    path.mkdir(parents=True, exist_ok=True)
    return path
