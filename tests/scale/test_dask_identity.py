"""Identity on Dask: links resolved once (the single process's union-find), events re-keyed before
the shuffle; the scores equal one ``Scorer`` given the same links, to 1e-12, tiers exactly."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

pytest.importorskip("dask.dataframe", reason="the [dask] extra (dask[dataframe]) is not installed")
distributed = pytest.importorskip("distributed", reason="the [dask] extra (distributed) is not installed")
pytest.importorskip("pyarrow", reason="the [dask] extra (pyarrow) is not installed")

import dask.dataframe as dd  # noqa: E402
import pandas as pd  # noqa: E402

from affinity_sdk import Scorer  # noqa: E402
from affinity_sdk.capture.events import ConsentChanged  # noqa: E402
from affinity_sdk.errors import SchemaError  # noqa: E402
from affinity_sdk.ingest.batch import EventBatch  # noqa: E402
from affinity_sdk.profile.identity import IdentityMap, resolve_links  # noqa: E402
from affinity_sdk.scale.dask import score_dataset  # noqa: E402
from affinity_sdk.scale.identity import gather_links  # noqa: E402
from affinity_sdk.sim.shop import ShopSimulation, simulate_shop  # noqa: E402

GHOSTS = ("ghost-1", "ghost-2")  # ids with no events in the lake


@pytest.fixture(scope="module")
def sim() -> ShopSimulation:
    return simulate_shop(80, weeks=3, horizon_weeks=1, seed=15)


def _links(sim: ShopSimulation, seed: int) -> list[tuple[str, str]]:
    """Random links among the lake's users and a few ids without events: chains, links that pull
    a whole group into another (``a -> b`` then ``a -> c``), self-links and repeats."""
    rng = np.random.default_rng(seed)
    users = sorted(set(sim.batch.interners.users.names))
    pool = [*users[:30], *GHOSTS]
    pairs = [(pool[i], pool[j]) for i, j in rng.integers(0, len(pool), (16, 2))]
    # ghost-9: a canonical id with no events of its own (one process gives it an empty
    # profile); ghost-8 takes a user's events; "gone" is forgotten, so never linked.
    tail = [("ghost-2", "ghost-9"), (users[40], "ghost-8"), ("gone", users[1]), (users[2], "gone")]
    return [*pairs, pairs[0], (users[0], users[0]), *tail]


def _consent_flips(sim: ShopSimulation, links: list[tuple[str, str]]) -> list[Any]:
    """Consent decisions on both sides of some links, one pair at the same millisecond (where a
    revocation must win), so only the person's latest decision across their ids is right."""
    t = int(sim.batch.ts_ms.max())
    out: list[Any] = []
    among_users = [(a, b) for a, b in links if not {a, b} & {*GHOSTS, "ghost-8", "ghost-9", "gone"}]
    for k, (a, b) in enumerate(among_users[:8]):
        out.append(ConsentChanged(user_id=a, timestamp=t - 50 + k, granted=k % 2 == 0))
        out.append(ConsentChanged(user_id=b, timestamp=t - 50 + k + (k % 3 != 0), granted=k % 2 == 1))
    return out


def _lake(tmp: Path, sim: ShopSimulation, extra: list[Any]) -> Path:
    sim.write_parquet(tmp / "a.parquet")
    EventBatch.from_events(extra).to_parquet(tmp / "b.parquet")
    return tmp


def _single(sim: ShopSimulation, extra: list[Any], links: list[tuple[str, str]], backend: str) -> Any:
    scorer = Scorer(backend=backend)
    scorer.forget("gone", at=0)  # before any link: never merged
    scorer.ingest(sim.batch)
    scorer.ingest(extra)
    for user_id, into in links:
        scorer.identify(user_id, into)
    return scorer


def _check(frame: Any, want: Any) -> None:
    got = frame.set_index("user_id")
    assert got.index.is_unique and sorted(got.index) == sorted(want.index)
    got = got.loc[want.index]
    np.testing.assert_allclose(got["raw_score"], want["raw_score"], rtol=1e-12, atol=0)
    assert (got["tier"] == want["tier"]).all()


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_score_dataset_with_links_equals_one_scorer(
    sim: ShopSimulation, seed: int, backend: str, tmp_path: Path
) -> None:
    links = _links(sim, seed)
    extra = _consent_flips(sim, links)
    single = _single(sim, extra, links, backend)
    want = single.score().to_pandas().set_index("user_id")
    assert {"ghost-8", "ghost-9"} <= set(want.index) and "gone" not in want.index
    scores = score_dataset(
        _lake(tmp_path, sim, extra),
        links=links,
        forgotten={"gone"},
        backend=backend,
        npartitions=4,
        shuffle_method="tasks",
        scheduler="sync",
    )
    assert scores.now_ms == single.latest_ms  # the marker rows leave the default `now` alone
    _check(scores.compute(scheduler="sync"), want)


def test_links_as_frames_pairs_or_segment_calls_agree(sim: ShopSimulation, tmp_path: Path) -> None:
    links = _links(sim, 4)
    frame = pd.DataFrame(links, columns=["previous_id", "user_id"])
    calls = [{"type": "alias", "previousId": a, "userId": b} for a, b in links]
    forms = [links, frame, dd.from_pandas(frame, npartitions=2), calls, {"batch": calls}]
    want = resolve_links(links)
    for form in forms:
        assert resolve_links(gather_links(form, scheduler="sync")) == want
    lake = _lake(tmp_path, sim, [])
    tables = [
        score_dataset(lake, links=form, now="2026-06-01T00:00:00Z", scheduler="sync").compute(
            scheduler="sync"
        )
        for form in (frame, calls)
    ]
    pd.testing.assert_frame_equal(
        tables[0].sort_values("user_id", ignore_index=True),
        tables[1].sort_values("user_id", ignore_index=True),
    )


def test_a_forgotten_store_refuses_the_same_links(sim: ShopSimulation, tmp_path: Path) -> None:
    """``forgotten`` also takes a store's keyed-hash suppression (ids never in clear)."""
    links = _links(sim, 5)
    single = _single(sim, [], links, "reference")
    scores = score_dataset(
        _lake(tmp_path, sim, []),
        links=links,
        forgotten=single.store.suppression,
        backend="reference",
        scheduler="sync",
    )
    _check(scores.compute(scheduler="sync"), single.score().to_pandas().set_index("user_id"))


def test_on_a_local_cluster(sim: ShopSimulation, tmp_path: Path) -> None:
    """Worker processes: the mapping is shipped once as a shared task, markers travel by pickle."""
    links = _links(sim, 6)
    extra = _consent_flips(sim, links)
    want = _single(sim, extra, links, "numba").score().to_pandas().set_index("user_id")
    cluster = distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0", memory_limit="1GiB"
    )
    try:
        with distributed.Client(cluster):
            scores = score_dataset(
                _lake(tmp_path, sim, extra), links=links, forgotten={"gone"}, backend="numba", npartitions=3
            )
            frame = scores.compute()
    finally:
        cluster.close()
    _check(frame, want)


@settings(max_examples=200, deadline=None)
@given(
    pairs=st.lists(st.tuples(st.sampled_from("abcdefg"), st.sampled_from("abcdefg")), max_size=14),
    forgotten=st.sets(st.sampled_from("abcdefg"), max_size=2),
)
def test_resolve_links_matches_identity_map_applied_in_order(
    pairs: list[tuple[str, str]], forgotten: set[str]
) -> None:
    """The one union-find gives IdentityMap.add's canonical ids, link order included."""
    identity = IdentityMap()
    for user_id, into in pairs:
        if user_id not in forgotten and into not in forgotten:
            identity.add(user_id, into)
    want = {name: identity.canonical_of(name) for name in "abcdefg" if identity.canonical_of(name) != name}
    assert resolve_links(pairs, forgotten=forgotten) == want
    assert IdentityMap.from_pairs(identity.pairs()).pairs() == identity.pairs()


@pytest.mark.parametrize(
    ("pairs", "message"),
    [
        ([("a", "b"), ("a", "")], "identity link 1: expected a pair of non-empty string ids, got ('a', '')"),
        ([("a", "b", "c")], "identity link 0: expected a pair of non-empty string ids, got ('a', 'b', 'c')"),
        ([("a", 7)], "identity link 0: expected a pair of non-empty string ids, got ('a', 7)"),
    ],
)
def test_bad_links_are_refused_with_their_position(pairs: Any, message: str, tmp_path: Path) -> None:
    with pytest.raises(SchemaError) as info:
        resolve_links(pairs)
    assert str(info.value) == message
