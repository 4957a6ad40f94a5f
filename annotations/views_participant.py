"""Participant pages. Thin: identity comes from the session, every rule from services and
every read from selectors.

Nothing served before an answer names the model's prediction or the gold label: media go
through assignment-scoped URLs with opaque IDs (the candidate's place in the recorded random
order, never a label), images are sent without file names, explanations are shown for every
candidate in the order recorded on the assignment, and no page carries item IDs.

Item pages carry their pictures inside them (``data:`` URIs, selectors/inline_media.py), so
a page is one request; the media URLs below still answer, for the sound of an audio input, a
picture that could not be inlined, and anything else that asks.

Media are cheap: the item page fixes its media map on the assignment when first served
(``Assignment.media``), and a media URL is answered from that map with one indexed query
and no session: the assignment's random UUID in the URL is the capability, like the page
that embeds it. The bytes are immutable, so the browser may keep them (privately). With
``MMEVAL_MEDIA_X_ACCEL_PREFIX`` (nginx: an ``internal`` location aliasing MEDIA_ROOT) or
``MMEVAL_MEDIA_X_SENDFILE`` (Apache mod_xsendfile, lighttpd) the file is handed to the proxy
instead of streamed by Django; the proxy strips that header, so no stored name reaches the
browser.

The invariants these pages keep: docs/DESIGN.md, "Invariants and where they are held".
"""

from __future__ import annotations

import secrets
from functools import wraps
from pathlib import Path
from urllib.parse import quote

from django.conf import settings
from django.http import FileResponse, Http404, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.clickjacking import xframe_options_exempt
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from annotations.models import PUBLIC_TITLE_DEFAULT, Assignment, Participant, Study
from annotations.selectors.participants import (
    MTURK_PREVIEW_ASSIGNMENT,
    assignment_media_file,
    assignment_media_key,
    assignment_page,
    invite_token_study,
    participant_by_platform_id,
    participant_exit,
    participant_frame_policy,
    participant_session_key,
    participant_time_left,
    study_and_participant,
    study_participant_plan,
)
from annotations.selectors.wording import study_modality_words
from annotations.services.client_timing import CLIENT_TIMING_FIELDS
from annotations.services.entry_limits import EntryThrottled, entry_platform_id_admit
from annotations.services.judging import JUDGEMENT_FIELDS
from annotations.services.participants import (
    ITEM_PHASES,
    MarksRefused,
    ParticipantError,
    SubmissionRefused,
    assignment_serve,
    learning_acknowledge,
    participant_consent,
    participant_enter,
    participant_next_item,
    participant_resume,
    participant_start,
    participant_survey_submit,
    participant_sync_phase,
    participant_title_remember,
    response_submit,
)
from annotations.sessions import session_value_authoritative
from annotations.study_tasks import study_task
from mmeval.auth import client_ip

PLATFORM_PARAMS = {
    Participant.Platform.PROLIFIC: ("PROLIFIC_PID", ("STUDY_ID", "SESSION_ID")),
    Participant.Platform.MTURK: ("workerId", ("assignmentId", "hitId", "turkSubmitTo")),
}


def participant_page(view):
    """MTurk shows ExternalQuestion pages in a frame on its own site: allow exactly that
    (CSP frame-ancestors) instead of Django's blanket X-Frame-Options DENY. No page is cached,
    so the back button never shows an item that was already answered."""

    @wraps(view)
    def wrapped(request, *args, **kwargs):
        response = view(request, *args, **kwargs)
        response["Content-Security-Policy"] = participant_frame_policy()
        return response

    return never_cache(xframe_options_exempt(wrapped))


def _link_key(study: Study) -> str:
    return f"link:{study.public_id}"


def _pending_key(study: Study) -> str:
    return f"entry:{study.public_id}"


def _study_and_participant(request, public_id: str) -> tuple[Study, Participant | None]:
    """The study of the URL (404 if unknown) and this browser's participant of it, if any."""
    try:
        return study_and_participant(
            study_public_id=public_id,
            participant_public_id=session_value_authoritative(
                session=request.session, key=participant_session_key(study_public_id=public_id)
            ),
        )
    except Study.DoesNotExist:
        raise Http404 from None


def _session_adopt(request, study: Study, participant: Participant) -> None:
    """Tie this browser's session to the participant under a new session key: a key known
    before (planted by a link, left on a shared machine) names nobody (session fixation)."""
    request.session[participant_session_key(study=study)] = str(participant.public_id)
    request.session.cycle_key()


SESSION_ENDED = "Your session has ended. Please open your study link again."


def participant_required(view):
    """The preamble of every page after consent: hands ``(study, participant)`` of this browser
    to the view. A browser without a participant is sent to the study's entry page when it
    asks for a page (GET), and refused with 403 when it sends a form: an answer posted after
    the session ended must not start anything. Each view then writes out its own phase guard,
    because those guards are what keep one phase's page from showing another's."""

    @wraps(view)
    def wrapped(request, public_id: str, *args, **kwargs):
        study, participant = _study_and_participant(request, public_id)
        if participant is None:
            if request.method == "GET":
                return redirect("participant-entry", public_id=public_id)
            return _refusal(request, study, "forbidden", SESSION_ENDED, status=403)
        return view(request, study, participant, *args, **kwargs)

    return wrapped


def _refusal(request, study: Study | None, code: str, message: str, status: int = 200):
    return render(
        request,
        "participant/message.html",
        {"study": study, "code": code, "message": message, "participant_title": PUBLIC_TITLE_DEFAULT},
        status=status,
    )


def _throttled(request, study: Study, exc: EntryThrottled):
    refused = _refusal(request, study, exc.code, str(exc), status=429)
    refused["Retry-After"] = str(exc.retry_after)
    return refused


def csrf_failure(request, reason=""):
    return _refusal(
        request,
        None,
        "forbidden",
        "This form has expired or was not sent from this page. Please go back and try again.",
        status=403,
    )


def _goto_phase(study: Study, participant: Participant):
    return redirect(
        {
            Participant.Phase.CONSENT: "participant-entry",
            Participant.Phase.INSTRUCTIONS: "participant-instructions",
            Participant.Phase.PRETEST: "participant-item",
            Participant.Phase.LEARNING: "participant-item",
            Participant.Phase.TEST: "participant-item",
            Participant.Phase.SURVEY: "participant-survey",
            Participant.Phase.DONE: "participant-done",
        }[participant.phase],
        public_id=study.public_id,
    )


def _platform_entry(request) -> dict | None:
    for platform, (id_param, extra_params) in PLATFORM_PARAMS.items():
        if request.GET.get(id_param):
            return {
                "platform": platform,
                "platform_id": request.GET[id_param][:200],
                "platform_data": {p: request.GET.get(p, "")[:500] for p in extra_params},
            }
    return None


@participant_page
@require_GET
def entry(request, public_id: str):
    """Consent page. Platform parameters are remembered until the participant consents; a
    returning crowd worker resumes where they stopped; an MTurk preview only describes the
    task and creates nothing."""
    study, participant = _study_and_participant(request, public_id)
    if participant is not None and participant.phase != Participant.Phase.CONSENT:
        return _goto_phase(study, participant)
    if request.GET.get("assignmentId") == MTURK_PREVIEW_ASSIGNMENT:
        if study.status != Study.Status.LIVE:
            return _refusal(request, study, "closed", "This study is not open at the moment.")
        return render(
            request,
            "participant/mturk_preview.html",
            {"study": study, "plan": study_participant_plan(study=study), "words": study_modality_words(study=study)},
        )
    pending = _platform_entry(request)
    if pending is not None and participant is None:
        try:
            entry_platform_id_admit(platform=pending["platform"], platform_id=pending["platform_id"])
        except EntryThrottled as exc:
            return _throttled(request, study, exc)
        # A returning crowd worker carries on, even after the study stopped taking new people.
        returning = participant_by_platform_id(
            study=study, platform=pending["platform"], platform_id=pending["platform_id"]
        )
        if returning is not None:
            try:
                participant_resume(participant=returning, platform_data=pending["platform_data"])
            except ParticipantError as exc:
                return _refusal(request, study, exc.code, str(exc))
            _session_adopt(request, study, returning)
            if returning.phase != Participant.Phase.CONSENT:
                return _goto_phase(study, returning)
            participant = returning
    if study.status != Study.Status.LIVE and participant is None:
        return _refusal(request, study, "closed", "This study is not open at the moment.")
    if pending is not None and participant is None:
        request.session[_pending_key(study)] = pending
    # A per-browser ID for open-link entries: a double click on "I agree" resumes one
    # participant instead of creating two.
    request.session.setdefault(_link_key(study), secrets.token_urlsafe(16))
    participant_title_remember(study=study)
    return render(
        request,
        "participant/consent.html",
        {"study": study, "participant": participant, "words": study_modality_words(study=study)},
    )


@require_GET
def invite(request, token: str):
    study = invite_token_study(token=token)
    if study is None:
        return _refusal(request, None, "invalid", "This invitation link is not valid.", status=404)
    request.session[_pending_key(study)] = {"invite_token": token}
    return redirect("participant-entry", public_id=study.public_id)


@participant_page
@require_POST
def consent(request, public_id: str):
    study, participant = _study_and_participant(request, public_id)
    if participant is None:
        pending = request.session.get(_pending_key(study)) or {}
        link_id = request.session.get(_link_key(study), "")
        try:
            participant = participant_enter(
                study=study,
                platform=pending.get("platform", Participant.Platform.LINK),
                platform_id=pending.get("platform_id", f"link:{link_id}" if link_id else ""),
                platform_data=pending.get("platform_data"),
                invite_token=pending.get("invite_token"),
                address=client_ip(request),
            )
        except EntryThrottled as exc:
            return _throttled(request, study, exc)
        except ParticipantError as exc:
            return _refusal(request, study, exc.code, str(exc))
        _session_adopt(request, study, participant)
    participant_consent(participant=participant)
    return _goto_phase(study, participant)


@participant_page
@require_http_methods(["GET", "POST"])
@participant_required
def instructions(request, study: Study, participant: Participant):
    if participant.phase != Participant.Phase.INSTRUCTIONS:
        return _goto_phase(study, participant)
    if request.method == "POST":
        try:
            participant_start(participant=participant)
        except ParticipantError as exc:
            return _refusal(request, study, exc.code, str(exc))
        return _goto_phase(study, participant)
    return render(
        request,
        study_task(study.task).instructions_template,
        {
            "study": study,
            "participant": participant,
            "plan": study_participant_plan(study=study),
            "words": study_modality_words(study=study),
        },
    )


@participant_page
@require_GET
@participant_required
def item(request, study: Study, participant: Participant):
    """The participant's next item, whatever its phase (pre-test, learning or test)."""
    return _item_page(request, study, participant)


def _item_page(request, study: Study, participant: Participant, *, kept: dict | None = None, status: int = 200):
    """The next item's page; ``kept``: a refused answer shown again on it (``error``, ``marked``)."""
    assignment = participant_next_item(participant=participant)
    if participant.phase not in ITEM_PHASES:
        return _goto_phase(study, participant)
    if assignment is None:
        return _refusal(request, study, "expired", "The time for this study has run out. Thank you for taking part.")
    page = assignment_page(participant=participant, assignment=assignment)
    assignment_serve(assignment=assignment, media=page.pop("media"))
    context = {
        "study": study,
        "participant": participant,
        "assignment": assignment,
        "time_left": participant_time_left(participant=participant, assignment=assignment),
        **page,
        **(kept or {}),
    }
    template = (
        "participant/learning.html"
        if assignment.phase == Assignment.Phase.LEARNING
        else study_task(study.task).template
    )
    return render(request, template, context, status=status)


@participant_page
@require_POST
@participant_required
def submit(request, study: Study, participant: Participant, assignment_id):
    try:
        response_submit(
            participant=participant,
            assignment_public_id=assignment_id,
            guess=request.POST.get("guess", ""),
            confidence=request.POST.get("confidence"),
            verdict=request.POST.get("verdict"),
            rationale=request.POST.getlist("mark"),
            judgement={name: request.POST.get(name) for name in JUDGEMENT_FIELDS},
            client_timing={name: request.POST.get(name) for name in CLIENT_TIMING_FIELDS},
        )
    except SubmissionRefused as exc:
        if isinstance(exc, MarksRefused):  # a rationale's marks: the page again, with them kept
            kept = {"error": f"That answer was not accepted: {exc}.", "marked": request.POST.getlist("mark")}
            return _item_page(request, study, participant, kept=kept, status=400)
        return _refusal(
            request,
            study,
            "refused",
            f"That answer was not accepted: {exc}.",
            status=409 if "already answered" in str(exc) else 400,
        )
    return _goto_phase(study, participant)


@participant_page
@require_POST
@participant_required
def learn(request, study: Study, participant: Participant, assignment_id):
    try:
        learning_acknowledge(participant=participant, assignment_public_id=assignment_id)
    except SubmissionRefused as exc:
        return _refusal(request, study, "refused", f"That was not accepted: {exc}.", status=400)
    return _goto_phase(study, participant)


@participant_page
@require_http_methods(["GET", "POST"])
@participant_required
def survey(request, study: Study, participant: Participant):
    participant = participant_sync_phase(participant=participant)
    if participant.phase != Participant.Phase.SURVEY:
        return _goto_phase(study, participant)
    error = ""
    if request.method == "POST":
        try:
            participant_survey_submit(
                participant=participant,
                helpfulness=request.POST.get("helpfulness"),
                comment=request.POST.get("comment", ""),
            )
        except SubmissionRefused as exc:
            error = str(exc)
        else:
            return _goto_phase(study, participant)
    return render(
        request,
        "participant/survey.html",
        {
            "study": study,
            "participant": participant,
            "error": error,
            "levels": [1, 2, 3, 4, 5],
            "comment": request.POST.get("comment", ""),
            "asks_helpfulness": bool(participant.condition.views),
            "time_left": participant_time_left(participant=participant),
        },
        status=400 if error else 200,
    )


def _media_response(relative_path: str) -> HttpResponse:
    """The stored PNG (or WAV), with no file name (a stored name is an identifier), cacheable by this
    browser only: what a media URL serves never changes. Handed to the proxy when a setting
    says so (module docstring), else streamed."""
    if not relative_path:
        raise Http404
    # Stored names end in the kind of file they are (the importer re-encodes audio as WAV).
    content_type = "audio/wav" if relative_path.endswith(".wav") else "image/png"
    accel_prefix = getattr(settings, "MMEVAL_MEDIA_X_ACCEL_PREFIX", "")
    if accel_prefix:
        response = HttpResponse(content_type=content_type)
        response["X-Accel-Redirect"] = accel_prefix.rstrip("/") + "/" + quote(relative_path)
    elif getattr(settings, "MMEVAL_MEDIA_X_SENDFILE", False):
        response = HttpResponse(content_type=content_type)
        response["X-Sendfile"] = str(Path(settings.MEDIA_ROOT) / relative_path)
    else:
        try:
            handle = open(Path(settings.MEDIA_ROOT) / relative_path, "rb")
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise Http404 from None
        response = FileResponse(handle, content_type=content_type)
        if "Content-Disposition" in response:
            del response["Content-Disposition"]
    response["Cache-Control"] = "private, max-age=86400, immutable"
    return response


@require_GET
def input_media(request, public_id: str, assignment_id, modality: str):
    return _media_response(
        assignment_media_file(
            study_public_id=public_id, assignment_public_id=assignment_id, key=assignment_media_key(modality=modality)
        )
    )


@require_GET
def view_media(request, public_id: str, assignment_id, view: str, index: int):
    """One rendered view of the explanation at ``index`` in the order shown."""
    return _media_response(
        assignment_media_file(
            study_public_id=public_id,
            assignment_public_id=assignment_id,
            key=assignment_media_key(view=view, index=index),
        )
    )


@participant_page
@require_GET
@participant_required
def done(request, study: Study, participant: Participant):
    participant = participant_sync_phase(participant=participant)
    if participant.phase != Participant.Phase.DONE:
        return _goto_phase(study, participant)
    exit_info = participant_exit(participant=participant)
    if exit_info["timed_out"]:
        return render(request, "participant/timed_out.html", {"study": study, "participant": participant, **exit_info})
    if exit_info["partial"]:
        return render(request, "participant/partial.html", {"study": study, "participant": participant, **exit_info})
    if exit_info["redirect"]:
        return redirect(exit_info["redirect"])
    return render(request, "participant/done.html", {"study": study, "participant": participant, **exit_info})


def robots(request):
    return HttpResponse("User-agent: *\nDisallow: /\n", content_type="text/plain")
