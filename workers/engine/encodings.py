"""Per-modality encodings and the fusion head: the optional adapter hook that lets the model
report evaluate many pairings of the same inputs without running each modality's encoder again.

An adapter whose ``head`` is "encode each modality separately, then fuse" may expose the two
halves (:class:`workers.engine.adapter.ModalityEncodings`)::

    encode_modality(name, embedded, *, batch) -> Tensor   # (N, *E_m), row r from embedded row r
    fuse(*encodings) -> Tensor                             # (N, C) logits

with ``head(*x, batch=b) == fuse(*(encode_modality(m, x[m], batch=b) for m))`` exactly, and the
encoding of modality ``m`` a function of that modality's embedded row (and of the part of
``batch`` that belongs to ``m``, e.g. a question's attention mask) only. ``fuse`` sees nothing
else, so its rows may pair the encodings of different items freely: EMAP's ``N^2`` pairs
``fuse(E_A[i], E_B[j])`` cost ``N`` encodings per modality and ``N^2`` fusions instead of
``N^2`` full forward passes. Rows of ``embedded`` follow the protocol layout (row ``r`` is item
``r % B`` of ``batch``).

No Django here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from workers.engine.adapter import AdapterError, ModelAdapter
from workers.engine.attribution import NonFiniteError

__all__ = ["encode_modalities", "fused_logits", "has_modality_encodings"]


def has_modality_encodings(adapter: Any) -> bool:
    """Whether ``adapter`` exposes ``encode_modality`` and ``fuse`` (module doc)."""
    return callable(getattr(adapter, "encode_modality", None)) and callable(getattr(adapter, "fuse", None))


def encode_modalities(
    adapter: ModelAdapter, embedded: Sequence[Tensor], *, batch: Any, only: Sequence[int] | None = None
) -> list[Tensor | None]:
    """The encoding of every modality (or of the modalities ``only``; the others None) of
    ``embedded`` rows, without gradients."""
    out: list[Tensor | None] = []
    with torch.no_grad():
        for m, (name, x) in enumerate(zip(adapter.modalities, embedded)):
            if only is not None and m not in only:
                out.append(None)
                continue
            encoded = adapter.encode_modality(str(name), x, batch=batch)
            if not isinstance(encoded, Tensor) or encoded.dim() < 1 or encoded.shape[0] != x.shape[0]:
                raise AdapterError(
                    f"encode_modality({str(name)!r}) returned shape {tuple(getattr(encoded, 'shape', ()))} "
                    f"for {x.shape[0]} rows; expected ({x.shape[0]}, ...)"
                )
            out.append(encoded)
    return out


def fused_logits(adapter: ModelAdapter, rows: Sequence[Tensor], *, what: str, n_items: int | None = None) -> Tensor:
    """``adapter.fuse(*rows)`` without gradients, as float64 on the CPU, checked: NaN/Inf
    raises :class:`NonFiniteError` with the batch positions ``row % n_items`` (the protocol
    layout; ``n_items`` None: the row numbers themselves)."""
    n = rows[0].shape[0]
    with torch.no_grad():
        out = adapter.fuse(*rows)
    if not isinstance(out, Tensor) or out.dim() != 2 or out.shape[0] != n:
        raise AdapterError(
            f"fuse returned shape {tuple(getattr(out, 'shape', ()))} for {n} rows; expected ({n}, n_labels)"
        )
    bad = ~torch.isfinite(out).all(dim=1)
    if bool(bad.any()):
        found = torch.nonzero(bad).flatten()
        items = sorted(set((found % n_items if n_items else found).tolist()))
        raise NonFiniteError(
            f"adapter.fuse returned NaN/Inf logits during {what} ({int(bad.sum())} of {n} rows); "
            "refusing to compute scores from them",
            batch_items=items,
        )
    return out.detach().to(torch.float64).cpu()
