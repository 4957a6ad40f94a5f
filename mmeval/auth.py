"""Sign-in throttling with django-axes: the backend that refuses locked-out sign-ins, the
client address behind the proxy, and the lockout answer (the sign-in page, or JSON for the
API). Settings: ``AXES_*`` and ``MMEVAL_PROXY_COUNT`` in mmeval/settings.py."""

from __future__ import annotations

from axes.backends import AxesStandaloneBackend
from django.conf import settings
from django.contrib.auth.forms import AuthenticationForm
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render


class ThrottledSignInBackend(AxesStandaloneBackend):
    """Refuses sign-ins from a locked-out username and address. A call without a request
    (a test client's ``login``, a shell) did not come over the network: nothing to throttle."""

    def authenticate(self, request, username=None, password=None, **kwargs):
        if request is None:
            return None
        return super().authenticate(request, username=username, password=password, **kwargs)


def client_ip(request: HttpRequest) -> str | None:
    """The client's address: ``MMEVAL_PROXY_COUNT`` entries from the right of
    X-Forwarded-For (each proxy appends the address it saw), else the socket's peer."""
    hops = settings.MMEVAL_PROXY_COUNT
    if hops:
        forwarded = [part.strip() for part in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if part.strip()]
        if len(forwarded) >= hops:
            return forwarded[-hops]
    return request.META.get("REMOTE_ADDR")


def lockout_message() -> str:
    minutes = max(1, round(settings.AXES_COOLOFF_TIME.total_seconds() / 60))
    return f"Too many failed sign-in attempts for this username from your address. Try again in {minutes} minutes."


def lockout_response(request: HttpRequest, original_response=None, credentials=None) -> HttpResponse:
    """429 for a locked-out sign-in: JSON for the API, else the sign-in page saying so."""
    if request.path.startswith("/api/") or "application/json" in request.META.get("HTTP_ACCEPT", ""):
        return JsonResponse({"detail": lockout_message()}, status=429)
    return render(
        request,
        "researcher/login.html",
        {"form": AuthenticationForm(request), "lockout_message": lockout_message()},
        status=429,
    )
