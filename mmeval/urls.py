from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import path
from django.views.generic import RedirectView

from annotations import views_participant as participant
from annotations import views_researcher as researcher

urlpatterns = [
    path("", RedirectView.as_view(pattern_name="studies", permanent=False)),
    path("admin/", admin.site.urls),
    path("accounts/login/", auth_views.LoginView.as_view(template_name="researcher/login.html"), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("robots.txt", participant.robots),
    # Researcher
    path("studies/", researcher.study_list, name="studies"),
    path("studies/new/", researcher.study_new, name="study-new"),
    path("studies/<int:pk>/", researcher.study_detail, name="study-detail"),
    path("studies/<int:pk>/progress.json", researcher.study_progress_json, name="study-progress"),
    path("studies/<int:pk>/precompute/", researcher.study_precompute, name="study-precompute"),
    path("studies/<int:pk>/launch/", researcher.study_launch_view, name="study-launch"),
    path("studies/<int:pk>/close/", researcher.study_close_view, name="study-close"),
    path("studies/<int:pk>/invites/", researcher.study_invites, name="study-invites"),
    path("studies/<int:pk>/export.csv", researcher.study_export_csv, name="study-export"),
    path("studies/<int:pk>/items/<int:item_pk>/", researcher.study_item_detail, name="study-item"),
    path("studies/<int:pk>/items/<int:item_pk>/image", researcher.study_item_media, name="study-item-image"),
    path("studies/<int:pk>/explanations/<int:explanation_pk>.png", researcher.study_explanation_media,
         name="study-explanation-image"),
    path("datasets/", researcher.dataset_list, name="datasets"),
    path("models/", researcher.model_list, name="models"),
    # Participant
    path("i/<str:token>/", participant.invite, name="participant-invite"),
    path("s/<str:public_id>/", participant.entry, name="participant-entry"),
    path("s/<str:public_id>/consent/", participant.consent, name="participant-consent"),
    path("s/<str:public_id>/instructions/", participant.instructions, name="participant-instructions"),
    path("s/<str:public_id>/item/", participant.item, name="participant-item"),
    path("s/<str:public_id>/item/<uuid:assignment_id>/", participant.submit, name="participant-submit"),
    path("s/<str:public_id>/a/<uuid:assignment_id>/input/<str:modality>", participant.input_media,
         name="participant-input"),
    path("s/<str:public_id>/a/<uuid:assignment_id>/explanation/<int:index>", participant.explanation_media,
         name="participant-explanation"),
    path("s/<str:public_id>/done/", participant.done, name="participant-done"),
]
