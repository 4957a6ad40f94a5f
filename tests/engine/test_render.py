"""Tests for workers.engine.render: colour convention, group maps, token HTML, PNG hygiene
(no metadata, no leak), determinism and thread safety. No Django, no database."""

from __future__ import annotations

import io
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from PIL import Image

from workers.engine import render as R

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
TEXT_CHUNKS = {b"tEXt", b"iTXt", b"zTXt"}
# Label-like strings a study might have; they are never passed to any function below.
LABELS = ["giraffe_label", "zebra_label", "LABEL_yes", "gold:no", "predicted"]


# --------------------------------------------------------------------------- helpers


def png_chunk_types(data: bytes) -> list[bytes]:
    assert data[:8] == PNG_SIGNATURE
    i, types = 8, []
    while i < len(data):
        length = int.from_bytes(data[i : i + 4], "big")
        types.append(data[i + 4 : i + 8])
        i += 12 + length
    assert i == len(data)
    return types


def decode(data: bytes) -> Image.Image:
    img = Image.open(io.BytesIO(data))
    img.load()
    return img


def rgb_of(data: bytes) -> np.ndarray:
    return np.asarray(decode(data).convert("RGB"))


def hex_to_rgb(h: str) -> tuple[int, int, int]:
    return tuple(int(h[i : i + 2], 16) for i in (1, 3, 5))


@pytest.fixture(scope="module")
def demo():
    """A 64×64 demo image, pixel scores, 4×4 patch grid, tokens and an interaction matrix."""
    rng = np.random.default_rng(0)
    img = np.full((64, 64, 3), (200, 200, 180), np.uint8)
    img[10:30, 12:34] = (220, 30, 30)
    img[40:58, 36:60] = (30, 60, 220)
    yy, xx = np.mgrid[0:64, 0:64]
    scores = np.exp(-((xx - 22) ** 2 + (yy - 20) ** 2) / 60.0) - 0.7 * np.exp(-((xx - 48) ** 2 + (yy - 49) ** 2) / 50.0)
    boxes = [[x, y, x + 16, y + 16] for y in range(0, 64, 16) for x in range(0, 64, 16)]
    group_scores = rng.standard_normal(16)
    tokens = ["what", "colour", "is", "the", "square", "?"]
    matrix = rng.standard_normal((16, 6)) * 0.1
    matrix[1, 4], matrix[1, 1], matrix[13, 4] = 0.9, -0.7, 0.5
    return dict(image=img, scores=scores, boxes=boxes, group_scores=group_scores, tokens=tokens, matrix=matrix)


def all_pngs(d) -> dict[str, bytes]:
    return {
        "heatmap": R.heatmap_overlay_png(d["image"], d["scores"]),
        "heatmap_plain": R.heatmap_overlay_png(d["image"], d["scores"], legend=False),
        "group": R.group_heatmap_png(d["image"], d["group_scores"], d["boxes"]),
        "legend": R.colour_legend_png(0.42),
        "shares": R.modality_share_bars_png({"image": 0.62, "text": -0.21}),
        "matrix": R.interaction_matrix_png(
            d["matrix"], row_labels=R.patch_grid_labels(d["boxes"]), col_labels=d["tokens"]
        ),
        "pairs": R.top_pairs_png(d["image"], d["matrix"], d["boxes"], d["tokens"], k=3),
    }


# --------------------------------------------------------------------------- colour map


@pytest.mark.parametrize("cmap", R.DIVERGING_CMAPS)
def test_zero_maps_to_neutral_grey(cmap):
    r, g, b = (int(c) for c in R.scores_to_rgb(0.0, scale=1.0, cmap=cmap))
    assert r == g == b and r > 240


def test_sign_picks_the_hue_side_default_map():
    pos = R.scores_to_rgb(0.5, scale=1.0).astype(int)
    neg = R.scores_to_rgb(-0.5, scale=1.0).astype(int)
    assert pos[0] > pos[2] + 40  # red side = supports
    assert neg[2] > neg[0] + 40  # blue side = opposes


@pytest.mark.parametrize("cmap", R.DIVERGING_CMAPS)
def test_map_is_symmetric_in_lightness(cmap):
    """Lightness falls monotonically away from the neutral centre on both sides, and ± the
    same magnitude land at about the same CIE L* (within 6 units), so neither sign looks
    stronger."""

    def lightness(rgb):
        y = R._relative_luminance(rgb)
        return 116 * y ** (1 / 3) - 16 if y > 0.008856 else 903.3 * y

    previous_pos = previous_neg = lightness(R.scores_to_rgb(0.0, scale=1.0, cmap=cmap))
    for v in (0.25, 0.5, 0.75, 1.0):
        l_pos = lightness(R.scores_to_rgb(v, scale=1.0, cmap=cmap))
        l_neg = lightness(R.scores_to_rgb(-v, scale=1.0, cmap=cmap))
        assert abs(l_pos - l_neg) < 6
        assert l_pos < previous_pos and l_neg < previous_neg
        previous_pos, previous_neg = l_pos, l_neg


def test_scale_is_symmetric_max_abs():
    assert R.resolve_scale([-3.0, 1.0]) == 3.0
    assert R.resolve_scale([0.2, 0.5]) == 0.5
    assert R.resolve_scale([1.0, 2.0], 7.0) == 7.0
    assert R.resolve_scale(np.zeros(4)) == 0.0
    # the largest |score| reaches an end of the map, the opposite sign does NOT stretch
    colours = R.scores_to_rgb(np.array([-3.0, 1.0, 0.0]))
    lut = R._LUTS[R.DEFAULT_CMAP]
    assert (colours[0] == lut[0]).all()
    assert (colours[2] == lut[R._LUT_MID]).all()
    assert not (colours[1] == lut[-1]).all()


def test_values_beyond_scale_clip_and_zero_scale_is_neutral():
    lut = R._LUTS[R.DEFAULT_CMAP]
    assert (R.scores_to_rgb(10.0, scale=1.0) == lut[-1]).all()
    assert (R.scores_to_rgb(-10.0, scale=1.0) == lut[0]).all()
    assert (R.scores_to_rgb(np.zeros(3)) == lut[R._LUT_MID]).all()


def test_shared_scale_makes_text_and_image_colours_agree():
    img_scores = np.array([[0.1, -0.8], [0.3, 0.0]])
    tok_scores = [0.3, -0.2]
    s = R.shared_scale(img_scores, tok_scores, outlier_perc=0)
    assert s == pytest.approx(0.8)
    toks = R.token_highlights(["a", "b"], tok_scores, scale=s)
    expected = R.scores_to_rgb(np.array(tok_scores), scale=s)
    assert [hex_to_rgb(t["background"]) for t in toks] == [tuple(c) for c in expected.tolist()]


def test_bad_inputs_fail_loudly(demo):
    with pytest.raises(ValueError):
        R.scores_to_rgb([np.nan])
    with pytest.raises(ValueError):
        R.scores_to_rgb([1.0], cmap="viridis")
    with pytest.raises(ValueError):
        R.heatmap_overlay_png(demo["image"], demo["scores"][:10])
    with pytest.raises(ValueError):
        R.resolve_scale([1.0], -1.0)
    with pytest.raises(ValueError):
        R.token_highlights(["a", "b"], [1.0])


# --------------------------------------------------------------------------- heatmaps


def test_overlay_colours_follow_sign():
    image = np.full((3, 1, 3), 128, np.uint8)
    out = R.heatmap_overlay_rgb(image, np.array([[1.0], [0.0], [-1.0]])).astype(int)
    pos, zero, neg = out[:, 0]
    assert zero[0] == zero[1] == zero[2]
    assert pos[0] > pos[2] and neg[2] > neg[0]


def test_heatmap_png_sizes(demo):
    img, s = demo["image"], demo["scores"]
    assert decode(R.heatmap_overlay_png(img, s, legend=False)).size == (256, 256)
    assert decode(R.heatmap_overlay_png(img, s, legend=False, upscale=1)).size == (64, 64)
    assert decode(R.heatmap_overlay_png(img, s, legend=False, upscale=None)).size == (256, 256)
    with_legend = decode(R.heatmap_overlay_png(img, s))
    assert with_legend.size == (256, 256 + R.LEGEND_HEIGHT)
    assert with_legend.mode == "RGB"
    # small upscale: legend keeps a readable minimum width, image centred
    small = decode(R.heatmap_overlay_png(img, s, upscale=2))
    assert small.size == (R.LEGEND_MIN_WIDTH, 128 + R.LEGEND_HEIGHT)
    rect = decode(R.heatmap_overlay_png(img[:32], s[:32], legend=False, upscale=3))
    assert rect.size == (192, 96)


def test_upscale_is_nearest_neighbour(demo):
    plain = rgb_of(R.heatmap_overlay_png(demo["image"], demo["scores"], legend=False, upscale=1))
    big = rgb_of(R.heatmap_overlay_png(demo["image"], demo["scores"], legend=False, upscale=4))
    assert (big[::4, ::4] == plain).all()
    assert (big[1::4, 3::4] == plain).all()


def test_group_map_on_known_layout():
    boxes = [[0, 0, 4, 4], [4, 0, 8, 4], [0, 4, 4, 8], [4, 4, 8, 8]]
    m = R.group_scores_to_map(np.array([1.0, -2.0, 3.0, 0.5]), boxes, (8, 8))
    assert m.shape == (8, 8)
    assert (m[:4, :4] == 1.0).all() and (m[:4, 4:] == -2.0).all()
    assert (m[4:, :4] == 3.0).all() and (m[4:, 4:] == 0.5).all()


def test_group_map_overlap_uncovered_clipping_and_segments():
    m = R.group_scores_to_map([2.0, 4.0], [[0, 0, 3, 1], [2, 0, 6, 1]], (2, 5))
    assert m[0].tolist() == [2.0, 2.0, 3.0, 4.0, 4.0]  # overlap averaged, box clipped at W=5
    assert (m[1] == 0.0).all()  # uncovered → neutral
    seg = np.array([[0, 0, 1], [2, 2, 1]])
    assert R.group_scores_to_map([5.0, -1.0, 0.5], segments=seg).tolist() == [[5.0, 5.0, -1.0], [0.5, 0.5, -1.0]]
    with pytest.raises(ValueError):
        R.group_scores_to_map([1.0], [[0, 0, 1, 1], [1, 1, 2, 2]], (2, 2))
    with pytest.raises(ValueError):
        R.group_scores_to_map([1.0], segments=np.array([[0, 1]]))


def test_group_heatmap_matches_pixel_heatmap_without_outlines(demo):
    img, boxes, gs = demo["image"], demo["boxes"], demo["group_scores"]
    via_map = R.heatmap_overlay_png(img, R.group_scores_to_map(gs, boxes, (64, 64)))
    direct = R.group_heatmap_png(img, gs, boxes, outlines=False)
    assert via_map == direct
    outlined = rgb_of(R.group_heatmap_png(img, gs, boxes, legend=False))
    assert outlined.shape == (256, 256, 3)
    # the outline is subtle: it changes the boundary pixels only a little
    plain = rgb_of(R.group_heatmap_png(img, gs, boxes, legend=False, outlines=False))
    diff = np.abs(outlined.astype(int) - plain.astype(int))
    assert diff[64, 10].max() > 0 and diff[64, 10].max() < 90
    assert diff[70, 70].max() == 0


# --------------------------------------------------------------------------- tokens


def test_token_highlights_fields_and_titles():
    out = R.token_highlights(["good", "bad", "meh"], [0.42, -0.42, 0.0])
    assert [t["text"] for t in out] == ["good", "bad", "meh"]
    assert [t["title"] for t in out] == ["+0.42", "\u22120.42", "0"]
    assert [t["sign"] for t in out] == ["supports", "opposes", "neutral"]
    neutral = hex_to_rgb(out[2]["background"])
    assert neutral[0] == neutral[1] == neutral[2]
    assert out[0]["score"] == 0.42 and isinstance(out[0]["score"], float)


def test_hidden_tokens_are_dropped_and_do_not_set_the_scale():
    out = R.token_highlights(["a", "[PAD]", "b"], [0.5, 100.0, -0.25], hidden=[False, True, False])
    assert [t["index"] for t in out] == [0, 2]
    lut = R._LUTS[R.DEFAULT_CMAP]
    assert hex_to_rgb(out[0]["background"]) == tuple(lut[-1].tolist())  # 0.5 is the max


def test_foreground_meets_wcag_aa_on_every_colour():
    assert R.contrast_ratio((0, 0, 0), (255, 255, 255)) == pytest.approx(21.0)
    assert R.contrast_ratio((10, 20, 30), (10, 20, 30)) == pytest.approx(1.0)
    scores = np.linspace(-1, 1, 1001)
    for cmap in R.DIVERGING_CMAPS:
        toks = R.token_highlights(["w"] * len(scores), scores, scale=1.0, cmap=cmap)
        for t in toks:
            assert t["foreground"] in ("#000000", "#ffffff")
            ratio = R.contrast_ratio(hex_to_rgb(t["background"]), hex_to_rgb(t["foreground"]))
            assert ratio >= 4.5, (cmap, t)


def test_token_html_escapes_user_text():
    evil = ["<script>alert(1)</script>", '" onmouseover="x()', "a&b", "'"]
    out = R.token_highlights_html(evil, [0.1, -0.2, 0.3, 0.0])
    assert "<script>" not in out and "</script>" not in out
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in out
    assert '" onmouseover="' not in out and "&quot; onmouseover=&quot;x()" in out
    assert "a&amp;b" in out
    assert out.count('class="mmeval-token"') == 4
    assert 'title="+0.1"' in out or 'title="+0.10"' in out


def test_token_html_legend_and_hidden():
    out = R.token_highlights_html(["x", "[PAD]"], [0.5, 9.0], hidden=[False, True], legend=True)
    assert "[PAD]" not in out
    assert 'class="mmeval-legend"' in out and "supports" in out and "opposes" in out
    assert "+0.50" in out  # legend uses the visible tokens' scale


# --------------------------------------------------------------------------- interactions


def test_top_pairs_picks_largest_abs_values():
    m = np.zeros((4, 5))
    m[2, 3] = -9.0
    m[0, 1] = 7.0
    m[3, 0] = 5.0
    m[1, 4] = -4.0
    m[0, 0] = 0.5
    assert R.top_pairs(m, 3) == [(2, 3, -9.0), (0, 1, 7.0), (3, 0, 5.0)]
    assert R.top_pairs(m, 0) == []
    assert len(R.top_pairs(m, 100)) == 20
    # ties broken by row, then column
    assert R.top_pairs(np.ones((2, 2)), 4) == [(0, 0, 1.0), (0, 1, 1.0), (1, 0, 1.0), (1, 1, 1.0)]
    # hidden (padding) columns are skipped
    assert R.top_pairs(m, 1, hidden_cols=[False, False, False, True, False]) == [(0, 1, 7.0)]
    assert all(isinstance(v, float) and isinstance(r, int) for r, _, v in R.top_pairs(m, 2))


def test_patch_grid_names_patches_by_column_letter_and_row_number():
    boxes = [[x, y, x + 16, y + 16] for y in range(0, 32, 16) for x in range(0, 48, 16)]
    assert R.patch_grid_labels(boxes) == ["A1", "B1", "C1", "A2", "B2", "C2"]
    grid = R.patch_grid(boxes)
    assert (grid["width"], grid["height"]) == (48.0, 32.0)
    assert [(c["label"], c["start"], c["end"]) for c in grid["columns"]] == [
        ("A", 0.0, 16.0),
        ("B", 16.0, 32.0),
        ("C", 32.0, 48.0),
    ]
    assert [(r["label"], r["start"], r["end"]) for r in grid["rows"]] == [("1", 0.0, 16.0), ("2", 16.0, 32.0)]
    # order of the boxes does not matter; wide grids go on like a spreadsheet
    assert R.patch_grid_labels(boxes[::-1]) == ["C2", "B2", "A2", "C1", "B1", "A1"]
    wide = [[x, 0, x + 1, 1] for x in range(28)]
    assert R.patch_grid_labels(wide)[24:] == ["Y1", "Z1", "AA1", "AB1"]


def test_scale_labels_state_the_colour_bar_ends():
    assert R.scale_labels(0.0223) == {"scale": 0.0223, "low": "\u22120.022", "high": "+0.022"}
    assert R.scale_labels(0.0) == {"scale": 0.0, "low": "0", "high": "0"}


def test_matrix_png_survives_mathtext_and_many_rows():
    weird = ["$x$", "$", r"\frac", "_^", "{}", "a" * 60]
    data = R.interaction_matrix_png(np.arange(24.0).reshape(4, 6) - 10, col_labels=weird)
    assert decode(data).size[0] > 200
    big = R.interaction_matrix_png(np.random.default_rng(1).standard_normal((196, 12)))
    w, h = decode(big).size
    assert h < 1000 and w < 1000


def test_top_pairs_png_layout(demo):
    img, m, boxes, toks = demo["image"], demo["matrix"], demo["boxes"], demo["tokens"]
    out = decode(R.top_pairs_png(img, m, boxes, toks, k=3))
    side = img.shape[0] * 3  # upscaled 3×
    top = R.TOP_PAIRS_FONT + 6  # under the column letters
    assert side < out.size[0] < side + 40 and out.size[1] > side + top
    px = np.asarray(out.convert("RGB")).astype(int)
    orange = np.array(R.OKABE_ITO[0])
    is_orange = np.abs(px - orange).sum(axis=2) == 0
    ys, xs = np.nonzero(is_orange)
    # pair 1 is patch 1 = box [16, 0, 32, 16], the grid's B1 → outlined in Okabe–Ito orange
    assert ys.min() >= top - 1 and ys.min() <= top + 2  # the top row of patches, under the letters
    box_left = xs[ys < top + 48].min()
    assert (np.abs(px[top : top + 48, box_left : box_left + 48] - orange).sum(axis=2) == 0).sum() > 50
    with pytest.raises(ValueError):
        R.top_pairs_png(img, m[:, :3], boxes, toks)
    with pytest.raises(ValueError):
        R.top_pairs_png(img, m, boxes, toks, k=99)


def test_top_pairs_spotlight_keeps_the_pictures_colours(demo):
    """Outside the chosen patches only thin diagonals are greyed: every other pixel keeps the
    picture's own colour exactly, so a yellow object stays yellow (no darkened khaki)."""
    yellow = np.full((32, 32, 3), (235, 195, 20), dtype=np.uint8)
    boxes = [[x, y, x + 16, y + 16] for y in (0, 16) for x in (0, 16)]
    matrix = np.zeros((4, 2))
    matrix[0, 0] = 1.0
    out = np.asarray(decode(R.top_pairs_png(yellow, matrix, boxes, ["a", "b"], k=1)).convert("RGB")).astype(int)
    picture = out[R.TOP_PAIRS_FONT + 6 : R.TOP_PAIRS_FONT + 6 + 96]
    unchanged = (np.abs(picture - (235, 195, 20)).sum(axis=2) == 0).sum()
    hatched = (np.abs(picture - np.rint(0.4 * np.array([235, 195, 20]) + 0.6 * 96)).sum(axis=2) <= 1).sum()
    outside = 3 * 48 * 48  # the three patches not chosen, upscaled 3×
    assert hatched > 0.2 * outside and unchanged > 0.6 * outside


def test_modality_share_bars_png():
    data = R.modality_share_bars_png({"image": 0.7, "text": -0.3, "audio": 0.0})
    img = decode(data)
    assert img.size[0] == R.CHART_WIDTH and 80 < img.size[1] < 300
    with pytest.raises(ValueError):
        R.modality_share_bars_png({})


# --------------------------------------------------------------------------- PNG hygiene


def test_every_png_decodes_and_has_no_metadata_chunks(demo):
    for name, data in all_pngs(demo).items():
        types = png_chunk_types(data)
        assert not TEXT_CHUNKS & set(types), name
        assert set(types) <= {b"IHDR", b"IDAT", b"IEND"}, (name, types)
        img = decode(data)
        assert img.mode == "RGB" and not img.info.get("Software"), name
        assert b"matplotlib" not in data.lower(), name


def test_no_label_leaks_into_any_output(demo):
    """Functions embed nothing beyond their inputs: label strings that were never passed in
    appear nowhere, in PNG bytes or HTML."""
    outputs = list(all_pngs(demo).values())
    outputs.append(R.token_highlights_html(demo["tokens"], np.arange(6) - 2.5, legend=True).encode())
    outputs.append(repr(R.token_highlights(demo["tokens"], np.arange(6) - 2.5)).encode())
    outputs.append(R.colour_legend_html(0.3).encode())
    outputs.append(repr(R.top_pairs(demo["matrix"], 5)).encode())
    for data in outputs:
        low = data.lower()
        for label in LABELS:
            assert label.lower().encode() not in low


# --------------------------------------------------------------------------- determinism


def test_same_inputs_same_bytes(demo):
    first, second = all_pngs(demo), all_pngs(demo)
    assert first == second
    a = R.token_highlights_html(demo["tokens"], np.arange(6) - 2.5, legend=True)
    assert a == R.token_highlights_html(demo["tokens"], np.arange(6) - 2.5, legend=True)


def test_concurrent_rendering_matches_serial(demo):
    """Matplotlib's state is process-wide: renders that overlap in threads must not leak into
    each other (two rounds of four threads are enough to overlap every figure kind)."""
    serial = all_pngs(demo)
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(lambda _: all_pngs(demo), range(8)))
    for result in results:
        assert result == serial


def test_shared_scale_is_the_98th_percentile_pooled_over_candidates():
    """Closed form: |values| sorted 0, 0.1, 0.2, 0.3, 0.3, 0.8 (n = 6); the 98th percentile
    interpolates at rank 0.98 × 5 = 4.9: 0.3 + 0.9 × (0.8 − 0.3) = 0.75."""
    assert R.shared_scale([[0.1, -0.8], [0.3, 0.0]], [0.3, -0.2]) == pytest.approx(0.75)
    assert R.OUTLIER_PERC == 2.0 and R.SCALE_PERCENTILE == 98.0
    assert R.shared_scale([0.0, 0.0]) == 0.0 and R.shared_scale() == 0.0
    # Almost all zero: the non-zero scores' percentile, so they still show.
    sparse = np.zeros(1000)
    sparse[:5] = [1.0, 2.0, 3.0, 4.0, 5.0]
    assert R.shared_scale(sparse) == pytest.approx(4.92)  # 4 + 0.98 × 4 − 3 = rank 3.92 of 1..5
    with pytest.raises(ValueError):
        R.shared_scale([1.0], outlier_perc=100)


def test_one_outlier_no_longer_blanks_the_rest():
    """A map of 0.1 everywhere but one pixel at 100: on the maximum the rest are drawn at
    0.1 % intensity, next to neutral grey; on the pooled 98th percentile they are drawn at
    full colour, and the outlier saturates at the same end."""
    heat = np.full((10, 10), 0.1)
    heat[0, 0] = 100.0
    assert R.shared_scale(heat, outlier_perc=0) == 100.0
    scale = R.shared_scale(heat)
    assert scale == pytest.approx(0.1)
    lut = R._LUTS[R.DEFAULT_CMAP]
    rgb = R.scores_to_rgb(heat, scale=scale)
    assert (rgb == lut[-1]).all()  # every pixel at the "supports" end, the outlier clipped there
    faint = R.scores_to_rgb(heat, scale=100.0)
    assert (faint[1:, 1:] == lut[R._LUT_MID]).all()  # the maximum's scale: indistinguishable from 0


def test_scale_is_the_same_whichever_candidate_comes_first():
    """The scale pools the candidates' scores: any order of the candidates gives it exactly,
    so it cannot tell which one is the model's answer."""
    rng = np.random.default_rng(0)
    maps = [rng.standard_normal((8, 8)) * (k + 1) for k in range(4)]
    scales = {R.shared_scale(*[maps[k] for k in order]) for order in ((0, 1, 2, 3), (3, 2, 1, 0), (2, 0, 3, 1))}
    assert len(scales) == 1
