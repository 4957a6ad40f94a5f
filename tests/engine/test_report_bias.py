"""The bias section's numbers on hand-computed cases (workers/engine/report/bias.py)."""

from __future__ import annotations

import numpy as np
import pytest

from workers.engine.report.bias import (
    amplification_interval,
    bias_amplification,
    bias_scores,
    cross_validated_predictions,
    evidence_mask,
    leakage,
    mask_patch_coverage,
    mass_inside,
    pointing_hit,
    wilson_interval,
)

OUTPUTS = ("cooking", "driving")
GROUPS = ("man", "woman")


def _table(counts: dict[tuple[str, str], int]) -> tuple[list[str], list[str]]:
    outputs, groups = [], []
    for (output, group), count in counts.items():
        outputs += [output] * count
        groups += [group] * count
    return outputs, groups


def test_bias_scores_by_hand():
    outputs, groups = _table({("cooking", "woman"): 6, ("cooking", "man"): 2, ("driving", "woman"): 1})
    b = bias_scores(outputs, groups, output_names=(*OUTPUTS, "reading"), group_names=GROUPS)
    np.testing.assert_allclose(b[0], [0.25, 0.75])
    np.testing.assert_allclose(b[1], [0.0, 1.0])
    assert np.isnan(b[2]).all()  # never answered


def test_bias_amplification_by_hand():
    # Training: cooking is 6 women / 2 men (b = 0.75 woman), driving 1 woman / 3 men (b = 0.75 man).
    train = _table({("cooking", "woman"): 6, ("cooking", "man"): 2, ("driving", "woman"): 1, ("driving", "man"): 3})
    # Predictions: cooking 7 women / 1 man (0.875), driving 1 woman / 4 men (0.8).
    predicted = _table({("cooking", "woman"): 7, ("cooking", "man"): 1, ("driving", "woman"): 1, ("driving", "man"): 4})
    result = bias_amplification(
        train_outputs=train[0],
        train_groups=train[1],
        predicted=predicted[0],
        groups=predicted[1],
        output_names=OUTPUTS,
        group_names=GROUPS,
    )
    pairs = {(p["output"], p["group"]): p for p in result["pairs"]}
    assert set(pairs) == {("cooking", "woman"), ("driving", "man")}  # only b_train > 1/2
    assert pairs["cooking", "woman"]["difference"] == pytest.approx(0.125)
    assert pairs["driving", "man"]["difference"] == pytest.approx(0.05)
    assert result["amplification"] == pytest.approx((0.125 + 0.05) / 2)


def test_predictions_that_copy_the_training_table_amplify_nothing():
    train = _table({("cooking", "woman"): 6, ("cooking", "man"): 2, ("driving", "woman"): 1, ("driving", "man"): 3})
    result = bias_amplification(
        train_outputs=train[0],
        train_groups=train[1],
        predicted=train[0] * 2,
        groups=train[1] * 2,
        output_names=OUTPUTS,
        group_names=GROUPS,
    )
    assert result["amplification"] == pytest.approx(0.0)


def test_leakage_of_a_perfectly_leaking_output_is_one():
    groups = ["a"] * 20 + ["b"] * 20
    softmax = np.array([[0.9, 0.1] if g == "a" else [0.2, 0.8] for g in groups])
    result = leakage(softmax, groups, folds=5, seed=3)
    assert result["accuracy"] == 1.0
    assert result["majority"] == 0.5


def test_leakage_of_an_output_that_ignores_the_group_is_the_majority_share():
    # The same output for every item: the classifier learns its intercept only, and stratified
    # folds keep both groups equally frequent in training, so it cannot tell them apart.
    groups = ["a"] * 20 + ["b"] * 20
    result = leakage(np.tile([0.3, 0.7], (40, 1)), groups, folds=5, seed=3)
    assert result["accuracy"] == 0.5 == result["majority"]


def test_cross_validated_predictions_separate_linearly_separable_groups():
    rng = np.random.default_rng(0)
    groups = ["x", "y", "z"] * 15
    centres = {"x": [3.0, 0.0], "y": [0.0, 3.0], "z": [-3.0, -3.0]}
    features = np.array([centres[g] for g in groups]) + 0.3 * rng.standard_normal((45, 2))
    predicted = cross_validated_predictions(features, groups, folds=5, seed=0)
    assert list(predicted) == groups


def test_mass_inside_by_hand():
    scores = np.array([1.0, -3.0, 0.0, 4.0])
    assert mass_inside(scores, np.array([False, True, False, True])) == pytest.approx(7 / 8)
    assert mass_inside(scores, np.zeros(4, dtype=bool)) == 0.0
    assert mass_inside(np.zeros(4), np.ones(4, dtype=bool)) is None
    # A map and a mask: 2 of the 4 unit cells of the top row, total 8.
    attribution = np.ones((2, 4))
    mask = np.zeros((2, 4), dtype=bool)
    mask[0, :2] = True
    assert mass_inside(attribution, mask) == pytest.approx(2 / 8)


def test_pointing_game_by_hand():
    scores = np.array([1.0, -3.0, 0.0, 4.0])
    assert pointing_hit(scores, np.array([False, False, False, True])) is True
    # The largest magnitude (-3) is no maximum: the pointing game reads the signed attribution.
    assert pointing_hit(scores, np.array([True, True, False, False])) is False
    assert pointing_hit(np.array([2.0, 2.0]), np.array([False, True])) is True  # a tie inside
    assert pointing_hit(scores, np.zeros(4, dtype=bool)) is None


def test_wilson_interval_by_hand():
    block = wilson_interval(8, 10)
    assert block["estimate"] == 0.8
    assert block["ci_low"] == pytest.approx(0.4902, abs=1e-4)
    assert block["ci_high"] == pytest.approx(0.9433, abs=1e-4)
    assert wilson_interval(0, 0)["estimate"] is None
    assert wilson_interval(5, 5)["ci_high"] == 1.0


def test_evidence_mask_matches_patch_cells_and_word_positions():
    names = ["patch A1", "patch B1", "patch A2", "patch B2"]
    inside, unmatched = evidence_mask(["B1", "B2", "Z9"], names)
    assert inside.tolist() == [False, True, False, True]
    assert unmatched == ["Z9"]
    words = ["what", "colour", None, "is"]  # a hidden padding group is no word
    inside, unmatched = evidence_mask([1, 2, 7], words)
    assert inside.tolist() == [False, True, False, True]
    assert unmatched == [7]


def test_amplification_interval_holds_the_estimate():
    train = _table({("cooking", "woman"): 6, ("cooking", "man"): 2, ("driving", "woman"): 1, ("driving", "man"): 3})
    predicted = _table(
        {("cooking", "woman"): 70, ("cooking", "man"): 10, ("driving", "woman"): 10, ("driving", "man"): 40}
    )
    block = amplification_interval(
        train_outputs=train[0],
        train_groups=train[1],
        predicted=predicted[0],
        groups=predicted[1],
        output_names=OUTPUTS,
        group_names=GROUPS,
        seed=0,
        n_resamples=300,
    )
    assert block["estimate"] == pytest.approx(0.0875)
    assert block["ci_low"] < 0.0875 < block["ci_high"]
    assert block["n"] == 130


def _linear_report(items: list[dict]) -> dict:
    from tests.builders.report_adapters import LinearAdapter
    from workers.engine.report.quantify import ReportOptions, model_report_run

    adapter = LinearAdapter()
    options = ReportOptions(
        n_resamples=100,
        noise_levels=[0.0, 1.0],
        permutations=1,
        corruption_levels=[0.0, 1.0],
        emap=False,
        group_pairs="",
        bias_methods=["input_x_gradient"],
        pid_resamples=20,  # the PID's bootstrap (200 convex programs by default) is not looked at here
    )
    return adapter, model_report_run(adapter, items, options=options)


def test_the_bias_stage_on_a_linear_model_matches_the_closed_form():
    from tests.builders.report_adapters import LinearAdapter

    items = LinearAdapter().make_items(40, seed=3)
    for i, item in enumerate(items):
        item["group"] = "x" if i % 2 else "y"
        item["evidence"] = {"a": [0, 1]}  # the first two features of modality a
    adapter, report = _linear_report(items)
    bias = report["bias"]
    rows = {row["id"]: row for row in report["items"]}
    for item in items:
        a = np.array(item["a"])
        # Input x gradient of a linear score: w * a, exactly, over modality a (the one the region
        # names; b's attribution does not count); the answer "neg" has the constant logit 0, so no
        # attribution at all.
        scores = adapter.w.numpy() * a
        row = rows[item["id"]]
        if row["prediction"] == "pos":
            expected = np.abs(scores[:2]).sum() / np.abs(scores).sum()
            assert row["evidence_mass:input_x_gradient"] == pytest.approx(expected)
            assert row["pointing:input_x_gradient"] == (scores[:2].max() >= scores.max())
        else:
            assert row["evidence_mass:input_x_gradient"] is None
    for group in ("x", "y"):
        mine = [rows[it["id"]] for it in items if it["group"] == group]
        right = sum(row["correct"] for row in mine)
        assert bias["per_group"][group]["n"] == 20
        assert bias["per_group"][group]["accuracy"] == wilson_interval(right, 20)
    # No training items: amplification is measured against this dataset's own gold labels.
    assert bias["amplification"]["reference"] == "dataset gold labels"
    assert bias["leakage"]["n"] == 40 and bias["leakage"]["folds"] == 5


def test_the_bias_section_is_skipped_without_groups_or_evidence():
    from tests.builders.report_adapters import LinearAdapter

    _, report = _linear_report(LinearAdapter().make_items(12, seed=1))
    assert report["bias"] == {"skipped": "no item carries a group or an evidence region"}
    assert "group" not in report["items"][0]


def _mask(tmp_path, name: str, box: tuple[int, int, int, int], size: tuple[int, int] = (128, 96)) -> dict:
    """A mask image white inside ``box`` (left, top, right, bottom, in pixels), as imported."""
    from PIL import Image, ImageDraw

    from workers.engine.dataset import mask_coverage

    image = Image.new("L", size, 0)
    ImageDraw.Draw(image).rectangle((box[0], box[1], box[2] - 1, box[3] - 1), fill=255)
    image.save(tmp_path / name)
    return mask_coverage(tmp_path / name)


def _grid(columns: int, rows: int) -> list[str]:
    return [f"patch {chr(ord('A') + c)}{r + 1}" for r in range(rows) for c in range(columns)]


def test_a_mask_covers_each_patch_by_its_area(tmp_path):
    """Closed forms: the left half of a 128x96 picture covers the left two of four patch columns
    wholly; on three columns (which do not divide the mask's grid) the middle one is covered
    exactly half (1/6 of the picture's width inside its 1/3); a word or a hidden group is no
    patch."""
    left_half = _mask(tmp_path, "left.png", (0, 0, 64, 96))
    shares = mask_patch_coverage(left_half, _grid(4, 2))
    assert shares.tolist() == [1, 1, 0, 0, 1, 1, 0, 0]
    thirds = mask_patch_coverage(left_half, _grid(3, 1))
    assert thirds == pytest.approx([1.0, 0.5, 0.0], abs=1e-12)
    inside, unmatched = evidence_mask(left_half, [*_grid(4, 1), "what", None])
    assert inside.tolist() == [True, True, False, False, False, False] and unmatched == []
    # a quarter of the height of the top-right patch of a 2x2 grid: 25 % of it, outside
    corner = _mask(tmp_path, "corner.png", (64, 0, 128, 12))
    assert mask_patch_coverage(corner, _grid(2, 2)) == pytest.approx([0, 0.25, 0, 0], abs=1e-12)
    assert not evidence_mask(corner, _grid(2, 2))[0].any()
    # a mask on an item whose groups are words only names no patch
    assert evidence_mask(corner, ["what", "colour"])[1] == ["mask (no patch grid)"]


def test_a_blank_or_unreadable_mask_is_refused(tmp_path):
    from PIL import Image

    from workers.engine.dataset import mask_coverage

    Image.new("L", (8, 8), 0).save(tmp_path / "blank.png")
    with pytest.raises(ValueError, match="marks no pixel"):
        mask_coverage(tmp_path / "blank.png")
    (tmp_path / "text.png").write_text("not a picture")
    with pytest.raises(ValueError, match="not a readable image"):
        mask_coverage(tmp_path / "text.png")


def test_cells_of_another_grid_reach_a_model_by_area():
    """A rationale's cells on its own 8 x 8 grid, as coverage: wholly inside the model's patches
    under them on a 16 x 16 grid, half inside a 4 x 4 patch that holds two of its four cells (the
    share is exact), and checked again when a line brings the coverage back."""
    import base64

    from workers.engine.dataset import _line_evidence, cells_coverage

    marked = cells_coverage(["C4", "D4"], (8, 8))
    assert np.flatnonzero(mask_patch_coverage(marked, _grid(16, 16)) == 1).tolist() == [100, 101, 102, 103] + [
        116,
        117,
        118,
        119,
    ]
    coarse = mask_patch_coverage(marked, _grid(4, 4))
    assert coarse[4 + 1] == pytest.approx(0.5, abs=1e-12) and coarse.sum() == pytest.approx(0.5, abs=1e-12)
    with pytest.raises(ValueError, match="outside the 8 x 8 grid"):
        cells_coverage(["I1"], (8, 8))
    problems: list[str] = []
    assert _line_evidence({"evidence": {"image": marked}}, ("image",), problems) == {"image": marked}
    blank = {"mask_grid": 64, "coverage": base64.b64encode(bytes(64 * 64)).decode()}
    for bad, message in (
        ({"mask_grid": 32, "coverage": marked["coverage"]}, '"mask_grid": 64'),
        ({"mask_grid": 64, "coverage": "%%%"}, "not base64"),
        ({"mask_grid": 64, "coverage": base64.b64encode(b"12").decode()}, "must hold 4096 bytes"),
        (blank, "marks nothing"),
    ):
        _line_evidence({"evidence": {"image": bad}}, ("image",), problems)
        assert message in problems[-1], problems
    assert problems and not _line_evidence({"evidence": {"image": "masks/a.png"}}, ("image",), problems)
    assert "read only with a dataset's JSONL file" in problems[-1]
