"""Model reports in the researcher API: create (400 naming the field for bad input), progress, the
finished report, its CSV tables, the schema, and visibility (charlie sees nothing of alice's)."""

from __future__ import annotations

import csv
import io

import pytest
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from annotations.models import ModelReport
from tests.builders.model_reports import FAST_OPTIONS, SLICES, allow_test_adapters, toy  # noqa: F401 (fixtures)
from workers.report_pipeline import model_report_run_inline

pytestmark = [pytest.mark.django_db, pytest.mark.urls("tests.api.urls")]


def _client(user) -> APIClient:
    client = APIClient()
    token, _ = Token.objects.get_or_create(user=user)
    client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    return client


def test_create_follow_and_read_a_report(alice, toy):
    api = _client(alice)
    response = api.post(
        "/api/model-reports/",
        {
            "model": "linear",
            "dataset": "toy",
            "slices": SLICES,
            "options": {**FAST_OPTIONS, "checkpoints": ["epoch-2"]},
        },
        format="json",
    )
    assert response.status_code == 202, response.content
    body = response.json()
    assert (body["status"], body["model"], body["dataset"]) == ("queued", "linear", "toy")
    assert "result" not in body
    report_id = body["id"]
    assert body["links"]["items"].endswith(f"/api/model-reports/{report_id}/items.csv")
    assert api.get(f"/api/model-reports/{report_id}/items.csv").status_code == 409  # not done yet
    # The worker (here: this process) computes it.
    model_report_run_inline(report_id=report_id)
    progress = api.get(f"/api/model-reports/{report_id}/progress/").json()
    assert (progress["status"], progress["fraction"]) == ("done", 1.0)
    report = api.get(f"/api/model-reports/{report_id}/").json()
    assert report["result"] == ModelReport.objects.get(pk=report_id).result
    assert [c["name"] for c in report["result"]["learning"]["checkpoints"]] == ["epoch-2"]
    rows = list(csv.DictReader(io.StringIO(api.get(f"/api/model-reports/{report_id}/slices.csv").content.decode())))
    assert {r["slice"] for r in rows} == {"positive", "unsure"}
    assert [r["id"] for r in api.get("/api/model-reports/").json()] == [report_id]  # not paginated


@pytest.mark.parametrize(
    "body, field, message",
    [
        (
            {"model": "linear", "dataset": "toy", "slices": {"slices": {"s": "label == pos and"}}},
            "slices.s",
            "slices.s, column 17: expected a field name, got 'the end'",
        ),
        (
            {"model": "linear", "dataset": "toy", "options": {"permutations": 0}},
            "options.permutations",
            "options.permutations: must be a whole number >= 1, got 0",
        ),
        (
            {"model": "linear", "dataset": "toy", "options": {"pid_clusters": 1}},
            "options.pid_clusters",
            "options.pid_clusters: must be a whole number >= 2, got 1",
        ),
        (
            {"model": "nope", "dataset": "toy"},
            "model",
            "model: you have no registered model named 'nope'; yours: linear",
        ),
        ({"model": "linear"}, "dataset", "dataset: give the name of one of your datasets"),
        ({"model": "linear", "dataset": "toy", "colour": "red"}, "colour", "unknown field 'colour'"),
    ],
)
def test_bad_requests_name_the_field(alice, toy, body, field, message):
    response = _client(alice).post("/api/model-reports/", body, format="json")
    assert response.status_code == 400
    assert response.json()["field"] == field
    assert response.json()["detail"].startswith(message)
    assert not ModelReport.objects.exists()


def test_others_see_nothing(alice, charlie, toy):
    report_id = (
        _client(alice).post("/api/model-reports/", {"model": "linear", "dataset": "toy"}, format="json").json()["id"]
    )
    api = _client(charlie)
    for url in (
        f"/api/model-reports/{report_id}/",
        f"/api/model-reports/{report_id}/progress/",
        f"/api/model-reports/{report_id}/items.csv",
    ):
        assert api.get(url).status_code == 404, url
    assert api.get("/api/model-reports/").json() == []
    response = api.post("/api/model-reports/", {"model": "linear", "dataset": "toy"}, format="json")
    assert response.status_code == 400 and response.json()["field"] == "model"  # names are per researcher


def test_schema_describes_the_model_report_routes(alice):
    paths = _client(alice).get("/api/schema/?format=json").json()["paths"]
    for path in (
        "/api/model-reports/",
        "/api/model-reports/{id}/",
        "/api/model-reports/{id}/progress/",
        "/api/model-reports/{id}/{table}.csv",
    ):
        assert path in paths, sorted(paths)
    assert "post" in paths["/api/model-reports/"]
