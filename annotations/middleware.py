"""Database trouble becomes a polite "please retry" page, never a 500.

When the database connection is cut (Postgres restarted or failed over, a backend ended with
``pg_terminate_backend``, a network blip) or the database cannot be reached for a moment,
Django raises ``OperationalError`` or ``InterfaceError`` (lock and statement timeouts are
``OperationalError`` too). The participant then gets a 503 with ``Retry-After`` and a page in
the participant style that takes them back to where they were. Nothing acknowledged is lost:
an answer is acknowledged only by the redirect that follows its commit; a request that failed
before its commit rolled back, and sending it again is safe because every participant write
is idempotent (an answer committed just before the connection broke is found on the retry).

Errors raised in a view reach ``process_exception``; errors raised by a middleware further
in (the session being saved, say) are turned into a 500 by Django before they come back out,
so ``got_request_exception`` marks the request and ``__call__`` swaps that 500 for the page.
Keep this middleware before ``SessionMiddleware`` so that it sees the latter's responses.
``SessionMiddleware`` here is Django's, except that a session save cut off by such an error
(Django's ``SessionInterrupted``, a bare 400) gives the same page.
"""

from __future__ import annotations

import logging
import re
import sys

from django.contrib.sessions.exceptions import SessionInterrupted
from django.contrib.sessions.middleware import SessionMiddleware as DjangoSessionMiddleware
from django.core.signals import got_request_exception
from django.db import InterfaceError, OperationalError, connections
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.template.loader import render_to_string

from annotations.selectors.participants import participant_frame_policy, participant_title_cached

logger = logging.getLogger(__name__)

RETRY_AFTER_SECONDS = 5
DATABASE_ERRORS = (OperationalError, InterfaceError)
_MARK = "_mmeval_database_error"
_STUDY_PATH = re.compile(r"^/s/([A-Za-z0-9_-]+)/")


def _mark_database_error(sender, request: HttpRequest | None = None, **kwargs) -> None:
    exception = sys.exc_info()[1]
    if request is not None and isinstance(exception, DATABASE_ERRORS):
        setattr(request, _MARK, True)


got_request_exception.connect(_mark_database_error, dispatch_uid="mmeval-database-unavailable")


def _close_broken_connections() -> None:
    """Drop connections that broke, so that the next request opens a fresh one (Django does
    this at the end of a request too, but not under the test client). Never inside a
    transaction someone else opened."""
    for connection in connections.all(initialized_only=True):
        if not connection.in_atomic_block:
            connection.close_if_unusable_or_obsolete()


def database_unavailable_response(request: HttpRequest) -> HttpResponse:
    """503 + Retry-After: JSON for the API, else the participant-style page. Rendered with no
    request context, so nothing on it touches the session or the database."""
    if request.path.startswith("/api/"):
        response = JsonResponse(
            {"detail": "The database is not reachable at the moment. Please retry shortly."}, status=503
        )
    else:
        study_path = _STUDY_PATH.match(request.path)
        # From a participant page, go back through the entry page: it leads to where they are now.
        again = study_path.group(0) if study_path else request.get_full_path()
        html = render_to_string(
            "participant/retry.html",
            {
                "participant_title": participant_title_cached(
                    study_public_id=study_path.group(1) if study_path else None
                ),
                "again": again,
                "retry_after": RETRY_AFTER_SECONDS,
                "auto_retry": request.method == "GET",
                "was_post": request.method == "POST",
            },
        )
        response = HttpResponse(html, status=503)
    response["Retry-After"] = str(RETRY_AFTER_SECONDS)
    response["Cache-Control"] = "no-store"
    # Participant pages may be framed by MTurk (views_participant.participant_page): so may this one.
    response.xframe_options_exempt = True
    response["Content-Security-Policy"] = participant_frame_policy()
    return response


class SessionMiddleware(DjangoSessionMiddleware):
    """Django's, except that a session whose save was cut off (``SessionInterrupted``: the
    connection broke while its row was updated, or another request deleted it) gets the retry
    page instead of a bare 400. Sending the request again is safe, as for any database error."""

    def process_response(self, request: HttpRequest, response: HttpResponse) -> HttpResponse:
        try:
            return super().process_response(request, response)
        except SessionInterrupted as exc:
            logger.warning("session not saved during %s %s: %s", request.method, request.path, exc.__context__ or exc)
            _close_broken_connections()
            return database_unavailable_response(request)


class DatabaseUnavailableMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if getattr(request, _MARK, False) and response.status_code == 500:
            _close_broken_connections()
            return database_unavailable_response(request)
        return response

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if not isinstance(exception, DATABASE_ERRORS):
            return None
        logger.warning("database unavailable during %s %s: %s", request.method, request.path, exception)
        _close_broken_connections()
        return database_unavailable_response(request)
