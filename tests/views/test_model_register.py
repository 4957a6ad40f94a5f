"""The Models page's registration: what it refuses without calling it, and a factory stopped at
the time limit, each a one-line error (HTTP 400) with nothing stored."""

from __future__ import annotations

import html

import pytest

from annotations.models import RegisteredModel
from annotations.services.datasets import dataset_import
from tests.builders.studies import write_dataset

pytestmark = pytest.mark.django_db


@pytest.fixture
def page(client, alice, tmp_path, settings):
    settings.MMEVAL_ADAPTER_PREFIXES = [*settings.MMEVAL_ADAPTER_PREFIXES, "tests."]
    dataset = dataset_import(owner=alice, name="d", jsonl_path=write_dataset(tmp_path / "data", 2))
    client.force_login(alice)

    def post(adapter_path: str):
        return client.post("/models/", {"name": "m", "adapter_path": adapter_path, "check_dataset": dataset.pk})

    return post


def test_a_factory_past_the_time_limit_is_one_line_on_the_page(page, settings):
    settings.MMEVAL_REGISTER_TIMEOUT_SECONDS = 2
    response = page("tests.builders.registration_adapters:sleeps")
    assert response.status_code == 400
    text = html.unescape(response.content.decode())
    assert (
        "adapter tests.builders.registration_adapters:sleeps: creating, loading and checking it took longer than "
        "the 2 s registration limit (MMEVAL_REGISTER_TIMEOUT_SECONDS) and was stopped"
    ) in text
    assert "Traceback" not in text and not RegisteredModel.objects.exists()


def test_the_demos_training_function_is_refused_without_being_called(page):
    response = page("workers.engine.demo.model:train_demo_model")
    assert response.status_code == 400
    text = html.unescape(response.content.decode())
    assert (
        "adapter workers.engine.demo.model:train_demo_model: train_demo_model is a function not marked as an "
        "adapter factory; it was not called"
    ) in text
    assert "Traceback" not in text and not RegisteredModel.objects.exists()
