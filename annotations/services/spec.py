"""Study specs: one description of a study design, read from a YAML/JSON file
(``manage.py launch_study spec.yaml``) or built from the researcher's web form, checked in
one place so both routes accept exactly the same fields and refuse the same mistakes.

A spec (every field but ``name``, ``dataset``, ``model`` and ``arms`` is optional)::

    name: Does IG help?             # internal: researchers only; unique per owner, ignoring case and spaces
    title: Guess the AI's answers   # what participants see (default: a neutral title)
    task: forward                   # or verification, counterfactual (annotations/study_tasks.py): predict the
                                    #   model's answer, judge whether it is right, or predict it on an edited input
    counterfactual:                 # task counterfactual only (docs/specs/counterfactual.yaml)
      edits: [modality_baseline, top_k_removed, word_swap]   # or adapter (the adapter's own edits)
      k: 3                          # top_k_removed: the k most attributed patches or words
      swaps: ["red -> blue"]        # word_swap: the first pair whose word the item's text holds
    dataset: shapes                 # your dataset, by name
    model: fusion                   # your registered model, by name
    seed: 7
    arms:                           # between-subjects; exactly one without views = baseline
      - {name: baseline, views: []}
      - {name: ig, views: [heatmap, tokens]}
      - {name: interactions, views: [interaction, top_pairs, share]}
    items:
      n: 40                         # test items sampled, half model-right, half model-wrong
      per_participant: 10
      raters_per_item: 3            # per arm
      filters:
        confidence: [0.5, 1.0]      # the model's probability of its answer
        interaction_strength: [0.2, 1.0]   # |dividend| / (|effect_a| + |effect_b| + |dividend|)
        interaction_type: [conflict]       # M2Lens type, from the latest model report of model and dataset
    candidates: {mode: top_k, k: 3, distractors: 1}   # or {mode: all}
    explanations:
      method: integrated_gradients
      interaction_method: second_order
      attention_method: chefer      # the attention view: chefer (relevance per candidate) or rollout
      display: all_candidates       # or predicted_unlabelled
    phases:
      consent: "..."
      instructions: "..."
      learning_items: 4             # shown with explanation and the model's answer
      pretest: false                # the test items first, without explanations
      survey: true                  # 1-5 helpfulness + comment
    time_limit_minutes: 60
    quality:
      attention_checks: 2           # per participant (or attention_rate: 0.1 of the items)
      min_rt_ms: 1500
      exclusion_rules:              # pre-registered; locked once the study is live
        max_attention_failures: 0
        max_fast_share: 0.5
        min_test_responses: 10
        screen_out_at_attention_failures: 2
    codes: {completed: C0DE1234, screened_out: SCR33N, partial: PART1AL}  # partial: time ran out after some answers
    modality_names:                 # what pages call each input (default by kind: "the picture",
      tabular: the measurements     #   "the question", "the table", "the series", "the recording")
      text: the owner's note
    sequential:                     # optional interim looks; pre-registered, locked once live
      spending: obrien_fleming      # or pocock (Lan-DeMets alpha spending)
      alpha: 0.05                   # over all looks, split over the explanation arms
      looks: [20, 40, 60]           # complete participants per arm at each look; the last is the maximum
      effect_of_interest: 0.10      # smallest accuracy gain worth detecting (the power card)

Errors name the field: ``items.per_participant: must be a whole number >= 1, got 'ten'``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from annotations.models import Condition, Dataset, RegisteredModel
from annotations.services.counterfactual import CounterfactualDesignError, counterfactual_design_check
from annotations.study_tasks import COUNTERFACTUAL, FORWARD, STUDY_TASKS, study_task
from workers.engine.attention import ATTENTION_SOURCES  # numpy only

KNOWN_VIEWS = tuple(choice.value for choice in Condition.View)
DISPLAYS = ("all_candidates", "predicted_unlabelled")
# Counts are stored in Postgres integer columns, the seed in a bigint.
COUNT_MAX = 2**31 - 1
SEED_MAX = 2**63 - 1
# Launch creates items.n x raters_per_item x arms rater slots at once: keep it a size a
# crowd study can fill and one request can write.
RATER_SLOTS_MAX = 500_000


class SpecError(Exception):
    """A bad spec field. ``field`` is its dotted path, e.g. ``items.per_participant``."""

    def __init__(self, field: str, message: str):
        self.field = field
        super().__init__(f"{field}: {message}")


@dataclass
class ConditionSpec:
    name: str
    views: list[str] = field(default_factory=list)
    #: The arm's attribution method (rating and preference studies compare methods); "" = the study's.
    method: str = ""

    @property
    def is_baseline(self) -> bool:
        return not self.views


@dataclass
class StudySpec:
    """A parsed, checked study design (the keyword arguments of ``study_create``)."""

    name: str
    dataset: Dataset
    model: RegisteredModel
    conditions: list[ConditionSpec]
    n_items: int
    items_per_participant: int
    raters_per_item: int
    seed: int = 0
    n_candidates: int = 4
    n_distractors: int = 0
    explanation_method: str = "integrated_gradients"
    interaction_method: str = "second_order"
    # what the attention view draws (workers/engine/attention.py ATTENTION_SOURCES)
    attention_method: str = "chefer"
    explanation_display: str = "all_candidates"
    lease_minutes: int = 60
    consent_text: str = ""
    instructions: str = ""
    learning_items: int = 0
    pretest: bool = False
    survey: bool = True
    attention_checks: int = 0
    min_rt_ms: int = 0
    exclusion_rules: dict[str, Any] = field(default_factory=dict)
    confidence_range: tuple[float, float] | None = None
    interaction_range: tuple[float, float] | None = None
    interaction_types: tuple[str, ...] | None = None
    completion_code: str = ""
    screened_out_code: str = ""
    partial_code: str = ""
    public_title: str = ""
    # None: the spec has no ``sequential`` section, and an edit keeps the study's plan
    sequential_monitoring: dict[str, Any] | None = None
    # modality -> what participant pages call it; missing ones take the default of their kind
    modality_names: dict[str, str] = field(default_factory=dict)
    task: str = FORWARD
    counterfactual: dict[str, Any] = field(default_factory=dict)  # its edits (services/counterfactual.py)

    def as_kwargs(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}


# --------------------------------------------------------------------------- field readers


def _section(data: Mapping, path: str, allowed: set[str]) -> Mapping:
    if not isinstance(data, Mapping):
        raise SpecError(path or "spec", f"must be a mapping of fields, got {type(data).__name__}")
    unknown = sorted(set(data) - allowed)
    if unknown:
        where = f"{path}." if path else ""
        raise SpecError(f"{where}{unknown[0]}", f"unknown field; known fields here: {', '.join(sorted(allowed))}")
    return data


def _int(
    data: Mapping, key: str, path: str, default: int | None = None, *, minimum: int = 0, maximum: int = COUNT_MAX
) -> int:
    value = data.get(key, default)
    if value is None:
        raise SpecError(path, "is required")
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, str) and value.strip().lstrip("-").isdigit():
            value = int(value)
        elif isinstance(value, float) and value.is_integer():
            value = int(value)
        else:
            raise SpecError(path, f"must be a whole number >= {minimum}, got {value!r}")
    if value < minimum:
        raise SpecError(path, f"must be a whole number >= {minimum}, got {value!r}")
    if value > maximum:
        raise SpecError(path, f"must be at most {maximum:,}, got {value:,}")
    return value


def _bool(data: Mapping, key: str, path: str, default: bool) -> bool:
    value = data.get(key, default)
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "yes", "on", "1", "false", "no", "off", "0"):
        return value.strip().lower() in ("true", "yes", "on", "1")
    raise SpecError(path, f"must be true or false, got {value!r}")


def _str(data: Mapping, key: str, path: str, default: str | None = None, *, max_length: int = 10_000) -> str:
    value = data.get(key, default)
    if value is None:
        raise SpecError(path, "is required")
    if not isinstance(value, str):
        raise SpecError(path, f"must be text, got {value!r}")
    if "\x00" in value:
        raise SpecError(path, "must not contain NUL bytes")
    if len(value) > max_length:
        raise SpecError(path, f"must be at most {max_length} characters")
    return value


def _float(value: Any, path: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(float(value)):
        raise SpecError(path, f"must be a number, got {value!r}")
    return float(value)


def _range(data: Mapping, key: str, path: str) -> tuple[float, float] | None:
    value = data.get(key)
    if value is None:
        return None
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        raise SpecError(path, f"must be [low, high], got {value!r}")
    low, high = _float(value[0], f"{path}[0]"), _float(value[1], f"{path}[1]")
    if not 0.0 <= low <= high <= 1.0:
        raise SpecError(path, f"must satisfy 0 <= low <= high <= 1, got {value!r}")
    return low, high


def _choice(data: Mapping, key: str, path: str, default: str, known: Callable[[], tuple[str, ...]]) -> str:
    value = _str(data, key, path, default)
    options = known()
    if value not in options:
        raise SpecError(path, f"unknown value {value!r}; known: {', '.join(options)}")
    return value


def _attribution_methods() -> tuple[str, ...]:
    from workers.engine.attribution import METHODS  # imports torch: only when a spec is read

    return tuple(METHODS)


def _interaction_methods() -> tuple[str, ...]:
    from workers.engine.interactions import CROSS_METHODS

    return tuple(CROSS_METHODS)


def _code(value: Any, path: str) -> str:
    if value in (None, ""):
        return ""
    if not isinstance(value, str) or not value.isalnum() or len(value) > 32:
        raise SpecError(path, f"must be letters and digits only, at most 32, got {value!r}")
    return value


# --------------------------------------------------------------------------- parts


def _arms(data: Mapping) -> list[ConditionSpec]:
    arms = data.get("arms")
    if not isinstance(arms, list) or not arms:
        raise SpecError("arms", "must be a list of arms, each {name, views}")
    out = []
    for k, arm in enumerate(arms):
        path = f"arms[{k}]"
        arm = _section(arm, path, {"name", "views", "method"})
        name = _str(arm, "name", f"{path}.name", max_length=100).strip()
        if not name:
            raise SpecError(f"{path}.name", "must not be empty")
        views = arm.get("views") or []
        if isinstance(views, str):
            views = [v for v in views.replace("+", ",").split(",") if v.strip()]
        if not isinstance(views, list):
            raise SpecError(f"{path}.views", f"must be a list of views, got {views!r}")
        views = [str(v).strip() for v in views]
        views = [v for v in views if v != "none"]
        unknown = [v for v in views if v not in KNOWN_VIEWS]
        if unknown:
            raise SpecError(f"{path}.views", f"unknown view {unknown[0]!r}; known: none, {', '.join(KNOWN_VIEWS)}")
        if len(set(views)) != len(views):
            raise SpecError(f"{path}.views", "lists a view twice")
        method = ""
        if arm.get("method") not in (None, ""):
            method = _choice(arm, "method", f"{path}.method", "", _attribution_methods)
        out.append(ConditionSpec(name=name, views=views, method=method))
    if len([a for a in out if a.is_baseline]) != 1:
        raise SpecError("arms", "need exactly one baseline arm (one with no views)")
    if len(out) < 2:
        raise SpecError("arms", "need the baseline and at least one explanation arm")
    if len({a.name for a in out}) != len(out):
        raise SpecError("arms", "arm names must be distinct")
    return out


def arms_views_check(*, arms: list[ConditionSpec], model: RegisteredModel) -> None:
    """Refuse an arm that shows a view ``model`` cannot give (``workers.engine.view_needs``),
    naming the arm and the view, before anything is stored or computed. Reads the modalities
    and capabilities stored at registration: no adapter is loaded."""
    from workers.engine.view_needs import view_unmet_need  # no torch

    capabilities = model.capabilities or {}
    for k, arm in enumerate(arms):
        for view in arm.views:
            need = view_unmet_need(
                view=view,
                modalities=model.modalities,
                has_features=capabilities.get("features"),
                has_attention=capabilities.get("attention"),
            )
            if need:
                raise SpecError(f"arms[{k}].views", f"arm '{arm.name}' shows '{view}', but model '{model.name}' {need}")


def exclusion_rules_check(rules: Any, path: str = "quality.exclusion_rules") -> dict[str, Any]:
    """Validate pre-registered exclusion rules with the analysis' own validator (one
    definition of the rules: ``annotations.analysis.exclusions``), naming the bad key.
    The participant flow applies ``screen_out_at_attention_failures`` itself."""
    from annotations.analysis.exclusions import EXCLUSION_RULE_KEYS, exclusion_rules_validate

    if rules in (None, ""):
        return {}
    rules = _section(rules, path, set(EXCLUSION_RULE_KEYS))
    out = {}
    for key, value in rules.items():
        if value is None:
            continue
        try:
            exclusion_rules_validate({key: value})
        except ValueError as exc:
            raise SpecError(f"{path}.{key}", str(exc).replace(f"exclusion rule {key!r} ", "")) from None
        out[key] = value
    return out


def sequential_monitoring_check(
    plan: Any, path: str = "sequential", *, max_participants_per_arm: int | None = None
) -> dict[str, Any]:
    """Validate a sequential-monitoring plan with the analysis' own validator
    (``annotations.analysis.sequential``), naming the bad key; ``{}`` for no plan. With
    ``max_participants_per_arm`` (the design's room: items x raters per item / items per
    participant), a last look the design cannot reach is refused."""
    from annotations.analysis.sequential import SEQUENTIAL_KEYS, sequential_plan_validate

    if plan in (None, ""):
        return {}
    plan = _section(plan, path, set(SEQUENTIAL_KEYS))
    try:
        typed = sequential_plan_validate(plan)
    except ValueError as exc:
        key, _, message = str(exc).partition(": ")
        if key in SEQUENTIAL_KEYS:
            raise SpecError(f"{path}.{key}", message) from None
        raise SpecError(path, str(exc)) from None
    if typed is None:
        return {}
    if max_participants_per_arm is not None and typed.looks[-1] > max_participants_per_arm:
        raise SpecError(
            f"{path}.looks",
            f"the last look needs {typed.looks[-1]} participants per arm, but the design "
            f"has room for {max_participants_per_arm} (items.n x raters_per_item / "
            f"per_participant)",
        )
    return typed.as_dict()


# --------------------------------------------------------------------------- entry points

SPEC_FIELDS = {
    "name",
    "task",
    "counterfactual",
    "title",
    "dataset",
    "model",
    "seed",
    "arms",
    "items",
    "candidates",
    "explanations",
    "phases",
    "time_limit_minutes",
    "quality",
    "codes",
    "sequential",
    "modality_names",
}


def study_spec_parse(*, data: Any, owner) -> StudySpec:
    """Check a spec (a mapping, as read from YAML/JSON) and resolve the owner's dataset and
    model by name. Raises :class:`SpecError` naming the first bad field."""
    data = _section(data, "", SPEC_FIELDS)
    name = _str(data, "name", "name", max_length=200).strip()
    if not name:
        raise SpecError("name", "must not be empty")
    dataset = _owned(Dataset, owner, data, "dataset")
    model = _owned(RegisteredModel, owner, data, "model")
    task = _choice(data, "task", "task", FORWARD, lambda: tuple(STUDY_TASKS))
    arms = _arms(data)
    arms_views_check(arms=arms, model=model)

    items = _section(data.get("items") or {}, "items", {"n", "per_participant", "raters_per_item", "filters"})
    n_items = _int(items, "n", "items.n", minimum=1)
    per_participant = _int(items, "per_participant", "items.per_participant", minimum=1)
    raters = _int(items, "raters_per_item", "items.raters_per_item", minimum=1)
    if per_participant > n_items:
        raise SpecError("items.per_participant", f"cannot exceed items.n ({n_items})")
    slots = n_items * raters * len(arms)
    if slots > RATER_SLOTS_MAX:
        raise SpecError(
            "items.raters_per_item",
            f"the design needs {slots:,} rater slots (items.n x raters_per_item x arms); at most {RATER_SLOTS_MAX:,}",
        )
    filters = _section(
        items.get("filters") or {}, "items.filters", {"confidence", "interaction_strength", "interaction_type"}
    )

    candidates = _section(data.get("candidates") or {}, "candidates", {"mode", "k", "distractors"})
    default_mode = "all" if task == COUNTERFACTUAL else "top_k"
    mode = _choice(candidates, "mode", "candidates.mode", default_mode, lambda: ("top_k", "all"))
    n_labels = len(model.labels)
    if mode == "all":
        n_candidates, n_distractors = 0, 0
        if "k" in candidates or candidates.get("distractors"):
            raise SpecError("candidates.k", "only applies to mode top_k")
    else:
        n_candidates = _int(candidates, "k", "candidates.k", 4, minimum=1)
        n_distractors = _int(candidates, "distractors", "candidates.distractors", 0)
        if n_candidates + n_distractors < 2:
            raise SpecError("candidates.k", "participants need at least two candidate answers")
        if n_labels and n_candidates + n_distractors > n_labels:
            raise SpecError(
                "candidates.distractors",
                f"k + distractors ({n_candidates + n_distractors}) exceeds the model's {n_labels} labels",
            )

    explanations = _section(
        data.get("explanations") or {}, "explanations", {"method", "interaction_method", "attention_method", "display"}
    )
    views = {v for arm in arms for v in arm.views}
    method = _str(explanations, "method", "explanations.method", "integrated_gradients")
    if views & {"heatmap", "tokens", "share", "features"} or "method" in explanations:  # features: its heatmaps
        method = _choice(explanations, "method", "explanations.method", "integrated_gradients", _attribution_methods)
    interaction_method = _str(explanations, "interaction_method", "explanations.interaction_method", "second_order")
    if views & {"interaction", "top_pairs"} or "interaction_method" in explanations:
        interaction_method = _choice(
            explanations, "interaction_method", "explanations.interaction_method", "second_order", _interaction_methods
        )
    attention_method = _choice(
        explanations, "attention_method", "explanations.attention_method", "chefer", lambda: ATTENTION_SOURCES
    )
    display = _choice(explanations, "display", "explanations.display", study_task(task).displays[0], lambda: DISPLAYS)

    phases = _section(
        data.get("phases") or {}, "phases", {"consent", "instructions", "learning_items", "pretest", "survey"}
    )
    quality = _section(
        data.get("quality") or {}, "quality", {"attention_checks", "attention_rate", "min_rt_ms", "exclusion_rules"}
    )
    if "attention_checks" in quality and "attention_rate" in quality:
        raise SpecError("quality.attention_rate", "give attention_checks or attention_rate, not both")
    if "attention_rate" in quality:
        rate = _float(quality["attention_rate"], "quality.attention_rate")
        if not 0.0 <= rate <= 1.0:
            raise SpecError("quality.attention_rate", f"must be between 0 and 1, got {rate!r}")
        attention_checks = math.ceil(rate * per_participant) if rate else 0
    else:
        attention_checks = _int(quality, "attention_checks", "quality.attention_checks", 0)

    codes = _section(data.get("codes") or {}, "codes", {"completed", "screened_out", "partial"})
    completed = _code(codes.get("completed"), "codes.completed")
    screened_out = _code(codes.get("screened_out"), "codes.screened_out")
    partial = _code(codes.get("partial"), "codes.partial")
    if completed and completed == screened_out:
        raise SpecError("codes.screened_out", "must differ from codes.completed")
    if partial and partial in (completed, screened_out):
        raise SpecError("codes.partial", "must differ from codes.completed and codes.screened_out")

    learning_items = _int(phases, "learning_items", "phases.learning_items", 0)
    shortfall = dataset_shortfall(
        dataset=dataset, n_items=n_items, learning_items=learning_items, attention_checks=attention_checks
    )
    if shortfall:
        raise SpecError("items.n", shortfall)

    seed = data.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise SpecError("seed", f"must be a whole number, got {seed!r}")
    if abs(seed) > SEED_MAX:
        raise SpecError("seed", f"must be between -{SEED_MAX:,} and {SEED_MAX:,}, got {seed:,}")

    try:
        counterfactual = counterfactual_design_check(data.get("counterfactual"), task=task, model=model)
    except CounterfactualDesignError as exc:
        raise SpecError(exc.field, exc.message) from None
    spec = StudySpec(
        task=task,
        counterfactual=counterfactual,
        name=name,
        dataset=dataset,
        model=model,
        conditions=arms,
        n_items=n_items,
        items_per_participant=per_participant,
        raters_per_item=raters,
        seed=seed,
        n_candidates=n_candidates,
        n_distractors=n_distractors,
        explanation_method=method,
        interaction_method=interaction_method,
        attention_method=attention_method,
        explanation_display=display,
        lease_minutes=_int(data, "time_limit_minutes", "time_limit_minutes", 60, minimum=1),
        consent_text=_str(phases, "consent", "phases.consent", ""),
        instructions=_str(phases, "instructions", "phases.instructions", ""),
        learning_items=learning_items,
        public_title=_str(data, "title", "title", "", max_length=200).strip(),
        pretest=_bool(phases, "pretest", "phases.pretest", False),
        survey=_bool(phases, "survey", "phases.survey", True),
        attention_checks=attention_checks,
        min_rt_ms=_int(quality, "min_rt_ms", "quality.min_rt_ms", 0),
        exclusion_rules=exclusion_rules_check(quality.get("exclusion_rules")),
        confidence_range=_range(filters, "confidence", "items.filters.confidence"),
        interaction_range=_range(filters, "interaction_strength", "items.filters.interaction_strength"),
        interaction_types=_interaction_types(filters, model=model, dataset=dataset),
        completion_code=completed,
        screened_out_code=screened_out,
        modality_names=modality_names_check(data.get("modality_names"), model=model),
        partial_code=partial,
        sequential_monitoring=None
        if "sequential" not in data
        else sequential_monitoring_check(
            data["sequential"], max_participants_per_arm=n_items * raters // per_participant
        ),
    )
    task_design_check(spec)
    return spec


def task_design_check(spec: StudySpec) -> None:
    """Refuse design options the study's task cannot run (``StudyTask.refuses``, ``displays``),
    naming the spec field."""
    task = study_task(spec.task)
    given = {
        "phases.learning_items": spec.learning_items > 0,
        "phases.pretest": spec.pretest,
        "quality.attention_checks": spec.attention_checks > 0,
        "candidates.mode": spec.n_candidates > 0,
    }
    for path, why in task.refuses.items():
        if given.get(path):
            raise SpecError(path, f"{why} (task: {task.name})")
    explaining = [arm for arm in spec.conditions if not arm.is_baseline]
    for k, arm in enumerate(spec.conditions):
        if arm.method and not task.judges_explanations:
            raise SpecError(
                f"arms[{k}].method", f"only rating and preference studies compare methods (task: {task.name})"
            )
        if arm.method and arm.is_baseline:
            raise SpecError(f"arms[{k}].method", "the baseline arm shows no explanation")
    if len(explaining) < task.min_explanation_arms:
        raise SpecError(
            "arms",
            f"task {task.name} compares explanations: it needs at least {task.min_explanation_arms} arms with views",
        )
    if spec.explanation_display not in task.displays:
        raise SpecError(
            "explanations.display",
            f"task {task.name} shows {' or '.join(task.displays)}, got {spec.explanation_display!r}",
        )


def modality_names_check(value: Any, *, model: RegisteredModel, path: str = "modality_names") -> dict[str, str]:
    """What participant pages call each input: a mapping of the model's modalities to short
    display names ("the table", "the note"); a blank name keeps the default of its kind."""
    from annotations.selectors.wording import MODALITY_NAME_MAX

    if value in (None, ""):
        return {}
    if not isinstance(value, Mapping):
        raise SpecError(path, f"must be a mapping of modality: name, got {type(value).__name__}")
    unknown = sorted(str(key) for key in set(value) - set(model.modalities))
    if unknown:
        raise SpecError(
            f"{path}.{unknown[0]}",
            f"model '{model.name}' has no modality '{unknown[0]}'; its modalities: {', '.join(model.modalities)}",
        )
    out = {}
    for modality in model.modalities:
        name = " ".join(_str(value, modality, f"{path}.{modality}", "", max_length=MODALITY_NAME_MAX).split())
        if name:
            out[modality] = name
    return out


def _interaction_types(filters: Mapping, *, model: RegisteredModel, dataset: Dataset) -> tuple[str, ...] | None:
    """``items.filters.interaction_type``: M2Lens types read from the latest finished model report
    of the model on the dataset (annotations/services/model_reports.py), which must exist."""
    from annotations.selectors.model_reports import model_latest_done_report
    from workers.engine.report.options import INTERACTION_TYPES  # no torch

    path = "items.filters.interaction_type"
    value = filters.get("interaction_type")
    if value in (None, [], ""):
        return None
    values = [value] if isinstance(value, str) else value
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        raise SpecError(path, f"must be a list of interaction types, got {value!r}")
    unknown = [v for v in values if v not in INTERACTION_TYPES]
    if unknown:
        raise SpecError(path, f"unknown interaction type {unknown[0]!r}; known: {', '.join(INTERACTION_TYPES)}")
    if model_latest_done_report(model=model, dataset=dataset) is None:
        raise SpecError(
            path,
            f"needs a finished model report of model '{model.name}' on dataset '{dataset.name}' "
            f"(the Model reports page, or manage.py quantify --model '{model.name}' --dataset "
            f"'{dataset.name}')",
        )
    return tuple(dict.fromkeys(values))


def dataset_shortfall(*, dataset: Dataset, n_items: int, learning_items: int, attention_checks: int) -> str:
    """Why ``dataset`` is too small for this design ("" when it is large enough): the test
    pool, the learning items and the attention-check items are disjoint."""
    available = dataset.items.count()
    needed = n_items + max(0, learning_items) + max(0, attention_checks)
    if needed <= available:
        return ""
    parts = [f"{n_items} test items"] + [
        f"{count} {what}"
        for count, what in ((learning_items, "learning items"), (attention_checks, "attention-check items"))
        if count
    ]
    return (
        f"dataset '{dataset.name}' has {available} items, fewer than the {needed} this design needs "
        f"({' + '.join(parts)})"
    )


def _owned(model_class, owner, data: Mapping, key: str):
    name = _str(data, key, key)
    found = model_class.objects.filter(owner=owner, name=name).first()
    if found is None:
        known = list(model_class.objects.filter(owner=owner).values_list("name", flat=True)[:20])
        raise SpecError(key, f"you have no {key} named {name!r}; yours: {', '.join(known) or 'none'}")
    return found


def study_spec_load(*, path: Path) -> Any:
    """Read a spec file: YAML (``.yaml``/``.yml``) or JSON. Raises SpecError('file', …)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise SpecError("file", f"cannot read it: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        line = exc.object.count(b"\n", 0, exc.start) + 1
        raise SpecError("file", f"line {line}: not UTF-8 text (byte 0x{exc.object[exc.start]:02x})") from None
    try:
        if Path(path).suffix.lower() == ".json":
            return json.loads(text)
        import yaml

        return yaml.safe_load(text)
    except Exception as exc:  # noqa: BLE001 - any parser error is the file's fault
        kind = "JSON" if Path(path).suffix.lower() == ".json" else "YAML"
        raise SpecError("file", f"not valid {kind}: {exc}") from None
