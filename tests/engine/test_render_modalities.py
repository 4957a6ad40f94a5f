"""Tests for workers.engine.render_modalities and workers.engine.audio on closed-form cases:
the shading of a known score vector lies at its known time span, bars point the way their
signs say and keep the given order, PNGs carry no metadata. No Django."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from workers.engine import render as R
from workers.engine import render_modalities as M
from workers.engine.audio import wav_bytes, wav_read
from workers.engine.dataset import DatasetFormatError, modality_kind, read_dataset_jsonl

from .test_render import TEXT_CHUNKS, png_chunk_types


def pixels(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as img:
        return np.asarray(img.convert("RGB"))


def expected_shade(score: float, scale: float) -> np.ndarray:
    colour = R.scores_to_rgb([score], scale=scale)[0].astype(np.float64)
    return np.rint(M.SHADE_ALPHA * colour + (1 - M.SHADE_ALPHA) * 255.0).astype(np.uint8)


# --------------------------------------------------------------------------- time axis


def test_time_span_splits_the_duration_evenly():
    assert M.time_span(0, 4, 2.0) == (0.0, 0.5)
    assert M.time_span(3, 4, 2.0) == (1.5, 2.0)
    with pytest.raises(ValueError):
        M.time_span(4, 4, 2.0)


def test_column_segments_follow_the_column_centres():
    seg = M.column_segments(4, 480)
    assert seg.tolist() == [0] * 120 + [1] * 120 + [2] * 120 + [3] * 120
    # 3 spans over 10 columns: centres 0.05, 0.15, ... fall in [0, 1/3), [1/3, 2/3), [2/3, 1)
    assert M.column_segments(3, 10).tolist() == [0, 0, 0, 1, 1, 1, 1, 2, 2, 2]


def test_time_shading_colours_exactly_the_known_span():
    scores = [0.0, 0.0, 1.0, 0.0, -0.5, 0.0, 0.0, 0.0]  # one positive, one negative span
    band = M.time_shading(scores, width=400, scale=1.0)
    neutral, positive, negative = expected_shade(0, 1), expected_shade(1, 1), expected_shade(-0.5, 1)
    assert (band[100:150] == positive).all()  # span 2 of 8 = columns 100..149
    assert (band[200:250] == negative).all()  # span 4 = columns 200..249
    assert (np.delete(band, np.r_[100:150, 200:250], axis=0) == neutral).all()
    assert positive[0] > positive[2] and negative[2] > negative[0]  # red = supports, blue = opposes


def test_waveform_png_shades_the_known_time_span():
    rate = 1000
    samples = 0.5 * np.sin(np.arange(2 * rate) * 2 * np.pi * 5 / rate)  # 2 s
    scores = np.zeros(10)
    scores[7] = 0.3  # 1.4 s .. 1.6 s
    img = pixels(M.waveform_png(samples, rate, scores, scale=0.6))
    top = M.PLOT_TOP + 1  # above the waveform's envelope, which stays in the middle
    row = img[top, M.PLOT_LEFT : M.PLOT_LEFT + M.PLOT_WIDTH]
    coloured = np.flatnonzero((row != expected_shade(0, 0.6)).any(axis=1))
    start, end = M.time_span(7, 10, 2.0)
    assert coloured.min() == round(start / 2.0 * M.PLOT_WIDTH)
    assert coloured.max() == round(end / 2.0 * M.PLOT_WIDTH) - 1
    assert (row[coloured] == expected_shade(0.3, 0.6)).all()
    assert img.shape[1] == M.PLOT_LEFT + M.PLOT_WIDTH + M.PLOT_RIGHT


def test_waveform_png_draws_the_samples_in_the_middle():
    rate = 800
    silent_then_loud = np.r_[np.zeros(rate), np.resize([0.9, -0.9], rate)]
    img = pixels(M.waveform_png(silent_then_loud, rate, [0.0], scale=1.0))
    ink = img[M.PLOT_TOP : M.PLOT_TOP + M.PLOT_HEIGHT, M.PLOT_LEFT : M.PLOT_LEFT + M.PLOT_WIDTH].sum(axis=2) < 150
    height_of_ink = ink.sum(axis=0)
    assert height_of_ink[: M.PLOT_WIDTH // 2 - 2].max() <= 2  # silence: a dot on the zero line
    assert height_of_ink[M.PLOT_WIDTH // 2 + 2 :].min() >= M.PLOT_HEIGHT - 10  # loud: peak to peak


def test_series_points_closed_form():
    points = M.series_points([0.0, 10.0], width=100, height=50, pad=5)
    assert points == [(25.0, 45.0), (75.0, 5.0)]
    assert M.series_points([3.0, 3.0, 3.0], width=30, height=20) == [(5.0, 10.0), (15.0, 10.0), (25.0, 10.0)]


def test_series_png_shades_the_step_and_draws_the_line():
    values = [0, 1, 2, 3, 4, 5, 6, 7]
    scores = np.zeros(8)
    scores[1] = -2.0
    img = pixels(M.series_png(values, scores))
    bottom = M.PLOT_TOP + M.PLOT_HEIGHT - 1  # below the line at step 1
    row = img[bottom - 1, M.PLOT_LEFT : M.PLOT_LEFT + M.PLOT_WIDTH]
    blue = np.flatnonzero((row == expected_shade(-2.0, 2.0)).all(axis=1))
    assert blue.min() == M.PLOT_WIDTH // 8 and blue.max() >= M.PLOT_WIDTH // 4 - 3
    assert (row[: M.PLOT_WIDTH // 8 - 1] == expected_shade(0, 2.0)).all()
    # the line rises: dark ink near the bottom-left and the top-right of the plot
    plot = img[M.PLOT_TOP : M.PLOT_TOP + M.PLOT_HEIGHT, M.PLOT_LEFT : M.PLOT_LEFT + M.PLOT_WIDTH].sum(axis=2)
    assert (plot[-12:, :40] < 200).any() and (plot[:12, -40:] < 200).any()
    assert not (plot[:12, :40] < 200).any()


# --------------------------------------------------------------------------- tabular


def test_feature_bar_rows_keep_order_and_signs():
    rows = M.feature_bar_rows(["b", "a", "c"], [1.5, -2, 0], [0.2, -0.4, 0.0], scale=0.4)
    assert [r["name"] for r in rows] == ["b", "a", "c"]
    assert [r["sign"] for r in rows] == ["supports", "opposes", "neutral"]
    assert [r["fraction"] for r in rows] == [0.5, 1.0, 0.0]
    assert [r["value"] for r in rows] == ["1.5", "\u22122", "0"]
    assert [r["title"] for r in rows] == ["+0.20", "\u22120.40", "0"]
    assert rows[0]["colour"] == R._hex(R.scores_to_rgb([0.2], scale=0.4)[0])
    with pytest.raises(ValueError):
        M.feature_bar_rows(["a"], [1, 2], [0.1])


def test_feature_bars_png_bars_point_the_way_of_their_sign():
    scores = [0.3, -0.6, 0.6]
    img = pixels(M.feature_bars_png(["x", "y", "z"], [1, 2, 3], scores, scale=0.6))
    zero = 8 + M.BAR_NAME_W + M.BAR_VALUE_W + 12 + M.BAR_AREA_W // 2
    half = M.BAR_AREA_W // 2 - 2
    for k, score in enumerate(scores):
        y = M.BAR_HEAD_H + k * M.BAR_ROW_H + M.BAR_ROW_H // 2
        colour = R.scores_to_rgb([score], scale=0.6)[0]
        filled = np.flatnonzero((img[y] == colour).all(axis=1))
        length = round(abs(score) / 0.6 * half)
        if score > 0:
            assert filled.min() > zero and filled.max() == zero + length - 1
        else:
            assert filled.max() < zero and filled.min() == zero - length + 1
    assert img.shape[0] == M.BAR_HEAD_H + 3 * M.BAR_ROW_H + 8


def test_pngs_are_deterministic_and_carry_no_text_chunks():
    outputs = [
        lambda: M.waveform_png(np.linspace(-1, 1, 400), 100, [0.1, -0.2]),
        lambda: M.series_png([1, 2, 3], [0.1, 0.0, -0.3]),
        lambda: M.feature_bars_png(["a"], [1.0], [0.5]),
    ]
    for make in outputs:
        first = make()
        assert first == make()
        assert not TEXT_CHUNKS & set(png_chunk_types(first))
        assert b"tIME" not in png_chunk_types(first) and b"pHYs" not in png_chunk_types(first)


def test_long_score_vectors_are_pooled_into_equal_spans():
    scores = np.arange(1000, dtype=np.float64)
    pooled = M.pool_time(scores, max_spans=100)
    assert pooled.shape == (100,) and pooled.sum() == scores.sum()
    assert pooled[0] == sum(range(10)) and pooled[99] == sum(range(990, 1000))
    assert M.pool_time(scores[:7], max_spans=3).tolist() == [0 + 1, 2 + 3, 4 + 5 + 6]  # edges floor(k * 7 / 3)
    assert M.pool_time([1.0, -2.0]).tolist() == [1.0, -2.0]  # short vectors are kept as they are


def test_spectrogram_maps_are_summed_over_frequency():
    flat = M.time_shading([1.0, -1.0], width=10, scale=2.0)
    assert (M.time_shading([[0.5, -0.5], [0.5, -0.5]], width=10, scale=2.0) == flat).all()


def test_non_finite_scores_are_refused():
    with pytest.raises(ValueError):
        M.series_png([1, 2], [np.nan, 0])


# --------------------------------------------------------------------------- audio and dataset


def test_wav_round_trip(tmp_path):
    samples = np.sin(np.linspace(0, 20, 1000)) * 0.8
    path = tmp_path / "a.wav"
    path.write_bytes(wav_bytes(samples, 8000))
    read, rate = wav_read(path)
    assert rate == 8000 and read.shape == (1000,)
    assert np.max(np.abs(read - samples)) < 1e-4
    (tmp_path / "bad.wav").write_bytes(b"RIFF0000WAVEjunk")
    with pytest.raises(ValueError):
        wav_read(tmp_path / "bad.wav")


def test_modality_kinds():
    assert [modality_kind(m) for m in ("image", "audio", "tabular", "series", "text", "question", "video")] == [
        "image",
        "audio",
        "tabular",
        "series",
        "text",
        "text",
        "file",
    ]


def test_dataset_checks_the_new_modalities(tmp_path):
    (tmp_path / "ok.wav").write_bytes(wav_bytes(np.zeros(100), 1000))
    (tmp_path / "bad.wav").write_bytes(b"not a wav")
    lines = [
        '{"id": "1", "label": "a", "audio": "ok.wav", "tabular": {"age": 3}, "series": [1, 2.5]}',
        '{"id": "2", "label": "a", "audio": "bad.wav", "tabular": {"age": "x"}, "series": [1]}',
    ]
    (tmp_path / "d.jsonl").write_text("\n".join(lines))
    with pytest.raises(DatasetFormatError) as info:
        read_dataset_jsonl(tmp_path / "d.jsonl")
    messages = [str(e) for e in info.value.errors]
    assert all(m.startswith("line 2:") for m in messages) and len(messages) == 3
    assert any("WAV" in m for m in messages) and any("column 'age' must be a finite number" in m for m in messages)
    assert any("two finite numbers" in m for m in messages)
    (tmp_path / "d.jsonl").write_text(lines[0])
    [line] = read_dataset_jsonl(tmp_path / "d.jsonl")
    assert line.item["tabular"] == {"age": 3} and line.item["audio"].endswith("ok.wav")
