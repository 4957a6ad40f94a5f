"""The preference pair schedule (annotations/services/preference_design.py; plain Python, fast tier):
balanced over the study, counterbalanced left/right, balanced per item when the raters allow, and
reproducible from the seed."""

from __future__ import annotations

from collections import Counter
from itertools import combinations

import pytest

from annotations.services.preference_design import preference_pair_order, preference_schedule


@pytest.mark.parametrize("n_arms, n_items, raters", [(2, 5, 3), (3, 7, 4), (4, 10, 6), (5, 9, 7)])
def test_every_pair_and_side_equally_often_up_to_one(n_arms, n_items, raters):
    arms = [11 * k + 3 for k in range(n_arms)]
    schedule = preference_schedule(arms, list(range(100, 100 + n_items)), raters_per_item=raters, seed=5)
    assert len(schedule) == n_items * raters
    ordered = Counter(schedule.values())
    unordered = Counter(frozenset(pair) for pair in schedule.values())
    assert set(ordered) <= set(preference_pair_order(arms, seed=5)) and all(left != right for left, right in ordered)
    assert max(ordered.values()) - min(ordered.values()) <= 1 and len(ordered) == min(
        len(schedule), n_arms * (n_arms - 1)
    )
    assert max(unordered.values()) - min(unordered.values()) <= 1
    if raters % len(list(combinations(arms, 2))) == 0:  # each item gets every pair equally often
        for item in range(100, 100 + n_items):
            per_item = Counter(frozenset(schedule[(item, r)]) for r in range(raters))
            assert len(set(per_item.values())) == 1 and len(per_item) == len(unordered)


def test_the_schedule_is_reproducible_from_the_seed_and_not_from_the_arm_order():
    arms, items = [4, 9, 2, 7], [3, 1, 2]
    first = preference_schedule(arms, items, raters_per_item=6, seed=1)
    assert first == preference_schedule(list(reversed(arms)), list(reversed(items)), raters_per_item=6, seed=1)
    assert any(preference_pair_order(arms, seed=s) != preference_pair_order(arms, seed=1) for s in range(2, 6))
    with pytest.raises(ValueError, match="two explanation arms"):
        preference_pair_order([4], seed=1)
