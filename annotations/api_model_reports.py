"""Model reports in the researcher API: create one (it runs on the workers), follow its progress,
read it, download its tables. Thin, like ``annotations.api``: ``services.model_reports`` checks
and starts, the selectors read. A researcher sees only their own reports; any other answers 404.
"""

from __future__ import annotations

from django.http import HttpResponse
from drf_spectacular.openapi import AutoSchema
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import NotFound
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response

from annotations.api import _spectacular
from annotations.models import Dataset, ModelReport, RegisteredModel
from annotations.selectors.model_reports import model_report_progress, user_model_reports
from annotations.serializers import ErrorSerializer
from annotations.services.model_reports import ModelReportError, model_report_create, model_report_start
from workers.engine.report.tables import TABLES, report_table_csv  # no torch

CREATE_EXAMPLE = {
    "model": "fusion",
    "dataset": "shapes",
    "slices": {
        "fields": {"shape": {"from": "text", "regex": "what colour is the (\\w+)"}, "colour": {"from": "label"}},
        "slices": {"nonred_triangle": "shape == triangle and colour != red"},
    },
    "options": {"seed": 0, "checkpoints": ["all"]},
}


class ModelReportSerializer(serializers.ModelSerializer):
    """A report: what was asked, where it stands, and (once done) the whole report."""

    status = serializers.CharField(read_only=True, help_text="queued, running, done or failed")
    model = serializers.CharField(source="model.name", read_only=True)
    dataset = serializers.CharField(source="dataset.name", read_only=True)
    train_dataset = serializers.CharField(source="train_dataset.name", read_only=True, default=None)
    progress = serializers.SerializerMethodField()
    links = serializers.SerializerMethodField()

    class Meta:
        model = ModelReport
        fields = [
            "id",
            "status",
            "model",
            "dataset",
            "train_dataset",
            "options",
            "slices",
            "progress",
            "error",
            "created_at",
            "finished_at",
            "links",
            "result",
        ]
        read_only_fields = fields

    def get_progress(self, report: ModelReport) -> dict:
        return model_report_progress(report=report)

    def get_links(self, report: ModelReport) -> dict[str, str]:
        request = self.context.get("request")

        def url(path: str) -> str:
            return request.build_absolute_uri(path) if request is not None else path

        base = f"/api/model-reports/{report.pk}/"
        return {
            "self": url(base),
            "progress": url(f"{base}progress/"),
            **{table: url(f"{base}{table}.csv") for table in TABLES},
        }


class ModelReportListSerializer(ModelReportSerializer):
    class Meta(ModelReportSerializer.Meta):
        fields = [f for f in ModelReportSerializer.Meta.fields if f != "result"]
        read_only_fields = fields


class ModelReportViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """The signed-in researcher's model reports."""

    schema = AutoSchema()
    serializer_class = ModelReportSerializer
    permission_classes = [IsAuthenticated]

    def get_queryset(self):
        return user_model_reports(user=self.request.user).order_by("-created_at", "-pk")

    def get_serializer_class(self):
        return ModelReportListSerializer if self.action == "list" else ModelReportSerializer

    @extend_schema(summary="List your model reports (without their results)")
    @_spectacular
    def list(self, request, *args, **kwargs):
        return super().list(request, *args, **kwargs)

    @extend_schema(summary="One model report, with the whole report once it is done")
    @_spectacular
    def retrieve(self, request, *args, **kwargs):
        return super().retrieve(request, *args, **kwargs)

    @extend_schema(
        summary="Compute a model report (on the workers)",
        description="Model and datasets by name; `slices` is the slices document ({fields, slices}, see "
        "workers/engine/demo/slices.yaml), `options` the report options "
        "(workers/engine/report/options.py; `checkpoints: [all]` adds the learning process). Bad input "
        "answers 400 naming the field (and, in an expression, the column). A second request for the "
        "same model and dataset while one runs returns that one. Poll `progress/` until `status` is "
        "`done`, then GET the report.",
        request=OpenApiTypes.OBJECT,
        examples=[OpenApiExample("report", value=CREATE_EXAMPLE, request_only=True)],
        responses={202: ModelReportListSerializer, 400: ErrorSerializer},
    )
    @_spectacular
    def create(self, request, *args, **kwargs):
        data = request.data if isinstance(request.data, dict) else {}
        unknown = sorted(set(data) - {"model", "dataset", "train_dataset", "slices", "options"})
        if unknown:
            return _bad(
                f"unknown field {unknown[0]!r}; fields: model, dataset, train_dataset, slices, options", unknown[0]
            )
        try:
            model = _owned(RegisteredModel, request.user, data, "model")
            dataset = _owned(Dataset, request.user, data, "dataset")
            train = _owned(Dataset, request.user, data, "train_dataset") if data.get("train_dataset") else None
            report = model_report_create(
                owner=request.user,
                model=model,
                dataset=dataset,
                slices=data.get("slices"),
                options=data.get("options"),
                train_dataset=train,
            )
            model_report_start(report=report)
        except ModelReportError as exc:
            return _bad(str(exc), exc.field)
        report = self.get_queryset().get(pk=report.pk)
        return Response(
            ModelReportListSerializer(report, context={"request": request}).data, status=status.HTTP_202_ACCEPTED
        )

    @extend_schema(summary="Status and progress of a report", responses={200: OpenApiTypes.OBJECT})
    @action(detail=True, methods=["get"], url_path="progress", url_name="progress")
    @_spectacular
    def progress(self, request, pk=None):
        return Response(model_report_progress(report=self.get_object()))

    @extend_schema(
        summary="Download one table of a finished report (CSV)",
        parameters=[OpenApiParameter("table", str, OpenApiParameter.PATH, enum=[*TABLES])],
        responses={
            (200, "text/csv"): OpenApiTypes.STR,
            409: OpenApiResponse(ErrorSerializer, description=("the report has not finished")),
        },
    )
    @_spectacular
    def table(self, request, pk=None, table: str = "items"):
        """Routed by ``urls_api`` (``model-reports/<pk>/<table>.csv``)."""
        report = self.get_object()
        if table not in TABLES:
            raise NotFound(f"no table named {table!r}; tables: {', '.join(TABLES)}")
        if report.status != ModelReport.Status.DONE or not report.result:
            return Response(
                {"detail": f"report {report.pk} is {report.status}, not done"}, status=status.HTTP_409_CONFLICT
            )
        response = HttpResponse(report_table_csv(report.result, table), content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = f'attachment; filename="model-report-{report.pk}-{table}.csv"'
        return response


def _bad(message: str, field: str) -> Response:
    body = {"detail": message}
    if field:
        body["field"] = field
    return Response(body, status=status.HTTP_400_BAD_REQUEST)


def _owned(model_class, owner, data: dict, key: str):
    name = data.get(key)
    if not isinstance(name, str) or not name:
        raise ModelReportError(
            f"{key}: give the name of one of your {model_class._meta.verbose_name_plural}", field=key
        )
    found = model_class.objects.filter(owner=owner, name=name).first()
    if found is None:
        known = list(model_class.objects.filter(owner=owner).values_list("name", flat=True)[:20])
        raise ModelReportError(
            f"{key}: you have no {model_class._meta.verbose_name} named {name!r}; yours: {', '.join(known) or 'none'}",
            field=key,
        )
    return found
