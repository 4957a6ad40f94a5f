"""Service tests: every test gets its own MEDIA_ROOT, so stored files can be inspected, and
a fast password hasher (the personas' passwords are never checked here)."""

from __future__ import annotations

from tests.isolation import fast_password_hasher, media_root  # noqa: F401  (autouse fixtures)
