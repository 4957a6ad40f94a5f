"""Options of the model report: everything a report depends on besides the model and the items.
No torch, no Django: the web process checks options with it before handing a report to a worker.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any

__all__ = ["GROUP_PAIR_METHODS", "INTERACTION_TYPES", "SHARE_METHODS", "ReportOptions"]

#: M2Lens interaction types, in the order the classification tries them
#: (:func:`workers.engine.report.quantify.interaction_types`).
INTERACTION_TYPES: tuple[str, ...] = ("conflict", "dominance", "complementarity", "none")

#: ``shapley`` (exact Shapley values of the modalities, from the subsets the report evaluates
#: anyway) or a Captum method of :data:`workers.engine.attribution.METHODS`.
SHARE_METHODS: tuple[str, ...] = (
    "shapley",
    "integrated_gradients",
    "saliency",
    "input_x_gradient",
    "gradient_shap",
    "feature_ablation",
    "occlusion",
    "shapley_value_sampling",
    "kernel_shap",
    "lime",
)
#: Cross-modal matrix methods for the top interacting group pairs (``""``: skip them).
GROUP_PAIR_METHODS: tuple[str, ...] = ("second_order", "integrated_hessians", "perturbation")


@dataclass
class ReportOptions:
    """Everything a report depends on besides the model and the items.

    Attributes:
        seed: seeds permutations, noise, EMAP subsampling and the bootstrap.
        batch_size: items per ``encode``.
        max_rows: the most rows per ``head`` call.
        permutations: permutation rounds per modality.
        noise_levels: noise standard deviations in units of each modality's spread (the
            standard deviation of its embedded values over the dataset); the first must be 0.
        noise_samples: noise draws per item and level.
        corruption_levels: severities for ``adapter.corrupt`` (0 = none, 1 = the strongest).
        emap: whether to compute the EMAP gap; ``emap_pairing`` and ``emap_context`` as
            :func:`workers.engine.interactions.emap`'s ``pairing`` and ``context_modality``
            (``auto``: ``embedded`` with the adapter's ``batch_context`` modality when it
            declares one, else ``items``; an adapter with per-modality encodings is paired by
            its encodings whichever, with the same numbers); ``emap_max_items``: a seeded
            random subset of at most this many items.
        pid: whether to compute the partial information decomposition (redundancy, uniqueness,
            synergy in bits, :mod:`workers.engine.pid`) of the pair about the gold labels and
            about the model's answers; ``pid_clusters``: k-means clusters per modality (its
            embedded tensor made discrete); ``pid_resamples``: bootstrap resamples of its
            intervals (one convex program each); ``pid_max_items``: a seeded random subset of
            at most this many items.
        pair: the two modalities that EMAP, the PID and the group pairs use (needed with three
            or more).
        group_pairs: the cross-modal matrix method for the top interacting group pairs
            (``second_order``, ``integrated_hessians``, ``perturbation``; empty: skip).
        top_pairs: how many group pairs to keep.
        share_method: ``shapley`` (exact Shapley values of the modalities, from the subsets) or
            a Captum method of :data:`workers.engine.attribution.METHODS`.
        gain_threshold: a modality alone *gives* an answer when it is that modality's argmax and
            raises the answer's probability over the all-baselines output by at least this.
        strength_threshold: an item has a cross-modal interaction when its interaction
            strength ``|dividend| / (|effect_a| + |effect_b| + |dividend|)`` reaches this.
        n_resamples: bootstrap resamples of every interval.
        checkpoints: None (no learning section), ``["all"]`` or checkpoint names.
        bias_methods: attribution methods (of :data:`workers.engine.attribution.METHODS`) whose
            mass inside each item's evidence region the bias section reports (empty: none).
        leakage_folds: cross-validation folds of the leakage classifiers.
    """

    seed: int = 0
    batch_size: int = 64
    max_rows: int | None = 1024
    permutations: int = 3
    noise_levels: list[float] = field(default_factory=lambda: [round(0.1 * k, 1) for k in range(11)])
    noise_samples: int = 1
    corruption_levels: list[float] = field(default_factory=lambda: [0.0, 0.25, 0.5, 0.75, 1.0])
    emap: bool = True
    emap_pairing: str = "auto"
    emap_context: str | None = None
    emap_max_items: int = 400
    pid: bool = True
    pid_clusters: int = 8
    pid_resamples: int = 200
    pid_max_items: int = 2000
    pair: list[str] | None = None
    group_pairs: str = "second_order"
    top_pairs: int = 12
    share_method: str = "shapley"
    gain_threshold: float = 0.05
    strength_threshold: float = 0.2
    n_resamples: int = 1000
    checkpoints: list[str] | None = None
    bias_methods: list[str] = field(default_factory=lambda: ["integrated_gradients", "saliency"])
    leakage_folds: int = 5

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> ReportOptions:
        """Options from a JSON mapping; raises ``ValueError`` naming the bad option."""
        data = dict(data or {})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"options.{unknown[0]}: unknown option; known: {', '.join(sorted(known))}")
        options = cls(**data)
        options.check()
        return options

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def check(self) -> None:
        def bad(name: str, message: str) -> ValueError:
            return ValueError(f"options.{name}: {message}")

        for name in (
            "batch_size",
            "permutations",
            "noise_samples",
            "emap_max_items",
            "top_pairs",
            "n_resamples",
            "pid_resamples",
            "pid_max_items",
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise bad(name, f"must be a whole number >= 1, got {value!r}")
        if self.max_rows is not None and (not isinstance(self.max_rows, int) or self.max_rows < 1):
            raise bad("max_rows", f"must be a whole number >= 1 or null, got {self.max_rows!r}")
        for name in ("noise_levels", "corruption_levels"):
            levels = getattr(self, name)
            if (
                not isinstance(levels, list)
                or len(levels) < 2
                or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in levels)
            ):
                raise bad(name, f"must be a list of at least two numbers, got {levels!r}")
            if levels[0] != 0 or any(b <= a for a, b in zip(levels, levels[1:])):
                raise bad(name, f"must start at 0 and increase, got {levels!r}")
        if isinstance(self.pid_clusters, bool) or not isinstance(self.pid_clusters, int) or self.pid_clusters < 2:
            raise bad("pid_clusters", f"must be a whole number >= 2, got {self.pid_clusters!r}")
        for name in ("emap", "pid"):
            if not isinstance(getattr(self, name), bool):
                raise bad(name, f"must be true or false, got {getattr(self, name)!r}")
        if self.emap_pairing not in ("auto", "items", "embedded"):
            raise bad("emap_pairing", f"must be 'auto', 'items' or 'embedded', got {self.emap_pairing!r}")
        if self.group_pairs and self.group_pairs not in GROUP_PAIR_METHODS:
            raise bad(
                "group_pairs",
                f"must be second_order, integrated_hessians, perturbation or empty, got {self.group_pairs!r}",
            )
        if self.share_method not in SHARE_METHODS:
            raise bad("share_method", f"must be one of {', '.join(SHARE_METHODS)}, got {self.share_method!r}")
        for name in ("gain_threshold", "strength_threshold"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
                raise bad(name, f"must be a number in [0, 1], got {value!r}")
        if self.pair is not None and (
            not isinstance(self.pair, list) or len(self.pair) != 2 or self.pair[0] == self.pair[1]
        ):
            raise bad("pair", f"must name two different modalities, got {self.pair!r}")
        if not isinstance(self.bias_methods, list) or any(
            m not in SHARE_METHODS or m == "shapley" for m in self.bias_methods
        ):
            known = ", ".join(m for m in SHARE_METHODS if m != "shapley")
            raise bad("bias_methods", f"must be a list of attribution methods ({known}), got {self.bias_methods!r}")
        if isinstance(self.leakage_folds, bool) or not isinstance(self.leakage_folds, int) or self.leakage_folds < 2:
            raise bad("leakage_folds", f"must be a whole number >= 2, got {self.leakage_folds!r}")
        if self.checkpoints is not None and (
            not isinstance(self.checkpoints, list) or not all(isinstance(c, str) and c for c in self.checkpoints)
        ):
            raise bad("checkpoints", f"must be a list of checkpoint names (or ['all']), got {self.checkpoints!r}")
