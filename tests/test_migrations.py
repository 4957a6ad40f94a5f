"""The models and the migrations agree: a model change without its migration (an index, a
field) would pass every test on the test database, which Django builds from the models'
migrations, and then be missing on the production database."""

from __future__ import annotations

import io

import pytest
from django.core.management import call_command

pytestmark = pytest.mark.django_db


def test_every_model_change_has_its_migration():
    out = io.StringIO()
    try:
        call_command("makemigrations", "--check", "--dry-run", stdout=out, stderr=out)
    except SystemExit as exc:  # --check exits 1 when a migration is missing
        pytest.fail(f"makemigrations --check exited {exc.code}: {out.getvalue()}")
