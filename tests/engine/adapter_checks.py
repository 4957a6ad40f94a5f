"""Checks every adapter test makes the same way."""

from __future__ import annotations

import torch

from workers.engine.attribution import PreparedBatch, attribute


def assert_ig_complete(
    p: PreparedBatch, targets: torch.Tensor, *, relative: float = 1e-3, least_change: float = 0.01
) -> None:
    """IntegratedGradients' completeness on every item of ``p``: the attributions sum to the
    target logit's change from the baselines to the inputs, within ``relative`` of that change.
    The change must exceed ``least_change``, far above float noise, so the check means something."""
    results = attribute(p.adapter, p.batch, method="integrated_gradients", targets=targets, prepared=p)
    rows = torch.arange(p.size)
    with torch.no_grad():
        change = (
            p.adapter.head(*p.inputs, batch=p.batch)[rows, targets]
            - p.adapter.head(*p.baselines, batch=p.batch)[rows, targets]
        ).double()
    for res, expected in zip(results, change.tolist()):
        assert abs(expected) > least_change, f"item {res.target}: too small a change ({expected}) to check"
        total = sum(res.modality_totals.values())
        assert abs(total - expected) <= relative * abs(expected), (total, expected)
