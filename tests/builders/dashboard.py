"""For page tests that check what the dashboard shows, not how it gets there: a refresh asked
for by the dashboard runs at once, in the asking thread, instead of after the debounce on a
worker (``annotations.services.dashboard``; its own tests use the real path)."""

from __future__ import annotations

import pytest


@pytest.fixture
def dashboard_computed_at_once(monkeypatch, settings):
    from annotations.services import dashboard

    settings.MMEVAL_DASHBOARD_DEBOUNCE_SECONDS = 0  # every request checks the data version

    def dispatch(*, study_id: int) -> None:
        dashboard.dashboard_refresh_run(study_id=study_id, worker="test")

    monkeypatch.setattr(dashboard, "_dispatch", dispatch)
