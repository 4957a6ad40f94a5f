"""View tests: their own MEDIA_ROOT per test (pages serve real files from it) and a fast
password hasher."""

from __future__ import annotations

from tests.isolation import fast_password_hasher, media_root  # noqa: F401  (autouse fixtures)
