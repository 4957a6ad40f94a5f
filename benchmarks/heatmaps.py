"""How much of each heatmap a person can see: the share of visibly coloured pixels per
heatmap, on the bundled demo adapter and demo data, with the colour scale set by the maximum
``|attribution|`` (before issue 18) and by the item's 98th percentile (``render.shared_scale``,
after). No Django; public engine API only.

A pixel is **visibly coloured** when ``|score| / scale >= VISIBLE`` (0.25, clipped at 1): at
that intensity the overlay's colour differs from what a zero score draws on the same pixel by
the CIELAB distance the table's header prints (Delta E 1976, measured on the renderer's own
colours), several times the ~2.3 of a just-noticeable difference. Every candidate of an item
is drawn on one scale, pooled over the candidates, as the participant pages draw them.

"Structure" is the ratio of the visible share on the objects of the picture (pixels that
differ from the plain background) to the visible share on the background: a heatmap of
speckles spread anywhere has a ratio near 1.

    python -m benchmarks.heatmaps --items 48
    python manage.py bench_heatmaps --items 48
"""

from __future__ import annotations

import argparse
import platform
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TextIO

import numpy as np
import torch
from PIL import Image

from workers.engine import render
from workers.engine.attribution import attribute
from workers.engine.dataset import read_dataset_jsonl
from workers.engine.demo.data import BACKGROUND, generate_dataset
from workers.engine.explain import predict
from workers.engine.feature_views import feature_heat
from workers.engine.features import decision_features, feature_attributions
from workers.engine.registry import load_adapter
from workers.engine.sparse import fit_sparse_head, top_contributions

__all__ = ["VISIBLE", "add_arguments", "delta_e_at_threshold", "heatmap_visibility", "main", "run_from_options"]

#: Normalised intensity from which a pixel counts as visibly coloured.
VISIBLE = 0.25
CANDIDATES = 4
FEATURES_SHOWN = 3


def _lab(rgb: np.ndarray) -> np.ndarray:
    """sRGB uint8 ``(..., 3)`` -> CIELAB (D65)."""
    c = np.asarray(rgb, dtype=np.float64) / 255.0
    linear = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    to_xyz = np.array([[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722], [0.0193, 0.1192, 0.9505]])
    xyz = linear @ to_xyz.T / np.array([0.95047, 1.0, 1.08883])
    f = np.where(xyz > (6 / 29) ** 3, np.cbrt(xyz), xyz / (3 * (6 / 29) ** 2) + 4 / 29)
    return np.stack([116 * f[..., 1] - 16, 500 * (f[..., 0] - f[..., 1]), 200 * (f[..., 1] - f[..., 2])], axis=-1)


def delta_e_at_threshold(*, threshold: float = VISIBLE) -> float:
    """The smaller CIELAB distance (of the two signs) between the overlay of a score at
    ``threshold × scale`` and of a zero score, on a mid-grey pixel."""
    grey = np.full((1, 3, 3), 128, dtype=np.uint8)
    drawn = render.heatmap_overlay_rgb(grey, np.array([[-threshold, 0.0, threshold]]), scale=1.0)
    lab = _lab(drawn[0])
    return float(min(np.linalg.norm(lab[0] - lab[1]), np.linalg.norm(lab[2] - lab[1])))


def _visible(heat: np.ndarray, scale: float) -> np.ndarray:
    return np.abs(heat) >= VISIBLE * scale if scale > 0 else np.zeros(heat.shape, dtype=bool)


def heatmap_visibility(
    *, per_item: Sequence[Sequence[np.ndarray]], objects: Sequence[np.ndarray], outlier_perc: float
) -> tuple[list[float], list[float]]:
    """Per heatmap, the share of visibly coloured pixels and the object/background ratio of
    that share, each item's heatmaps drawn on one scale (``render.shared_scale``)."""
    shares, ratios = [], []
    for heats, obj in zip(per_item, objects):
        scale = render.shared_scale(*heats, outlier_perc=outlier_perc)
        for heat in heats:
            vis = _visible(np.asarray(heat, dtype=np.float64), scale)
            shares.append(float(vis.mean()))
            if obj.any() and (~obj).any():
                ratios.append(float(vis[obj].mean() / max(vis[~obj].mean(), 1.0 / obj.size)))
    return shares, ratios


def _objects(path: str, shape: tuple[int, int]) -> np.ndarray:
    with Image.open(path) as img:
        rgb = np.asarray(img.convert("RGB").resize((shape[1], shape[0]), Image.NEAREST), dtype=np.int16)
    return np.any(np.abs(rgb - np.asarray(BACKGROUND, dtype=np.int16)) > 20, axis=2)


def _collect(n_items: int, methods: Sequence[str], seed: int) -> tuple[dict[str, list], list[np.ndarray]]:
    """Per view, per item, its candidates' heatmaps; and per item its object mask."""
    folder = Path(tempfile.mkdtemp())
    items = [line.item for line in read_dataset_jsonl(generate_dataset(folder, n_items=n_items, seed=seed))]
    adapter = load_adapter("workers.engine.demo.adapter:DemoAdapter")
    predictions = predict(adapter, items)
    # The candidates: the model's answer and the next most probable labels.
    candidates = [[int(k) for k in np.argsort(-p.probabilities, kind="stable")[:CANDIDATES]] for p in predictions]
    batch = adapter.encode(items)
    views: dict[str, list] = {}
    for method in methods:
        per_target = [
            attribute(adapter, batch, method=method, targets=[c[k] for c in candidates]) for k in range(CANDIDATES)
        ]
        views[f"{method} heatmap"] = [
            [per_target[k][i].maps["image"] for k in range(CANDIDATES)] for i in range(n_items)
        ]
    shape = views[f"{methods[0]} heatmap"][0][0].shape
    objects = [_objects(item["image"], shape) for item in items]

    # The features view's "this input": the candidates' top features' patch heat on this input.
    table = decision_features(adapter, items)
    head = fit_sparse_head(table.activations, table.logits, seed=0)
    groups = adapter.describe_groups(batch)
    heats = []
    for i in range(n_items):
        used = sorted(
            {
                f
                for c in candidates[i]
                for f, _ in top_contributions(head, table.activations[i], target=c)[:FEATURES_SHOWN]
            }
        )
        if not used:
            heats.append([])
            continue
        one = adapter.encode([items[i]] * len(used))
        attrs = feature_attributions(adapter, one, features=used, n_features=table.n_features, method=methods[0])
        heats.append([feature_heat(a, groups[i], "image") for a in attrs])
    views[f"features view ({methods[0]})"] = heats
    return views, objects


def _quartiles(values: Sequence[float]) -> str:
    if not values:
        return f"{'-':>7} {'-':>7} {'-':>7}"
    q1, q2, q3 = np.percentile(values, [25, 50, 75])
    return f"{100 * q1:6.1f}% {100 * q2:6.1f}% {100 * q3:6.1f}%"


def heatmap_table(*, views: dict[str, list], objects: Sequence[np.ndarray]) -> list[str]:
    """The table's lines: per view and scale, quartiles of the visible share, and the median
    object/background ratio of the visible share."""
    lines = [
        f"{'view':38s} {'scale':22s} {'q1':>7} {'median':>7} {'q3':>7}  object/background (median)",
    ]
    for name, per_item in views.items():
        for scale_name, perc in (
            ("max |attribution|", 0.0),
            (f"p{render.SCALE_PERCENTILE:g} (pooled)", render.OUTLIER_PERC),
        ):
            shares, ratios = heatmap_visibility(per_item=per_item, objects=objects, outlier_perc=perc)
            ratio = f"{np.median(ratios):.1f}x" if ratios else "-"
            lines.append(f"{name:38s} {scale_name:22s} {_quartiles(shares)}  {ratio}")
    return lines


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--items", type=int, default=48, help="demo items (default 48)")
    parser.add_argument(
        "--methods", default="integrated_gradients,saliency", help="comma-separated attribution methods"
    )
    parser.add_argument("--seed", type=int, default=0, help="demo dataset seed (default 0)")


def run_from_options(options: dict, *, out: TextIO, progress: Callable[[str], None] | None = None) -> None:
    """Run the benchmark and print its table to ``out``."""
    n_items = int(options["items"])
    if n_items < 1:
        raise ValueError("--items must be at least 1")
    methods = [m.strip() for m in str(options["methods"]).split(",") if m.strip()]
    if not methods:
        raise ValueError("--methods names no method")
    torch.set_num_threads(1)
    views, objects = _collect(n_items, methods, int(options["seed"]))
    out.write(
        f"Heatmap visibility: demo adapter, {n_items} items x {CANDIDATES} candidates, one scale per item; "
        f"visible = |score|/scale >= {VISIBLE} (Delta E >= {delta_e_at_threshold():.1f} from a zero score); "
        f"{platform.processor() or platform.machine()}, {platform.system()}, 1 thread\n"
    )
    for line in heatmap_table(views=views, objects=objects):
        out.write(line + "\n")


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m benchmarks.heatmaps [--items N] [--methods a,b]``."""
    import sys

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_arguments(parser)
    run_from_options(vars(parser.parse_args(argv)), out=sys.stdout)


if __name__ == "__main__":
    main()
