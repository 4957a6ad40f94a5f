"""The demo fusion model, its tokenizer, and deterministic, cached training.

Architecture:

* image encoder: a small CNN (batch norm; ReLU in the first two layers, GELU after),
  ``(B, 3, 64, 64)`` -> patch grid ``(B, 64, C)``: one feature vector per 8x8-pixel patch;
* question encoder: token embeddings ``(B, T, D)``, zeroed where the attention mask is
  False, flattened and passed through an MLP -> question vector ``(B, H)``;
* fusion: FiLM of every patch by the question, then 4-head question-conditioned attention
  over the 64 patches, then an MLP over ``[attended, max-pooled patches, question]`` ->
  logits ``(B, len(LABELS))``.

After the CNN the model is built from GELU, softmax, products and one max-pool, so
second-order cross-modal scores (Hessian blocks between pixels and token embeddings) are
informative.

``DemoModel.head(pixels, token_embeddings, attention_mask)`` is the whole model on continuous
inputs; ``forward`` only adds the embedding lookup. Training draws fresh examples every step
from :func:`data.sample_examples` at ``data.TRAIN_BIAS``; see :func:`train_demo_model`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import json
import logging
import math
import os
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm

from . import data
from .training_env import training_seed, training_threads

logger = logging.getLogger(__name__)
ModelT = TypeVar("ModelT", bound=nn.Module)

# Bump when the architecture, the data generator or the training loop changes in a way that
# the config does not capture: cached weights are then retrained.
MODEL_VERSION = 2  # 2: the triangle shortcut lives in the labels; faded colours keep their hue

LABELS: tuple[str, ...] = data.ANSWERS
MAX_TOKENS = 8  # T: the longest template ("what shape is the purple object?") has 7
PAD, UNK = "<pad>", "<unk>"
VOCAB: tuple[str, ...] = (
    PAD,
    UNK,
    "?",
    "a",
    "colour",
    "is",
    "object",
    "shape",
    "the",
    "there",
    "what",
    *data.COLOURS,
    *data.SHAPES,
)
PAD_ID, UNK_ID = 0, 1
_TOKEN_TO_ID = {tok: i for i, tok in enumerate(VOCAB)}
_TOKEN_RE = re.compile(r"[a-z0-9]+|[^\sa-z0-9]")

# Pixels are normalised to [-1, 1]: (x / 255 - 0.5) / 0.5.
PIXEL_MEAN, PIXEL_STD = 0.5, 0.5
PATCH = 8  # pixels per patch side; 64 / 8 = 8 patches per side
GRID = data.IMAGE_SIZE // PATCH


def tokenize(text: str) -> list[str]:
    """Lower-case words and single punctuation marks: ``"Is there a red cube?"`` ->
    ``["is", "there", "a", "red", "cube", "?"]``."""
    return _TOKEN_RE.findall(text.lower())


def token_ids(
    tokens: list[str], *, length: int = MAX_TOKENS, vocab_index: dict[str, int] | None = None
) -> tuple[list[int], list[bool]]:
    """IDs padded or truncated to ``length`` (unknown words -> UNK) and the attention mask
    (True for real tokens). ``vocab_index`` maps a word to its ID: this model's vocabulary by
    default; any vocabulary that starts with PAD, UNK (the plants demo's) works too."""
    index = _TOKEN_TO_ID if vocab_index is None else vocab_index
    ids = [index.get(tok, UNK_ID) for tok in tokens[:length]]
    mask = [True] * len(ids) + [False] * (length - len(ids))
    return ids + [PAD_ID] * (length - len(ids)), mask


def encode_texts(
    texts: list[str], *, length: int = MAX_TOKENS, vocab_index: dict[str, int] | None = None
) -> tuple[Tensor, Tensor]:
    """Token IDs ``(N, length)`` long and attention mask ``(N, length)`` bool (see :func:`token_ids`)."""
    pairs = [token_ids(tokenize(t), length=length, vocab_index=vocab_index) for t in texts]
    ids = torch.tensor([p[0] for p in pairs], dtype=torch.long).reshape(-1, length)
    mask = torch.tensor([p[1] for p in pairs], dtype=torch.bool).reshape(-1, length)
    return ids, mask


def encode_questions(questions: list[str]) -> tuple[Tensor, Tensor]:
    """Token IDs ``(N, T)`` long and attention mask ``(N, T)`` bool."""
    return encode_texts(questions)


def normalize_images(images: np.ndarray | Tensor) -> Tensor:
    """uint8 ``(N, 64, 64, 3)`` -> float ``(N, 3, 64, 64)`` in [-1, 1]."""
    x = torch.as_tensor(images).permute(0, 3, 1, 2).float().div(255.0)
    return (x - PIXEL_MEAN) / PIXEL_STD


@dataclass(frozen=True)
class TrainConfig:
    """Everything training depends on; its hash names the cached weights."""

    seed: int = field(default_factory=training_seed)  # MMEVAL_DEMO_SEED
    bias: float = data.TRAIN_BIAS
    steps: int = 900
    batch_size: int = 64
    lr: float = 4e-3
    weight_decay: float = 1e-4
    embed_dim: int = 32  # D, token embedding width
    hidden: int = 64  # H, question vector and fusion width
    channels: int = 48  # C, patch feature width
    # Fixed, so float reductions run in the same order every time. One thread: on a shared
    # 2-core machine two OpenMP threads spin-wait and run several times slower.
    threads: int = field(default_factory=training_threads)  # MMEVAL_DEMO_THREADS; fixed per run

    def digest(self) -> str:
        payload = json.dumps({"version": MODEL_VERSION, **dataclasses.asdict(self)}, sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()[:12]


class DemoModel(nn.Module):
    """Image + question fusion classifier over :data:`LABELS`.

    ``metrics`` holds the held-out accuracies measured right after training (filled from the
    checkpoint when loaded from the cache); ``checkpoints`` the weights saved during training
    (:func:`train_demo_model`).
    """

    def __init__(self, config: TrainConfig) -> None:
        super().__init__()
        d, h, c = config.embed_dim, config.hidden, config.channels
        self.config = config
        self.metrics: dict[str, float] = {}
        self.checkpoints: dict[int, dict[str, Tensor]] = {}  # filled by training only
        self.token_embedding = nn.Embedding(len(VOCAB), d, padding_idx=PAD_ID)
        # Position-aware: the whole (masked) sequence goes through one MLP. The templates are
        # short and fixed, and this learns far faster than pooling or recurrence.
        self.question_mlp = nn.Sequential(nn.Linear(MAX_TOKENS * d, h), nn.GELU(), nn.Linear(h, h), nn.GELU())
        # Strided early layers keep the CPU cost low (training must take well under a minute);
        # batch norm makes the few hundred steps we can afford enough. In eval mode it is a
        # fixed per-channel affine map, so the head stays batch-size agnostic.
        self.cnn = nn.Sequential(
            nn.Conv2d(3, 16, 4, stride=2, padding=1),
            nn.BatchNorm2d(16),
            nn.ReLU(),  # 32x32
            nn.Conv2d(16, 32, 3, stride=2, padding=1),
            nn.BatchNorm2d(32),
            nn.ReLU(),  # 16x16
            nn.Conv2d(32, c, 3, stride=2, padding=1),
            nn.BatchNorm2d(c),
            nn.GELU(),  # 8x8
            nn.Conv2d(c, c, 3, padding=1),
            nn.BatchNorm2d(c),
            nn.GELU(),  # patch context
        )
        self.patch_position = nn.Parameter(torch.zeros(GRID * GRID, c))
        self.film = nn.Linear(h, 2 * c)
        self.patch_mlp = nn.Sequential(nn.Linear(c, h), nn.GELU(), nn.Linear(h, h))
        self.heads = 4  # several patch-attention heads: e.g. one per object the question names
        self.query = nn.Linear(h, h)
        self.key = nn.Linear(h, h)
        self.classifier = nn.Sequential(nn.Linear(3 * h, h), nn.GELU(), nn.Linear(h, len(LABELS)))

    def encode_question(self, token_embeddings: Tensor, attention_mask: Tensor) -> Tensor:
        """``(N, T, D)`` embeddings and ``(N, T)`` bool mask -> question vector ``(N, H)``.
        Masked positions contribute nothing, whatever their embedding."""
        masked = token_embeddings * attention_mask.unsqueeze(-1).to(token_embeddings.dtype)
        return self.question_mlp(masked.flatten(1))

    def encode_image(self, pixels: Tensor) -> Tensor:
        """``(N, 3, 64, 64)`` normalised pixels -> patch features ``(N, 64, C)``, row-major
        (patch ``k`` covers rows ``8*(k//8)..``, columns ``8*(k%8)..``)."""
        # Channels-last is many times faster for batch norm on CPU; values are unchanged.
        grid = self.cnn(pixels.contiguous(memory_format=torch.channels_last))  # (N, C, 8, 8)
        return grid.flatten(2).transpose(1, 2) + self.patch_position

    def head(self, pixels: Tensor, token_embeddings: Tensor, attention_mask: Tensor) -> Tensor:
        """Logits ``(N, len(LABELS))`` from pixels ``(N, 3, 64, 64)``, token embeddings
        ``(N, T, D)`` and a bool attention mask ``(N, T)`` (same N everywhere)."""
        return self.classifier[2](self.decision_features(pixels, token_embeddings, attention_mask))

    def decision_features(self, pixels: Tensor, token_embeddings: Tensor, attention_mask: Tensor) -> Tensor:
        """The classifier's penultimate activations ``(N, H)``: the logits are one linear map
        of them (``classifier[2]``)."""
        question = self.encode_question(token_embeddings, attention_mask)  # (N, H)
        return self.fused_features(self.encode_image(pixels), question)

    def fuse(self, patches: Tensor, question: Tensor) -> Tensor:
        """Logits ``(N, len(LABELS))`` from patch features ``(N, P, C)`` (:meth:`encode_image`)
        and question vectors ``(N, H)`` (:meth:`encode_question`): :meth:`head` after the two
        encoders, so ``head(x, t, m) == fuse(encode_image(x), encode_question(t, m))``."""
        return self.classifier[2](self.fused_features(patches, question))

    def fused_features(self, patches: Tensor, question: Tensor) -> Tensor:
        """:meth:`decision_features` from the two encodings (patches ``(N, P, C)``, question
        ``(N, H)``)."""
        gamma, beta = self.film(question).unsqueeze(1).chunk(2, dim=-1)  # (N, 1, C) each
        patches = self.patch_mlp(patches * (1 + gamma) + beta)  # (N, P, H)
        # Question-conditioned attention over patches: the genuinely cross-modal step.
        n, p, h = patches.shape
        query = self.query(question).view(n, self.heads, h // self.heads)
        key = self.key(patches).view(n, p, self.heads, h // self.heads)
        logits = torch.einsum("nkd,npkd->nkp", query, key) / math.sqrt(h // self.heads)
        attention = logits.softmax(dim=-1)  # (N, heads, P)
        values = patches.view(n, p, self.heads, h // self.heads)
        attended = torch.einsum("nkp,npkd->nkd", attention, values).reshape(n, h)
        pooled = patches.amax(dim=1)
        return self.classifier[1](self.classifier[0](torch.cat([attended, pooled, question], dim=-1)))

    def forward(self, pixels: Tensor, ids: Tensor, attention_mask: Tensor) -> Tensor:
        """Logits ``(N, len(LABELS))`` from pixels ``(N, 3, 64, 64)`` and token IDs ``(N, T)``."""
        return self.head(pixels, self.token_embedding(ids), attention_mask)


@torch.no_grad()
def predict(model: DemoModel, examples: data.Examples, *, batch_size: int = 256) -> list[str]:
    """The model's answer for every example."""
    model.eval()
    out: list[str] = []
    for start in range(0, len(examples.questions), batch_size):
        pixels = normalize_images(examples.images[start : start + batch_size])
        ids, mask = encode_questions(examples.questions[start : start + batch_size])
        out.extend(LABELS[k] for k in model(pixels, ids, mask).argmax(dim=-1).tolist())
    return out


def accuracy(model: DemoModel, examples: data.Examples) -> float:
    """Share of examples where the model's answer equals the gold answer."""
    preds = predict(model, examples)
    return float(np.mean([p == a for p, a in zip(preds, examples.answers)]))


def evaluate(model: DemoModel, *, seed: int = 10_000, n: int = 1500) -> dict[str, float]:
    """Held-out accuracies: on the training distribution (``biased``), on the unbiased
    distribution (``unbiased``), and on unbiased "what colour is the triangle?" items whose
    triangle is not red (``nonred_triangle_colour``), where the shortcut misleads; and how
    often the model answers "red" on those (``nonred_triangle_red``)."""
    biased = sample_held_out(n, seed=seed, bias=data.TRAIN_BIAS)
    unbiased = sample_held_out(n, seed=seed + 1, bias=data.UNBIASED)
    keep = [
        i
        for i, (q, a) in enumerate(zip(unbiased.questions, unbiased.answers))
        if q == data.SHORTCUT_QUESTION and a != data.BIASED_COLOUR
    ]
    nonred = data.Examples(
        unbiased.images[keep],
        [unbiased.questions[i] for i in keep],
        [unbiased.answers[i] for i in keep],
        [unbiased.kinds[i] for i in keep],
    )
    return {
        "biased": accuracy(model, biased),
        "unbiased": accuracy(model, unbiased),
        "nonred_triangle_colour": accuracy(model, nonred),
        "nonred_triangle_red": float(np.mean([p == data.BIASED_COLOUR for p in predict(model, nonred)])),
    }


def sample_held_out(n: int, *, seed: int, bias: float) -> data.Examples:
    """Examples from a seed range training never uses (training seeds are < 2**31)."""
    return data.sample_examples(n, seed=2**31 + seed, bias=bias)


class _TorchSettings:
    """Fix threads and determinism for training, and restore the caller's settings after."""

    def __init__(self, threads: int) -> None:
        self.threads = threads

    def __enter__(self) -> None:
        self._threads = torch.get_num_threads()
        self._deterministic = torch.are_deterministic_algorithms_enabled()
        torch.set_num_threads(self.threads)
        torch.use_deterministic_algorithms(True)

    def __exit__(self, *exc: object) -> None:
        torch.set_num_threads(self._threads)
        torch.use_deterministic_algorithms(self._deterministic)


#: Training steps after which :func:`train_demo_model` keeps a copy of the weights, for the
#: learning-process section of the model report (steps past ``config.steps`` are skipped; the
#: final weights are always the last checkpoint).
CHECKPOINT_STEPS: tuple[int, ...] = (25, 50, 100, 200, 400, 650)


def train_demo_model(
    *,
    seed: int = 0,
    config: TrainConfig | None = None,
    progress: bool = True,
    measure: bool = True,
    checkpoint_steps: tuple[int, ...] = (),
) -> DemoModel:
    """Train a :class:`DemoModel` on CPU from scratch, deterministically.

    Each step draws a fresh batch from :func:`data.sample_examples` with a seed derived from
    ``(config.seed, step)``, so there is no fixed training set to overfit and nothing touches
    the disk. ``seed`` is used when ``config`` is None. With ``measure``, fills
    ``model.metrics`` with :func:`evaluate` and the training time (a few seconds more).
    ``model.checkpoints`` maps each step of ``checkpoint_steps`` (at most ``config.steps``)
    and ``config.steps`` to a copy of the weights after that many optimizer steps; copying
    reads the weights only, so the final weights are the same with or without checkpoints.
    Cost: ``config.steps`` forward and backward passes of ``config.batch_size`` examples.
    """
    config = config or TrainConfig(seed=seed)
    with _TorchSettings(config.threads):
        torch.manual_seed(config.seed)
        model = DemoModel(config)
        model.train()
        optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
        schedule = torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=config.lr, total_steps=config.steps, pct_start=0.1
        )
        label_index = {label: k for k, label in enumerate(LABELS)}
        started = time.perf_counter()
        bar = tqdm(range(config.steps), desc="training demo model", disable=not progress, leave=False)
        keep = {k for k in checkpoint_steps if 0 < k < config.steps}
        checkpoints: dict[int, dict[str, Tensor]] = {}
        for step in bar:
            batch = data.sample_examples(config.batch_size, seed=config.seed * 100_003 + step, bias=config.bias)
            pixels = normalize_images(batch.images)
            ids, mask = encode_questions(batch.questions)
            target = torch.tensor([label_index[a] for a in batch.answers])
            loss = F.cross_entropy(model(pixels, ids, mask), target)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            if step + 1 in keep:
                checkpoints[step + 1] = {k: v.detach().clone() for k, v in model.state_dict().items()}
            if step % 20 == 0:
                bar.set_postfix(loss=f"{loss.item():.3f}")
        model.eval()
        checkpoints[config.steps] = {k: v.detach().clone() for k, v in model.state_dict().items()}
        model.checkpoints = checkpoints
        seconds = time.perf_counter() - started
        model.metrics = {**(evaluate(model) if measure else {}), "train_seconds": seconds}
    logger.info("trained demo model %s: %s", config.digest(), model.metrics)
    return model


def default_cache_dir() -> Path:
    """``$MMEVAL_CACHE_DIR`` or ``~/.cache/mmeval``."""
    env = os.environ.get("MMEVAL_CACHE_DIR")
    return Path(env) if env else Path.home() / ".cache" / "mmeval"


def weights_path(cache_dir: Path, config: TrainConfig) -> Path:
    """Where the weights for ``config`` live; the name changes with the config and version."""
    return Path(cache_dir) / f"demo-model-v{MODEL_VERSION}-{config.digest()}.pt"


def load_or_train(
    cache_dir: Path | None = None, *, config: TrainConfig | None = None, progress: bool = True
) -> DemoModel:
    """The trained demo model (eval mode, CPU): from the cache if present, else trained and
    cached. One process trains while the others wait for it (:func:`cache_lock`)."""
    config = config or TrainConfig()
    path = weights_path(cache_dir or default_cache_dir(), config)
    model = _load_cached(path, config)
    if model is not None:
        return model
    with cache_lock(path):
        model = _load_cached(path, config)  # trained by another process while this one waited
        if model is not None:
            return model
        logger.info("training the demo model (about a minute on 2 CPU cores); caching at %s", path)
        model = train_demo_model(config=config, progress=progress, checkpoint_steps=CHECKPOINT_STEPS)
        save_atomically(
            path, {"state_dict": model.state_dict(), "metrics": model.metrics, "config": dataclasses.asdict(config)}
        )
        save_atomically(
            checkpoints_path(path.parent, config),
            {"checkpoints": model.checkpoints, "config": dataclasses.asdict(config)},
        )
    return model


def _load_cached(path: Path, config: TrainConfig) -> DemoModel | None:
    return load_cached_weights(path, DemoModel(config))


def load_cached_weights(path: Path, model: ModelT) -> ModelT | None:
    """``model`` (eval mode) with the weights and metrics cached at ``path``; None when there are
    none, or when the file is truncated or foreign (the caller trains again rather than fail)."""
    if not path.exists():
        return None
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
        model.load_state_dict(checkpoint["state_dict"])
        model.metrics = dict(checkpoint["metrics"])
        return model.eval()
    except Exception as exc:
        logger.warning("ignoring unreadable model weights %s: %r", path, exc)
        return None


@contextlib.contextmanager
def cache_lock(path: Path) -> Iterator[None]:
    """Held while one process trains the weights cached at ``path``: parallel test workers and
    Celery workers that need the same weights wait for it and load its file, rather than each
    spending a minute of CPU on the same training."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(f"{path.name}.lock"), "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def save_atomically(path: Path, payload: dict) -> None:
    """``torch.save`` through a temporary file and an atomic rename, so a reader never sees half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)


def checkpoints_path(cache_dir: Path, config: TrainConfig) -> Path:
    """Where the training checkpoints of ``config`` live, next to the final weights."""
    return Path(cache_dir) / f"demo-model-v{MODEL_VERSION}-{config.digest()}-checkpoints.pt"


def load_checkpoints(
    cache_dir: Path | None = None, *, config: TrainConfig | None = None, progress: bool = True
) -> dict[int, dict[str, Tensor]]:
    """The weights saved during training (step -> state dict, the last step being the final
    model): from the cache, or by training again when weights were cached before checkpoints
    were kept (the same config trains the same weights, so the cached final model stays
    valid). Cost: nothing when cached, else one training run (about a minute on 2 cores)."""
    config = config or TrainConfig()
    cache_dir = Path(cache_dir or default_cache_dir())
    path = checkpoints_path(cache_dir, config)
    checkpoints = _load_cached_checkpoints(path)
    if checkpoints is not None:
        return checkpoints
    with cache_lock(path):
        checkpoints = _load_cached_checkpoints(path)  # trained by another process meanwhile
        if checkpoints is not None:
            return checkpoints
        logger.info("training the demo model again to keep its checkpoints; caching at %s", path)
        model = train_demo_model(config=config, progress=progress, measure=False, checkpoint_steps=CHECKPOINT_STEPS)
        save_atomically(path, {"checkpoints": model.checkpoints, "config": dataclasses.asdict(config)})
        weights = weights_path(cache_dir, config)
        if not weights.exists():
            save_atomically(
                weights,
                {"state_dict": model.state_dict(), "metrics": model.metrics, "config": dataclasses.asdict(config)},
            )
    return model.checkpoints


def _load_cached_checkpoints(path: Path) -> dict[int, dict[str, Tensor]] | None:
    if not path.exists():
        return None
    try:
        return dict(torch.load(path, map_location="cpu", weights_only=True)["checkpoints"])
    except Exception as exc:  # truncated or foreign file: train again rather than fail
        logger.warning("ignoring unreadable demo checkpoints %s: %r", path, exc)
        return None


def model_from_state(state_dict: dict[str, Tensor], *, config: TrainConfig | None = None) -> DemoModel:
    """A :class:`DemoModel` (eval mode, CPU) with the given weights."""
    model = DemoModel(config or TrainConfig())
    model.load_state_dict(state_dict)
    return model.eval()
