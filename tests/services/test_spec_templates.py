"""The MultiViz spec template: a valid spec whose arms the dashboard recognises as cumulative
stages, in order."""

from __future__ import annotations

import pytest

from annotations.selectors.analysis import study_stage_order
from annotations.services.spec import study_spec_parse
from annotations.services.spec_templates import SPEC_TEMPLATES, multiviz_spec
from annotations.services.studies import study_create_from_spec
from tests.builders.studies import build_study, make_model, write_dataset

pytestmark = pytest.mark.django_db


def test_the_multiviz_template_is_a_staged_study(alice, tmp_path):
    from annotations.services.datasets import dataset_import

    dataset = dataset_import(owner=alice, name="shapes", jsonl_path=write_dataset(tmp_path / "d", 60))
    model = make_model(alice, name="fusion")
    spec = study_spec_parse(data=SPEC_TEMPLATES["multiviz"](name="mv", dataset="shapes", model="fusion"), owner=alice)
    study = study_create_from_spec(owner=alice, spec=spec)

    assert study.model == model and study.dataset == dataset
    assert study_stage_order(study=study) == ["baseline", "U", "U+C", "U+C+R", "U+C+R+P"]
    views = {c.name: c.views for c in study.conditions.all()}
    assert views["U+C+R+P"] == ["heatmap", "tokens", "interaction", "top_pairs", "features", "prediction"]
    assert views["baseline"] == [] and study.conditions.get(name="baseline").is_baseline
    assert "confident" in study.instructions and study.learning_items == 4
    assert multiviz_spec(name="x", dataset="d", model="m")["items"]["n"] == 40


def test_arms_that_are_not_cumulative_have_no_stage_order(alice, tmp_path):
    study = build_study(alice, tmp_path, launch=False)  # baseline + one arm
    assert study_stage_order(study=study) is None


def test_the_yaml_template_is_the_python_template(alice):
    from pathlib import Path

    from annotations.services.spec import study_spec_load

    path = Path(__file__).resolve().parents[2] / "docs" / "specs" / "multiviz.yaml"
    assert study_spec_load(path=path) == multiviz_spec(
        name="MultiViz stages", dataset="YOUR-DATASET", model="YOUR-MODEL"
    )
