"""Plumbing shared by the management commands: output paths that fail early with one clear
line (before any work), and tracebacks shown only when asked for (``-v 2``, ``--traceback``)."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from django.core.management.base import CommandError


def os_error_text(exc: OSError) -> str:
    """``"Permission denied"``: the operating system's reason, without the ``[Errno 13]`` noise."""
    return exc.strerror or str(exc)


def _file_in_the_way(folder: Path) -> Path | None:
    """The file (not folder) at ``folder`` or at one of its parents, if there is one."""
    for candidate in (folder, *folder.parents):
        if candidate.exists():
            return None if candidate.is_dir() else candidate
    return None


def out_dir_prepare(*, path: Path, option: str = "--out") -> Path:
    """Create the folder ``path`` (and its parents) and prove it writable, so a bad ``--out``
    fails before the work rather than after it. Raises :class:`CommandError`."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise CommandError(f"{option} {path}: is a file, not a folder")
    if (blocker := _file_in_the_way(path)) is not None:
        raise CommandError(f"{option} {path}: cannot write there ({blocker} is a file, not a folder)")
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as exc:
        raise CommandError(f"{option} {path}: cannot write there ({os_error_text(exc)})") from None
    return path


@contextlib.contextmanager
def out_file_write(*, path: Path, option: str = "--out") -> Iterator[IO[str]]:
    """A UTF-8 text stream that becomes ``path`` when the block succeeds: it is opened (with
    its folder created) before the block runs, so a bad ``--out`` fails before the work, and
    a failed run leaves no half-written file and any earlier file intact. Raises
    :class:`CommandError` naming the option, the path and the reason."""
    path = Path(path)
    if path.is_dir():
        raise CommandError(f"{option} {path}: is a folder; give a file name")
    partial = path.with_name(f".{path.name}.partial")
    if (blocker := _file_in_the_way(path.parent)) is not None:
        raise CommandError(f"{option} {path}: cannot write there ({blocker} is a file, not a folder)")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        stream = open(partial, "w", newline="", encoding="utf-8")
    except OSError as exc:
        raise CommandError(f"{option} {path}: cannot write there ({os_error_text(exc)})") from None
    try:
        with stream:
            yield stream
        os.replace(partial, path)
    except OSError as exc:
        raise CommandError(f"{option} {path}: writing failed ({os_error_text(exc)})") from None
    finally:
        partial.unlink(missing_ok=True)


def owner_find(username: str | None):
    """The researcher ``--owner`` names, or the only user there is. Raises :class:`CommandError`."""
    from django.contrib.auth import get_user_model

    users = get_user_model().objects
    if username:
        user = users.filter(username=username).first()
        if user is None:
            raise CommandError(f"no user named {username!r}")
        return user
    if users.count() != 1:
        raise CommandError("give --owner USERNAME: there are several users")
    return users.get()


def traceback_or_hint(*, options: dict, stderr: Any, text: str) -> str:
    """Where the full traceback ``text`` of an error goes: at ``-v 2`` to ``stderr`` now; with
    ``--traceback`` nowhere (Django raises the error, cause chain included). Returns the hint
    to append to the one-line error when neither was asked for."""
    if not text or options.get("traceback"):
        return ""
    if int(options.get("verbosity", 1)) >= 2:
        stderr.write(text.rstrip("\n"))
        return ""
    return " (-v 2 shows the traceback)"
