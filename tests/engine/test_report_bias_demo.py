"""The context-bias demo (workers/engine/demo/context): the model report's bias section shows the
amplification and the context-looking that the data builds in. The margins of every asserted
quantity over training seeds and thread counts: ``python -m benchmarks.demo_margins --demo
context`` (docs/BENCHMARKS.md)."""

from __future__ import annotations

import pytest

from benchmarks.demo_margins import CONTEXT_BOUNDS, context_items, context_quantities, context_report
from workers.engine.demo.context import data


@pytest.fixture(scope="module")
def report_and_draw(tmp_path_factory):
    items, examples = context_items(tmp_path_factory.mktemp("context"))
    return context_report(items), examples


def test_the_draw_builds_in_the_bias():
    examples = data.sample_examples(2000, seed=5)
    usual = [label == data.USUAL_SHAPE[g] for label, g in zip(examples.labels, examples.groups)]
    assert abs(sum(usual) / len(usual) - data.CONTEXT_AGREEMENT) < 0.03
    for group, share in data.AMBIGUOUS_SHARE.items():
        flags = [amb for amb, g in zip(examples.ambiguous, examples.groups) if g == group]
        assert abs(sum(flags) / len(flags) - share) < 0.05
    # The evidence region is the shape's patches: never the stripe's row, never empty.
    assert all(
        region and not any(cell.endswith("1") and len(cell) == 2 for cell in region) for region in examples.evidence
    )


@pytest.mark.trained_model
def test_report_shows_amplification_leakage_and_context_looking(report_and_draw):
    report, examples = report_and_draw
    bias = report["bias"]
    assert bias["groups"] == ["a", "b"]
    assert bias["amplification"]["reference"] == "adapter.training_items()"
    assert {(p["output"], p["group"]) for p in bias["amplification"]["pairs"]} == {("circle", "a"), ("square", "b")}
    quantities = context_quantities(report, examples)
    for name, (comparison, bound, what) in CONTEXT_BOUNDS.items():
        value = quantities[name]
        holds = {">": value > bound, "<": value < bound}[comparison]
        assert holds, f"{name} = {value:.3f}, asserted {comparison} {bound} ({what})"
    row = report["items"][0]
    assert row["group"] in ("a", "b") and 0.0 <= row["evidence_mass:saliency"] <= 1.0
