"""Loading adapters once per process, and checking that one honours the protocol."""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from workers.engine.adapter import AdapterError, ModelAdapter, RawItem, adapter_from_path, error_text

_cache: dict[tuple[str, str, str], ModelAdapter] = {}
_lock = threading.Lock()


def _options_key(options: Mapping[str, Any] | None) -> str:
    return json.dumps(options or {}, sort_keys=True, default=str)


def load_adapter(dotted_path: str, *, device: str = "cpu", options: Mapping[str, Any] | None = None) -> ModelAdapter:
    """Instantiate (``Factory(**options)``) and ``load`` an adapter, cached per (path,
    options, device) for the process.

    Raises :class:`AdapterError` naming the step that failed (import, create, load) with the
    adapter's own message; the original exception is its ``__cause__``."""
    key = (dotted_path, _options_key(options), device)
    with _lock:
        adapter = _cache.get(key)
        if adapter is None:
            adapter = adapter_from_path(dotted_path, options)
            try:
                adapter.load(torch.device(device))  # inside: a bad device string is load's failure too
            except Exception as exc:
                raise AdapterError(f"adapter {dotted_path}: load({str(device)!r}) failed: {error_text(exc)}") from exc
            _cache[key] = adapter
        return adapter


def forget_adapter(dotted_path: str, *, options: Mapping[str, Any] | None = None) -> None:
    """Drop the cached copies of ``dotted_path`` (only those made with ``options``, if given)."""
    with _lock:
        for key in [k for k in _cache if k[0] == dotted_path and (options is None or k[1] == _options_key(options))]:
            del _cache[key]


@dataclass(frozen=True)
class AdapterCheck:
    labels: list[str]
    modalities: list[str]
    embedded_shapes: list[list[int]]


def check_adapter(adapter: ModelAdapter, items: Sequence[RawItem]) -> AdapterCheck:
    """Run ``items`` through every protocol method and verify shapes and finiteness.

    Cost: one forward pass. Raises :class:`AdapterError` naming the broken rule.
    """
    labels = [str(label) for label in adapter.labels]
    modalities = [str(m) for m in adapter.modalities]
    if not labels:
        raise AdapterError("adapter.labels is empty")
    if len(set(labels)) != len(labels):
        raise AdapterError("adapter.labels has duplicates")
    missing = [m for m in modalities for item in items if m not in item]
    if missing:
        raise AdapterError(f"the check item lacks the modalities {sorted(set(missing))} the adapter needs")
    batch = adapter.encode(items)
    with torch.no_grad():
        embedded = adapter.embed(batch)
        if len(embedded) != len(modalities):
            raise AdapterError(f"embed returned {len(embedded)} tensors for {len(modalities)} modalities")
        logits = adapter.head(*embedded, batch=batch)
        baselines = adapter.baselines(batch)
        groups = adapter.feature_groups(batch)
    n = len(items)
    if tuple(logits.shape) != (n, len(labels)):
        raise AdapterError(f"head returned shape {tuple(logits.shape)}, expected {(n, len(labels))}")
    if not torch.isfinite(logits).all():
        raise AdapterError("head returned NaN or Inf")
    for name, emb, base, group in zip(modalities, embedded, baselines, groups):
        if emb.shape[0] != n:
            raise AdapterError(f"embed('{name}') is not batch-first: shape {tuple(emb.shape)}")
        if base.shape != emb.shape:
            raise AdapterError(f"baselines('{name}') shape {tuple(base.shape)} != embed shape {tuple(emb.shape)}")
        try:
            torch.broadcast_shapes(group.shape, emb.shape)
        except RuntimeError:
            raise AdapterError(
                f"feature_groups('{name}') shape {tuple(group.shape)} does not broadcast to {tuple(emb.shape)}"
            ) from None
    return AdapterCheck(labels=labels, modalities=modalities, embedded_shapes=[list(e.shape[1:]) for e in embedded])
