"""The "new model report" form: which model, which dataset, the slices file and the options.
Checks beyond field types are the service's (``services.model_reports``)."""

from __future__ import annotations

from django import forms

from annotations.models import Dataset, RegisteredModel
from annotations.selectors.studies import user_datasets, user_models

SLICES_EXAMPLE = """fields:
  shape: {from: text, regex: "what colour is the (circle|square|triangle)"}
  colour: {from: label}
slices:
  nonred_triangle: shape == triangle and colour != red"""


class ModelReportForm(forms.Form):
    model = forms.ModelChoiceField(queryset=RegisteredModel.objects.none(), empty_label=None)
    dataset = forms.ModelChoiceField(queryset=Dataset.objects.none(), empty_label=None)
    slices = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 6, "placeholder": SLICES_EXAMPLE, "spellcheck": "false"}),
        label="Bias slices (YAML)",
        help_text="Subsets compared with the rest of the data: expressions over the item fields id, label, each "
        "modality, prediction, correct, confidence, interaction, dominant, and fields you derive.",
    )
    checkpoints = forms.CharField(
        required=False,
        max_length=2000,
        label="Checkpoints",
        help_text="Learning process over the adapter's checkpoints: 'all', or names separated by commas. "
        "Empty: no learning section.",
    )
    train_dataset = forms.ModelChoiceField(
        queryset=Dataset.objects.none(),
        required=False,
        label="Training items",
        help_text="For the training losses; default: the adapter's own training_items().",
    )
    options = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 3, "placeholder": "{seed: 0, permutations: 3}", "spellcheck": "false"}),
        label="Options (YAML)",
        help_text="seed, noise_levels, noise_samples, permutations, emap, emap_max_items, pid, pid_clusters, "
        "pair, group_pairs, gain_threshold, strength_threshold, n_resamples, …",
    )

    def __init__(self, *args, user, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["model"].queryset = user_models(user=user)
        self.fields["dataset"].queryset = user_datasets(user=user)
        self.fields["train_dataset"].queryset = user_datasets(user=user)

    def checkpoint_names(self) -> list[str] | None:
        names = [c.strip() for c in (self.cleaned_data.get("checkpoints") or "").split(",") if c.strip()]
        return names or None

    def add_service_error(self, field: str, message: str) -> None:
        """An error of the service, under the form field it concerns."""
        target = (
            "slices"
            if field.startswith(("slices", "fields"))
            else "options"
            if field.startswith("options")
            else field
            if field in self.fields
            else None
        )
        self.add_error(target, message)
