"""Which demo weights to train and load: the training seed and thread count come from the
environment, so the tests that depend on a trained demo model can run against other weights
(CI runs them for a second seed; docs/DESIGN.md, "Nothing depends on the machine").

* ``MMEVAL_DEMO_SEED`` (default 0): the seed of the weight initialisation and of every
  training batch;
* ``MMEVAL_DEMO_THREADS`` (default 1): torch threads while training; float reductions run in
  another order with another count, so the weights differ in their last bits.

Both enter the config hash that names the cached weights, so each setting has its own file.
"""

from __future__ import annotations

import os


def _env_int(name: str, default: int, *, minimum: int) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"{name} must be an integer, not {raw!r}") from None
    if value < minimum:
        raise ValueError(f"{name} must be at least {minimum}, not {value}")
    return value


def training_seed() -> int:
    """The demo models' training seed (``MMEVAL_DEMO_SEED``, default 0)."""
    return _env_int("MMEVAL_DEMO_SEED", 0, minimum=0)


def training_threads() -> int:
    """Torch threads while training a demo model (``MMEVAL_DEMO_THREADS``, default 1)."""
    return _env_int("MMEVAL_DEMO_THREADS", 1, minimum=1)
