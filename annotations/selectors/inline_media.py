"""Pictures carried inside the participant page itself, as ``data:`` URIs of the stored PNG.

A participant page used to name each of its pictures by URL, and every picture was one more
Django request (seven requests in ten of a participant's walk; docs/BENCHMARKS.md, issue 22).
Inlined, an item page is one request however many candidates and views it shows.

What the page then carries is the stored picture's pixels and nothing else: only the chunks
that draw them are kept (a text, time, EXIF or ICC-profile chunk could hold a name), so the
bytes of two candidates' pictures differ only where their explanations do. A stored file that
is missing or is not a PNG gives ``""``: the page falls back to the picture's URL.

Stored names are never reused for other pixels (precompute writes a new file when it redraws
a view), but the cache is keyed on the file's size and modification time as well, so a file
replaced in place is read again.
"""

from __future__ import annotations

import base64
import os
from collections import OrderedDict
from pathlib import Path
from threading import Lock

from django.conf import settings

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# The chunks that draw the pixels (header, palette, transparency, data, end, and the numeric
# colour-space hints): everything else is dropped.
PNG_PIXEL_CHUNKS = frozenset({b"IHDR", b"PLTE", b"tRNS", b"IDAT", b"IEND", b"gAMA", b"sRGB", b"cHRM", b"sBIT"})
# Data URIs kept per process: about the pictures of a few hundred items (the demo's are 2 to
# 20 kB each), so a study's pages are read from disk once per worker, not on every page.
CACHE_BYTES = 32 * 1024 * 1024

_cache: OrderedDict[tuple[str, int, int], str] = OrderedDict()
_cache_bytes = 0
_cache_lock = Lock()


def png_pixels_only(data: bytes) -> bytes | None:
    """``data`` with only the chunks in ``PNG_PIXEL_CHUNKS``, in their order; None if it is
    not a well-formed PNG (bad signature, a chunk running past the end, no IEND)."""
    if not data.startswith(PNG_SIGNATURE):
        return None
    kept, offset = [PNG_SIGNATURE], len(PNG_SIGNATURE)
    while offset + 12 <= len(data):
        length = int.from_bytes(data[offset : offset + 4], "big")
        end = offset + 12 + length
        if end > len(data):
            return None
        kind = data[offset + 4 : offset + 8]
        if kind in PNG_PIXEL_CHUNKS:
            kept.append(data[offset:end])
        offset = end
        if kind == b"IEND":
            return b"".join(kept)
    return None


def media_data_uri(relative_path: str) -> str:
    """The stored picture at ``relative_path`` (under MEDIA_ROOT) as a ``data:image/png`` URI
    holding its pixel chunks only, or ``""`` when it is missing or not a PNG."""
    global _cache_bytes
    if not relative_path or not relative_path.endswith(".png"):
        return ""
    path = Path(settings.MEDIA_ROOT) / relative_path
    try:
        stat = os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        return ""
    key = (str(path), stat.st_size, stat.st_mtime_ns)
    with _cache_lock:
        if key in _cache:
            _cache.move_to_end(key)
            return _cache[key]
    try:
        pixels = png_pixels_only(path.read_bytes())
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        return ""
    if pixels is None:
        return ""
    uri = "data:image/png;base64," + base64.b64encode(pixels).decode("ascii")
    with _cache_lock:
        if key not in _cache:
            _cache[key] = uri
            _cache_bytes += len(uri)
            while _cache_bytes > CACHE_BYTES and len(_cache) > 1:
                _, dropped = _cache.popitem(last=False)
                _cache_bytes -= len(dropped)
    return uri
