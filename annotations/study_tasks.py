"""Study task types: what a participant is asked to do with an item, and what each task needs
of a design. The one place that lists them: ``Study.task`` takes its choices from here, the
spec parser (``services/spec.py``) checks a design against ``needs``, the participant page picks
``template`` and the dashboard and export read ``answer`` (no Django: plain data).

Adding a task type (counterfactual, rationale, rating, preference): add a :class:`StudyTask`
here, a participant template, the answer it stores (``services/participants.py``) and its
analysis (``annotations/analysis/``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

FORWARD = "forward"
VERIFICATION = "verification"
COUNTERFACTUAL = "counterfactual"
RATIONALE = "rationale"
RATING = "rating"
PREFERENCE = "preference"


@dataclass(frozen=True)
class StudyTask:
    name: str
    label: str
    #: What a participant answers: "guess" (one of the candidates), "verdict" (model right? yes/no),
    #: "rationale" (the units of the input that are evidence for the gold answer), "rating" (Likert
    #: scales of one explanation) or "preference" (which of two explanations helps more); a
    #: counterfactual guess is the model's answer on the item's edited input.
    answer: str
    #: The participant page of a test or pre-test item, and the instructions page.
    template: str
    instructions_template: str
    #: Explanation displays the task allows (``Study.explanation_display``); the first is its default.
    displays: tuple[str, ...]
    #: Design options the task refuses, spec path -> why (checked by the spec parser).
    refuses: dict[str, str] = field(default_factory=dict)
    #: The model's answer is part of what the participant reads (so the page shows it).
    shows_model_answer: bool = False
    #: Design values the task starts from, spec path -> value: the study form fills them in when
    #: the task is chosen (a refused option switched off), so the default design is always valid.
    design_defaults: dict[str, object] = field(default_factory=dict)
    #: The task judges the explanations themselves: the baseline arm (nothing to judge) gets no
    #: rater slots, so no participant; the arms are the explanations compared.
    judges_explanations: bool = False
    #: Explanation arms (besides the baseline) the design needs at least.
    min_explanation_arms: int = 1


# Rating and preference studies judge explanations: no practice (it would show the model's answers
# as feedback) and no warm-up without explanations (nothing to judge). Their attention checks are
# instructed ones ("rate 2 on every question", "choose B"): no rating or side is right by itself.
_JUDGING_REFUSES = {
    "phases.learning_items": "a study that judges explanations has no practice items",
    "phases.pretest": "a study that judges explanations has no warm-up phase without them",
}
_JUDGING_DEFAULTS = {"phases.learning_items": 0, "phases.pretest": False}

STUDY_TASKS: dict[str, StudyTask] = {
    FORWARD: StudyTask(
        name=FORWARD,
        label="Forward simulation: predict the model's answer",
        answer="guess",
        template="participant/item.html",
        instructions_template="participant/instructions.html",
        displays=("all_candidates", "predicted_unlabelled"),
    ),
    VERIFICATION: StudyTask(
        name=VERIFICATION,
        label="Verification: is the model's answer right? (reliance, Bansal et al. 2021)",
        answer="verdict",
        template="participant/verification.html",
        instructions_template="participant/verification_instructions.html",
        # the explanation of the model's own answer, shown beside that answer
        displays=("predicted_unlabelled",),
        refuses={
            "phases.learning_items": "a verification study has no practice items (they would teach the gold "
            "labels, which its participants never see)",
            "phases.pretest": "a verification study has no warm-up phase",
        },
        shows_model_answer=True,
        design_defaults={"phases.learning_items": 0, "phases.pretest": False},
    ),
    COUNTERFACTUAL: StudyTask(
        name=COUNTERFACTUAL,
        label="Counterfactual simulation: predict the model's answer on an edited input (Hase & Bansal 2020)",
        answer="guess",
        template="participant/counterfactual.html",
        instructions_template="participant/counterfactual_instructions.html",
        # the explanation of the model's answer on the original input, which the page shows
        displays=("predicted_unlabelled",),
        refuses={
            "phases.learning_items": "a counterfactual study has no practice items (they would show the model's "
            "answers on edited inputs)",
            "candidates.mode": "a counterfactual study offers every valid answer (candidates: {mode: all}), so the "
            "choices do not depend on the model's answer on the edit",
        },
        design_defaults={"phases.learning_items": 0, "candidates.mode": "all"},
    ),
    RATIONALE: StudyTask(
        name=RATIONALE,
        label="Rationale: mark the evidence for the right answer (ERASER, DeYoung et al. 2020)",
        answer="rationale",
        template="participant/rationale.html",
        instructions_template="participant/rationale_instructions.html",
        # the page shows no explanation: a rationale study measures people, not methods
        displays=("all_candidates",),
        refuses={
            "phases.learning_items": "a rationale study has no practice items (they show the model's answer)",
            "phases.pretest": "a rationale study has no warm-up phase",
        },
        # its attention checks are instructed: "mark only the cell C4 of the picture"
        design_defaults={"phases.learning_items": 0, "phases.pretest": False},
    ),
    RATING: StudyTask(
        name=RATING,
        label="Rating: Likert ratings of one explanation (helpfulness, trust, understanding)",
        answer="rating",
        template="participant/rating.html",
        instructions_template="participant/rating_instructions.html",
        displays=("predicted_unlabelled",),
        refuses=_JUDGING_REFUSES,
        design_defaults=_JUDGING_DEFAULTS,
        judges_explanations=True,
    ),
    PREFERENCE: StudyTask(
        name=PREFERENCE,
        label="Preference: which of two explanations helps more (Bradley–Terry ranking)",
        answer="preference",
        template="participant/preference.html",
        instructions_template="participant/rating_instructions.html",
        displays=("predicted_unlabelled",),
        refuses=_JUDGING_REFUSES,
        design_defaults=_JUDGING_DEFAULTS,
        judges_explanations=True,
        min_explanation_arms=2,
    ),
}

TASK_CHOICES = [(task.name, task.label) for task in STUDY_TASKS.values()]


def study_task(name: str) -> StudyTask:
    """The task called ``name`` (the forward task for an empty name: studies made before tasks)."""
    return STUDY_TASKS[name or FORWARD]


#: The rating task's Likert scales (1-5): form field, the question, the words at 1 and at 5.
RATING_SCALES = (
    ("helpfulness", "How much does this explanation help you see how the model decides?", "not at all", "very much"),
    ("trust", "How much would you trust the model's answers after this explanation?", "not at all", "completely"),
    ("understanding", "How well do you understand this explanation?", "not at all", "fully"),
)
