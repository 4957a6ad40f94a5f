import re

from django import forms

from annotations.models import Condition, Dataset, RegisteredModel
from annotations.selectors.studies import user_datasets, user_models
from annotations.services.spec import COUNT_MAX, SEED_MAX
from annotations.study_tasks import COUNTERFACTUAL, FORWARD, STUDY_TASKS, TASK_CHOICES
from workers.engine.edit_kinds import EDIT_KINDS  # no torch
from workers.engine.report.options import INTERACTION_TYPES  # no torch

VIEW_CHOICES = [(c.value, c.label) for c in Condition.View]


class DatasetUploadForm(forms.Form):
    name = forms.CharField(max_length=100)
    archive = forms.FileField(
        help_text="A .zip with one .jsonl file and the media it names, or a .jsonl with inline modalities only."
    )

    def clean_archive(self):
        upload = self.cleaned_data["archive"]
        refusal = getattr(upload, "refusal", "")  # set by mmeval.uploads when over MMEVAL_UPLOAD_MAX_BYTES
        if refusal:
            raise forms.ValidationError(refusal[0].upper() + refusal[1:] + ".")
        return upload


class ModelRegisterForm(forms.Form):
    name = forms.CharField(max_length=100)
    adapter_path = forms.CharField(
        max_length=300, help_text="package.module:Factory, importable by the server and the workers."
    )
    check_dataset = forms.ModelChoiceField(
        queryset=Dataset.objects.none(), help_text="The first item of this dataset is run through the model."
    )

    def __init__(self, *args, user, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["check_dataset"].queryset = user_datasets(user=user)


ARM_ROWS = 5
ARM_DEFAULTS = [("baseline", []), ("heatmap+tokens", ["heatmap", "tokens"])]
# Spec field (services/spec.py) -> form field, so a spec error lands next to its input.
SPEC_TO_FIELD = {
    "name": "name",
    "task": "task",
    "phases.pretest": "pretest",
    "title": "public_title",
    "dataset": "dataset",
    "model": "model",
    "seed": "seed",
    "items.n": "n_items",
    "items.per_participant": "items_per_participant",
    "items.raters_per_item": "raters_per_item",
    "items.filters.confidence": "confidence_min",
    "items.filters.interaction_strength": "interaction_min",
    "items.filters.interaction_type": "interaction_types",
    "candidates.mode": "candidate_mode",
    "counterfactual": "counterfactual_edits",
    "counterfactual.edits": "counterfactual_edits",
    "counterfactual.k": "counterfactual_k",
    "counterfactual.swaps": "counterfactual_swaps",
    "candidates.k": "n_candidates",
    "candidates.distractors": "n_distractors",
    "explanations.method": "explanation_method",
    "explanations.interaction_method": "interaction_method",
    "explanations.display": "explanation_display",
    "time_limit_minutes": "lease_minutes",
    "phases.consent": "consent_text",
    "phases.instructions": "instructions",
    "phases.learning_items": "learning_items",
    "quality.attention_checks": "attention_checks",
    "quality.min_rt_ms": "min_rt_ms",
    "codes.completed": "completion_code",
    "codes.screened_out": "screened_out_code",
    "codes.partial": "partial_code",
}

ARM_FIELD = re.compile(r"arms\[(\d+)\]\.(name|views)")


class StudyForm(forms.Form):
    """The study designer. Its fields are the spec fields of services/spec.py; the form only
    turns them into a spec, which the same parser as ``launch_study`` checks."""

    name = forms.CharField(max_length=200, help_text="Internal: only researchers see it.")
    public_title = forms.CharField(
        max_length=200,
        required=False,
        label="Title shown to participants",
        help_text="Keep the hypothesis out of it. Blank: a neutral title.",
    )
    dataset = forms.ModelChoiceField(queryset=Dataset.objects.none())
    model = forms.ModelChoiceField(queryset=RegisteredModel.objects.none())
    task = forms.ChoiceField(
        choices=TASK_CHOICES,
        initial=FORWARD,
        required=False,
        help_text="Verification: participants see the model's answer and its explanation and say whether it is "
        "right; no practice items or warm-up, and the predicted class's explanation. Counterfactual: they see the "
        "input, the model's answer and its explanation, then an edited input, and predict the model's answer on it "
        "(every valid answer offered; no practice items). Rationale: participants mark the evidence for the right "
        "answer; no practice items, warm-up, attention checks or explanations.",
    )
    counterfactual_edits = forms.MultipleChoiceField(
        choices=[(kind, kind.replace("_", " ")) for kind in EDIT_KINDS],
        required=False,
        widget=forms.CheckboxSelectMultiple,
        label="Edits (counterfactual task)",
        help_text="modality baseline: one input replaced by the model's blank reference; top k removed: the k most "
        "attributed patches or words removed; word swap: a word from your list swapped; adapter: the model's own "
        "edits. None ticked: the first two.",
    )
    counterfactual_k = forms.IntegerField(
        min_value=1, max_value=64, required=False, label="k (most attributed parts removed)", initial=3
    )
    counterfactual_swaps = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 3}),
        label="Word swaps",
        help_text="One 'old -> new' pair a line; an item gets the first pair whose word its text holds.",
    )
    seed = forms.IntegerField(
        min_value=-SEED_MAX,
        max_value=SEED_MAX,
        initial=0,
        help_text="Every random choice (items, arms, orders) derives from it.",
    )
    n_items = forms.IntegerField(
        min_value=1,
        max_value=COUNT_MAX,
        initial=40,
        label="Test items in the study",
        help_text="Half the model got right, half it got wrong.",
    )
    items_per_participant = forms.IntegerField(min_value=1, max_value=COUNT_MAX, initial=10)
    raters_per_item = forms.IntegerField(min_value=1, max_value=COUNT_MAX, initial=3, label="Raters per item per arm")
    confidence_min = forms.FloatField(required=False, min_value=0, max_value=1, label="Model confidence from")
    confidence_max = forms.FloatField(required=False, min_value=0, max_value=1, label="to")
    interaction_min = forms.FloatField(
        required=False,
        min_value=0,
        max_value=1,
        label="Interaction strength from",
        help_text="|dividend| / (|effect image| + |effect text| + |dividend|)",
    )
    interaction_max = forms.FloatField(required=False, min_value=0, max_value=1, label="to")
    interaction_types = forms.MultipleChoiceField(
        required=False,
        widget=forms.CheckboxSelectMultiple,
        label="Interaction types only",
        choices=[(t, t) for t in INTERACTION_TYPES],
        help_text="M2Lens types from the latest model report of this model on this dataset. None ticked: any type.",
    )
    candidate_mode = forms.ChoiceField(
        choices=[("top_k", "The model's top-k (plus distractors)"), ("all", "Every label")], initial="top_k"
    )
    n_candidates = forms.IntegerField(min_value=1, max_value=COUNT_MAX, initial=4, label="k", required=False)
    n_distractors = forms.IntegerField(
        min_value=0,
        max_value=COUNT_MAX,
        initial=0,
        label="Distractors",
        required=False,
        help_text="Random other labels added to the top-k.",
    )
    explanation_method = forms.CharField(
        max_length=50, initial="integrated_gradients", help_text="Captum method for heatmaps, tokens and share bars."
    )
    interaction_method = forms.ChoiceField(
        choices=[
            ("second_order", "Second-order (MultiViz)"),
            ("integrated_hessians", "Integrated Hessians"),
            ("perturbation", "Pairwise perturbation"),
        ],
        initial="second_order",
    )
    explanation_display = forms.ChoiceField(
        choices=[
            ("all_candidates", "One explanation per candidate"),
            ("predicted_unlabelled", "The predicted class's explanation, unlabelled"),
        ],
        initial="all_candidates",
    )
    lease_minutes = forms.IntegerField(min_value=1, max_value=COUNT_MAX, initial=60, label="Time limit (minutes)")
    consent_text = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), required=False)
    instructions = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), required=False)
    modality_names = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 2}),
        required=False,
        label="What participants call each input",
        help_text='One per line, modality: name, e.g. "tabular: the measurements". Blank: the picture, '
        "the question, the table, the series, the recording.",
    )
    learning_items = forms.IntegerField(
        min_value=0, max_value=COUNT_MAX, initial=4, help_text="Shown with the model's answer first."
    )
    pretest = forms.BooleanField(required=False, label="Pre-test (the test items first, without explanations)")
    survey = forms.BooleanField(required=False, initial=True, label="Post-survey (helpfulness 1–5 + comment)")
    attention_checks = forms.IntegerField(
        min_value=0, max_value=COUNT_MAX, initial=1, label="Attention checks per participant"
    )
    min_rt_ms = forms.IntegerField(
        min_value=0,
        max_value=COUNT_MAX,
        initial=0,
        label="Minimum response time (ms)",
        help_text="Faster answers are flagged.",
    )
    max_attention_failures = forms.IntegerField(
        min_value=0, max_value=COUNT_MAX, required=False, label="Exclude above this many failed checks"
    )
    max_fast_share = forms.FloatField(
        min_value=0, max_value=1, required=False, label="Exclude above this share of too-fast answers"
    )
    min_test_responses = forms.IntegerField(
        min_value=0, max_value=COUNT_MAX, required=False, label="Exclude below this many test answers"
    )
    min_median_client_rt_ms = forms.IntegerField(
        min_value=0,
        max_value=COUNT_MAX,
        required=False,
        label="Exclude below this median browser-measured time (ms)",
    )
    max_blur_count = forms.IntegerField(
        min_value=0, max_value=COUNT_MAX, required=False, label="Exclude after leaving the page more often than this"
    )
    max_hidden_ms = forms.IntegerField(
        min_value=0, max_value=COUNT_MAX, required=False, label="Exclude above this total time hidden (ms)"
    )
    screen_out_at_attention_failures = forms.IntegerField(
        min_value=0,
        max_value=COUNT_MAX,
        initial=0,
        required=False,
        label="Screen out at this many failed checks (0: never)",
    )
    completion_code = forms.CharField(max_length=32, required=False, help_text="Blank: a random code.")
    screened_out_code = forms.CharField(max_length=32, required=False, help_text="Blank: a random code.")
    partial_code = forms.CharField(
        max_length=32,
        required=False,
        label="Partial-completion code",
        help_text="For those whose time ran out after some answers (MTurk: submitted with outcome=partial). "
        "Blank: a random code.",
    )

    def __init__(self, *args, user, task: str | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["dataset"].queryset = user_datasets(user=user)
        self.fields["model"].queryset = user_models(user=user)
        if not self.is_bound and task in STUDY_TASKS:  # /studies/new?task=…: that task's default design
            self.initial.update(task=task, **self.task_designs()[task]["fields"])
        for k in range(ARM_ROWS):
            name, views = ARM_DEFAULTS[k] if k < len(ARM_DEFAULTS) else ("", [])
            self.fields[f"arm_{k}_name"] = forms.CharField(
                max_length=100, required=False, initial=name, label=f"Arm {k + 1} name"
            )
            self.fields[f"arm_{k}_views"] = forms.MultipleChoiceField(
                choices=VIEW_CHOICES,
                required=False,
                initial=views,
                widget=forms.CheckboxSelectMultiple,
                label="Views (none: the baseline)",
            )

    SECTIONS = [
        (
            "Items",
            [
                "n_items",
                "items_per_participant",
                "raters_per_item",
                "confidence_min",
                "confidence_max",
                "interaction_min",
                "interaction_max",
                "interaction_types",
            ],
        ),
        (
            "Candidate answers and explanations",
            [
                "candidate_mode",
                "n_candidates",
                "n_distractors",
                "explanation_method",
                "interaction_method",
                "explanation_display",
            ],
        ),
        (
            "Counterfactual edits (counterfactual task only)",
            ["counterfactual_edits", "counterfactual_k", "counterfactual_swaps"],
        ),
        (
            "Phases",
            ["consent_text", "instructions", "modality_names", "learning_items", "pretest", "survey", "lease_minutes"],
        ),
        (
            "Quality control (pre-registered: fixed once the study is live)",
            [
                "attention_checks",
                "min_rt_ms",
                "max_attention_failures",
                "max_fast_share",
                "min_test_responses",
                "min_median_client_rt_ms",
                "max_blur_count",
                "max_hidden_ms",
                "screen_out_at_attention_failures",
                "completion_code",
                "screened_out_code",
                "partial_code",
            ],
        ),
    ]

    def clean_modality_names(self) -> dict[str, str]:
        names = {}
        for number, line in enumerate(self.cleaned_data["modality_names"].splitlines(), start=1):
            if not line.strip():
                continue
            modality, colon, name = line.partition(":")
            if not colon or not modality.strip():
                raise forms.ValidationError(f"Line {number}: write modality: name, e.g. tabular: the measurements.")
            names[modality.strip()] = name.strip()
        return names

    def task_designs(self) -> dict[str, dict]:
        """Per task, the form values it starts from and the displays it allows: the page's script
        applies them when the task changes (``static/mmeval/study_form.js``), and ``?task=`` does
        so without JavaScript."""
        paths = {path for task in STUDY_TASKS.values() for path in task.design_defaults}
        designs = {}
        for name, task in STUDY_TASKS.items():
            fields = {
                SPEC_TO_FIELD[path]: task.design_defaults.get(path, self.fields[SPEC_TO_FIELD[path]].initial)
                for path in sorted(paths)
            }
            fields["explanation_display"] = task.displays[0]
            designs[name] = {"fields": fields, "displays": list(task.displays)}
        return designs

    def head_fields(self):
        return [self[name] for name in ("name", "public_title", "dataset", "model", "task", "seed")]

    def sections(self):
        return [(title, [self[name] for name in names]) for title, names in self.SECTIONS]

    def arm_fields(self):
        return [(self[f"arm_{k}_name"], self[f"arm_{k}_views"]) for k in range(ARM_ROWS)]

    def to_spec(self) -> dict:
        """The spec dict (services/spec.py) these answers describe."""
        d = self.cleaned_data

        def some(**values):
            return {k: v for k, v in values.items() if v is not None}

        filters = some(
            confidence=[
                d["confidence_min"] if d["confidence_min"] is not None else 0.0,
                d["confidence_max"] if d["confidence_max"] is not None else 1.0,
            ]
            if d["confidence_min"] is not None or d["confidence_max"] is not None
            else None,
            interaction_strength=[
                d["interaction_min"] if d["interaction_min"] is not None else 0.0,
                d["interaction_max"] if d["interaction_max"] is not None else 1.0,
            ]
            if d["interaction_min"] is not None or d["interaction_max"] is not None
            else None,
            interaction_type=list(d["interaction_types"]) or None,
        )
        candidates = {"mode": d["candidate_mode"]}
        if d["candidate_mode"] == "top_k":
            candidates.update(k=d["n_candidates"] or 4, distractors=d["n_distractors"] or 0)
        return {
            "name": d["name"],
            "task": d["task"] or FORWARD,
            "title": d["public_title"],
            "dataset": d["dataset"].name,
            "model": d["model"].name,
            "seed": d["seed"],
            "arms": [
                {"name": d[f"arm_{k}_name"].strip(), "views": list(d[f"arm_{k}_views"])}
                for k in range(ARM_ROWS)
                if d[f"arm_{k}_name"].strip()
            ],
            "items": {
                "n": d["n_items"],
                "per_participant": d["items_per_participant"],
                "raters_per_item": d["raters_per_item"],
                "filters": filters,
            },
            "candidates": candidates,
            "explanations": {
                "method": d["explanation_method"],
                "interaction_method": d["interaction_method"],
                "display": d["explanation_display"],
            },
            "phases": {
                "consent": d["consent_text"],
                "instructions": d["instructions"],
                "learning_items": d["learning_items"],
                "pretest": d["pretest"],
                "survey": d["survey"],
            },
            "time_limit_minutes": d["lease_minutes"],
            "quality": {
                "attention_checks": d["attention_checks"],
                "min_rt_ms": d["min_rt_ms"],
                "exclusion_rules": some(
                    max_attention_failures=d["max_attention_failures"],
                    max_fast_share=d["max_fast_share"],
                    min_test_responses=d["min_test_responses"],
                    min_median_client_rt_ms=d["min_median_client_rt_ms"],
                    max_blur_count=d["max_blur_count"],
                    max_hidden_ms=d["max_hidden_ms"],
                    screen_out_at_attention_failures=d["screen_out_at_attention_failures"] or None,
                ),
            },
            "codes": some(
                completed=d["completion_code"] or None,
                screened_out=d["screened_out_code"] or None,
                partial=d["partial_code"] or None,
            ),
            "modality_names": d["modality_names"],
        } | (
            {
                "counterfactual": {
                    "edits": list(d["counterfactual_edits"]) or None,
                    "k": d["counterfactual_k"] or 3,
                    "swaps": [line for line in d["counterfactual_swaps"].splitlines() if line.strip()],
                }
            }
            if d["task"] == COUNTERFACTUAL
            else {}
        )

    @staticmethod
    def initial_for(study) -> dict:
        """The form's answers for an existing study (to edit its design)."""
        filters = study.design.get("filters") or {}
        rules = study.exclusion_rules or {}
        confidence, strength = (
            filters.get("confidence") or [None, None],
            filters.get("interaction_strength") or [None, None],
        )
        initial = {
            "name": study.name,
            "task": study.task,
            "public_title": study.public_title,
            "dataset": study.dataset_id,
            "model": study.model_id,
            "seed": study.seed,
            "n_items": study.design.get("n_items"),
            "items_per_participant": study.items_per_participant,
            "raters_per_item": study.raters_per_item,
            "confidence_min": confidence[0],
            "confidence_max": confidence[1],
            "interaction_min": strength[0],
            "interaction_max": strength[1],
            "interaction_types": filters.get("interaction_type") or [],
            "candidate_mode": "top_k" if study.n_candidates else "all",
            **{
                f"counterfactual_{key}": value
                for design in [study.design.get("counterfactual") or {}]
                for key, value in (
                    ("edits", design.get("edits") or []),
                    ("k", design.get("k") or 3),
                    ("swaps", "\n".join(f"{old} -> {new}" for old, new in design.get("swaps") or [])),
                )
            },
            "n_candidates": study.n_candidates or 4,
            "n_distractors": study.n_distractors,
            "explanation_method": study.explanation_method,
            "interaction_method": study.interaction_method,
            "explanation_display": study.explanation_display,
            "lease_minutes": study.lease_minutes,
            "consent_text": study.consent_text,
            "instructions": study.instructions,
            "modality_names": "\n".join(  # in the model's order: a JSON column keeps none
                f"{m}: {names[m]}"
                for names in [study.design.get("modality_names") or {}]
                for m in study.model.modalities
                if m in names
            ),
            "learning_items": study.learning_items,
            "pretest": study.pretest,
            "survey": study.survey,
            "attention_checks": study.attention_checks,
            "min_rt_ms": study.min_rt_ms,
            "completion_code": study.completion_code,
            "screened_out_code": study.screened_out_code,
            "partial_code": study.partial_code,
            **{
                key: rules.get(key)
                for key in (
                    "max_attention_failures",
                    "max_fast_share",
                    "min_test_responses",
                    "min_median_client_rt_ms",
                    "max_blur_count",
                    "max_hidden_ms",
                    "screen_out_at_attention_failures",
                )
            },
        }
        conditions = list(study.conditions.all())
        for k in range(ARM_ROWS):
            condition = conditions[k] if k < len(conditions) else None
            initial[f"arm_{k}_name"] = condition.name if condition else ""
            initial[f"arm_{k}_views"] = list(condition.views) if condition else []
        return initial

    def add_spec_error(self, field: str, message: str) -> None:
        target = "modality_names" if field.startswith("modality_names") else SPEC_TO_FIELD.get(field)
        arm = ARM_FIELD.fullmatch(field)
        if arm:  # the spec numbers the filled arm rows only
            filled = [k for k in range(ARM_ROWS) if self.cleaned_data.get(f"arm_{k}_name", "").strip()]
            index = int(arm.group(1))
            if index < len(filled):
                target = f"arm_{filled[index]}_{arm.group(2)}"
        if target in self.fields:
            self.add_error(target, message)
        else:
            self.add_error(None, f"{field}: {message}")


class ResponseForm(forms.Form):
    guess = forms.CharField(max_length=200)
    confidence = forms.IntegerField(min_value=1, max_value=5)
