"""Researcher API routes. Include under ``api/``:
``path("api/", include("annotations.urls_api"))`` in ``mmeval/urls.py``.

* ``GET/POST studies/`` — list / create from a spec
* ``GET studies/<pk>/`` and ``progress/``, ``analysis/``, ``exports/``,
  ``exports/<responses|items|participants|summary>.csv``
* ``POST studies/<pk>/precompute/``, ``POST studies/<pk>/launch/``
* ``GET/POST model-reports/``, ``GET model-reports/<pk>/``, ``progress/``, ``<table>.csv`` — model reports
* ``GET schema/`` — the OpenAPI 3 schema (YAML; ``?format=json`` for JSON); signed-in only
* ``GET docs/`` — Swagger UI over that schema, from local assets; signed-in only
* ``POST token/`` — exchange username and password for an API token (throttled like the
  sign-in page: 429 after too many wrong passwords)
"""

from axes.handlers.proxy import AxesProxyHandler
from axes.helpers import get_credentials
from django.contrib.auth.decorators import login_required
from django.urls import include, path
from drf_spectacular.openapi import AutoSchema
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from rest_framework.authtoken.views import ObtainAuthToken
from rest_framework.permissions import IsAuthenticated
from rest_framework.routers import SimpleRouter

from annotations.api import StudyViewSet
from annotations.api_model_reports import ModelReportViewSet
from mmeval.auth import lockout_response


# Each view names drf-spectacular's AutoSchema itself, so the schema works whatever DRF's
# DEFAULT_SCHEMA_CLASS says.
class SchemaView(SpectacularAPIView):
    schema = None  # not part of the schema it serves
    permission_classes = [IsAuthenticated]


class TokenView(ObtainAuthToken):
    """Exchange a username and password for an API token."""

    schema = AutoSchema()

    def post(self, request, *args, **kwargs):
        # django-axes refuses a locked-out pair inside authenticate(); say so with a 429
        # rather than DRF's generic "unable to log in".
        data = request.data if hasattr(request.data, "get") else {}
        credentials = get_credentials(data.get("username"))
        if not AxesProxyHandler.is_allowed(request._request, credentials):
            return lockout_response(request._request, None, credentials)
        return super().post(request, *args, **kwargs)


class IntegerIdRouter(SimpleRouter):
    """Study IDs are integers: the routes say so (``<int:pk>``), and the schema types them."""

    def __init__(self):
        super().__init__(use_regex_path=False)

    def get_lookup_regex(self, viewset, lookup_prefix=""):
        return f"<int:{lookup_prefix}pk>"


router = IntegerIdRouter()
router.register("studies", StudyViewSet, basename="api-study")
router.register("model-reports", ModelReportViewSet, basename="api-model-report")

urlpatterns = [
    path("studies/<int:pk>/exports/<str:what>.csv", StudyViewSet.as_view({"get": "export"}), name="api-study-export"),
    path(
        "model-reports/<int:pk>/<str:table>.csv",
        ModelReportViewSet.as_view({"get": "table"}),
        name="api-model-report-table",
    ),
    path("", include(router.urls)),
    path("schema/", SchemaView.as_view(), name="api-schema"),
    path("docs/", login_required(SpectacularSwaggerView.as_view(url_name="api-schema")), name="api-docs"),
    path("token/", TokenView.as_view(), name="api-token"),
]
