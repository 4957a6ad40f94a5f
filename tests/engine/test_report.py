"""The model report against models whose answers are known (workers/engine/report). No Django."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from tests.builders.report_adapters import BitsAdapter, CheckpointedAdapter, LinearAdapter, TextBlindAdapter
from tests.builders.toy_adapters import AdditiveAdapter, BilinearAdapter, NonFiniteAdapter, PairwiseAdapter
from workers.engine.adapter import GroupInfo
from workers.engine.attribution import NonFiniteError
from workers.engine.report.probes import group_names
from workers.engine.report.quantify import (
    STAGES,
    ReportOptions,
    interaction_types,
    model_report_run,
    report_slice_fields,
)
from workers.engine.report.slices import slices_parse
from workers.engine.report.tables import report_table

# The PID's bootstrap solves one convex program per resample (200 by default, most of these
# reports' time); 20 still run every step of it. The PID tests choose their own.
FAST = dict(n_resamples=200, noise_levels=[0.0, 0.5, 1.0], noise_samples=1, permutations=2, pid_resamples=20)


def _loaded(adapter):
    adapter.load(torch.device("cpu"))
    return adapter


def _run(adapter, items, **options):
    return model_report_run(adapter, items, options=ReportOptions(**{**FAST, **options}))


def test_text_blind_model_relies_on_the_image_only():
    adapter = _loaded(TextBlindAdapter())
    items = adapter.make_items(30, seed=1)
    report = _run(adapter, items)
    text = report["reliance"]
    assert text["baseline"]["text"]["agreement"]["estimate"] == 1.0
    assert text["baseline"]["text"]["reliance"]["estimate"] == 0.0
    assert text["permutation"]["text"]["reliance"]["estimate"] == 0.0
    assert text["share"]["text"]["max"] == 0.0 and text["share"]["text"]["min"] == 0.0
    assert text["share"]["image"]["min"] == 1.0
    assert text["dividend"]["image+text"]["max"] == 0.0 and text["dividend"]["image+text"]["min"] == 0.0
    # Without the image every logit is 0 and the answer is the first class, "red": the answers of
    # the 20 items showing a green or blue prototype change.
    assert text["baseline"]["image"]["reliance"]["estimate"] == pytest.approx(20 / 30)
    assert report["interactions"]["types"]["counts"] == {
        "dominance": 30,
        "conflict": 0,
        "complementarity": 0,
        "none": 0,
    }
    assert report["interactions"]["types"]["dominant"] == {"image": 30, "text": 0}
    assert all(row["interaction"] == "dominance" and row["dominant"] == "image" for row in report["items"])
    assert report["interactions"]["emap"]["emap_gap"] == 0.0
    assert report["interactions"]["emap"]["gap"]["ci_low"] == 0.0 == report["interactions"]["emap"]["gap"]["ci_high"]
    assert report["summary"]["accuracy"]["estimate"] == pytest.approx(24 / 30)  # every fifth gold label differs
    json.dumps(report, allow_nan=False)


def test_share_by_a_captum_method_agrees_with_the_exact_shapley_share_on_a_linear_model():
    adapter = _loaded(LinearAdapter())
    items = adapter.make_items(12, seed=2)
    exact = _run(adapter, items, emap=False, group_pairs="")
    by_ig = _run(adapter, items, emap=False, group_pairs="", share_method="integrated_gradients")
    for m in ("a", "b"):  # on a linear model IG is the exact Shapley value
        assert [row[f"share:{m}"] for row in by_ig["items"]] == pytest.approx(
            [row[f"share:{m}"] for row in exact["items"]], abs=1e-9
        )
    assert by_ig["reliance"]["share_method"] == "integrated_gradients"


def test_items_without_a_known_gold_label_count_for_agreement_not_accuracy():
    adapter = _loaded(TextBlindAdapter())
    items = adapter.make_items(30, seed=1)
    for item in items[:10]:
        item["label"] = "unlabelled"
    report = _run(adapter, items, emap=False, group_pairs="", noise_levels=[0.0, 0.01])
    labelled = [row for row in report["items"] if row["correct"] is not None]
    assert report["summary"]["n_labelled"] == len(labelled) == 20
    assert report["summary"]["accuracy"]["estimate"] == pytest.approx(sum(r["correct"] for r in labelled) / 20)
    noise = report["robustness"]["noise"]["curves"]["image"]
    assert noise["accuracy"][0] == report["summary"]["accuracy"]["estimate"]
    assert noise["accuracy"][1] == pytest.approx(noise["accuracy"][0])  # a little noise changes no answer here
    assert report["reliance"]["baseline"]["text"]["agreement"]["n"] == 30


def test_additive_model_has_no_complementarity_or_conflict():
    adapter = _loaded(AdditiveAdapter())
    items = adapter.make_items(60, seed=3)
    report = _run(adapter, items)
    counts = report["interactions"]["types"]["counts"]
    assert counts["complementarity"] == 0 and counts["conflict"] == 0
    assert counts["dominance"] + counts["none"] == 60
    dividend = report["reliance"]["dividend"]["a+b"]
    assert max(abs(dividend["min"]), abs(dividend["max"])) < 1e-9
    assert report["interactions"]["strength"]["a+b"]["max"] < 1e-9
    assert report["interactions"]["emap"]["emap_gap"] == 0.0
    assert all(pair["mean_abs"] < 1e-9 for pair in report["interactions"]["group_pairs"]["top"])


@pytest.mark.parametrize("method", ["second_order", "perturbation"])
def test_known_pairwise_term_is_the_top_group_pair(method):
    adapter = _loaded(PairwiseAdapter())
    items = adapter.make_items(25, seed=4)
    report = _run(adapter, items, group_pairs=method)
    top = report["interactions"]["group_pairs"]["top"]
    assert (top[0]["a"], top[0]["b"]) == (f"a[{PairwiseAdapter.G_STAR}]", f"b[{PairwiseAdapter.H_STAR}]")
    assert top[0]["n"] == 25
    assert all(pair["mean_abs"] < 1e-9 for pair in top[1:])  # only that pair interacts


def test_known_modality_pair_is_found_among_three():
    adapter = _loaded(BilinearAdapter(third=True))
    items = adapter.make_items(30, seed=5)
    report = _run(adapter, items, emap=False, group_pairs="")
    strength = report["interactions"]["strength"]
    assert strength["a+b"]["mean"] > 0.3
    assert strength["a+c"]["max"] < 1e-9 and strength["b+c"]["max"] < 1e-9
    dividends = report["reliance"]["dividend"]
    assert max(abs(dividends["a+c"]["min"]), abs(dividends["a+c"]["max"])) < 1e-9
    assert report["interactions"]["emap"] == {"skipped": "not requested"}
    assert report["interactions"]["group_pairs"] == {"skipped": "not requested"}


def test_linear_classifier_accuracy_under_noise_follows_the_closed_form():
    adapter = _loaded(LinearAdapter())
    items = adapter.make_items(300, seed=6)
    levels = [0.0, 0.25, 0.5, 1.0, 2.0]
    report = _run(adapter, items, noise_levels=levels, noise_samples=100, permutations=1, emap=False, group_pairs="")
    noise = report["robustness"]["noise"]
    sigma = noise["sigma"]
    a_values = np.array([item["a"] for item in items])
    assert sigma["a"][1] == pytest.approx(0.25 * a_values.std())  # scaled to the modality's spread
    for k, _level in enumerate(levels):
        expected_a = adapter.expected_accuracy(items, sigma_a=sigma["a"][k], sigma_b=0.0)
        expected_all = adapter.expected_accuracy(items, sigma_a=sigma["a"][k], sigma_b=sigma["b"][k])
        # 30,000 noise draws per level: the Monte Carlo error is below 0.003
        assert noise["curves"]["a"]["accuracy"][k] == pytest.approx(expected_a, abs=0.02)
        assert noise["curves"]["all"]["accuracy"][k] == pytest.approx(expected_all, abs=0.02)
    assert noise["curves"]["a"]["accuracy"][-1] < noise["curves"]["a"]["accuracy"][0] - 0.1
    curve = noise["curves"]["a"]["accuracy"]
    x = np.array(levels) / levels[-1]
    area = float(np.sum((np.array(curve[1:]) + curve[:-1]) * np.diff(x) / 2))
    assert noise["curves"]["a"]["relative"] == pytest.approx(area)
    reference = noise["curves"]["all"]["accuracy"]
    assert noise["curves"]["a"]["effective"] == pytest.approx(
        sum(f - (r + curve[0] - reference[0]) for f, r in zip(curve, reference))
    )
    assert noise["curves"]["all"]["effective"] == pytest.approx(0.0)


def test_learning_section_reports_a_broken_checkpoint_and_continues():
    adapter = _loaded(CheckpointedAdapter())
    items = adapter.make_items(40, seed=7)
    report = _run(adapter, items, checkpoints=["all"], emap=False, group_pairs="")
    learning = report["learning"]
    assert [c["name"] for c in learning["checkpoints"]] == ["epoch-1", "epoch-2", "epoch-3"]
    assert learning["failed"] == [
        {"name": "broken", "error": "OSError: checkpoint file broken.pt is truncated (deliberate test failure)"}
    ]
    assert learning["training_items"] == 60
    # The full model's validation loss at epoch 3, by hand.
    final = CheckpointedAdapter()
    total = 0.0
    for item in items:
        s = float(
            final.score(torch.tensor([item["a"]], dtype=torch.float64), torch.tensor([item["b"]], dtype=torch.float64))[
                0
            ]
        )
        log_pos, log_neg = -math.log1p(math.exp(-s)), -math.log1p(math.exp(s))
        total -= log_pos if item["label"] == "pos" else log_neg
    assert learning["checkpoints"][2]["losses"]["val"]["full"] == pytest.approx(total / len(items))
    first, second = learning["intervals"][0]["heads"]["full"], learning["checkpoints"][:2]
    delta_o = (second[1]["losses"]["val"]["full"] - second[1]["losses"]["train"]["full"]) - (
        second[0]["losses"]["val"]["full"] - second[0]["losses"]["train"]["full"]
    )
    delta_g = second[0]["losses"]["val"]["full"] - second[1]["losses"]["val"]["full"]
    assert first["delta_o"] == pytest.approx(delta_o) and first["ogr"] == pytest.approx(delta_o / delta_g)
    assert set(learning["intervals"][0]["heads"]) == {"full", "a", "b"}
    assert learning["overall"]["from"] == "epoch-1" and learning["overall"]["to"] == "epoch-3"


def test_unknown_checkpoint_name_is_reported_and_the_rest_continue():
    adapter = _loaded(CheckpointedAdapter())
    report = _run(
        adapter,
        adapter.make_items(20, seed=8),
        checkpoints=["epoch-1", "epoch-9", "epoch-3"],
        emap=False,
        group_pairs="",
    )
    assert [c["name"] for c in report["learning"]["checkpoints"]] == ["epoch-1", "epoch-3"]
    assert report["learning"]["failed"][0]["name"] == "epoch-9"
    assert "epoch-1, epoch-2, broken, epoch-3" in report["learning"]["failed"][0]["error"]


def test_corruption_hook_curves_and_a_refused_modality():
    adapter = _loaded(CheckpointedAdapter())
    items = adapter.make_items(30, seed=9)
    report = _run(adapter, items, corruption_levels=[0.0, 0.5, 1.0], emap=False, group_pairs="")
    corruption = report["robustness"]["corruption"]
    assert set(corruption["curves"]) == {"a"}
    assert "no corruption for 'b'" in corruption["errors"]["b"]
    # a * (1 - 1) = 0: the model answers from b alone, as when a is at its baseline (0)
    assert corruption["curves"]["a"]["accuracy"][-1] == pytest.approx(
        report["reliance"]["baseline"]["a"]["accuracy"]["estimate"]
    )


def test_adapter_without_hooks_skips_those_sections():
    adapter = _loaded(AdditiveAdapter())
    report = _run(adapter, adapter.make_items(10, seed=2), checkpoints=["all"])
    assert report["learning"] == {
        "skipped": "the adapter does not list checkpoints (checkpoints() and load_checkpoint())"
    }
    assert report["robustness"]["corruption"] == {"skipped": "the adapter has no corrupt() hook"}


def test_stages_resume_from_saved_state_without_running_the_model():
    adapter = _loaded(PairwiseAdapter())
    items = adapter.make_items(12, seed=10)
    saved = {}
    first = model_report_run(
        adapter,
        items,
        options=ReportOptions(**FAST),
        on_stage=lambda stage, state: saved.update(json.loads(json.dumps(state))),
    )
    assert [s for s in STAGES if s in saved] == list(STAGES)
    adapter.reset_counts()
    second = model_report_run(adapter, items, options=ReportOptions(**FAST), state=saved)
    assert adapter.head_calls == 0
    first.pop("timing"), second.pop("timing")
    assert json.dumps(first, sort_keys=True) == json.dumps(second, sort_keys=True)


def test_report_is_reproducible_for_a_seed():
    adapter = _loaded(PairwiseAdapter())
    items = adapter.make_items(15, seed=11)
    one, two = _run(adapter, items, seed=3), _run(adapter, items, seed=3)
    one.pop("timing"), two.pop("timing")
    assert one == two


def test_slices_compare_against_the_rest_with_intervals():
    adapter = _loaded(TextBlindAdapter())
    items = adapter.make_items(30, seed=1)
    slices = slices_parse(
        {"slices": {"gold_red": "label == red", "wrong": "not correct"}}, fields=report_slice_fields(adapter.modalities)
    )
    report = model_report_run(adapter, items, options=ReportOptions(**FAST), slices=slices)
    by_name = {s["name"]: s for s in report["slices"]}
    wrong = by_name["wrong"]
    assert wrong["n"] == 6 and wrong["n_rest"] == 24
    correct = wrong["stats"]["correct"]
    assert correct["slice"]["estimate"] == 0.0 and correct["rest"]["estimate"] == 1.0
    assert correct["difference"] == {"estimate": -1.0, "ci_low": -1.0, "ci_high": -1.0, "n": 30}
    red = by_name["gold_red"]
    assert red["item_ids"] == [item["id"] for item in items if item["label"] == "red"]
    share = red["stats"]["share:image"]["slice"]
    assert share["ci_low"] <= share["estimate"] <= share["ci_high"]


def test_bad_options_name_the_option():
    adapter = _loaded(AdditiveAdapter())
    items = adapter.make_items(4)
    with pytest.raises(ValueError, match=r"options\.noise_levels: must start at 0"):
        _run(adapter, items, noise_levels=[0.5, 1.0])
    with pytest.raises(ValueError, match=r"options\.pair: unknown modality 'c'"):
        _run(adapter, items, pair=["a", "c"])
    with pytest.raises(ValueError, match=r"options\.colour: unknown option"):
        ReportOptions.from_json({"colour": "red"})
    with pytest.raises(ValueError, match=r"options\.group_pairs"):
        _run(adapter, items, group_pairs="magic")


def test_options_module_knows_every_attribution_method():
    from workers.engine.attribution import METHODS
    from workers.engine.report.options import SHARE_METHODS

    assert SHARE_METHODS == ("shapley", *METHODS)


def test_non_finite_logits_stop_the_report_naming_the_items_by_id_not_batch_position():
    adapter = _loaded(NonFiniteAdapter("nan"))
    items = adapter.make_items(5)
    items[3]["poison"] = True  # position 1 of the second batch of two
    with pytest.raises(NonFiniteError) as raised:
        _run(adapter, items, batch_size=2)
    assert str(raised.value).startswith("item(s) 'it3': adapter.head returned NaN/Inf logits")
    assert "batch item" not in str(raised.value)


def test_non_finite_logits_name_the_dataset_line_when_the_caller_knows_it():
    adapter = _loaded(NonFiniteAdapter("inf"))
    items = adapter.make_items(5)
    items[3]["poison"] = True
    lines = {item["id"]: 2 * k + 3 for k, item in enumerate(items)}  # blank lines between items
    with pytest.raises(NonFiniteError) as raised:
        model_report_run(adapter, items, options=ReportOptions(**FAST, batch_size=2), item_lines=lines)
    assert str(raised.value).startswith("item(s) 'it3' (line 9): adapter.head returned NaN/Inf logits")


class _NanOnlyWhenPermuted(NonFiniteAdapter):
    """Finite on every item as it is; NaN when a poisoned item's ``b`` is paired with another
    item's ``a`` (the permutation stage), so the error comes from a later stage's own batches."""

    def context(self, items):
        return {
            "poison": torch.tensor([bool(item.get("poison")) and item.get("b") != item.get("b_own") for item in items])
        }


def test_a_later_stage_names_the_item_too():
    adapter = _loaded(_NanOnlyWhenPermuted("nan"))
    items = adapter.make_items(6)
    for item in items:
        item["b_own"] = item["b"]
    items[4]["poison"] = True
    with pytest.raises(NonFiniteError) as raised:
        model_report_run(adapter, items, options=ReportOptions(**FAST, batch_size=4), item_lines={"it4": 12})
    assert str(raised.value).startswith("item(s) 'it4' (line 12): adapter.head returned NaN/Inf logits")
    assert "permuted" in str(raised.value)


def test_interaction_types_by_hand():
    # Four items, two modalities ("x", "y"), three classes; probabilities chosen to hit each rule.
    full = np.array([[0.8, 0.1, 0.1], [0.1, 0.8, 0.1], [0.1, 0.1, 0.8], [0.1, 0.8, 0.1]])
    none = np.full((4, 3), 1 / 3)
    only = np.array(
        [
            # x: gives item 0's answer; points to class 0 on item 1 and to class 0 on item 2; flat on item 3
            [[0.6, 0.2, 0.2], [0.5, 0.25, 0.25], [0.4, 0.3, 0.3], [1 / 3, 1 / 3, 1 / 3]],
            # y: flat on item 0; points to class 2 on item 1, to class 0 on item 2; flat on item 3
            [[1 / 3, 1 / 3, 1 / 3], [0.25, 0.25, 0.5], [0.5, 0.25, 0.25], [1 / 3, 1 / 3, 1 / 3]],
        ]
    )
    strength = np.array([0.5, 0.5, 0.5, 0.5])
    rules = dict(full=full, only=only, none=none, modalities=("x", "y"), gain_threshold=0.05)
    types, dominant = interaction_types(strength=strength, strength_threshold=0.2, **rules)
    # 0: x alone gives the answer; 1: x and y point to different answers and they interact;
    # 2: both point to class 0, not the answer; 3: neither points anywhere, but they interact
    assert types == ["dominance", "conflict", "complementarity", "complementarity"]
    assert dominant == ["x", None, None, None]
    types, dominant = interaction_types(strength=np.zeros(4), strength_threshold=0.2, **rules)
    assert types == ["dominance", "none", "none", "none"]  # no interaction: no conflict, no complementarity
    types, _ = interaction_types(strength=strength, strength_threshold=0.2, **{**rules, "gain_threshold": 0.2})
    assert types == ["dominance", "complementarity", "complementarity", "complementarity"]  # y's 0.17 is too little


class _PatchPairwiseAdapter(PairwiseAdapter):
    """:class:`PairwiseAdapter` whose modality ``a`` is described as two image patches side by
    side (group 0 the left, group 1 the right half), as an image adapter describes them."""

    def describe_groups(self, batch):
        described = super().describe_groups(batch)
        left, right = (
            GroupInfo(group_id=0, kind="patch", box=(0, 0, 8, 8)),
            GroupInfo(group_id=1, kind="patch", box=(8, 0, 16, 8)),
        )
        return [[[left, right], groups[1]] for groups in described]


def test_group_pairs_name_patches_as_participants_see_them():
    """The interacting group of ``a`` is G_STAR = 1, the right-hand patch: on the participant
    pages' grid, column B of row 1."""
    adapter = _loaded(_PatchPairwiseAdapter())
    report = _run(adapter, adapter.make_items(10, seed=4), group_pairs="second_order", emap=False)
    top = report["interactions"]["group_pairs"]["top"]
    assert (top[0]["a"], top[0]["b"]) == ("patch B1", f"b[{PairwiseAdapter.H_STAR}]")
    assert {pair["a"] for pair in top} == {"patch A1", "patch B1"}


def test_group_names_follow_the_participant_grid():
    # a 3 x 2 grid given out of order: columns lettered from the left, rows numbered from the top
    boxes = {
        5: (16, 8, 24, 16),
        0: (0, 0, 8, 8),
        1: (8, 0, 16, 8),
        2: (16, 0, 24, 8),
        3: (0, 8, 8, 16),
        4: (8, 8, 16, 16),
    }
    groups = [GroupInfo(group_id=g, kind="patch", box=box) for g, box in boxes.items()]
    assert group_names(groups) == {
        5: "patch C2",
        0: "patch A1",
        1: "patch B1",
        2: "patch C1",
        3: "patch A2",
        4: "patch B2",
    }
    words = [
        GroupInfo(group_id=7, kind="token", text=" red "),
        GroupInfo(group_id=8, kind="token", hidden=True),
        {"group_id": 9, "kind": "feature"},
    ]
    assert group_names(words) == {7: "red", 8: None, 9: "feature 9"}
    # the demo's 8 x 8 grid of 8-pixel patches: A1 … H8, as the participant pages draw it
    demo = [
        GroupInfo(group_id=r * 8 + c, kind="patch", box=(8 * c, 8 * r, 8 * c + 8, 8 * r + 8))
        for r in range(8)
        for c in range(8)
    ]
    names = group_names(demo)
    assert (names[0], names[7], names[35], names[63]) == ("patch A1", "patch H1", "patch D5", "patch H8")


def _parts(block):
    return {part: block[part]["estimate"] for part in ("redundancy", "unique_1", "unique_2", "synergy")}


def test_pid_of_xor_data_and_of_a_model_that_copies_one_bit():
    """Gold labels are a XOR b: one bit of synergy in the data, whatever the model. A model that
    answers XOR has the same decomposition; one that copies a's bit has one bit unique to a
    (docs/MODEL_REPORT.md, "PID synergy and the EMAP gap")."""
    items = BitsAdapter().make_items(40)
    xor = _run(_loaded(BitsAdapter("xor")), items, group_pairs="", pid_resamples=50)
    copy = _run(_loaded(BitsAdapter("copy_a")), items, group_pairs="", pid_resamples=50)
    # What the EMAP gap sees of the same models: the copier's function is additive (gap 0),
    # although its data hold one bit of synergy; XOR's is not.
    assert copy["interactions"]["emap"]["emap_gap"] == 0.0
    assert xor["interactions"]["emap"]["emap_gap"] >= 0.5
    one_synergy = {"redundancy": 0.0, "unique_1": 0.0, "unique_2": 0.0, "synergy": 1.0}
    pid = xor["interactions"]["pid"]
    assert pid["modalities"] == ["a", "b"] and pid["clusters"] == {"a": 2, "b": 2} and pid["n_items_used"] == 40
    assert _parts(pid["dataset"]) == pytest.approx(one_synergy, abs=1e-6)
    assert _parts(pid["model"]) == pytest.approx(one_synergy, abs=1e-6)
    copied = copy["interactions"]["pid"]
    assert _parts(copied["dataset"]) == pytest.approx(one_synergy, abs=1e-6)
    assert _parts(copied["model"]) == pytest.approx(
        {"redundancy": 0.0, "unique_1": 1.0, "unique_2": 0.0, "synergy": 0.0}, abs=1e-6
    )
    synergy = copied["dataset"]["synergy"]
    assert synergy["ci_low"] <= synergy["estimate"] + 1e-6 and synergy["ci_high"] <= 1.0 + 1e-6
    assert copied["dataset"]["n"] == 40 and copied["n_resamples"] == 50
    rows = [r for r in report_table(copy, "summary") if r["section"] == "pid"]
    by_measure = {(r["subject"], r["measure"]): r for r in rows}
    assert len(rows) == 10
    assert by_measure["a+b about the answers", "uniqueness of a (bits)"]["estimate"] == pytest.approx(1.0, abs=1e-6)
    assert by_measure["a+b about the gold labels", "synergy (bits)"]["n"] == 40
    json.dumps(copy, allow_nan=False)


def test_pid_is_skipped_when_not_requested_or_without_gold_labels():
    adapter = _loaded(BitsAdapter())
    items = adapter.make_items(8)
    off = _run(adapter, items, emap=False, group_pairs="", pid=False)
    assert off["interactions"]["pid"] == {"skipped": "not requested"}
    assert not [r for r in report_table(off, "summary") if r["section"] == "pid"]
    for item in items:
        item["label"] = "unlabelled"
    unlabelled = _run(adapter, items, emap=False, group_pairs="", pid_resamples=10)
    assert "gold labels" in unlabelled["interactions"]["pid"]["dataset"]["skipped"]
    assert unlabelled["interactions"]["pid"]["model"]["n"] == 8


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"pid_clusters": 1}, "options.pid_clusters"),
        ({"pid_resamples": 0}, "options.pid_resamples"),
        ({"pid": "yes"}, "options.pid"),
    ],
)
def test_bad_pid_options_are_refused_by_name(options, message):
    with pytest.raises(ValueError, match=message):
        ReportOptions.from_json(options)
