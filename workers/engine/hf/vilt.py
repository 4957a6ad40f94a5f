"""ViLT (Kim et al. 2021) split into ``embed`` and ``head``: question answering
(``ViltForQuestionAnswering``) and image-text classification
(``ViltForImagesAndTextClassification`` with one image).

ViLT has no separate image encoder: a single transformer reads the word embeddings of the
text and a linear projection of ``patch x patch`` pixel patches. So the two modalities are the
pixels ``(B, 3, S, S)`` (every image resized to one square, ``S = config.image_size`` unless
``image_size`` says otherwise) and the word embeddings ``(B, T, D)`` before ViLT adds
positions and token types (``T = config.max_position_embeddings``, as ViltProcessor pads).

Feature groups: the model's own patch grid (``S / patch`` squared patches, IDs row-major from
0), then one group per word of the text (its word pieces together), then one hidden group
holding ``[CLS]``, ``[SEP]`` and the padding.

Baselines: the image at the processor's mean colour (zeros after normalisation); the text with
``[PAD]``'s embedding at every word piece and ``[CLS]``, ``[SEP]`` and padding as they are, so
the hidden group never carries attribution of its own under IntegratedGradients or ablation.

``head`` runs ViLT on ``image_embeds`` it builds from the pixels exactly as ViLT's own
``visual_embed`` does with a full pixel mask, except that it keeps every patch in grid order
instead of drawing them in a random order (a transformer without positions of its own cannot
tell; the logits agree with the model's own forward pass to float precision). A config with
``max_image_length`` below the patch count makes ViLT's forward keep a random subset of patches
(training-time augmentation); the adapter keeps them all, as evaluation should.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from workers.engine.adapter import AdapterError, RawItem
from workers.engine.hf.base import ImageTextAdapter
from workers.engine.hf.inputs import Words, read_image, read_text, words_of


@dataclass
class ViltBatch:
    """A model-ready batch of ``B`` items.

    Attributes:
        ids: item IDs.
        pixels: float ``(B, 3, S, S)``, normalised.
        input_ids: long ``(B, T)``, padded with ``[PAD]``.
        attention_mask: long ``(B, T)``, 1 for real tokens.
        token_type_ids: long ``(B, T)``.
        words: per item, its words and their token positions.
        sizes: per item, the original image's ``(width, height)``.
    """

    ids: list[str]
    pixels: Tensor
    input_ids: Tensor
    attention_mask: Tensor
    token_type_ids: Tensor
    words: list[Words]
    sizes: list[tuple[int, int]]

    def __len__(self) -> int:
        return len(self.ids)


class ViltAdapter(ImageTextAdapter):
    """:class:`~workers.engine.adapter.ModelAdapter` for a ViLT model folder (kinds ``vqa``
    and ``classify``). Labels are the model's own (``id2label``), or the subset the options
    name, in that order."""

    _columns: Tensor | None = None  # the chosen labels' columns of the model's logits

    def load(self, device: torch.device) -> None:
        """Load the folder (:meth:`ImageTextAdapter._load`); a folder without
        ``preprocessor_config.json`` gets ViltProcessor's mean and std (0.5)."""
        self._load(device, mean=(0.5,) * 3, std=(0.5,) * 3)
        self._columns = torch.tensor(self.options.label_indices, device=self.device)

    def image_side(self, config) -> int:
        side = self.options.image_size or int(config.image_size)
        if side % int(config.patch_size):
            raise AdapterError(f"image size {side} is not a multiple of the patch size {config.patch_size}")
        return side

    @property
    def patch(self) -> int:
        return int(self.model.config.patch_size)

    @property
    def text_length(self) -> int:
        return int(self.model.config.max_position_embeddings)

    # -- protocol -----------------------------------------------------------------------------
    def encode(self, items: Sequence[RawItem]) -> ViltBatch:
        """Read and resize images, tokenize texts (padded to ``T``, longer texts cut). Raises
        ValueError naming an unreadable item."""
        recipe, tokenizer = self._ready()
        images = [read_image(item) for item in items]
        texts = [read_text(item) for item in items]
        length = self.text_length
        enc = tokenizer(
            texts,
            padding="max_length",
            max_length=length,
            truncation=True,
            return_offsets_mapping=True,
            return_token_type_ids=True,
            return_tensors="pt",
        )
        unknown = (enc["input_ids"] == tokenizer.unk_token_id).tolist()
        words = [
            words_of(text, enc.word_ids(b), enc["offset_mapping"][b].tolist(), range(length), unknown=unknown[b])
            for b, text in enumerate(texts)
        ]
        return ViltBatch(
            ids=[str(item.get("id", "?")) for item in items],
            pixels=recipe.pixels(images).to(self.device),
            input_ids=enc["input_ids"].reshape(len(items), length).to(self.device),
            attention_mask=enc["attention_mask"].reshape(len(items), length).to(self.device),
            token_type_ids=enc["token_type_ids"].reshape(len(items), length).to(self.device),
            words=words,
            sizes=[img.size for img in images],
        )

    def embed(self, batch: ViltBatch) -> tuple[Tensor, Tensor]:
        """``(pixels (B, 3, S, S), word embeddings (B, T, D))``, fresh tensors. Cost: one
        embedding lookup."""
        words = self.model.vilt.embeddings.text_embeddings.word_embeddings
        return batch.pixels.clone(), words(batch.input_ids)

    def image_embeds(self, pixels: Tensor) -> Tensor:
        """``(N, 1 + P, D)``: ``[CLS]`` and every patch, with their (interpolated) position
        embeddings, as ViLT's ``visual_embed`` builds them for a full pixel mask."""
        embeddings = self.model.vilt.embeddings
        x = embeddings.patch_embeddings(pixels)  # (N, D, h, w)
        n, dim, h, w = x.shape
        grid = int(self.model.config.image_size) // self.patch
        spatial = embeddings.position_embeddings[:, 1:, :].transpose(1, 2).view(1, dim, grid, grid)
        pos = F.interpolate(spatial, size=(h, w), mode="bilinear", align_corners=True)
        x = x.flatten(2).transpose(1, 2) + pos.flatten(2).transpose(1, 2)
        cls = embeddings.cls_token + embeddings.position_embeddings[:, :1, :]
        return torch.cat([cls.expand(n, -1, -1), x], dim=1)

    def head(self, pixels: Tensor, word_embeddings: Tensor, *, batch: ViltBatch) -> Tensor:
        """Logits ``(N, len(labels))`` from pixels ``(N, 3, S, S)`` and word embeddings
        ``(N, T, D)``, ``N = k * B`` rows with row ``r`` belonging to item ``r % B``. Cost: one
        ViLT forward pass over ``N`` rows."""
        n, b = pixels.shape[0], len(batch)
        if word_embeddings.shape[0] != n or b == 0 or n % b:
            raise ValueError(f"{n} pixel rows and {word_embeddings.shape[0]} text rows for {b} items")
        return self._forward(pixels, word_embeddings, batch=batch, reps=n // b)[1]

    def _forward(self, pixels: Tensor, word_embeddings: Tensor, *, batch: ViltBatch, reps: int = 1, **outputs):
        """ViLT's output and the chosen labels' logits; ``outputs`` (``output_attentions``,
        ``output_hidden_states``) go to the model."""
        image = self.image_embeds(pixels)
        out = self.model.vilt(
            inputs_embeds=word_embeddings,
            attention_mask=batch.attention_mask.repeat(reps, 1),
            token_type_ids=batch.token_type_ids.repeat(reps, 1),
            image_embeds=image,
            pixel_mask=torch.ones(image.shape[:2], dtype=torch.long, device=image.device),
            image_token_type_idx=1,
            **outputs,
        )
        logits = self.model.classifier(out.pooler_output)
        return out, logits.index_select(1, self._columns)

    def attention(
        self, items: Sequence[RawItem], *, targets: Sequence[Sequence[int]] | None = None, hidden_states: bool = False
    ) -> list:
        """The optional attention hook (:mod:`workers.engine.attention`): one joint stream per
        item, its text tokens (padding removed) then the image's ``[CLS]`` and patches, as ViLT
        concatenates them; the gradients of each item's ``targets`` (label indices). Cost: one
        forward pass and one backward pass per target rank."""
        from workers.engine.attention import AttentionMaps, AttentionStream, TargetGradients

        batch = self.encode(items)
        pixels, words = self.embed(batch)
        words.requires_grad_(True)  # the weights are frozen: the graph must reach the attention
        with torch.enable_grad():
            out, logits = self._forward(
                pixels, words, batch=batch, output_attentions=True, output_hidden_states=hidden_states
            )
            stacks = list(out.attentions)
            grads = _target_gradients(logits, stacks, targets, len(batch))
        attention = torch.stack([a.detach() for a in stacks], dim=1)  # (B, L, H, N, N)
        hidden = torch.stack([h.detach() for h in out.hidden_states], dim=1) if hidden_states else None
        result = []
        for b in range(len(batch)):
            keep, unit_of, units = self._joint_layout(batch, b)
            idx = torch.tensor(keep, device=attention.device)

            def valid(t: Tensor) -> np.ndarray:
                return t.index_select(-1, idx).index_select(-2, idx).double().cpu().numpy()

            own = valid(attention[b])
            stream = AttentionStream(
                name="joint",
                attention=own,
                unit_of=np.asarray(unit_of),
                units=units,
                pooled=0,  # ViLT's pooler reads the text [CLS], the first position
                hidden=hidden[b].index_select(1, idx).double().cpu().numpy() if hidden is not None else None,
            )
            for target, grad in grads[b].items():
                stream.targets[target] = TargetGradients(own, valid(grad), stream.unit_of, 0)
            result.append(AttentionMaps(item_id=batch.ids[b], streams=[stream], cross_modal=True))
        return result

    def _joint_layout(self, batch: ViltBatch, b: int):
        """Item ``b``'s kept positions (real text tokens, then ``[CLS]`` of the image and every
        patch), the unit of each and the units: specials one each, a word's pieces one unit
        (group ``P + w``), patch ``k`` group ``k``."""
        from workers.engine.attention import Unit, patch_label

        grid, length = self.grid, self.text_length
        n_patches = grid * grid
        word_at = {p: w for w, positions in enumerate(batch.words[b].positions) for p in positions}
        tokens = self.tokenizer.convert_ids_to_tokens(batch.input_ids[b].tolist())
        keep, unit_of, units, word_unit = [], [], [], {}
        for p in range(length):
            if not int(batch.attention_mask[b, p]):
                continue
            keep.append(p)
            w = word_at.get(p)
            if w is None:
                units.append(Unit("text", -1, tokens[p]))
                unit_of.append(len(units) - 1)
                continue
            if w not in word_unit:
                word_unit[w] = len(units)
                units.append(Unit("text", n_patches + w, batch.words[b].texts[w]))
            unit_of.append(word_unit[w])
        keep.append(length)
        units.append(Unit("image", -1, "[IMG]"))
        unit_of.append(len(units) - 1)
        for k in range(n_patches):
            keep.append(length + 1 + k)
            units.append(Unit("image", k, patch_label(k, grid)))
            unit_of.append(len(units) - 1)
        return keep, unit_of, units

    def baselines(self, batch: ViltBatch) -> tuple[Tensor, Tensor]:
        """The mean-colour image (zeros) ``(B, 3, S, S)`` and the text with ``[PAD]`` at every
        word piece ``(B, T, D)``."""
        pad_id = self.tokenizer.pad_token_id
        word_positions = torch.zeros_like(batch.input_ids, dtype=torch.bool)
        for b, words in enumerate(batch.words):
            for positions in words.positions:
                word_positions[b, list(positions)] = True
        ids = torch.where(word_positions, torch.full_like(batch.input_ids, pad_id), batch.input_ids)
        words = self.model.vilt.embeddings.text_embeddings.word_embeddings
        return torch.zeros_like(batch.pixels), words(ids)


def _target_gradients(
    logits: Tensor, stacks: Sequence[Tensor], targets: Sequence[Sequence[int]] | None, n_items: int
) -> list[dict[int, Tensor]]:
    """Per item, ``{target: (L, H, N, N) gradient}`` of its target logits with respect to the
    attention ``stacks`` (one ``(B, H, N, N)`` per layer). Items never mix in a forward pass,
    so one backward pass serves the ``j``-th target of every item at once."""
    targets = [list(dict.fromkeys(int(t) for t in ts)) for ts in (targets or [[] for _ in range(n_items)])]
    out: list[dict[int, Tensor]] = [{} for _ in range(n_items)]
    for j in range(max((len(ts) for ts in targets), default=0)):
        rows = [b for b in range(n_items) if len(targets[b]) > j]
        chosen = logits[rows, [targets[b][j] for b in rows]].sum()
        grads = torch.autograd.grad(chosen, stacks, retain_graph=True)
        stacked = torch.stack(grads, dim=1)  # (B, L, H, N, N)
        for b in rows:
            out[b][targets[b][j]] = stacked[b]
    return out
