"""Browser-measured timing sent with an answer (``static/mmeval/timing.js``), checked against the
server's own clock. Never raises: a missing, malformed or implausible value is stored as missing
and named in ``flags``; the answer itself is always kept.

What the browser sends (hidden form fields; all in milliseconds, ``performance.now()``):

* ``client_timing`` — ``"1"`` when the script ran (absent: no JavaScript, nothing measured).
* ``client_rt_ms`` — stimulus fully displayed (every image of the form decoded, then a painted
  frame) to the submission; empty when the answer came before the display finished.
* ``client_display_ms`` — the page's navigation start to that display (load time).
* ``client_blur_count`` — times the participant left the page (tab hidden or window blurred).
* ``client_hidden_ms`` — total time the tab was hidden.

The rule against the server's time (``server_rt_ms``: first serve of the page to the arrival of
the answer). The browser's interval lies inside the server's (the page is served before it is
displayed, and submitted before the answer arrives), so

* ``client_rt_ms > server_rt_ms + CLIENT_RT_TOLERANCE_MS`` cannot happen honestly: stored as
  missing, flag ``client_rt_over_server``;
* ``server_rt_ms - client_rt_ms > CLIENT_RT_MAX_GAP_MS`` is possible (a reload restarts the
  browser's clock but not the server's first serve; a very slow load) but suspect: kept,
  flag ``client_rt_far_below_server``;
* ``client_hidden_ms > server_rt_ms + CLIENT_RT_TOLERANCE_MS`` (hidden longer than the page
  existed) is impossible: blur count and hidden time stored as missing, flag ``focus_invalid``.

The tolerance covers what separates the two clocks without any network: the server's wall clock
stepping (NTP), two server hosts' clock offsets, rounding. Docs: docs/DESIGN.md, "Response
times"; docs/STATISTICS.md, "Response times".
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

__all__ = [
    "CLIENT_RT_MAX_GAP_MS",
    "CLIENT_RT_TOLERANCE_MS",
    "CLIENT_TIMING_FIELDS",
    "CLIENT_TIMING_FLAGS",
    "ClientTiming",
    "client_timing_validate",
]

CLIENT_RT_TOLERANCE_MS: Final = 1000
CLIENT_RT_MAX_GAP_MS: Final = 60_000
# PostgreSQL's integer: a larger value is not a time anyone took.
_MAX_MS: Final = 2**31 - 1
CLIENT_TIMING_FIELDS: Final = (
    "client_timing",
    "client_rt_ms",
    "client_display_ms",
    "client_blur_count",
    "client_hidden_ms",
)
#: Every flag, with its meaning (the codebook and docs quote these).
CLIENT_TIMING_FLAGS: Final = {
    "no_client_timing": "the browser measured nothing (JavaScript off or blocked)",
    "not_displayed": "answered before the stimulus was fully displayed (client_rt_ms missing)",
    "client_rt_invalid": "client_rt_ms was not a number of milliseconds (stored as missing)",
    "client_rt_over_server": "client_rt_ms exceeded the server's time plus the tolerance (stored as missing)",
    "client_rt_far_below_server": "client_rt_ms is more than the allowed gap below the server's time (kept)",
    "display_invalid": "client_display_ms was not a number of milliseconds (stored as missing)",
    "focus_invalid": "blur count or hidden time malformed or longer than the page existed (both stored as missing)",
}
# A plain decimal number: no sign, exponent, NaN or Infinity; fractions are rounded.
_NUMBER = re.compile(r"[0-9]{1,12}(\.[0-9]{1,12})?")
_WHOLE = re.compile(r"[0-9]{1,12}")


@dataclass(frozen=True)
class ClientTiming:
    client_rt_ms: int | None = None
    client_display_ms: int | None = None
    blur_count: int | None = None
    hidden_ms: int | None = None
    flags: str = ""


def _milliseconds(raw: object) -> tuple[int | None, bool]:
    """``(value, ok)``: a non-negative decimal string as whole ms; ``(None, True)`` for empty."""
    if raw is None:
        return None, True
    text = str(raw).strip()
    if not text:
        return None, True
    if not _NUMBER.fullmatch(text):
        return None, False
    value = round(float(text))
    return (value, True) if value <= _MAX_MS else (None, False)


def client_timing_validate(fields: Mapping[str, object], *, server_rt_ms: int) -> ClientTiming:
    """The browser's timing fields (module docstring) checked against ``server_rt_ms``."""
    if str(fields.get("client_timing") or "").strip() != "1":
        return ClientTiming(flags="no_client_timing")
    flags = []
    rt, ok = _milliseconds(fields.get("client_rt_ms"))
    if not ok:
        flags.append("client_rt_invalid")
    elif rt is None:
        flags.append("not_displayed")
    elif rt > server_rt_ms + CLIENT_RT_TOLERANCE_MS:
        flags.append("client_rt_over_server")
        rt = None
    elif server_rt_ms - rt > CLIENT_RT_MAX_GAP_MS:
        flags.append("client_rt_far_below_server")
    display, ok = _milliseconds(fields.get("client_display_ms"))
    if not ok:
        flags.append("display_invalid")
    blurs, blurs_ok = _milliseconds(fields.get("client_blur_count"))
    hidden, hidden_ok = _milliseconds(fields.get("client_hidden_ms"))
    blurs_ok = blurs_ok and blurs is not None and bool(_WHOLE.fullmatch(str(fields.get("client_blur_count")).strip()))
    hidden_ok = hidden_ok and hidden is not None and hidden <= server_rt_ms + CLIENT_RT_TOLERANCE_MS
    if not (blurs_ok and hidden_ok):
        flags.append("focus_invalid")
        blurs = hidden = None
    return ClientTiming(
        client_rt_ms=rt,
        client_display_ms=display,
        blur_count=blurs,
        hidden_ms=hidden,
        flags=";".join(sorted(flags)),
    )
