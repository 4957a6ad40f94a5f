"""Text drawn into the participant views is legible as the page displays it (issue 18): at
least ``MIN_TEXT_PX`` CSS px, i.e. ``drawn font px × displayed width / natural width``, for
every view kind, at a 1366 px laptop and a 390 px phone, with the display widths of
workers/engine/display.py, which must match static/mmeval/mmeval.css. No Django."""

from __future__ import annotations

import io
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from workers.engine import display, render, render_modalities
from workers.engine.adapter import GroupInfo
from workers.engine.attribution import ItemAttribution
from workers.engine.feature_views import example_thumbnail_png, render_feature_views
from workers.engine.presentation import render_interaction_views, render_item_views, render_share_bars

PATCH, GRID = 8, 8  # the demo: a 64×64 picture cut into 8×8 patches of 8 px (64 rows "A1" … "H8")
WORDS = ["what", "colour", "is", "the", "triangle", "?"]
CSS = Path(__file__).resolve().parents[2] / "static" / "mmeval" / "mmeval.css"


def _picture(tmp_path) -> str:
    path = tmp_path / "picture.png"
    pixels = np.full((GRID * PATCH, GRID * PATCH, 3), 238, np.uint8)
    pixels[8:30, 12:34] = (235, 195, 20)
    pixels[36:56, 30:50] = (215, 35, 35)
    Image.fromarray(pixels).save(path)
    return str(path)


def _groups() -> list[list[GroupInfo]]:
    patches = [
        GroupInfo(
            group_id=k,
            kind="patch",
            box=((k % GRID) * PATCH, (k // GRID) * PATCH, (k % GRID + 1) * PATCH, (k // GRID + 1) * PATCH),
        )
        for k in range(GRID * GRID)
    ]
    tokens = [GroupInfo(group_id=100 + t, kind="token", text=w) for t, w in enumerate(WORDS)]
    return [patches, tokens + [GroupInfo(group_id=100 + len(WORDS), kind="token", text="[PAD]", hidden=True)]]


def _attribution(target: int, rng) -> ItemAttribution:
    n = GRID * GRID
    image = rng.standard_normal((GRID * PATCH, GRID * PATCH))
    text = rng.standard_normal(len(WORDS) + 1)
    return ItemAttribution(
        method="integrated_gradients",
        target=target,
        modalities=("image", "text"),
        maps={"image": image, "text": text},
        group_ids={"image": np.arange(n), "text": np.arange(100, 101 + len(WORDS))},
        group_scores={"image": rng.standard_normal(n), "text": text},
        modality_totals={"image": 1.0, "text": -0.5},
        modality_share={"image": 0.67, "text": -0.33},
    )


def _every_view(tmp_path) -> dict[str, tuple[bytes, list[float]]]:
    """One PNG of every view kind a candidate's card can show, for a demo-sized item, with
    the font sizes drawn into it."""
    rng = np.random.default_rng(7)
    picture = _picture(tmp_path)
    pixels = np.asarray(Image.open(picture).convert("RGB"))
    thumb = example_thumbnail_png(pixels=pixels, heat=rng.standard_normal((64, 64)))
    features = {f: _attribution(f, rng) for f in (3, 17, 41, 58)}
    samples = np.sin(np.arange(8000) / 9.0) * np.linspace(0, 1, 8000)
    scores = rng.standard_normal(48)
    with render.drawn_text_sizes() as sizes:
        heatmap = render_item_views(
            item={"image": picture}, attributions=[_attribution(k, rng) for k in range(4)], groups=_groups()
        )[0]
        interaction = render_interaction_views(
            item={"image": picture},
            modalities=("image", "text"),
            matrices=[rng.standard_normal((GRID * GRID, len(WORDS) + 1)) for _ in range(4)],
            group_ids=(list(range(GRID * GRID)), list(range(100, 101 + len(WORDS)))),
            groups=_groups(),
        )[0]
        multiviz = render_feature_views(
            pixels=pixels,
            candidates=[[(17, 2.4), (3, -1.25), (41, 0.5), (58, 0.1)], [(58, 0.7), (3, 0.2)]],
            attributions=features,
            groups=_groups(),
            examples={f: [thumb, thumb, thumb] for f in features},
        )[0]
        pngs = {
            "heatmap": heatmap.image_png,
            "interaction": interaction.matrix_png,
            "top_pairs": interaction.top_pairs_png,
            "share": render_share_bars(shares={"image": 0.62, "text": -0.38}),
            "features": multiviz.features_png,
            "prediction": multiviz.prediction_png,
            "series": render_modalities.series_png(np.sin(np.arange(48) / 5.0) * 3.2, scores),
            "audio": render_modalities.waveform_png(samples, 8000, scores),
        }
    return {view: (png, sizes[png]) for view, png in pngs.items()}


def test_every_view_kinds_drawn_text_is_legible_as_displayed(tmp_path):
    """Per view kind and viewport: the smallest drawn font × displayed / natural width."""
    too_small = []
    for view, (png, sizes) in _every_view(tmp_path).items():
        with Image.open(io.BytesIO(png)) as img:
            width, height = img.size
        for name, viewport in display.VIEWPORTS.items():
            if not sizes:  # no text drawn (the heatmap: its scale is stated by the page)
                continue
            shown = display.displayed_text_px(
                font_px=min(sizes), view=view, natural_width=width, natural_height=height, viewport=viewport
            )
            if shown < display.MIN_TEXT_PX:
                too_small.append(f"{view} at {name}: {min(sizes):.1f} px drawn in {width} px → {shown:.1f} CSS px")
    assert not too_small, "\n".join(too_small)


def test_the_heatmap_draws_no_text_and_the_views_draw_some(tmp_path):
    views = _every_view(tmp_path)
    assert views["heatmap"][1] == []
    assert all(sizes for view, (_png, sizes) in views.items() if view != "heatmap")


def test_candidate_columns_closed_form():
    """1366 px: main 1240 − 2×16 = 1208; answers 1208 − 260 − 20 = 928; four cards of
    (928 − 3×12) / 4 = 223, less 2×(12 + 1) = 197. 390 px: main 390 − 2×9.6 = 370.8; two
    cards of (370.8 − 8) / 2 = 181.4, less 2×(8 + 1) = 163.4."""
    assert display.candidate_column_px(viewport=1366) == pytest.approx(197.0)
    assert display.candidate_column_px(viewport=390) == pytest.approx(163.4)
    assert display.view_display_px(view="heatmap", natural_width=120, natural_height=120, viewport=1366) == 120
    assert display.view_display_px(view="interaction", natural_width=300, natural_height=880, viewport=1366) == 150
    shown = display.displayed_text_px(font_px=22, view="features", natural_width=326.8, natural_height=1, viewport=390)
    assert shown == pytest.approx(11.0)


def test_the_stylesheet_still_says_the_display_constants():
    """The display widths are the stylesheet's: if it changes, change workers/engine/display.py."""
    css = re.sub(r"\s+", " ", CSS.read_text(encoding="utf-8"))
    for rule in (
        "body.wide main { max-width: 1240px; }",
        "main { max-width: 1100px; margin: 0 auto; padding: 1rem 1rem 3rem; }",
        "main { padding: .6rem .6rem 2rem; }",
        ".item-layout { grid-template-columns: 260px minmax(0, 1fr); }",
        ".item-layout { display: grid; gap: 1.25rem;",
        ".has-evidence .candidates { grid-template-columns: repeat(auto-fit, minmax(200px, 1fr)); }",
        ".candidates { display: grid; grid-template-columns: repeat(auto-fit, minmax(150px, 1fr)); gap: .75rem; }",
        ".has-evidence .candidates { grid-template-columns: repeat(2, minmax(0, 1fr)); gap: .5rem; }",
        "padding: .7rem .75rem;",
        ".candidate { padding: .5rem; gap: .4rem; }",
        ".view-top_pairs { max-width: 280px; }",
        ".view-interaction { width: auto; max-height: 440px; }",
        ".view-box { display: block; width: fit-content; max-width: 100%;",
        "@media (min-width: 900px)",
        "@media (max-width: 600px)",
    ):
        assert rule in css, rule
