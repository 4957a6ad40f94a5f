"""The bundled demo adapter: coloured-shape VQA with a small image + question fusion model.

Register it as ``workers.engine.demo.adapter:DemoAdapter``. It goes through the same
protocol as any user's adapter (:class:`workers.engine.adapter.ModelAdapter`).

Batch expansion convention (read this before calling :meth:`DemoAdapter.head` with more
rows than the batch has items): the embedded tensors may have ``k * B`` rows for a batch of
``B`` items, laid out as ``k`` consecutive copies of the whole batch (row ``r`` is item
``r % B``), which is what Captum does when it expands inputs for ``n_steps`` or for several
perturbations per evaluation (``torch.cat([batch] * k)``). The attention mask is tiled the
same way. A method that repeats each item contiguously (``repeat_interleave``) must call
``head`` per item instead; with ``B = 1`` both layouts coincide.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from ..adapter import AdapterError, GroupInfo, RawItem
from . import model as demo_model
from .blur import blur
from .data import IMAGE_SIZE
from .model import GRID, LABELS, MAX_TOKENS, PAD_ID, PATCH, DemoModel
from .report_hooks import DemoReportHooks


@dataclass
class DemoBatch:
    """A model-ready batch of ``B`` items.

    Attributes:
        ids: item IDs, ``B`` strings.
        pixels: float ``(B, 3, 64, 64)``, normalised to [-1, 1].
        token_ids: long ``(B, T)``, padded with PAD.
        attention_mask: bool ``(B, T)``, True for real tokens.
        tokens: the question's tokens as written (unknown words kept as written, cut to T).
        unknown: per item and token position, True where the word mapped to UNK.
    """

    ids: list[str]
    pixels: Tensor
    token_ids: Tensor
    attention_mask: Tensor
    tokens: list[list[str]]
    unknown: list[list[bool]]

    def __len__(self) -> int:
        return len(self.ids)


#: Decoded images kept in memory (12 KB each): a model report reads every item's picture in
#: each of its stages and for each checkpoint.
DECODED_IMAGES = 4096


@functools.lru_cache(maxsize=DECODED_IMAGES)
def _decoded_image(path: str, mtime_ns: int, size: int) -> np.ndarray:
    """The picture at ``path`` as read-only uint8 ``(64, 64, 3)``; the file's modification time
    and size are part of the key, so a rewritten file is read again."""
    with Image.open(Path(path)) as img:
        img = img.convert("RGB")
        if img.size != (IMAGE_SIZE, IMAGE_SIZE):  # tolerate other sizes; the model needs 64
            img = img.resize((IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.BILINEAR)
        pixels = np.asarray(img, dtype=np.uint8)
    pixels.setflags(write=False)
    return pixels


def _read_image(item: RawItem) -> np.ndarray:
    """uint8 ``(64, 64, 3)``; raises ValueError naming the item when unreadable."""
    item_id = item.get("id", "?")
    path = item.get("image")
    if not path:
        raise ValueError(f"item {item_id!r} has no image")
    try:
        found = os.stat(path)
        return _decoded_image(str(path), found.st_mtime_ns, found.st_size)
    except (OSError, ValueError) as exc:  # missing, unreadable, not an image, truncated
        raise ValueError(f"item {item_id!r}: cannot read image {path!r}: {exc}") from exc


class DemoAdapter(DemoReportHooks):
    """:class:`~workers.engine.adapter.ModelAdapter` for the bundled demo model.

    Modalities: ``image`` (pixels ``(B, 3, 64, 64)``, normalised to [-1, 1]) and ``text``
    (token embeddings ``(B, T, D)``, ``T = 8``). Feature groups: 64 image patches of 8x8
    pixels (IDs 0..63, row-major) and one group per token position (IDs 64..64+T-1).
    """

    labels: Sequence[str] = LABELS
    modalities: Sequence[str] = ("image", "text")

    def __init__(self, cache_dir: Path | None = None) -> None:
        self.cache_dir = cache_dir
        self.device = torch.device("cpu")
        self._model: DemoModel | None = None

    @property
    def model(self) -> DemoModel:
        if self._model is None:
            raise AdapterError("DemoAdapter.load() must be called first")
        return self._model

    def load(self, device: torch.device) -> None:
        """Load (training and caching first, if needed) and move to ``device``. Parameters
        are frozen: explanation methods differentiate with respect to inputs only."""
        model = demo_model.load_or_train(self.cache_dir)
        model.eval().requires_grad_(False)
        self.device = torch.device(device)
        self._model = model.to(self.device)

    def encode(self, items: Sequence[RawItem]) -> DemoBatch:
        """Read images and tokenize questions. Raises ValueError naming an unreadable item."""
        images, ids, masks, tokens, unknown, item_ids = [], [], [], [], [], []
        for item in items:
            item_id = str(item.get("id", "?"))
            text = item.get("text")
            if not isinstance(text, str):
                raise ValueError(f"item {item_id!r} has no question text")
            images.append(_read_image(item))
            words = demo_model.tokenize(text)[:MAX_TOKENS]
            token_id, mask = demo_model.token_ids(words)
            ids.append(token_id)
            masks.append(mask)
            tokens.append(words)
            unknown.append([tid == demo_model.UNK_ID for tid in token_id[: len(words)]])
            item_ids.append(item_id)
        if not items:
            pixels = torch.empty((0, 3, IMAGE_SIZE, IMAGE_SIZE))
        else:
            pixels = demo_model.normalize_images(np.stack(images))
        return DemoBatch(
            ids=item_ids,
            pixels=pixels.to(self.device),
            token_ids=torch.tensor(ids, dtype=torch.long).reshape(-1, MAX_TOKENS).to(self.device),
            attention_mask=torch.tensor(masks, dtype=torch.bool).reshape(-1, MAX_TOKENS).to(self.device),
            tokens=tokens,
            unknown=unknown,
        )

    def embed(self, batch: DemoBatch) -> tuple[Tensor, Tensor]:
        """``(pixels (B, 3, 64, 64), token_embeddings (B, T, D))``; fresh tensors, so a
        caller may set ``requires_grad`` on them. Cost: one embedding lookup."""
        return batch.pixels.clone(), self.model.token_embedding(batch.token_ids)

    def head(self, pixels: Tensor, token_embeddings: Tensor, *, batch: DemoBatch) -> Tensor:
        """Logits ``(N, len(labels))`` from pixels ``(N, 3, 64, 64)`` and token embeddings
        ``(N, T, D)``, where ``N = k * B`` for the ``B`` items of ``batch``, tiled as the
        module docstring describes. Cost: one forward pass over ``N`` rows."""
        n, b = pixels.shape[0], len(batch)
        if token_embeddings.shape[0] != n:
            raise ValueError(f"pixels have {n} rows but token embeddings {token_embeddings.shape[0]}")
        if b == 0 or n % b:
            raise ValueError(f"embedded batch of {n} rows is not a multiple of {b} items")
        mask = batch.attention_mask.to(pixels.device).repeat(n // b, 1)  # (N, T), tiled
        return self.model.head(pixels, token_embeddings, mask)

    def encode_modality(self, name: str, embedded: Tensor, *, batch: DemoBatch) -> Tensor:
        """The image's patch features ``(N, 64, C)`` or the question vector ``(N, H)``
        (:class:`workers.engine.adapter.ModalityEncodings`): everything in :meth:`head` before
        the two modalities meet. The question reads its attention mask (the text's own context),
        tiled as in :meth:`head`."""
        if name == "image":
            return self.model.encode_image(embedded)
        if name == "text":
            n, b = embedded.shape[0], len(batch)
            if b == 0 or n % b:
                raise ValueError(f"embedded batch of {n} rows is not a multiple of {b} items")
            return self.model.encode_question(embedded, batch.attention_mask.to(embedded.device).repeat(n // b, 1))
        raise ValueError(f"the demo has no modality {name!r}")

    def fuse(self, patches: Tensor, question: Tensor) -> Tensor:
        """Logits ``(N, len(labels))`` from :meth:`encode_modality`'s encodings, ``N`` rows each
        (each row's image and question may come from different items)."""
        return self.model.fuse(patches, question)

    def features(self, pixels: Tensor, token_embeddings: Tensor, *, batch: DemoBatch) -> Tensor:
        """Decision-level features ``(N, 64)``: the classifier's penultimate activations, of
        which the logits are one linear map (``workers.engine.adapter.DecisionFeatures``).
        Same row layout as :meth:`head`."""
        n, b = pixels.shape[0], len(batch)
        if b == 0 or n % b:
            raise ValueError(f"embedded batch of {n} rows is not a multiple of {b} items")
        mask = batch.attention_mask.to(pixels.device).repeat(n // b, 1)
        return self.model.decision_features(pixels, token_embeddings, mask)

    def baselines(self, batch: DemoBatch) -> tuple[Tensor, Tensor]:
        """A heavily blurred image ``(B, 3, 64, 64)`` (Gaussian, sigma 8 px) and the PAD
        embedding at every token position ``(B, T, D)``."""
        pad = self.model.token_embedding(torch.full_like(batch.token_ids, PAD_ID))
        return blur(batch.pixels), pad

    def feature_groups(self, batch: DemoBatch) -> tuple[Tensor, Tensor]:
        """Image ``(B, 1, 64, 64)`` with patch IDs 0..63 (row-major 8x8 patches) and text
        ``(B, T, 1)`` with IDs 64..64+T-1, one per token position (padding included, so the
        IDs are the same for every item)."""
        b = len(batch)
        rows = torch.arange(IMAGE_SIZE, device=self.device) // PATCH
        patch_ids = rows.view(-1, 1) * GRID + rows.view(1, -1)  # (64, 64)
        image = patch_ids.view(1, 1, IMAGE_SIZE, IMAGE_SIZE).expand(b, 1, -1, -1).clone()
        text = torch.arange(GRID * GRID, GRID * GRID + MAX_TOKENS, device=self.device)
        return image, text.view(1, MAX_TOKENS, 1).expand(b, -1, 1).clone()

    def describe_groups(self, batch: DemoBatch) -> list[list[list[GroupInfo]]]:
        """Per item: patch boxes ``[x0, y0, x1, y1]`` (x1, y1 exclusive) and the tokens;
        padding positions are ``hidden``; a word the model does not know is shown as
        written with ``extra={"unknown": True}``."""
        patches = [
            GroupInfo(
                group_id=k,
                kind="patch",
                box=((k % GRID) * PATCH, (k // GRID) * PATCH, (k % GRID + 1) * PATCH, (k // GRID + 1) * PATCH),
            )
            for k in range(GRID * GRID)
        ]
        out = []
        for words, unknown in zip(batch.tokens, batch.unknown):
            text_groups = []
            for t in range(MAX_TOKENS):
                group_id = GRID * GRID + t
                if t < len(words):
                    extra = {"unknown": True} if unknown[t] else {}
                    text_groups.append(GroupInfo(group_id=group_id, kind="token", text=words[t], extra=extra))
                else:
                    text_groups.append(GroupInfo(group_id=group_id, kind="token", text=demo_model.PAD, hidden=True))
            out.append([list(patches), text_groups])
        return out


Factory = DemoAdapter  # "workers.engine.demo.adapter:DemoAdapter" is the registered path
