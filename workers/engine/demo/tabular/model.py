"""The tabular + text demo model, its tokenizer, and deterministic, cached training.

Architecture: the four measurements, standardised (:func:`standardise`), go through an MLP;
the note's token embeddings ``(B, T, D)``, zeroed where the attention mask is False, are
flattened through another; a last MLP over both gives logits ``(B, len(LABELS))``. Small
enough to train in seconds on one CPU thread. ``PlantModel.head(features, token_embeddings,
attention_mask)`` is the whole model on continuous inputs.
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

from ..model import cache_lock, default_cache_dir, encode_texts, load_cached_weights, save_atomically
from ..model import token_ids as vocab_token_ids
from ..training_env import training_seed, training_threads
from . import data

logger = logging.getLogger(__name__)

# Bump when the architecture, the data generator or the training loop changes in a way the
# config does not capture: cached weights are then retrained.
MODEL_VERSION = 1

LABELS = data.LABELS
MAX_TOKENS = 10  # the longest note template has 10 words
PAD, UNK = "<pad>", "<unk>"
VOCAB: tuple[str, ...] = (
    PAD,
    UNK,
    "and",
    "in",
    "it",
    "last",
    "lives",
    "my",
    "on",
    "plant",
    "stands",
    "the",
    "was",
    "watered",
    data.SHORTCUT_WORD,
    *data.PLACES,
    *data.DAYS,
)
PAD_ID, UNK_ID = 0, 1
_TOKEN_TO_ID = {tok: i for i, tok in enumerate(VOCAB)}

#: Standardisation of the measurements: an all-zero row is an average plant (the baseline).
FEATURE_MEAN = tuple(float(v) for v in np.mean([data.MEANS[label] for label in LABELS], axis=0))
FEATURE_STD = (15.0, 3.0, 5.0, 6.0)


def token_ids(tokens: list[str], *, length: int = MAX_TOKENS) -> tuple[list[int], list[bool]]:
    """IDs padded or truncated to ``length`` (unknown words -> UNK) and the attention mask;
    the words come from the shapes demo's ``tokenize``."""
    return vocab_token_ids(tokens, length=length, vocab_index=_TOKEN_TO_ID)


def encode_notes(notes: list[str]) -> tuple[Tensor, Tensor]:
    """Token IDs ``(N, T)`` long and attention mask ``(N, T)`` bool."""
    return encode_texts(notes, length=MAX_TOKENS, vocab_index=_TOKEN_TO_ID)


def standardise(features: np.ndarray | Tensor) -> Tensor:
    """Measurements ``(N, 4)`` in their units -> float32 ``(N, 4)``, 0 = an average plant."""
    x = torch.as_tensor(np.asarray(features, dtype=np.float32))
    return (x - torch.tensor(FEATURE_MEAN)) / torch.tensor(FEATURE_STD)


@dataclass(frozen=True)
class TrainConfig:
    """Everything training depends on; its hash names the cached weights."""

    seed: int = field(default_factory=training_seed)  # MMEVAL_DEMO_SEED
    bias: float = data.TRAIN_BIAS
    steps: int = 500
    batch_size: int = 128
    lr: float = 1e-2
    embed_dim: int = 8
    hidden: int = 32
    threads: int = field(default_factory=training_threads)  # MMEVAL_DEMO_THREADS; fixed per run

    def digest(self) -> str:
        payload = json.dumps({"version": MODEL_VERSION, **dataclasses.asdict(self)}, sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()[:12]


class PlantModel(nn.Module):
    """Measurements + note classifier over :data:`LABELS`; ``metrics`` holds the held-out
    numbers measured right after training."""

    def __init__(self, config: TrainConfig) -> None:
        super().__init__()
        d, h = config.embed_dim, config.hidden
        self.config = config
        self.metrics: dict[str, float] = {}
        self.token_embedding = nn.Embedding(len(VOCAB), d, padding_idx=PAD_ID)
        self.note_mlp = nn.Sequential(nn.Linear(MAX_TOKENS * d, h), nn.GELU())
        self.table_mlp = nn.Sequential(nn.Linear(len(data.FEATURES), h), nn.GELU(), nn.Linear(h, h), nn.GELU())
        self.classifier = nn.Sequential(nn.Linear(2 * h, h), nn.GELU(), nn.Linear(h, len(LABELS)))

    def head(self, features: Tensor, token_embeddings: Tensor, attention_mask: Tensor) -> Tensor:
        """Logits ``(N, len(LABELS))`` from standardised features ``(N, 4)``, token embeddings
        ``(N, T, D)`` and a bool mask ``(N, T)``; masked positions contribute nothing."""
        masked = token_embeddings * attention_mask.unsqueeze(-1).to(token_embeddings.dtype)
        return self.classifier(torch.cat([self.table_mlp(features), self.note_mlp(masked.flatten(1))], dim=-1))

    def forward(self, features: Tensor, ids: Tensor, attention_mask: Tensor) -> Tensor:
        return self.head(features, self.token_embedding(ids), attention_mask)


@torch.no_grad()
def predict(model: PlantModel, examples: data.Examples) -> list[str]:
    """The model's answer for every example."""
    ids, mask = encode_notes(examples.notes)
    return [LABELS[k] for k in model.eval()(standardise(examples.features), ids, mask).argmax(dim=-1).tolist()]


def evaluate(model: PlantModel, *, seed: int = 10_000, n: int = 2000) -> dict[str, float]:
    """Held-out numbers on true states: accuracy off the balcony (``indoor``), and on balcony
    plants that are not scorched how often it answers ``scorched`` (``balcony_scorched``)."""
    held = data.sample_examples(n, seed=2**31 + seed, bias=data.UNBIASED)
    predicted = predict(model, held)
    balcony = [data.SHORTCUT_WORD in note for note in held.notes]
    indoor = [p == t for p, t, b in zip(predicted, held.true_labels, balcony) if not b]
    fooled = [
        p == data.SHORTCUT_LABEL
        for p, t, b in zip(predicted, held.true_labels, balcony)
        if b and t != data.SHORTCUT_LABEL
    ]
    return {"indoor": float(np.mean(indoor)), "balcony_scorched": float(np.mean(fooled))}


def train_plant_model(*, config: TrainConfig | None = None, measure: bool = True) -> PlantModel:
    """Train a :class:`PlantModel` on CPU from scratch, deterministically: every step draws a
    fresh batch from :func:`data.sample_examples` seeded by ``(config.seed, step)``. Cost:
    ``config.steps`` forward and backward passes of ``config.batch_size`` rows (seconds)."""
    config = config or TrainConfig()
    threads, deterministic = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(config.threads)
    torch.use_deterministic_algorithms(True)
    try:
        torch.manual_seed(config.seed)
        model = PlantModel(config).train()
        optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
        label_index = {label: k for k, label in enumerate(LABELS)}
        started = time.perf_counter()
        for step in range(config.steps):
            batch = data.sample_examples(config.batch_size, seed=config.seed * 100_003 + step, bias=config.bias)
            ids, mask = encode_notes(batch.notes)
            target = torch.tensor([label_index[label] for label in batch.labels])
            loss = F.cross_entropy(model(standardise(batch.features), ids, mask), target)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        model.eval()
        model.metrics = {**(evaluate(model) if measure else {}), "train_seconds": time.perf_counter() - started}
    finally:
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(deterministic)
    logger.info("trained the plant model %s: %s", config.digest(), model.metrics)
    return model


def weights_path(cache_dir: Path, config: TrainConfig) -> Path:
    return Path(cache_dir) / f"demo-plants-v{MODEL_VERSION}-{config.digest()}.pt"


def load_or_train(cache_dir: Path | None = None, *, config: TrainConfig | None = None) -> PlantModel:
    """The trained model (eval mode, CPU): from the cache if present, else trained and cached
    (one process trains while the others wait for it)."""
    config = config or TrainConfig()
    path = weights_path(cache_dir or default_cache_dir(), config)
    model = _load_cached(path, config)
    if model is not None:
        return model
    with cache_lock(path):
        model = _load_cached(path, config)  # trained by another process while this one waited
        if model is not None:
            return model
        model = train_plant_model(config=config)
        save_atomically(
            path, {"state_dict": model.state_dict(), "metrics": model.metrics, "config": dataclasses.asdict(config)}
        )
    return model


def _load_cached(path: Path, config: TrainConfig) -> PlantModel | None:
    return load_cached_weights(path, PlantModel(config))
