"""The sequential-monitoring plan: read from the spec (every route), stored with the study, kept
by an edit that does not mention it, locked at launch like the exclusion rules, and evaluated by
the study's report."""

from __future__ import annotations

import copy

import pytest

from annotations.models import Study
from annotations.selectors.analysis import study_data_version
from annotations.services.analysis import study_report_compute
from annotations.services.spec import SpecError, study_spec_parse
from annotations.services.studies import (
    StudyError,
    study_create_from_spec,
    study_launch,
    study_sequential_monitoring_update,
    study_update_from_spec,
)
from tests.builders.answered_study import build_answered_study
from tests.builders.studies import build_study

from .test_spec import FULL, owned  # noqa: F401  (the fixture)

pytestmark = pytest.mark.django_db

PLAN = {"spending": "obrien_fleming", "alpha": 0.05, "looks": [2, 4], "effect_of_interest": 0.1}


def _spec(**sequential) -> dict:
    data = copy.deepcopy(FULL)
    data["sequential"] = sequential
    return data


def test_the_spec_section_is_stored_and_an_edit_without_it_keeps_it(owned):  # noqa: F811
    study = study_create_from_spec(owner=owned, spec=study_spec_parse(data=_spec(**PLAN), owner=owned))
    study.refresh_from_db()
    assert study.sequential_monitoring == PLAN
    # the web form's spec has no sequential section: editing the design keeps the plan
    study_update_from_spec(study=study, spec=study_spec_parse(data=copy.deepcopy(FULL), owner=owned))
    assert Study.objects.get(pk=study.pk).sequential_monitoring == PLAN
    # an explicit empty section removes it
    study_update_from_spec(study=study, spec=study_spec_parse(data=_spec(), owner=owned))
    assert Study.objects.get(pk=study.pk).sequential_monitoring == {}


@pytest.mark.parametrize(
    ("sequential", "field", "message"),
    [
        ({"spending": "sidak", "looks": [2]}, "sequential.spending", "must be one of"),
        ({"spending": "pocock", "looks": [3, 2]}, "sequential.looks", "must increase"),
        ({"spending": "pocock", "looks": [2], "alpha": 2}, "sequential.alpha", "must be a number"),
        ({"spending": "pocock", "looks": [2], "stop_early": True}, "sequential.stop_early", "unknown field"),
        # 10 items x 2 raters / 4 per participant: room for 5 participants per arm
        ({"spending": "pocock", "looks": [3, 6]}, "sequential.looks", "has room for 5"),
    ],
)
def test_bad_plans_name_the_field(owned, sequential, field, message):  # noqa: F811
    with pytest.raises(SpecError, match=message) as caught:
        study_spec_parse(data=_spec(**sequential), owner=owned)
    assert caught.value.field == field


def test_the_plan_is_locked_once_live(alice, tmp_path):
    study = build_study(alice, tmp_path, launch=False, name="prereg")
    study_sequential_monitoring_update(study=study, plan={"spending": "pocock", "looks": [2, 5]})
    assert Study.objects.get(pk=study.pk).sequential_monitoring == {
        "spending": "pocock",
        "alpha": 0.05,
        "looks": [2, 5],
    }
    with pytest.raises(StudyError, match="has room for 5"):
        study_sequential_monitoring_update(study=study, plan={"spending": "pocock", "looks": [2, 6]})
    study_launch(study=study)
    with pytest.raises(StudyError, match="fixed once the study is live"):
        study_sequential_monitoring_update(study=study, plan={})
    assert Study.objects.get(pk=study.pk).sequential_monitoring["looks"] == [2, 5]


def test_the_report_evaluates_the_plan(alice, tmp_path):
    study = build_answered_study(alice, tmp_path, participants_per_arm=6)
    before = study_data_version(study=study)
    Study.objects.filter(pk=study.pk).update(sequential_monitoring={"spending": "pocock", "looks": [3, 6]})
    study.refresh_from_db()
    assert study_data_version(study=study) != before  # the cached report follows the plan
    report = study_report_compute(study=study, n_resamples=50, n_permutations=50)
    monitoring = report["sequential"]
    assert report["study"]["sequential_monitoring"] == {"spending": "pocock", "looks": [3, 6]}
    assert monitoring["complete_after"] == study.items_per_participant
    # excluded participants do not count towards a look
    kept = report["exclusions"]["per_arm"]
    assert monitoring["participants_per_arm"] == {
        arm: kept[arm]["n_participants"] - kept[arm]["n_excluded"] for arm in ("baseline", "heatmap")
    }
    assert monitoring["looks"][0]["reached"] and not monitoring["looks"][1]["reached"]
    assert "heatmap" in monitoring["looks"][0]["comparisons"]
    Study.objects.filter(pk=study.pk).update(sequential_monitoring={})
    study.refresh_from_db()
    assert study_report_compute(study=study, n_resamples=50, n_permutations=50)["sequential"] is None
