"""What a participant sees of one item's attributions over audio, tabular and time-series
modalities (``render_modalities``), beside the image and text views of ``presentation``.

Each of these modalities has one view, named by :data:`VIEW_OF_KIND`. As for images, the
candidates of one item share one colour scale per modality (``render.shared_scale``), and
the scales come back beside the PNGs (``render.scale_labels``) for the page to state."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from workers.engine import render, render_modalities
from workers.engine.adapter import GroupInfo, RawItem
from workers.engine.attribution import ItemAttribution
from workers.engine.audio import wav_read
from workers.engine.dataset import MODALITY_VIEW_OF_KIND, modality_kind

#: Modality kind (``dataset.modality_kind``) -> the participant view that shows it.
VIEW_OF_KIND = MODALITY_VIEW_OF_KIND
#: The views this module draws, in the order a page shows them.
MODALITY_VIEWS = tuple(MODALITY_VIEW_OF_KIND.values())


@dataclass
class ModalityViews:
    #: view name (:data:`VIEW_OF_KIND`) -> PNG
    pngs: dict[str, bytes] = field(default_factory=dict)
    #: modality -> ``render.scale_labels`` of the colour scale its view is drawn on
    colour_scales: dict[str, dict] = field(default_factory=dict)
    #: the table view's rows (``render_modalities.feature_bar_rows``: name, value, signed
    #: score, colour, bar length), for a page to lay out as text at any width
    table_rows: list[dict] = field(default_factory=list)


def time_scores(attribution: ItemAttribution, name: str) -> np.ndarray:
    """The attribution of modality ``name`` over time: its map with every axis but the last
    (time) summed, e.g. a spectrogram's ``(F, T)`` map gives ``(T,)``, and a long one (one
    score per audio sample) summed into ``render_modalities.MAX_SPANS`` equal spans."""
    scores = np.asarray(attribution.maps[name], dtype=np.float64)
    scores = scores.reshape(-1, scores.shape[-1]).sum(axis=0) if scores.ndim > 1 else scores.reshape(-1)
    return render_modalities.pool_time(scores)


def tabular_features(
    value: Any, groups: Sequence[GroupInfo], scores: np.ndarray
) -> tuple[list[str], list[float], np.ndarray]:
    """(names, values, scores) of the visible features, in name order: the order the page's
    table of the input lists them in (a JSON object's own order does not survive the
    database). A score belongs to the feature its group's text (``GroupInfo.text``) names when
    every visible group names one of the item's ``{"name": number}`` object; otherwise the
    scores follow the object's own order."""
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    record = dict(value) if isinstance(value, dict) else {}
    visible = [k for k, g in enumerate(groups) if not g.hidden]
    if groups and len(groups) == scores.size and all(groups[k].text in record for k in visible):
        by_name = {groups[k].text: float(scores[k]) for k in visible}
    else:
        if len(record) != scores.size:
            raise ValueError(f"{scores.size} tabular scores for {len(record)} features")
        by_name = {name: float(score) for name, score in zip(record, scores)}
    names = sorted(by_name)
    return names, [float(record[n]) for n in names], np.array([by_name[n] for n in names])


def render_modality_views(
    *,
    item: RawItem,
    attributions: Sequence[ItemAttribution],
    groups: Sequence[Sequence[GroupInfo]],
    views: Sequence[str] = MODALITY_VIEWS,
) -> list[ModalityViews]:
    """Render every candidate's attribution of one item over its audio, tabular and series
    modalities, one colour scale per modality shared by the candidates.

    Args:
        item: the raw item (file paths absolute).
        attributions: one per candidate target, all of this item.
        groups: ``describe_groups`` of this item: per modality, its :class:`GroupInfo` list.
        views: the views to draw (an arm that does not show one costs nothing).

    Returns:
        One :class:`ModalityViews` per attribution, in order (empty when the item has none of
        these modalities).
    """
    out = [ModalityViews() for _ in attributions]
    if not attributions:
        return out
    for m, name in enumerate(attributions[0].modalities):
        view = VIEW_OF_KIND.get(modality_kind(name))
        if view is None or view not in views:
            continue
        if view == "table":
            per = [
                tabular_features(item[name], groups[m] if m < len(groups) else [], a.group_scores[name])
                for a in attributions
            ]
            scale = render.shared_scale(*(s for _, _, s in per), outlier_perc=0)  # bar lengths: never clipped
            pngs = [render_modalities.feature_bars_png(n, v, s, scale=scale) for n, v, s in per]
            for views_of, (n, v, s) in zip(out, per):
                views_of.table_rows = [
                    {k: row[k] for k in ("name", "value", "title", "sign", "colour", "fraction")}
                    for row in render_modalities.feature_bar_rows(n, v, s, scale=scale)
                ]
        else:
            scores = [time_scores(a, name) for a in attributions]
            scale = render.shared_scale(*scores)
            if view == "series":
                pngs = [render_modalities.series_png(item[name], s, scale=scale) for s in scores]
            else:
                samples, rate = wav_read(item[name])
                pngs = [render_modalities.waveform_png(samples, rate, s, scale=scale) for s in scores]
        for views_of, png in zip(out, pngs):
            views_of.pngs[view] = png
            views_of.colour_scales[name] = render.scale_labels(scale)
    return out
