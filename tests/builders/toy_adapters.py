"""Small analytic adapters implementing the model adapter protocol, for engine tests.

Raw items are dicts with one list-of-numbers payload per modality (plus ``id``, ``label``
and, for some adapters, per-item context such as ``present`` or ``poison``). Every adapter
counts its ``head`` calls and rows (``head_calls``, ``head_rows``) and honours the protocol's
row convention: a head call of ``N = k * B`` rows with a batch of ``B`` items maps row ``r`` to
item ``r % B`` (per-item context is tiled with ``repeat``).

* :class:`ImageTabularAdapter`: a float32 image ``(3, 4, 4)`` + tabular ``(5,)`` MLP with a
  per-item "feature present" context in ``batch`` and optional per-item image segmentations
  (ragged group counts). Structurally unlike image + text.
* :class:`AdditiveAdapter`: ``f_c = g_c(a) + h_c(b)``, tokens ``a`` ``(3, 2)`` and a vector
  ``b`` ``(4,)``; no cross-modal interaction at all.
* :class:`BilinearAdapter`: ``f_c = (w_c . a)(v_c . b)`` (+ ``u_c . c`` with a third modality);
  constant cross Hessian ``w_c v_c^T``.
* :class:`EncodedBilinearAdapter`, :class:`EncodedNonFiniteAdapter`: the same with per-modality
  encodings (``encode_modality`` + ``fuse``); the second has NaN encodings for poisoned items.
* :class:`PairwiseAdapter`: additive plus one known pairwise term between group ``G_STAR`` of
  ``a`` and group ``H_STAR`` of ``b``.
* :class:`NonFiniteAdapter`: NaN or Inf logits for "poisoned" items, or finite logits whose
  gradient is NaN (``kind="grad"``).
* :func:`three_modality_adapter`, :class:`FactoryFailsAdapter`, :class:`LoadFailsAdapter`:
  dotted-path factories for the command-line tests (three modalities; a constructor or a
  ``load`` that raises).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from workers.engine.adapter import GroupInfo, adapter_factory

# The toy models are tiny: on a shared CPU, intra-op threads only add contention
# (a 21x48 matmul takes ~1000x longer with 2 busy threads than with 1).
torch.set_num_threads(1)


class ToyAdapter:
    """Shared plumbing: encode stacks payloads, embed returns them, baselines are constants."""

    labels: tuple[str, ...] = ("neg", "pos")
    modalities: tuple[str, ...] = ("a", "b")
    shapes: dict[str, tuple[int, ...]] = {}
    dtype = torch.float64
    baseline_values: dict[str, float] = {}

    def __init__(self) -> None:
        self.head_calls = 0
        self.head_rows = 0
        self.device = torch.device("cpu")

    # -- protocol -------------------------------------------------------------------------
    def load(self, device: torch.device) -> None:
        self.device = torch.device(device)

    def encode(self, items: Sequence[dict]) -> dict[str, Any]:
        if not items:
            raise ValueError("no items")
        x = {}
        for m in self.modalities:
            try:
                x[m] = torch.tensor([item[m] for item in items], dtype=self.dtype, device=self.device).reshape(
                    len(items), *self.shapes[m]
                )
            except (KeyError, ValueError, RuntimeError) as exc:
                bad = next((it.get("id") for it in items if m not in it), None)
                raise ValueError(f"item {bad!r}: cannot read modality {m!r}: {exc}") from exc
        return {"x": x, "ids": [item.get("id") for item in items], "n": len(items), **self.context(items)}

    def embed(self, batch: dict) -> tuple[Tensor, ...]:
        return tuple(batch["x"][m].clone() for m in self.modalities)

    def head(self, *embedded: Tensor, batch: dict) -> Tensor:
        n = embedded[0].shape[0]
        assert n % batch["n"] == 0, (n, batch["n"])
        self.head_calls += 1
        self.head_rows += n
        return self.logits(*embedded, batch=batch)

    def baselines(self, batch: dict) -> tuple[Tensor, ...]:
        return tuple(torch.full_like(batch["x"][m], self.baseline_values.get(m, 0.0)) for m in self.modalities)

    def feature_groups(self, batch: dict) -> tuple[Tensor, ...]:
        raise NotImplementedError

    def describe_groups(self, batch: dict) -> list[list[list[GroupInfo]]]:
        masks = self.feature_groups(batch)
        out = []
        for b in range(batch["n"]):
            per_mod = []
            for m, mask in zip(self.modalities, masks):
                mb = mask[b] if mask.shape[0] > 1 else mask[0]
                per_mod.append(
                    [GroupInfo(group_id=int(g), kind="feature", text=f"{m}[{int(g)}]") for g in torch.unique(mb)]
                )
            out.append(per_mod)
        return out

    # -- helpers ----------------------------------------------------------------------------
    def context(self, items: Sequence[dict]) -> dict[str, Any]:
        return {}

    def logits(self, *embedded: Tensor, batch: dict) -> Tensor:
        raise NotImplementedError

    @staticmethod
    def tile(ctx: Tensor, n: int) -> Tensor:
        """Per-item context ``(B, ...)`` -> ``(n, ...)`` with row ``r`` from item ``r % B``."""
        return ctx.repeat(n // ctx.shape[0], *([1] * (ctx.dim() - 1)))

    def make_items(self, n: int, *, seed: int = 0, scale: float = 1.0) -> list[dict]:
        gen = torch.Generator().manual_seed(seed)
        items = []
        for i in range(n):
            item: dict[str, Any] = {"id": f"it{i}", "label": self.labels[i % len(self.labels)]}
            for m in self.modalities:
                item[m] = (scale * torch.randn(self.shapes[m], generator=gen, dtype=torch.float64)).tolist()
            items.append(item)
        return items

    def reset_counts(self) -> None:
        self.head_calls = 0
        self.head_rows = 0


def _weights(seed: int, *shape: int) -> Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


class ImageTabularAdapter(ToyAdapter):
    """Image ``(3, 4, 4)`` + tabular ``(5,)`` -> 3 classes, float32.

    Groups: image 2x2 patches (4 groups, mask ``(B, 1, 4, 4)``) or, when an item carries
    ``segments`` (a 4x4 grid of segment numbers 0..S-1), that segmentation; tabular groups
    ``[0, 0, 1, 2, 2]`` offset by the item's image group count (mask ``(B, 5)``).

    Context: ``present`` (five 0/1 flags per item, default all 1) multiplies the tabular
    features inside the head, so the head depends on per-item data in ``batch``.
    """

    labels = ("low", "mid", "high")
    modalities = ("image", "tabular")
    shapes = {"image": (3, 4, 4), "tabular": (5,)}
    dtype = torch.float32
    baseline_values = {"image": 0.0, "tabular": 0.0}
    TAB_GROUPS = (0, 0, 1, 2, 2)

    def __init__(self, *, context: bool = True) -> None:
        super().__init__()
        self.use_context = context
        self.w_img = _weights(1, 8, 48).float()
        self.w_tab = _weights(2, 8, 5).float()
        self.v = _weights(3, 3, 8).float()
        self.bias = _weights(4, 3).float()

    def context(self, items: Sequence[dict]) -> dict[str, Any]:
        present = torch.tensor([item.get("present", [1.0] * 5) for item in items], dtype=self.dtype)
        segments = []
        for item in items:
            if "segments" in item:
                segments.append(torch.tensor(item["segments"], dtype=torch.long).reshape(4, 4))
            else:
                r = torch.arange(4)
                segments.append((r[:, None] // 2) * 2 + r[None, :] // 2)
        return {"present": present, "segments": torch.stack(segments)}

    def logits(self, image: Tensor, tabular: Tensor, *, batch: dict) -> Tensor:
        n = image.shape[0]
        if self.use_context:
            tabular = tabular * self.tile(batch["present"], n)
        h = torch.tanh(image.reshape(n, -1) @ self.w_img.T + tabular @ self.w_tab.T)
        h = h + 0.5 * torch.tanh(image.reshape(n, -1) @ self.w_img.T) * torch.tanh(tabular @ self.w_tab.T)
        return h @ self.v.T + self.bias

    def feature_groups(self, batch: dict) -> tuple[Tensor, ...]:
        seg = batch["segments"]  # (B, 4, 4)
        n_img = seg.reshape(seg.shape[0], -1).max(dim=1).values + 1  # (B,)
        tab = torch.tensor(self.TAB_GROUPS).unsqueeze(0) + n_img.unsqueeze(1)  # (B, 5)
        return seg.unsqueeze(1), tab

    def describe_groups(self, batch: dict) -> list[list[list[GroupInfo]]]:
        seg, tab = self.feature_groups(batch)
        out = []
        for b in range(batch["n"]):
            image_groups = []
            for g in torch.unique(seg[b]):
                ys, xs = torch.nonzero(seg[b, 0] == g, as_tuple=True)
                image_groups.append(
                    GroupInfo(
                        group_id=int(g),
                        kind="patch",
                        box=(int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1),
                    )
                )
            tab_groups = [
                GroupInfo(group_id=int(g), kind="feature", text=f"features {k}")
                for k, g in enumerate(torch.unique(tab[b]))
            ]
            out.append([image_groups, tab_groups])
        return out


class AdditiveAdapter(ToyAdapter):
    """``f_c(a, b) = g_c(a) + h_c(b)``: ``g_c(a) = sum_t u_c . tanh(W a_t)``,
    ``h_c(b) = r_c . sin(V b)``. ``a``: tokens ``(3, 2)``, one group per token (mask
    ``(B, 3, 1)``); ``b``: ``(4,)`` in groups ``[3, 3, 4, 4]``."""

    modalities = ("a", "b")
    shapes = {"a": (3, 2), "b": (4,)}
    baseline_values = {"a": 0.1, "b": -0.2}

    def __init__(self) -> None:
        super().__init__()
        self.W = _weights(10, 4, 2)
        self.u = _weights(11, 2, 4)
        self.V = _weights(12, 3, 4)
        self.r = _weights(13, 2, 3)

    def g(self, a: Tensor) -> Tensor:
        """``(N, 3, 2)`` -> ``(N, 2)``."""
        return (torch.tanh(a @ self.W.T) @ self.u.T).sum(dim=1)

    def h(self, b: Tensor) -> Tensor:
        """``(N, 4)`` -> ``(N, 2)``."""
        return torch.sin(b @ self.V.T) @ self.r.T

    def logits(self, a: Tensor, b: Tensor, *, batch: dict) -> Tensor:
        return self.g(a) + self.h(b)

    def feature_groups(self, batch: dict) -> tuple[Tensor, ...]:
        n = batch["n"]
        return (torch.arange(3).reshape(1, 3, 1).expand(n, 3, 1), torch.tensor([[3, 3, 4, 4]]).expand(n, 4))


class BilinearAdapter(ToyAdapter):
    """``f_c = (w_c . a)(v_c . b)`` with ``a`` ``(6,)`` in 3 groups of 2 and ``b`` ``(5,)`` in
    groups ``[3, 3, 4, 4, 4]`` (``swap=True``: ``a`` ``(4,)`` in 2 groups and ``b`` ``(6,)`` in
    3, so the other modality is the smaller one). ``third=True`` adds a modality ``c`` ``(2,)``
    (one group) with the additive term ``u_c . c``. Baselines are non-zero constants."""

    baseline_values = {"a": 0.1, "b": -0.2, "c": 0.3}

    def __init__(self, *, swap: bool = False, third: bool = False) -> None:
        super().__init__()
        self.swap = swap
        self.third = third
        self.modalities = ("a", "b", "c") if third else ("a", "b")
        if swap:
            self.shapes = {"a": (4,), "b": (6,), "c": (2,)}
            self.groups = {"a": [0, 0, 1, 1], "b": [2, 2, 3, 3, 4, 4], "c": [5, 5]}
        else:
            self.shapes = {"a": (6,), "b": (5,), "c": (2,)}
            self.groups = {"a": [0, 0, 1, 1, 2, 2], "b": [3, 3, 4, 4, 4], "c": [5, 5]}
        self.w = _weights(20, 2, self.shapes["a"][0])
        self.v = _weights(21, 2, self.shapes["b"][0])
        self.u = _weights(22, 2, 2)

    def logits(self, *embedded: Tensor, batch: dict) -> Tensor:
        a, b = embedded[0], embedded[1]
        out = (a @ self.w.T) * (b @ self.v.T)
        if self.third:
            out = out + embedded[2] @ self.u.T
        return out

    def feature_groups(self, batch: dict) -> tuple[Tensor, ...]:
        n = batch["n"]
        return tuple(torch.tensor([self.groups[m]]).expand(n, -1) for m in self.modalities)

    def group_members(self, m: str) -> list[list[int]]:
        """Element indices of each group of modality ``m``, in group-ID order."""
        ids = self.groups[m]
        return [[i for i, g in enumerate(ids) if g == gid] for gid in sorted(set(ids))]


class EncodedBilinearAdapter(BilinearAdapter):
    """:class:`BilinearAdapter` with per-modality encodings (``encode_modality`` + ``fuse``,
    ``workers/engine/encodings.py``): ``a -> w a``, ``b -> v b``, ``c -> u c``, fused as
    ``(w a) * (v b) (+ u c)``, the same floats as ``head``. Counts encoded and fused rows."""

    def __init__(self, *, swap: bool = False, third: bool = False) -> None:
        super().__init__(swap=swap, third=third)
        self.encoded_rows = 0
        self.fused_rows = 0

    def encode_modality(self, name: str, embedded: Tensor, *, batch: dict) -> Tensor:
        self.encoded_rows += embedded.shape[0]
        return embedded @ {"a": self.w, "b": self.v, "c": self.u}[name].T

    def fuse(self, *encodings: Tensor) -> Tensor:
        self.fused_rows += encodings[0].shape[0]
        out = encodings[0] * encodings[1]
        return out + encodings[2] if self.third else out


class EncodedNonFiniteAdapter(ToyAdapter):
    """Linear logits ``[sum a - sum b, -(sum a - sum b)]`` through per-modality encodings, NaN in
    the encoding of ``a`` for items with ``poison: True`` (``poison`` belongs to ``a``)."""

    modalities = ("a", "b")
    shapes = {"a": (2,), "b": (2,)}

    def context(self, items: Sequence[dict]) -> dict[str, Any]:
        return {"poison": torch.tensor([bool(item.get("poison", False)) for item in items])}

    def encode_modality(self, name: str, embedded: Tensor, *, batch: dict) -> Tensor:
        total = embedded.sum(1, keepdim=True)
        if name == "a":
            poison = self.tile(batch["poison"], embedded.shape[0])
            return torch.where(poison[:, None], torch.full_like(total, math.nan), total)
        return total

    def fuse(self, a: Tensor, b: Tensor) -> Tensor:
        f = a - b
        return torch.cat([f, -f], dim=1)

    def logits(self, a: Tensor, b: Tensor, *, batch: dict) -> Tensor:
        return self.fuse(self.encode_modality("a", a, batch=batch), self.encode_modality("b", b, batch=batch))

    def feature_groups(self, batch: dict) -> tuple[Tensor, ...]:
        n = batch["n"]
        return torch.tensor([[0, 1]]).expand(n, 2), torch.tensor([[2, 3]]).expand(n, 2)


class PairwiseAdapter(ToyAdapter):
    """``f = g(a) + h(b) + KAPPA * phi(a[G_STAR]) * psi(b[H_STAR])`` (logit 1; logit 0 is
    ``-f``), ``phi = sum tanh``, ``psi = sum sin``. ``a`` ``(4,)`` in groups ``[0, 0, 1, 1]``,
    ``b`` ``(3,)`` in groups ``[2, 3, 3]``; ``G_STAR = 1`` (a[2:4]), ``H_STAR = 3`` (b[1:3])."""

    modalities = ("a", "b")
    shapes = {"a": (4,), "b": (3,)}
    baseline_values = {"a": 0.2, "b": -0.1}
    KAPPA = 1.7
    G_STAR, H_STAR = 1, 3
    A_SLICE, B_SLICE = slice(2, 4), slice(1, 3)

    def __init__(self) -> None:
        super().__init__()
        self.wa = _weights(30, 4)
        self.wb = _weights(31, 3)

    def term(self, a: Tensor, b: Tensor) -> Tensor:
        return self.KAPPA * torch.tanh(a[:, self.A_SLICE]).sum(1) * torch.sin(b[:, self.B_SLICE]).sum(1)

    def logits(self, a: Tensor, b: Tensor, *, batch: dict) -> Tensor:
        f = torch.tanh(a @ self.wa) + torch.cos(b) @ self.wb + self.term(a, b)
        return torch.stack([-f, f], dim=1)

    def feature_groups(self, batch: dict) -> tuple[Tensor, ...]:
        n = batch["n"]
        return torch.tensor([[0, 0, 1, 1]]).expand(n, 4), torch.tensor([[2, 3, 3]]).expand(n, 3)

    def expected_dividend(self, a: Tensor, b: Tensor) -> Tensor:
        """The pairwise ablation dividend of (G_STAR, H_STAR) per item: the term's double
        difference between input and baseline."""
        a0 = torch.full_like(a, self.baseline_values["a"])
        b0 = torch.full_like(b, self.baseline_values["b"])
        return self.term(a, b) - self.term(a0, b) - self.term(a, b0) + self.term(a0, b0)


class NonFiniteAdapter(ToyAdapter):
    """Linear logits, except: ``kind="nan"``/``"inf"``: items with ``poison: True`` get NaN/Inf
    logits; ``kind="grad"``: logit 1 adds ``sqrt(a_0^2)``, finite but with a NaN gradient where
    ``a_0 = 0``."""

    modalities = ("a", "b")
    shapes = {"a": (2,), "b": (2,)}

    def __init__(self, kind: str = "nan") -> None:
        super().__init__()
        assert kind in ("nan", "inf", "grad")
        self.kind = kind

    def context(self, items: Sequence[dict]) -> dict[str, Any]:
        return {"poison": torch.tensor([bool(item.get("poison", False)) for item in items])}

    def logits(self, a: Tensor, b: Tensor, *, batch: dict) -> Tensor:
        n = a.shape[0]
        f = a.sum(1) - b.sum(1)
        out = torch.stack([f, -f], dim=1)
        if self.kind == "grad":
            return out + torch.stack([torch.zeros_like(f), torch.sqrt(a[:, 0] ** 2)], dim=1)
        poison = self.tile(batch["poison"], n)
        bad = torch.full_like(out, math.nan if self.kind == "nan" else math.inf)
        return torch.where(poison[:, None], bad, out)

    def feature_groups(self, batch: dict) -> tuple[Tensor, ...]:
        n = batch["n"]
        return torch.tensor([[0, 1]]).expand(n, 2), torch.tensor([[2, 3]]).expand(n, 2)


@adapter_factory
def three_modality_adapter() -> BilinearAdapter:
    """A zero-argument factory (what a dotted path names) for :class:`BilinearAdapter` with
    the third modality ``c``."""
    return BilinearAdapter(third=True)


class FactoryFailsAdapter(PairwiseAdapter):
    """Its constructor raises, as a factory that cannot find its configuration would."""

    def __init__(self) -> None:
        raise RuntimeError("no config at /etc/toy.yaml (deliberate test failure)")


class LoadFailsAdapter(PairwiseAdapter):
    """Its ``load`` raises, as an adapter whose weights file is missing would."""

    def load(self, device: torch.device) -> None:
        raise FileNotFoundError("weights file toy.pt not found (deliberate test failure)")
