"""Adapters that misbehave on purpose, registered by dotted path like any user adapter."""

import torch

from workers.engine.demo.adapter import DemoAdapter


class GradientlessAdapter(DemoAdapter):
    """Passes the registration check (a no-grad forward) but fails every gradient method,
    as a model with a non-differentiable op would."""

    def head(self, *embedded, batch):
        if torch.is_grad_enabled():
            raise RuntimeError("this model cannot be differentiated (deliberate test failure)")
        return super().head(*embedded, batch=batch)


class BrokenAfterCheckAdapter(DemoAdapter):
    """Passes the one-item registration check, then fails on any batch larger than one, as a
    model that breaks on real data would."""

    def encode(self, items):
        if len(items) > 1:
            raise RuntimeError("this adapter is deliberately broken on real batches")
        return super().encode(items)
