"""Study specs: the one parser behind the web form and ``launch_study``."""

from __future__ import annotations

import copy
import json

import pytest
from django.core.management import CommandError, call_command

from annotations.models import Condition, RegisteredModel, Study
from annotations.services.datasets import dataset_import
from annotations.services.spec import SpecError, study_spec_load, study_spec_parse
from annotations.services.studies import study_create_from_spec
from tests.builders.studies import make_model, write_dataset

pytestmark = pytest.mark.django_db

FULL = {
    "name": "Does IG help?",
    "dataset": "shapes",
    "model": "toy",
    "seed": 7,
    "arms": [
        {"name": "baseline", "views": []},
        {"name": "ig", "views": ["heatmap", "tokens"]},
        {"name": "inter", "views": ["interaction", "top_pairs", "share"]},
    ],
    "items": {
        "n": 10,
        "per_participant": 4,
        "raters_per_item": 2,
        "filters": {"confidence": [0.2, 1.0], "interaction_strength": [0.1, 0.9]},
    },
    "candidates": {"mode": "top_k", "k": 2, "distractors": 1},
    "explanations": {"method": "saliency", "interaction_method": "perturbation", "display": "predicted_unlabelled"},
    "phases": {"consent": "ok?", "instructions": "do it", "learning_items": 2, "pretest": True, "survey": True},
    "time_limit_minutes": 30,
    "quality": {
        "attention_rate": 0.5,
        "min_rt_ms": 1200,
        "exclusion_rules": {"max_attention_failures": 0, "max_fast_share": 0.5, "screen_out_at_attention_failures": 2},
    },
    "codes": {"completed": "DONE123", "screened_out": "OUT456"},
}


@pytest.fixture
def owned(alice, tmp_path):
    dataset_import(owner=alice, name="shapes", jsonl_path=write_dataset(tmp_path / "src", 16))
    make_model(alice)
    return alice


def test_full_spec_creates_the_study_it_describes(owned):
    spec = study_spec_parse(data=FULL, owner=owned)
    study = study_create_from_spec(owner=owned, spec=spec)

    study.refresh_from_db()
    assert (study.name, study.seed, study.items_per_participant, study.raters_per_item) == ("Does IG help?", 7, 4, 2)
    assert (study.n_candidates, study.n_distractors) == (2, 1)
    assert (study.explanation_method, study.interaction_method) == ("saliency", "perturbation")
    assert study.explanation_display == "predicted_unlabelled"
    assert (study.learning_items, study.pretest, study.survey, study.lease_minutes) == (2, True, True, 30)
    assert (study.attention_checks, study.min_rt_ms) == (2, 1200)  # half of 4 items
    assert study.exclusion_rules == {
        "max_attention_failures": 0,
        "max_fast_share": 0.5,
        "screen_out_at_attention_failures": 2,
    }
    assert (study.completion_code, study.screened_out_code) == ("DONE123", "OUT456")
    assert (study.consent_text, study.instructions) == ("ok?", "do it")
    assert study.design == {"n_items": 10, "filters": {"confidence": [0.2, 1.0], "interaction_strength": [0.1, 0.9]}}
    arms = {c.name: (c.views, c.is_baseline) for c in Condition.objects.filter(study=study)}
    assert arms == {
        "baseline": ([], True),
        "ig": (["heatmap", "tokens"], False),
        "inter": (["interaction", "top_pairs", "share"], False),
    }


def test_minimal_spec_takes_the_defaults(owned):
    spec = study_spec_parse(
        owner=owned,
        data={
            "name": "min",
            "dataset": "shapes",
            "model": "toy",
            "arms": [{"name": "none"}, {"name": "h", "views": "heatmap"}],
            "items": {"n": 4, "per_participant": 2, "raters_per_item": 1},
        },
    )
    study = study_create_from_spec(owner=owned, spec=spec)
    assert (study.n_candidates, study.n_distractors, study.explanation_display) == (4, 0, "all_candidates")
    assert (study.learning_items, study.pretest, study.survey, study.attention_checks) == (0, False, True, 0)
    assert study.exclusion_rules == {}


def _with(path: str, value):
    data = copy.deepcopy(FULL)
    *parents, last = path.split(".")
    node = data
    for key in parents:
        node = node[int(key)] if isinstance(node, list) else node[key]
    if value is _DELETE:
        del node[last]
    elif isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value
    return data


_DELETE = object()


@pytest.mark.parametrize(
    "path, value, field, message",
    [
        ("itmes", {}, "itmes", "unknown field"),
        ("name", _DELETE, "name", "required"),
        ("dataset", "nope", "dataset", "no dataset named 'nope'"),
        ("model", "nope", "model", "no model named 'nope'"),
        ("items.per_participant", "ten", "items.per_participant", "whole number"),
        ("items.per_participant", 11, "items.per_participant", "cannot exceed"),
        ("items.raters_per_item", 0, "items.raters_per_item", ">= 1"),
        ("items.filters.confidence", [0.9, 0.1], "items.filters.confidence", "low <= high"),
        ("items.filters.colour", [0, 1], "items.filters.colour", "unknown field"),
        ("arms", [{"name": "a", "views": ["heatmap"]}, {"name": "b", "views": ["tokens"]}], "arms", "baseline"),
        ("arms.1.views", ["heatmap", "sparkles"], "arms[1].views", "unknown view 'sparkles'"),
        ("arms.1.name", "baseline", "arms", "distinct"),
        ("candidates.mode", "some", "candidates.mode", "unknown value"),
        ("candidates.k", 1, "candidates.distractors", None),  # 1 + 1 distractor is fine …
        ("candidates.distractors", 9, "candidates.distractors", "exceeds the model's 4 labels"),
        ("explanations.method", "magic", "explanations.method", "unknown value 'magic'"),
        ("explanations.interaction_method", "magic", "explanations.interaction_method", "unknown value"),
        ("explanations.display", "some", "explanations.display", "unknown value"),
        ("explanations.attention_method", "magic", "explanations.attention_method", "unknown value 'magic'"),
        ("arms.1.views", ["attention"], "arms[1].views", "has no attention() hook"),
        ("phases.pretest", "maybe", "phases.pretest", "true or false"),
        ("quality.attention_rate", 2, "quality.attention_rate", "between 0 and 1"),
        ("quality.exclusion_rules", {"max_fails": 1}, "quality.exclusion_rules.max_fails", "unknown field"),
        ("quality.exclusion_rules", {"max_fast_share": 3}, "quality.exclusion_rules.max_fast_share", "between 0"),
        (
            "quality.exclusion_rules",
            {"min_test_responses": 1.5},
            "quality.exclusion_rules.min_test_responses",
            "whole number",
        ),
        ("quality.exclusion_rules", {"min_attention_pass_rate": 0.8, "exclude_screened_out": True}, "", None),
        (
            "quality.exclusion_rules",
            {"min_median_client_rt_ms": 800, "max_blur_count": 3, "max_hidden_ms": 30000},
            "",
            None,
        ),
        ("quality.exclusion_rules", {"max_blur_count": 1.5}, "quality.exclusion_rules.max_blur_count", "whole number"),
        ("quality.exclusion_rules", {"max_hidden_ms": -1}, "quality.exclusion_rules.max_hidden_ms", ">= 0"),
        ("codes.screened_out", "DONE123", "codes.screened_out", "must differ"),
        ("codes.completed", "a b", "codes.completed", "letters and digits"),
        ("time_limit_minutes", 0, "time_limit_minutes", ">= 1"),
    ],
)
def test_bad_fields_are_refused_naming_the_field(owned, path, value, field, message):
    data = _with(path, value)
    if message is None:  # a valid variation
        study_spec_parse(data=data, owner=owned)
        return
    with pytest.raises(SpecError) as caught:
        study_spec_parse(data=data, owner=owned)
    assert caught.value.field == field
    assert message in str(caught.value)
    assert str(caught.value).startswith(f"{field}: ")


def test_another_researchers_dataset_is_not_found(owned, charlie):
    with pytest.raises(SpecError) as caught:
        study_spec_parse(data=FULL, owner=charlie)
    assert caught.value.field == "dataset"


def test_launch_study_check_reports_the_bad_field_and_creates_nothing(owned, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "name: x\ndataset: shapes\nmodel: toy\narms:\n  - {name: base}\n  - {name: ig, views: [glitter]}\n"
        "items: {n: 4, per_participant: 2, raters_per_item: 1}\n"
    )
    with pytest.raises(CommandError, match=r"field arms\[1\]\.views: unknown view 'glitter'"):
        call_command("launch_study", str(bad), "--owner", "alice")
    broken = tmp_path / "broken.yaml"
    broken.write_text("name: [unclosed\n")
    with pytest.raises(CommandError, match=r"broken\.yaml: not valid YAML: "):
        call_command("launch_study", str(broken), "--owner", "alice")
    good = tmp_path / "good.json"
    good.write_text(json.dumps(FULL))
    call_command("launch_study", str(good), "--owner", "alice", "--check")
    assert not Study.objects.exists()
    with pytest.raises(CommandError, match="no user named"):
        call_command("launch_study", str(good), "--owner", "nobody")


def test_spec_files_load_as_yaml_or_json(tmp_path):
    (tmp_path / "s.yml").write_text("name: a\nitems: {n: 3}\n")
    (tmp_path / "s.json").write_text('{"name": "a", "items": {"n": 3}}')
    assert study_spec_load(path=tmp_path / "s.yml") == study_spec_load(path=tmp_path / "s.json")
    with pytest.raises(SpecError) as caught:
        study_spec_load(path=tmp_path / "missing.yaml")
    assert caught.value.field == "file"


def test_the_title_participants_see_is_part_of_the_spec(owned):
    spec = study_spec_parse(data={**FULL, "title": "  Guess what the AI answers  "}, owner=owned)
    study = study_create_from_spec(owner=owned, spec=spec)
    assert study.public_title == "Guess what the AI answers"
    assert study.title_for_participants == "Guess what the AI answers"
    bare = study_create_from_spec(owner=owned, spec=study_spec_parse(data={**FULL, "name": "other"}, owner=owned))
    assert bare.public_title == "" and "AI model" in bare.title_for_participants


# --- every view exists or the design is refused ----------------------------------------------


@pytest.fixture
def models_of_every_kind(owned, tmp_path, plants_jsonl):
    """Beside alice's image + text model ``toy``: the plants model (a table and a note, no
    features()), a text-only model, and a table + series + audio model with features()."""
    dataset_import(owner=owned, name="plants", jsonl_path=plants_jsonl)
    make_model(owned, name="plants", modalities=("tabular", "text"))
    RegisteredModel.objects.filter(name="plants").update(capabilities={"features": False})
    make_model(owned, name="words", modalities=("text",))
    make_model(owned, name="triple", modalities=("image", "text", "tabular"))
    make_model(owned, name="featured", modalities=("image", "text"))
    RegisteredModel.objects.filter(name="featured").update(capabilities={"features": True})
    return owned


def _arm(model: str, views: list[str], *, dataset: str = "shapes") -> dict:
    return {
        "name": "views",
        "dataset": dataset,
        "model": model,
        "arms": [{"name": "baseline", "views": []}, {"name": "ig", "views": views}],
        "items": {"n": 4, "per_participant": 2, "raters_per_item": 1},
    }


@pytest.mark.parametrize(
    "model, views, message",
    [
        ("plants", ["heatmap", "tokens"], "arm 'ig' shows 'heatmap', but model 'plants' has no image modality"),
        ("plants", ["interaction"], "arm 'ig' shows 'interaction', but model 'plants' has no image modality"),
        ("plants", ["top_pairs"], "arm 'ig' shows 'top_pairs', but model 'plants' has no image modality"),
        ("plants", ["features"], "arm 'ig' shows 'features', but model 'plants' has no features() method"),
        ("plants", ["table", "prediction"], "arm 'ig' shows 'prediction', but model 'plants' has no features()"),
        ("plants", ["audio"], "arm 'ig' shows 'audio', but model 'plants' has no audio modality"),
        ("toy", ["table"], "arm 'ig' shows 'table', but model 'toy' has no tabular modality"),
        ("toy", ["heatmap", "series"], "arm 'ig' shows 'series', but model 'toy' has no series modality"),
        ("words", ["tokens", "share"], "arm 'ig' shows 'share', but model 'words' has only one modality (text)"),
        ("words", ["heatmap"], "arm 'ig' shows 'heatmap', but model 'words' has no image modality"),
        ("triple", ["interaction"], "model 'triple' has 3 modalities (image, text, tabular); the interaction views"),
    ],
)
def test_an_arm_showing_a_view_its_model_cannot_give_is_refused(models_of_every_kind, model, views, message):
    dataset = "plants" if model == "plants" else "shapes"
    with pytest.raises(SpecError) as caught:
        study_spec_parse(data=_arm(model, views, dataset=dataset), owner=models_of_every_kind)
    assert caught.value.field == "arms[1].views"
    assert message in str(caught.value)


@pytest.mark.parametrize(
    "model, views",
    [
        ("plants", ["table", "tokens", "share"]),
        ("toy", ["heatmap", "tokens", "interaction", "top_pairs", "share"]),
        ("toy", ["features", "prediction"]),  # registered before capabilities were recorded: not known to lack it
        ("featured", ["features", "prediction"]),
        ("words", ["tokens"]),
    ],
)
def test_views_the_model_can_give_are_accepted(models_of_every_kind, model, views):
    dataset = "plants" if model == "plants" else "shapes"
    spec = study_spec_parse(data=_arm(model, views, dataset=dataset), owner=models_of_every_kind)
    assert spec.conditions[1].views == views


def test_launch_study_refuses_a_view_the_model_cannot_give_and_creates_nothing(models_of_every_kind, tmp_path):
    bad = tmp_path / "plants.json"
    bad.write_text(json.dumps(_arm("plants", ["heatmap", "tokens"], dataset="plants")))
    with pytest.raises(
        CommandError, match=r"arms\[1\]\.views: arm 'ig' shows 'heatmap', but model 'plants' has no image modality"
    ):
        call_command("launch_study", str(bad), "--owner", "alice")
    assert not Study.objects.exists()


def test_registration_records_whether_the_adapter_has_features(alice, tmp_path, settings):
    """The designer reads the capability stored at registration, never the adapter: a model
    registered without features() cannot get a MultiViz arm, one with it can."""
    from annotations.services.registry import registered_model_create
    from tests.builders.feature_adapters import planted_items
    from tests.builders.report_adapters import LinearAdapter

    settings.MMEVAL_ADAPTER_PREFIXES = [*settings.MMEVAL_ADAPTER_PREFIXES, "tests."]
    for name, adapter, items in (
        ("with", "feature_adapters:PlantedFeatureAdapter", planted_items(8)),
        ("without", "report_adapters:LinearAdapter", LinearAdapter().make_items(8)),
    ):
        path = tmp_path / f"{name}.jsonl"
        path.write_text("\n".join(json.dumps(item) for item in items) + "\n")
        dataset = dataset_import(owner=alice, name=name, jsonl_path=path)
        registered_model_create(owner=alice, name=name, adapter_path=f"tests.builders.{adapter}", check_dataset=dataset)
    assert RegisteredModel.objects.get(name="with").capabilities == {"features": True, "attention": False}
    assert RegisteredModel.objects.get(name="without").capabilities == {"features": False, "attention": False}

    def spec(model: str) -> dict:
        return dict(_arm(model, ["features", "prediction"], dataset=model), name=f"mv {model}", candidates={"k": 2})

    assert study_spec_parse(data=spec("with"), owner=alice).conditions[1].views == ["features", "prediction"]
    with pytest.raises(SpecError, match=r"arm 'ig' shows 'features', but model 'without' has no features\(\) method"):
        study_spec_parse(data=spec("without"), owner=alice)


def test_modality_names_are_checked_and_stored_with_the_design(owned):
    data = dict(FULL, modality_names={"image": " the  photo ", "text": ""})
    study = study_create_from_spec(owner=owned, spec=study_spec_parse(data=data, owner=owned))
    assert study.design["modality_names"] == {"image": "the photo"}  # blank: the default of its kind
    for names, field, message in (
        (
            {"tabular": "the table"},
            "modality_names.tabular",
            "model 'toy' has no modality 'tabular'; its modalities: image, text",
        ),
        ({"text": "x" * 61}, "modality_names.text", "at most 60 characters"),
        ({"text": 3}, "modality_names.text", "must be text"),
        (["the photo"], "modality_names", "must be a mapping"),
    ):
        with pytest.raises(SpecError) as caught:
            study_spec_parse(data=dict(FULL, name="other", modality_names=names), owner=owned)
        assert caught.value.field == field and message in str(caught.value)
