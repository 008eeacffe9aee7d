"""Identity merges per second: ``Scorer.identify`` folding an anonymous profile (with events) into
a known one inside a scorer of 100k users (per set of views, by the one-row fold and by the
earlier whole-state ``merge_rows`` + ``erase`` path, alternately), the batch union-find ``resolve_links`` that a Dask job
runs once on the client, and ``score_dataset`` with and without links (the re-key costs).

Run: ``pytest benches/test_bench_identity.py --benchmark-only -s`` (rates are printed per case).
"""

from __future__ import annotations

from functools import partial

import numpy as np
import pytest

from affinity_sdk import Scorer, available_backends
from affinity_sdk.ingest.batch import EventBatch
from affinity_sdk.profile.identity import IdentityMap, resolve_links
from affinity_sdk.sim.shop import simulate_shop

pytest.importorskip("pytest_benchmark")

BACKENDS = [b for b in available_backends() if b != "reference"]
N_MERGES = 200


def _rate(benchmark, per_round: int, what: str) -> None:  # type: ignore[no-untyped-def]
    median = float(np.median(benchmark.stats.stats.data))
    benchmark.extra_info[f"{what}_per_s"] = per_round / median
    print(f"\n{benchmark.name}: {per_round / median:,.0f} {what}/s (median round {median * 1e3:.1f} ms)")


@pytest.fixture(scope="module")
def shop() -> EventBatch:
    return simulate_shop(100_000, weeks=4, seed=11).batch


VIEW_SETS = {
    "signals": ("signals",),
    "signals+affinity": ("signals", "affinity"),
    "all": ("signals", "affinity", "propensity", "products"),
}


@pytest.mark.parametrize("path", ["rows", "whole"])
@pytest.mark.parametrize("views", list(VIEW_SETS))
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.benchmark(group="identity-merge")
def test_identify_merges_per_second(benchmark, backend, views, path, shop) -> None:  # type: ignore[no-untyped-def]
    """Each round links 200 users with events into 200 others (a profile fold in every view;
    the dedupe journal on). ``whole`` is the earlier path (``_fold_profile(whole=True)``)."""
    users = sorted(set(shop.interners.users.names))
    pairs = list(zip(users[: 2 * N_MERGES : 2], users[1 : 2 * N_MERGES : 2], strict=True))

    def setup():  # type: ignore[no-untyped-def]
        scorer = Scorer(backend=backend, views=VIEW_SETS[views])
        scorer.ingest(shop)
        if path == "whole":
            store = scorer.store
            store._fold_profile = partial(store._fold_profile, whole=True)  # type: ignore[method-assign]
        return (scorer,), {}

    def merge_all(scorer: Scorer) -> None:
        for user_id, into in pairs:
            scorer.identify(user_id, into)

    benchmark.pedantic(merge_all, setup=setup, rounds=3, iterations=1)
    _rate(benchmark, N_MERGES, "merges")
    check = Scorer(backend=backend)
    merge_all(check)
    assert len(check.store.identity) == N_MERGES


@pytest.mark.parametrize("n_links", [100_000, 1_000_000])
@pytest.mark.benchmark(group="identity-resolve")
def test_resolve_links_per_second(benchmark, n_links) -> None:  # type: ignore[no-untyped-def]
    """The batch union-find over ``n_links`` random links among ``n_links`` ids."""
    rng = np.random.default_rng(3)
    ids = [f"id-{i}" for i in range(n_links)]
    pairs = [(ids[a], ids[b]) for a, b in rng.integers(0, n_links, (n_links, 2))]
    resolved = benchmark.pedantic(resolve_links, args=(pairs,), rounds=3, iterations=1)
    _rate(benchmark, n_links, "links")
    if n_links <= 100_000:  # the one-at-a-time map agrees (outside the timed region)
        identity = IdentityMap()
        for user_id, into in pairs:
            identity.add(user_id, into)
        assert resolved == dict(identity.pairs())


@pytest.mark.parametrize("with_links", [False, True])
@pytest.mark.benchmark(group="identity-dask")
def test_score_dataset_with_links(benchmark, tmp_path_factory, shop, with_links) -> None:  # type: ignore[no-untyped-def]
    """``score_dataset`` on the 100k-user shop (sync scheduler), with 2,000 links or none."""
    pytest.importorskip("dask.dataframe")
    from affinity_sdk.scale.dask import score_dataset

    path = tmp_path_factory.mktemp("lake") / "events.parquet"
    shop.to_parquet(path, row_group_size=250_000)
    users = sorted(set(shop.interners.users.names))
    links = list(zip(users[0:4_000:2], users[1:4_000:2], strict=True)) if with_links else None

    def run() -> int:
        scores = score_dataset(path, links=links, npartitions=4, shuffle_method="tasks", scheduler="sync")
        return int(scores.n_users)

    n_users = benchmark.pedantic(run, rounds=2, iterations=1)
    _rate(benchmark, len(shop), "events")
    single = Scorer(dedupe_window=None)  # what the workers run; the fewest views to fold
    single.ingest(shop)
    for user_id, into in links or ():
        single.identify(user_id, into)
    assert n_users == len(single.score())
