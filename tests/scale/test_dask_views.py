"""Every view of the profile store on Dask (``fold_dataset``): each input partition folded into its
own store, the stores merged in a tree, equals one store fed the whole lake in one batch: decayed
sums to 1e-12 relative, counts, flags, catalogues and interners exactly, with consent flips,
replays split across files, identity links and forgotten ids."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("dask.dataframe", reason="the [dask] extra (dask[dataframe]) is not installed")
distributed = pytest.importorskip("distributed", reason="the [dask] extra (distributed) is not installed")
pytest.importorskip("pyarrow", reason="the [dask] extra (pyarrow) is not installed")

from affinity_sdk.capture.events import (  # noqa: E402
    ConsentChanged,
    MessageClicked,
    MessageDelivered,
    MessageOpened,
    MessageSent,
)
from affinity_sdk.errors import AffinityError, ConfigError  # noqa: E402
from affinity_sdk.ingest.batch import EventBatch, Interners, concat_batches, take_rows  # noqa: E402
from affinity_sdk.profile.store import VIEW_NAMES, ProfileStore  # noqa: E402
from affinity_sdk.scale.dask import fold_dataset  # noqa: E402
from affinity_sdk.sim.shop import ShopSimulation, simulate_shop  # noqa: E402

#: Arrays indexed by a catalogue code, not a profile code (compared as they are).
CATALOGUE_ARRAYS = {
    "affinity.price_cuts",
    "products.category",
    "products.brand",
    "products.price",
    "products.seen_ms",
}
#: Sections that hold no view state (the event journal and id window are checked by replays).
SKIPPED = ("journal.", "dedupe.", "suppression.", "flags.retired")


@pytest.fixture(scope="module")
def sim() -> ShopSimulation:
    return simulate_shop(120, weeks=4, horizon_weeks=1, seed=21)


def _extras(sim: ShopSimulation) -> list[Any]:
    """Message events on every medium (the engagement view), and consent flips where the latest
    decision sits in another file than the user's other events, one tie at the same ms."""
    users = sorted(set(sim.batch.interners.users.names))
    t = int(sim.batch.ts_ms.max())
    events: list[Any] = []
    rng = np.random.default_rng(4)
    kinds = (MessageSent, MessageDelivered, MessageOpened, MessageClicked)
    for i in range(300):
        kind = kinds[int(rng.integers(4))]
        events.append(
            kind(
                user_id=users[int(rng.integers(40))],
                timestamp=t - int(rng.integers(0, 30 * 86_400_000)),
                medium=("email", "sms", "push", "in_app")[int(rng.integers(4))],
                event_id=f"m{i}",
            )
        )
    events += [
        ConsentChanged(user_id=users[0], timestamp=t - 10, granted=False),  # opted out
        ConsentChanged(user_id=users[1], timestamp=t - 10, granted=False),
        ConsentChanged(user_id=users[1], timestamp=t - 5, granted=True),  # back in
        ConsentChanged(user_id=users[2], timestamp=t - 7, granted=True),
        ConsentChanged(user_id=users[2], timestamp=t - 7, granted=False),  # a tie: revoked
        ConsentChanged(user_id=users[3], timestamp=t - 3, granted=False, medium="email"),
    ]
    return events


def _write_lake(sim: ShopSimulation, root: Path, n_files: int = 4) -> tuple[Path, list[Path]]:
    """The simulator's events and the extras split over ``n_files`` Parquet files, with a block
    of events replayed (same ``event_id``) in the last file: replays across partitions."""
    extra = EventBatch.from_events(_extras(sim), sim.batch.interners)
    whole = concat_batches([sim.batch, extra], sim.batch.interners)
    n = len(whole)
    rng = np.random.default_rng(7)
    order = rng.permutation(n)
    replay = order[: n // 10]
    root.mkdir(exist_ok=True)
    files = []
    for i, rows in enumerate(np.array_split(order, n_files)):
        if i == n_files - 1:
            rows = np.concatenate([rows, replay])
        keep = np.zeros(n, dtype=np.bool_)
        keep[rows] = True
        part = take_rows(whole, keep)
        path = root / f"part-{i}.parquet"
        part.to_parquet(path, row_group_size=max(1, len(part) // 3))
        files.append(path)
    return root, files


def _one_store(
    files: list[Path],
    views: tuple[Any, ...] = VIEW_NAMES,
    links: list[tuple[str, str]] = (),  # type: ignore[assignment]
    forgotten: dict[str, int] | None = None,
) -> ProfileStore:
    """One store: forgets first, then links, then the lake's files in order as one batch."""
    store = ProfileStore(views=views, backend="reference")
    for user_id, at in (forgotten or {}).items():
        store.forget(user_id, at=at)
    for user_id, into in links:
        store.link(user_id, into)
    names = Interners()
    store.ingest(concat_batches([EventBatch.from_parquet(f, names) for f in files], names))
    return store


def snapshot(store: ProfileStore) -> tuple[list[str], dict[str, np.ndarray], dict[str, list[str]]]:
    """Every view's state with profile codes replaced by the rank of the visible users' sorted
    ids (invisible profiles left out), the catalogue arrays and the catalogue interners."""
    header, arrays = store.to_container()
    names = store.interners.users.names
    visible = store.visible()
    ids = sorted(names[c] for c in np.flatnonzero(visible).tolist())
    rank = np.full(store.n_users, -1, dtype=np.int64)
    for r, user_id in enumerate(ids):
        rank[store.interners.users.lookup(user_id)] = r
    order = np.argsort(rank)[np.sort(rank) >= 0]  # codes of the visible users, by id
    out: dict[str, np.ndarray] = {}
    keyed = {k for k in arrays if k.endswith("keys")}
    siblings = {  # sparse tables: keys "u << 32 | value" and their value rows
        key: [k for k in arrays if k.startswith(key[:-4]) and k not in keyed and k not in CATALOGUE_ARRAYS]
        for key in keyed
    }
    for name, array in arrays.items():
        if name in CATALOGUE_ARRAYS:
            out[name] = array
        if name.startswith(SKIPPED) or name in CATALOGUE_ARRAYS or any(name in v for v in siblings.values()):
            continue
        if name in keyed:
            users = rank[array >> 32]
            kept = np.flatnonzero(users >= 0)
            new_keys = (users[kept] << 32) | (array[kept] & 0xFFFFFFFF)
            sort = np.argsort(new_keys, kind="stable")
            out[name] = new_keys[sort]
            for sibling in siblings[name]:
                out[sibling] = arrays[sibling][kept][sort]
            continue
        assert array.shape[0] == store.n_users, name
        out[name] = array[order]
    catalogues = {
        kind: list(getattr(store.interners, kind).names)
        for kind in ("products", "categories", "brands", "campaigns")
    }
    catalogues["propensity.categories"] = list(header["views"].get("propensity", {}).get("categories", []))
    return ids, out, catalogues


def assert_same_store(got: ProfileStore, want: ProfileStore) -> None:
    ids_got, arrays_got, cat_got = snapshot(got)
    ids_want, arrays_want, cat_want = snapshot(want)
    assert ids_got == ids_want
    assert cat_got == cat_want
    assert arrays_got.keys() == arrays_want.keys()
    for name, want_array in arrays_want.items():
        array = arrays_got[name]
        assert array.shape == want_array.shape, name
        fields = want_array.dtype.names or (None,)
        for field in fields:
            a = array if field is None else array[field]
            b = want_array if field is None else want_array[field]
            if b.dtype.kind == "f":
                np.testing.assert_allclose(
                    a, b, rtol=1e-12, atol=0, equal_nan=True, err_msg=f"{name} {field}"
                )
            else:
                np.testing.assert_array_equal(a, b, err_msg=f"{name} {field}")
    assert got.events_ingested == want.events_ingested
    assert got.latest_ms == want.latest_ms
    assert got.identity.pairs() == want.identity.pairs()
    for user_id in ids_want:
        assert got.code_of(user_id) is not None


def test_every_view_equals_one_store_with_consent_and_replays_across_files(
    sim: ShopSimulation, tmp_path: Path
) -> None:
    root, files = _write_lake(sim, tmp_path / "lake")
    got = fold_dataset(root, rows_per_partition=1, scheduler="sync", split_every=3)
    want = _one_store(files)
    assert_same_store(got, want)
    users = sorted(set(sim.batch.interners.users.names))
    assert got.code_of(users[0]) is None and got.code_of(users[2]) is None  # opted out
    assert got.code_of(users[1]) is not None
    revoked = got.to_container()[1]["medium_consent.revoked"]
    assert revoked[got.interners.users.lookup(users[3])].tolist() == [True, False, False, False, False]
    # Replays with an event id are counted once; a replayed event without one is a new event.
    extra = EventBatch.from_events(_extras(sim), sim.batch.interners)
    whole = concat_batches([sim.batch, extra], sim.batch.interners)
    replayed = np.random.default_rng(7).permutation(len(whole))[: len(whole) // 10]
    no_id = int((whole.event_id[replayed] == 0).sum())
    assert got.events_ingested == len(whole) + no_id


def test_one_view_at_a_time_engagement_and_products(sim: ShopSimulation, tmp_path: Path) -> None:
    from affinity_sdk.models.channels import channel_table
    from affinity_sdk.models.recommend import Recommender

    root, files = _write_lake(sim, tmp_path / "lake", n_files=3)
    for views in (("engagement",), ("products",), ("signals", "propensity"), ("affinity",)):
        got = fold_dataset(root, views=views, scheduler="sync")
        assert_same_store(got, _one_store(files, views))
    got = fold_dataset(root, views=("engagement", "products"), scheduler="sync")
    want = _one_store(files, ("engagement", "products"))
    channels = _rows(channel_table(got), ("user_id",))
    assert channels.keys() == _rows(channel_table(want), ("user_id",)).keys()
    _assert_rows_close(channels, _rows(channel_table(want), ("user_id",)))
    assert len(channels) > 20
    recs = _rows(Recommender(got).recommend_all(k=5), ("user_id", "rank"))
    _assert_rows_close(recs, _rows(Recommender(want).recommend_all(k=5), ("user_id", "rank")))
    assert len(recs) > 20


def _rows(table: dict[str, Any], key: tuple[str, ...]) -> dict[tuple[Any, ...], tuple[Any, ...]]:
    """A column table as {key columns: the other columns}."""
    columns = list(table)
    n = len(table[columns[0]])
    rest = [c for c in columns if c not in key]
    return {tuple(table[c][i] for c in key): tuple(table[c][i] for c in rest) for i in range(n)}


def _assert_rows_close(got: dict[Any, tuple[Any, ...]], want: dict[Any, tuple[Any, ...]]) -> None:
    assert got.keys() == want.keys()
    for key, row in want.items():
        for a, b in zip(got[key], row, strict=True):
            if isinstance(b, float | np.floating):
                assert a == pytest.approx(b, rel=1e-9, nan_ok=True), key
            else:
                assert a == b, key


def test_identity_links_and_forgotten_ids(sim: ShopSimulation, tmp_path: Path) -> None:
    root, files = _write_lake(sim, tmp_path / "lake")
    users = sorted(set(sim.batch.interners.users.names))
    t = int(sim.batch.ts_ms.max())
    links = [
        (users[10], users[11]),
        (users[12], users[10]),  # a chain: 12 -> 10 -> 11
        (users[13], "ghost"),  # into an id with no events
        (users[14], users[20]),  # 20 is forgotten: never linked
    ]
    forgotten = {users[20]: t + 1, users[21]: int(np.median(sim.batch.ts_ms))}  # 21 comes back later
    got = fold_dataset(root, links=links, forgotten=forgotten, scheduler="sync")
    want = _one_store(files, links=links, forgotten=forgotten)
    assert_same_store(got, want)
    assert got.code_of(users[12]) == got.code_of(users[11]) is not None
    assert got.code_of("ghost") == got.code_of(users[13]) is not None
    assert got.interners.users.lookup(users[20]) is None
    assert got.code_of(users[14]) is not None and got.code_of(users[14]) != got.code_of(users[20])
    code = got.interners.users.lookup(users[21])
    assert code is not None and got.code_of(users[21]) is None  # reborn, opted out until a grant
    # a store's own suppression carries the same forgets
    seed = ProfileStore(views=("signals",))
    for user_id, at in forgotten.items():
        seed.forget(user_id, at=at)
    again = fold_dataset(root, links=links, forgotten=seed.suppression, scheduler="sync")
    assert_same_store(again, want)


def test_on_a_two_process_local_cluster(sim: ShopSimulation, tmp_path: Path) -> None:
    root, files = _write_lake(sim, tmp_path / "lake")
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster),
    ):
        got = fold_dataset(root, rows_per_partition=1, links=[(sim.batch.interners.users.names[5], "ghost")])
    assert_same_store(got, _one_store(files, links=[(sim.batch.interners.users.names[5], "ghost")]))


def test_bad_arguments_raise_affinity_errors(tmp_path: Path) -> None:
    path = tmp_path / "e.parquet"
    EventBatch.from_ndjson(b'{"type":"app_opened","user_id":"u","timestamp":5}').to_parquet(path)
    with pytest.raises(ConfigError, match="views must be distinct"):
        fold_dataset(path, views=("signals", "signals"), scheduler="sync")
    with pytest.raises(ConfigError, match="split_every"):
        fold_dataset(path, split_every=1, scheduler="sync")
    with pytest.raises(ConfigError, match="another key"):
        fold_dataset(path, forgotten=ProfileStore(suppression_key=b"k" * 16).suppression, scheduler="sync")
    with pytest.raises(AffinityError, match="one string"):
        fold_dataset(path, forgotten="ann", scheduler="sync")  # type: ignore[arg-type]
