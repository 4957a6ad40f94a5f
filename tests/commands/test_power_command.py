"""``manage.py power``: participants per arm for a stated effect, from a study's answers or from
stated values; refusals are one line."""

from __future__ import annotations

import io
import json

import pytest
from django.core.management import CommandError, call_command

from annotations.models import Study
from tests.builders.answered_study import build_answered_study

pytestmark = pytest.mark.django_db


def _run(*args: str) -> str:
    out = io.StringIO()
    call_command("power", *args, stdout=out)
    return out.getvalue()


def test_from_stated_values_several_designs():
    found = json.loads(
        _run(
            "--baseline-accuracy",
            "0.6",
            "--effect",
            "0.15",
            "--items",
            "20",
            "40",
            "--items-per-participant",
            "10",
            "--simulations",
            "60",
            "--json",
        )
    )
    assert [design["n_items"] for design in found["designs"]] == [20, 40]
    for design in found["designs"]:
        assert design["source"] == "assumed" and design["power"] >= 0.8
        assert design["n_participants_per_arm"] == min(
            point["n_participants_per_arm"] for point in design["curve"] if point["power"] >= 0.8
        )
    text = _run(
        "--baseline-accuracy",
        "0.6",
        "--effect",
        "0.15",
        "--items",
        "20",
        "--items-per-participant",
        "10",
        "--simulations",
        "60",
    )
    assert "gain of 15.0 points" in text and "baseline accuracy 60.0%" in text


def test_a_design_that_cannot_hold_the_participants_says_so():
    """20 items x 3 raters / 5 per participant: arms fill at 12, while 0.15 at a 0.6 baseline
    needs more. The text says so with the numbers to change; the JSON carries the same."""
    args = ["--baseline-accuracy", "0.6", "--effect", "0.15", "--items", "20", "--items-per-participant", "5"]
    args += ["--raters-per-item", "3", "--simulations", "60"]
    found = json.loads(_run(*args, "--json"))
    design = found["designs"][0]
    needed = design["n_participants_per_arm"]
    assert needed > 12 and design["capacity"]["capacity_per_arm"] == 12 and design["capacity"]["capped"]
    assert design["capacity"]["power_at_capacity"] < 0.8
    text = _run(*args)
    assert "With 20 items: The design fills an arm at 12 participants (20 test items x 3 raters per item" in text
    assert f"below the {needed} the power needs" in text
    assert f"at least {-(-needed * 5 // 3)} test items (now 20)" in text
    assert f"at least {-(-needed * 5 // 20)} raters per item (now 3)" in text
    # without --raters-per-item nothing is said about capacity
    assert "fills an arm" not in _run(*args[:-4], "--simulations", "60")


def test_from_a_study_uses_its_answers_and_its_effect_of_interest(alice, tmp_path):
    study = build_answered_study(alice, tmp_path, participants_per_arm=6)
    Study.objects.filter(pk=study.pk).update(
        sequential_monitoring={"spending": "pocock", "looks": [3, 6], "effect_of_interest": 0.25}
    )
    found = json.loads(_run(str(study.pk), "--simulations", "40", "--json"))
    assert found["effect"] == 0.25 and not found["effect_assumed"]
    design = found["designs"][0]
    assert design["source"] == "pilot" and design["items_per_participant"] == study.items_per_participant
    assert design["n_items"] == study.design["n_items"]
    # the study's own raters per item and test items bound its arms
    assert design["capacity"]["capacity_per_arm"] == 8 * study.raters_per_item // study.items_per_participant
    assert found["current_per_arm"] >= 1
    text = _run(str(study.pk), "--simulations", "40", "--items", "8", "16")
    assert "the answers of 'answered' so far" in text
    assert "more)" in text or "not reached" in text


def test_refusals(alice, tmp_path):
    with pytest.raises(CommandError, match="without a study, give --baseline-accuracy"):
        _run("--effect", "0.1")
    with pytest.raises(CommandError, match="strictly between 0 and 1"):
        _run("--baseline-accuracy", "0.95", "--effect", "0.1", "--items", "20", "--items-per-participant", "5")
    from tests.builders.studies import build_study

    quiet = build_study(alice, tmp_path, n_items=4, items_per_participant=2, name="quiet")
    with pytest.raises(CommandError, match="no power analysis: no responses yet"):
        _run(str(quiet.pk))


def test_stated_per_item_chances_set_a_guessing_floor():
    """Chances 1/2 and 1/4 (mean 3/8): a baseline of 11/16 is 1/2 above chance, so β_0 = 0
    (participant and item SD 0: the hand-computed case of tests/analysis/test_chance.py)."""
    args = ["--baseline-accuracy", str(11 / 16), "--effect", "0.1", "--items", "20", "--items-per-participant", "20"]
    args += ["--participant-sd", "0", "--item-sd", "0", "--simulations", "20"]
    found = json.loads(_run(*args, "--chance", "0.5", "0.25", "--json"))
    design = found["designs"][0]
    assert design["chance"] == 0.375 and design["intercept"] == pytest.approx(0.0, abs=1e-9)
    assert "guessing at each item's chance (mean 37.5%)" in _run(*args, "--chance", "0.5", "0.25")
    with pytest.raises(CommandError, match="above chance"):
        _run(*args[:1], "0.3", *args[2:], "--chance", "0.5")
