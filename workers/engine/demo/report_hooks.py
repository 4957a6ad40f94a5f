"""The demo adapter's optional protocol hooks for the model report (see
:mod:`workers.engine.adapter`, "Optional hooks"): training checkpoints, training items and
modality-specific corruptions. Mixed into :class:`workers.engine.demo.adapter.DemoAdapter`.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from ..adapter import AdapterError, RawItem
from . import data
from . import model as demo_model
from .blur import blur

#: Training batches whose examples :meth:`DemoReportHooks.training_items` returns (the first
#: ones of the run: every checkpoint has trained on them).
TRAINING_BATCHES = 4


class DemoReportHooks:
    """Checkpoints ``step-25`` ... ``step-900`` (the last is the final model), the examples of
    the first training batches, and corruptions: Gaussian blur of the image, word dropout in
    the question. Needs ``self.cache_dir``, ``self.device`` and ``self.model`` (the adapter's)."""

    #: Everything item-specific in a :class:`DemoBatch` besides the pixels is the question's
    #: (tokens, attention mask): pairs may swap embedded images within a batch of questions.
    batch_context = "text"

    def checkpoints(self) -> list[dict[str, Any]]:
        """``[{"name": "step-25", "step": 25}, ...]`` in training order."""
        config = demo_model.TrainConfig()
        steps = sorted({s for s in demo_model.CHECKPOINT_STEPS if s < config.steps} | {config.steps})
        return [{"name": f"step-{s}", "step": s} for s in steps]

    def load_checkpoint(self, name: str) -> DemoReportHooks:
        """A loaded adapter with the weights of checkpoint ``name`` (this one is unchanged).
        The first call may train the model again to recover checkpoints (about a minute)."""
        step = int(name.removeprefix("step-")) if name.startswith("step-") and name[5:].isdigit() else None
        checkpoints = self._checkpoint_states()
        if step not in checkpoints:
            raise AdapterError(
                f"no demo checkpoint {name!r}; there are {', '.join(f'step-{s}' for s in sorted(checkpoints))}"
            )
        adapter = type(self)(cache_dir=self.cache_dir)
        model = demo_model.model_from_state(checkpoints[step]).requires_grad_(False)
        adapter.device = self.device
        adapter._model = model.to(self.device)
        return adapter

    def _checkpoint_states(self) -> dict[int, dict[str, torch.Tensor]]:
        """Every checkpoint's weights, read from the cache once per adapter (the file holds them
        all: a report loading seven checkpoints read it seven times)."""
        states = getattr(self, "_checkpoints_read", None)
        if states is None:
            states = demo_model.load_checkpoints(self.cache_dir, progress=False)
            self._checkpoints_read = states
        return states

    def training_items(self) -> list[RawItem]:
        """The examples of the first :data:`TRAINING_BATCHES` training batches (labels as
        trained, with the shortcut), written once as PNG files into the model cache."""
        config = demo_model.TrainConfig()
        cache = Path(self.cache_dir or demo_model.default_cache_dir())
        folder = cache / f"demo-train-items-v{demo_model.MODEL_VERSION}-{config.digest()}"
        listing = folder / "items.json"
        if not listing.exists():
            staging = folder.with_name(f"{folder.name}.{os.getpid()}.tmp")
            staging.mkdir(parents=True, exist_ok=True)
            items = []
            for step in range(TRAINING_BATCHES):
                batch = data.sample_examples(config.batch_size, seed=config.seed * 100_003 + step, bias=config.bias)
                for k, (image, question, answer) in enumerate(zip(batch.images, batch.questions, batch.answers)):
                    item_id = f"train-{step}-{k:03d}"
                    Image.fromarray(image).save(staging / f"{item_id}.png", format="PNG")
                    items.append({"id": item_id, "image": f"{item_id}.png", "text": question, "label": answer})
            (staging / "items.json").write_text(json.dumps(items))
            try:
                staging.rename(folder)
            except OSError:  # another process wrote it first: use theirs
                shutil.rmtree(staging, ignore_errors=True)
        items = json.loads(listing.read_text())
        return [{**item, "image": str(folder / item["image"])} for item in items]

    def corrupt(self, batch: Any, *, modality: str, level: float, seed: int) -> Any:
        """A corrupted copy of ``batch`` at severity ``level`` in [0, 1]: ``image``, Gaussian
        blur of ``6 * level`` pixels; ``text``, each word replaced by the unknown word with
        probability ``level`` (seeded by ``seed``)."""
        if modality == "image":
            if level <= 0:
                return batch
            return dataclasses.replace(batch, pixels=blur(batch.pixels, sigma=6.0 * level))
        if modality == "text":
            rng = np.random.default_rng(seed)
            drop = torch.as_tensor(rng.random(tuple(batch.token_ids.shape)) < level, device=batch.token_ids.device)
            ids = torch.where(
                drop & batch.attention_mask, torch.full_like(batch.token_ids, demo_model.UNK_ID), batch.token_ids
            )
            return dataclasses.replace(batch, token_ids=ids)
        raise ValueError(f"the demo has no corruption for modality {modality!r}")
