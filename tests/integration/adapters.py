"""Adapters that misbehave on purpose, registered by dotted path like any user adapter."""

import time

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


class SlowAdapter(DemoAdapter):
    """1.5 s for each item this process has not encoded before (the one-item registration
    check stays quick): a model slow enough to outgrow a short task time limit on its first
    pass over the data, while the explanations that follow stay fast."""

    _seen: set[str] = set()

    def encode(self, items):
        if len(items) > 1:
            for item in items:
                if item["id"] not in self._seen:
                    time.sleep(1.5)
                    self._seen.add(item["id"])
        return super().encode(items)
