"""The cap on uploaded bytes (``MMEVAL_UPLOAD_MAX_BYTES``).

A request whose body is larger than the cap keeps its form fields (the CSRF token, the
dataset name), but its files are dropped as they stream in: nothing is stored in memory or
on disk. Each such file arrives as an :class:`OversizedUpload` whose ``refusal`` the form
shows next to the field.
"""

from __future__ import annotations

import io

from django.conf import settings
from django.core.files.uploadedfile import UploadedFile
from django.core.files.uploadhandler import FileUploadHandler, StopFutureHandlers


def mib(n_bytes: int) -> str:
    return f"{n_bytes / 2**20:,.1f} MiB"


class OversizedUpload(UploadedFile):
    """Stands in for a file that was refused: no content, the size the client sent, and the
    reason."""

    def __init__(self, *, name: str, request_bytes: int, limit: int):
        super().__init__(file=io.BytesIO(b""), name=name, content_type="application/octet-stream", size=request_bytes)
        self.refusal = (
            f"the upload is {mib(request_bytes)}, more than the {mib(limit)} limit "
            f"(MMEVAL_UPLOAD_MAX_BYTES); nothing was stored"
        )


class CappedUploadHandler(FileUploadHandler):
    """First in FILE_UPLOAD_HANDLERS: when the request body is over the cap, it takes every
    file itself and throws its bytes away, so the handlers after it never store them."""

    def handle_raw_input(self, input_data, META, content_length, boundary, encoding=None):
        self.request_bytes = content_length
        self.limit = settings.MMEVAL_UPLOAD_MAX_BYTES
        return None  # parse as usual

    def new_file(self, *args, **kwargs):
        super().new_file(*args, **kwargs)
        if self.request_bytes > self.limit:
            raise StopFutureHandlers  # the storing handlers never see this file

    def receive_data_chunk(self, raw_data, start):
        if self.request_bytes > self.limit:
            return None  # dropped
        return raw_data

    def file_complete(self, file_size):
        if self.request_bytes > self.limit:
            return OversizedUpload(name=self.file_name or "upload", request_bytes=self.request_bytes, limit=self.limit)
        return None
