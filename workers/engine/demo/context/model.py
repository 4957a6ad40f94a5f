"""The context-bias demo's model: a small CNN over the 32x32 picture, trained in a few seconds
on CPU, deterministically, and cached under ``MMEVAL_CACHE_DIR`` like the other demo models.

The CNN maps the picture to an 8x8 grid of features (one per 4x4-pixel patch), max-pools them
and reads one score ``s``; the logits are ``(s/2, -s/2)`` for ``(circle, square)``, so an
attribution of either answer's logit is an attribution of the log-odds between the two.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..model import default_cache_dir, save_atomically
from ..training_env import training_seed, training_threads
from . import data

logger = logging.getLogger(__name__)

MODEL_VERSION = 2  # 2: ambiguous shapes are faint, more often in group b
LABELS = data.LABELS


@dataclass(frozen=True)
class TrainConfig:
    """Everything training depends on; its hash names the cached weights."""

    seed: int = field(default_factory=training_seed)  # MMEVAL_DEMO_SEED
    n_train: int = 1024  # a fixed training set, drawn from the seed
    steps: int = 200
    batch_size: int = 64
    lr: float = 5e-3
    threads: int = field(default_factory=training_threads)  # MMEVAL_DEMO_THREADS

    def digest(self) -> str:
        payload = json.dumps({"version": MODEL_VERSION, **dataclasses.asdict(self)}, sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()[:12]

    def training_seed(self) -> int:
        """The data seed of the training set (apart from every evaluation draw's)."""
        return 7_000_003 * (self.seed + 1)


def normalize_images(images: np.ndarray) -> Tensor:
    """uint8 ``(N, 32, 32, 3)`` -> float ``(N, 3, 32, 32)`` in [-1, 1]."""
    return (torch.as_tensor(images).permute(0, 3, 1, 2).float().div(255.0) - 0.5) / 0.5


class ContextModel(nn.Module):
    """Picture ``(N, 3, 32, 32)`` in [-1, 1] -> logits ``(N, 2)`` (module doc)."""

    def __init__(self) -> None:
        super().__init__()
        self.cnn = nn.Sequential(
            nn.Conv2d(3, 8, 3, stride=2, padding=1),
            nn.GELU(),  # 16x16
            nn.Conv2d(8, 16, 3, stride=2, padding=1),
            nn.GELU(),  # 8x8: one cell per patch
            nn.Conv2d(16, 16, 3, padding=1),
            nn.GELU(),
        )
        self.score = nn.Linear(16, 1)
        self.metrics: dict[str, float] = {}

    def forward(self, pixels: Tensor) -> Tensor:
        pooled = self.cnn(pixels).amax(dim=(2, 3))  # (N, 16)
        s = self.score(pooled)  # (N, 1)
        return torch.cat([s / 2, -s / 2], dim=1)


def train_context_model(config: TrainConfig) -> ContextModel:
    """Train on ``config.n_train`` examples for ``config.steps`` steps of ``batch_size``
    (seeded draws), fixed threads, deterministic algorithms. Fills ``model.metrics``."""
    threads, deterministic = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(config.threads)
    torch.use_deterministic_algorithms(True)
    try:
        started = time.perf_counter()
        train = data.sample_examples(config.n_train, seed=config.training_seed())
        pixels = normalize_images(train.images)
        target = torch.tensor([LABELS.index(label) for label in train.labels])
        torch.manual_seed(config.seed)
        model = ContextModel()
        optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=1e-4)
        schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=config.lr, total_steps=config.steps)
        order = np.random.default_rng(config.seed).integers(0, config.n_train, size=(config.steps, config.batch_size))
        model.train()
        for step in range(config.steps):
            rows = torch.as_tensor(order[step])
            loss = F.cross_entropy(model(pixels[rows]), target[rows])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
        model.eval()
        model.metrics = {**evaluate(model), "train_seconds": time.perf_counter() - started}
    finally:
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(deterministic)
    logger.info("trained the context demo model %s: %s", config.digest(), model.metrics)
    return model


@torch.no_grad()
def predict(model: ContextModel, images: np.ndarray) -> list[str]:
    return [LABELS[k] for k in model(normalize_images(images)).argmax(dim=1).tolist()]


def evaluate(model: ContextModel, *, seed: int = 31_337, n: int = 2000) -> dict[str, float]:
    """On a held-out draw: accuracy on the clear and on the ambiguous shapes, and on the
    ambiguous ones the share answered with the group's usual shape (the context)."""
    held_out = data.sample_examples(n, seed=seed)
    answers = predict(model, held_out.images)
    clear = [a == label for a, label, amb in zip(answers, held_out.labels, held_out.ambiguous) if not amb]
    usual = [a == data.USUAL_SHAPE[g] for a, g, amb in zip(answers, held_out.groups, held_out.ambiguous) if amb]
    return {"clear_accuracy": float(np.mean(clear)), "ambiguous_follows_context": float(np.mean(usual))}


def weights_path(cache_dir: Path, config: TrainConfig) -> Path:
    return Path(cache_dir) / f"context-demo-v{MODEL_VERSION}-{config.digest()}.pt"


def load_or_train(cache_dir: Path | None = None, *, config: TrainConfig | None = None) -> ContextModel:
    """The trained model (eval mode, CPU): from the cache, else trained (a few seconds) and
    cached atomically."""
    config = config or TrainConfig()
    path = weights_path(cache_dir or default_cache_dir(), config)
    if path.exists():
        try:
            saved = torch.load(path, map_location="cpu", weights_only=True)
            model = ContextModel()
            model.load_state_dict(saved["state_dict"])
            model.metrics = dict(saved["metrics"])
            return model.eval()
        except Exception as exc:  # truncated or foreign file: retrain rather than fail
            logger.warning("ignoring unreadable context demo weights %s: %r", path, exc)
    model = train_context_model(config)
    save_atomically(path, {"state_dict": model.state_dict(), "metrics": model.metrics})
    return model


def training_examples(config: TrainConfig | None = None) -> data.Examples:
    """The training set of ``config`` (the same draw training uses)."""
    config = config or TrainConfig()
    return data.sample_examples(config.n_train, seed=config.training_seed())
