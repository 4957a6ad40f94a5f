"""Synthetic response tables with known population values (tests, benchmark, demos).

Generative model (logistic crossed random effects): participant ``p`` in arm ``a`` answers item ``i``
correctly (guess == model prediction) with probability ``sigmoid(arm_logits[a] + u_p + v_i)``,
``u_p ~ N(0, participant_sd²)``, ``v_i ~ N(0, item_sd²)``; items are shared by all arms. A wrong
guess is a uniformly chosen other class. Each participant answers ``items_per_participant``
distinct test items drawn at random (and, optionally, ``pretest_items_per_participant`` other
items in a pretest phase with logit ``pretest_logit``). Participants flagged ``excluded`` (rate
``exclusion_rate``) answer at random: correct with probability ``1 / n_classes``.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
from numpy.polynomial.hermite_e import hermegauss
from scipy.special import expit

__all__ = ["responses_simulate", "simulated_accuracy_truth"]

# The quadrature's nodes and weights: an eigenproblem of order 101, solved once rather than at
# every call (the power search calls this inside a root finder).
_HERMITE_NODES, _HERMITE_WEIGHTS = hermegauss(101)


def simulated_accuracy_truth(*, logit: float, participant_sd: float, item_sd: float) -> float:
    """Population simulation accuracy ``E[sigmoid(logit + u + v)]`` of a non-excluded participant.

    ``u + v ~ N(0, participant_sd² + item_sd²)``; computed by 101-point Gauss–Hermite quadrature
    (error far below 1e-12 for these smooth integrands).
    """
    scale = float(np.hypot(participant_sd, item_sd))
    return float((_HERMITE_WEIGHTS * expit(logit + scale * _HERMITE_NODES)).sum() / np.sqrt(2 * np.pi))


def responses_simulate(
    *,
    seed: int,
    arm_logits: Mapping[str, float] | None = None,
    n_participants_per_arm: int = 40,
    n_items: int = 40,
    items_per_participant: int = 20,
    participant_sd: float = 1.0,
    item_sd: float = 0.8,
    n_classes: int = 3,
    model_accuracy: float = 0.7,
    pretest_items_per_participant: int = 0,
    pretest_logit: float = 0.0,
    exclusion_rate: float = 0.0,
    study: str = "S1",
) -> pd.DataFrame:
    """A response table in the export format (see ``responses`` module), generated as described above.

    Participant and item identifiers are ints (as primary keys from the service would be); labels
    are strings ``"c0"``…; ``created_at`` is tz-aware UTC. ``arm_logits`` defaults to
    ``{"baseline": 0.0, "explained": 0.8}``.
    """
    arm_logits = dict(arm_logits or {"baseline": 0.0, "explained": 0.8})
    if items_per_participant + pretest_items_per_participant > n_items:
        raise ValueError("a participant cannot answer more distinct items than exist")
    rng = np.random.default_rng(seed)
    arms = list(arm_logits)
    n_participants = n_participants_per_arm * len(arms)
    arm_index = np.repeat(np.arange(len(arms)), n_participants_per_arm)
    participant_effect = rng.normal(0.0, participant_sd, n_participants)
    item_effect = rng.normal(0.0, item_sd, n_items)
    excluded = rng.random(n_participants) < exclusion_rate

    gold = rng.integers(0, n_classes, n_items)
    model_right = rng.random(n_items) < model_accuracy
    model = np.where(model_right, gold, (gold + 1 + rng.integers(0, max(n_classes - 1, 1), n_items)) % n_classes)

    order = np.argsort(rng.random((n_participants, n_items)), axis=1)
    per_participant = items_per_participant + pretest_items_per_participant
    items = order[:, :per_participant]
    phase_of_slot = np.array(["pretest"] * pretest_items_per_participant + ["test"] * items_per_participant)
    items = np.concatenate([items[:, items_per_participant:], items[:, :items_per_participant]], axis=1)

    p = np.repeat(np.arange(n_participants), per_participant)
    i = items.ravel()
    phase = np.tile(phase_of_slot, n_participants)
    logit = np.where(phase == "test", np.asarray([arm_logits[a] for a in arms])[arm_index[p]], pretest_logit)
    prob = expit(logit + participant_effect[p] + item_effect[i])
    prob = np.where(excluded[p], 1.0 / n_classes, prob)
    success = rng.random(len(p)) < prob
    wrong = (model[i] + 1 + rng.integers(0, max(n_classes - 1, 1), len(p))) % n_classes
    guess = np.where(success, model[i], wrong)
    latent = 3.0 + np.where(success, 0.8, -0.8) + 0.4 * participant_effect[p] + rng.normal(0.0, 0.9, len(p))
    confidence = np.clip(np.rint(latent), 1, 5).astype(np.int64)
    confidence = np.where(excluded[p], rng.integers(1, 6, len(p)), confidence)
    rt_ms = np.rint(
        np.where(excluded[p], rng.lognormal(np.log(1500), 0.3, len(p)), rng.lognormal(np.log(8000), 0.5, len(p)))
    ).astype(np.int64)
    start = pd.Timestamp("2025-01-06T09:00:00Z") + pd.to_timedelta(np.arange(n_participants) * 97, unit="s")
    within = np.cumsum(rt_ms.reshape(n_participants, per_participant), axis=1).ravel()
    created_at = start[p] + pd.to_timedelta(within, unit="ms")
    labels = np.array([f"c{k}" for k in range(n_classes)], dtype=object)
    return pd.DataFrame(
        {
            "study": study,
            "condition": np.asarray(arms, dtype=object)[arm_index[p]],
            "participant": 1000 + p,
            "item": 1 + i,
            "model_prediction": labels[model[i]],
            "gold_label": labels[gold[i]],
            "guess": labels[guess],
            "correct_simulation": guess == model[i],
            "confidence": confidence,
            "rt_ms": rt_ms,
            "created_at": created_at,
            "phase": phase,
            "excluded": excluded[p],
        }
    )
