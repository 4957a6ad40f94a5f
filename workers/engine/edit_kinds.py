"""The kinds of counterfactual edit (``workers/engine/counterfactual.py``) and the parser of a
researcher's word-swap list: no torch, so the study designer reads them in the web process."""

from __future__ import annotations

import re
from collections.abc import Sequence

MODALITY_BASELINE = "modality_baseline"
TOP_K_REMOVED = "top_k_removed"
WORD_SWAP = "word_swap"
ADAPTER_EDIT = "adapter"
EDIT_KINDS = (MODALITY_BASELINE, TOP_K_REMOVED, WORD_SWAP, ADAPTER_EDIT)

_WORD = re.compile(r"\w+(?:'\w+)?", re.UNICODE)


def swap_pairs_parse(lines: Sequence[str] | str) -> list[tuple[str, str]]:
    """``["red -> blue", ...]`` (or one string, a pair a line) as ``[("red", "blue"), ...]``.
    Raises ValueError naming the 1-based pair that is not ``old -> new`` with one word each."""
    if isinstance(lines, str):
        lines = [line for line in lines.splitlines() if line.strip()]
    pairs = []
    for n, line in enumerate(lines, start=1):
        old, arrow, new = str(line).partition("->")
        old, new = old.strip(), new.strip()
        if not arrow or not _WORD.fullmatch(old) or not _WORD.fullmatch(new):
            raise ValueError(f"pair {n}: {line!r} must read 'old -> new', one word on each side")
        if old.lower() == new.lower():
            raise ValueError(f"pair {n}: {line!r} swaps a word for itself")
        pairs.append((old, new))
    return pairs
