"""The researcher's attention page (VL-InterpreT's views, issue 21): one item of a study with
the study's model, its stored attention per layer and head, and one matrix at a time as JSON
for the page's script. Thin: ``selectors/attention.py`` reads, ``workers.engine.attention_views``
draws; the request never computes attention (precompute's attention stage stored it)."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import Http404, JsonResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from annotations.selectors.attention import item_attention_matrix, item_attention_page
from annotations.views_access import study_for_researcher


@login_required
@require_GET
def study_item_attention(request, pk: int, item_pk: int):
    study = study_for_researcher(request, pk)
    page = item_attention_page(study=study, item_pk=item_pk)
    if page is None:
        raise Http404
    return render(request, "researcher/attention.html", {"study": study, **page})


@login_required
@require_GET
def study_item_attention_json(request, pk: int, item_pk: int):
    """``?stream=joint&layer=1&head=0``: one ``(U, U)`` matrix (``layer=rollout``,
    ``head=mean`` allowed); a bad choice is a 400 naming it."""
    study = study_for_researcher(request, pk)
    try:
        matrix = item_attention_matrix(
            study=study,
            item_pk=item_pk,
            stream=request.GET.get("stream", ""),
            layer=request.GET.get("layer", ""),
            head=request.GET.get("head", "mean"),
        )
    except ValueError as exc:
        return JsonResponse({"error": str(exc)}, status=400)
    if matrix is None:
        raise Http404
    return JsonResponse({"matrix": matrix})
