"""Export tests: every test gets its own MEDIA_ROOT and a fast password hasher (as the service
tests, where these tests lived before)."""

from __future__ import annotations

from tests.isolation import fast_password_hasher, media_root  # noqa: F401  (autouse fixtures)
