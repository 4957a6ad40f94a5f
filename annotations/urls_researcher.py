from django.urls import path

from annotations import views_attention, views_model_reports
from annotations import views_researcher as views

urlpatterns = [
    path("studies/", views.study_list, name="studies"),
    path("studies/new/", views.study_new, name="study-new"),
    path("studies/<int:pk>/", views.study_detail, name="study-detail"),
    path("studies/<int:pk>/edit/", views.study_edit, name="study-edit"),
    path("studies/<int:pk>/delete/", views.study_delete_view, name="study-delete"),
    path("studies/<int:pk>/progress.json", views.study_progress_json, name="study-progress"),
    path("studies/<int:pk>/precompute/", views.study_precompute, name="study-precompute"),
    path("studies/<int:pk>/launch/", views.study_launch_view, name="study-launch"),
    path("studies/<int:pk>/close/", views.study_close_view, name="study-close"),
    path("studies/<int:pk>/preview/", views.study_preview, name="study-preview"),
    path("studies/<int:pk>/exclusion-rules/", views.study_exclusion_rules, name="study-exclusion-rules"),
    path("studies/<int:pk>/invites/", views.study_invites, name="study-invites"),
    path("studies/<int:pk>/export.csv", views.study_export_csv, name="study-export"),
    path("studies/<int:pk>/items/<int:item_pk>/", views.study_item_detail, name="study-item"),
    path("studies/<int:pk>/items/<int:item_pk>/image", views.study_item_media, name="study-item-image"),
    path(
        "studies/<int:pk>/items/<int:item_pk>/attention/",
        views_attention.study_item_attention,
        name="study-item-attention",
    ),
    path(
        "studies/<int:pk>/items/<int:item_pk>/attention.json",
        views_attention.study_item_attention_json,
        name="study-item-attention-json",
    ),
    path(
        "studies/<int:pk>/explanations/<int:explanation_pk>.png",
        views.study_explanation_media,
        name="study-explanation-image",
    ),
    path(
        "studies/<int:pk>/explanations/<int:explanation_pk>/<str:view>.png",
        views.study_explanation_media,
        name="study-explanation-view",
    ),
    path("datasets/", views.dataset_list, name="datasets"),
    path("models/", views.model_list, name="models"),
    path("model-reports/", views_model_reports.model_report_list, name="model-reports"),
    path("model-reports/<int:pk>/", views_model_reports.model_report_detail, name="model-report"),
    path(
        "model-reports/<int:pk>/progress.json",
        views_model_reports.model_report_progress_json,
        name="model-report-progress",
    ),
    path("model-reports/<int:pk>/report.json", views_model_reports.model_report_json, name="model-report-json"),
    path("model-reports/<int:pk>/<str:table>.csv", views_model_reports.model_report_csv, name="model-report-csv"),
    path("model-reports/<int:pk>/delete/", views_model_reports.model_report_delete_view, name="model-report-delete"),
]
