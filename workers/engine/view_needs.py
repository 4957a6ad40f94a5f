"""What each participant view needs of a model to be drawn at all. A study whose arm shows a
view the model cannot give is refused when it is designed (``annotations/services/spec.py``)
and again when it is precomputed or launched, instead of being drawn without it: an arm
labelled ``heatmap, tokens`` whose participants see only words measures something else than
its name says. No Django, no torch.

The rules follow what the drawing code draws: a heatmap per image modality
(``presentation.render_item_views``), token highlights for the modality named ``text``, the
interaction matrix and its top patch-word pairs for the two modalities of a two-modality
model with an image (``interactions.pick_modalities``, ``presentation.render_interaction_views``),
share bars that compare two or more modalities, a view per tabular, series or audio modality
(``dataset.MODALITY_VIEW_OF_KIND``), the MultiViz views from the adapter's optional
``features()`` (``features.has_features``), and the attention view (a heatmap and word
highlights) from the optional ``attention()`` hook (``attention.has_attention``).
"""

from __future__ import annotations

from collections.abc import Sequence

from workers.engine.dataset import MODALITY_VIEW_OF_KIND, modality_kind

__all__ = ["view_unmet_need"]

_KIND_OF_VIEW = {view: kind for kind, view in MODALITY_VIEW_OF_KIND.items()}
_NEEDS_IMAGE = ("heatmap", "interaction", "top_pairs", "attention")
_PAIRS = ("interaction", "top_pairs")


def view_unmet_need(
    *, view: str, modalities: Sequence[str], has_features: bool | None, has_attention: bool | None = None
) -> str:
    """Why ``view`` cannot be drawn for a model with ``modalities`` ("" when it can), worded
    to follow "model 'x' ": e.g. "has no image modality". ``has_features`` is whether the
    adapter implements ``features()``; None (not recorded) accepts the MultiViz views.
    ``has_attention`` is whether it implements the ``attention()`` hook
    (``attention.has_attention``); the attention view needs it, and None (models registered
    before the hook existed) refuses the view, since no such adapter had it."""
    modalities = [str(m) for m in modalities]
    kinds = {modality_kind(m) for m in modalities}
    listed = ", ".join(modalities) or "none"
    if view in _NEEDS_IMAGE and "image" not in kinds:
        return f"has no image modality (its modalities: {listed})"
    if view in _PAIRS and len(modalities) != 2:
        return f"has {len(modalities)} modalities ({listed}); the interaction views pair exactly two"
    if view in ("tokens", "top_pairs", "attention") and "text" not in modalities:
        return f"has no text modality (its modalities: {listed})"
    if view == "share" and len(modalities) < 2:
        return f"has only one modality ({listed}); share bars compare two or more"
    if view in _KIND_OF_VIEW and _KIND_OF_VIEW[view] not in kinds:
        return f"has no {_KIND_OF_VIEW[view]} modality (its modalities: {listed})"
    if view in ("features", "prediction") and has_features is False:
        return "has no features() method: its adapter gives no decision-level features"
    if view == "attention" and not has_attention:
        return (
            "has no attention() hook: its adapter gives no attention maps (the Hugging Face ViLT and CLIP adapters do)"
        )
    return ""
