"""Rendering: turn attribution and interaction arrays into what study participants see.

Every function takes plain numpy arrays / python lists and returns ``bytes`` (PNG), ``str``
(HTML) or plain python structures. Nothing here imports Django or torch.

Conventions shared by every view
--------------------------------
* **One diverging colour map, centred at zero.** A score ``s`` is drawn with the colour of
  ``clip(s / scale, -1, 1)``: ``0`` is the map's neutral light grey, positive scores
  ("supports" the explained answer) go to one hue and negative scores ("opposes") to the
  other. Limits are symmetric, ``±scale``. A single call without ``scale`` uses
  ``max |score|`` of the scores being drawn.
* **The scale of an item is a high percentile, not the maximum** (:func:`shared_scale`):
  the :data:`SCALE_PERCENTILE` (98th) percentile of ``|score|`` pooled over every candidate
  of the item, so the top :data:`OUTLIER_PERC` (2 %) of scores saturate at the map's ends
  instead of fading everything else to near-white. This is the convention of Captum's
  ``visualize_image_attr(outlier_perc=2)``, taken over the scores themselves rather than
  over their cumulative mass: with a cumulative-mass threshold one extreme pixel that holds
  most of the mass still sets the scale. Clipped scores keep their sign and their true
  value in every number written out; the page says that scores beyond ``±scale`` are drawn
  at full colour. The percentile is pooled over the candidates, so it is the same whichever
  candidate is the model's answer (docs/DESIGN.md "No leak"); bar charts, whose lengths
  encode the value, keep the maximum (``outlier_perc=0``).
* **Colour-blind safe.** The default map is matplotlib's ``"RdBu_r"`` (ColorBrewer RdBu,
  reversed: blue = opposes, red = supports), which ColorBrewer lists as colour-blind safe
  and which is lightness-balanced (± the same score differ by < 5 CIE L*), so neither sign
  looks "stronger". ``"BrBG"`` (brown = opposes, teal = supports) is the one allowed
  alternative (:data:`DIVERGING_CMAPS`). ``PuOr`` is deliberately excluded: its orange arm
  is up to 24 L* lighter than its purple arm at equal magnitude. Distinct outline
  colours use the Okabe–Ito palette. Sign is also always written out ("+0.42", "−0.42",
  "supports"/"opposes"), so no view relies on colour alone.
* **No leak.** No function takes a class name, a prediction or a gold label, and no output
  contains anything beyond what was passed in (tokens, caller-given tick labels, numbers
  and the fixed legend words). PNGs are encoded by Pillow with no ancillary chunks: no
  ``tEXt``/``iTXt``/``zTXt`` (matplotlib's "Software" stamp included), no ``tIME``, no
  ``pHYs``.
* **Deterministic.** Same inputs → same bytes (no timestamps, no random state).
* **Thread-safe.** Colour look-up tables are built once at import and only read. matplotlib
  is used through ``Figure`` + ``FigureCanvasAgg`` (no pyplot, no global rcParams changes),
  and all matplotlib drawing is additionally serialised by a module lock because matplotlib
  does not promise thread safety. Pillow fonts are cached per thread.

Coordinates: boxes are ``[x0, y0, x1, y1]`` in pixels of the *original* image, ``x`` to the
right and ``y`` down, with ``x1``/``y1`` exclusive (like slices and ``PIL.Image.crop``).
"""

from __future__ import annotations

import contextlib
import html
import io
import math
import os
import threading
from collections.abc import Iterator, Mapping, Sequence

import matplotlib
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from matplotlib.text import Text
from PIL import Image, ImageDraw, ImageFont

from workers.engine.text import spaces_before

__all__ = [
    "DEFAULT_CMAP",
    "DIVERGING_CMAPS",
    "LEGEND_HEIGHT",
    "LEGEND_MIN_WIDTH",
    "OKABE_ITO",
    "colour_legend_html",
    "colour_legend_png",
    "contrast_ratio",
    "drawn_text_sizes",
    "group_heatmap_png",
    "group_scores_to_map",
    "heatmap_overlay_png",
    "heatmap_overlay_rgb",
    "interaction_matrix_png",
    "modality_share_bars_png",
    "patch_grid",
    "patch_grid_labels",
    "scale_labels",
    "resolve_scale",
    "scores_to_rgb",
    "OUTLIER_PERC",
    "SCALE_PERCENTILE",
    "shared_scale",
    "text_colour_for",
    "token_highlights",
    "token_highlights_html",
    "top_pairs",
    "top_pairs_png",
]

# --------------------------------------------------------------------------- colour maps

DEFAULT_CMAP = "RdBu_r"
#: Allowed diverging maps: ColorBrewer diverging schemes marked colour-blind safe, with a
#: light neutral grey at their centre and lightness-balanced arms. High end = "supports".
DIVERGING_CMAPS = ("RdBu_r", "BrBG")

# 257 entries so that entry 128 is exactly the map's centre (value 0.5 → score 0).
_LUT_SIZE = 257
_LUT_MID = (_LUT_SIZE - 1) // 2


def _build_lut(name: str) -> np.ndarray:
    cmap = matplotlib.colormaps[name].resampled(_LUT_SIZE)
    rgba = cmap(np.arange(_LUT_SIZE))  # integer input indexes the table exactly
    return np.round(rgba[:, :3] * 255.0).astype(np.uint8)


_LUTS: dict[str, np.ndarray] = {name: _build_lut(name) for name in DIVERGING_CMAPS}
for _lut in _LUTS.values():
    _lut.setflags(write=False)

#: Okabe & Ito (2008) colour-blind safe qualitative palette, for distinct outlines.
OKABE_ITO = (
    (230, 159, 0),  # orange
    (86, 180, 233),  # sky blue
    (0, 158, 115),  # bluish green
    (213, 94, 0),  # vermillion
    (0, 114, 178),  # blue
    (204, 121, 167),  # reddish purple
    (240, 228, 66),  # yellow
)

LEGEND_WORDS = ("opposes", "supports")
#: Heatmap PNGs with a legend are at least this wide so the legend text stays readable.
LEGEND_MIN_WIDTH = 256

_MINUS = "\u2212"  # typographic minus sign


def _lut(cmap: str) -> np.ndarray:
    try:
        return _LUTS[cmap]
    except KeyError:
        raise ValueError(
            f"cmap {cmap!r} is not an allowed diverging colour-blind-safe map; use one of {DIVERGING_CMAPS}"
        ) from None


def _finite(values: np.ndarray, what: str) -> np.ndarray:
    if not np.all(np.isfinite(values)):
        raise ValueError(f"{what} contains NaN or infinite values")
    return values


def resolve_scale(values: np.ndarray | Sequence[float], scale: float | None = None) -> float:
    """The symmetric colour limit: ``scale`` if given (must be ≥ 0 and finite), else
    ``max |values|`` (``0.0`` for empty or all-zero values, which draws everything neutral)."""
    if scale is not None:
        scale = float(scale)
        if not math.isfinite(scale) or scale < 0:
            raise ValueError(f"scale must be a finite number ≥ 0, got {scale!r}")
        return scale
    arr = _finite(np.asarray(values, dtype=np.float64), "scores")
    return float(np.max(np.abs(arr))) if arr.size else 0.0


#: Share of an item's scores (in percent, largest ``|score|`` first) drawn at full colour:
#: the scale is the ``100 - OUTLIER_PERC`` percentile of ``|score|`` (Captum's default 2).
OUTLIER_PERC = 2.0
SCALE_PERCENTILE = 100.0 - OUTLIER_PERC


def shared_scale(*arrays: np.ndarray | Sequence[float], outlier_perc: float = OUTLIER_PERC) -> float:
    """The colour scale of one item's views: the ``100 - outlier_perc`` percentile of
    ``|value|`` pooled over every array given (every candidate's scores of one modality;
    linear interpolation between order statistics, ``np.percentile``'s default), so the top
    ``outlier_perc`` percent saturate rather than set the scale. ``outlier_perc=0`` gives
    ``max |value|``. Pooling makes it symmetric in the candidates: it tells none apart. If the
    percentile is 0 while some value is not (scores that are almost all zero), the smallest
    non-zero values' percentile is used instead, so the few non-zero scores still show."""
    if not 0.0 <= float(outlier_perc) < 100.0:
        raise ValueError(f"outlier_perc must be in [0, 100), got {outlier_perc!r}")
    flat = [_finite(np.abs(np.asarray(a, dtype=np.float64)).ravel(), "scores") for a in arrays]
    pooled = np.concatenate(flat) if flat else np.zeros(0)
    if not pooled.size or not np.any(pooled):
        return 0.0
    scale = float(np.percentile(pooled, 100.0 - float(outlier_perc)))
    return scale if scale > 0 else float(np.percentile(pooled[pooled > 0], 100.0 - float(outlier_perc)))


def _normalise(values: np.ndarray, scale: float) -> np.ndarray:
    if scale <= 0:
        return np.zeros(values.shape, dtype=np.float64)
    return np.clip(values / scale, -1.0, 1.0)


def scores_to_rgb(
    scores: np.ndarray | Sequence[float], *, scale: float | None = None, cmap: str = DEFAULT_CMAP
) -> np.ndarray:
    """Map scores of any shape ``S`` to colours ``S + (3,)`` uint8 with the diverging map
    centred at zero and limits ``±scale`` (default ``max |scores|``)."""
    arr = _finite(np.asarray(scores, dtype=np.float64), "scores")
    s = resolve_scale(arr, scale)
    idx = np.rint((_normalise(arr, s) + 1.0) * (_LUT_MID)).astype(np.intp)
    return _lut(cmap)[idx]


def _hex(rgb: Sequence[int]) -> str:
    return "#{:02x}{:02x}{:02x}".format(*(int(c) for c in rgb))


def _relative_luminance(rgb: Sequence[int]) -> float:
    """WCAG 2.x relative luminance of an sRGB colour given as 0–255 ints."""
    out = []
    for c in rgb:
        c = c / 255.0
        out.append(c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4)
    r, g, b = out
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast_ratio(rgb_a: Sequence[int], rgb_b: Sequence[int]) -> float:
    """WCAG contrast ratio (1–21) between two sRGB colours given as 0–255 ints."""
    la, lb = _relative_luminance(rgb_a), _relative_luminance(rgb_b)
    hi, lo = max(la, lb), min(la, lb)
    return (hi + 0.05) / (lo + 0.05)


def text_colour_for(background: Sequence[int]) -> tuple[int, int, int]:
    """Black or white, whichever contrasts more with ``background``. The better of the two
    always reaches a WCAG ratio of at least √21 ≈ 4.58 (> 4.5, level AA)."""
    black, white = (0, 0, 0), (255, 255, 255)
    return black if contrast_ratio(background, black) >= contrast_ratio(background, white) else white


def _fmt(value: float) -> str:
    """Signed, 2 significant digits, typographic minus: ``+0.42``, ``−0.0013``, ``+4.2``,
    ``+120``, ``+1.2e−05``; exactly zero is ``0``."""
    if value == 0:
        return "0"
    exp = math.floor(math.log10(abs(value)))
    rounded = round(value, 1 - exp)
    if rounded != 0:
        exp = math.floor(math.log10(abs(rounded)))  # 0.999 → 1.0 moves up a decade
    if -3 <= exp <= 4:
        text = f"{rounded:+.{max(0, 1 - exp)}f}"
    else:
        text = f"{value:+.1e}"
    return text.replace("-", _MINUS)


# --------------------------------------------------------------------------- fonts / PNG

_FONT_DIR = os.path.join(matplotlib.get_data_path(), "fonts", "ttf")
_thread_local = threading.local()


@contextlib.contextmanager
def drawn_text_sizes() -> Iterator[dict[bytes, list[float]]]:
    """Record, in this thread, the size in pixels of every font a view draws text with while
    inside, per PNG encoded: yields ``{png bytes: [font px, …]}``. Pillow fonts count as
    requested (:func:`_font`), matplotlib texts as drawn (points × dpi / 72). For the
    legibility check of drawn text (workers/engine/display.py)."""
    by_png: dict[bytes, list[float]] = {}
    previous = getattr(_thread_local, "text_sizes", None)
    _thread_local.text_sizes = (by_png, [])
    try:
        yield by_png
    finally:
        _thread_local.text_sizes = previous


def _record_text_size(px: float) -> None:
    recorder = getattr(_thread_local, "text_sizes", None)
    if recorder is not None:
        recorder[1].append(float(px))


def _record_png(png: bytes) -> None:
    recorder = getattr(_thread_local, "text_sizes", None)
    if recorder is not None:
        recorder[0][png] = list(recorder[1])
        recorder[1].clear()


def _font(size: int, bold: bool = False) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """DejaVu Sans (shipped with matplotlib, so the same on every machine), cached per thread."""
    _record_text_size(size)
    cache = getattr(_thread_local, "fonts", None)
    if cache is None:
        cache = _thread_local.fonts = {}
    key = (size, bold)
    font = cache.get(key)
    if font is None:
        name = "DejaVuSans-Bold.ttf" if bold else "DejaVuSans.ttf"
        try:
            font = ImageFont.truetype(os.path.join(_FONT_DIR, name), size)
        except OSError:  # pragma: no cover - matplotlib always ships DejaVu
            font = ImageFont.load_default(size)
        cache[key] = font
    return font


def _png_bytes(img: Image.Image) -> bytes:
    """Encode as PNG with no metadata chunks at all (no pnginfo, no dpi, no exif)."""
    buf = io.BytesIO()
    img.convert("RGB").save(buf, format="PNG", compress_level=6)
    png = buf.getvalue()
    _record_png(png)
    return png


_MPL_LOCK = threading.Lock()


def _figure_png(fig: Figure) -> bytes:
    """Render a matplotlib Figure with Agg and re-encode with Pillow (drops the 'Software'
    text chunk that ``savefig`` would add)."""
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    for text in fig.findobj(Text):
        if text.get_visible() and text.get_text().strip():
            _record_text_size(text.get_fontsize() * fig.dpi / 72.0)
    rgba = np.asarray(canvas.buffer_rgba())
    return _png_bytes(Image.fromarray(rgba[..., :3].copy(), mode="RGB"))


def _text_width(draw: ImageDraw.ImageDraw, text: str, font) -> float:
    return draw.textlength(text, font=font)


def _truncate(draw: ImageDraw.ImageDraw, text: str, font, max_width: float) -> str:
    if _text_width(draw, text, font) <= max_width:
        return text
    while text and _text_width(draw, text + "…", font) > max_width:
        text = text[:-1]
    return text + "…"


# --------------------------------------------------------------------------- image inputs


def _as_rgb_image(image: np.ndarray) -> np.ndarray:
    """Accept ``(H, W, 3)`` uint8 (also ``(H, W)`` grey or ``(H, W, 4)``, alpha ignored, and
    float arrays in ``[0, 1]``); return ``(H, W, 3)`` uint8."""
    arr = np.asarray(image)
    if arr.ndim == 2:
        arr = np.repeat(arr[:, :, None], 3, axis=2)
    if arr.ndim != 3 or arr.shape[2] not in (3, 4):
        raise ValueError(f"image must have shape (H, W, 3), got {arr.shape}")
    arr = arr[:, :, :3]
    if arr.dtype == np.uint8:
        return arr
    if np.issubdtype(arr.dtype, np.floating):
        _finite(arr, "image")
        if arr.min() < 0 or arr.max() > 1:
            raise ValueError("float images must lie in [0, 1]; pass uint8 for 0–255 values")
        return np.rint(arr * 255.0).astype(np.uint8)
    raise ValueError(f"image dtype must be uint8 or float in [0, 1], got {arr.dtype}")


def _dimmed_grey(rgb: np.ndarray) -> np.ndarray:
    """Luminance of the image compressed to a mid-grey band (float, 0–255), so the image
    structure stays visible but every heatmap colour stands out against it."""
    lum = rgb.astype(np.float32) @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    return 70.0 + lum * (120.0 / 255.0)


def _upscale(arr: np.ndarray, factor: int) -> np.ndarray:
    if factor == 1:
        return arr
    return np.repeat(np.repeat(arr, factor, axis=0), factor, axis=1)


def _check_upscale(upscale: int) -> int:
    if isinstance(upscale, bool) or int(upscale) != upscale or upscale < 1:
        raise ValueError(f"upscale must be an integer ≥ 1, got {upscale!r}")
    return int(upscale)


def _auto_upscale(h: int, w: int, upscale: int | None) -> int:
    if upscale is None:  # smallest factor bringing the long side to ≥ 256 px
        return max(1, math.ceil(256 / max(h, w)))
    return _check_upscale(upscale)


# --------------------------------------------------------------------------- legend (PIL)

_LEGEND_PAD = 8
_BAR_H = 12


#: Rows a legend adds under a heatmap (and the height of :func:`colour_legend_png`).
LEGEND_HEIGHT = _LEGEND_PAD + _BAR_H + 4 + 15 + 2 + 16 + _LEGEND_PAD


def _draw_legend(canvas: Image.Image, top: int, scale: float, cmap: str, words: tuple[str, str]) -> None:
    """Horizontal colour bar ``−scale … 0 … +scale`` with the sign words under its ends."""
    draw = ImageDraw.Draw(canvas)
    width = canvas.width
    x0, x1 = _LEGEND_PAD, width - _LEGEND_PAD
    y = top + _LEGEND_PAD
    ramp = np.linspace(-1.0, 1.0, x1 - x0)
    bar = scores_to_rgb(ramp, scale=1.0, cmap=cmap)
    bar = np.repeat(bar[None, :, :], _BAR_H, axis=0)
    canvas.paste(Image.fromarray(np.ascontiguousarray(bar), mode="RGB"), (x0, y))
    draw.rectangle((x0 - 1, y - 1, x1, y + _BAR_H), outline=(90, 90, 90))
    xm = (x0 + x1) // 2
    draw.line((xm, y + _BAR_H, xm, y + _BAR_H + 3), fill=(90, 90, 90))
    y += _BAR_H + 4
    small, word = _font(12), _font(13, bold=True)
    grey, ink = (70, 70, 70), (20, 20, 20)
    lo, hi = _fmt(-scale), _fmt(scale)
    draw.text((x0, y), lo, font=small, fill=grey, anchor="la")
    draw.text((xm, y), "0", font=small, fill=grey, anchor="ma")
    draw.text((x1, y), hi, font=small, fill=grey, anchor="ra")
    y += 15 + 2
    draw.text((x0, y), f"{_MINUS} {words[0]}", font=word, fill=ink, anchor="la")
    draw.text((x1, y), f"{words[1]} +", font=word, fill=ink, anchor="ra")


def colour_legend_png(
    scale: float,
    *,
    cmap: str = DEFAULT_CMAP,
    width: int = LEGEND_MIN_WIDTH,
    words: tuple[str, str] = LEGEND_WORDS,
) -> bytes:
    """A stand-alone legend PNG ``(width, ~65 px)``: colour bar from ``−scale`` to ``+scale``
    with the words ``"− opposes"`` / ``"supports +"`` under its ends."""
    scale = resolve_scale((), scale)
    _lut(cmap)
    if width < 160:
        raise ValueError("legend width must be ≥ 160 px to stay readable")
    canvas = Image.new("RGB", (int(width), LEGEND_HEIGHT), (255, 255, 255))
    _draw_legend(canvas, 0, scale, cmap, words)
    return _png_bytes(canvas)


def scale_labels(scale: float) -> dict:
    """What a legend drawn by the page (not inside the PNG) needs to state one colour scale:
    ``{"scale": s, "low": "−0.14", "high": "+0.14"}``, the ends of the colour bar as
    :func:`colour_legend_png` writes them."""
    scale = resolve_scale((), scale)
    return {"scale": scale, "low": _fmt(-scale), "high": _fmt(scale)}


def colour_legend_html(scale: float, *, cmap: str = DEFAULT_CMAP, words: tuple[str, str] = LEGEND_WORDS) -> str:
    """Inline HTML legend (a CSS gradient bar plus ``−scale``/``0``/``+scale`` and the sign
    words) matching :func:`token_highlights_html`'s colours."""
    scale = resolve_scale((), scale)
    stops = scores_to_rgb(np.linspace(-1, 1, 9), scale=1.0, cmap=cmap)
    gradient = ", ".join(f"{_hex(c)} {i * 12.5:g}%" for i, c in enumerate(stops))
    e = html.escape
    return (
        '<div class="mmeval-legend" style="display:block;width:16em;margin-top:0.5em;'
        'font-size:0.85em;line-height:1.3">'
        f'<div style="height:0.8em;border:1px solid #5a5a5a;background:linear-gradient(to right, {gradient})"></div>'
        '<div style="display:flex;justify-content:space-between">'
        f"<span>{e(_fmt(-scale))}</span><span>0</span><span>{e(_fmt(scale))}</span></div>"
        '<div style="display:flex;justify-content:space-between;font-weight:bold">'
        f"<span>{_MINUS} {e(words[0])}</span><span>{e(words[1])} +</span></div>"
        "</div>"
    )


# --------------------------------------------------------------------------- heatmaps


def heatmap_overlay_rgb(
    image: np.ndarray,
    scores: np.ndarray,
    *,
    alpha: float = 0.55,
    scale: float | None = None,
    cmap: str = DEFAULT_CMAP,
) -> np.ndarray:
    """The overlay as an array, at the image's own resolution.

    Args:
        image: ``(H, W, 3)`` uint8.
        scores: ``(H, W)`` float, one score per pixel.

    Returns:
        ``(H, W, 3)`` uint8: ``(1 - alpha) * grey(image) + alpha * colour(score)``, where
        ``grey`` is the image's luminance compressed to mid-grey.
    """
    rgb = _as_rgb_image(image)
    s = np.asarray(scores, dtype=np.float64)
    if s.shape != rgb.shape[:2]:
        raise ValueError(f"scores shape {s.shape} must equal the image's (H, W) {rgb.shape[:2]}")
    if not 0.0 <= float(alpha) <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha!r}")
    colours = scores_to_rgb(s, scale=resolve_scale(s, scale), cmap=cmap).astype(np.float32)
    base = _dimmed_grey(rgb)[:, :, None]
    out = (1.0 - alpha) * base + alpha * colours
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def _compose_with_legend(picture: np.ndarray, scale: float, cmap: str, legend: bool) -> Image.Image:
    img = Image.fromarray(np.ascontiguousarray(picture), mode="RGB")
    if not legend:
        return img
    width = max(img.width, LEGEND_MIN_WIDTH)
    canvas = Image.new("RGB", (width, img.height + LEGEND_HEIGHT), (255, 255, 255))
    canvas.paste(img, ((width - img.width) // 2, 0))
    _draw_legend(canvas, img.height, scale, cmap, LEGEND_WORDS)
    return canvas


def heatmap_overlay_png(
    image: np.ndarray,
    scores: np.ndarray,
    *,
    alpha: float = 0.55,
    scale: float | None = None,
    upscale: int | None = 4,
    legend: bool = True,
    cmap: str = DEFAULT_CMAP,
) -> bytes:
    """Pixel-resolution heatmap over the greyed, dimmed image, as PNG bytes.

    Args:
        image: ``(H, W, 3)`` uint8 input image.
        scores: ``(H, W)`` float attribution per pixel (sum over channels beforehand).
            For patch/superpixel scores use :func:`group_scores_to_map` or
            :func:`group_heatmap_png`.
        alpha: opacity of the colour layer over the grey image, in ``[0, 1]``.
        scale: colour limit; scores are drawn on ``[−scale, +scale]`` (clipped), default
            ``max |scores|``. Pass a shared scale to compare views.
        upscale: integer nearest-neighbour magnification (64×64 → 256×256 at 4); ``None``
            picks the smallest factor that makes the long side ≥ 256 px.
        legend: add a colour bar (``−scale``, ``0``, ``+scale``, "− opposes",
            "supports +") under the image.
        cmap: one of :data:`DIVERGING_CMAPS`.

    Returns:
        PNG bytes, RGB. Size ``(W*upscale, H*upscale)`` without a legend; with one, width
        ``max(W*upscale, LEGEND_MIN_WIDTH)`` (image centred) and ``LEGEND_HEIGHT`` more
        rows. No text chunks.
    """
    picture = heatmap_overlay_rgb(image, scores, alpha=alpha, scale=scale, cmap=cmap)
    factor = _auto_upscale(*picture.shape[:2], upscale)
    s = resolve_scale(np.asarray(scores, dtype=np.float64), scale)
    return _png_bytes(_compose_with_legend(_upscale(picture, factor), s, cmap, legend))


def _box_ints(box: Sequence[float], h: int, w: int) -> tuple[int, int, int, int]:
    if len(box) != 4:
        raise ValueError(f"box must be [x0, y0, x1, y1], got {box!r}")
    x0, y0, x1, y1 = (float(v) for v in box)
    if not all(math.isfinite(v) for v in (x0, y0, x1, y1)):
        raise ValueError(f"box has non-finite coordinates: {box!r}")
    x0, y0 = max(0, math.floor(x0)), max(0, math.floor(y0))
    x1, y1 = min(w, math.ceil(x1)), min(h, math.ceil(y1))
    if x1 <= x0 or y1 <= y0:
        raise ValueError(f"box {box!r} is empty inside a {w}×{h} image")
    return x0, y0, x1, y1


def group_scores_to_map(
    scores: np.ndarray | Sequence[float],
    boxes: Sequence[Sequence[float]] | None = None,
    shape: tuple[int, int] | None = None,
    *,
    segments: np.ndarray | None = None,
) -> np.ndarray:
    """Spread per-group scores back to pixels, so group-resolution (patch / superpixel)
    attributions draw with :func:`heatmap_overlay_png` like pixel-resolution ones.

    Args:
        scores: ``(G,)`` one score per group.
        boxes: ``G`` boxes ``[x0, y0, x1, y1]`` (``x1``, ``y1`` exclusive; clipped to the
            image). Where boxes overlap a pixel gets the mean of their scores; pixels in no
            box get 0 (neutral).
        shape: ``(H, W)`` of the image; required with ``boxes``.
        segments: alternatively an ``(H, W)`` integer map of group IDs ``0..G-1`` (e.g.
            superpixels); pixel ``p`` gets ``scores[segments[p]]``.

    Returns:
        ``(H, W)`` float64 map.
    """
    s = _finite(np.asarray(scores, dtype=np.float64), "scores")
    if s.ndim != 1:
        raise ValueError(f"scores must have shape (G,), got {s.shape}")
    if segments is not None:
        seg = np.asarray(segments)
        if seg.ndim != 2 or not np.issubdtype(seg.dtype, np.integer):
            raise ValueError("segments must be an (H, W) integer array")
        if shape is not None and tuple(shape) != seg.shape:
            raise ValueError(f"segments shape {seg.shape} != shape {tuple(shape)}")
        if seg.size and (seg.min() < 0 or seg.max() >= s.shape[0]):
            raise ValueError("segments contain IDs outside 0..G-1")
        return s[seg]
    if boxes is None or shape is None:
        raise ValueError("pass either boxes and shape, or segments")
    if len(boxes) != s.shape[0]:
        raise ValueError(f"{len(boxes)} boxes for {s.shape[0]} scores")
    h, w = (int(v) for v in shape)
    total = np.zeros((h, w), dtype=np.float64)
    count = np.zeros((h, w), dtype=np.int32)
    for value, box in zip(s, boxes):
        x0, y0, x1, y1 = _box_ints(box, h, w)
        total[y0:y1, x0:x1] += value
        count[y0:y1, x0:x1] += 1
    return np.divide(total, count, out=np.zeros_like(total), where=count > 0)


def group_heatmap_png(
    image: np.ndarray,
    scores: np.ndarray | Sequence[float],
    boxes: Sequence[Sequence[float]],
    *,
    alpha: float = 0.55,
    scale: float | None = None,
    upscale: int | None = 4,
    legend: bool = True,
    outlines: bool = True,
    cmap: str = DEFAULT_CMAP,
) -> bytes:
    """Group-resolution heatmap: like :func:`heatmap_overlay_png` with ``scores`` ``(G,)``
    given per box, plus thin translucent outlines of the boxes (``outlines=False`` to
    omit). Same output size as :func:`heatmap_overlay_png`."""
    rgb = _as_rgb_image(image)
    h, w = rgb.shape[:2]
    s = np.asarray(scores, dtype=np.float64)
    pixel_map = group_scores_to_map(s, boxes, (h, w))
    scale_v = resolve_scale(s, scale)
    picture = heatmap_overlay_rgb(rgb, pixel_map, alpha=alpha, scale=scale_v, cmap=cmap)
    factor = _auto_upscale(h, w, upscale)
    big = Image.fromarray(np.ascontiguousarray(_upscale(picture, factor)), mode="RGB")
    if outlines:
        layer = Image.new("RGBA", big.size, (0, 0, 0, 0))
        draw = ImageDraw.Draw(layer)
        for box in boxes:
            x0, y0, x1, y1 = _box_ints(box, h, w)
            draw.rectangle(
                (x0 * factor, y0 * factor, x1 * factor - 1, y1 * factor - 1),
                outline=(255, 255, 255, 70),
            )
        big = Image.alpha_composite(big.convert("RGBA"), layer).convert("RGB")
    return _png_bytes(_compose_with_legend(np.asarray(big), scale_v, cmap, legend))


# --------------------------------------------------------------------------- tokens


def token_highlights(
    tokens: Sequence[str],
    scores: Sequence[float] | np.ndarray,
    *,
    scale: float | None = None,
    hidden: Sequence[bool] | None = None,
    cmap: str = DEFAULT_CMAP,
) -> list[dict]:
    """Per-token colours for text attributions, on the same map and scale convention as the
    heatmaps.

    Args:
        tokens: ``T`` token strings, shown as given.
        scores: ``(T,)`` float.
        scale: colour limit, default ``max |score|`` over the *visible* tokens.
        hidden: ``T`` flags; hidden tokens (padding) are left out of the result and of the
            default scale.

    Returns:
        One dict per visible token, in order: ``{"index": position in tokens, "text",
        "score": float, "sign": "supports" | "opposes" | "neutral", "background":
        "#rrggbb", "foreground": "#000000" | "#ffffff" (the one with the higher WCAG
        contrast, always ≥ 4.5), "title": "+0.42"}``.
    """
    toks = list(tokens)
    s = _finite(np.asarray(scores, dtype=np.float64), "scores")
    if s.shape != (len(toks),):
        raise ValueError(f"scores shape {s.shape} must be ({len(toks)},) to match tokens")
    mask = np.ones(len(toks), dtype=bool) if hidden is None else ~np.asarray(hidden, dtype=bool)
    if mask.shape != (len(toks),):
        raise ValueError("hidden must have one flag per token")
    scale_v = resolve_scale(s[mask], scale)
    colours = scores_to_rgb(s, scale=scale_v, cmap=cmap)
    out = []
    for i, (text, value) in enumerate(zip(toks, s)):
        if not mask[i]:
            continue
        bg = tuple(int(c) for c in colours[i])
        out.append(
            {
                "index": i,
                "text": str(text),
                "score": float(value),
                "sign": "supports" if value > 0 else "opposes" if value < 0 else "neutral",
                "background": _hex(bg),
                "foreground": _hex(text_colour_for(bg)),
                "title": _fmt(float(value)),
            }
        )
    return out


def token_highlights_html(
    tokens: Sequence[str],
    scores: Sequence[float] | np.ndarray,
    *,
    scale: float | None = None,
    hidden: Sequence[bool] | None = None,
    cmap: str = DEFAULT_CMAP,
    legend: bool = False,
) -> str:
    """HTML for highlighted text: a ``<span class="mmeval-tokens">`` holding one
    ``<span class="mmeval-token">`` per visible token, laid out as text (no space before
    punctuation, :func:`workers.engine.text.spaces_before`), with inline
    ``background-color``/``color``, a ``title`` tooltip (``+0.42``) and ``data-score``.
    Token text is HTML-escaped. ``legend=True`` appends :func:`colour_legend_html`."""
    items = token_highlights(tokens, scores, scale=scale, hidden=hidden, cmap=cmap)
    e = html.escape
    spans = [
        f'<span class="mmeval-token" data-score="{item["score"]:.6g}" '
        f'title="{e(item["title"])}" style="background-color:{item["background"]};'
        f'color:{item["foreground"]};padding:0.05em 0.2em;border-radius:0.2em">'
        f"{e(item['text'])}</span>"
        for item in items
    ]
    gaps = spaces_before([item["text"] for item in items])
    out = (
        '<span class="mmeval-tokens">'
        + "".join((" " if gap else "") + span for span, gap in zip(spans, gaps))
        + "</span>"
    )
    if legend:
        visible = [item["score"] for item in items]
        out += colour_legend_html(resolve_scale(visible, scale), cmap=cmap)
    return out


# --------------------------------------------------------------------------- charts


#: Bar charts are drawn this many px wide with text of at least this many points (at 100 dpi,
#: 10 pt = 13.9 px): in a phone's 163 px answer card that is 11.3 CSS px (display.py).
CHART_WIDTH, CHART_FONT_PT = 200, 10


def _matplotlib_cmap(cmap: str) -> ListedColormap:
    return ListedColormap(_lut(cmap).astype(np.float64) / 255.0, name=f"mmeval_{cmap}")


def modality_share_bars_png(
    shares: Mapping[str, float], *, cmap: str = DEFAULT_CMAP, width_px: int = CHART_WIDTH
) -> bytes:
    """Small horizontal bar chart of signed modality shares, centred at zero.

    Args:
        shares: modality name → share (``sum(attr_m) / sum(|attr|)`` over all modalities,
            so each lies in ``[−1, 1]``), drawn top to bottom in the mapping's order.

    The axis is fixed at ``[−1, 1]`` (wider only if a value exceeds 1), so charts of
    different examples compare directly. Bars take the diverging map's colour at the value;
    the signed value is written beside the zero line, on the side the bar leaves empty.
    """
    names = [str(k) for k in shares]
    values = _finite(np.asarray([float(v) for v in shares.values()], dtype=np.float64), "shares")
    if not names:
        raise ValueError("shares is empty")
    limit = max(1.0, float(np.max(np.abs(values))))
    colours = scores_to_rgb(values, scale=limit, cmap=cmap).astype(np.float64) / 255.0
    # bars near zero are nearly white: a thin dark edge keeps them visible
    dpi = 100
    height_in = 0.7 + 0.42 * len(names)
    with _MPL_LOCK:
        fig = Figure(figsize=(width_px / dpi, height_in), dpi=dpi, facecolor="white")
        fig.set_layout_engine("constrained")
        ax = fig.add_subplot()
        y = np.arange(len(names))
        ax.barh(y, values, color=colours, edgecolor="#444444", linewidth=0.6, height=0.6)
        ax.axvline(0.0, color="#222222", linewidth=1.0)
        ax.set_xlim(-limit * 1.25, limit * 1.25)
        ax.set_ylim(len(names) - 0.5, -0.5)
        ax.set_yticks(y)
        ax.set_yticklabels(names, fontsize=11, parse_math=False)
        ax.set_xticks([-limit, 0, limit])
        ax.set_xticklabels([f"{_MINUS}{limit:g}\nopposes", "0", f"+{limit:g}\nsupports"], fontsize=CHART_FONT_PT)
        for yi, v in zip(y, values):
            # the value sits beside the zero line on the side the bar leaves empty, so a full
            # bar's label never runs into the axis labels
            ha = "right" if v > 0 else "left"
            offset = -0.04 * limit if v > 0 else 0.04 * limit
            ax.text(offset, yi, _fmt(float(v)), va="center", ha=ha, fontsize=CHART_FONT_PT, parse_math=False)
        for side in ("top", "right", "left"):
            ax.spines[side].set_visible(False)
        ax.tick_params(axis="y", length=0)
        fig.suptitle("modality share", fontsize=CHART_FONT_PT, x=0.02, ha="left", color="#333333")
        return _figure_png(fig)


def _column_name(index: int) -> str:
    """Spreadsheet column letters for a 0-based index: A … Z, AA, AB, …"""
    name = ""
    index += 1
    while index:
        index, rest = divmod(index - 1, 26)
        name = chr(ord("A") + rest) + name
    return name


def patch_grid(boxes: Sequence[Sequence[float]]) -> dict:
    """The grid the patch boxes lie on, as a person finds it on the image: columns lettered
    from the left (``A``, ``B``, …), rows numbered from the top (``1``, ``2``, …), read from
    the boxes' distinct left and top edges.

    Returns ``{"width", "height", "columns": [{"label", "start", "end"}], "rows": [...]}``
    in image pixels (``width``/``height``: the extent the boxes cover, ``end`` exclusive).
    """
    if not len(boxes):
        raise ValueError("boxes is empty")

    def axis(lo: int, hi: int, name) -> list[dict]:
        starts = sorted({float(b[lo]) for b in boxes})
        ends = [min(float(b[hi]) for b in boxes if float(b[lo]) == start) for start in starts]
        return [
            {"label": name(k), "start": start, "end": min(end, starts[k + 1]) if k + 1 < len(starts) else end}
            for k, (start, end) in enumerate(zip(starts, ends))
        ]

    return {
        "width": max(float(b[2]) for b in boxes),
        "height": max(float(b[3]) for b in boxes),
        "columns": axis(0, 2, _column_name),
        "rows": axis(1, 3, lambda k: str(k + 1)),
    }


def patch_grid_labels(boxes: Sequence[Sequence[float]]) -> list[str]:
    """The name of each patch box on :func:`patch_grid`: column letter, then row number
    (``"B3"``: second column from the left, third row from the top), for the rows of
    :func:`interaction_matrix_png` and the pairs of :func:`top_pairs_png`."""
    ys = sorted({float(b[1]) for b in boxes})
    xs = sorted({float(b[0]) for b in boxes})
    return [f"{_column_name(xs.index(float(b[0])))}{ys.index(float(b[1])) + 1}" for b in boxes]


def top_pairs(
    matrix: np.ndarray,
    k: int,
    *,
    hidden_rows: Sequence[bool] | None = None,
    hidden_cols: Sequence[bool] | None = None,
) -> list[tuple[int, int, float]]:
    """The ``k`` entries of ``matrix`` ``(Ga, Gb)`` with the largest ``|value|``, as
    ``(row, col, value)``, largest first; ties broken by row then column. Hidden rows or
    columns (padding) are skipped. Fewer than ``k`` if the matrix has fewer entries."""
    m = _finite(np.asarray(matrix, dtype=np.float64), "matrix")
    if m.ndim != 2:
        raise ValueError(f"matrix must have shape (Ga, Gb), got {m.shape}")
    if int(k) != k or k < 0:
        raise ValueError(f"k must be an integer ≥ 0, got {k!r}")
    keep = np.ones(m.shape, dtype=bool)
    if hidden_rows is not None:
        hr = np.asarray(hidden_rows, dtype=bool)
        if hr.shape != (m.shape[0],):
            raise ValueError("hidden_rows must have one flag per row")
        keep &= ~hr[:, None]
    if hidden_cols is not None:
        hc = np.asarray(hidden_cols, dtype=bool)
        if hc.shape != (m.shape[1],):
            raise ValueError("hidden_cols must have one flag per column")
        keep &= ~hc[None, :]
    flat = np.flatnonzero(keep.ravel())
    order = flat[np.argsort(-np.abs(m.ravel()[flat]), kind="stable")][: int(k)]
    rows, cols = np.unravel_index(order, m.shape)
    return [(int(r), int(c), float(m[r, c])) for r, c in zip(rows, cols)]


def _short(text: str, n: int = 14) -> str:
    text = str(text)
    return text if len(text) <= n else text[: n - 1] + "…"


def interaction_matrix_png(
    matrix: np.ndarray,
    *,
    row_labels: Sequence[str] | None = None,
    col_labels: Sequence[str] | None = None,
    top_k_outline: int = 5,
    scale: float | None = None,
    row_title: str = "image patch",
    col_title: str = "word",
    cmap: str = DEFAULT_CMAP,
    colorbar: bool = True,
    note: str = "",
) -> bytes:
    """Cross-modal interaction matrix (rows: groups of modality A, e.g. patches; columns:
    groups of modality B, e.g. tokens) as a diverging heatmap centred at zero.

    Args:
        matrix: ``(Ga, Gb)`` float.
        row_labels: ``Ga`` short labels (e.g. from :func:`patch_grid_labels`); default the
            row index. With many rows only every n-th is labelled (≥ 11 px apart), and
            always the rows of the numbered cells, in bold.
        col_labels: ``Gb`` labels (tokens), default the column index; long ones are cut.
        top_k_outline: outline the ``k`` largest-``|value|`` cells and number them ``1..k``
            in the same order as :func:`top_pairs` / :func:`top_pairs_png`.
        scale: colour limit, default ``max |matrix|``.
        colorbar: draw the colour bar beside the matrix; ``False`` when the page states the
            scale itself (:func:`scale_labels`), in text a browser does not shrink.
        note: a line under the column title (e.g. "8 of 64 patches shown").

    Up to 16 rows the figure is about 200 px wide with :data:`CHART_FONT_PT` text, for an
    answer card (workers/engine/display.py); the page shows a dense matrix's strongest rows
    (presentation.render_interaction_views).
    """
    m = _finite(np.asarray(matrix, dtype=np.float64), "matrix")
    if m.ndim != 2 or 0 in m.shape:
        raise ValueError(f"matrix must have shape (Ga, Gb) with Ga, Gb ≥ 1, got {m.shape}")
    ga, gb = m.shape
    rows = [str(i) for i in range(ga)] if row_labels is None else [str(x) for x in row_labels]
    cols = [str(i) for i in range(gb)] if col_labels is None else [str(x) for x in col_labels]
    if len(rows) != ga or len(cols) != gb:
        raise ValueError("row_labels / col_labels must match the matrix shape")
    s = resolve_scale(m, scale)
    vmax = s if s > 0 else 1.0
    pairs = top_pairs(m, top_k_outline)

    dpi = 100
    # Up to 64 rows (an 8×8 patch grid) each row is tall enough to carry its label; beyond
    # that rows take ~5.3 in and every n-th is labelled.
    font = CHART_FONT_PT
    row_in = 0.2 if ga <= 16 else max(0.11, 5.3 / ga) if ga <= 64 else max(0.025, 5.3 / ga)
    width_in = min(max(2.0 if note else 1.6, 0.8 + 0.17 * gb) + (1.0 if colorbar else 0.0), 14.0)
    longest = max(len(_short(c, 10)) for c in cols)
    height_in = 0.9 + 0.2 * note.count("\n") + (0.2 if note else 0) + max(row_in * ga, 1.0) + 0.07 * longest
    with _MPL_LOCK:
        fig = Figure(figsize=(width_in, height_in), dpi=dpi, facecolor="white")
        fig.set_layout_engine("constrained")
        ax = fig.add_subplot()
        im = ax.imshow(
            m,
            cmap=_matplotlib_cmap(cmap),
            vmin=-vmax,
            vmax=vmax,
            aspect="auto",
            interpolation="nearest",
        )
        ax.set_xticks(np.arange(gb))
        ax.set_xticklabels(
            [_short(c, 10) for c in cols],
            rotation=60,
            ha="right",
            rotation_mode="anchor",
            fontsize=font,
            parse_math=False,
        )
        step = max(1, math.ceil(font * 1.4 / (row_in * dpi)))  # a label's height between row labels
        # The rows of the numbered cells are always labelled (in bold), others where they fit.
        marked = sorted({r for r, _c, _v in pairs})
        ticks = sorted(set(marked) | {i for i in range(0, ga, step) if all(abs(i - r) >= step for r in marked)})
        ax.set_yticks(ticks)
        ax.set_yticklabels([_short(rows[i], 10) for i in ticks], fontsize=font, parse_math=False)
        for tick, row in zip(ax.get_yticklabels(), ticks):
            if row in marked:
                tick.set_fontweight("bold")
        ax.set_xlabel(col_title, fontsize=font, parse_math=False)
        if note:  # under the whole figure, from its left edge: never cut by the axes' centring
            fig.supxlabel(note, fontsize=font, x=0.02, ha="left", color="#333333")
        ax.set_ylabel(row_title, fontsize=font, parse_math=False)
        ax.tick_params(length=2)
        # light grid between cells (line collections: far cheaper than minor ticks)
        ax.vlines(np.arange(0.5, gb - 0.5, 1), -0.5, ga - 0.5, colors="white", linewidth=0.5)
        if ga <= 40:
            ax.hlines(np.arange(0.5, ga - 0.5, 1), -0.5, gb - 0.5, colors="white", linewidth=0.5)
        ax.set_xlim(-0.5, gb - 0.5)
        ax.set_ylim(ga - 0.5, -0.5)
        for spine in ax.spines.values():
            spine.set_edgecolor("#888888")
        rgb = scores_to_rgb(m, scale=vmax, cmap=cmap)
        thin = row_in * dpi < 14  # rows too thin to hold a number: label beside the cell
        for rank, (r, c, _v) in enumerate(pairs, start=1):
            ax.add_patch(
                Rectangle(
                    (c - 0.5, r - 0.5), 1, 1, fill=False, edgecolor="black", linewidth=1.0 if thin else 1.8, zorder=3
                )
            )
            if thin:
                right = c < gb - 1
                ax.text(
                    c + (0.6 if right else -0.6),
                    r,
                    str(rank),
                    ha="left" if right else "right",
                    va="center",
                    fontsize=font,
                    fontweight="bold",
                    color="black",
                    zorder=5,
                    parse_math=False,
                    bbox=dict(boxstyle="round,pad=0.15", facecolor="white", edgecolor="black", linewidth=0.6),
                )
            else:
                ink = np.array(text_colour_for(rgb[r, c])) / 255.0
                ax.text(
                    c,
                    r,
                    str(rank),
                    ha="center",
                    va="center",
                    fontsize=font,
                    color=ink,
                    fontweight="bold",
                    parse_math=False,
                    zorder=4,
                )
        if not colorbar:
            return _figure_png(fig)
        cbar = fig.colorbar(im, ax=ax, shrink=0.9, aspect=25, pad=0.02)
        cbar.set_ticks([-vmax, 0.0, vmax])
        cbar.set_ticklabels([f"{_fmt(-s)}\nopposes", "0", f"{_fmt(s)}\nsupports"])
        cbar.ax.tick_params(labelsize=font)
        cbar.outline.set_edgecolor("#888888")
        return _figure_png(fig)


#: Text size of :func:`top_pairs_png` and the spacing of its hatch lines (px).
TOP_PAIRS_FONT = 16
HATCH_EVERY = 4


def top_pairs_png(
    image: np.ndarray,
    matrix: np.ndarray,
    boxes: Sequence[Sequence[float]],
    tokens: Sequence[str],
    *,
    k: int = 3,
    upscale: int | None = 3,
    hidden_cols: Sequence[bool] | None = None,
) -> bytes:
    """The ``k`` strongest patch–token interactions drawn on the image.

    Args:
        image: ``(H, W, 3)`` uint8.
        matrix: ``(Ga, Gb)`` interactions, rows = patches (``boxes[row]``), columns =
            tokens (``tokens[col]``).
        boxes: ``Ga`` patch boxes ``[x0, y0, x1, y1]`` in image pixels.
        tokens: ``Gb`` token strings.
        k: number of pairs (at most 7, the Okabe–Ito palette's distinct colours).
        hidden_cols: flags for padding tokens to skip.

    Each pair's patch is outlined in its own Okabe–Ito colour with its rank number in a
    badge; the rest of the image is hatched with thin grey diagonals, which leaves the
    colours between them exactly as they are (a darkened picture turns yellow into khaki).
    Drawn for an answer card: :data:`TOP_PAIRS_FONT` px text in an image about 220 px wide. The patch grid (:func:`patch_grid`) is drawn
    with faint lines, its column letters above the image and row numbers left of it. A
    caption strip lists ``1  B3 "word"  +0.42 supports`` per pair, the sign written out.
    A patch in several pairs gets nested outlines.
    """
    rgb = _as_rgb_image(image)
    h, w = rgb.shape[:2]
    m = np.asarray(matrix, dtype=np.float64)
    if m.ndim != 2 or m.shape != (len(boxes), len(tokens)):
        raise ValueError(f"matrix shape {m.shape} must be (len(boxes), len(tokens)) = ({len(boxes)}, {len(tokens)})")
    if not 1 <= k <= len(OKABE_ITO):
        raise ValueError(f"k must be between 1 and {len(OKABE_ITO)}")
    pairs = top_pairs(m, k, hidden_cols=hidden_cols)
    factor = _auto_upscale(h, w, upscale)
    ints = [_box_ints(boxes[r], h, w) for r, _, _ in pairs]

    # spotlight: everything outside the chosen patches is hatched (colours kept between lines)
    inside = np.zeros((h, w), dtype=bool)
    for x0, y0, x1, y1 in ints:
        inside[y0:y1, x0:x1] = True
    big_rgb = _upscale(rgb, factor).astype(np.float32)
    yy, xx = np.indices(big_rgb.shape[:2])
    hatch = (~_upscale(inside, factor)) & ((xx + yy) % HATCH_EVERY == 0)
    big_rgb[hatch] = 0.4 * big_rgb[hatch] + 0.6 * 96.0
    big = Image.fromarray(np.ascontiguousarray(np.rint(big_rgb).astype(np.uint8)), mode="RGB")
    grid = patch_grid(boxes)
    names = patch_grid_labels(boxes)
    size = TOP_PAIRS_FONT
    coord_font, badge_font, text_font = _font(size, bold=True), _font(size, bold=True), _font(size)
    # margins for the grid's column letters (top) and row numbers (left)
    margin_top = size + 6
    scratch = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    margin_left = 6 + int(max(_text_width(scratch, r["label"], coord_font) for r in grid["rows"]))
    width = margin_left + big.width + 6
    line_h, pad = size + 6, 6
    caption_h = pad + line_h + len(pairs) * 2 * line_h + pad
    canvas = Image.new("RGB", (width, margin_top + big.height + caption_h), (255, 255, 255))
    ox = margin_left + (width - margin_left - big.width - 6) // 2
    oy = margin_top
    canvas.paste(big, (ox, oy))
    draw = ImageDraw.Draw(canvas)

    # the grid: faint lines on the picture, letters above it, numbers left of it (every
    # label that has room; a person counts the rest)
    lines = Image.new("RGBA", canvas.size, (0, 0, 0, 0))
    line_draw = ImageDraw.Draw(lines)
    for axis, along in (("columns", 0), ("rows", 1)):
        last_end = -1e9
        for cell in grid[axis]:
            a0, a1 = cell["start"] * factor, min(cell["end"], (w, h)[along]) * factor
            if cell["start"] > 0:
                if along == 0:
                    line_draw.line((ox + a0, oy, ox + a0, oy + big.height - 1), fill=(255, 255, 255, 90))
                else:
                    line_draw.line((ox, oy + a0, ox + big.width - 1, oy + a0), fill=(255, 255, 255, 90))
            extent = _text_width(draw, cell["label"], coord_font) if along == 0 else size
            centre = (a0 + a1) / 2
            if centre - extent / 2 < last_end + 3:
                continue
            last_end = centre + extent / 2
            if along == 0:
                draw.text((ox + centre, oy - 4), cell["label"], font=coord_font, fill=(60, 60, 60), anchor="ms")
            else:
                draw.text((ox - 5, oy + centre), cell["label"], font=coord_font, fill=(60, 60, 60), anchor="rm")
    canvas.paste(Image.alpha_composite(canvas.convert("RGBA"), lines).convert("RGB"))

    # outlines first (nested when a patch is in several pairs), then the badges on top
    nth_of: list[int] = []
    seen: dict[tuple[int, int, int, int], int] = {}
    thick = max(2, factor // 2 + 1)
    for (x0, y0, x1, y1), colour in zip(ints, OKABE_ITO):
        nth = seen.get((x0, y0, x1, y1), 0)
        seen[(x0, y0, x1, y1)] = nth + 1
        nth_of.append(nth)
        inset = nth * (thick + 1)
        bx0, by0 = ox + x0 * factor + inset, oy + y0 * factor + inset
        bx1, by1 = ox + x1 * factor - 1 - inset, oy + y1 * factor - 1 - inset
        if bx1 - bx0 > 2 * thick and by1 - by0 > 2 * thick:
            draw.rectangle((bx0 - 1, by0 - 1, bx1 + 1, by1 + 1), outline=(0, 0, 0), width=1)
            draw.rectangle((bx0, by0, bx1, by1), outline=colour, width=thick)
    for rank, ((x0, y0, _x1, _y1), colour, nth) in enumerate(zip(ints, OKABE_ITO, nth_of), start=1):
        label = str(rank)
        bw, bh = int(_text_width(draw, label, badge_font)) + 8, size + 4
        lx = min(ox + x0 * factor + nth * (bw + 1), ox + big.width - bw)
        ly = oy + y0 * factor
        draw.rectangle((lx, ly, lx + bw - 1, ly + bh - 1), fill=colour, outline=(0, 0, 0))
        draw.text((lx + bw / 2, ly + bh / 2), label, font=badge_font, fill=text_colour_for(colour), anchor="mm")

    # caption strip, two lines a pair: rank, the patch's place on the grid and the word; then
    # the signed value and its sign word
    y = oy + big.height + pad
    draw.text((pad, y), "strongest pairs", font=text_font, fill=(90, 90, 90))
    y += line_h
    bold = _font(size, bold=True)
    for rank, ((r, c, value), colour) in enumerate(zip(pairs, OKABE_ITO), start=1):
        box = size + 4
        draw.rectangle((pad, y + 1, pad + box - 1, y + box), fill=colour, outline=(0, 0, 0))
        draw.text(
            (pad + box / 2, y + 1 + box / 2), str(rank), font=badge_font, fill=text_colour_for(colour), anchor="mm"
        )
        place = names[r]
        px = pad + box + 6
        draw.text((px, y + 1 + box / 2), place, font=bold, fill=(20, 20, 20), anchor="lm")
        px += _text_width(draw, place, bold) + 6
        word = _truncate(draw, f"“{tokens[c]}”", text_font, width - pad - px)
        draw.text((px, y + 1 + box / 2), word, font=text_font, fill=(20, 20, 20), anchor="lm")
        sign_word = "supports" if value > 0 else "opposes" if value < 0 else "neutral"
        draw.text(
            (pad + box + 6, y + line_h + 1 + box / 2),
            f"{_fmt(value)} {sign_word}",
            font=text_font,
            fill=(60, 60, 60),
            anchor="lm",
        )
        y += 2 * line_h
    return _png_bytes(canvas)
