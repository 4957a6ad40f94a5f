"""JSON shapes of the researcher API. Output only: they hold no business logic. A study is
created from a spec, which ``annotations.services.spec.study_spec_parse`` checks (the same
checks as ``manage.py launch_study`` and the web form)."""

from __future__ import annotations

from django.urls import reverse
from rest_framework import serializers

from annotations.models import Condition, Study
from annotations.selectors.exports import EXPORTS


class ConditionSerializer(serializers.ModelSerializer):
    class Meta:
        model = Condition
        fields = ["name", "views", "is_baseline", "method"]


class StudySerializer(serializers.ModelSerializer):
    """A study as a researcher who may see it reads it, with the links to its resources."""

    owner = serializers.CharField(source="owner.username", read_only=True)
    is_owner = serializers.SerializerMethodField()
    dataset = serializers.CharField(source="dataset.name", read_only=True)
    model = serializers.CharField(source="model.name", read_only=True)
    conditions = ConditionSerializer(many=True, read_only=True)
    links = serializers.SerializerMethodField()

    class Meta:
        model = Study
        fields = [
            "id",
            "public_id",
            "name",
            "status",
            "task",
            "owner",
            "is_owner",
            "dataset",
            "model",
            "seed",
            "items_per_participant",
            "raters_per_item",
            "n_candidates",
            "explanation_method",
            "interaction_method",
            "explanation_display",
            "learning_items",
            "pretest",
            "attention_checks",
            "min_rt_ms",
            "exclusion_rules",
            "conditions",
            "created_at",
            "launched_at",
            "links",
        ]
        read_only_fields = fields

    def get_is_owner(self, study: Study) -> bool:
        request = self.context.get("request")
        return bool(request and request.user.pk == study.owner_id)

    def get_links(self, study: Study) -> dict[str, str]:
        return study_links(study=study, request=self.context.get("request"))


def study_links(*, study: Study, request=None) -> dict[str, str]:
    """Absolute URLs (relative without a request) of a study's API resources."""

    def url(name: str, **kwargs) -> str:
        path = reverse(name, kwargs={"pk": study.pk, **kwargs})
        return request.build_absolute_uri(path) if request is not None else path

    links = {
        "self": url("api-study-detail"),
        "progress": url("api-study-progress"),
        "analysis": url("api-study-analysis"),
        "exports": url("api-study-exports"),
        "launch": url("api-study-launch"),
        "precompute": url("api-study-precompute"),
    }
    return links


class ExportLinksSerializer(serializers.Serializer):
    """One download URL per export (CSV, streamed)."""

    responses = serializers.URLField()
    items = serializers.URLField()
    participants = serializers.URLField()
    summary = serializers.URLField()
    codebook = serializers.URLField(help_text="Every column of the other exports: type, unit, meaning.")


def export_links(*, study: Study, request=None) -> dict[str, str]:
    out = {}
    for what in EXPORTS:
        path = reverse("api-study-export", kwargs={"pk": study.pk, "what": what})
        out[what] = request.build_absolute_uri(path) if request is not None else path
    return out


class ProgressSerializer(serializers.Serializer):
    """``annotations.selectors.studies.study_progress``: precompute and response counts per arm."""

    status = serializers.CharField()
    precompute = serializers.DictField(allow_null=True)
    items = serializers.IntegerField()
    conditions = serializers.ListField(child=serializers.DictField())
    responses = serializers.IntegerField()
    target = serializers.IntegerField()


class ErrorSerializer(serializers.Serializer):
    detail = serializers.CharField()
    field = serializers.CharField(required=False)
