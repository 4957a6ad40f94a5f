from django.urls import path

from annotations import views_participant as views

urlpatterns = [
    path("robots.txt", views.robots),
    path("i/<str:token>/", views.invite, name="participant-invite"),
    path("s/<str:public_id>/", views.entry, name="participant-entry"),
    path("s/<str:public_id>/consent/", views.consent, name="participant-consent"),
    path("s/<str:public_id>/instructions/", views.instructions, name="participant-instructions"),
    path("s/<str:public_id>/item/", views.item, name="participant-item"),
    path("s/<str:public_id>/item/<uuid:assignment_id>/", views.submit, name="participant-submit"),
    path("s/<str:public_id>/learn/<uuid:assignment_id>/", views.learn, name="participant-learn"),
    path("s/<str:public_id>/a/<uuid:assignment_id>/input/<str:modality>", views.input_media, name="participant-input"),
    path(
        "s/<str:public_id>/a/<uuid:assignment_id>/v/<str:view>/<int:index>", views.view_media, name="participant-view"
    ),
    path("s/<str:public_id>/survey/", views.survey, name="participant-survey"),
    path("s/<str:public_id>/done/", views.done, name="participant-done"),
]
