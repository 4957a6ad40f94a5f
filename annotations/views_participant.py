"""Participant pages. Thin: identity comes from the session, every rule from services.

Nothing served before an answer names the model's prediction or the gold label: media go
through assignment-scoped URLs with opaque IDs, explanations are shown for every candidate
in the order recorded on the assignment, and no page carries item IDs or file names.
"""

from __future__ import annotations

from pathlib import Path

from django.conf import settings
from django.http import FileResponse, Http404, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from annotations.models import Assignment, InviteToken, Participant, Study
from annotations.selectors import explanations_for
from annotations.services.participants import (
    ParticipantError,
    SubmissionRefused,
    assignment_current,
    assignment_serve,
    participant_consent,
    participant_enter,
    participant_start_test,
    participant_sync_phase,
    response_submit,
)
from workers.engine.dataset import IMAGE_MODALITIES

PLATFORM_PARAMS = {
    Participant.Platform.PROLIFIC: ("PROLIFIC_PID", ("STUDY_ID", "SESSION_ID")),
    Participant.Platform.MTURK: ("workerId", ("assignmentId", "hitId", "turkSubmitTo")),
}


def _session_key(study: Study) -> str:
    return f"participant:{study.public_id}"


def _pending_key(study: Study) -> str:
    return f"entry:{study.public_id}"


def _participant(request, study: Study) -> Participant | None:
    public_id = request.session.get(_session_key(study))
    if not public_id:
        return None
    return Participant.objects.filter(study=study, public_id=public_id).select_related("condition", "study").first()


def _refusal(request, study: Study | None, code: str, message: str, status: int = 200):
    return render(request, "participant/message.html", {"study": study, "code": code, "message": message},
                  status=status)


def csrf_failure(request, reason=""):
    return _refusal(request, None, "forbidden", "This form has expired or was not sent from this page. "
                    "Please go back and try again.", status=403)


def _goto_phase(study: Study, participant: Participant):
    return redirect({
        Participant.Phase.CONSENT: "participant-entry",
        Participant.Phase.INSTRUCTIONS: "participant-instructions",
        Participant.Phase.TEST: "participant-item",
        Participant.Phase.DONE: "participant-done",
    }[participant.phase], public_id=study.public_id)


@require_GET
def entry(request, public_id: str):
    """Consent page. Platform parameters are remembered until the participant consents."""
    study = get_object_or_404(Study, public_id=public_id)
    participant = _participant(request, study)
    if participant is not None and participant.phase != Participant.Phase.CONSENT:
        return _goto_phase(study, participant)
    if study.status != Study.Status.LIVE:
        return _refusal(request, study, "closed", "This study is not open at the moment.")
    for platform, (id_param, extra_params) in PLATFORM_PARAMS.items():
        if request.GET.get(id_param):
            request.session[_pending_key(study)] = {
                "platform": platform, "platform_id": request.GET[id_param],
                "platform_data": {p: request.GET.get(p, "") for p in extra_params},
            }
            break
    return render(request, "participant/consent.html", {"study": study})


@require_GET
def invite(request, token: str):
    invite_token = InviteToken.objects.select_related("study").filter(token=token).first()
    if invite_token is None:
        return _refusal(request, None, "invalid", "This invitation link is not valid.", status=404)
    study = invite_token.study
    request.session[_pending_key(study)] = {"invite_token": token}
    return redirect("participant-entry", public_id=study.public_id)


@require_POST
def consent(request, public_id: str):
    study = get_object_or_404(Study, public_id=public_id)
    participant = _participant(request, study)
    if participant is None:
        pending = request.session.get(_pending_key(study)) or {}
        try:
            participant = participant_enter(
                study=study,
                platform=pending.get("platform", Participant.Platform.LINK),
                platform_id=pending.get("platform_id", ""),
                platform_data=pending.get("platform_data"),
                invite_token=pending.get("invite_token"),
            )
        except ParticipantError as exc:
            return _refusal(request, study, exc.code, str(exc))
        request.session[_session_key(study)] = str(participant.public_id)
    participant_consent(participant=participant)
    return _goto_phase(study, participant)


@require_http_methods(["GET", "POST"])
def instructions(request, public_id: str):
    study = get_object_or_404(Study, public_id=public_id)
    participant = _participant(request, study)
    if participant is None:
        return redirect("participant-entry", public_id=public_id)
    if participant.phase != Participant.Phase.INSTRUCTIONS:
        return _goto_phase(study, participant)
    if request.method == "POST":
        try:
            participant_start_test(participant=participant)
        except ParticipantError as exc:
            return _refusal(request, study, exc.code, str(exc))
        return redirect("participant-item", public_id=public_id)
    return render(request, "participant/instructions.html", {"study": study, "participant": participant})


@require_GET
def item(request, public_id: str):
    study = get_object_or_404(Study, public_id=public_id)
    participant = _participant(request, study)
    if participant is None:
        return redirect("participant-entry", public_id=public_id)
    participant = participant_sync_phase(participant=participant)
    if participant.phase != Participant.Phase.TEST:
        return _goto_phase(study, participant)
    assignment = assignment_current(participant=participant)
    if assignment is None:
        return _refusal(request, study, "expired", "The time for this study has run out. Thank you for taking part.")
    assignment_serve(assignment=assignment)
    return render(request, "participant/item.html", _item_context(study, participant, assignment))


def _item_context(study: Study, participant: Participant, assignment: Assignment) -> dict:
    views = participant.condition.views
    text_modalities = [m for m in study.model.modalities if m not in IMAGE_MODALITIES]
    image_modalities = [m for m in study.model.modalities if m in IMAGE_MODALITIES]
    explanations = explanations_for(study=study, item=assignment.item, targets=assignment.candidate_order) if views else {}
    letters = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    candidates = []
    for index, label in enumerate(assignment.candidate_order):
        explanation = explanations.get(label)
        candidates.append({
            "index": index, "key": index + 1, "letter": letters[index % 26], "label": label,
            "heatmap": "heatmap" in views and explanation is not None and bool(explanation.image_view),
            "tokens": explanation.token_view if ("tokens" in views and explanation is not None) else [],
        })
    total = participant.assignments.exclude(status=Assignment.Status.EXPIRED).count()
    answered = participant.responses.count()
    return {
        "study": study, "participant": participant, "assignment": assignment, "candidates": candidates,
        "texts": [(m, assignment.item.payload.get(m, "")) for m in text_modalities],
        "images": image_modalities, "views": views, "position": answered + 1, "total": total,
        "progress_percent": int(100 * answered / max(total, 1)), "confidence_levels": [1, 2, 3, 4, 5],
    }


@require_POST
def submit(request, public_id: str, assignment_id):
    study = get_object_or_404(Study, public_id=public_id)
    participant = _participant(request, study)
    if participant is None:
        return _refusal(request, study, "forbidden", "Your session has ended. Please open your study link again.",
                        status=403)
    try:
        response_submit(participant=participant, assignment_public_id=assignment_id,
                        guess=request.POST.get("guess", ""), confidence=request.POST.get("confidence"))
    except SubmissionRefused as exc:
        return _refusal(request, study, "refused", f"That answer was not accepted: {exc}.", status=400)
    participant.refresh_from_db(fields=["phase"])
    return _goto_phase(study, participant)


def _owned_assignment(request, public_id: str, assignment_id) -> Assignment:
    study = get_object_or_404(Study, public_id=public_id)
    participant = _participant(request, study)
    if participant is None:
        raise Http404
    return get_object_or_404(Assignment.objects.select_related("item"), public_id=assignment_id,
                             participant=participant, status=Assignment.Status.ACTIVE)


def _private_file(relative_path: str) -> FileResponse:
    path = Path(settings.MEDIA_ROOT) / relative_path
    if not relative_path or not path.is_file():
        raise Http404
    response = FileResponse(open(path, "rb"), content_type="image/png")
    response["Cache-Control"] = "private, no-store"
    return response


@require_GET
def input_media(request, public_id: str, assignment_id, modality: str):
    assignment = _owned_assignment(request, public_id, assignment_id)
    if modality not in IMAGE_MODALITIES or modality not in assignment.item.payload:
        raise Http404
    return _private_file(assignment.item.payload[modality])


@require_GET
def explanation_media(request, public_id: str, assignment_id, index: int):
    """The heatmap of candidate ``index`` in the order shown; the URL names no label."""
    assignment = _owned_assignment(request, public_id, assignment_id)
    if "heatmap" not in assignment.condition.views or index >= len(assignment.candidate_order):
        raise Http404
    study = assignment.participant.study
    explanation = explanations_for(study=study, item=assignment.item,
                                   targets=[assignment.candidate_order[index]]).get(assignment.candidate_order[index])
    if explanation is None:
        raise Http404
    return _private_file(explanation.image_view)


@require_GET
def done(request, public_id: str):
    study = get_object_or_404(Study, public_id=public_id)
    participant = _participant(request, study)
    if participant is None or participant.phase != Participant.Phase.DONE:
        return redirect("participant-entry", public_id=public_id)
    return render(request, "participant/done.html", {"study": study, "participant": participant,
                                                     "code": study.completion_code})


def robots(request):
    return HttpResponse("User-agent: *\nDisallow: /\n", content_type="text/plain")
