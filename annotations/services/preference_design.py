"""The pair schedule of a preference study: which two arms' explanations each rater slot of an
item compares, and which is on the left (plain Python, no database).

Order of the ordered pairs: the unordered pairs of the explanation arms, in an order drawn from
the study's seed, then the same pairs with the sides swapped. Slots are numbered through the
study (item by item in item-id order, then by slot index); slot ``g`` compares ordered pair
``g mod 2P`` (``P`` unordered pairs). So over the study every unordered pair is compared equally
often and each arm sits on the left as often as on the right (counts differ by at most one),
an item with ``raters_per_item`` a multiple of ``P`` gets every pair equally often, and the
schedule is reproducible from the seed.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from itertools import combinations


def preference_pair_order(arm_ids: Sequence[int], *, seed: int) -> list[tuple[int, int]]:
    """The ``2P`` ordered (left, right) pairs in schedule order (module docstring)."""
    arms = sorted(arm_ids)
    if len(arms) < 2:
        raise ValueError("a preference study needs two explanation arms or more")
    pairs = list(combinations(arms, 2))
    random.Random(f"{seed}:preference-pairs").shuffle(pairs)
    return pairs + [(right, left) for left, right in pairs]


def preference_schedule(
    arm_ids: Sequence[int], item_ids: Sequence[int], *, raters_per_item: int, seed: int
) -> dict[tuple[int, int], tuple[int, int]]:
    """(item id, slot index) -> (left arm id, right arm id) for every rater slot."""
    order = preference_pair_order(arm_ids, seed=seed)
    schedule = {}
    for rank, item_id in enumerate(sorted(item_ids)):
        for index in range(raters_per_item):
            schedule[(item_id, index)] = order[(rank * raters_per_item + index) % len(order)]
    return schedule
