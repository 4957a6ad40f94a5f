"""Dashboard routes. Include next to the researcher pages:
``path("", include("annotations.urls_dashboard"))`` in ``mmeval/urls.py``."""

from django.urls import path

from annotations import views_dashboard as views

urlpatterns = [
    path("studies/<int:pk>/dashboard/", views.study_dashboard, name="study-dashboard"),
    path("studies/<int:pk>/dashboard/progress.json", views.study_dashboard_progress, name="study-dashboard-progress"),
    path("studies/<int:pk>/exports/<str:what>.csv", views.study_dashboard_export, name="study-dashboard-export"),
]
