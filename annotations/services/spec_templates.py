"""Ready-made study specs (the same mapping a ``launch_study`` YAML file holds; checked by
``services/spec.py`` like any other).

``multiviz``: MultiViz's simulation study (Liang et al., ICLR 2023). Participants predict the
model's answer with a confidence rating; the arms are the cumulative explanation stages, a
no-explanation baseline, ``U`` (unimodal importance), ``U+C`` (+ cross-modal interactions),
``U+C+R`` (+ what activates the deciding features, and which dataset examples do),
``U+C+R+P`` (+ the sparse weights behind each answer). Test items are balanced by whether the
model was right (the sampler's default). MultiViz showed the stages to one group in turn;
here they are between-subjects arms, so one stage's answers never prime the next. The
dashboard recognises cumulative arms and reports accuracy, confidence and agreement by stage
with the increments between consecutive stages.
"""

from __future__ import annotations

from typing import Any

from annotations.analysis.stages import MULTIVIZ_STAGES

MULTIVIZ_INSTRUCTIONS = (
    "You will see a picture and a question, and the answers an AI could give. Your task is to "
    "predict which answer the AI gives, not which answer is right: the AI makes mistakes. "
    "Depending on your group you may also see explanations of how the AI looks at the input. "
    "After each answer, say how confident you are, from 1 (a guess) to 5 (certain)."
)


def multiviz_spec(
    *,
    name: str,
    dataset: str,
    model: str,
    n_items: int = 40,
    items_per_participant: int = 10,
    raters_per_item: int = 3,
    seed: int = 7,
    learning_items: int = 4,
    attention_checks: int = 1,
) -> dict[str, Any]:
    """The MultiViz simulation study over a dataset and model (both by name)."""
    return {
        "name": name,
        "title": "Predict the AI's answers",
        "dataset": dataset,
        "model": model,
        "seed": seed,
        "arms": [{"name": arm, "views": list(views)} for arm, views in MULTIVIZ_STAGES],
        "items": {"n": n_items, "per_participant": items_per_participant, "raters_per_item": raters_per_item},
        "candidates": {"mode": "top_k", "k": 4},
        "explanations": {
            "method": "integrated_gradients",
            "interaction_method": "second_order",
            "display": "all_candidates",
        },
        "phases": {"instructions": MULTIVIZ_INSTRUCTIONS, "learning_items": learning_items, "survey": True},
        "quality": {
            "attention_checks": attention_checks,
            "min_rt_ms": 800,
            "exclusion_rules": {"max_attention_failures": 0, "max_fast_share": 0.5},
        },
    }


SPEC_TEMPLATES = {"multiviz": multiviz_spec}
