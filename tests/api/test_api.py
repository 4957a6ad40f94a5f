"""Researcher API: token auth, visibility with three personas (alice owns, bob collaborates,
charlie sees nothing), create from a spec, precompute and launch, progress, analysis, exports,
and the OpenAPI schema."""

from __future__ import annotations

import csv
import io

import pytest
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from annotations.models import PrecomputeJob, Study
from annotations.selectors.exports import study_responses_csv_lines
from tests.builders.answered_study import build_answered_study
from tests.builders.studies import build_study, make_model, write_dataset

pytestmark = [pytest.mark.django_db, pytest.mark.urls("tests.api.urls")]


@pytest.fixture(autouse=True)
def fast_analysis(monkeypatch):
    """The analysis endpoints use the service defaults; fewer resamples keep the tests fast."""
    monkeypatch.setattr("annotations.services.analysis.DEFAULT_RESAMPLES", 200)
    monkeypatch.setattr("annotations.services.analysis.DEFAULT_PERMUTATIONS", 200)


def _client(user) -> APIClient:
    client = APIClient()
    token, _ = Token.objects.get_or_create(user=user)
    client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    return client


@pytest.fixture
def shared(alice, bob, tmp_path):
    """alice's study with responses, shared with bob."""
    study = build_answered_study(alice, tmp_path, participants_per_arm=4)
    study.collaborators.add(bob)
    return study


def test_requests_without_credentials_are_refused(shared):
    client = APIClient()
    assert client.get("/api/studies/").status_code == 401
    assert client.get(f"/api/studies/{shared.pk}/").status_code == 401
    bad = APIClient()
    bad.credentials(HTTP_AUTHORIZATION="Token not-a-token")
    assert bad.get("/api/studies/").status_code == 401


def test_token_endpoint_gives_a_working_token(alice, shared):
    client = APIClient()
    response = client.post("/api/token/", {"username": "alice", "password": "alice-pass-123"}, format="json")
    assert response.status_code == 200
    client.credentials(HTTP_AUTHORIZATION=f"Token {response.json()['token']}")
    assert [s["id"] for s in client.get("/api/studies/").json()] == [shared.pk]
    assert APIClient().post("/api/token/", {"username": "alice", "password": "wrong"}, format="json").status_code == 400


def test_list_shows_own_and_shared_studies_only(alice, bob, charlie, shared, tmp_path):
    own_of_bob = build_study(bob, tmp_path, name="bobs", launch=False)
    own_of_charlie = build_study(charlie, tmp_path, name="charlies", launch=False)

    alice_ids = [s["id"] for s in _client(alice).get("/api/studies/").json()]
    bob_list = _client(bob).get("/api/studies/").json()
    charlie_ids = [s["id"] for s in _client(charlie).get("/api/studies/").json()]

    assert alice_ids == [shared.pk]
    assert sorted(s["id"] for s in bob_list) == sorted([shared.pk, own_of_bob.pk])
    assert {s["id"]: s["is_owner"] for s in bob_list} == {shared.pk: False, own_of_bob.pk: True}
    assert charlie_ids == [own_of_charlie.pk]
    first = next(s for s in bob_list if s["id"] == shared.pk)
    assert first["owner"] == "alice" and {c["name"] for c in first["conditions"]} == {"baseline", "heatmap"}
    assert first["links"]["analysis"].endswith(f"/api/studies/{shared.pk}/analysis/")


PATHS = [
    "",
    "progress/",
    "analysis/",
    "exports/",
    "exports/responses.csv",
    "exports/items.csv",
    "exports/participants.csv",
    "exports/summary.csv",
]


def test_owner_and_collaborator_read_outsider_gets_404(alice, bob, charlie, shared):
    clients = {user.username: _client(user) for user in (alice, bob, charlie)}
    for path in PATHS:
        url = f"/api/studies/{shared.pk}/{path}"
        for name in ("alice", "bob"):
            response = clients[name].get(url)
            assert response.status_code == 200, (name, path, response.content[:200])
        assert clients["charlie"].get(url).status_code == 404, path
        assert clients["charlie"].get(f"/api/studies/{shared.pk + 1000}/{path}").status_code == 404, path


def test_progress_analysis_and_exports_content(bob, shared):
    client = _client(bob)
    progress = client.get(f"/api/studies/{shared.pk}/progress/").json()
    assert progress["status"] == "live" and {c["name"] for c in progress["conditions"]} == {"baseline", "heatmap"}

    analysis = client.get(f"/api/studies/{shared.pk}/analysis/").json()
    assert set(analysis) == {"study", "answer_options", "analysis", "exclusions", "metrics_vs_human", "sequential"}
    # candidates over every label (the builder's dataset declares no valid answers): chance 1/4 per item
    assert analysis["answer_options"]["mean_chance"] == 0.25 and analysis["answer_options"]["warning"]
    assert analysis["analysis"]["all"]["chance"]["pooled"]["chance"] == 0.25
    assert analysis["study"]["baseline"] == "baseline" and analysis["study"]["n_resamples"] == 200
    assert analysis["sequential"] is None and analysis["study"]["sequential_monitoring"] == {}
    assert set(analysis["analysis"]["after_exclusions"]["mixed_model"]["arms"]) == {"heatmap"}
    assert set(analysis["analysis"]["after_exclusions"]["effects"]) == {"heatmap"}
    assert (
        client.get(f"/api/studies/{shared.pk}/analysis/?n_resamples=100&n_permutations=100").json()["study"][
            "n_resamples"
        ]
        == 100
    )
    assert client.get(f"/api/studies/{shared.pk}/analysis/?n_resamples=7").status_code == 400

    links = client.get(f"/api/studies/{shared.pk}/exports/").json()
    assert set(links) == {"responses", "items", "participants", "summary", "codebook"}
    codebook = b"".join(client.get(links["codebook"]).streaming_content).decode("utf-8")
    assert codebook.startswith("export,column,type,unit,meaning\n") and "responses,correct_simulation," in codebook
    response = client.get(links["responses"])
    assert response["Content-Type"].startswith("text/csv")
    assert "attachment" in response["Content-Disposition"]
    body = b"".join(response.streaming_content).decode("utf-8")
    assert body == "".join(study_responses_csv_lines(study=shared))
    assert len(list(csv.DictReader(io.StringIO(body)))) > 0
    assert client.get(f"/api/studies/{shared.pk}/exports/secrets.csv").status_code == 404


def test_a_staged_study_reports_its_stages_in_the_analysis_and_the_summary_csv(bob, shared, monkeypatch):
    """Cumulative arms (MultiViz's stages) put accuracy, confidence and agreement by stage, with
    the increments, into the full report: the API, ``analyze`` and the summary CSV see them."""
    order = ["baseline", "heatmap"]
    monkeypatch.setattr("annotations.services.analysis.study_stage_order", lambda *, study: order)
    client = _client(bob)

    analysis = client.get(f"/api/studies/{shared.pk}/analysis/").json()

    for section in ("all", "after_exclusions"):
        stages = analysis["stages"][section]
        assert [s["arm"] for s in stages["stages"]] == order
        assert [(i["from"], i["to"]) for i in stages["increments"]] == [("baseline", "heatmap")]
    summary = b"".join(client.get(f"/api/studies/{shared.pk}/exports/summary.csv").streaming_content).decode()
    keys = {row["key"] for row in csv.DictReader(io.StringIO(summary))}
    assert any(key.startswith("stages.after_exclusions.increments.0.") for key in keys)


def test_analysis_of_a_study_without_responses_is_409(alice, tmp_path):
    study = build_study(alice, tmp_path, name="empty")
    response = _client(alice).get(f"/api/studies/{study.pk}/analysis/")
    assert response.status_code == 409 and "no responses" in response.json()["detail"]
    assert _client(alice).get(f"/api/studies/{study.pk}/exports/summary.csv").status_code == 409


def _spec(dataset: str, model: str, **overrides) -> dict:
    spec = {
        "name": "from the API",
        "dataset": dataset,
        "model": model,
        "seed": 11,
        "arms": [{"name": "baseline", "views": []}, {"name": "ig", "views": ["heatmap"]}],
        "items": {"n": 6, "per_participant": 3, "raters_per_item": 2},
        "quality": {"min_rt_ms": 800, "exclusion_rules": {"max_attention_failures": 0}},
    }
    spec.update(overrides)
    return spec


def test_create_precompute_and_launch_from_a_spec(alice, bob, charlie, tmp_path):
    from annotations.services.datasets import dataset_import

    dataset_import(owner=alice, name="shapes", jsonl_path=write_dataset(tmp_path / "shapes", 8))
    make_model(alice, name="fusion")
    client = _client(alice)

    response = client.post("/api/studies/", _spec("shapes", "fusion"), format="json")
    assert response.status_code == 201, response.content
    created = response.json()
    study = Study.objects.get(pk=created["id"])
    assert study.owner == alice and study.seed == 11 and study.min_rt_ms == 800
    assert study.exclusion_rules == {"max_attention_failures": 0}
    assert {c["name"]: c["is_baseline"] for c in created["conditions"]} == {"baseline": True, "ig": False}

    bad = client.post(
        "/api/studies/",
        _spec("shapes", "fusion", items={"n": 2, "per_participant": 3, "raters_per_item": 1}),
        format="json",
    )
    assert bad.status_code == 400 and bad.json()["field"] == "items.per_participant"
    assert client.post("/api/studies/", _spec("shapes", "fusion", colour="red"), format="json").status_code == 400
    # the same name but for case and surrounding spaces is the same name
    clash = client.post("/api/studies/", _spec("shapes", "fusion", name="  From The API "), format="json")
    assert clash.status_code == 400 and clash.json()["field"] == "name"
    assert "already have a study named 'From The API' ('from the API'" in clash.json()["detail"]
    # another researcher cannot build on alice's dataset (by name, it is not theirs)
    theirs = _client(charlie).post("/api/studies/", _spec("shapes", "fusion"), format="json")
    assert theirs.status_code == 400 and theirs.json()["field"] == "dataset"

    # launching before precompute is refused; precompute is the owner's
    assert client.post(f"/api/studies/{study.pk}/launch/").status_code == 400
    study.collaborators.add(bob)
    assert _client(bob).post(f"/api/studies/{study.pk}/precompute/").status_code == 403
    assert _client(charlie).post(f"/api/studies/{study.pk}/precompute/").status_code == 404
    started = client.post(f"/api/studies/{study.pk}/precompute/")
    assert started.status_code == 202 and started.json()["status"] == "precomputing"
    assert PrecomputeJob.objects.filter(study=study).count() == 1


def test_a_view_the_model_cannot_give_is_refused_naming_the_arm(alice, tmp_path, plants_jsonl):
    """The plants model has a table and a note, no picture: a heatmap arm is a 400 naming the
    arm and the view, and nothing is created."""
    from annotations.services.datasets import dataset_import

    dataset_import(owner=alice, name="plants", jsonl_path=plants_jsonl)
    from workers.engine.demo.tabular.model import LABELS as PLANT_LABELS

    make_model(alice, name="plants", labels=PLANT_LABELS, modalities=("tabular", "text"))
    arms = [{"name": "baseline", "views": []}, {"name": "ig", "views": ["heatmap", "tokens"]}]

    response = _client(alice).post("/api/studies/", _spec("plants", "plants", arms=arms), format="json")

    assert response.status_code == 400
    assert response.json()["field"] == "arms[1].views"
    assert "arm 'ig' shows 'heatmap', but model 'plants' has no image modality" in response.json()["detail"]
    assert not Study.objects.exists()
    arms[1]["views"] = ["table", "tokens"]
    assert _client(alice).post("/api/studies/", _spec("plants", "plants", arms=arms), format="json").status_code == 201


def test_launch_is_for_the_owner(alice, bob, charlie, tmp_path):
    study = build_study(alice, tmp_path, name="ready", launch=False)
    study.collaborators.add(bob)
    assert _client(charlie).post(f"/api/studies/{study.pk}/launch/").status_code == 404
    assert _client(bob).post(f"/api/studies/{study.pk}/launch/").status_code == 403
    response = _client(alice).post(f"/api/studies/{study.pk}/launch/")
    assert response.status_code == 200 and response.json()["status"] == "live"
    assert _client(alice).post(f"/api/studies/{study.pk}/launch/").status_code == 200  # idempotent


def test_openapi_schema_describes_the_api(alice):
    response = _client(alice).get("/api/schema/?format=json")
    assert response.status_code == 200
    schema = response.json()
    assert schema["openapi"].startswith("3.")
    assert schema["info"]["title"] == "mmeval researcher API"  # one title, from settings
    assert "Authorization: Token" in schema["info"]["description"]
    paths = schema["paths"]
    for path in (
        "/api/studies/",
        "/api/studies/{id}/",
        "/api/studies/{id}/analysis/",
        "/api/studies/{id}/progress/",
        "/api/studies/{id}/exports/",
        "/api/studies/{id}/launch/",
        "/api/studies/{id}/precompute/",
        "/api/token/",
    ):
        assert path in paths, sorted(paths)
    assert "post" in paths["/api/studies/"] and "get" in paths["/api/studies/"]
    assert any("tokenAuth" in scheme for scheme in schema["components"]["securitySchemes"])
