"""Project middleware: the health endpoints, static files, and a 400 for NUL bytes in
request parameters."""

from __future__ import annotations

import codecs
import os
from collections.abc import Callable

from django.conf import settings
from django.core.exceptions import BadRequest
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest, JsonResponse, QueryDict
from whitenoise.middleware import WhiteNoiseMiddleware

from mmeval import health

HEALTH_VIEWS = {"/healthz": health.healthz, "/readyz": health.readyz}


class HealthCheckMiddleware:
    """Answers ``/healthz`` and ``/readyz`` first: no host validation (a probe uses the
    container's address), no https redirect, no session, no database unless asked."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        view = HEALTH_VIEWS.get(request.path_info.rstrip("/"))
        if view is not None and request.method in ("GET", "HEAD"):
            return view(request)
        return self.get_response(request)


class StaticFilesMiddleware(WhiteNoiseMiddleware):
    """whitenoise. Outside production it serves from the source folders
    (WHITENOISE_USE_FINDERS), so a STATIC_ROOT never collected into is expected there."""

    def add_files(self, root, prefix=None):
        if not settings.PRODUCTION and not os.path.isdir(root):
            return
        super().add_files(root, prefix)


class RejectNulBytesMiddleware:
    """A NUL byte in a query parameter or form field is refused with 400 and a message.
    Postgres text cannot hold NUL, so such a value would otherwise fail deep in a view as a
    500 (a PROLIFIC_PID, a workerId, a survey comment). So is a form in a charset that
    cannot be read (unknown, or UTF-7, which Django refuses to decode)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        charset = request.content_params.get("charset") if request.method not in ("GET", "HEAD", "OPTIONS") else None
        if charset and not _charset_readable(charset):
            return _bad_request(request, f"the form's charset '{charset[:40]}' cannot be read; send it as UTF-8")
        try:
            form = self._form(request)
        except (BadRequest, LookupError, UnicodeDecodeError, ValueError) as exc:
            return _bad_request(request, f"the form cannot be read ({str(exc)[:200]})")
        for where, params in (("query parameter", request.GET), ("form field", form)):
            problem = _nul_problem(params, where)
            if problem:
                return _bad_request(request, problem)
        return self.get_response(request)

    @staticmethod
    def _form(request: HttpRequest) -> QueryDict:
        if request.method in ("GET", "HEAD", "OPTIONS") or not request.content_type.startswith(
            ("multipart/form-data", "application/x-www-form-urlencoded")
        ):
            return QueryDict()
        return request.POST


def _charset_readable(charset: str) -> bool:
    try:
        name = codecs.lookup(charset).name
    except LookupError:
        return False
    return name != "utf-7"


def _nul_problem(params: QueryDict, where: str) -> str | None:
    for key, values in params.lists():
        if "\x00" in key:
            return f"a {where} name contains a NUL byte"
        if any("\x00" in value for value in values):
            return f"the {where} '{key}' contains a NUL byte"
    return None


def _bad_request(request: HttpRequest, problem: str) -> HttpResponse:
    message = f"Bad request: {problem}. Remove it and try again."
    if request.path_info.startswith("/api/"):
        return JsonResponse({"detail": message}, status=400)
    return HttpResponseBadRequest(message, content_type="text/plain; charset=utf-8")
