"""Rationale agreement, aggregation and plausibility (annotations/analysis/rationale.py) on
hand-computed masks, against the reference packages (krippendorff, sklearn), and on simulated
annotators whose agreement is known in closed form."""

from __future__ import annotations

import krippendorff
import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import average_precision_score

from annotations.analysis.rationale import (
    aggregate_rationales,
    annotator_agreement,
    average_precision,
    krippendorff_alpha_binary,
    pairwise_iou,
    parse_units,
    plausibility_case,
    rationale_agreement,
    rationale_plausibility,
    rationale_prepare,
)

# Three hand-made cases: (scores, rationale units, n_units) and what each measure must be.
# A: top-3 = {0, 1, 3}, overlap 2 -> F1 2/3, IoU 2/4 = 0.5 (a match); ranks of the positives 1, 2, 5
#    -> AP (1 + 1 + 3/5) / 3; the maximum (unit 0) is inside.
# B: top-1 = {0}, overlap 0; the positive comes second -> AP 1/2; the maximum is outside.
# C: scores tie: top-2 = {0, 1} (lower number first), overlap 1 -> F1 1/2, IoU 1/3; one threshold
#    at 1 (P 1/2, R 1/2) and one at 0 (P 1/2, R 1) -> AP 1/2; a tied maximum inside is a hit.
CASES = {
    "A": ([0.9, 0.8, 0.1, 0.7, 0.0, 0.2], (0, 1, 2)),
    "B": ([0.5, 0.1, 0.2, 0.4], (3,)),
    "C": ([1.0, 1.0, 0.0, 0.0], (1, 2)),
}
EXPECTED = {
    "A": {"token_f1": 2 / 3, "iou_f1": 1.0, "auprc": (1 + 1 + 3 / 5) / 3, "pointing": 1.0},
    "B": {"token_f1": 0.0, "iou_f1": 0.0, "auprc": 0.5, "pointing": 0.0},
    "C": {"token_f1": 0.5, "iou_f1": 0.0, "auprc": 0.5, "pointing": 1.0},
}


def _mask(units, n):
    mask = np.zeros(n, dtype=bool)
    mask[list(units)] = True
    return mask


@pytest.mark.parametrize("name", sorted(CASES))
def test_each_measure_equals_the_hand_computation(name):
    scores, units = CASES[name]
    values = plausibility_case(np.array(scores), _mask(units, len(scores)))
    for measure, expected in EXPECTED[name].items():
        assert values[measure] == pytest.approx(expected), measure
    assert values["chance_token_f1"] == pytest.approx(len(units) / len(scores))
    if name == "A":  # a random 3 of 6 meets {0, 1, 2} in >= 2 units: (C(3,2) C(3,1) + 1) / C(6,3)
        assert values["chance_iou_f1"] == pytest.approx(10 / 20)


def test_average_precision_equals_sklearn_with_and_without_ties():
    rng = np.random.default_rng(3)
    for _ in range(40):
        n = int(rng.integers(2, 30))
        relevant = rng.random(n) < 0.3
        relevant[rng.integers(0, n)] = True
        scores = np.round(rng.normal(size=n), 1)  # rounding makes ties
        assert average_precision(scores, relevant) == pytest.approx(average_precision_score(relevant, scores))
    assert average_precision(np.ones(3), np.zeros(3, dtype=bool)) is None


def test_plausibility_pools_the_cases_per_method_and_slice():
    rationales = pd.DataFrame(
        [{"item": k, "modality": "text", "n_units": len(s), "units": u} for k, (s, u) in CASES.items()]
        + [{"item": "D", "modality": "text", "n_units": 3, "units": ()}]
    )
    attributions = pd.DataFrame(
        [{"method": "ig", "item": k, "modality": "text", "scores": s} for k, (s, _) in CASES.items()]
        # a perfect method: the rationale's units score 1, the rest 0
        + [
            {"method": "oracle", "item": k, "modality": "text", "scores": _mask(u, len(s)) * 1.0}
            for k, (s, u) in CASES.items()
        ]
    )
    result = rationale_plausibility(
        rationales, attributions, slices={"A": "colour", "B": "colour", "C": "shape"}, seed=0, n_resamples=200
    )
    ig = result["methods"]["ig"]
    for measure in ("token_f1", "iou_f1", "auprc", "pointing"):
        assert ig["all"][measure]["estimate"] == pytest.approx(np.mean([EXPECTED[k][measure] for k in "ABC"]))
        assert ig["colour"][measure]["estimate"] == pytest.approx(np.mean([EXPECTED[k][measure] for k in "AB"]))
        assert ig["shape"][measure]["estimate"] == pytest.approx(EXPECTED["C"][measure])
        assert ig["all"][measure]["ci_low"] <= ig["all"][measure]["estimate"] <= ig["all"][measure]["ci_high"]
        assert result["methods"]["oracle"]["all"][measure]["estimate"] == pytest.approx(1.0)
        assert result["methods"]["oracle"]["all"][measure]["ci_low"] == pytest.approx(1.0)
    assert ig["modality:text"]["token_f1"]["n_cases"] == 3
    assert result["data"]["n_empty"] == 1


def test_pairwise_iou_and_alpha_by_hand():
    # Two annotators, 4 units: {0, 1} and {1, 2} -> IoU 1/3. Alpha: values per unit (1,0) (1,1)
    # (0,1) (0,0): o_01 = 1 + 1 = 2, n_0 = n_1 = 4, n = 8 -> alpha = 1 - 7 * 2 / 16 = 1/8.
    masks = np.array([_mask((0, 1), 4), _mask((1, 2), 4)])
    assert pairwise_iou(masks) == pytest.approx(1 / 3)
    assert krippendorff_alpha_binary([masks]) == pytest.approx(1 / 8)
    assert pairwise_iou(np.zeros((2, 3), dtype=bool)) is None
    assert krippendorff_alpha_binary([np.ones((3, 2), dtype=bool)]) is None


def _simulate(rng, *, n_items, n_units, n_annotators, prevalence, p_hit, p_false, modality="image"):
    """Annotators marking each true unit with probability p_hit and each other with p_false."""
    rows, truth = [], {}
    for i in range(n_items):
        true = rng.random(n_units) < prevalence
        truth[f"i{i}"] = true
        for a in range(n_annotators):
            marked = np.where(true, rng.random(n_units) < p_hit, rng.random(n_units) < p_false)
            rows.append(
                {
                    "participant": f"p{a}",
                    "item": f"i{i}",
                    "modality": modality,
                    "n_units": n_units,
                    "units": " ".join(str(u) for u in np.flatnonzero(marked)),
                }
            )
    return pd.DataFrame(rows), truth


def test_alpha_equals_the_krippendorff_package_with_missing_annotators():
    rng = np.random.default_rng(11)
    frame, _ = _simulate(rng, n_items=12, n_units=9, n_annotators=4, prevalence=0.3, p_hit=0.8, p_false=0.1)
    # each item loses a different annotator at random (some keep all four)
    drop = [i for i, row in frame.iterrows() if rng.random() < 0.25]
    frame = frame.drop(index=drop)
    prepared = rationale_prepare(frame)
    participants = sorted(prepared["participant"].unique())
    columns = {(item, u): k for k, (item, u) in enumerate((f"i{i}", u) for i in range(12) for u in range(9))}
    reliability = np.full((len(participants), len(columns)), np.nan)
    for row in prepared.itertuples():
        for u in range(9):
            reliability[participants.index(row.participant), columns[(row.item, u)]] = float(u in row.units)
    expected = krippendorff.alpha(reliability_data=reliability, level_of_measurement="nominal")
    result = rationale_agreement(frame, seed=1, n_resamples=50)
    assert result["alpha"]["estimate"] == pytest.approx(expected, abs=1e-12)


def test_simulated_annotators_recover_their_known_agreement():
    prevalence, p_hit, p_false = 0.25, 0.85, 0.08
    rng = np.random.default_rng(5)
    frame, truth = _simulate(
        rng, n_items=60, n_units=120, n_annotators=5, prevalence=prevalence, p_hit=p_hit, p_false=p_false
    )
    marked = prevalence * p_hit + (1 - prevalence) * p_false
    disagree = prevalence * p_hit * (1 - p_hit) + (1 - prevalence) * p_false * (1 - p_false)
    alpha = 1 - disagree / (marked * (1 - marked))  # ~0.63
    both = prevalence * p_hit**2 + (1 - prevalence) * p_false**2
    either = prevalence * (1 - (1 - p_hit) ** 2) + (1 - prevalence) * (1 - (1 - p_false) ** 2)
    iou = both / either  # ~0.58 (120 units: the ratio of expectations, up to O(1/n))
    result = rationale_agreement(frame, seed=2, n_resamples=300)
    for measure, truth_value in (("alpha", alpha), ("pairwise_iou", iou)):
        block = result[measure]
        assert abs(block["estimate"] - truth_value) < 0.03, measure
        assert block["ci_low"] < truth_value < block["ci_high"], measure
        assert block["ci_high"] - block["ci_low"] < 0.1
    # With 5 annotators, majority voting recovers each true unit with P(Bin(5, .85) >= 3) ~ 0.97
    # and adds a false one with P(Bin(5, .08) >= 3) ~ 0.004.
    aggregated = aggregate_rationales(frame)
    recovered = [np.mean(_mask(u, 120)[truth[i]]) for i, u in zip(aggregated["item"], aggregated["units"])]
    false_added = [np.mean(_mask(u, 120)[~truth[i]]) for i, u in zip(aggregated["item"], aggregated["units"])]
    assert np.mean(recovered) > 0.94
    assert np.mean(false_added) < 0.015


def test_majority_is_strict_and_ties_are_left_out():
    frame = pd.DataFrame(
        [
            {"participant": "a", "item": "x", "modality": "text", "n_units": 5, "units": [0, 1, 4]},
            {"participant": "b", "item": "x", "modality": "text", "n_units": 5, "units": [1, 4]},
            {"participant": "c", "item": "x", "modality": "text", "n_units": 5, "units": "1"},
            {"participant": "a", "item": "y", "modality": "text", "n_units": 3, "units": [0]},
            {"participant": "b", "item": "y", "modality": "text", "n_units": 3, "units": [2]},
        ]
    )
    aggregated = aggregate_rationales(frame).set_index("item")
    assert aggregated.loc["x", "units"] == (1, 4)
    assert aggregated.loc["x", "support"] == pytest.approx((1.0, 2 / 3))
    assert aggregated.loc["y", "units"] == ()


@pytest.mark.parametrize(
    "units, message",
    [("1 1", "repeat"), ("1 x", "whole numbers"), ([1, -2], "whole numbers"), ([7], "out of range")],
)
def test_bad_units_are_refused_clearly(units, message):
    frame = pd.DataFrame([{"participant": "a", "item": "x", "modality": "text", "n_units": 5, "units": units}])
    with pytest.raises(ValueError, match=message):
        rationale_prepare(frame)


def test_parse_units_reads_the_export_and_lists():
    assert parse_units("3 0 7") == (0, 3, 7)
    assert parse_units("") == ()
    assert parse_units(np.array([2, 1])) == (1, 2)


def test_a_careless_annotator_has_the_lowest_leave_one_out_iou():
    rng = np.random.default_rng(8)
    frame, _ = _simulate(rng, n_items=20, n_units=64, n_annotators=4, prevalence=0.2, p_hit=0.9, p_false=0.03)
    # a fifth annotator marks a random 20 % of the units, whatever the picture shows
    careless = [
        {
            "participant": "careless",
            "item": f"i{i}",
            "modality": "image",
            "n_units": 64,
            "units": list(np.flatnonzero(rng.random(64) < 0.2)),
        }
        for i in range(20)
    ]
    table = annotator_agreement(pd.concat([frame, pd.DataFrame(careless)], ignore_index=True))
    assert table["participant"].iloc[0] == "careless" and (table["n_cases"] == 20).all()
    # measured: careful annotators 0.62-0.64 against the others' strict majority (3 of 4), the
    # careless one 0.10
    assert table["loo_iou"].iloc[0] < 0.25 < 0.5 < table["loo_iou"].iloc[1:].min()
