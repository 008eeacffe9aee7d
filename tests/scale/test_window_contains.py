"""``EventIdWindow.contains``, the lookup ``ProfileStore.merge`` (and so ``fold_dataset``) runs
on every merge: probing the window's tables gives exactly the set membership of the ids
``to_arrays`` says it holds, across rotations, repeats and id 0."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from affinity_sdk.ingest.dedupe import EventIdWindow

# Few distinct ids, so lookups hit held ids, evicted ids and never-seen ones alike.
_IDS = st.lists(st.integers(0, 40), max_size=60)


@settings(max_examples=150, deadline=None)
@given(batches=st.lists(_IDS, max_size=5), asked=_IDS, capacity=st.sampled_from([1, 2, 4, 16]))
def test_contains_is_membership_in_the_held_ids(
    batches: list[list[int]], asked: list[int], capacity: int
) -> None:
    window = EventIdWindow(capacity, backend="reference")
    for batch in batches:
        window.seen(np.array(batch, dtype=np.uint64))
    keys = np.array(asked, dtype=np.uint64)
    held = window.to_arrays()
    want = np.isin(keys, np.concatenate([held["previous"], held["current"]])) & (keys != 0)
    assert window.contains(keys).tolist() == want.tolist()
    again = EventIdWindow.from_arrays(capacity, **held)
    assert again.contains(keys).tolist() == want.tolist()


def test_contains_on_large_random_ids_with_long_probe_paths() -> None:
    """Full 64-bit ids in a window at its fullest (both generations), half of them asked for."""
    rng = np.random.default_rng(4)
    window = EventIdWindow(1 << 12)
    ids = rng.integers(1, np.iinfo(np.uint64).max, 3 * (1 << 12), dtype=np.uint64)
    window.seen(ids)
    fresh = rng.integers(1, np.iinfo(np.uint64).max, 5000, dtype=np.uint64)
    keys = np.concatenate([ids, fresh, np.zeros(1, dtype=np.uint64)])
    held = window.to_arrays()
    want = np.isin(keys, np.concatenate([held["previous"], held["current"]])) & (keys != 0)
    got = window.contains(keys)
    assert got.tolist() == want.tolist() and 0 < got.sum() < ids.shape[0]
    assert EventIdWindow(8).contains(keys).sum() == 0  # nothing held yet
