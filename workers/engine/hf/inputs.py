"""Images and texts as the Hugging Face adapters feed them to a model, and what a person sees
of each feature group: patches of the model's own grid, and whole words."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from workers.engine.adapter import AdapterError, GroupInfo, RawItem

_RESAMPLE = {
    0: Image.Resampling.NEAREST,
    1: Image.Resampling.LANCZOS,
    2: Image.Resampling.BILINEAR,
    3: Image.Resampling.BICUBIC,
    4: Image.Resampling.BOX,
    5: Image.Resampling.HAMMING,
}


@dataclass(frozen=True)
class PixelRecipe:
    """How the model's image processor turns RGB into pixel values: resize to ``size x size``
    with ``resample``, multiply by ``rescale``, subtract ``mean`` and divide by ``std`` per
    channel. Read from ``preprocessor_config.json`` when the folder has one."""

    size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    rescale: float = 1 / 255
    resample: Image.Resampling = Image.Resampling.BICUBIC

    @classmethod
    def from_folder(cls, folder: Path, *, size: int, mean: Sequence[float], std: Sequence[float]) -> PixelRecipe:
        """The folder's own recipe, with ``mean``/``std`` as the fallback for a folder saved
        without ``preprocessor_config.json``."""
        path = folder / "preprocessor_config.json"
        config: dict[str, Any] = {}
        if path.is_file():
            try:
                config = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
                raise AdapterError(f"{path}: cannot read it: {exc}") from exc
        mean = config.get("image_mean") or mean
        std = config.get("image_std") or std
        if len(mean) != 3 or len(std) != 3 or any(float(s) == 0 for s in std):
            raise AdapterError(f"{path}: image_mean and image_std need three values each (std not 0)")
        rescale = float(config.get("rescale_factor", 1 / 255)) if config.get("do_rescale", True) else 1.0
        resample = _RESAMPLE.get(int(config.get("resample", 3)), Image.Resampling.BICUBIC)
        return cls(
            size=size,
            mean=tuple(float(x) for x in mean),
            std=tuple(float(x) for x in std),
            rescale=rescale,
            resample=resample,
        )

    def pixels(self, images: Sequence[Image.Image]) -> Tensor:
        """``(B, 3, size, size)`` float32 pixel values. The whole image is resized (no crop),
        so the attribution map covers all of it."""
        if not images:
            return torch.empty((0, 3, self.size, self.size))
        arrays = [np.asarray(img.resize((self.size, self.size), self.resample), dtype=np.float32) for img in images]
        x = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2) * self.rescale
        mean = torch.tensor(self.mean).view(1, 3, 1, 1)
        std = torch.tensor(self.std).view(1, 3, 1, 1)
        return ((x - mean) / std).contiguous()


def read_image(item: RawItem) -> Image.Image:
    """The item's ``image`` as RGB; ValueError naming the item when it cannot be read."""
    item_id = item.get("id", "?")
    path = item.get("image")
    if not path:
        raise ValueError(f"item {item_id!r} has no image")
    try:
        with Image.open(Path(path)) as img:
            return img.convert("RGB")
    except (OSError, ValueError) as exc:  # missing, unreadable, not an image, truncated
        raise ValueError(f"item {item_id!r}: cannot read image {path!r}: {exc}") from exc


def read_text(item: RawItem) -> str:
    text = item.get("text")
    if not isinstance(text, str):
        raise ValueError(f"item {item.get('id', '?')!r} has no text")
    return text


def patch_ids(batch_size: int, size: int, patch: int, device: torch.device) -> Tensor:
    """``(B, 1, size, size)`` group IDs ``0..g*g-1`` of the model's ``patch x patch`` grid,
    row-major (``g = size // patch``)."""
    grid = size // patch
    rows = torch.arange(size, device=device) // patch
    ids = rows.view(-1, 1) * grid + rows.view(1, -1)
    return ids.view(1, 1, size, size).expand(batch_size, 1, -1, -1).clone()


def patch_boxes(original: tuple[int, int], grid: int) -> list[tuple[int, int, int, int]]:
    """Boxes ``[x0, y0, x1, y1]`` (x1, y1 exclusive) of the ``grid x grid`` patches, row-major,
    in pixels of the *original* ``(width, height)`` image (the model saw it resized to a
    square). Every box covers at least one pixel."""
    width, height = original

    def span(k: int, extent: int) -> tuple[int, int]:
        lo = math.floor(k * extent / grid)
        hi = min(extent, max(lo + 1, math.ceil((k + 1) * extent / grid)))
        return lo, hi

    boxes = []
    for r in range(grid):
        y0, y1 = span(r, height)
        for c in range(grid):
            x0, x1 = span(c, width)
            boxes.append((x0, y0, x1, y1))
    return boxes


@dataclass(frozen=True)
class Words:
    """The words of one item's text as the model's tokenizer split them.

    Attributes:
        texts: each word as written in the item (word pieces merged back).
        positions: for each word, the token positions (in the text tensor) of its pieces.
        unknown: for each word, whether the vocabulary knew none of it (every piece unknown).
    """

    texts: tuple[str, ...]
    positions: tuple[tuple[int, ...], ...]
    unknown: tuple[bool, ...] = ()


def words_of(
    text: str,
    word_ids: Sequence[int | None],
    offsets: Sequence[tuple[int, int]],
    positions: Sequence[int],
    *,
    unknown: Sequence[bool] | None = None,
) -> Words:
    """Merge word pieces into words.

    Args:
        text: the string the offsets point into.
        word_ids: the tokenizer's word index per token (None for special tokens).
        offsets: ``(start, end)`` character span per token.
        positions: where each token sits in the text tensor.
        unknown: per token, whether it is the unknown token.
    """
    unknown = [False] * len(word_ids) if unknown is None else list(unknown)
    flags: dict[int, bool] = {}
    spans: dict[int, list[int]] = {}
    where: dict[int, list[int]] = {}
    for word, (start, end), pos, unk in zip(word_ids, offsets, positions, unknown):
        if word is None:
            continue
        flags[word] = flags.get(word, True) and bool(unk)
        spans.setdefault(word, [start, end])
        spans[word][0] = min(spans[word][0], start)
        spans[word][1] = max(spans[word][1], end)
        where.setdefault(word, []).append(pos)
    order = sorted(spans, key=lambda w: where[w][0])
    return Words(
        texts=tuple(text[spans[w][0] : spans[w][1]] for w in order),
        positions=tuple(tuple(where[w]) for w in order),
        unknown=tuple(flags[w] for w in order),
    )


def text_groups(words: Sequence[Words], length: int, first_id: Sequence[int], device: torch.device) -> Tensor:
    """``(B, length, 1)`` group IDs: word ``w`` of item ``b`` is ``first_id[b] + w``; every
    other position (special tokens, padding) is the item's one hidden group after its words."""
    out = torch.empty((len(words), length), dtype=torch.long)
    for b, item_words in enumerate(words):
        out[b] = first_id[b] + len(item_words.texts)
        for w, positions in enumerate(item_words.positions):
            out[b, list(positions)] = first_id[b] + w
    return out.unsqueeze(-1).to(device)


def describe_item(*, original: tuple[int, int], grid: int, words: Words, length: int) -> list[list[GroupInfo]]:
    """The :class:`GroupInfo` lists of one item: its patches, then its words (a word the
    vocabulary does not know is marked ``extra={"unknown": True}``, as the demo does) and,
    when some positions hold no word, one hidden group for special tokens and padding."""
    patches = [GroupInfo(group_id=k, kind="patch", box=box) for k, box in enumerate(patch_boxes(original, grid))]
    first = grid * grid
    unknown = words.unknown or (False,) * len(words.texts)
    tokens = [
        GroupInfo(group_id=first + w, kind="token", text=text, extra={"unknown": True} if unk else {})
        for w, (text, unk) in enumerate(zip(words.texts, unknown))
    ]
    if sum(len(p) for p in words.positions) < length:
        tokens.append(GroupInfo(group_id=first + len(words.texts), kind="token", text="", hidden=True))
    return [patches, tokens]
