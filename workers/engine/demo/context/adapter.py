"""The context-bias demo adapter (``workers.engine.demo.context.adapter:ContextAdapter``): one
modality, ``image``; 64 feature groups, the 4x4-pixel patches (IDs 0..63, row-major). Its
``training_items()`` hook gives the first :data:`TRAINING_ITEMS` training examples, with their
``group`` and ``evidence``, for the report's bias amplification and learning sections.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from ...adapter import AdapterError, GroupInfo, RawItem
from ..model import default_cache_dir
from . import data
from . import model as context_model
from .model import LABELS, ContextModel

TRAINING_ITEMS = 256


@dataclass
class ContextBatch:
    ids: list[str]
    pixels: Tensor  # (B, 3, 32, 32) in [-1, 1]

    def __len__(self) -> int:
        return len(self.ids)


def _read_image(item: RawItem) -> np.ndarray:
    item_id, path = item.get("id", "?"), item.get("image")
    if not path:
        raise ValueError(f"item {item_id!r} has no image")
    try:
        with Image.open(Path(path)) as img:
            img = img.convert("RGB")
            if img.size != (data.IMAGE_SIZE, data.IMAGE_SIZE):
                img = img.resize((data.IMAGE_SIZE, data.IMAGE_SIZE), Image.Resampling.BILINEAR)
            return np.asarray(img, dtype=np.uint8)
    except (OSError, ValueError) as exc:
        raise ValueError(f"item {item_id!r}: cannot read image {path!r}: {exc}") from exc


class ContextAdapter:
    """:class:`~workers.engine.adapter.ModelAdapter` of the context-bias demo model."""

    labels: Sequence[str] = LABELS
    modalities: Sequence[str] = ("image",)

    def __init__(self, cache_dir: Path | None = None) -> None:
        self.cache_dir = cache_dir
        self.device = torch.device("cpu")
        self._model: ContextModel | None = None

    @property
    def model(self) -> ContextModel:
        if self._model is None:
            raise AdapterError("ContextAdapter.load() must be called first")
        return self._model

    def load(self, device: torch.device) -> None:
        """Load (training and caching first, a few seconds, if needed); weights frozen."""
        model = context_model.load_or_train(self.cache_dir)
        self.device = torch.device(device)
        self._model = model.eval().requires_grad_(False).to(self.device)

    def encode(self, items: Sequence[RawItem]) -> ContextBatch:
        images = [_read_image(item) for item in items]
        pixels = (
            context_model.normalize_images(np.stack(images))
            if images
            else torch.empty((0, 3, data.IMAGE_SIZE, data.IMAGE_SIZE))
        )
        return ContextBatch(ids=[str(item.get("id", "?")) for item in items], pixels=pixels.to(self.device))

    def embed(self, batch: ContextBatch) -> tuple[Tensor]:
        return (batch.pixels.clone(),)

    def head(self, pixels: Tensor, *, batch: ContextBatch) -> Tensor:
        """Logits ``(N, 2)``; any number of rows (the model reads pixels only)."""
        return self.model(pixels)

    def baselines(self, batch: ContextBatch) -> tuple[Tensor]:
        """The empty picture: background colour everywhere (no stripe, no shape)."""
        blank = np.empty((len(batch), data.IMAGE_SIZE, data.IMAGE_SIZE, 3), dtype=np.uint8)
        blank[:] = data.BACKGROUND
        return (context_model.normalize_images(blank).to(self.device),)

    def feature_groups(self, batch: ContextBatch) -> tuple[Tensor]:
        rows = torch.arange(data.IMAGE_SIZE, device=self.device) // data.PATCH
        ids = rows.view(-1, 1) * data.GRID + rows.view(1, -1)
        return (ids.view(1, 1, data.IMAGE_SIZE, data.IMAGE_SIZE).expand(len(batch), 1, -1, -1).clone(),)

    def describe_groups(self, batch: ContextBatch) -> list[list[list[GroupInfo]]]:
        size, grid = data.PATCH, data.GRID
        patches = [
            GroupInfo(
                group_id=k,
                kind="patch",
                box=((k % grid) * size, (k // grid) * size, (k % grid + 1) * size, (k // grid + 1) * size),
            )
            for k in range(grid * grid)
        ]
        return [[list(patches)] for _ in range(len(batch))]

    def training_items(self) -> list[RawItem]:
        """The first :data:`TRAINING_ITEMS` examples of the training set, with group and
        evidence, written once as PNG files into the model cache."""
        config = context_model.TrainConfig()
        cache = Path(self.cache_dir or default_cache_dir())
        folder = cache / f"context-demo-train-items-v{context_model.MODEL_VERSION}-{config.digest()}"
        if not (folder / "items.jsonl").exists():
            staging = folder.with_name(f"{folder.name}.{os.getpid()}.tmp")
            shutil.rmtree(staging, ignore_errors=True)
            examples = context_model.training_examples(config)
            head = data.Examples(*(part[:TRAINING_ITEMS] for part in examples))
            data.write_examples(staging, head, prefix="train")
            try:
                staging.rename(folder)
            except OSError:  # another process wrote it first: use theirs
                shutil.rmtree(staging, ignore_errors=True)
        items = [json.loads(line) for line in (folder / "items.jsonl").read_text().splitlines() if line.strip()]
        return [{**item, "image": str(folder / item["image"])} for item in items]


Factory = ContextAdapter
