"""Analytic adapters for the model report tests: every quantity has a known answer.

* :class:`TextBlindAdapter`: an image-only linear model that ignores its text input; the image
  is a clear class prototype, so the image alone gives every answer.
* :class:`LinearAdapter`: a binary linear classifier ``s = w . a + v . b + c`` (logits
  ``[0, s]``), for the closed form of accuracy under isotropic Gaussian noise.
* :class:`BitsAdapter`: each modality one bit, sent one-hot; the model answers their XOR (or
  copies ``a``'s bit), the gold label is their XOR: the partial information decomposition of
  both is known in closed form.
* :class:`CheckpointedAdapter`: a linear model with training checkpoints (the weights grow
  with the epoch), training items, one checkpoint that fails to load, and a ``corrupt`` hook
  that works for ``a`` and refuses ``b``.

The additive, pairwise and three-modality cases use :mod:`tests.builders.toy_adapters`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from tests.builders.toy_adapters import ToyAdapter, _weights


class TextBlindAdapter(ToyAdapter):
    """``logits = 5 * P @ image`` for 3 classes (``P`` picks coordinates 0-1, 2-3, 4-5); the
    ``text`` input is never read. Baselines are 0, so with every input at its baseline the
    logits are 0 (each class 1/3)."""

    labels = ("red", "green", "blue")
    modalities = ("image", "text")
    shapes = {"image": (6,), "text": (4,)}

    def __init__(self) -> None:
        super().__init__()
        self.P = torch.tensor([[1, 1, 0, 0, 0, 0], [0, 0, 1, 1, 0, 0], [0, 0, 0, 0, 1, 1]], dtype=torch.float64)

    def logits(self, image: Tensor, text: Tensor, *, batch: dict) -> Tensor:
        return 5.0 * image @ self.P.T

    def feature_groups(self, batch: dict) -> tuple[Tensor, ...]:
        n = batch["n"]
        return torch.arange(6).expand(n, 6), (6 + torch.arange(4)).expand(n, 4)

    def make_items(self, n: int, *, seed: int = 0, scale: float = 1.0) -> list[dict]:
        """Item ``i`` shows the prototype of class ``i % 3`` (plus a little noise) with random
        text; its gold label is that class for most items and another one for every fifth."""
        gen = torch.Generator().manual_seed(seed)
        items = []
        for i in range(n):
            k = i % 3
            image = 0.2 * torch.randn(6, generator=gen, dtype=torch.float64)
            image[2 * k : 2 * k + 2] += 1.0
            label = self.labels[(k + 1) % 3] if i % 5 == 4 else self.labels[k]
            items.append(
                {
                    "id": f"it{i}",
                    "label": label,
                    "image": image.tolist(),
                    "text": torch.randn(4, generator=gen, dtype=torch.float64).tolist(),
                }
            )
        return items


class LinearAdapter(ToyAdapter):
    """Binary linear classifier: logits ``[0, s]``, ``s = w . a + v . b + c``."""

    labels = ("neg", "pos")
    modalities = ("a", "b")
    shapes = {"a": (8,), "b": (3,)}
    C = 0.3

    def __init__(self) -> None:
        super().__init__()
        self.w = _weights(40, 8)
        self.v = _weights(41, 3)

    def score(self, a: Tensor, b: Tensor) -> Tensor:
        return a @ self.w + b @ self.v + self.C

    def logits(self, a: Tensor, b: Tensor, *, batch: dict) -> Tensor:
        s = self.score(a, b)
        return torch.stack([torch.zeros_like(s), s], dim=1)

    def feature_groups(self, batch: dict) -> tuple[Tensor, ...]:
        n = batch["n"]
        return torch.arange(8).expand(n, 8), (8 + torch.arange(3)).expand(n, 3)

    def make_items(self, n: int, *, seed: int = 0, scale: float = 1.0) -> list[dict]:
        """Gold labels from the model's own score plus label noise, so some items are wrong."""
        gen = torch.Generator().manual_seed(seed)
        items = []
        for i in range(n):
            a = torch.randn(8, generator=gen, dtype=torch.float64)
            b = torch.randn(3, generator=gen, dtype=torch.float64)
            label_noise = 1.5 * float(torch.randn(1, generator=gen, dtype=torch.float64))
            noisy = float(self.score(a[None], b[None])[0]) + label_noise
            items.append({"id": f"it{i}", "label": "pos" if noisy > 0 else "neg", "a": a.tolist(), "b": b.tolist()})
        return items

    def expected_accuracy(self, items: Sequence[dict], *, sigma_a: float, sigma_b: float) -> float:
        """Closed form: noise ``N(0, sigma^2 I)`` on ``a`` and ``b`` moves ``s`` by ``N(0,
        sigma_a^2 |w|^2 + sigma_b^2 |v|^2)``, so the answer is the gold one with probability
        ``Phi(margin / spread)``, ``margin = s`` for ``pos`` and ``-s`` for ``neg``."""
        spread = math.sqrt(sigma_a**2 * float(self.w @ self.w) + sigma_b**2 * float(self.v @ self.v))
        total = 0.0
        for item in items:
            s = float(
                self.score(
                    torch.tensor([item["a"]], dtype=torch.float64), torch.tensor([item["b"]], dtype=torch.float64)
                )[0]
            )
            margin = s if item["label"] == "pos" else -s
            total += 0.5 * (1 + math.erf(margin / (spread * math.sqrt(2)))) if spread else float(margin > 0)
        return total / len(items)


class BitsAdapter(ToyAdapter):
    """Modalities ``a`` and ``b``: one bit each, one-hot ``(2,)``. Logits ``[0, 8 s]`` with
    ``s = +1`` for the answer "one" and ``-1`` for "zero": ``rule="xor"`` answers ``a XOR b``
    (``s = a0 b1 + a1 b0 - a0 b0 - a1 b1``), ``rule="copy_a"`` answers ``a``'s bit
    (``s = a1 - a0``). Gold labels are ``a XOR b`` either way."""

    labels = ("zero", "one")
    modalities = ("a", "b")
    shapes = {"a": (2,), "b": (2,)}

    def __init__(self, rule: str = "xor") -> None:
        super().__init__()
        self.rule = rule

    def logits(self, a: Tensor, b: Tensor, *, batch: dict) -> Tensor:
        if self.rule == "xor":
            s = a[:, 0] * b[:, 1] + a[:, 1] * b[:, 0] - a[:, 0] * b[:, 0] - a[:, 1] * b[:, 1]
        else:
            s = a[:, 1] - a[:, 0]
        return torch.stack([torch.zeros_like(s), 8.0 * s], dim=1)

    def feature_groups(self, batch: dict) -> tuple[Tensor, ...]:
        n = batch["n"]
        return torch.arange(2).expand(n, 2), (2 + torch.arange(2)).expand(n, 2)

    def make_items(self, n: int, *, seed: int = 0, scale: float = 1.0) -> list[dict]:
        """``n / 4`` items of each pair of bits (``n`` a multiple of 4), so that the empirical
        distribution is exactly uniform."""
        items = []
        for i in range(n):
            bit_a, bit_b = i % 2, (i // 2) % 2
            items.append(
                {
                    "id": f"it{i}",
                    "label": self.labels[bit_a ^ bit_b],
                    "a": [1.0 - bit_a, float(bit_a)],
                    "b": [1.0 - bit_b, float(bit_b)],
                }
            )
        return items


class CheckpointedAdapter(LinearAdapter):
    """:class:`LinearAdapter` whose checkpoint ``epoch-k`` has weights ``k / 3`` of the final
    ones; ``broken`` fails to load. ``corrupt`` scales modality ``a`` towards 0 by ``1 - level``
    and refuses ``b``."""

    EPOCHS = (1, 2, 3)

    def __init__(self, factor: float = 1.0) -> None:
        super().__init__()
        self.factor = factor
        self.w = self.w * factor
        self.v = self.v * factor
        self.train = LinearAdapter().make_items(60, seed=99)

    def checkpoints(self) -> list[dict[str, Any]]:
        return [
            {"name": "epoch-1", "step": 10},
            {"name": "epoch-2", "step": 20},
            {"name": "broken", "step": 25},
            {"name": "epoch-3", "step": 30},
        ]

    def load_checkpoint(self, name: str) -> CheckpointedAdapter:
        if name == "broken":
            raise OSError("checkpoint file broken.pt is truncated (deliberate test failure)")
        epoch = int(name.split("-")[1])
        adapter = CheckpointedAdapter(factor=epoch / 3)
        adapter.load(self.device)
        return adapter

    def training_items(self) -> list[dict]:
        return list(self.train)

    def corrupt(self, batch: dict, *, modality: str, level: float, seed: int) -> dict:
        if modality != "a":
            raise ValueError(f"no corruption for {modality!r}")
        x = dict(batch["x"])
        x["a"] = x["a"] * (1 - level)
        return {**batch, "x": x}


class SlowReportAdapter(CheckpointedAdapter):
    """:class:`CheckpointedAdapter` whose every head call takes ``SECONDS`` longer: the noise stage
    (one call per level and modality) then lasts long enough to kill a worker in the middle."""

    SECONDS = 0.3

    def logits(self, a: Tensor, b: Tensor, *, batch: dict) -> Tensor:
        import time

        time.sleep(self.SECONDS)
        return super().logits(a, b, batch=batch)
