"""The generated SECRET_KEY of a deployment that sets none: one key for every process.

Processes started together (gunicorn workers, Celery workers, beat) must agree on it, or
they cannot read each other's sessions and signed values. Creation is atomic: each process
writes its candidate to a private temporary file and hard-links it into place; a link
never replaces an existing file, so the first writer wins and everyone reads the winner.
No Django import: settings call this while they are being read.
"""

from __future__ import annotations

import os
import secrets
import time
from pathlib import Path


class SecretKeyFileError(RuntimeError):
    pass


def secret_key_load_or_create(*, path: Path) -> str:
    """The key stored at ``path``, created there first if no process has done so yet."""
    path = Path(path)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        _publish_once(path=path, key=secrets.token_urlsafe(50))
    return _read(path=path)


def _publish_once(*, path: Path, key: str) -> None:
    candidate = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(8)}")
    fd = os.open(candidate, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(key)
            fh.flush()
            os.fsync(fh.fileno())
        try:
            os.link(candidate, path)  # atomic, and fails if another process won
        except FileExistsError:
            pass
        except OSError:
            # A filesystem without hard links: O_EXCL still picks one winner, but a reader
            # may briefly see the file before its content (``_read`` waits for it).
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                return
            with os.fdopen(fd, "w") as fh:
                fh.write(key)
    finally:
        candidate.unlink(missing_ok=True)


def _read(*, path: Path) -> str:
    for _ in range(100):
        key = path.read_text().strip()
        if key:
            return key
        time.sleep(0.02)  # only on the O_EXCL fallback: the winner has not written yet
    raise SecretKeyFileError(f"{path} is empty; delete it or set SECRET_KEY")
