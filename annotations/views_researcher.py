"""Researcher pages: login required, and a study is visible only to its owner and
collaborators. Thin: forms in, services and selectors do the work."""

from __future__ import annotations

import json
from pathlib import Path

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import FileResponse, Http404, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from annotations.downloads import study_export_response
from annotations.forms import ARM_ROWS, DatasetUploadForm, ModelRegisterForm, StudyForm
from annotations.models import Study
from annotations.selectors.answers import UNDECLARED_WARNING, study_answer_options
from annotations.selectors.participants import participant_session_key
from annotations.selectors.studies import (
    label_coverage_warning,
    study_explanation,
    study_item,
    study_item_preview,
    study_item_rows,
    study_latest_job,
    study_progress,
    study_test_strata,
    user_datasets,
    user_models,
    user_studies,
)
from annotations.services.datasets import DatasetImportError, dataset_import_jsonl_upload, dataset_import_zip
from annotations.services.participants import ParticipantError, invites_create, participant_preview_start
from annotations.services.precompute import precompute_start
from annotations.services.registry import ModelRegistrationError, registered_model_create
from annotations.services.spec import SpecError, study_spec_parse
from annotations.services.studies import (
    StudyError,
    study_close,
    study_create_from_spec,
    study_delete,
    study_exclusion_rules_update,
    study_launch,
    study_update_from_spec,
)
from annotations.views_access import study_for_researcher


@login_required
def study_list(request):
    studies = user_studies(user=request.user).select_related("dataset", "model")
    return render(request, "researcher/study_list.html", {"studies": studies})


@login_required
def study_new(request):
    form = StudyForm(request.POST or None, user=request.user, task=request.GET.get("task"))
    if request.method == "POST" and form.is_valid():
        try:
            spec = study_spec_parse(data=form.to_spec(), owner=request.user)
            study = study_create_from_spec(owner=request.user, spec=spec)
        except SpecError as exc:
            form.add_spec_error(exc.field, str(exc).split(": ", 1)[-1])
        except StudyError as exc:
            form.add_error(None, str(exc))
        else:
            return redirect("study-detail", pk=study.pk)
    return render(request, "researcher/study_new.html", {"form": form})


@login_required
def study_edit(request, pk: int):
    """Change a draft's (or a precomputed study's) design, on the new-study form."""
    study = study_for_researcher(request, pk)
    if study.owner_id != request.user.pk:
        raise Http404
    if study.conditions.count() > ARM_ROWS:
        messages.error(request, f"This study has more than {ARM_ROWS} arms; change it with a spec file.")
        return redirect("study-detail", pk=pk)
    form = StudyForm(request.POST or None, user=request.user, initial=StudyForm.initial_for(study))
    if request.method == "POST" and form.is_valid():
        try:
            spec = study_spec_parse(data=form.to_spec(), owner=request.user)
            study_update_from_spec(study=study, spec=spec)
        except SpecError as exc:
            form.add_spec_error(exc.field, str(exc).split(": ", 1)[-1])
        except StudyError as exc:
            form.add_error(None, str(exc))
        else:
            messages.success(request, "Design saved. Run precompute to sample items and compute explanations.")
            return redirect("study-detail", pk=pk)
    return render(request, "researcher/study_new.html", {"form": form, "study": study})


@login_required
@require_POST
def study_delete_view(request, pk: int):
    study = study_for_researcher(request, pk)
    if study.owner_id != request.user.pk:
        raise Http404
    try:
        study_delete(study=study)
    except StudyError as exc:
        messages.error(request, str(exc))
        return redirect("study-detail", pk=pk)
    messages.success(request, f"Deleted '{study.name}'.")
    return redirect("studies")


@login_required
def study_detail(request, pk: int):
    from annotations.analysis.exclusions import EXCLUSION_RULE_HELP

    study = study_for_researcher(request, pk)
    participant_link = request.build_absolute_uri(reverse("participant-entry", args=[study.public_id]))
    return render(
        request,
        "researcher/study_detail.html",
        {
            "study": study,
            "progress": study_progress(study=study),
            "answers": study_answer_options(study=study),
            "strata": study_test_strata(study=study),
            "job": study_latest_job(study=study),
            "participant_link": participant_link,
            "conditions": study.conditions.all(),
            "items": study_item_rows(study=study, limit=200),
            "invites": study.invites.order_by("-id")[:20],
            "is_owner": study.owner_id == request.user.pk,
            "rules_text": json.dumps(study.exclusion_rules or {}, indent=2),
            "rule_help": EXCLUSION_RULE_HELP,
            "rules_locked": study.status in (Study.Status.LIVE, Study.Status.CLOSED),
            "can_preview": study.status in (Study.Status.READY, Study.Status.LIVE),
            "can_edit": study.status in (Study.Status.DRAFT, Study.Status.READY),
            "can_delete": study.status in (Study.Status.DRAFT, Study.Status.READY, Study.Status.PRECOMPUTING),
        },
    )


@login_required
@require_POST
def study_preview(request, pk: int):
    """Walk the study as a participant of one arm: a preview participant in this browser's
    session, taking no slot and recorded as platform=preview (never exported)."""
    study = study_for_researcher(request, pk)
    condition = study.conditions.filter(pk=request.POST.get("condition") or 0).first()
    try:
        participant = participant_preview_start(study=study, condition=condition)
    except ParticipantError as exc:
        messages.error(request, str(exc))
        return redirect("study-detail", pk=pk)
    request.session[participant_session_key(study=study)] = str(participant.public_id)
    return redirect("participant-entry", public_id=study.public_id)


@login_required
@require_POST
def study_exclusion_rules(request, pk: int):
    def update(study):
        try:
            rules = json.loads(request.POST.get("rules") or "{}")
        except json.JSONDecodeError as exc:
            raise StudyError(f"the exclusion rules are not valid JSON: {exc}") from None
        try:
            study_exclusion_rules_update(study=study, rules=rules)
        except SpecError as exc:
            raise StudyError(str(exc)) from None

    return _owner_action(request, pk, update, "Exclusion rules saved.")


@login_required
@require_GET
def study_progress_json(request, pk: int):
    return JsonResponse(study_progress(study=study_for_researcher(request, pk)))


def _owner_action(request, pk: int, action, success: str):
    study = study_for_researcher(request, pk)
    if study.owner_id != request.user.pk:
        raise Http404
    try:
        action(study)
    except StudyError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, success)
    return redirect("study-detail", pk=pk)


@login_required
@require_POST
def study_precompute(request, pk: int):
    def start(study):
        job = precompute_start(study=study)
        if job.dispatch_error:
            raise StudyError(job.dispatch_error)

    return _owner_action(request, pk, start, "Precompute started; progress shows below.")


@login_required
@require_POST
def study_launch_view(request, pk: int):
    return _owner_action(request, pk, lambda study: study_launch(study=study), "The study is live.")


@login_required
@require_POST
def study_close_view(request, pk: int):
    return _owner_action(request, pk, lambda study: study_close(study=study), "The study is closed.")


@login_required
@require_POST
def study_invites(request, pk: int):
    try:
        count = max(1, min(500, int(request.POST.get("count", "1"))))
    except ValueError:
        count = 1
    return _owner_action(
        request, pk, lambda study: invites_create(study=study, count=count), f"{count} invite link(s) created."
    )


@login_required
@require_GET
def study_export_csv(request, pk: int):
    return study_export_response(study=study_for_researcher(request, pk), what="responses")


@login_required
@require_GET
def study_item_detail(request, pk: int, item_pk: int):
    """The researcher's preview of one item: prediction, gold label and every explanation."""
    study = study_for_researcher(request, pk)
    preview = study_item_preview(study=study, item_pk=item_pk)
    if preview is None:
        raise Http404
    return render(request, "researcher/item_detail.html", {"study": study, **preview})


@login_required
@require_GET
def study_item_media(request, pk: int, item_pk: int):
    item = study_item(study=study_for_researcher(request, pk), item_pk=item_pk)
    return _media_file(item.payload.get("image", "") if item is not None else "")


@login_required
@require_GET
def study_explanation_media(request, pk: int, explanation_pk: int, view: str = ""):
    explanation = study_explanation(study=study_for_researcher(request, pk), explanation_pk=explanation_pk)
    if explanation is None:
        raise Http404
    return _media_file(explanation.extra_views.get(view, "") if view else explanation.image_view)


def _media_file(relative_path: str) -> FileResponse:
    path = Path(settings.MEDIA_ROOT) / relative_path
    if not relative_path or not path.is_file():
        raise Http404
    return FileResponse(open(path, "rb"), content_type="image/png")


@login_required
def dataset_list(request):
    form = DatasetUploadForm(request.POST or None, request.FILES or None)
    if request.method == "POST" and form.is_valid():
        upload = form.cleaned_data["archive"]
        importer = dataset_import_jsonl_upload if upload.name.endswith(".jsonl") else dataset_import_zip
        try:
            dataset = importer(owner=request.user, name=form.cleaned_data["name"], upload=upload)
        except DatasetImportError as exc:
            form.add_error(None, str(exc).split("\n")[0])
            for error in exc.errors[:100]:
                form.add_error("archive", error)
        else:
            messages.success(request, f"Imported {dataset.items.count()} items into '{dataset.name}'.")
            return redirect("datasets")
    status = 400 if request.method == "POST" and form.errors else 200  # a refused upload is the client's error
    datasets = list(user_datasets(user=request.user))
    return render(
        request,
        "researcher/datasets.html",
        {
            "datasets": datasets,
            "form": form,
            "any_undeclared": any(not d.n_declared for d in datasets),
            "undeclared_warning": UNDECLARED_WARNING,
        },
        status=status,
    )


@login_required
def model_list(request):
    form = ModelRegisterForm(request.POST or None, user=request.user)
    traceback_text = ""
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            model = registered_model_create(
                owner=request.user,
                name=data["name"],
                adapter_path=data["adapter_path"],
                check_dataset=data["check_dataset"],
            )
        except ModelRegistrationError as exc:
            form.add_error(None, str(exc))
            traceback_text = exc.traceback_text
        else:
            messages.success(request, f"Registered '{model.name}' with {len(model.labels)} labels.")
            warning = label_coverage_warning(dataset=data["check_dataset"], labels=model.labels)
            if warning:
                text = warning.removeprefix("warning: ")
                messages.warning(request, text[:1].upper() + text[1:])
            return redirect("models")
    return render(
        request,
        "researcher/models.html",
        {"models": user_models(user=request.user), "form": form, "traceback": traceback_text},
        status=400 if request.method == "POST" and form.errors else 200,  # a refused registration
    )
