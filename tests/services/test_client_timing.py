"""The browser's timing fields against the server's clock (services/client_timing.py): closed-form
cases around the tolerance and the gap, forged and malformed values, and the answer kept
whatever they hold."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from annotations.models import Assignment, Response
from annotations.services.client_timing import (
    CLIENT_RT_MAX_GAP_MS,
    CLIENT_RT_TOLERANCE_MS,
    CLIENT_TIMING_FLAGS,
    ClientTiming,
    client_timing_validate,
)
from annotations.services.participants import assignment_current, assignment_serve, response_submit
from tests.builders.studies import build_study, enter_and_start

SERVER = 10_000


def _sent(rt="4000", display="350", blurs="0", hidden="0", marker="1") -> dict:
    return {
        "client_timing": marker,
        "client_rt_ms": rt,
        "client_display_ms": display,
        "client_blur_count": blurs,
        "client_hidden_ms": hidden,
    }


def test_a_consistent_measurement_is_kept_unflagged():
    assert client_timing_validate(
        _sent(rt="4000.4", display="350.6", blurs="2", hidden="1200"), server_rt_ms=SERVER
    ) == (ClientTiming(client_rt_ms=4000, client_display_ms=351, blur_count=2, hidden_ms=1200, flags=""))


@pytest.mark.parametrize(
    ("client", "kept", "flags"),
    [
        (SERVER, SERVER, ""),
        (SERVER + CLIENT_RT_TOLERANCE_MS, SERVER + CLIENT_RT_TOLERANCE_MS, ""),  # at the bound: allowed
        (SERVER + CLIENT_RT_TOLERANCE_MS + 1, None, "client_rt_over_server"),  # one ms over: impossible
        (0, 0, ""),  # 0 ms: possible (a key pressed on the frame of display), within the gap
    ],
)
def test_the_client_time_against_the_server_time(client, kept, flags):
    timing = client_timing_validate(_sent(rt=str(client)), server_rt_ms=SERVER)
    assert (timing.client_rt_ms, timing.flags) == (kept, flags)


def test_a_client_time_far_below_the_server_time_is_kept_and_flagged():
    server = CLIENT_RT_MAX_GAP_MS + 5000
    timing = client_timing_validate(_sent(rt="4999"), server_rt_ms=server)  # gap = MAX_GAP + 1
    assert (timing.client_rt_ms, timing.flags) == (4999, "client_rt_far_below_server")
    timing = client_timing_validate(_sent(rt="5000"), server_rt_ms=server)  # gap = MAX_GAP exactly
    assert (timing.client_rt_ms, timing.flags) == (5000, "")


@pytest.mark.parametrize(
    "forged", ["-5", "1e3", "NaN", "Infinity", "12ms", "0x10", "", "9" * 13, str(2**31), "١٢٣", "1.2.3", "+4"]
)
def test_a_malformed_or_absurd_client_time_is_missing_and_flagged(forged):
    timing = client_timing_validate(_sent(rt=forged), server_rt_ms=SERVER)
    assert timing.client_rt_ms is None
    assert timing.flags == ("not_displayed" if forged == "" else "client_rt_invalid")
    # the other fields are judged on their own
    assert (timing.client_display_ms, timing.blur_count, timing.hidden_ms) == (350, 0, 0)


def test_without_the_script_nothing_is_measured():
    for fields in ({}, _sent(marker=""), _sent(marker="2"), {"client_rt_ms": "4000"}):
        assert client_timing_validate(fields, server_rt_ms=SERVER) == ClientTiming(flags="no_client_timing")


@pytest.mark.parametrize(
    ("blurs", "hidden", "ok"),
    [
        ("3", str(SERVER + CLIENT_RT_TOLERANCE_MS), True),  # hidden as long as the page existed, at the bound
        ("3", str(SERVER + CLIENT_RT_TOLERANCE_MS + 1), False),  # hidden longer than the page existed
        ("1.5", "10", False),  # half a blur
        ("-1", "10", False),
        ("", "10", False),
        ("2", "", False),
        ("2", "abc", False),
    ],
)
def test_blur_count_and_hidden_time(blurs, hidden, ok):
    timing = client_timing_validate(_sent(blurs=blurs, hidden=hidden), server_rt_ms=SERVER)
    if ok:
        assert (timing.blur_count, timing.hidden_ms, timing.flags) == (int(blurs), int(hidden), "")
    else:
        assert (timing.blur_count, timing.hidden_ms, timing.flags) == (None, None, "focus_invalid")
        assert timing.client_rt_ms == 4000  # the time itself stands


def test_several_problems_are_all_named_sorted_and_every_flag_is_documented():
    timing = client_timing_validate(_sent(rt="x", display="y", blurs="z"), server_rt_ms=SERVER)
    assert timing.flags == "client_rt_invalid;display_invalid;focus_invalid"
    assert set(timing.flags.split(";")) <= set(CLIENT_TIMING_FLAGS)


# --- stored with the answer ------------------------------------------------------------------


@pytest.fixture
def served(alice, tmp_path):
    study = build_study(alice, tmp_path, n_items=4, items_per_participant=2, raters_per_item=1)
    participant = enter_and_start(study, "P1")
    assignment = assignment_serve(assignment=assignment_current(participant=participant))
    return participant, assignment


def _answer(participant, assignment, fields):
    return response_submit(
        participant=participant,
        assignment_public_id=assignment.public_id,
        guess=assignment.candidate_order[0],
        confidence=3,
        client_timing=fields,
    )


@pytest.mark.django_db
def test_forged_timing_never_loses_the_answer(served):
    participant, assignment = served
    # 10 s after the page was served, the browser claims 10 minutes, fractional blurs, a NUL.
    Assignment.objects.filter(pk=assignment.pk).update(served_at=timezone.now() - timedelta(seconds=10))
    response = _answer(participant, assignment, _sent(rt="600000", blurs="1.5", display="\x00"))
    stored = Response.objects.get(pk=response.pk)
    assert stored.guess == assignment.candidate_order[0]
    assert stored.rt_ms >= 10_000
    assert (stored.client_rt_ms, stored.client_display_ms, stored.blur_count, stored.hidden_ms) == (
        None,
        None,
        None,
        None,
    )
    assert stored.client_timing_flags == "client_rt_over_server;display_invalid;focus_invalid"


@pytest.mark.django_db
def test_an_honest_measurement_is_stored_beside_the_server_time(served):
    participant, assignment = served
    Assignment.objects.filter(pk=assignment.pk).update(served_at=timezone.now() - timedelta(seconds=10))
    response = _answer(participant, assignment, _sent(rt="8500", display="420", blurs="1", hidden="2000"))
    stored = Response.objects.get(pk=response.pk)
    assert (stored.client_rt_ms, stored.client_display_ms, stored.blur_count, stored.hidden_ms) == (8500, 420, 1, 2000)
    assert stored.client_timing_flags == ""
    assert stored.client_rt_ms <= stored.rt_ms + CLIENT_RT_TOLERANCE_MS


@pytest.mark.django_db
def test_an_answer_without_the_script_has_the_client_time_missing(served):
    participant, assignment = served
    stored = Response.objects.get(pk=_answer(participant, assignment, None).pk)
    assert stored.client_rt_ms is None and stored.blur_count is None
    assert stored.client_timing_flags == "no_client_timing"
