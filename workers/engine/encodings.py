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

from workers.engine.adapter import AdapterError, ModelAdapter, RawItem
from workers.engine.attribution import NonFiniteError, nonfinite_naming, prepare_batch

__all__ = ["FUSE_ROWS", "encode_items", "encode_modalities", "fuse_rows", "fused_logits", "has_modality_encodings"]

#: The most rows per ``fuse`` call: the demo's fusion runs a third slower per row in calls of
#: 1,024 rows than of 64 to 512 (its activations outgrow the CPU cache; docs/BENCHMARKS.md).
FUSE_ROWS = 256


def fuse_rows(max_rows: int | None) -> int:
    """Rows per ``fuse`` call under a caller's ``max_rows`` (None: no limit of its own)."""
    return max(1, min(FUSE_ROWS, int(max_rows))) if max_rows is not None else FUSE_ROWS


def _defined_in(cls: type, name: str) -> type | None:
    return next((k for k in cls.__mro__ if name in vars(k)), None)


def has_modality_encodings(adapter: Any) -> bool:
    """Whether ``adapter`` exposes ``encode_modality`` and ``fuse`` (module doc), defined no
    higher in its class hierarchy than ``head``: a subclass that overrides ``head`` (a model
    made to fail, say) but inherits the encodings would have them disagree, so it has none."""
    if not (callable(getattr(adapter, "encode_modality", None)) and callable(getattr(adapter, "fuse", None))):
        return False
    head = _defined_in(type(adapter), "head")
    for name in ("encode_modality", "fuse"):
        owner = _defined_in(type(adapter), name)
        if head is not None and owner is not None and not issubclass(owner, head):
            return False
    return True


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


def encode_items(adapter: ModelAdapter, items: Sequence[RawItem], *, batch_size: int = 64) -> list[Tensor]:
    """Every modality's encoding of every item (``(N, *E_m)`` each), through ``encode``, ``embed``
    and the adapter's ``encode_modality`` in batches of ``batch_size`` items."""
    parts: list[list[Tensor]] = [[] for _ in adapter.modalities]
    for start in range(0, len(items), batch_size):
        chunk = list(items[start : start + batch_size])
        with nonfinite_naming(items=chunk):
            p = prepare_batch(adapter, adapter.encode(chunk))
            for m, encoded in enumerate(encode_modalities(adapter, p.inputs, batch=p.batch)):
                if parts[m] and encoded.shape[1:] != parts[m][0].shape[1:]:
                    raise ValueError(
                        f"encode_modality({p.modalities[m]!r}) must give the same per-item shape in every batch "
                        f"({tuple(encoded.shape[1:])} vs {tuple(parts[m][0].shape[1:])})"
                    )
                parts[m].append(encoded)
    return [torch.cat(blocks) for blocks in parts]
