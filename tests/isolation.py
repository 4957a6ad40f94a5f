"""Fixtures for tests that run in-process only (no worker subprocess): a MEDIA_ROOT per test,
so stored files can be inspected, and a fast password hasher (passwords are never the point).
Import them into a folder's conftest to switch them on there."""

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
