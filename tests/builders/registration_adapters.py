"""What a registration may and may not call (workers.engine.adapter.adapter_factory_check).

* :func:`writes_a_marker`: a plain function, not marked as an adapter factory; calling it would
  write the file ``marker``, so a test proves it was refused without being called.
* :func:`sleeps`: a marked factory that sleeps ``seconds`` first, as a factory that hangs or
  trains a model would: registration stops it at its time limit.
"""

from __future__ import annotations

import time
from pathlib import Path

from tests.builders.toy_adapters import PairwiseAdapter
from workers.engine.adapter import adapter_factory


def writes_a_marker(*, marker: str) -> PairwiseAdapter:
    Path(marker).write_text("called: a registration ran a function that is not an adapter factory")
    return PairwiseAdapter()


@adapter_factory
def sleeps(*, seconds: float = 3600) -> PairwiseAdapter:
    time.sleep(seconds)
    return PairwiseAdapter()
