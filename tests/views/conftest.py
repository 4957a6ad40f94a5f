"""View tests: their own MEDIA_ROOT per test (pages serve real files from it) and a fast
password hasher."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def media_root(settings, tmp_path) -> Path:
    path = tmp_path / "media"
    path.mkdir()
    settings.MEDIA_ROOT = path
    return path


@pytest.fixture(autouse=True)
def fast_password_hasher(settings) -> None:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
