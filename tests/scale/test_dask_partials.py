"""The map-side fold of ``score_dataset`` (:mod:`affinity_sdk.scale.partials`): replays folded
once wherever their copies sit (the first copy in lake order, as one ``Scorer`` fed the lake in
order), product lines read only where a revenue-scored event needs them, and buckets without
users. Runs on the synchronous scheduler (the LocalCluster paths are in test_dask.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

pytest.importorskip("dask.dataframe", reason="the [dask] extra (dask[dataframe]) is not installed")
pa = pytest.importorskip("pyarrow", reason="the [dask] extra (pyarrow) is not installed")
pq = pytest.importorskip("pyarrow.parquet")

from affinity_sdk import Scorer, ScoringConfig, default_config  # noqa: E402
from affinity_sdk.ingest.batch import EventBatch  # noqa: E402
from affinity_sdk.scale.dask import score_dataset  # noqa: E402
from affinity_sdk.scale.partials import repeated_ids  # noqa: E402
from affinity_sdk.sim.shop import simulate_shop  # noqa: E402

DAY = 86_400_000


def _single(tables: list[Any], config: ScoringConfig, now: Any = None) -> Any:
    """One Scorer fed the files in lake order."""
    scorer = Scorer(config)
    for table in tables:
        scorer.ingest(EventBatch.from_arrow(table))
    return scorer.score(now).to_pandas().set_index("user_id")


def _same(got: Any, want: Any, config: ScoringConfig) -> None:
    got = got.set_index("user_id")
    assert got.index.is_unique and sorted(got.index) == sorted(want.index)
    got = got.loc[want.index]
    for name in config.signal_names:
        np.testing.assert_allclose(got[name], want[name], rtol=1e-12, atol=0)
    np.testing.assert_allclose(got["raw_score"], want["raw_score"], rtol=1e-12, atol=1e-12)
    assert (got["tier"] == want["tier"]).all()


def _write(tables: list[Any], root: Path) -> list[Path]:
    paths = []
    for i, table in enumerate(tables):
        path = root / f"part-{i}.parquet"
        pq.write_table(table, path, row_group_size=max(1, table.num_rows // 3))
        paths.append(path)
    return paths


def test_replays_fold_their_first_copy_in_lake_order(tmp_path: Path) -> None:
    """Copies of one ``event_id`` that differ (time, user, consent decision) in other files,
    in the same file and three times over: the first copy in lake order folds, the others do
    not, as in one Scorer fed the files in order."""
    sim = simulate_shop(60, weeks=3, horizon_weeks=1, seed=11)
    table = sim.to_arrow()
    rng = np.random.default_rng(3)
    tables = [table.slice(lo, 250) for lo in range(0, table.num_rows, 250)]
    assert len(tables) >= 4
    scored = {"order_completed", "product_added", "app_opened"}
    picks = [
        i
        for i, t in enumerate(tables[0]["type"].to_pylist())
        if t in scored and tables[0]["event_id"][i].is_valid
    ]
    rows = tables[0].take(pa.array(rng.choice(picks, 12, replace=False)))
    later = rows.set_column(
        rows.schema.get_field_index("timestamp"),
        "timestamp",
        pa.compute.add(rows["timestamp"].cast(pa.int64()), 3 * DAY).cast(rows.schema.field("timestamp").type),
    )
    moved = later.set_column(
        rows.schema.get_field_index("user_id"), "user_id", pa.array(["replayer"] * rows.num_rows)
    )
    t0 = int(table["timestamp"].cast(pa.int64()).to_numpy().min())
    consent = [
        {
            "type": "consent_changed",
            "user_id": "dana",
            "timestamp": t0 + DAY,
            "granted": True,
            "event_id": "c1",
        },
        {"type": "app_opened", "user_id": "dana", "timestamp": t0 + 2 * DAY, "event_id": "d1"},
    ]
    replayed_consent = [{**consent[0], "granted": False, "timestamp": t0 + 5 * DAY}]  # a later copy: dropped
    extra = [
        pa.Table.from_pylist(consent, schema=table.schema),
        pa.Table.from_pylist(replayed_consent, schema=table.schema),
    ]
    lake = [
        pa.concat_tables([tables[0], rows.slice(0, 2)]),  # repeats inside the first file
        pa.concat_tables([tables[1], later.slice(0, 6), extra[0]]),
        pa.concat_tables([tables[2], moved.slice(4, 8)]),  # copies under another user id
        pa.concat_tables([*tables[3:], later.slice(0, 3), extra[1]]),  # a third copy
    ]
    config = default_config()
    want = _single(lake, config)
    assert "dana" in want.index and "replayer" not in want.index
    paths = _write(lake, tmp_path)
    for npartitions in (None, 3):
        scores = score_dataset(paths, config, npartitions=npartitions, scheduler="sync")
        _same(scores.compute(scheduler="sync"), want, config)
    # Without dedupe every copy folds: the replayed user appears, and "dana" opts out.
    plain = score_dataset(paths, config, dedupe=False, scheduler="sync").compute(scheduler="sync")
    assert "replayer" in set(plain["user_id"]) and "dana" not in set(plain["user_id"])


def test_product_lines_are_read_where_a_revenue_score_needs_them(tmp_path: Path) -> None:
    """Events scored by revenue without a ``revenue`` take their products' price × quantity, as
    in one process; a config that counts events never needs the product lines."""
    sim = simulate_shop(40, weeks=2, horizon_weeks=1, seed=5)
    table = sim.to_arrow()
    revenue = table["revenue"].to_numpy(zero_copy_only=False)
    types = np.array(table["type"].to_pylist())
    has_products = np.array([bool(p) for p in table["products"].to_pylist()])
    missing = (types == "product_viewed") & has_products & ~np.isnan(revenue)
    assert missing.sum() > 10
    cleared = np.where(missing, np.nan, revenue)
    table = table.set_column(
        table.schema.get_field_index("revenue"), "revenue", pa.array(cleared, mask=np.isnan(cleared))
    )
    half = table.num_rows // 2
    lake = [table.slice(0, half), table.slice(half)]
    paths = _write(lake, tmp_path)
    signals = msgspec.to_builtins(default_config())["signals"]
    signals["product_viewed"]["value"] = "revenue"
    for config in (
        ScoringConfig.from_dict({**msgspec.to_builtins(default_config()), "signals": signals}),
        default_config(),
    ):
        scores = score_dataset(paths, config, npartitions=2, scheduler="sync")
        _same(scores.compute(scheduler="sync"), _single(lake, config), config)


def test_more_buckets_than_users_and_an_explicit_now(tmp_path: Path) -> None:
    sim = simulate_shop(3, weeks=1, horizon_weeks=1, seed=2)
    table = sim.to_arrow()
    paths = _write([table], tmp_path)
    config = default_config()
    now = int(table["timestamp"].cast(pa.int64()).to_numpy().max()) + DAY
    scores = score_dataset(paths, config, now=now, npartitions=16, scheduler="sync")
    assert scores.frame.npartitions == 16 and scores.now_ms == now
    _same(scores.compute(scheduler="sync"), _single([table], config, now), config)


def test_repeated_ids_names_later_copies_per_partition() -> None:
    ids = [np.array([1, 2, 2], np.uint64), np.array([3, 1], np.uint64), np.array([2, 3, 4, 4], np.uint64)]
    got = repeated_ids(*ids)
    assert sorted(got) == [0, 1, 2]
    assert got[0][0].tolist() == [] and got[0][1].tolist() == [2]
    assert got[1][0].tolist() == [1] and got[1][1].tolist() == []
    assert got[2][0].tolist() == [2, 3] and got[2][1].tolist() == [4]
    assert repeated_ids(np.array([5], np.uint64), np.array([6], np.uint64)) == {}
    assert repeated_ids(np.zeros(0, np.uint64)) == {}


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(st.integers(1, 12), max_size=20), min_size=1, max_size=4))
def test_repeated_ids_agree_with_a_first_seen_set(parts: list[list[int]]) -> None:
    """Every later copy of an id is named once for its partition: under "earlier" when the
    first copy lies in an earlier partition, else under "own"."""
    arrays = [np.array(p, np.uint64) for p in parts]
    first: dict[int, int] = {}
    expect: dict[int, tuple[set[int], set[int]]] = {}
    for i, part in enumerate(parts):
        for x in part:
            if x in first:
                earlier, own = expect.setdefault(i, (set(), set()))
                (earlier if first[x] < i else own).add(x)
            else:
                first[x] = i
    got = repeated_ids(*arrays)
    assert sorted(got) == sorted(expect)
    for i, (earlier, own) in got.items():
        assert (set(earlier.tolist()), set(own.tolist())) == expect[i]
        assert sorted(earlier.tolist()) == earlier.tolist() and sorted(own.tolist()) == own.tolist()


@pytest.mark.parametrize("gather", [0, 64, 1 << 16])
def test_radix_select_is_exact_with_or_without_fetching_the_candidates(
    gather: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every round by histograms (``GATHER`` 0), candidates fetched after some rounds, or after
    the first: the kernel's exact order statistics, ties and signs included."""
    import dask.dataframe as dd
    import pandas as pd

    from affinity_sdk import kernels
    from affinity_sdk.scale import quantiles

    monkeypatch.setattr(quantiles, "GATHER", gather)
    rng = np.random.default_rng(9)
    values = np.concatenate([rng.normal(0, 5, 3000), np.full(400, 2.5), -np.abs(rng.normal(0, 1e-300, 50))])
    rng.shuffle(values)
    frame = dd.from_pandas(pd.DataFrame({"raw_score": values}), npartitions=5)
    fractions = np.array([0.0, 0.3, 0.6, 0.9, 0.999, 1.0])
    got, n = quantiles.radix_select(frame, fractions, "raw_score", {"scheduler": "sync"})
    assert n == values.shape[0]
    assert got.tolist() == kernels.quantile_cutoffs(values, fractions, backend="reference").tolist()
