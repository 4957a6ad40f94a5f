"""``manage.py demo --demo tabular``: the plants demo is built end to end, live, with the arms
the README names; a second run reuses everything."""

from __future__ import annotations

import io
import re

import pytest
from django.core.management import call_command
from django.test import Client

from annotations.management.commands.demo import TABULAR_ARMS, TABULAR_STUDY
from annotations.models import Explanation, Study

pytestmark = pytest.mark.django_db(transaction=True)


def test_the_tabular_demo_builds_a_live_study():
    out = io.StringIO()
    call_command("demo", "--demo", "tabular", "--no-serve", "--items", "80", stdout=out)

    study = Study.objects.get(name=TABULAR_STUDY)
    assert study.status == Study.Status.LIVE and "The demo study is live." in out.getvalue()
    assert {c.name: c.views for c in study.conditions.all()} == TABULAR_ARMS
    assert "plant" in study.instructions and "picture" not in study.instructions
    assert study.model.modalities == ["tabular", "text"] and study.dataset.items.count() == 80
    # The demo declares its answer type, so the researcher's pages warn about nothing.
    assert study.dataset.answer_types == {"state": list(study.model.labels)}
    rows = Explanation.objects.filter(model=study.model, method=study.explanation_method)
    assert rows.exists() and all(row.status == "done" and "table" in row.extra_views for row in rows)

    # The researcher's item page shows every candidate's feature bars.
    client = Client()
    client.force_login(study.owner)
    item = study.study_items.first().item
    assert 'id="answers-undeclared"' not in client.get(f"/studies/{study.pk}/").content.decode()
    page = client.get(f"/studies/{study.pk}/items/{item.pk}/").content.decode()
    urls = re.findall(r'class="view view-table" src="([^"]+)"', page)
    assert len(urls) == len(study.model.labels)
    served = client.get(urls[0])
    assert served["Content-Type"] == "image/png" and b"".join(served.streaming_content).startswith(b"\x89PNG")

    call_command("demo", "--demo", "tabular", "--no-serve", stdout=io.StringIO())  # cached: nothing rebuilt
    assert Study.objects.filter(name=TABULAR_STUDY).count() == 1
