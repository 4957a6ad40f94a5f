"""The tabular + text demo adapter: house plants, four measurements and the owner's note.

Register it as ``workers.engine.demo.tabular.adapter:PlantAdapter``. It goes through the same
protocol as any user's adapter (:class:`workers.engine.adapter.ModelAdapter`). Batch
expansion follows the image demo's convention (``workers/engine/demo/adapter.py``): the
embedded tensors may have ``k * B`` rows, ``k`` consecutive copies of the batch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from ...adapter import AdapterError, GroupInfo, RawItem
from ..model import tokenize
from . import model as plant_model
from .data import FEATURES
from .model import LABELS, MAX_TOKENS, PAD_ID, PlantModel


@dataclass
class PlantBatch:
    """``B`` items: standardised ``features (B, 4)``, ``token_ids (B, T)``, ``attention_mask
    (B, T)`` and the note's tokens as written."""

    ids: list[str]
    features: Tensor
    token_ids: Tensor
    attention_mask: Tensor
    tokens: list[list[str]]

    def __len__(self) -> int:
        return len(self.ids)


class PlantAdapter:
    """Modalities ``tabular`` (standardised measurements ``(B, 4)``, one feature group each,
    IDs 0..3) and ``text`` (token embeddings ``(B, T, D)``, one group per position, IDs
    4..4+T-1). Baselines: an average plant (all zeros) and the PAD embedding."""

    labels: Sequence[str] = LABELS
    modalities: Sequence[str] = ("tabular", "text")

    def __init__(self, cache_dir: Path | None = None) -> None:
        self.cache_dir = cache_dir
        self.device = torch.device("cpu")
        self._model: PlantModel | None = None

    @property
    def model(self) -> PlantModel:
        if self._model is None:
            raise AdapterError("PlantAdapter.load() must be called first")
        return self._model

    def load(self, device: torch.device) -> None:
        model = plant_model.load_or_train(self.cache_dir)
        model.eval().requires_grad_(False)
        self.device = torch.device(device)
        self._model = model.to(self.device)

    def encode(self, items: Sequence[RawItem]) -> PlantBatch:
        """Read the measurements and tokenize the notes. Raises ValueError naming the item
        when a measurement or the note is missing."""
        rows, ids, masks, tokens, item_ids = [], [], [], [], []
        for item in items:
            item_id = str(item.get("id", "?"))
            table, note = item.get("tabular"), item.get("text")
            if not isinstance(table, dict) or not isinstance(note, str):
                raise ValueError(f"item {item_id!r} needs a 'tabular' object and a 'text' note")
            try:
                row = [float(table[name]) for name in FEATURES]
            except (KeyError, TypeError, ValueError) as exc:
                raise ValueError(f"item {item_id!r}: measurements {list(FEATURES)} are needed ({exc})") from exc
            if not all(math.isfinite(v) for v in row):
                raise ValueError(f"item {item_id!r}: measurements must be finite")
            words = tokenize(note)[:MAX_TOKENS]
            token_id, mask = plant_model.token_ids(words)
            rows.append(row)
            ids.append(token_id)
            masks.append(mask)
            tokens.append(words)
            item_ids.append(item_id)
        features = plant_model.standardise(np.asarray(rows, dtype=np.float32).reshape(-1, len(FEATURES)))
        return PlantBatch(
            ids=item_ids,
            features=features.to(self.device),
            token_ids=torch.tensor(ids, dtype=torch.long).reshape(-1, MAX_TOKENS).to(self.device),
            attention_mask=torch.tensor(masks, dtype=torch.bool).reshape(-1, MAX_TOKENS).to(self.device),
            tokens=tokens,
        )

    def embed(self, batch: PlantBatch) -> tuple[Tensor, Tensor]:
        return batch.features.clone(), self.model.token_embedding(batch.token_ids)

    def head(self, features: Tensor, token_embeddings: Tensor, *, batch: PlantBatch) -> Tensor:
        n, b = features.shape[0], len(batch)
        if token_embeddings.shape[0] != n:
            raise ValueError(f"features have {n} rows but token embeddings {token_embeddings.shape[0]}")
        if b == 0 or n % b:
            raise ValueError(f"embedded batch of {n} rows is not a multiple of {b} items")
        mask = batch.attention_mask.to(features.device).repeat(n // b, 1)
        return self.model.head(features, token_embeddings, mask)

    def baselines(self, batch: PlantBatch) -> tuple[Tensor, Tensor]:
        return (torch.zeros_like(batch.features), self.model.token_embedding(torch.full_like(batch.token_ids, PAD_ID)))

    def feature_groups(self, batch: PlantBatch) -> tuple[Tensor, Tensor]:
        b, f = len(batch), len(FEATURES)
        table = torch.arange(f, device=self.device).view(1, f).expand(b, -1).clone()
        text = torch.arange(f, f + MAX_TOKENS, device=self.device).view(1, MAX_TOKENS, 1).expand(b, -1, 1).clone()
        return table, text

    def describe_groups(self, batch: PlantBatch) -> list[list[list[GroupInfo]]]:
        """Per item: the features by name (``kind="feature"``) and the note's tokens (padding
        ``hidden``)."""
        features = [GroupInfo(group_id=k, kind="feature", text=name) for k, name in enumerate(FEATURES)]
        out = []
        for words in batch.tokens:
            text_groups = [
                GroupInfo(
                    group_id=len(FEATURES) + t,
                    kind="token",
                    text=words[t] if t < len(words) else plant_model.PAD,
                    hidden=t >= len(words),
                )
                for t in range(MAX_TOKENS)
            ]
            out.append([list(features), text_groups])
        return out


Factory = PlantAdapter
