"""Bad input through the real pages and API: NUL bytes in parameters and fields, integers
beyond what a column holds, designs too large to launch. Each is a 400 or a field error with
a message, never a 500, and nothing is stored."""

from __future__ import annotations

import pytest
from django.test import Client
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from annotations.models import Dataset, Participant, RegisteredModel, Study
from annotations.services.datasets import dataset_import
from annotations.services.spec import COUNT_MAX, RATER_SLOTS_MAX, SEED_MAX
from tests.builders.studies import answer_all, build_study, make_model, write_dataset

pytestmark = pytest.mark.django_db

INT_COLUMN_MAX = 2_147_483_647  # Postgres integer


@pytest.fixture
def study(alice, tmp_path):
    return build_study(
        alice, tmp_path, n_dataset_items=8, n_items=4, items_per_participant=2, survey=True, name="inputs"
    )


def _nul_message(response, field: str) -> None:
    assert response.status_code == 400
    assert f"'{field}' contains a NUL byte" in response.content.decode()


# --- NUL bytes -------------------------------------------------------------------------------


def test_nul_in_prolific_pid_is_a_400_and_admits_no_one(study):
    response = Client().get(f"/s/{study.public_id}/?PROLIFIC_PID=p%001&STUDY_ID=s&SESSION_ID=x")

    _nul_message(response, "PROLIFIC_PID")
    assert not Participant.objects.filter(study=study).exists()


def test_nul_in_mturk_worker_id_is_a_400(study):
    response = Client().get(
        f"/s/{study.public_id}/?workerId=W%00&assignmentId=A1&hitId=H1&turkSubmitTo=https://workersandbox.mturk.com"
    )

    _nul_message(response, "workerId")
    assert not Participant.objects.filter(study=study).exists()


def test_nul_in_a_survey_comment_is_a_400_and_the_survey_stays_open(study):
    client = Client()
    assert client.get(f"/s/{study.public_id}/?PROLIFIC_PID=p1&STUDY_ID=s&SESSION_ID=x").status_code == 200
    client.post(f"/s/{study.public_id}/consent/")
    client.post(f"/s/{study.public_id}/instructions/")
    participant = Participant.objects.get(study=study)
    client.get(f"/s/{study.public_id}/item/")  # the first item is served, as in the browser
    answer_all(participant)
    participant.refresh_from_db()
    assert participant.phase == Participant.Phase.SURVEY

    response = client.post(f"/s/{study.public_id}/survey/", {"helpfulness": "4", "comment": "fine\x00"})

    _nul_message(response, "comment")
    participant.refresh_from_db()
    assert (participant.phase, participant.comment) == (Participant.Phase.SURVEY, "")
    assert client.post(f"/s/{study.public_id}/survey/", {"helpfulness": "4", "comment": "fine"}).status_code == 302


def test_nul_in_a_parameter_name_is_a_400(study):
    response = Client().get(f"/s/{study.public_id}/?x%00y=1")

    assert response.status_code == 400
    assert "a query parameter name contains a NUL byte" in response.content.decode()


@pytest.mark.parametrize("charset", ["utf-7", "no-such-charset"])
def test_a_form_in_a_charset_that_cannot_be_read_is_a_400(study, charset):
    client = Client()
    client.get(f"/s/{study.public_id}/?PROLIFIC_PID=p1&STUDY_ID=s&SESSION_ID=x")

    response = client.generic(
        "POST",
        f"/s/{study.public_id}/consent/",
        b"a=%2BAGE-",
        content_type=f"application/x-www-form-urlencoded; charset={charset}",
    )

    assert response.status_code == 400
    assert "charset" in response.content.decode()
    assert not Participant.objects.filter(study=study).exists()


def test_a_multipart_form_in_utf_7_is_a_400(study):
    body = b'--b\r\nContent-Disposition: form-data; name="a"\r\n\r\n+AGE-\r\n--b--\r\n'
    response = Client().post(
        f"/s/{study.public_id}/consent/", data=body, content_type="multipart/form-data; boundary=b; charset=utf-7"
    )

    assert response.status_code == 400


# --- the API -----------------------------------------------------------------------------------


@pytest.fixture
def owned(alice, tmp_path):
    """alice's dataset and model, by name, for specs."""
    dataset_import(owner=alice, name="shapes", jsonl_path=write_dataset(tmp_path / "src", 8))
    make_model(alice, name="fusion")


def _api(user) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.get_or_create(user=user)[0].key}")
    return client


def _spec(**overrides) -> dict:
    spec = {
        "name": "limits",
        "dataset": "shapes",
        "model": "fusion",
        "arms": [{"name": "baseline", "views": []}, {"name": "ig", "views": ["heatmap"]}],
        "items": {"n": 4, "per_participant": 2, "raters_per_item": 2},
    }
    spec.update(overrides)
    return spec


@pytest.mark.parametrize(
    ("overrides", "field", "message"),
    [
        (
            {"items": {"n": 2**31, "per_participant": 2, "raters_per_item": 2}},
            "items.n",
            f"must be at most {COUNT_MAX:,}, got 2,147,483,648",
        ),
        ({"time_limit_minutes": 10**30}, "time_limit_minutes", f"must be at most {COUNT_MAX:,}"),
        ({"quality": {"min_rt_ms": 2**40}}, "quality.min_rt_ms", f"must be at most {COUNT_MAX:,}"),
        ({"seed": 2**63}, "seed", f"must be between -{SEED_MAX:,} and {SEED_MAX:,}"),
        (
            {"items": {"n": 4, "per_participant": 2, "raters_per_item": COUNT_MAX}},
            "items.raters_per_item",
            f"rater slots (items.n x raters_per_item x arms); at most {RATER_SLOTS_MAX:,}",
        ),
        ({"name": "limits\x00"}, "name", "must not contain NUL bytes"),
    ],
)
def test_api_refuses_out_of_range_values_with_the_field(alice, owned, overrides, field, message):
    response = _api(alice).post("/api/studies/", _spec(**overrides), format="json")

    assert response.status_code == 400
    assert response.json()["field"] == field
    assert message in response.json()["detail"]
    assert not Study.objects.exists()


def test_api_accepts_the_largest_values_a_column_holds(alice, owned):
    response = _api(alice).post("/api/studies/", _spec(seed=SEED_MAX, time_limit_minutes=INT_COLUMN_MAX), format="json")

    assert response.status_code == 201, response.json()
    study = Study.objects.get()
    assert (study.seed, study.lease_minutes) == (SEED_MAX, INT_COLUMN_MAX)


# --- the study designer ---------------------------------------------------------------------


@pytest.fixture
def designer(alice, owned):
    """A signed-in client and a valid study-designer form for alice's dataset and model."""
    client = Client()
    client.force_login(alice)
    data = {
        "name": "designed",
        "dataset": Dataset.objects.get(owner=alice).pk,
        "model": RegisteredModel.objects.get(owner=alice).pk,
        "seed": 0,
        "n_items": 4,
        "items_per_participant": 2,
        "raters_per_item": 2,
        "candidate_mode": "top_k",
        "n_candidates": 4,
        "n_distractors": 0,
        "explanation_method": "integrated_gradients",
        "interaction_method": "second_order",
        "explanation_display": "all_candidates",
        "lease_minutes": 60,
        "learning_items": 0,
        "attention_checks": 0,
        "min_rt_ms": 0,
        "survey": "on",
        "arm_0_name": "baseline",
        "arm_1_name": "ig",
        "arm_1_views": ["heatmap"],
    }
    return client, data


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("n_items", 2**31, f"Ensure this value is less than or equal to {COUNT_MAX}."),
        ("lease_minutes", 10**20, f"Ensure this value is less than or equal to {COUNT_MAX}."),
        ("seed", 2**63, f"Ensure this value is less than or equal to {SEED_MAX}."),
        ("raters_per_item", COUNT_MAX, f"at most {RATER_SLOTS_MAX:,}"),
    ],
)
def test_designer_shows_out_of_range_values_next_to_the_field(designer, field, value, message):
    client, data = designer

    response = client.post("/studies/new/", {**data, field: value})

    assert response.status_code == 200
    errors = response.context["form"].errors
    assert field in errors, errors
    assert any(message in error for error in errors[field])
    assert not Study.objects.exists()


def test_designer_with_the_same_fields_in_range_creates_the_study(designer):
    client, data = designer

    response = client.post("/studies/new/", data)

    assert response.status_code == 302, response.context["form"].errors
    assert Study.objects.get().name == "designed"


# --- schema and docs ----------------------------------------------------------------------------


def test_schema_and_docs_need_a_signed_in_user(alice):
    anonymous = Client()
    assert anonymous.get("/api/schema/").status_code == 401
    docs = anonymous.get("/api/docs/")
    assert docs.status_code == 302 and docs["Location"].startswith("/accounts/login/")

    signed_in = Client()
    signed_in.force_login(alice)
    assert signed_in.get("/api/schema/?format=json").json()["openapi"].startswith("3.")
    page = signed_in.get("/api/docs/")
    assert page.status_code == 200
    html = page.content.decode()
    assert "/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js" in html
    assert "cdn" not in html.lower(), "the docs page must not load assets from a CDN"
