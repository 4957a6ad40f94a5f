"""Researcher JSON API (Django REST framework; token or session auth; OpenAPI schema at
``/api/schema/``). Thin: specs are checked by ``services.spec``, studies created, precomputed and
launched by ``services.studies``, read by the selectors, analysed by ``services.analysis``.

Visibility: a researcher sees the studies they own and those shared with them
(``Study.collaborators``); any other study answers 404, as if it did not exist. Changing a study
(precompute, launch) is for its owner: a collaborator gets 403.
"""

from __future__ import annotations

from drf_spectacular.openapi import AutoSchema
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import NotFound, PermissionDenied
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response

from annotations.downloads import study_export_response
from annotations.selectors.exports import EXPORTS
from annotations.selectors.rationale_exports import RATIONALE_EXPORTS
from annotations.selectors.studies import study_progress, user_studies
from annotations.serializers import (
    ErrorSerializer,
    ExportLinksSerializer,
    ProgressSerializer,
    StudySerializer,
    export_links,
)
from annotations.services.analysis import AnalysisUnavailable, study_report_get
from annotations.services.precompute import precompute_start
from annotations.services.spec import SpecError, study_spec_parse
from annotations.services.studies import StudyError, study_create_from_spec, study_launch

SPEC_EXAMPLE = {
    "name": "Does IG help?",
    "dataset": "shapes",
    "model": "fusion",
    "seed": 7,
    "arms": [{"name": "baseline", "views": []}, {"name": "ig", "views": ["heatmap", "tokens"]}],
    "items": {"n": 40, "per_participant": 10, "raters_per_item": 3},
    "explanations": {"method": "integrated_gradients"},
    "quality": {
        "attention_checks": 2,
        "min_rt_ms": 1500,
        "exclusion_rules": {"max_attention_failures": 0, "max_fast_share": 0.5},
    },
}


def _spectacular(view_method):
    """Make ``extend_schema`` build on drf-spectacular's AutoSchema for this method, whatever
    DRF's ``DEFAULT_SCHEMA_CLASS`` says (it reads the base from the method's ``schema``)."""
    view_method.schema = AutoSchema
    return view_method


class StudyViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Studies visible to the signed-in researcher."""

    schema = AutoSchema()
    serializer_class = StudySerializer
    permission_classes = [IsAuthenticated]

    def get_queryset(self):
        return (
            user_studies(user=self.request.user)
            .select_related("owner", "dataset", "model")
            .prefetch_related("conditions")
            .order_by("-created_at", "-pk")
        )

    def _owned(self):
        study = self.get_object()
        if study.owner_id != self.request.user.pk:
            raise PermissionDenied("only the study's owner can do this")
        return study

    @extend_schema(summary="List your studies and those shared with you")
    @_spectacular
    def list(self, request, *args, **kwargs):
        return super().list(request, *args, **kwargs)

    @extend_schema(summary="One study")
    @_spectacular
    def retrieve(self, request, *args, **kwargs):
        return super().retrieve(request, *args, **kwargs)

    @extend_schema(
        summary="Create a draft study from a spec",
        description="The body is a study spec, the same format as `manage.py launch_study` reads (see "
        "annotations/services/spec.py). Dataset and model are named; they must be yours. Then "
        "POST precompute/, wait for `progress.precompute.status == done`, and POST launch/.",
        request=OpenApiTypes.OBJECT,
        examples=[OpenApiExample("spec", value=SPEC_EXAMPLE, request_only=True)],
        responses={201: StudySerializer, 400: ErrorSerializer},
    )
    @_spectacular
    def create(self, request, *args, **kwargs):
        try:
            spec = study_spec_parse(data=request.data, owner=request.user)
            study = study_create_from_spec(owner=request.user, spec=spec)
        except SpecError as exc:
            return Response({"detail": str(exc), "field": exc.field}, status=status.HTTP_400_BAD_REQUEST)
        except StudyError as exc:
            return Response({"detail": str(exc)}, status=status.HTTP_400_BAD_REQUEST)
        study = self.get_queryset().get(pk=study.pk)
        return Response(self.get_serializer(study).data, status=status.HTTP_201_CREATED)

    @extend_schema(
        summary="Start (or resume) precompute: predictions, item sampling, explanations",
        request=None,
        responses={
            202: ProgressSerializer,
            400: ErrorSerializer,
            403: ErrorSerializer,
            503: OpenApiResponse(
                ErrorSerializer,
                description=(
                    "The task queue did not answer; the job is kept and handed "
                    "over again automatically (or POST again)."
                ),
            ),
        },
    )
    @action(detail=True, methods=["post"], url_path="precompute", url_name="precompute")
    @_spectacular
    def precompute(self, request, pk=None):
        study = self._owned()
        try:
            job = precompute_start(study=study)
        except StudyError as exc:
            return Response({"detail": str(exc)}, status=status.HTTP_400_BAD_REQUEST)
        if job.dispatch_error:
            return Response(
                {"detail": job.dispatch_error},
                status=status.HTTP_503_SERVICE_UNAVAILABLE,
                headers={"Retry-After": "30"},
            )
        return Response(study_progress(study=study), status=status.HTTP_202_ACCEPTED)

    @extend_schema(
        summary="Launch a ready study (creates the rater slots; idempotent)",
        request=None,
        responses={200: StudySerializer, 400: ErrorSerializer, 403: ErrorSerializer},
    )
    @action(detail=True, methods=["post"], url_path="launch", url_name="launch")
    @_spectacular
    def launch(self, request, pk=None):
        study = self._owned()
        try:
            study_launch(study=study)
        except StudyError as exc:
            return Response({"detail": str(exc)}, status=status.HTTP_400_BAD_REQUEST)
        return Response(self.get_serializer(self.get_queryset().get(pk=study.pk)).data)

    @extend_schema(summary="Precompute and response progress per arm", responses={200: ProgressSerializer})
    @action(detail=True, methods=["get"], url_path="progress", url_name="progress")
    @_spectacular
    def progress(self, request, pk=None):
        return Response(study_progress(study=self.get_object()))

    @extend_schema(
        summary="The analysis: every number with and without the pre-registered exclusions",
        description="Simulation accuracy per arm (two-way cluster bootstrap intervals), effects against the "
        "baseline (bootstrap interval, permutation p-value), pre/post gain, agreement (Krippendorff's "
        "alpha, Fleiss' kappa, Dawid-Skene), calibration, time on task, exclusions, and automatic "
        "metrics vs human accuracy. The same numbers as `manage.py analyze --json`, the dashboard "
        "and the summary export; recomputable from the responses and items exports.",
        parameters=[
            OpenApiParameter("n_resamples", int, description="bootstrap resamples (default 1000, 100-5000)"),
            OpenApiParameter("n_permutations", int, description="permutations (default 1000, 100-5000)"),
        ],
        responses={200: OpenApiTypes.OBJECT, 409: OpenApiResponse(ErrorSerializer, description="nothing to analyse")},
    )
    @action(detail=True, methods=["get"], url_path="analysis", url_name="analysis")
    @_spectacular
    def analysis(self, request, pk=None):
        study = self.get_object()
        try:
            n_resamples = _bounded(request.query_params.get("n_resamples"))
            n_permutations = _bounded(request.query_params.get("n_permutations"))
        except ValueError as exc:
            return Response({"detail": str(exc)}, status=status.HTTP_400_BAD_REQUEST)
        try:
            report = study_report_get(study=study, n_resamples=n_resamples, n_permutations=n_permutations)
        except AnalysisUnavailable as exc:
            return Response({"detail": f"no analysis yet: {exc}"}, status=status.HTTP_409_CONFLICT)
        return Response(report)

    @extend_schema(summary="Download links of the CSV exports", responses={200: ExportLinksSerializer})
    @action(detail=True, methods=["get"], url_path="exports", url_name="exports")
    @_spectacular
    def exports(self, request, pk=None):
        return Response(export_links(study=self.get_object(), request=request))

    @extend_schema(
        summary="Download one CSV export (streamed)",
        parameters=[OpenApiParameter("what", str, OpenApiParameter.PATH, enum=[*EXPORTS])],
        responses={(200, "text/csv"): OpenApiTypes.STR, 409: ErrorSerializer},
    )
    @_spectacular
    def export(self, request, pk=None, what: str = "responses"):
        """Routed by ``urls_api`` (``studies/<pk>/exports/<what>.csv``, no trailing slash)."""
        study = self.get_object()
        if what not in (*EXPORTS, *RATIONALE_EXPORTS):
            raise NotFound(f"no export named {what!r}; exports: {', '.join(EXPORTS)}")
        try:
            return study_export_response(study=study, what=what, filename_prefix="study")
        except (ValueError, AnalysisUnavailable) as exc:
            return Response({"detail": str(exc)}, status=status.HTTP_409_CONFLICT)


def _bounded(raw: str | None, *, low: int = 100, high: int = 5000) -> int | None:
    """A count from the query string; ``None`` (the service default) when absent."""
    if raw in (None, ""):
        return None
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"expected a whole number, got {raw!r}") from None
    if not low <= value <= high:
        raise ValueError(f"must be between {low} and {high}, got {value}")
    return value
