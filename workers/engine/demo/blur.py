"""The Gaussian blur the demo adapter uses as its image baseline and the model report as its
image corruption. A module of its own so both import it without an import circle."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

BLUR_SIGMA = 8.0  # pixels; at this width no shape or colour boundary survives


def _gaussian_kernel(sigma: float) -> Tensor:
    radius = int(3 * sigma)
    x = torch.arange(-radius, radius + 1, dtype=torch.float32)
    kernel = torch.exp(-(x**2) / (2 * sigma**2))
    return kernel / kernel.sum()


def blur(pixels: Tensor, *, sigma: float = BLUR_SIGMA) -> Tensor:
    """Separable Gaussian blur of ``(N, 3, H, W)`` with replicated borders (so the border
    keeps the background colour instead of fading to zero)."""
    kernel = _gaussian_kernel(sigma).to(pixels)
    radius = kernel.numel() // 2
    channels = pixels.shape[1]
    horizontal = kernel.view(1, 1, 1, -1).expand(channels, 1, 1, -1)
    vertical = kernel.view(1, 1, -1, 1).expand(channels, 1, -1, 1)
    x = F.pad(pixels, (radius, radius, 0, 0), mode="replicate")
    x = F.conv2d(x, horizontal, groups=channels)
    x = F.pad(x, (0, 0, radius, radius), mode="replicate")
    return F.conv2d(x, vertical, groups=channels)
