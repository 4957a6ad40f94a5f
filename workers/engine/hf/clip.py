"""CLIP (Radford et al. 2021) as a zero-shot classifier with label prompts, split into
``embed`` and ``head``.

For item ``b`` and class ``k`` the model reads the prompt ``template`` with the item's text at
``{text}`` and the class name at ``{label}`` (default ``"{text} {label}"``: an item text "a
photo of a" and the labels "cat", "dog" give "a photo of a cat", "a photo of a dog"), and
the logit is CLIP's own: ``exp(logit_scale) * cos(image features, prompt features)``.

Modalities: the pixels ``(B, 3, S, S)`` (every image resized whole to the vision tower's
square ``S``; CLIP's processor would centre-crop, which would leave parts of the image
without attribution) and the token embeddings of the item's text ``(B, T, D)``:
the word pieces of ``{text}`` inside the prompts, in order, padded with ``pad`` to
``T = max_position_embeddings``. ``head`` puts those embeddings into every class's prompt,
between the embeddings of the prompt's fixed tokens (start and end of text, template words,
the class name), so attributions and interactions reach the item's own words in all prompts
at once while the class names stay fixed.

Feature groups: the vision tower's patch grid, then one group per word of the item's text,
then one hidden group for the unused padding slots. Baselines: the mean-colour image (zeros
after normalisation) and the pad token's embedding (for CLIP usually ``<|endoftext|>``) in
place of each word piece.

The text tower is run as ``CLIPTextModel.forward`` runs it (position embeddings, causal mask,
final layer norm, the features at the end-of-text token found by the model's own rule), from
embeddings instead of token IDs. Attention is loaded as plain ("eager") matrix products, whose
second derivatives interaction methods need.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from workers.engine.adapter import RawItem
from workers.engine.hf.base import ImageTextAdapter
from workers.engine.hf.inputs import Words, read_image, read_text, words_of

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
_SLOTS = re.compile(r"\{text\}|\{label\}")


@dataclass
class ClipBatch:
    """A model-ready batch of ``B`` items for ``K`` classes.

    Attributes:
        ids: item IDs.
        pixels: float ``(B, 3, S, S)``, normalised.
        text_ids: long ``(B, T)``: the item text's token IDs, padded with ``pad``.
        prompt_ids: long ``(B, K, L)``: every class's prompt, padded to the longest (``L``).
        prompt_mask: long ``(B, K, L)``: 1 for real tokens.
        text_slot: long ``(B, K, L)``: which text-tensor position sits at each prompt
            position, or -1 for the prompt's fixed tokens.
        pool_index: long ``(B, K)``: the end-of-text position CLIP reads features from.
        words: per item, its words and their text-tensor positions.
        sizes: per item, the original image's ``(width, height)``.
    """

    ids: list[str]
    pixels: Tensor
    text_ids: Tensor
    prompt_ids: Tensor
    prompt_mask: Tensor
    text_slot: Tensor
    pool_index: Tensor
    words: list[Words]
    sizes: list[tuple[int, int]]

    def __len__(self) -> int:
        return len(self.ids)


def fill_prompt(template: str, text: str, label: str) -> tuple[str, int, int]:
    """The prompt and the ``[start, end)`` characters of ``text`` in it."""
    out, start, pos = [], 0, 0
    for match in _SLOTS.finditer(template):
        out.append(template[pos : match.start()])
        if match.group() == "{text}":
            start = sum(len(x) for x in out)
            out.append(text)
        else:
            out.append(label)
        pos = match.end()
    out.append(template[pos:])
    return "".join(out), start, start + len(text)


class ClipZeroShotAdapter(ImageTextAdapter):
    """:class:`~workers.engine.adapter.ModelAdapter` for a ``CLIPModel`` folder with a set of
    class names and a prompt template (kind ``zero-shot``)."""

    def load(self, device: torch.device) -> None:
        """Load the folder (:meth:`ImageTextAdapter._load`) with plain matrix-product
        attention; a folder without ``preprocessor_config.json`` gets CLIP's mean and std."""
        self._load(device, mean=CLIP_MEAN, std=CLIP_STD, attn_implementation="eager")

    def image_side(self, config) -> int:
        return int(config.vision_config.image_size)

    @property
    def patch(self) -> int:
        return int(self.model.config.vision_config.patch_size)

    @property
    def text_length(self) -> int:
        return int(self.model.config.text_config.max_position_embeddings)

    # -- protocol -----------------------------------------------------------------------------
    def encode(self, items: Sequence[RawItem]) -> ClipBatch:
        """Read and resize images; tokenize every (item, class) prompt and find the item's own
        word pieces in each. Raises ValueError naming the item when an image cannot be read,
        a prompt is longer than the model reads, or the template runs the text into the label
        (then the text's pieces would differ between classes)."""
        recipe, tokenizer = self._ready()
        images = [read_image(item) for item in items]
        texts = [read_text(item) for item in items]
        ids = [str(item.get("id", "?")) for item in items]
        labels, n_labels, limit = list(self.labels), len(self.labels), self.text_length
        filled = [fill_prompt(self.options.prompt, text, label) for text in texts for label in labels]
        enc = tokenizer(
            [p for p, _, _ in filled], return_offsets_mapping=True, padding=True, truncation=False, return_tensors="pt"
        )
        prompt_ids, prompt_mask = enc["input_ids"], enc["attention_mask"]
        width = prompt_ids.shape[1]
        text_slot = torch.full_like(prompt_ids, -1)
        text_ids = torch.full((len(items), limit), tokenizer.pad_token_id, dtype=torch.long)
        words: list[Words] = []
        for b, _text in enumerate(texts):
            mine: list[int] | None = None
            for k in range(n_labels):
                row = b * n_labels + k
                prompt, start, end = filled[row]
                length = int(prompt_mask[row].sum())
                if length > limit:
                    raise ValueError(
                        f"item {ids[b]!r}: the prompt for {labels[k]!r} has {length} tokens; "
                        f"the model reads at most {limit}"
                    )
                offsets = enc["offset_mapping"][row].tolist()
                word_ids = enc.word_ids(row)
                inside = []
                for p in range(length):
                    lo, hi = offsets[p]
                    if word_ids[p] is None or hi <= lo:
                        continue
                    if start <= lo and hi <= end:
                        inside.append(p)
                    elif lo < end and hi > start:
                        raise ValueError(
                            f"item {ids[b]!r}: the prompt template joins the text and the label "
                            f"{labels[k]!r} into one word; put a space between {{text}} and {{label}}"
                        )
                pieces = prompt_ids[row, inside].tolist()
                if mine is None:
                    mine = pieces
                    words.append(
                        words_of(
                            prompt,
                            [word_ids[p] for p in inside],
                            [tuple(offsets[p]) for p in inside],
                            range(len(inside)),
                        )
                    )
                elif pieces != mine:
                    raise ValueError(
                        f"item {ids[b]!r}: the text is split differently next to the label "
                        f"{labels[k]!r}; put a space between {{text}} and {{label}}"
                    )
                text_slot[row, inside] = torch.arange(len(inside))
            text_ids[b, : len(mine or [])] = torch.tensor(mine or [], dtype=torch.long)
        shape = (len(items), n_labels, width)
        return ClipBatch(
            ids=ids,
            pixels=recipe.pixels(images).to(self.device),
            text_ids=text_ids.to(self.device),
            prompt_ids=prompt_ids.reshape(shape).to(self.device),
            prompt_mask=prompt_mask.reshape(shape).to(self.device),
            text_slot=text_slot.reshape(shape).to(self.device),
            pool_index=self._pool_index(prompt_ids).reshape(shape[:2]).to(self.device),
            words=words,
            sizes=[img.size for img in images],
        )

    def _pool_index(self, input_ids: Tensor) -> Tensor:
        """The position ``CLIPTextModel`` reads features from, by its own rule: the highest
        token ID for configs with the old ``eos_token_id == 2``, else the first end-of-text."""
        eos = self.model.config.text_config.eos_token_id
        if eos == 2:
            return input_ids.to(torch.int).argmax(dim=-1)
        return (input_ids.to(torch.int) == eos).int().argmax(dim=-1)

    def embed(self, batch: ClipBatch) -> tuple[Tensor, Tensor]:
        """``(pixels (B, 3, S, S), text token embeddings (B, T, D))``, fresh tensors. Cost: one
        embedding lookup."""
        return batch.pixels.clone(), self.model.text_model.embeddings.token_embedding(batch.text_ids)

    def text_features(self, token_embeddings: Tensor, attention_mask: Tensor, pool_index: Tensor) -> Tensor:
        """Projected text features ``(M, P)`` of ``M`` prompts given as token embeddings
        ``(M, L, D)``: ``CLIPTextModel.forward`` from its embedding lookup on."""
        from transformers.masking_utils import create_causal_mask

        text = self.model.text_model
        hidden = text.embeddings(inputs_embeds=token_embeddings)
        mask = create_causal_mask(
            config=text.config, inputs_embeds=hidden, attention_mask=attention_mask, past_key_values=None
        )
        out = text.encoder(inputs_embeds=hidden, attention_mask=mask, is_causal=True)
        last = text.final_layer_norm(out.last_hidden_state)
        pooled = last[torch.arange(last.shape[0], device=last.device), pool_index]
        return self.model.text_projection(pooled)

    def head(self, pixels: Tensor, token_embeddings: Tensor, *, batch: ClipBatch) -> Tensor:
        """Logits ``(N, K)`` from pixels ``(N, 3, S, S)`` and the text's token embeddings
        ``(N, T, D)``, ``N = k * B`` rows with row ``r`` belonging to item ``r % B``. Cost: one
        vision forward pass over ``N`` rows and one text forward pass over ``N * K`` prompts."""
        n, b = pixels.shape[0], len(batch)
        if token_embeddings.shape[0] != n or b == 0 or n % b:
            raise ValueError(f"{n} pixel rows and {token_embeddings.shape[0]} text rows for {b} items")
        reps = n // b
        ids = batch.prompt_ids.repeat(reps, 1, 1)  # (N, K, L)
        slot = batch.text_slot.repeat(reps, 1, 1)
        fixed = self.model.text_model.embeddings.token_embedding(ids)  # (N, K, L, D)
        rows = torch.arange(n, device=ids.device).view(n, 1, 1).expand_as(slot)
        mine = token_embeddings[rows, slot.clamp(min=0)]  # (N, K, L, D)
        prompts = torch.where((slot >= 0).unsqueeze(-1), mine, fixed)
        k, length = ids.shape[1], ids.shape[2]
        text = self.text_features(
            prompts.reshape(n * k, length, -1),
            batch.prompt_mask.repeat(reps, 1, 1).reshape(n * k, length),
            batch.pool_index.repeat(reps, 1).reshape(n * k),
        )
        image = self.model.get_image_features(pixel_values=pixels).pooler_output  # (N, P)
        text = text / text.norm(dim=-1, keepdim=True)
        image = image / image.norm(dim=-1, keepdim=True)
        scale = self.model.logit_scale.exp()
        return scale * torch.einsum("nkp,np->nk", text.reshape(n, k, -1), image)

    def baselines(self, batch: ClipBatch) -> tuple[Tensor, Tensor]:
        """The mean-colour image (zeros) ``(B, 3, S, S)`` and the pad embedding at every text
        position ``(B, T, D)``."""
        pad = torch.full_like(batch.text_ids, self.tokenizer.pad_token_id)
        return torch.zeros_like(batch.pixels), self.model.text_model.embeddings.token_embedding(pad)

    # -- the optional attention hook ----------------------------------------------------------
    def attention(
        self, items: Sequence[RawItem], *, targets: Sequence[Sequence[int]] | None = None, hidden_states: bool = False
    ) -> list:
        """The optional attention hook (:mod:`workers.engine.attention`). CLIP's towers never
        attend to each other, so each item has two streams and no cross-modal block: the
        vision tower (``[CLS]`` and the patches) and the text tower read with the first
        label's prompt (the item's words, one unit each, and one ``[prompt]`` unit for the
        prompt's fixed tokens: start and end of text, template words, the class name). A
        target's relevance uses its own class's prompt. Cost: one :meth:`head` pass and one
        backward pass per target rank."""
        from workers.engine.attention import AttentionMaps, AttentionStream, TargetGradients, Unit, patch_label

        batch = self.encode(items)
        pixels, tokens = self.embed(batch)
        pixels.requires_grad_(True)
        tokens.requires_grad_(True)
        towers = {"image": self.model.vision_model, "text": self.model.text_model}
        captured: dict[str, list] = {name: [] for name in towers}
        states: dict[str, list] = {name: [] for name in towers}
        handles = []
        for name, tower in towers.items():
            for layer in tower.encoder.layers:
                handles.append(layer.self_attn.register_forward_hook(_keep_output(captured[name], 1)))
                if hidden_states:
                    handles.append(layer.register_forward_hook(_keep_output(states[name], 0)))
            if hidden_states:
                handles.append(tower.encoder.layers[0].register_forward_pre_hook(_keep_input(states[name])))
        try:
            with torch.enable_grad():
                logits = self.head(pixels, tokens, batch=batch)
                grads = self._target_gradients(logits, captured, targets, len(batch))
        finally:
            for handle in handles:
                handle.remove()
        n_labels = len(self.labels)
        image_attention = torch.stack([a.detach() for a in captured["image"]], dim=1)  # (B, L, H, N, N)
        text_attention = torch.stack([a.detach() for a in captured["text"]], dim=1)  # (B*K, L, H, M, M)
        grid = self.grid
        image_units = [Unit("image", -1, "[CLS]")] + [Unit("image", k, patch_label(k, grid)) for k in range(grid**2)]
        image_unit_of = np.arange(len(image_units))
        result = []
        for b in range(len(batch)):
            image = AttentionStream(
                name="image",
                attention=image_attention[b].double().cpu().numpy(),
                unit_of=image_unit_of,
                units=image_units,
                pooled=0,
                hidden=_hidden(states["image"], b, None),
            )
            text_units, unit_of = self._text_layout(batch, b, 0)
            keep0 = self._prompt_positions(batch, b, 0)
            text = AttentionStream(
                name="text",
                attention=_square(text_attention[b * n_labels], keep0),
                unit_of=unit_of,
                units=text_units,
                pooled=int(batch.pool_index[b, 0]),
                hidden=_hidden(states["text"], b * n_labels, keep0),
            )
            for target, (image_grad, text_grad) in grads[b].items():
                image.targets[target] = TargetGradients(
                    image.attention, image_grad.double().cpu().numpy(), image_unit_of, 0
                )
                keep = self._prompt_positions(batch, b, target)
                text.targets[target] = TargetGradients(
                    _square(text_attention[b * n_labels + target], keep),
                    _square(text_grad, keep),
                    self._text_layout(batch, b, target)[1],
                    int(batch.pool_index[b, target]),
                )
            result.append(
                AttentionMaps(
                    item_id=batch.ids[b],
                    streams=[image, text],
                    cross_modal=False,
                    note=(
                        "CLIP's image and text towers never attend to each other: no attention "
                        "crosses modalities, so there is no head summary of cross-modal shares; "
                        "each tower's own attention is shown (the text tower with the first "
                        "label's prompt)."
                    ),
                )
            )
        return result

    def _prompt_positions(self, batch: ClipBatch, b: int, k: int) -> list[int]:
        return list(range(int(batch.prompt_mask[b, k].sum())))

    def _text_layout(self, batch: ClipBatch, b: int, k: int) -> tuple[list, np.ndarray]:
        """The text stream's units (the item's words, group ``P + w``, then ``[prompt]``) and
        the unit of every real position of class ``k``'s prompt."""
        from workers.engine.attention import Unit

        words = batch.words[b]
        first = self.grid**2
        units = [Unit("text", first + w, text) for w, text in enumerate(words.texts)]
        units.append(Unit("text", -1, "[prompt]"))
        word_at = {p: w for w, positions in enumerate(words.positions) for p in positions}
        slots = batch.text_slot[b, k].tolist()
        unit_of = [
            word_at.get(int(slots[p]), len(units) - 1) if slots[p] >= 0 else len(units) - 1
            for p in self._prompt_positions(batch, b, k)
        ]
        return units, np.asarray(unit_of)

    def _target_gradients(self, logits: Tensor, captured: dict, targets, n_items: int) -> list[dict]:
        """Per item, ``{target: (vision gradient, text gradient of the target's prompt)}``,
        each ``(L, H, N, N)``; one backward pass serves the ``j``-th target of every item."""
        n_labels = len(self.labels)
        targets = [list(dict.fromkeys(int(t) for t in ts)) for ts in (targets or [[] for _ in range(n_items)])]
        out: list[dict] = [{} for _ in range(n_items)]
        stacks = captured["image"] + captured["text"]
        depth = len(captured["image"])
        for j in range(max((len(ts) for ts in targets), default=0)):
            rows = [b for b in range(n_items) if len(targets[b]) > j]
            chosen = logits[rows, [targets[b][j] for b in rows]].sum()
            grads = torch.autograd.grad(chosen, stacks, retain_graph=True)
            image = torch.stack(grads[:depth], dim=1)
            text = torch.stack(grads[depth:], dim=1)
            for b in rows:
                out[b][targets[b][j]] = (image[b], text[b * n_labels + targets[b][j]])
        return out


def _keep_output(into: list, index: int):
    def hook(_module, _inputs, output):
        into.append(output[index] if isinstance(output, tuple) else output)

    return hook


def _keep_input(into: list):
    def hook(_module, inputs):
        into.insert(0, inputs[0])

    return hook


def _square(t: Tensor, keep: list[int]) -> np.ndarray:
    """``t[..., keep, keep]`` as float64 numpy."""
    idx = torch.tensor(keep, device=t.device)
    return t.detach().index_select(-1, idx).index_select(-2, idx).double().cpu().numpy()


def _hidden(states: list, row: int, keep: list[int] | None) -> np.ndarray | None:
    """``(L + 1, N, D)`` hidden states of batch row ``row`` (positions ``keep``), or None."""
    if not states:
        return None
    stacked = torch.stack([s.detach()[row] for s in states])
    if keep is not None:
        stacked = stacked[:, keep]
    return stacked.double().cpu().numpy()
