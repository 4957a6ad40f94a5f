"""The participant-facing MultiViz views (workers/engine/feature_views.py): one size and one
scale for every candidate of an item, no text chunks, the same bytes for the same input."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from workers.engine.adapter import GroupInfo
from workers.engine.attribution import ItemAttribution
from workers.engine.feature_views import contribution_bars_png, example_thumbnail_png, render_feature_views

PNG_TEXT_CHUNKS = (b"tEXt", b"zTXt", b"iTXt", b"eXIf", b"tIME")


def _attribution(feature: int, peak: float) -> ItemAttribution:
    heat = np.zeros((8, 8))
    heat[feature % 8, 2] = peak
    scores = np.array([peak, -peak / 2, 0.0])
    return ItemAttribution(
        method="integrated_gradients",
        target=feature,
        modalities=("image", "text"),
        maps={"image": heat, "text": scores},
        group_ids={"image": np.arange(4), "text": np.arange(4, 7)},
        group_scores={"image": np.zeros(4), "text": scores},
        modality_totals={"image": peak, "text": peak / 2},
        modality_share={"image": 0.67, "text": 0.33},
    )


def _size(png: bytes) -> tuple[int, int]:
    return Image.open(io.BytesIO(png)).size


def test_every_candidates_views_have_one_size_and_no_text_chunks():
    groups = [
        [GroupInfo(k, "patch", box=(0, 0, 4, 4)) for k in range(4)],
        [
            GroupInfo(4, "token", text="is"),
            GroupInfo(5, "token", text="red"),
            GroupInfo(6, "token", text="<pad>", hidden=True),
        ],
    ]
    pixels = np.full((8, 8, 3), 200, dtype=np.uint8)
    thumb = example_thumbnail_png(pixels=pixels, heat=np.eye(8))
    candidates = [[(1, 2.0), (3, -1.0), (5, 0.5), (6, 0.1)], [(3, 0.7)], []]
    attributions = {f: _attribution(f, 0.1 * (f + 1)) for f in (1, 3, 5)}
    views = render_feature_views(
        pixels=pixels,
        candidates=candidates,
        attributions=attributions,
        groups=groups,
        examples={1: [thumb, thumb], 3: [thumb], 5: []},
    )

    assert len(views) == 3
    assert len({_size(v.features_png) for v in views}) == 1
    assert len({_size(v.prediction_png) for v in views}) == 1
    for view in views:
        for png in (view.features_png, view.prediction_png):
            assert png.startswith(b"\x89PNG") and not any(chunk in png for chunk in PNG_TEXT_CHUNKS)
    again = render_feature_views(
        pixels=pixels,
        candidates=candidates,
        attributions=attributions,
        groups=groups,
        examples={1: [thumb, thumb], 3: [thumb], 5: []},
    )
    assert [v.features_png for v in again] == [v.features_png for v in views]


def test_the_bars_share_the_axis_given():
    small = contribution_bars_png(["feature 1"], [0.1], limit=5.0, rows=3)
    big = contribution_bars_png(["feature 1", "feature 2", "feature 3"], [5.0, -1.0, 0.2], limit=5.0)
    assert _size(small) == _size(big)
    assert small != big


def test_this_input_keeps_its_own_colours_where_the_heat_is_weak():
    """Closed form: a yellow picture, heat 0.1 everywhere but one pixel at 100. The item's
    scale is the 98th percentile (0.1), so every pixel is drawn as heat, none as a faint
    speck; with heat 0 the picture is its own yellow exactly (never darkened to khaki)."""
    from workers.engine import render
    from workers.engine.feature_views import _overlay

    yellow = np.full((8, 8, 3), (235, 195, 20), dtype=np.uint8)
    heat = np.full((8, 8), 0.1)
    heat[0, 0] = 100.0
    drawn = np.asarray(_overlay(yellow, heat, render.shared_scale(heat)))
    expected = render.heatmap_overlay_rgb(yellow, np.full((8, 8), 1.0), scale=1.0)[0, 0]
    assert (drawn == expected).all()  # all at the "supports" end, the outlier clipped there
    plain = np.asarray(_overlay(yellow, np.zeros((8, 8)), 1.0))
    assert (plain == (235, 195, 20)).all()
