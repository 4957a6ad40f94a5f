"""Tiny, randomly initialised Hugging Face model folders for the adapter tests, built in code:
configs written here, weights drawn from a fixed seed, tokenizers made on the fly (a WordPiece
vocabulary for ViLT, a byte-level BPE trained on a few sentences for CLIP). Nothing is
downloaded. Each folder is what ``save_pretrained`` writes for a real model: config, weights,
tokenizer files and ``preprocessor_config.json``."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from PIL import Image

VILT_LABELS = ("red", "blue", "green", "yellow")
# A word the vocabulary lacks whole ("squares" = "square" + "##s"), so word pieces get merged.
WORDPIECES = [
    "[PAD]",
    "[UNK]",
    "[CLS]",
    "[SEP]",
    "[MASK]",
    "what",
    "colour",
    "is",
    "the",
    "square",
    "##s",
    "circle",
    "shape",
    "?",
    "a",
    "photo",
    "of",
    "red",
    "blue",
    "green",
    "yellow",
    "left",
    "right",
    "on",
    "it",
    "there",
    "##ish",
    "0",
    "1",
    "2",
    "3",
    "4",
    "5",
]
SENTENCES = [
    "what colour is the square?",
    "a photo of a red circle",
    "a photo of a blue square",
    "is it red or blue or green or yellow",
    "the triangle on the left is green",
    "photos of squares",
    "what shape is there? 0 1 2 3 4 5",
]
COLOURS = {"red": (220, 30, 30), "blue": (30, 60, 220), "green": (30, 180, 60), "yellow": (230, 210, 40)}


def _preprocessor(folder: Path, *, size: int, mean, std) -> None:
    (folder / "preprocessor_config.json").write_text(
        json.dumps(
            {
                "do_resize": True,
                "size": {"shortest_edge": size},
                "resample": 3,
                "do_rescale": True,
                "rescale_factor": 1 / 255,
                "do_normalize": True,
                "image_mean": list(mean),
                "image_std": list(std),
            }
        )
    )


def vilt_folder(folder: Path, *, kind: str = "vqa", seed: int = 0, num_images: int = 1) -> Path:
    """A ViLT folder: 32x32 images in 8x8 patches (a 4x4 grid), two layers of width 32, a
    WordPiece vocabulary of :data:`WORDPIECES`, the classes :data:`VILT_LABELS`."""
    from transformers import BertTokenizer, ViltConfig, ViltForImagesAndTextClassification, ViltForQuestionAnswering

    folder.mkdir(parents=True, exist_ok=True)
    config = ViltConfig(
        vocab_size=len(WORDPIECES),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        image_size=32,
        patch_size=8,
        max_position_embeddings=16,
        max_image_length=-1,
        num_images=num_images,
        initializer_range=0.3,
        id2label=dict(enumerate(VILT_LABELS)),
        label2id={name: k for k, name in enumerate(VILT_LABELS)},
    )
    torch.manual_seed(seed)
    cls = ViltForQuestionAnswering if kind == "vqa" else ViltForImagesAndTextClassification
    cls(config).eval().save_pretrained(folder)
    BertTokenizer(vocab={w: k for k, w in enumerate(WORDPIECES)}).save_pretrained(folder)
    _preprocessor(folder, size=32, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
    return folder


def clip_tokenizer(*, specials_last: bool = False):
    """A CLIP tokenizer whose byte-level BPE is learnt from :data:`SENTENCES` (CLIP's own
    normaliser and pre-tokenizer, so words split the way CLIP splits them). ``specials_last``:
    start and end of text take the two highest IDs, as in OpenAI's CLIP vocabulary.

    The merges are learnt here, not by ``tokenizers``' trainer: its ties between equally frequent
    pairs fall in hash order, so the vocabulary, and every logit of a model that reads it,
    changed from one process to the next (CI once saw a logit change of 0.0097 where a local run
    saw 1.24). Ties here go to the lexicographically smallest pair."""
    from tokenizers import Regex, normalizers, pre_tokenizers
    from transformers import CLIPTokenizer

    normaliser = normalizers.Sequence(
        [normalizers.NFC(), normalizers.Replace(Regex(r"\s+"), " "), normalizers.Lowercase()]
    )
    splitter = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(
                Regex(
                    r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|"""
                    r"""[^\s\p{L}\p{N}]+"""
                ),
                behavior="removed",
                invert=True,
            ),
            pre_tokenizers.ByteLevel(add_prefix_space=False),
        ]
    )
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    words: dict[tuple[str, ...], int] = {}
    for sentence in SENTENCES:
        for word, _ in splitter.pre_tokenize_str(normaliser.normalize_str(sentence)):
            symbols = (*word[:-1], word[-1] + "</w>")
            words[symbols] = words.get(symbols, 0) + 1
    vocab_order = ["<|startoftext|>", "<|endoftext|>", *alphabet, *(c + "</w>" for c in alphabet)]
    merges = _learn_merges(words, rounds=120)
    vocab_order += [a + b for a, b in merges]
    vocab_order = list(dict.fromkeys(vocab_order))
    if specials_last:
        vocab_order = vocab_order[2:] + vocab_order[:2]
    return CLIPTokenizer(vocab={token: k for k, token in enumerate(vocab_order)}, merges=merges)


def _learn_merges(words: dict[tuple[str, ...], int], *, rounds: int) -> list[tuple[str, str]]:
    """Byte-pair merges: each round joins the most frequent adjacent pair (seen at least twice;
    ties to the smallest pair), until ``rounds`` merges or none is left."""
    merges: list[tuple[str, str]] = []
    for _ in range(rounds):
        counts: dict[tuple[str, str], int] = {}
        for symbols, n in words.items():
            for pair in zip(symbols, symbols[1:]):
                counts[pair] = counts.get(pair, 0) + n
        if not counts:
            break
        best = min(counts, key=lambda pair: (-counts[pair], pair))
        if counts[best] < 2:
            break
        merges.append(best)
        joined: dict[tuple[str, ...], int] = {}
        for symbols, n in words.items():
            out, i = [], 0
            while i < len(symbols):
                if i + 1 < len(symbols) and (symbols[i], symbols[i + 1]) == best:
                    out.append(symbols[i] + symbols[i + 1])
                    i += 2
                else:
                    out.append(symbols[i])
                    i += 1
            joined[tuple(out)] = joined.get(tuple(out), 0) + n
        words = joined
    return merges


def clip_folder(folder: Path, *, seed: int = 0, old_config: bool = False) -> Path:
    """A CLIPModel folder: 32x32 images in 8x8 patches, two-layer towers of width 32, a text
    context of 32 tokens, the BPE of :func:`clip_tokenizer`. ``old_config``: the special token
    IDs of OpenAI's own CLIP configs (``eos_token_id`` 2, which makes ``CLIPTextModel`` read
    its features at the highest token ID) with a vocabulary that puts end of text last."""
    from transformers import CLIPConfig, CLIPModel

    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = clip_tokenizer(specials_last=old_config)
    special = {
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
    }
    if old_config:
        special = {"bos_token_id": 0, "eos_token_id": 2, "pad_token_id": 1}
    config = CLIPConfig(
        text_config=dict(
            vocab_size=len(tokenizer),
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            max_position_embeddings=32,
            initializer_range=0.3,
            **special,
        ),
        vision_config=dict(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            image_size=32,
            patch_size=8,
            initializer_range=0.3,
        ),
        projection_dim=16,
        initializer_factor=1.0,
    )
    torch.manual_seed(seed)
    CLIPModel(config).eval().save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    _preprocessor(folder, size=32, mean=(0.48145466, 0.4578275, 0.40821073), std=(0.26862954, 0.26130258, 0.27577711))
    return folder


def image_items(folder: Path, texts: list[str], *, sizes=((40, 24), (32, 32), (17, 50))) -> list[dict]:
    """Raw items with non-square images (so boxes map back to the original pixels) of a
    coloured square on a striped background, one per text."""
    folder.mkdir(parents=True, exist_ok=True)
    items = []
    names = list(COLOURS)
    for i, text in enumerate(texts):
        width, height = sizes[i % len(sizes)]
        img = Image.new("RGB", (width, height), (20 * i % 255, 90, 140))
        for x in range(0, width, 4):
            for y in range(height):
                img.putpixel((x, y), (250, 250, 250))
        label = names[i % len(names)]
        img.paste(COLOURS[label], (width // 4, height // 4, width // 4 + width // 2, height // 4 + height // 2))
        path = folder / f"img{i}.png"
        img.save(path)
        items.append({"id": f"it{i}", "image": str(path), "text": text, "label": label})
    return items
