"""A toy adapter whose decision-level features and head are known by construction.

Modalities ``a`` ``(4,)`` (one group per element, IDs 0..3) and ``b`` ``(3,)`` (IDs 4..6),
baselines zero. Features::

    z0 = a0            z1 = a1 * b0        z2 = b1 + b2
    z3 = a2 - a3       z4 = a2 + a3

and the head is linear and sparse in them: ``logits = z @ W.T + BIAS`` with :data:`W`
(feature 4 is used by no class).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from tests.builders.toy_adapters import ToyAdapter

W = np.array([[1.5, 0.0, -2.0, 0.0, 0.0], [0.0, 3.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 2.5, 0.0]])
BIAS = np.array([0.3, -0.2, 0.1])
N_FEATURES = 5


class PlantedFeatureAdapter(ToyAdapter):
    labels = ("x", "y", "z")
    modalities = ("a", "b")
    shapes = {"a": (4,), "b": (3,)}

    def __init__(self, *, linear_head: bool = True) -> None:
        super().__init__()
        self.linear_head = linear_head

    def features(self, a: Tensor, b: Tensor, *, batch: dict) -> Tensor:
        return torch.stack([a[:, 0], a[:, 1] * b[:, 0], b[:, 1] + b[:, 2], a[:, 2] - a[:, 3], a[:, 2] + a[:, 3]], dim=1)

    def logits(self, a: Tensor, b: Tensor, *, batch: dict) -> Tensor:
        z = self.features(a, b, batch=batch)
        if not self.linear_head:
            z = torch.tanh(z) * z  # not linear in z: the sparse head can only approximate it
        return z @ torch.as_tensor(W, dtype=z.dtype).T + torch.as_tensor(BIAS, dtype=z.dtype)

    def feature_groups(self, batch: dict) -> tuple[Tensor, ...]:
        n = batch["n"]
        return torch.arange(4).reshape(1, 4).expand(n, 4), torch.arange(4, 7).reshape(1, 3).expand(n, 3)


class NoFeaturesAdapter(PlantedFeatureAdapter):
    features = None  # type: ignore[assignment]


def planted_items(n: int, *, seed: int = 0, loud: dict[int, Sequence[tuple[int, float]]] | None = None) -> list[dict]:
    """``n`` items with standard normal payloads; ``loud`` plants, for a feature, the items
    (row, value) where it is driven far above every other item: feature 0 through ``a0``,
    feature 2 through ``b1``."""
    rng = np.random.default_rng(seed)
    items: list[dict[str, Any]] = []
    for i in range(n):
        items.append({"id": f"it{i}", "label": "x", "a": rng.normal(size=4).tolist(), "b": rng.normal(size=3).tolist()})
    for feature, rows in (loud or {}).items():
        for row, value in rows:
            if feature == 0:
                items[row]["a"][0] = value
            elif feature == 2:
                items[row]["b"][1] = value
            else:
                raise ValueError("plant features 0 or 2")
    return items
