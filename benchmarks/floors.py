"""The floor of the explanation benchmark: per-sample pass times and pass counts.

The floor
---------

A method's floor is the time its irreducible model passes would take if every pass ran at the
best per-sample speed the hardware reaches for that kind of pass, at any batch size::

    floor = sum over items of   n_fwd * t_fwd + n_fb * t_fb + n_fbg * t_fbg + n_hvp * t_hvp

where the per-sample pass times are measured in the same run on ``adapter.head`` (on ``N``
items, ``N`` in ``--pass-batch-sizes``; the best ``time / N`` over ``N`` is kept):

* ``t_fwd``: one forward pass (no autograd graph);
* ``t_fb``: a forward pass plus the gradient of the target logits w.r.t. every embedded input
  (what Captum's gradient methods do per row);
* ``t_fbg``: a forward pass plus the gradient w.r.t. the smaller modality ``S`` *with*
  ``create_graph=True`` (the first half of a Hessian-vector product);
* ``t_hvp``: one Hessian-vector product on that graph: ``d/dx_L (grad_S f . v)``, one
  double-backward over ``N`` rows (the graph is built once and reused).

Pass counts per item (``G`` = the item's groups over all modalities, ``G_A``/``G_B`` those of
the interaction pair, ``G_S = min(G_A, G_B)``):

==========================  ==================================================
integrated_gradients        ``n_steps`` fwd+bwd + 2 fwd (the convergence delta)
saliency, input_x_gradient  1 fwd+bwd
gradient_shap               ``n_samples`` fwd+bwd
feature_ablation            1 + ``G`` fwd
occlusion                   1 + ``W`` fwd (window positions)
shapley_value_sampling      1 + ``n_samples * G`` fwd
kernel_shap, lime           ``n_samples`` fwd
modality_interaction        4 fwd
second_order                1 fwd+bwd(graph) + ``G_S`` HVP
integrated_hessians         ``n_steps`` * (1 fwd+bwd(graph) + ``G_S`` HVP)
perturbation                1 + ``G_A`` + ``G_B`` + ``G_A * G_B`` fwd
==========================  ==================================================

Also the small timing helpers the other benchmark modules share. No Django.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from workers.engine.adapter import ModelAdapter, RawItem
from workers.engine.attribution import METHODS, PreparedBatch, occlusion_windows, prepare_batch
from workers.engine.interactions import CROSS_METHODS, pick_modalities

__all__ = [
    "ALL_NAMES",
    "PASS_KINDS",
    "PASS_LABELS",
    "PassTimer",
    "PassTimes",
    "Passes",
    "floor_passes",
    "measure_pass_times",
]

#: Every method and interaction the benchmark knows.
ALL_NAMES: tuple[str, ...] = (*METHODS, "modality_interaction", *CROSS_METHODS)

Progress = Callable[[str], None]


# --------------------------------------------------------------------------------------------
# Small timing helpers (shared by the benchmark modules)
# --------------------------------------------------------------------------------------------


def sync(device: torch.device) -> None:
    """Wait for the device's queued work (CUDA runs asynchronously; a CPU needs nothing)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], Any], device: torch.device) -> tuple[float, Any]:
    """``(seconds, fn())``, the device synchronised before and after."""
    sync(device)
    start = time.perf_counter()
    out = fn()
    sync(device)
    return time.perf_counter() - start, out


def predicted_targets(p: PreparedBatch) -> Tensor:
    """The predicted class of every item of ``p``, ``(B,)``."""
    with torch.no_grad():
        return p.caller("predict").forward_rows(p.inputs).argmax(dim=1)


def cycle(items: Sequence[RawItem], n: int) -> list[RawItem]:
    """``n`` items, ``items`` repeated in order."""
    return [items[i % len(items)] for i in range(n)]


def is_oom(exc: BaseException) -> bool:
    """Whether ``exc`` is the device running out of memory (ends a sweep instead of failing)."""
    return isinstance(exc, torch.OutOfMemoryError) or "out of memory" in str(exc).lower()


# --------------------------------------------------------------------------------------------
# Per-sample pass times
# --------------------------------------------------------------------------------------------

PASS_KINDS: tuple[str, ...] = ("forward", "forward_backward", "forward_backward_graph", "hvp")
PASS_LABELS: dict[str, str] = {
    "forward": "fwd",
    "forward_backward": "fwd+bwd",
    "forward_backward_graph": "fwd+bwd(graph)",
    "hvp": "HVP",
}


@dataclass
class PassTimes:
    """Seconds per sample of each kind of pass (see the module doc), per batch size ``N``.

    Attributes:
        seconds: ``seconds[kind][N]``: the best time of one pass over ``N`` rows divided by ``N``.
        pair: indices ``(S, L)`` of the modalities the HVP differentiates (``S`` the one with
            fewer groups).
    """

    seconds: dict[str, dict[int, float]]
    pair: tuple[int, int]

    def best(self, kind: str) -> float:
        """The best per-sample time of ``kind`` over the batch sizes (inf if none ran)."""
        values = self.seconds.get(kind, {})
        return min(values.values()) if values else math.inf

    def best_batch_size(self, kind: str) -> int | None:
        values = self.seconds.get(kind, {})
        return min(values, key=lambda n: (values[n], n)) if values else None

    def merge(self, other: PassTimes) -> None:
        """Keep, per kind and batch size, the faster of the two measurements."""
        for kind, values in other.seconds.items():
            mine = self.seconds.setdefault(kind, {})
            for n, v in values.items():
                mine[n] = min(v, mine.get(n, math.inf))


def smaller_first(p: PreparedBatch, ia: int, ib: int) -> tuple[int, int]:
    """``(S, L)``: the pair ordered as the engine's HVPs use it (fewer groups first)."""
    ka, kb = p.group_table(ia)[0].shape[1], p.group_table(ib)[0].shape[1]
    return (ia, ib) if ka <= kb else (ib, ia)


class PassTimer:
    """Times single passes of each kind through ``adapter.head`` on ``N`` items (items cycled),
    keeping one prepared batch (and, for HVPs, one differentiable graph) per ``N``.

    Args:
        adapter: a loaded adapter.
        items: raw items.
        modalities: the interaction pair (default: the adapter's two modalities).
        device: for CUDA synchronisation (default: the inputs' device).
    """

    def __init__(
        self,
        adapter: ModelAdapter,
        items: Sequence[RawItem],
        *,
        modalities: Sequence[str] | None = None,
        device: torch.device | None = None,
    ) -> None:
        self.adapter = adapter
        self.items = list(items)
        self.modalities = modalities
        self.device = device
        self.pair: tuple[int, int] | None = None
        self._batches: dict[int, tuple[PreparedBatch, Tensor]] = {}
        self._graphs: dict[int, tuple[Tensor, list[Tensor]] | None] = {}

    def batch(self, n: int) -> tuple[PreparedBatch, Tensor]:
        """A prepared batch of ``n`` items (cycled, in order) and its predicted classes."""
        return self._batch(n)

    def _batch(self, n: int) -> tuple[PreparedBatch, Tensor]:
        if n not in self._batches:
            p = prepare_batch(self.adapter, self.adapter.encode(cycle(self.items, n)))
            ia, ib = pick_modalities(p.modalities, self.modalities)
            self.pair = self.pair or smaller_first(p, ia, ib)
            self._batches[n] = (p, predicted_targets(p))
        return self._batches[n]

    def _graph(self, n: int) -> tuple[Tensor, list[Tensor]]:
        p, t = self._batch(n)
        s, large = self.pair or (0, 1)
        with torch.enable_grad():
            z = [x.detach().requires_grad_(m in (s, large)) for m, x in enumerate(p.inputs)]
            out = p.adapter.head(*z, batch=p.batch)
            (g_s,) = torch.autograd.grad(out.gather(1, t[:, None]).sum(), z[s], create_graph=True)
        return g_s, z

    def _pass(self, kind: str, n: int) -> Callable[[], Any] | None:
        p, t = self._batch(n)
        if kind == "forward":

            def run() -> None:
                with torch.no_grad():
                    p.adapter.head(*p.inputs, batch=p.batch)

            return run
        if kind == "forward_backward":

            def run() -> None:
                with torch.enable_grad():
                    z = [x.detach().requires_grad_() for x in p.inputs]
                    out = p.adapter.head(*z, batch=p.batch)
                    torch.autograd.grad(out.gather(1, t[:, None]).sum(), z)

            return run
        if kind == "forward_backward_graph":
            return lambda: self._graph(n)
        if kind == "hvp":
            if n not in self._graphs:
                g_s, z = self._graph(n)
                self._graphs[n] = (g_s, z) if g_s.requires_grad else None
            graph = self._graphs[n]
            if graph is None:  # f is linear in S: no second-order pass to time
                return None
            g_s, z = graph
            s, large = self.pair or (0, 1)
            vec = p.inputs[s]
            return lambda: torch.autograd.grad(g_s, z[large], grad_outputs=vec, retain_graph=True, allow_unused=True)
        raise ValueError(f"unknown pass kind {kind!r}")

    def per_sample(self, kind: str, n: int, *, repeats: int = 1, warm_up: bool = False) -> float | None:
        """The best of ``repeats`` timings of one ``kind`` pass over ``n`` rows, divided by
        ``n`` (None when the pass does not exist, e.g. an HVP of a model linear in ``S``)."""
        fn = self._pass(kind, n)
        if fn is None:
            return None
        dev = self.device or self._batch(n)[0].device
        if warm_up:
            fn()
        return min(timed(fn, dev)[0] for _ in range(max(1, repeats))) / n

    def release(self, n: int) -> None:
        """Free the graph and the batch kept for ``n`` rows."""
        self._graphs.pop(n, None)
        self._batches.pop(n, None)


def measure_pass_times(
    adapter: ModelAdapter,
    items: Sequence[RawItem],
    *,
    batch_sizes: Sequence[int] = (1, 8, 32, 128, 512),
    repeats: int = 3,
    modalities: Sequence[str] | None = None,
    device: torch.device | None = None,
    progress: Progress | None = None,
    timer: PassTimer | None = None,
) -> PassTimes:
    """Time the four kinds of passes through ``adapter.head`` at each batch size.

    Args:
        adapter: a loaded adapter.
        items: raw items, cycled to fill each batch size.
        batch_sizes: row counts ``N`` to try (a batch of ``N`` items each).
        repeats: timed runs per (kind, ``N``) after one warm-up; the minimum is kept.
        modalities: the interaction pair (default: the adapter's two modalities).
        device: where the adapter lives (for CUDA synchronisation); default the inputs'.
        progress: called with a short description after each batch size.
        timer: a :class:`PassTimer` to use (and keep batches in); default a fresh one.

    Returns:
        :class:`PassTimes`. A batch size that runs out of memory ends the sweep (larger ones
        would fail too). Cost: ``(repeats + 1)`` passes of each kind per batch size.
    """
    timer = timer or PassTimer(adapter, items, modalities=modalities, device=device)
    seconds: dict[str, dict[int, float]] = {kind: {} for kind in PASS_KINDS}
    for n in sorted({int(b) for b in batch_sizes}):
        try:
            for kind in PASS_KINDS:
                value = timer.per_sample(kind, n, repeats=repeats, warm_up=True)
                if value is not None:
                    seconds[kind][n] = value
        except RuntimeError as exc:
            if not is_oom(exc):
                raise
            timer.release(n)
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            break
        finally:
            if progress is not None:
                progress(f"passes N={n}")
    return PassTimes(seconds=seconds, pair=timer.pair or (0, 1))


# --------------------------------------------------------------------------------------------
# Pass counts (the floor)
# --------------------------------------------------------------------------------------------


@dataclass
class Passes:
    """Pass counts, summed over the items of a run."""

    forward: float = 0.0
    forward_backward: float = 0.0
    forward_backward_graph: float = 0.0
    hvp: float = 0.0

    def seconds(self, times: PassTimes) -> float:
        """The floor: every pass at its best measured per-sample time."""
        total = 0.0
        for kind in PASS_KINDS:
            count = getattr(self, kind)
            if count:
                total += count * times.best(kind)
        return total

    def describe(self, n_items: int) -> str:
        """Mean passes per item, e.g. ``"50 fwd+bwd + 2 fwd"``."""
        parts = []
        for kind in ("forward_backward", "forward_backward_graph", "hvp", "forward"):
            count = getattr(self, kind) / max(1, n_items)
            if count:
                text = f"{count:.1f}".rstrip("0").rstrip(".")
                parts.append(f"{text} {PASS_LABELS[kind]}")
        return " + ".join(parts) or "0"


def floor_passes(
    method: str, p: PreparedBatch, *, options: Mapping[str, Any] | None = None, modalities: Sequence[str] | None = None
) -> Passes:
    """The irreducible passes of ``method`` on the items of ``p`` (table: module doc), with
    each item's own group counts (no padding to the batch's largest)."""
    options = dict(options or {})
    spec_opts = METHODS[method].options() if method in METHODS else {}
    opt = lambda name, default=None: options.get(name, spec_opts.get(name, default))  # noqa: E731
    n = p.size
    groups = [sum(len(ids) for ids in row) for row in p.group_ids]
    if method == "integrated_gradients":
        return Passes(forward_backward=opt("n_steps") * n, forward=2 * n)
    if method in ("saliency", "input_x_gradient"):
        return Passes(forward_backward=n)
    if method == "gradient_shap":
        return Passes(forward_backward=opt("n_samples") * n)
    if method == "feature_ablation":
        return Passes(forward=sum(1 + g for g in groups))
    if method == "shapley_value_sampling":
        return Passes(forward=sum(1 + opt("n_samples") * g for g in groups))
    if method in ("kernel_shap", "lime"):
        return Passes(forward=opt("n_samples") * n)
    if method == "occlusion":
        _, _, n_windows = occlusion_windows(
            p, sliding_window_shapes=opt("sliding_window_shapes"), strides=opt("strides")
        )
        return Passes(forward=(1 + n_windows) * n)
    if method == "modality_interaction":
        return Passes(forward=4 * n)
    ia, ib = pick_modalities(p.modalities, modalities)
    g_a = [len(row[ia]) for row in p.group_ids]
    g_b = [len(row[ib]) for row in p.group_ids]
    g_s = sum(min(a, b) for a, b in zip(g_a, g_b))
    if method == "second_order":
        return Passes(forward_backward_graph=n, hvp=g_s)
    if method == "integrated_hessians":
        steps = int(options.get("n_steps", 16))
        return Passes(forward_backward_graph=steps * n, hvp=steps * g_s)
    if method == "perturbation":
        return Passes(forward=sum(1 + a + b + a * b for a, b in zip(g_a, g_b)))
    raise ValueError(f"unknown method {method!r}; known: {list(ALL_NAMES)}")
