"""MultiViz stage 3 (multimodal representations): decision-level features.

An adapter may expose the features its head decides from (e.g. the penultimate layer) with
the optional ``features`` method (:class:`workers.engine.adapter.DecisionFeatures`). For a
chosen feature this module gives

* **local** views: the attribution of the feature's activation to each modality's groups
  and its cross-modal interaction matrix, by the existing methods
  (:mod:`workers.engine.attribution`, :mod:`workers.engine.interactions`): the feature is
  wrapped as the "output" (:class:`FeatureHead`), so every convention of those modules holds
  (groups, shares, batching, finiteness checks) with "target" meaning a feature index;
* the **global** view: the dataset items that activate it most (:func:`top_activating`).

No Django.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from workers.engine.adapter import AdapterError, ModelAdapter, RawItem
from workers.engine.attribution import ItemAttribution, NonFiniteError, attribute, prepare_batch
from workers.engine.interactions import CrossInteraction, cross_modal_interaction

__all__ = [
    "FeatureHead",
    "FeatureTable",
    "decision_features",
    "feature_attributions",
    "feature_interactions",
    "has_features",
    "top_activating",
]


def has_features(adapter: Any) -> bool:
    """Whether the adapter implements the optional ``features`` method."""
    return callable(getattr(adapter, "features", None))


def _features(adapter: ModelAdapter, embedded: Sequence[Tensor], batch: Any) -> Tensor:
    if not has_features(adapter):
        raise AdapterError(
            "the adapter has no features() method: MultiViz stages 3 and 4 need the "
            "decision-level features of its head (see workers/engine/adapter.py)"
        )
    out = adapter.features(*embedded, batch=batch)  # type: ignore[attr-defined]
    n = embedded[0].shape[0]
    if not isinstance(out, Tensor) or out.dim() != 2 or out.shape[0] != n:
        raise AdapterError(
            f"features returned shape {tuple(getattr(out, 'shape', ()))} for {n} rows; expected (rows, n_features)"
        )
    return out


class FeatureHead:
    """An adapter whose "logits" are the wrapped adapter's decision-level features, so the
    attribution and interaction methods explain a feature's activation exactly as they
    explain a class logit. Everything but ``head`` and ``labels`` is delegated."""

    def __init__(self, adapter: ModelAdapter, n_features: int) -> None:
        self.adapter = adapter
        self.labels = tuple(f"feature {j}" for j in range(int(n_features)))
        self.modalities = adapter.modalities

    def __getattr__(self, name: str) -> Any:
        return getattr(self.adapter, name)

    def head(self, *embedded: Tensor, batch: Any) -> Tensor:
        return _features(self.adapter, embedded, batch)


@dataclass
class FeatureTable:
    """Decision-level features and logits of a list of items, in item order.

    Attributes:
        activations: ``(N, F)`` float64.
        logits: ``(N, C)`` float64, the model's logits of the same items.
    """

    activations: np.ndarray
    logits: np.ndarray

    @property
    def n_features(self) -> int:
        return int(self.activations.shape[1])


def decision_features(adapter: ModelAdapter, items: Sequence[RawItem], *, batch_size: int = 64) -> FeatureTable:
    """The features and logits of every item, ``batch_size`` items per encode. Cost: one
    forward pass of ``features`` and one of ``head`` per item. Raises
    :class:`~workers.engine.attribution.NonFiniteError` naming the items by id on NaN/Inf values, and :class:`AdapterError` for an adapter without ``features``."""
    if not has_features(adapter):
        _features(adapter, (torch.zeros(1),), None)  # raises the explanatory error
    acts, logits = [], []
    with torch.no_grad():
        for start in range(0, len(items), max(1, batch_size)):
            batch = adapter.encode(list(items[start : start + batch_size]))
            embedded = tuple(adapter.embed(batch))
            acts.append(_features(adapter, embedded, batch).detach().to(torch.float64).cpu())
            logits.append(adapter.head(*embedded, batch=batch).detach().to(torch.float64).cpu())
    if not acts:
        return FeatureTable(np.zeros((0, 0)), np.zeros((0, len(adapter.labels))))
    table = FeatureTable(torch.cat(acts).numpy(), torch.cat(logits).numpy())
    bad = ~(np.isfinite(table.activations).all(axis=1) & np.isfinite(table.logits).all(axis=1))
    if bad.any():
        raise NonFiniteError(
            "decision-level features or logits contain NaN/Inf",
            item_ids=[str(items[i].get("id", "?")) for i in np.flatnonzero(bad)],
        )
    return table


def top_activating(activations: np.ndarray, feature: int, *, k: int = 3) -> list[int]:
    """Row indices of the ``k`` items with the largest activation of ``feature``, largest
    first (ties by row)."""
    column = np.asarray(activations, dtype=np.float64)[:, int(feature)]
    order = np.lexsort((np.arange(column.size), -column))
    return [int(i) for i in order[:k]]


def feature_attributions(
    adapter: ModelAdapter, batch: Any, *, features: Any, n_features: int, method: str, **options: Any
) -> list[ItemAttribution]:
    """Attribute each item's activation of ``features[b]`` to its modalities' groups.

    Args:
        adapter: a loaded adapter with ``features``.
        batch: ``adapter.encode(items)`` for ``B`` items.
        features: the feature index per item (or one int for all).
        n_features: ``F``, the number of features.
        method: an attribution method (``attribution.METHODS``).

    Returns:
        One :class:`ItemAttribution` per item; its ``target`` is the feature index.
    """
    wrapped = FeatureHead(adapter, n_features)
    return attribute(wrapped, batch, method=method, targets=features, prepared=prepare_batch(wrapped, batch), **options)


def feature_interactions(
    adapter: ModelAdapter,
    batch: Any,
    *,
    features: Any,
    n_features: int,
    method: str,
    modalities: Sequence[str] | None = None,
    **options: Any,
) -> list[CrossInteraction]:
    """The cross-modal interaction matrix of each item's activation of ``features[b]``
    (``interactions.cross_modal_interaction`` with the feature as the output)."""
    wrapped = FeatureHead(adapter, n_features)
    return cross_modal_interaction(wrapped, batch, method=method, targets=features, modalities=modalities, **options)
