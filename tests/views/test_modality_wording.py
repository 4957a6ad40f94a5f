"""The instructions explain the table, series and audio views only to the arms that show them."""

from __future__ import annotations

from types import SimpleNamespace

from django.template.loader import render_to_string


def _help(views: list[str]) -> str:
    participant = SimpleNamespace(condition=SimpleNamespace(views=views))
    return " ".join(render_to_string("participant/_modalities_help.html", {"participant": participant}).split())


def test_each_view_is_explained_to_the_arms_that_show_it():
    assert _help(["heatmap", "tokens"]) == ""
    table = _help(["table", "tokens"])
    assert "table of measurements" in table and "bar to the right" in table and "sound" not in table
    sound = _help(["audio"])
    assert "sound" in sound and "Press play" in sound and "line over time" not in sound
    assert "magnifier" in sound  # no picture view explained it already
    both = _help(["audio", "series", "heatmap"])
    assert "sound" in both and "line over time" in both and "magnifier" not in both
