"""What precompute renders for participants (workers.engine.presentation): every candidate of
an item on one colour scale, stated beside the views rather than drawn into them, and the
patch grid that names patches ("B3") on the picture. No Django, no database."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from workers.engine import render
from workers.engine.adapter import GroupInfo
from workers.engine.attribution import ItemAttribution
from workers.engine.presentation import render_interaction_views, render_item_views

PATCH, GRID = 8, 4  # a 32×32 picture cut into 4×4 patches


def _picture(tmp_path) -> str:
    path = tmp_path / "picture.png"
    pixels = np.full((GRID * PATCH, GRID * PATCH, 3), 230, np.uint8)
    pixels[8:20, 12:28] = (200, 30, 30)
    Image.fromarray(pixels).save(path)
    return str(path)


def _groups(words: list[str]) -> list[list[GroupInfo]]:
    patches = [
        GroupInfo(
            group_id=k,
            kind="patch",
            box=((k % GRID) * PATCH, (k // GRID) * PATCH, (k % GRID + 1) * PATCH, (k // GRID + 1) * PATCH),
        )
        for k in range(GRID * GRID)
    ]
    tokens = [GroupInfo(group_id=100 + t, kind="token", text=w) for t, w in enumerate(words)]
    return [patches, tokens + [GroupInfo(group_id=100 + len(words), kind="token", text="[PAD]", hidden=True)]]


def _attribution(target: int, rng) -> ItemAttribution:
    image = rng.standard_normal((GRID * PATCH, GRID * PATCH)) * (target + 1)
    text = rng.standard_normal(5) * (3 - target)  # four words and the padding
    return ItemAttribution(
        method="integrated_gradients",
        target=target,
        modalities=("image", "text"),
        maps={"image": image, "text": text},
        group_ids={"image": np.arange(16), "text": np.arange(100, 105)},
        group_scores={"image": rng.standard_normal(16), "text": text},
        modality_totals={"image": 0.0, "text": 0.0},
        modality_share={"image": 0.5, "text": 0.5},
    )


def test_candidates_share_one_stated_scale_and_the_heatmap_carries_no_legend(tmp_path):
    rng = np.random.default_rng(3)
    attributions = [_attribution(target, rng) for target in range(3)]
    views = render_item_views(
        item={"image": _picture(tmp_path)}, attributions=attributions, groups=_groups(["is", "it", "red", "?"])
    )
    # One scale per modality: the 98th percentile of |score| pooled over the three candidates.
    image_scale = float(np.percentile(np.abs([a.maps["image"] for a in attributions]), 98))
    text_scale = float(np.percentile(np.abs([a.maps["text"][:4] for a in attributions]), 98))  # "[PAD]" is hidden
    assert image_scale < max(float(np.max(np.abs(a.maps["image"]))) for a in attributions)
    for view in views:
        assert view.colour_scales == {
            "image": render.scale_labels(image_scale),
            "text": render.scale_labels(text_scale),
        }
        with Image.open(io.BytesIO(view.image_png)) as png:
            assert png.size == (128, 128)  # the picture alone (upscaled 4×), no legend rows under it
    assert [t["text"] for t in views[0].tokens] == ["is", "it", "red", "?"]


def test_interaction_views_share_a_scale_and_name_patches_on_the_grid(tmp_path):
    rng = np.random.default_rng(4)
    matrices = [rng.standard_normal((16, 5)) * (k + 1) for k in range(3)]
    views = render_interaction_views(
        item={"image": _picture(tmp_path)},
        modalities=("image", "text"),
        matrices=matrices,
        group_ids=(list(range(16)), list(range(100, 105))),
        groups=_groups(["is", "it", "red", "?"]),
    )
    scale = float(np.percentile(np.abs([m[:, :4] for m in matrices]), 98))  # the padding column is dropped
    grid = views[0].patch_grid
    assert grid["modality"] == "image" and (grid["width"], grid["height"]) == (32.0, 32.0)
    assert [c["label"] for c in grid["columns"]] == ["A", "B", "C", "D"]
    assert [r["label"] for r in grid["rows"]] == ["1", "2", "3", "4"]
    for view in views:
        assert view.colour_scale == render.scale_labels(scale) and view.patch_grid == grid
        assert view.matrix_png.startswith(b"\x89PNG") and view.top_pairs_png.startswith(b"\x89PNG")


def test_a_dense_matrix_shows_its_strongest_rows_the_same_for_every_candidate():
    """64 rows: the matrix view keeps each candidate's strongest cells' rows, then the rows
    with the most |value| over all candidates, 8 in all, in order; any candidate order gives
    the same rows."""
    from workers.engine.presentation import MATRIX_ROWS, matrix_rows_shown

    rng = np.random.default_rng(5)
    matrices = [rng.standard_normal((64, 6)) * 0.01 for _ in range(3)]
    matrices[0][10, 2] = 5.0  # candidate 0's strongest cell
    matrices[2][50, 1] = -4.0  # candidate 2's
    for r in (3, 20, 33, 40, 41, 60):
        matrices[1][r] += 1.0  # heavy rows
    shown = matrix_rows_shown(matrices=matrices, top_k=1)
    assert shown == [3, 10, 20, 33, 40, 41, 50, 60] and len(shown) == MATRIX_ROWS
    assert matrix_rows_shown(matrices=matrices[::-1], top_k=1) == shown
    assert matrix_rows_shown(matrices=[m[:5] for m in matrices], top_k=1) == [0, 1, 2, 3, 4]
