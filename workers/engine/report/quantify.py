"""The model report of one model on one dataset: modality reliance, interaction types, robustness,
bias slices, the EMAP gap and the learning process (definitions: ``docs/MODEL_REPORT.md``).

The report runs in stages (:data:`STAGES`). Each stage reads the items in batches of
``options.batch_size`` through ``encode``/``embed`` and sends its forward passes through
``adapter.head`` in calls of at most ``options.max_rows`` rows. A stage's output is a JSON-able
dict kept in ``state``; :func:`model_report_run` skips stages already in ``state``, so a caller
that saves the state after each stage (``on_stage``) can resume a report whose process died.
:func:`model_report_assemble` turns the state into the report (also JSON-able).

Cost per item (forward passes), for ``M`` modalities:

* ``subsets``: ``2^M`` (every modality at its input or its baseline);
* ``permutation``: ``M * permutations`` (plus as many ``encode`` calls);
* ``noise``: ``(len(noise_levels) - 1) * (M + 1) * noise_samples``;
* ``corruption``: ``(len(corruption_levels) - 1) * M`` when the adapter has ``corrupt``;
* ``emap``: ``N`` (EMAP pairs every item with every other: ``N^2`` in all, ``N`` at most
  ``emap_max_items``);
* ``pid``: one ``encode``/``embed`` (no ``head`` call: the answers come from ``subsets``), then
  k-means per modality and ``2 * (pid_resamples + 1)`` small convex programs in all;
* ``group_pairs``: one interaction matrix (``second_order``: 1 forward, 1 backward and
  ``min(G_A, G_B)`` Hessian-vector products);
* ``bias`` (items with a ``group`` or an ``evidence`` region only): one forward pass, plus each
  of ``bias_methods`` on the items with an evidence region;
* ``learning``: per checkpoint ``M + 1`` on the dataset and on the training items.

An adapter with per-modality encodings (``encode_modality`` + ``fuse``,
``workers/engine/encodings.py``) has every pass above but ``group_pairs``' run through ``fuse``
alone, on encodings computed once per item and modality (twice for the subsets and each
checkpoint: input and baseline; again per noise draw or corruption of that modality). Same
numbers, fewer encoder passes (``benchmarks/report.py`` counts them).

No Django here.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from workers.engine.adapter import ModelAdapter, RawItem, error_text
from workers.engine.attribution import (
    NonFiniteError,
    attribute,
    item_lines_places,
    nonfinite_naming,
    prepare_batch,
)
from workers.engine.encodings import encode_items, encode_modalities, has_modality_encodings
from workers.engine.interactions import emap as emap_compute
from workers.engine.pid import discretise, pid_bootstrap, sketch
from workers.engine.report import bias as bias_metrics
from workers.engine.report import probes, stats
from workers.engine.report.options import INTERACTION_TYPES, ReportOptions
from workers.engine.report.slices import SliceSet, slice_fields_for

__all__ = [
    "INTERACTION_TYPES",
    "REPORT_VERSION",
    "STAGES",
    "ReportOptions",
    "interaction_types",
    "model_report_assemble",
    "model_report_run",
    "report_slice_fields",
]

REPORT_VERSION = 1
STAGES: tuple[str, ...] = (
    "subsets",
    "permutation",
    "noise",
    "corruption",
    "emap",
    "pid",
    "group_pairs",
    "bias",
    "learning",
)

#: The classification, as the report prints it beside the thresholds.
INTERACTION_RULES = (
    "With y the model's answer: a modality alone gives y when, with the other modalities at their baselines, "
    "y is its answer and y's probability rises by at least the gain threshold over all modalities at their "
    "baselines; it points to its answer when that answer's probability rises by at least the gain threshold. "
    "First match wins: conflict = interaction strength >= the strength threshold and two modalities alone point "
    "to different answers; dominance = some modality alone gives y (the dominant one gives it with the highest "
    "probability); complementarity = interaction strength >= the strength threshold; none = the rest."
)

Progress = Callable[[str, int, int], None]


def report_slice_fields(modalities: Sequence[str]) -> dict[str, str]:
    """The item fields slice expressions may use in a report of a model with ``modalities``."""
    return slice_fields_for(modalities=modalities)


# --------------------------------------------------------------------------------------------
# Interaction types (M2Lens, prediction-based)
# --------------------------------------------------------------------------------------------


def interaction_types(
    *,
    full: np.ndarray,
    only: np.ndarray,
    none: np.ndarray,
    strength: np.ndarray,
    modalities: Sequence[str],
    gain_threshold: float,
    strength_threshold: float,
) -> tuple[list[str], list[str | None]]:
    """The interaction type of each item, after M2Lens (Wang et al. 2021), from predictions.

    Args:
        full: ``(N, C)`` probabilities of the model on the inputs.
        only: ``(M, N, C)`` probabilities with only modality ``m`` at its input (the others at
            their baselines).
        none: ``(N, C)`` probabilities with every modality at its baseline.
        strength: ``(N,)`` interaction strength of the answer (the largest over the modality
            pairs).

    With ``y`` the model's answer, modality ``m`` alone *gives* ``y`` when ``argmax only[m] =
    y`` and ``only[m][y] - none[y] >= gain_threshold``; it *points to* ``argmax only[m]`` when
    that class gains at least ``gain_threshold`` over ``none`` (else it points nowhere). Then,
    first match wins:

    1. **conflict**: interaction strength >= ``strength_threshold`` and two modalities alone
       point to different answers (the answer comes out of their interaction);
    2. **dominance**: some modality alone gives ``y``; the dominant one is the modality that
       gives it with the highest probability;
    3. **complementarity**: interaction strength >= ``strength_threshold`` (neither alone gives
       ``y``; together they do, through an interaction);
    4. **none**: the rest (an additive model, say, whose modalities alone give no answer).

    So a model without cross-modal interactions (strength 0) never shows conflict or
    complementarity, and a modality that is ignored points nowhere. Returns the types and the
    dominant modality (None unless dominance).
    """
    answer = full.argmax(axis=1)
    n = full.shape[0]
    rows = np.arange(n)
    types: list[str] = []
    dominant: list[str | None] = []
    alone_answer = only.argmax(axis=2)  # (M, N)
    gain_answer = only[:, rows, answer] - none[rows, answer][None, :]  # (M, N)
    gain_alone = np.take_along_axis(only - none[None], alone_answer[:, :, None], axis=2)[:, :, 0]  # (M, N)
    for i in range(n):
        points = {int(alone_answer[m, i]) for m in range(len(modalities)) if gain_alone[m, i] >= gain_threshold}
        interacts = strength[i] >= strength_threshold
        gives = [
            m for m in range(len(modalities)) if alone_answer[m, i] == answer[i] and gain_answer[m, i] >= gain_threshold
        ]
        if interacts and len(points) >= 2:
            types.append("conflict")
            dominant.append(None)
        elif gives:
            best = max(gives, key=lambda m: only[m, i, answer[i]])
            types.append("dominance")
            dominant.append(str(modalities[best]))
        else:
            types.append("complementarity" if interacts else "none")
            dominant.append(None)
    return types, dominant


# --------------------------------------------------------------------------------------------
# Stages
# --------------------------------------------------------------------------------------------


@dataclass
class _Context:
    adapter: ModelAdapter
    items: list[RawItem]
    options: ReportOptions
    modalities: tuple[str, ...]
    labels: tuple[str, ...]
    gold: np.ndarray  # (N,) class index, -1 without a gold label
    progress: Progress
    train_items: list[RawItem] | None
    current: list[RawItem] | None = None  # the batch a stage works on, to name items in errors

    @property
    def encodings(self) -> bool:
        """Whether the adapter exposes per-modality encodings (``workers/engine/encodings.py``)."""
        return has_modality_encodings(self.adapter)

    def batches(self) -> Iterator[tuple[int, list[RawItem]]]:
        size = self.options.batch_size
        for start in range(0, len(self.items), size):
            self.current = list(self.items[start : start + size])
            yield start, self.current
        self.current = None

    def named(self, exc: NonFiniteError) -> NonFiniteError:
        """``exc`` naming the items of the current batch by id instead of by position."""
        return exc.naming(items=self.current) if self.current is not None else exc

    def pair(self) -> tuple[str, str] | None:
        if self.options.pair:
            return str(self.options.pair[0]), str(self.options.pair[1])
        return (self.modalities[0], self.modalities[1]) if len(self.modalities) == 2 else None


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(shifted)
    return e / e.sum(axis=-1, keepdims=True)


def _shapley_weights(n: int) -> list[float]:
    """Weight of a coalition of size ``s`` (not containing the player): ``s! (n-s-1)! / n!``."""
    return [math.factorial(s) * math.factorial(n - s - 1) / math.factorial(n) for s in range(n)]


def _stage_subsets(ctx: _Context) -> dict[str, Any]:
    """Every modality subset: answers without / with only each modality, Shapley shares,
    pairwise dividends, interaction types, and each modality's spread."""
    m_count = len(ctx.modalities)
    subsets = probes.all_subsets(m_count)
    full_index = len(subsets) - 1
    weights = _shapley_weights(m_count)
    pairs = probes.pairs_of(ctx.modalities)
    columns: dict[str, list] = {"prediction": [], "confidence": []}
    full_probs, none_probs, only_probs, strengths = [], [], [[] for _ in range(m_count)], []
    moments = np.zeros((m_count, 3))  # sum, sum of squares, count
    n = len(ctx.items)
    for start, chunk in ctx.batches():
        p = prepare_batch(ctx.adapter, ctx.adapter.encode(chunk))
        for m, x in enumerate(p.inputs):
            values = x.detach().to(torch.float64)
            moments[m] += [float(values.sum()), float((values**2).sum()), values.numel()]
        logits = probes.subset_logits(p, subsets, max_rows=ctx.options.max_rows).numpy()  # (K, B, C)
        probs = _softmax(logits)
        answer = logits[full_index].argmax(axis=1)
        rows = np.arange(len(chunk))
        value = logits[:, rows, answer]  # (K, B): the answer's logit in every subset
        full_probs.append(probs[full_index])
        none_probs.append(probs[0])
        columns["prediction"] += answer.tolist()
        columns["confidence"] += probs[full_index, rows, answer].tolist()
        phi = np.zeros((m_count, len(chunk)))
        for m in range(m_count):
            bit = 1 << m
            only_probs[m].append(probs[bit])
            without = full_index ^ bit
            columns.setdefault(f"answer_without:{ctx.modalities[m]}", []).extend(logits[without].argmax(1).tolist())
            columns.setdefault(f"answer_only:{ctx.modalities[m]}", []).extend(logits[bit].argmax(1).tolist())
            for k in range(len(subsets)):
                if not k & bit:
                    phi[m] += weights[bin(k).count("1")] * (value[k | bit] - value[k])
        if ctx.options.share_method == "shapley":
            denominator = np.abs(phi).sum(axis=0)
            share = np.where(denominator > 0, phi / np.where(denominator > 0, denominator, 1), 0.0)
        else:
            results = attribute(
                ctx.adapter, p.batch, method=ctx.options.share_method, targets=torch.as_tensor(answer), prepared=p
            )
            share = np.array([[r.modality_share[mod] for r in results] for mod in ctx.modalities])
        for m in range(m_count):
            columns.setdefault(f"share:{ctx.modalities[m]}", []).extend(share[m].tolist())
            columns.setdefault(f"shapley:{ctx.modalities[m]}", []).extend(phi[m].tolist())
        batch_strength = np.zeros(len(chunk))
        for a, b in pairs:
            both = full_index
            a_in = full_index ^ (1 << b)
            b_in = full_index ^ (1 << a)
            neither = full_index ^ (1 << a) ^ (1 << b)
            dividend = value[both] - value[a_in] - value[b_in] + value[neither]
            effect_a, effect_b = value[a_in] - value[neither], value[b_in] - value[neither]
            total = np.abs(effect_a) + np.abs(effect_b) + np.abs(dividend)
            strength = np.where(total > 0, np.abs(dividend) / np.where(total > 0, total, 1), 0.0)
            key = f"{ctx.modalities[a]}+{ctx.modalities[b]}"
            columns.setdefault(f"dividend:{key}", []).extend(dividend.tolist())
            columns.setdefault(f"effect_a:{key}", []).extend(effect_a.tolist())
            columns.setdefault(f"effect_b:{key}", []).extend(effect_b.tolist())
            columns.setdefault(f"strength:{key}", []).extend(strength.tolist())
            batch_strength = np.maximum(batch_strength, strength)
        strengths.append(batch_strength)
        ctx.progress("subsets", min(n, start + len(chunk)), n)
    full = np.concatenate(full_probs)
    only = np.stack([np.concatenate(parts) for parts in only_probs])
    types, dominant = interaction_types(
        full=full,
        only=only,
        none=np.concatenate(none_probs),
        strength=np.concatenate(strengths),
        modalities=ctx.modalities,
        gain_threshold=ctx.options.gain_threshold,
        strength_threshold=ctx.options.strength_threshold,
    )
    columns["interaction"] = types
    columns["dominant"] = dominant
    mean = moments[:, 0] / np.maximum(moments[:, 2], 1)
    variance = np.maximum(moments[:, 1] / np.maximum(moments[:, 2], 1) - mean**2, 0.0)
    return {"columns": columns, "spread": {mod: float(np.sqrt(v)) for mod, v in zip(ctx.modalities, variance)}}


def _stage_permutation(ctx: _Context, state: dict[str, Any]) -> dict[str, Any]:
    """Each modality taken from another item, ``permutations`` times: per item, the share of
    rounds in which the answer stays the model's, and in which it is right."""
    n = len(ctx.items)
    if n < 2:
        return {"skipped": "permutation needs at least two items"}
    predicted = np.asarray(state["subsets"]["columns"]["prediction"])
    rng = np.random.default_rng([ctx.options.seed, 1])
    out: dict[str, list[float]] = {}
    total = len(ctx.modalities) * ctx.options.permutations * n
    done = 0
    # With per-modality encodings every item is encoded once and each pairing is a fusion.
    encoded = encode_items(ctx.adapter, ctx.items, batch_size=ctx.options.batch_size) if ctx.encodings else None
    for modality in ctx.modalities:
        agree = np.zeros(n)
        right = np.zeros(n)
        for _ in range(ctx.options.permutations):
            order = probes.derangement(n, rng)
            logits = probes.permuted_logits(
                ctx.adapter,
                ctx.items,
                modality=modality,
                order=order.tolist(),
                batch_size=ctx.options.batch_size,
                max_rows=ctx.options.max_rows,
                encoded=encoded,
            )
            answers = logits.numpy().argmax(axis=1)
            agree += answers == predicted
            right += answers == ctx.gold
            done += n
            ctx.progress("permutation", done, total)
        out[f"agree_perm:{modality}"] = (agree / ctx.options.permutations).tolist()
        out[f"correct_perm:{modality}"] = (right / ctx.options.permutations).tolist()
    return {"columns": out}


def _stage_noise(ctx: _Context, state: dict[str, Any]) -> dict[str, Any]:
    """Accuracy and agreement against Gaussian noise in embedding space, per modality and on
    all modalities at once; noise at level ``l`` has standard deviation ``l * spread_m``."""
    spread = state["subsets"]["spread"]
    predicted = np.asarray(state["subsets"]["columns"]["prediction"])
    levels = [float(v) for v in ctx.options.noise_levels]
    targets = [*ctx.modalities, "all"]
    n = len(ctx.items)
    labelled = ctx.gold >= 0  # accuracies count the items with a gold label, agreements every item
    clean = float(np.mean(predicted[labelled] == ctx.gold[labelled])) if labelled.any() else None
    correct: dict[str, list] = {t: [clean] for t in targets}
    agree = {t: [1.0] for t in targets}
    total = (len(levels) - 1) * len(targets) * n
    done = 0
    hits = {(li, t): 0.0 for li in range(1, len(levels)) for t in targets}
    agreements = dict(hits)
    draws = dict(hits)
    labelled_draws = dict(hits)
    for start, chunk in ctx.batches():
        p = prepare_batch(ctx.adapter, ctx.adapter.encode(chunk))
        clean = encode_modalities(ctx.adapter, p.inputs, batch=p.batch) if ctx.encodings else None
        gold = ctx.gold[start : start + len(chunk)]
        kept = predicted[start : start + len(chunk)]
        for level_index, level in enumerate(levels[1:], start=1):
            for target_index, target in enumerate(targets):
                sigma = [level * spread[m] if target in (m, "all") else 0.0 for m in ctx.modalities]
                seed = int(
                    np.random.SeedSequence([ctx.options.seed, 2, level_index, target_index, start]).generate_state(1)[0]
                )
                logits = probes.noisy_logits(
                    p,
                    sigma=sigma,
                    n_samples=ctx.options.noise_samples,
                    seed=seed,
                    max_rows=ctx.options.max_rows,
                    clean=clean,
                ).numpy()
                answers = logits.argmax(axis=2)  # (S, B)
                hits[level_index, target] += float((answers == gold[None, :]).sum())  # gold -1 never matches
                agreements[level_index, target] += float((answers == kept[None, :]).sum())
                draws[level_index, target] += answers.size
                labelled_draws[level_index, target] += answers.shape[0] * float((gold >= 0).sum())
                done += len(chunk)
                ctx.progress("noise", done, total)
    for level_index in range(1, len(levels)):
        for target in targets:
            key = (level_index, target)
            correct[target].append(hits[key] / labelled_draws[key] if labelled.any() else None)
            agree[target].append(agreements[key] / draws[key])
    return {
        "levels": levels,
        "sigma": {m: [level * spread[m] for level in levels] for m in ctx.modalities},
        "accuracy": correct,
        "agreement": agree,
    }


def _stage_corruption(ctx: _Context, state: dict[str, Any]) -> dict[str, Any]:
    """The adapter's own corruptions (``adapter.corrupt``), per modality and severity."""
    if not callable(getattr(ctx.adapter, "corrupt", None)):
        return {"skipped": "the adapter has no corrupt() hook"}
    predicted = np.asarray(state["subsets"]["columns"]["prediction"])
    levels = [float(v) for v in ctx.options.corruption_levels]
    labelled = ctx.gold >= 0
    clean_accuracy = float(np.mean(predicted[labelled] == ctx.gold[labelled])) if labelled.any() else None
    n = len(ctx.items)
    total = (len(levels) - 1) * len(ctx.modalities) * n
    done = 0
    hits = {(m, li): 0.0 for m in ctx.modalities for li in range(1, len(levels))}
    agreements = dict(hits)
    errors: dict[str, str] = {}
    # Each batch is encoded once for every modality and level (and, with per-modality
    # encodings, a modality the corruption leaves alone keeps its clean encoding).
    for start, chunk in ctx.batches():
        batch = ctx.adapter.encode(chunk)
        clean = None
        if ctx.encodings:
            with torch.no_grad():
                inputs = tuple(x.detach() for x in ctx.adapter.embed(batch))
            clean = (inputs, encode_modalities(ctx.adapter, inputs, batch=batch))
        for modality in ctx.modalities:
            if modality in errors:
                continue
            try:
                for level_index, level in enumerate(levels[1:], start=1):
                    logits = probes.corrupted_logits(
                        ctx.adapter,
                        batch,
                        modality=modality,
                        level=level,
                        seed=ctx.options.seed * 1009 + level_index * 31 + start,
                        max_rows=ctx.options.max_rows,
                        clean=clean,
                    ).numpy()
                    answers = logits.argmax(axis=1)
                    hits[modality, level_index] += float((answers == ctx.gold[start : start + len(chunk)]).sum())
                    agreements[modality, level_index] += float((answers == predicted[start : start + len(chunk)]).sum())
                    done += len(chunk)
                    ctx.progress("corruption", done, total)
            except NonFiniteError as exc:
                raise ctx.named(exc) from exc
            except (NotImplementedError, ValueError, KeyError) as exc:  # no corruption for this modality
                errors[modality] = error_text(exc)
    accuracy: dict[str, list] = {}
    agreement: dict[str, list] = {}
    for modality in ctx.modalities:
        if modality in errors:
            continue
        steps = range(1, len(levels))
        accuracy[modality] = [clean_accuracy] + [
            hits[modality, li] / int(labelled.sum()) if clean_accuracy is not None else None for li in steps
        ]
        agreement[modality] = [1.0] + [agreements[modality, li] / n for li in steps]
    return {"levels": levels, "accuracy": accuracy, "agreement": agreement, "errors": errors}


def _stage_emap(ctx: _Context, state: dict[str, Any]) -> dict[str, Any]:
    """The EMAP gap over (a seeded subset of at most ``emap_max_items``) items, with an interval."""
    if not ctx.options.emap:
        return {"skipped": "not requested"}
    pair = ctx.pair()
    if pair is None:
        return {"skipped": "name the two modalities to pair (options.pair)"}
    labelled = [i for i in range(len(ctx.items)) if ctx.gold[i] >= 0]
    if len(labelled) < 2:
        return {"skipped": "EMAP needs at least two items with gold labels"}
    rng = np.random.default_rng([ctx.options.seed, 3])
    chosen = sorted(rng.choice(labelled, size=min(len(labelled), ctx.options.emap_max_items), replace=False).tolist())
    ctx.progress("emap", 0, len(chosen))
    pairing, context = ctx.options.emap_pairing, ctx.options.emap_context
    if pairing == "auto":
        declared = getattr(ctx.adapter, "batch_context", None)
        pairing, context = ("embedded", declared) if declared in pair else ("items", None)
    result = emap_compute(
        ctx.adapter,
        [ctx.items[i] for i in chosen],
        modalities=pair,
        labels=[int(ctx.gold[i]) for i in chosen],
        batch_size=ctx.options.batch_size,
        pairing=pairing,
        context_modality=context,
        max_rows=ctx.options.max_rows or 1024,
        keep_pair_logits=True,
    )
    interval = stats.emap_gap_interval(
        result.pair_logits, result.gold, seed=ctx.options.seed, n_resamples=ctx.options.n_resamples
    )
    ctx.progress("emap", len(chosen), len(chosen))
    return {**result.to_json(), "n_items_used": len(chosen), "pairing": pairing, "gap": interval}


#: Columns kept per modality before PCA and k-means (wider embeddings are count-sketched).
PID_SKETCH_WIDTH = 4096


def _padded(chunks: Sequence[np.ndarray]) -> np.ndarray:
    """Rows of every batch, zero-padded to the widest (token sequences are padded per batch)."""
    width = max(chunk.shape[1] for chunk in chunks)
    return np.concatenate([np.pad(chunk, ((0, 0), (0, width - chunk.shape[1]))) for chunk in chunks])


def _stage_pid(ctx: _Context, state: dict[str, Any]) -> dict[str, Any]:
    """Partial information decomposition of the pair about the gold labels (the dataset) and
    about the model's answers (the model), on each modality's embedded tensor made discrete."""
    if not ctx.options.pid:
        return {"skipped": "not requested"}
    pair = ctx.pair()
    if pair is None:
        return {"skipped": "name the two modalities to pair (options.pair)"}
    n = len(ctx.items)
    if n < 2:
        return {"skipped": "the PID needs at least two items"}
    rng = np.random.default_rng([ctx.options.seed, 5])
    chosen = np.sort(rng.choice(n, size=min(n, ctx.options.pid_max_items), replace=False))
    wanted = set(chosen.tolist())
    index = [ctx.modalities.index(m) for m in pair]
    parts: list[list[np.ndarray]] = [[], []]
    for start, chunk in ctx.batches():
        rows = [k for k in range(len(chunk)) if start + k in wanted]
        if not rows:
            continue
        p = prepare_batch(ctx.adapter, ctx.adapter.encode([chunk[k] for k in rows]))
        for slot, m in enumerate(index):
            values = p.inputs[m].detach().to(torch.float32).reshape(len(rows), -1).cpu().numpy()
            parts[slot].append(sketch(values, width=PID_SKETCH_WIDTH, seed=ctx.options.seed))
        ctx.progress("pid", min(n, start + len(chunk)), n)
    codes = [discretise(_padded(chunks), k=ctx.options.pid_clusters, seed=ctx.options.seed) for chunks in parts]
    predicted = np.asarray(state["subsets"]["columns"]["prediction"])[chosen]
    gold = ctx.gold[chosen]
    labelled = gold >= 0
    resamples, seed = ctx.options.pid_resamples, ctx.options.seed
    model = pid_bootstrap(codes[0], codes[1], predicted, n_resamples=resamples, seed=seed)
    dataset = (
        pid_bootstrap(codes[0][labelled], codes[1][labelled], gold[labelled], n_resamples=resamples, seed=seed)
        if labelled.sum() >= 2
        else {"skipped": "the dataset's PID needs at least two items with gold labels"}
    )
    return {
        "modalities": list(pair),
        "n_items_used": len(chosen),
        "clusters": {m: int(c.max()) + 1 for m, c in zip(pair, codes)},
        "cluster_sizes": {m: np.bincount(c).tolist() for m, c in zip(pair, codes)},
        "n_resamples": resamples,
        "dataset": dataset,
        "model": model,
    }


def _stage_group_pairs(ctx: _Context, state: dict[str, Any]) -> dict[str, Any]:
    """The cross-modal group pairs that interact most, averaged over the items."""
    method = ctx.options.group_pairs
    if not method:
        return {"skipped": "not requested"}
    pair = ctx.pair()
    if pair is None:
        return {"skipped": "name the two modalities to pair (options.pair)"}
    predicted = np.asarray(state["subsets"]["columns"]["prediction"])
    totals: dict[tuple[str, str], list[float]] = {}
    n = len(ctx.items)
    try:
        for start, chunk in ctx.batches():
            batch = ctx.adapter.encode(chunk)
            p = prepare_batch(ctx.adapter, batch)
            probes.group_pair_scores(
                ctx.adapter,
                p,
                targets=torch.as_tensor(predicted[start : start + len(chunk)]),
                pair=pair,
                method=method,
                described=ctx.adapter.describe_groups(batch),
                totals=totals,
                max_rows=ctx.options.max_rows,
            )
            ctx.progress("group_pairs", min(n, start + len(chunk)), n)
    except Exception as exc:  # a model without second derivatives, say: the other sections stand
        shown = ctx.named(exc) if isinstance(exc, NonFiniteError) else exc
        return {"method": method, "modalities": list(pair), "error": error_text(shown), "top": []}
    ranked = sorted(totals.items(), key=lambda kv: (-kv[1][0] / kv[1][2], kv[0]))
    top = [
        {"a": a, "b": b, "mean_abs": s_abs / count, "mean": s / count, "n": int(count)}
        for (a, b), (s_abs, s, count) in ranked[: ctx.options.top_pairs]
    ]
    return {"method": method, "modalities": list(pair), "top": top}


def _item_groups(items: Sequence[RawItem]) -> list[str | None]:
    return [None if item.get("group") in (None, "") else str(item["group"]) for item in items]


def _stage_bias(ctx: _Context, state: dict[str, Any]) -> dict[str, Any]:
    """The model's softmax outputs, leakage, the reference co-occurrences for bias amplification
    and, per attribution method, the mass inside and the pointing game on each evidence region
    (docs/MODEL_REPORT.md, "Social bias")."""
    groups = _item_groups(ctx.items)
    has_evidence = [isinstance(item.get("evidence"), Mapping) and bool(item["evidence"]) for item in ctx.items]
    if not any(g is not None for g in groups) and not any(has_evidence):
        return {"skipped": "no item carries a group or an evidence region"}
    predicted = np.asarray(state["subsets"]["columns"]["prediction"])
    full = tuple([True] * len(ctx.modalities))
    probs: list[list[float]] = []
    n = len(ctx.items)
    methods = list(ctx.options.bias_methods) if any(has_evidence) else []
    mass: dict[str, list] = {m: [None] * n for m in methods}
    pointing: dict[str, list] = {m: [None] * n for m in methods}
    unmatched: list[dict[str, Any]] = []
    for start, chunk in ctx.batches():
        batch = ctx.adapter.encode(chunk)
        p = prepare_batch(ctx.adapter, batch)
        logits = probes.subset_logits(p, [full], max_rows=ctx.options.max_rows).numpy()[0]
        probs += _softmax(logits).tolist()
        rows = [k for k in range(len(chunk)) if has_evidence[start + k]]
        if rows and methods:
            described = ctx.adapter.describe_groups(batch)
            targets = torch.as_tensor(predicted[start : start + len(chunk)])
            for method in methods:
                results = attribute(ctx.adapter, batch, method=method, targets=targets, prepared=p)
                for k in rows:
                    masses, hits = _evidence_scores(ctx, chunk[k], results[k], described[k], unmatched, method)
                    mass[method][start + k], pointing[method][start + k] = masses, hits
        ctx.progress("bias", min(n, start + len(chunk)), n)
    out: dict[str, Any] = {
        "probs": probs,
        "methods": methods,
        "mass": mass,
        "pointing": pointing,
        "unmatched": unmatched,
    }
    labelled = [i for i in range(n) if groups[i] is not None and ctx.gold[i] >= 0]
    if len({groups[i] for i in labelled}) >= 2:
        group_of = [groups[i] for i in labelled]
        folds = min(ctx.options.leakage_folds, min(group_of.count(g) for g in set(group_of)))
        if folds >= 2:
            one_hot = np.eye(len(ctx.labels))[ctx.gold[labelled]]
            model_leak = bias_metrics.leakage(np.asarray(probs)[labelled], group_of, folds=folds, seed=ctx.options.seed)
            data_leak = bias_metrics.leakage(one_hot, group_of, folds=folds, seed=ctx.options.seed)
            out["leakage"] = {"items": labelled, "folds": folds, "model": model_leak, "data": data_leak}
        else:
            out["leakage"] = {"skipped": "a group has fewer than two labelled items"}
    else:
        out["leakage"] = {"skipped": "leakage needs labelled items of at least two groups"}
    reference, source = ctx.train_items, "train_dataset"
    if reference is None and callable(getattr(ctx.adapter, "training_items", None)):
        reference, source = list(ctx.adapter.training_items()), "adapter.training_items()"
    usable = [it for it in reference or [] if it.get("group") not in (None, "") and it.get("label") is not None]
    if usable:
        out["reference"] = {
            "source": source,
            "labels": [str(it["label"]) for it in usable],
            "groups": [str(it["group"]) for it in usable],
        }
    else:
        out["reference"] = {
            "source": "dataset gold labels",
            "note": "no training items with a group: amplification is measured against this dataset's own labels",
            "labels": [ctx.labels[ctx.gold[i]] for i in labelled],
            "groups": [groups[i] for i in labelled],
        }
    return out


def _evidence_scores(
    ctx: _Context,
    item: RawItem,
    result: Any,
    described: Sequence[Sequence[Any]],
    unmatched: list[dict[str, Any]],
    method: str,
) -> tuple[float | None, bool | None]:
    """Mass inside and pointing hit of one item's attribution over the groups of the modalities
    its evidence names (all those groups together)."""
    scores, inside = [], []
    for m, modality in enumerate(ctx.modalities):
        region = item["evidence"].get(modality)
        if not region:
            continue
        ids = np.asarray(result.group_ids[modality])
        names_by_id = probes.group_names(described[m])
        mask, missing = bias_metrics.evidence_mask(region, [names_by_id.get(int(g)) for g in ids])
        if missing and method == ctx.options.bias_methods[0] and len(unmatched) < 20:
            unmatched.append({"id": str(item.get("id")), "modality": modality, "entries": missing[:10]})
        scores.append(np.asarray(result.group_scores[modality], dtype=np.float64))
        inside.append(mask)
    if not scores:
        return None, None
    values, region = np.concatenate(scores), np.concatenate(inside)
    return bias_metrics.mass_inside(values, region), bias_metrics.pointing_hit(values, region)


def _head_losses(
    adapter: ModelAdapter, items: Sequence[RawItem], gold: np.ndarray, modalities: Sequence[str], options: ReportOptions
) -> dict[str, Any]:
    """Mean cross-entropy against ``gold`` of the full model and of each modality alone (the
    others at their baselines), and the full model's accuracy. Cost: ``M + 1`` forward passes
    per item."""
    m_count = len(modalities)
    subsets = [tuple([True] * m_count)] + [tuple(k == m for k in range(m_count)) for m in range(m_count)]
    heads = ["full", *modalities]
    sums = np.zeros(len(heads))
    right = 0
    count = 0
    for start in range(0, len(items), options.batch_size):
        chunk = list(items[start : start + options.batch_size])
        g = gold[start : start + len(chunk)]
        with nonfinite_naming(items=chunk):
            p = prepare_batch(adapter, adapter.encode(chunk))
            logits = probes.subset_logits(p, subsets, max_rows=options.max_rows)  # (1 + M, B, C)
        log_probs = torch.log_softmax(logits, dim=-1).numpy()
        sums += -log_probs[:, np.arange(len(chunk)), g].sum(axis=1)
        right += int((logits[0].numpy().argmax(axis=1) == g).sum())
        count += len(chunk)
    return {"losses": {head: float(s / count) for head, s in zip(heads, sums)}, "accuracy": right / count, "n": count}


def _checkpoint_list(adapter: ModelAdapter) -> list[dict[str, Any]]:
    listed = adapter.checkpoints()
    out = []
    for entry in listed:
        if isinstance(entry, str):
            out.append({"name": entry, "step": None})
        elif isinstance(entry, Mapping):
            out.append({"name": str(entry["name"]), "step": entry.get("step")})
        else:
            out.append({"name": str(entry.name), "step": getattr(entry, "step", None)})
    return out


def _stage_learning(ctx: _Context, state: dict[str, Any]) -> dict[str, Any]:
    """Training and validation loss per checkpoint, of the full model and of each modality
    alone; OGR and Gradient-Blending weights between checkpoints."""
    wanted = ctx.options.checkpoints
    if wanted is None:
        return {"skipped": "no checkpoints requested"}
    if not callable(getattr(ctx.adapter, "checkpoints", None)) or not callable(
        getattr(ctx.adapter, "load_checkpoint", None)
    ):
        return {"skipped": "the adapter does not list checkpoints (checkpoints() and load_checkpoint())"}
    listed = _checkpoint_list(ctx.adapter)
    names = [c["name"] for c in listed]
    failed: list[dict[str, str]] = []
    if wanted == ["all"]:
        chosen = listed
    else:
        chosen = [c for c in listed if c["name"] in wanted]
        failed += [
            {"name": name, "error": f"no such checkpoint; the adapter lists {', '.join(names) or 'none'}"}
            for name in wanted
            if name not in names
        ]
    val_index = [i for i in range(len(ctx.items)) if ctx.gold[i] >= 0]
    val_items = [ctx.items[i] for i in val_index]
    val_gold = ctx.gold[val_index]
    train_items = ctx.train_items
    if train_items is None and callable(getattr(ctx.adapter, "training_items", None)):
        train_items = list(ctx.adapter.training_items())
    label_index = {label: k for k, label in enumerate(ctx.labels)}
    train_gold = None
    if train_items:
        train_items = [it for it in train_items if str(it.get("label")) in label_index]
        train_gold = np.array([label_index[str(it["label"])] for it in train_items], dtype=np.int64)
    if not val_items:
        return {"skipped": "the learning curves need gold labels"}
    rows: list[dict[str, Any]] = []
    for k, checkpoint in enumerate(chosen):
        ctx.progress("learning", k, len(chosen))
        try:
            loaded = ctx.adapter.load_checkpoint(checkpoint["name"])
            val = _head_losses(loaded, val_items, val_gold, ctx.modalities, ctx.options)
            train = _head_losses(loaded, train_items, train_gold, ctx.modalities, ctx.options) if train_items else None
        except Exception as exc:  # one broken checkpoint is reported; the others still count
            failed.append({"name": checkpoint["name"], "error": error_text(exc)})
            continue
        rows.append(
            {
                "name": checkpoint["name"],
                "step": checkpoint["step"],
                "losses": {"val": val["losses"], **({"train": train["losses"]} if train else {})},
                "accuracy": {"val": val["accuracy"], **({"train": train["accuracy"]} if train else {})},
                "n": {"val": val["n"], **({"train": train["n"]} if train else {})},
            }
        )
    ctx.progress("learning", len(chosen), len(chosen))
    intervals = stats.learning_intervals(rows) if rows and train_items else {"intervals": [], "overall": None}
    return {
        "checkpoints": rows,
        "failed": failed,
        "listed": listed,
        "training_items": len(train_items) if train_items else 0,
        "note": "" if train_items else "no training items: O and OGR need training losses",
        **intervals,
    }


_STAGE_FUNCTIONS = {
    "permutation": _stage_permutation,
    "noise": _stage_noise,
    "corruption": _stage_corruption,
    "emap": _stage_emap,
    "pid": _stage_pid,
    "group_pairs": _stage_group_pairs,
    "bias": _stage_bias,
    "learning": _stage_learning,
}


def _gold(items: Sequence[RawItem], labels: Sequence[str]) -> np.ndarray:
    index = {label: k for k, label in enumerate(labels)}
    return np.array([index.get(str(item.get("label")), -1) for item in items], dtype=np.int64)


def model_report_run(
    adapter: ModelAdapter,
    items: Sequence[RawItem],
    *,
    options: ReportOptions | None = None,
    slices: SliceSet | None = None,
    state: dict[str, Any] | None = None,
    train_items: Sequence[RawItem] | None = None,
    progress: Progress | None = None,
    on_stage: Callable[[str, dict[str, Any]], None] | None = None,
    item_lines: Mapping[str, int] | None = None,
) -> dict[str, Any]:
    """Compute the model report of ``adapter`` on ``items``.

    Args:
        adapter: a loaded adapter.
        items: ``N`` raw items (gold labels from their ``label`` field when it is one of the
            adapter's labels; accuracies need them, agreements do not).
        options: :class:`ReportOptions` (defaults when None).
        slices: parsed slices (:func:`workers.engine.report.slices.slices_parse` with
            :func:`report_slice_fields`).
        state: stages already computed (from ``on_stage``); they are not computed again.
        train_items: training items for the learning section (default: the adapter's
            ``training_items()`` when it has one).
        progress: called as ``progress(stage, done, total)``.
        on_stage: called as ``on_stage(stage, state)`` after each stage.
        item_lines: item id -> 1-based dataset line of ``items``, to name an item in an error.

    Returns:
        The report (see :func:`model_report_assemble`). Cost: see the module doc. Raises
        ``ValueError`` for bad options and :class:`~workers.engine.attribution.NonFiniteError`
        when the model returns NaN/Inf, naming the items by id (and line).
    """
    options = options or ReportOptions()
    options.check()
    items = list(items)
    if not items:
        raise ValueError("the report needs at least one item")
    modalities = tuple(str(m) for m in adapter.modalities)
    probes.all_subsets(len(modalities))  # refuses too many modalities before any work
    labels = tuple(str(x) for x in adapter.labels)
    if options.pair is not None:
        for name in options.pair:
            if name not in modalities:
                raise ValueError(f"options.pair: unknown modality {name!r}; the adapter has {list(modalities)}")
    state = dict(state or {})
    ctx = _Context(
        adapter=adapter,
        items=items,
        options=options,
        modalities=modalities,
        labels=labels,
        gold=_gold(items, labels),
        progress=progress or (lambda stage, done, total: None),
        train_items=list(train_items) if train_items is not None else None,
    )
    timing = dict(state.get("timing") or {})
    for stage in STAGES:
        if stage in state:
            continue
        started = time.perf_counter()
        ctx.current = None
        places = item_lines_places(lines=item_lines or {}) if stage != "learning" else {}  # training items differ
        try:
            with nonfinite_naming(places=places):
                state[stage] = _stage_subsets(ctx) if stage == "subsets" else _STAGE_FUNCTIONS[stage](ctx, state)
        except NonFiniteError as exc:
            named = ctx.named(exc)
            if named is exc:
                raise
            raise named.placed(places=places) from exc
        timing[stage] = time.perf_counter() - started
        state["timing"] = timing
        if on_stage is not None:
            on_stage(stage, state)
    return model_report_assemble(
        adapter_labels=labels, modalities=modalities, items=items, state=state, options=options, slices=slices
    )


# --------------------------------------------------------------------------------------------
# Assembling
# --------------------------------------------------------------------------------------------


ROUNDING_SPREAD = 1e-9


def _distribution(
    values: Sequence[float], *, low: float | None = None, high: float | None = None, bins: int = 20
) -> dict[str, Any]:
    arr = np.asarray([v for v in values if v is not None and math.isfinite(v)], dtype=np.float64)
    if not arr.size:
        return {"n": 0}
    lo = float(arr.min()) if low is None else low
    hi = float(arr.max()) if high is None else high
    # Rounding (a quantity that is zero in theory comes out as +-1e-16, differently on each CPU's
    # kernels) must not move a count: a spread this narrow is one bin, and a value this close to a
    # bin edge counts as on it.
    rounding = ROUNDING_SPREAD * max(1.0, float(np.abs(arr).max()))
    if hi - lo <= rounding:
        middle = (lo + hi) / 2
        counts, edges = np.array([arr.size]), np.array([middle - rounding, middle + rounding])
    else:
        edges = np.linspace(lo, hi, bins + 1)
        nearest = edges[np.abs(arr[:, None] - edges[None, :]).argmin(axis=1)]
        snapped = np.where(np.abs(arr - nearest) <= rounding, nearest, arr)
        counts, edges = np.histogram(snapped, bins=edges)
    q25, median, q75 = np.percentile(arr, [25, 50, 75])
    return {
        "n": int(arr.size),
        "mean": float(arr.mean()),
        "median": float(median),
        "q25": float(q25),
        "q75": float(q75),
        "min": float(arr.min()),
        "max": float(arr.max()),
        "histogram": {"edges": edges.tolist(), "counts": counts.tolist()},
    }


def _item_scalar_fields(item: RawItem, modalities: Sequence[str]) -> dict[str, Any]:
    """Payload values a person can read in a table: short text and numbers (no file paths)."""
    from workers.engine.dataset import is_file_modality

    out = {}
    for modality in modalities:
        value = item.get(modality)
        if is_file_modality(modality) or not isinstance(value, (str, int, float)) or isinstance(value, bool):
            continue
        out[modality] = value if not isinstance(value, str) else value[:500]
    return out


def model_report_assemble(
    *,
    adapter_labels: Sequence[str],
    modalities: Sequence[str],
    items: Sequence[RawItem],
    state: Mapping[str, Any],
    options: ReportOptions,
    slices: SliceSet | None = None,
) -> dict[str, Any]:
    """The report from the stages' state: summaries with 95% bootstrap intervals, the slices
    against the rest of the data, and one row per item. JSON-able (no NaN: undefined is None).

    Sections: ``summary``, ``reliance``, ``interactions``, ``robustness``, ``slices``,
    ``learning``, ``bias``, ``items``, plus ``options``, ``thresholds`` and ``timing``.
    """
    labels = list(adapter_labels)
    modalities = list(modalities)
    n = len(items)
    base = state["subsets"]["columns"]
    gold = _gold(items, labels)
    has_gold = bool((gold >= 0).any())
    predicted = np.asarray(base["prediction"])
    labelled = gold >= 0
    seed = options.seed

    def indicator(values: np.ndarray, *, needs_gold: bool = True) -> np.ndarray:
        out = values.astype(np.float64)
        if needs_gold:
            out[~labelled] = np.nan
        return out

    columns: dict[str, np.ndarray] = {"correct": indicator(predicted == gold)}
    perm = (state.get("permutation") or {}).get("columns") or {}
    for m in modalities:
        without = np.asarray(base[f"answer_without:{m}"])
        only = np.asarray(base[f"answer_only:{m}"])
        columns[f"correct_without:{m}"] = indicator(without == gold)
        columns[f"agree_without:{m}"] = indicator(without == predicted, needs_gold=False)
        columns[f"correct_only:{m}"] = indicator(only == gold)
        columns[f"agree_only:{m}"] = indicator(only == predicted, needs_gold=False)
        if f"agree_perm:{m}" in perm:
            columns[f"agree_perm:{m}"] = np.asarray(perm[f"agree_perm:{m}"], dtype=np.float64)
            right = np.asarray(perm[f"correct_perm:{m}"], dtype=np.float64)
            right[~labelled] = np.nan
            columns[f"correct_perm:{m}"] = right
        columns[f"share:{m}"] = np.asarray(base[f"share:{m}"], dtype=np.float64)
    types = list(base["interaction"])
    for t in INTERACTION_TYPES:
        columns[f"type:{t}"] = np.array([x == t for x in types], dtype=np.float64)
    for m in modalities:
        columns[f"dominant:{m}"] = np.array([d == m for d in base["dominant"]], dtype=np.float64)
    pair_keys = [key.split(":", 1)[1] for key in base if key.startswith("dividend:")]
    for key in pair_keys:
        columns[f"strength:{key}"] = np.asarray(base[f"strength:{key}"], dtype=np.float64)

    def mean_ci(name: str) -> dict[str, Any]:
        return stats.bootstrap_mean(columns[name], seed=seed, n_resamples=options.n_resamples)

    accuracy = mean_ci("correct") if has_gold else None
    reliance: dict[str, Any] = {"baseline": {}, "permutation": {}, "only": {}, "share": {}, "dividend": {}}
    for m in modalities:
        agreement = mean_ci(f"agree_without:{m}")
        reliance["baseline"][m] = {
            "accuracy": mean_ci(f"correct_without:{m}") if has_gold else None,
            "agreement": agreement,
            "reliance": _one_minus(agreement),
        }
        reliance["only"][m] = {
            "accuracy": mean_ci(f"correct_only:{m}") if has_gold else None,
            "agreement": mean_ci(f"agree_only:{m}"),
        }
        if f"agree_perm:{m}" in columns:
            agreement = mean_ci(f"agree_perm:{m}")
            reliance["permutation"][m] = {
                "accuracy": mean_ci(f"correct_perm:{m}") if has_gold else None,
                "agreement": agreement,
                "reliance": _one_minus(agreement),
            }
        reliance["share"][m] = {
            **_distribution(base[f"share:{m}"], low=-1.0, high=1.0),
            "interval": mean_ci(f"share:{m}"),
        }
    for key in pair_keys:
        reliance["dividend"][key] = _distribution(base[f"dividend:{key}"])
    reliance["share_method"] = options.share_method
    reliance["permutations"] = options.permutations if perm else 0

    counts = {t: types.count(t) for t in INTERACTION_TYPES}
    dominant_counts = {m: sum(1 for d in base["dominant"] if d == m) for m in modalities}
    interactions = {
        "types": {
            "counts": counts,
            "shares": {t: (c / n if n else None) for t, c in counts.items()},
            "dominant": dominant_counts,
        },
        "strength": {key: _distribution(base[f"strength:{key}"], low=0.0, high=1.0) for key in pair_keys},
        "emap": state.get("emap"),
        "pid": state.get("pid"),
        "group_pairs": state.get("group_pairs"),
    }

    robustness = _robustness_section(state, modalities, reliance, accuracy)
    item_rows = _item_rows(items, modalities, labels, base, perm, pair_keys, gold)
    slice_rows = _slice_section(slices, item_rows, columns, modalities, types, options) if slices else []
    learning = state.get("learning") or {"skipped": "not computed"}
    bias = _bias_section(state.get("bias"), items, labels, predicted, gold, options)
    _bias_item_columns(item_rows, items, state.get("bias"))
    return {
        "version": REPORT_VERSION,
        "labels": labels,
        "modalities": modalities,
        "summary": {
            "n_items": n,
            "n_labelled": int(labelled.sum()),
            "accuracy": accuracy,
            "mean_confidence": float(np.mean(base["confidence"])) if n else None,
        },
        "thresholds": {
            "gain": options.gain_threshold,
            "strength": options.strength_threshold,
            "rules": INTERACTION_RULES,
        },
        "options": options.to_json(),
        "reliance": reliance,
        "interactions": interactions,
        "robustness": robustness,
        "slices": slice_rows,
        "slice_definitions": slices.to_json() if slices else {"fields": {}, "slices": {}},
        "learning": learning,
        "bias": bias,
        "timing": dict(state.get("timing") or {}),
        "items": item_rows,
    }


def _one_minus(block: Mapping[str, Any]) -> dict[str, Any]:
    def flip(v: float | None) -> float | None:
        return None if v is None else 1.0 - v

    return {
        "estimate": flip(block["estimate"]),
        "ci_low": flip(block["ci_high"]),
        "ci_high": flip(block["ci_low"]),
        "n": block["n"],
    }


def _robustness_section(
    state: Mapping[str, Any], modalities: Sequence[str], reliance: Mapping[str, Any], accuracy: Mapping[str, Any] | None
) -> dict[str, Any]:
    noise = state.get("noise") or {}
    out: dict[str, Any] = {
        "noise": None,
        "corruption": None,
        "missing": {
            m: {
                "accuracy": (reliance["baseline"][m]["accuracy"] or {}).get("estimate"),
                "agreement": reliance["baseline"][m]["agreement"]["estimate"],
            }
            for m in modalities
        },
        "clean_accuracy": accuracy["estimate"] if accuracy else None,
    }
    if noise.get("levels"):
        curves = {}
        measure = "accuracy" if accuracy else "agreement"
        reference = noise[measure]["all"]
        for target in [*modalities, "all"]:
            curve = noise[measure][target]
            curves[target] = {
                "accuracy": noise["accuracy"][target],
                "agreement": noise["agreement"][target],
                "relative": stats.relative_robustness(curve, noise["levels"]),
                "effective": stats.effective_robustness(curve, reference),
            }
        out["noise"] = {
            "levels": noise["levels"],
            "sigma": noise["sigma"],
            "curves": curves,
            "measure": measure,
            "reference": "noise on all modalities at once (effective robustness of a modality: "
            "accuracy kept beyond that curve, shifted to the same clean accuracy)",
        }
    corruption = state.get("corruption") or {}
    if corruption.get("levels") and corruption.get("accuracy") or corruption.get("agreement"):
        measure = "accuracy" if accuracy else "agreement"
        curves = {}
        for m, curve in corruption[measure].items():
            curves[m] = {
                "accuracy": corruption["accuracy"].get(m),
                "agreement": corruption["agreement"].get(m),
                "relative": stats.relative_robustness(curve, corruption["levels"]),
            }
        out["corruption"] = {
            "levels": corruption["levels"],
            "curves": curves,
            "measure": measure,
            "errors": corruption.get("errors") or {},
        }
    elif corruption.get("skipped"):
        out["corruption"] = {"skipped": corruption["skipped"]}
    return out


def _item_rows(
    items: Sequence[RawItem],
    modalities: Sequence[str],
    labels: Sequence[str],
    base: Mapping[str, list],
    perm: Mapping[str, list],
    pair_keys: Sequence[str],
    gold: np.ndarray,
) -> list[dict[str, Any]]:
    rows = []
    for i, item in enumerate(items):
        prediction = labels[base["prediction"][i]]
        row: dict[str, Any] = {
            "id": str(item.get("id", i)),
            **_item_scalar_fields(item, modalities),
            "label": str(item["label"]) if "label" in item else None,
            "prediction": prediction,
            "correct": bool(gold[i] == base["prediction"][i]) if gold[i] >= 0 else None,
            "confidence": float(base["confidence"][i]),
            "interaction": base["interaction"][i],
            "dominant": base["dominant"][i],
        }
        for m in modalities:
            row[f"share:{m}"] = float(base[f"share:{m}"][i])
            row[f"answer_without:{m}"] = labels[base[f"answer_without:{m}"][i]]
            row[f"answer_only:{m}"] = labels[base[f"answer_only:{m}"][i]]
            if f"agree_perm:{m}" in perm:
                row[f"agree_perm:{m}"] = float(perm[f"agree_perm:{m}"][i])
        for key in pair_keys:
            row[f"dividend:{key}"] = float(base[f"dividend:{key}"][i])
            row[f"strength:{key}"] = float(base[f"strength:{key}"][i])
        rows.append(row)
    return rows


#: The per-item columns each slice is compared on, with what they mean.
SLICE_COLUMNS = {
    "correct": "accuracy",
    "agree_without": "answer kept without the modality (baseline)",
    "agree_perm": "answer kept with the modality from another item",
    "share": "modality share",
    "type": "interaction type",
    "dominant": "dominant modality",
}


def _slice_section(
    slices: SliceSet,
    item_rows: Sequence[Mapping[str, Any]],
    columns: Mapping[str, np.ndarray],
    modalities: Sequence[str],
    types: Sequence[str],
    options: ReportOptions,
) -> list[dict[str, Any]]:
    masks = slices.masks(item_rows)
    chosen = {name: values for name, values in columns.items() if name.split(":", 1)[0] in SLICE_COLUMNS}
    out = []
    for k, spec in enumerate(slices.slices):
        inside = masks[spec.name]
        compared = stats.compare_groups(
            chosen, inside, seed=options.seed + 7919 * (k + 1), n_resamples=options.n_resamples
        )
        kinds = np.asarray(types)
        counts_in = {t: int(np.sum(inside & (kinds == t))) for t in INTERACTION_TYPES}
        counts_out = {t: int(np.sum(~inside & (kinds == t))) for t in INTERACTION_TYPES}
        out.append(
            {
                "name": spec.name,
                "expression": spec.expression,
                "n": int(inside.sum()),
                "n_rest": int((~inside).sum()),
                "item_ids": [row["id"] for row, keep in zip(item_rows, inside) if keep],
                "type_counts": {"slice": counts_in, "rest": counts_out},
                "stats": compared,
            }
        )
    return out


def _bias_item_columns(rows: list[dict[str, Any]], items: Sequence[RawItem], stage: Mapping[str, Any] | None) -> None:
    """Each item row's group and, per method, its mass inside the evidence and pointing hit."""
    groups = _item_groups(items)
    if not any(g is not None for g in groups):
        return
    for row, group in zip(rows, groups):
        row["group"] = group
    for method in (stage or {}).get("methods") or []:
        for row, mass, hit in zip(rows, stage["mass"][method], stage["pointing"][method]):
            row[f"evidence_mass:{method}"] = mass
            row[f"pointing:{method}"] = hit


def _bias_section(
    stage: Mapping[str, Any] | None,
    items: Sequence[RawItem],
    labels: Sequence[str],
    predicted: np.ndarray,
    gold: np.ndarray,
    options: ReportOptions,
) -> dict[str, Any]:
    """Per group: accuracy and error with Wilson intervals, each group's accuracy gap to the
    other items (stratified bootstrap); bias amplification; leakage; and per method the mass
    inside the evidence region and the pointing game, overall and per group."""
    if not stage:
        return {"skipped": "not computed"}
    if stage.get("skipped"):
        return {"skipped": stage["skipped"]}
    groups = _item_groups(items)
    names = sorted({g for g in groups if g is not None})
    group_array = np.array([g if g is not None else "" for g in groups], dtype=object)
    labelled = gold >= 0
    correct = np.where(labelled, (predicted == gold).astype(np.float64), np.nan)
    per_group: dict[str, Any] = {}
    for k, name in enumerate(names):
        inside = group_array == name
        right = int(np.nansum(correct[inside & labelled]))
        n_labelled = int((inside & labelled).sum())
        known = group_array != ""
        gap = stats.compare_groups(
            {"correct": correct[known]},
            inside[known],
            seed=options.seed + 104_729 * (k + 1),
            n_resamples=options.n_resamples,
        )["correct"]["difference"]
        per_group[name] = {
            "n": int(inside.sum()),
            "accuracy": bias_metrics.wilson_interval(right, n_labelled),
            "error": bias_metrics.wilson_interval(n_labelled - right, n_labelled),
            "accuracy_gap": gap,
            "error_gap": _negated(gap),
        }
    out: dict[str, Any] = {
        "groups": names,
        "per_group": per_group,
        "n_without_group": int(sum(g is None for g in groups)),
    }
    reference = stage.get("reference") or {}
    with_group = [i for i, g in enumerate(groups) if g is not None]
    if names and reference.get("labels"):
        out["amplification"] = {
            "reference": reference["source"],
            "note": reference.get("note", ""),
            "n_reference": len(reference["labels"]),
            **bias_metrics.amplification_interval(
                train_outputs=reference["labels"],
                train_groups=reference["groups"],
                predicted=[labels[predicted[i]] for i in with_group],
                groups=[groups[i] for i in with_group],
                output_names=labels,
                group_names=sorted(set(names) | set(reference["groups"])),
                seed=options.seed + 11,
                n_resamples=options.n_resamples,
            ),
        }
    else:
        out["amplification"] = {"skipped": "no items with a group and a label to compare with"}
    leak = stage.get("leakage") or {}
    if "model" in leak:
        model_right = np.asarray(leak["model"]["correct"])
        data_right = np.asarray(leak["data"]["correct"])
        out["leakage"] = {
            "classifier": "multinomial logistic regression, stratified k-fold cross-validation",
            "folds": leak["folds"],
            "n": len(leak["items"]),
            "majority": leak["model"]["majority"],
            "model": stats.bootstrap_mean(model_right, seed=options.seed + 13, n_resamples=options.n_resamples),
            "data": stats.bootstrap_mean(data_right, seed=options.seed + 13, n_resamples=options.n_resamples),
            "difference": stats.bootstrap_mean(
                model_right - data_right, seed=options.seed + 13, n_resamples=options.n_resamples
            ),
        }
    else:
        out["leakage"] = {"skipped": leak.get("skipped", "not computed")}
    evidence: dict[str, Any] = {}
    for method in stage.get("methods") or []:
        mass = np.array([np.nan if v is None else v for v in stage["mass"][method]], dtype=np.float64)
        hits = stage["pointing"][method]
        block: dict[str, Any] = {
            "all": {
                "mass_inside": stats.bootstrap_mean(mass, seed=options.seed + 17, n_resamples=options.n_resamples),
                "pointing": bias_metrics.wilson_interval(
                    sum(h is True for h in hits), sum(h is not None for h in hits)
                ),
            },
            "per_group": {},
        }
        for name in names:
            inside = group_array == name
            group_hits = [h for h, keep in zip(hits, inside) if keep and h is not None]
            block["per_group"][name] = {
                "mass_inside": stats.bootstrap_mean(
                    mass[inside], seed=options.seed + 17, n_resamples=options.n_resamples
                ),
                "pointing": bias_metrics.wilson_interval(sum(group_hits), len(group_hits)),
            }
        evidence[method] = block
    out["evidence"] = evidence or {"skipped": "no item carries an evidence region, or no bias_methods"}
    out["evidence_unmatched"] = stage.get("unmatched") or []
    return out


def _negated(block: Mapping[str, Any]) -> dict[str, Any]:
    def flip(v: float | None) -> float | None:
        return None if v is None else -v

    return {
        "estimate": flip(block["estimate"]),
        "ci_low": flip(block["ci_high"]),
        "ci_high": flip(block["ci_low"]),
        "n": block["n"],
    }
