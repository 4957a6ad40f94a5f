"""Researcher API routes. Include under ``api/``:
``path("api/", include("annotations.urls_api"))`` in ``mmeval/urls.py``.

* ``GET/POST studies/`` — list / create from a spec
* ``GET studies/<pk>/`` and ``progress/``, ``analysis/``, ``exports/``,
  ``exports/<responses|items|participants|summary>.csv``
* ``POST studies/<pk>/precompute/``, ``POST studies/<pk>/launch/``
* ``GET schema/`` — the OpenAPI 3 schema (YAML; ``?format=json`` for JSON)
* ``POST token/`` — exchange username and password for an API token
"""

from django.urls import include, path
from drf_spectacular.openapi import AutoSchema
from drf_spectacular.views import SpectacularAPIView
from rest_framework.authtoken.views import ObtainAuthToken
from rest_framework.routers import SimpleRouter

from annotations.api import StudyViewSet


# Each view names drf-spectacular's AutoSchema itself, so the schema works whatever DRF's
# DEFAULT_SCHEMA_CLASS says.
class SchemaView(SpectacularAPIView):
    schema = None  # not part of the schema it serves


class TokenView(ObtainAuthToken):
    """Exchange a username and password for an API token."""

    schema = AutoSchema()

router = SimpleRouter()
router.register("studies", StudyViewSet, basename="api-study")

SCHEMA_SETTINGS = {
    "TITLE": "mmeval researcher API",
    "DESCRIPTION": "Studies of multimodal model explanations: create from a spec, precompute, launch, watch "
                   "progress, read the analysis, download CSV exports. Authenticate with "
                   "`Authorization: Token <key>` (POST /api/token/ with username and password).",
    "VERSION": "1",
}

urlpatterns = [
    path("studies/<int:pk>/exports/<str:what>.csv", StudyViewSet.as_view({"get": "export"}),
         name="api-study-export"),
    path("", include(router.urls)),
    path("schema/", SchemaView.as_view(custom_settings=SCHEMA_SETTINGS), name="api-schema"),
    path("token/", TokenView.as_view(), name="api-token"),
]
