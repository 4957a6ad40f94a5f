"""The project's URLs plus the API and dashboard routes, as the lead will include them in
mmeval/urls.py (``path("api/", include("annotations.urls_api"))`` and
``path("", include("annotations.urls_dashboard"))``). Tests select it with
``pytest.mark.urls("tests.api.urls")``, so they pass before and after that merge."""

from django.urls import include, path

from mmeval.urls import urlpatterns as project_urlpatterns

urlpatterns = [
    path("api/", include("annotations.urls_api")),
    path("", include("annotations.urls_dashboard")),
    *project_urlpatterns,
]
