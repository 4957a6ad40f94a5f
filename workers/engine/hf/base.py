"""What every Hugging Face image + text adapter shares: loading from the folder, the model's
patch grid and the words of the text as feature groups, and what a person sees of them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from workers.engine.adapter import AdapterError, GroupInfo
from workers.engine.hf.folder import HFOptions
from workers.engine.hf.inputs import PixelRecipe, describe_item, patch_ids, text_groups


class ImageTextAdapter:
    """Base of the adapters: modalities ``("image", "text")``; a subclass says where its
    model keeps the image side, the patch size and the text length (:meth:`image_side`,
    :attr:`patch`, :attr:`text_length`) and implements ``load``, ``encode``, ``embed``,
    ``head`` and ``baselines``. Its batches carry ``words``
    (:class:`~workers.engine.hf.inputs.Words` per item) and ``sizes`` (original images)."""

    modalities: Sequence[str] = ("image", "text")

    def __init__(self, options: HFOptions) -> None:
        self.options = options
        self.labels: Sequence[str] = options.labels
        self.device = torch.device("cpu")
        self._model: Any = None
        self._tokenizer: Any = None
        self._recipe: PixelRecipe | None = None

    @property
    def model(self) -> Any:
        if self._model is None:
            raise AdapterError(f"{type(self).__name__}.load() must be called first")
        return self._model

    def _load(self, device: torch.device, *, mean: Sequence[float], std: Sequence[float], **model_kwargs: Any) -> None:
        """Read the weights, tokenizer and image recipe from the folder (never from a hub) and
        move the model to ``device``, frozen and in eval mode: explanations differentiate the
        inputs only. ``mean``/``std``: the architecture's, for a folder without
        ``preprocessor_config.json``; ``model_kwargs`` go to ``from_pretrained``."""
        from workers.engine.hf.loading import load_model, load_tokenizer

        model = load_model(self.options, **model_kwargs)
        side = self.image_side(model.config)
        self._recipe = PixelRecipe.from_folder(self.options.path, size=side, mean=mean, std=std)
        self._tokenizer = load_tokenizer(self.options)
        if self._tokenizer.pad_token_id is None:
            raise AdapterError(f"{self.options.path}: the tokenizer has no pad token")
        self.device = torch.device(device)
        self._model = model.eval().requires_grad_(False).to(self.device)

    def _ready(self) -> tuple[PixelRecipe, Any]:
        """The image recipe and the tokenizer; :class:`AdapterError` before ``load``."""
        if self._recipe is None or self._tokenizer is None:
            raise AdapterError(f"{type(self).__name__}.load() must be called first")
        return self._recipe, self._tokenizer

    @property
    def tokenizer(self) -> Any:
        """The folder's (fast) tokenizer."""
        return self._ready()[1]

    @property
    def size(self) -> int:
        """The side ``S`` of the square every image is resized to."""
        return self._ready()[0].size

    def image_side(self, config: Any) -> int:
        """The side ``S`` images are resized to, for the model with ``config``."""
        raise NotImplementedError

    @property
    def patch(self) -> int:
        raise NotImplementedError

    @property
    def text_length(self) -> int:
        raise NotImplementedError

    @property
    def grid(self) -> int:
        return self.size // self.patch

    def feature_groups(self, batch: Any) -> tuple[Tensor, Tensor]:
        """Image ``(B, 1, S, S)``: patch IDs ``0..P-1`` of the model's grid, row-major; text
        ``(B, T, 1)``: ``P + w`` for word ``w``, then one hidden group for every position that
        holds no word (special tokens, padding)."""
        first = [self.grid**2] * len(batch)
        return (
            patch_ids(len(batch), self.size, self.patch, self.device),
            text_groups(batch.words, self.text_length, first, self.device),
        )

    def describe_groups(self, batch: Any) -> list[list[list[GroupInfo]]]:
        """Per item: patch boxes in the original image's pixels, the words as written, and the
        hidden group."""
        return [
            describe_item(original=size, grid=self.grid, words=words, length=self.text_length)
            for size, words in zip(batch.sizes, batch.words)
        ]
