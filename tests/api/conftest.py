"""API tests: a MEDIA_ROOT per test and a fast password hasher (as the service tests)."""

from __future__ import annotations

from tests.isolation import fast_password_hasher, media_root  # noqa: F401  (autouse fixtures)
