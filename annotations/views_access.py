"""What a signed-in researcher may open, for every researcher-side view (the study pages and
the dashboard): a study they own or collaborate on; anything else is a 404, so that a
stranger cannot even learn that a study number exists."""

from __future__ import annotations

from django.shortcuts import get_object_or_404

from annotations.models import Study
from annotations.selectors.studies import user_studies


def study_for_researcher(request, pk: int) -> Study:
    """The study ``pk`` if the signed-in researcher may see it (with its model and dataset
    loaded), else ``Http404``."""
    return get_object_or_404(user_studies(user=request.user).select_related("model", "dataset"), pk=pk)
