from django import forms

from annotations.models import Condition, Dataset, RegisteredModel

VIEW_CHOICES = [(c.value, c.label) for c in Condition.View]


class DatasetUploadForm(forms.Form):
    name = forms.CharField(max_length=100)
    archive = forms.FileField(help_text="A .zip with one .jsonl file and the media it names, or a .jsonl "
                                        "with inline modalities only.")


class ModelRegisterForm(forms.Form):
    name = forms.CharField(max_length=100)
    adapter_path = forms.CharField(max_length=300, help_text="package.module:Factory, importable by the server "
                                                             "and the workers.")
    check_dataset = forms.ModelChoiceField(queryset=Dataset.objects.none(),
                                           help_text="The first item of this dataset is run through the model.")

    def __init__(self, *args, user, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["check_dataset"].queryset = Dataset.objects.filter(owner=user)


class StudyForm(forms.Form):
    name = forms.CharField(max_length=200)
    dataset = forms.ModelChoiceField(queryset=Dataset.objects.none())
    model = forms.ModelChoiceField(queryset=RegisteredModel.objects.none())
    explanation_views = forms.MultipleChoiceField(
        choices=VIEW_CHOICES, initial=["heatmap", "tokens"], widget=forms.CheckboxSelectMultiple,
        help_text="What the explanation arm shows. A no-explanation baseline arm is always added.")
    n_items = forms.IntegerField(min_value=1, initial=40, label="Items in the study")
    items_per_participant = forms.IntegerField(min_value=1, initial=10)
    raters_per_item = forms.IntegerField(min_value=1, initial=3, label="Raters per item per arm")
    n_candidates = forms.IntegerField(min_value=0, initial=4, help_text="The model's top-k answers offered; 0 offers every label.")
    seed = forms.IntegerField(initial=0)
    lease_minutes = forms.IntegerField(min_value=1, initial=60, label="Time limit (minutes)")
    consent_text = forms.CharField(widget=forms.Textarea(attrs={"rows": 4}), required=False)
    instructions = forms.CharField(widget=forms.Textarea(attrs={"rows": 4}), required=False)

    def __init__(self, *args, user, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["dataset"].queryset = Dataset.objects.filter(owner=user)
        self.fields["model"].queryset = RegisteredModel.objects.filter(owner=user)


class ResponseForm(forms.Form):
    guess = forms.CharField(max_length=200)
    confidence = forms.IntegerField(min_value=1, max_value=5)
