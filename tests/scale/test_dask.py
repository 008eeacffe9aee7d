"""Scale-out on Dask: a LocalCluster with two worker processes gives the single-process results.

The events of a simulated shop are shuffled into random order and spread over several Parquet /
NDJSON files (and row groups), scored on the cluster and compared user by user with one
``Scorer`` fed the same events: values to 1e-9 relative, tiers identical, cut-offs equal to the
exact quantiles of the scores.
"""

from __future__ import annotations

import itertools
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

pytest.importorskip("dask.dataframe", reason="the [dask] extra (dask[dataframe]) is not installed")
distributed = pytest.importorskip("distributed", reason="the [dask] extra (distributed) is not installed")
pa = pytest.importorskip("pyarrow", reason="the [dask] extra (pyarrow) is not installed")
pq = pytest.importorskip("pyarrow.parquet")

from affinity_sdk import Scorer, ScoringConfig, default_config, kernels  # noqa: E402
from affinity_sdk.config import AffinityConfig  # noqa: E402
from affinity_sdk.errors import SchemaError  # noqa: E402
from affinity_sdk.ingest.batch import EventBatch  # noqa: E402
from affinity_sdk.models.affinity import AffinityModel, affinities_table  # noqa: E402
from affinity_sdk.scale.dask import (  # noqa: E402
    DaskAffinities,
    DaskScores,
    exact_quantile_cutoffs,
    read_events,
    score_affinities,
    score_dataset,
    score_propensity,
)
from affinity_sdk.sim.shop import ShopSimulation, simulate_shop  # noqa: E402

SEED = 20261123
RTOL = 1e-9


@pytest.fixture(scope="module")
def client() -> Any:
    cluster = distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0", memory_limit="1GiB"
    )
    try:
        with distributed.Client(cluster) as c:
            yield c
    finally:
        cluster.close()


@pytest.fixture(scope="module")
def sim() -> ShopSimulation:
    return simulate_shop(250, weeks=4, horizon_weeks=1, seed=7)


def _expected(sim: ShopSimulation, config: ScoringConfig, now: Any = None, extra: bytes = b"") -> Any:
    """One Scorer fed every event (only users with events exist, as in the lake)."""
    scorer = Scorer(config)
    scorer.ingest(list(sim.iter_events()))
    if extra:
        scorer.ingest(extra)
    return scorer.score(now).to_pandas().set_index("user_id")


def _check_same(scores: DaskScores, expected: Any, config: ScoringConfig) -> Any:
    got = scores.compute().set_index("user_id")
    assert got.index.is_unique
    assert sorted(got.index) == sorted(expected.index)
    assert scores.n_users == len(expected)
    got = got.loc[expected.index]
    assert list(got.columns) == list(expected.columns)
    for name in config.signal_names:
        np.testing.assert_allclose(got[name], expected[name], rtol=RTOL, atol=0)
    # raw_score is a signed sum, so its error is relative to the size of its terms.
    terms = (expected[list(config.signal_names)].abs() * np.abs(config.weights)).sum(axis=1)
    assert np.all(np.abs(got["raw_score"] - expected["raw_score"]) <= RTOL * terms)
    np.testing.assert_allclose(got["score"], expected["score"], rtol=RTOL, atol=1e-12)
    assert (got["tier"] == expected["tier"]).all()
    return got


def _shuffled_arrow(sim: ShopSimulation, seed: int) -> Any:
    table = sim.to_arrow()
    order = np.random.default_rng(seed).permutation(table.num_rows)
    return table.take(pa.array(order))


def _write_parquet_lake(sim: ShopSimulation, root: Path, seed: int, n_files: int = 4) -> Path:
    """Events in random order over ``n_files`` files of uneven size with small row groups."""
    table = _shuffled_arrow(sim, seed)
    rng = np.random.default_rng(seed + 1)
    bounds = np.sort(rng.choice(np.arange(1, table.num_rows), n_files - 1, replace=False))
    lake = root / "lake"
    lake.mkdir()
    for i, (lo, hi) in enumerate(zip([0, *bounds], [*bounds, table.num_rows], strict=True)):
        pq.write_table(table.slice(lo, hi - lo), lake / f"part-{i}.parquet", row_group_size=700)
    return lake


def _write_ndjson_lake(lines: list[bytes], root: Path, seed: int, n_files: int = 3) -> Path:
    order = np.random.default_rng(seed).permutation(len(lines))
    lake = root / "ndjson"
    lake.mkdir()
    for i, chunk in enumerate(np.array_split(order, n_files)):
        (lake / f"events-{i}.ndjson").write_bytes(b"".join(lines[j] for j in chunk.tolist()))
    return lake


# --- on the LocalCluster ---------------------------------------------------------------------
def test_parquet_lake_in_random_order_matches_single_process(
    client: Any, sim: ShopSimulation, tmp_path: Path
) -> None:
    print(f"seed={SEED}")
    lake = _write_parquet_lake(sim, tmp_path, SEED)
    config = default_config()
    scores = score_dataset(lake, config, npartitions=3, rows_per_partition=1000)
    expected = _expected(sim, config)
    got = _check_same(scores, expected, config)
    assert scores.now_ms == int(sim.batch.ts_ms.max())
    assert scores.frame.npartitions == 3
    # Tiers are cut at the exact quantiles of all users' raw scores, not per partition.
    exact = kernels.quantile_cutoffs(
        got["raw_score"].to_numpy(), np.array([config.tiers.medium, config.tiers.high]), backend="reference"
    )
    assert scores.cut_up.tolist() == exact.tolist() == scores.cut_down.tolist()
    counts = got["tier"].value_counts()
    assert counts["high"] == np.ceil(len(got) * 0.1 - 1e-9)
    # Written as a partitioned Parquet dataset with the provenance of every ScoreResult export.
    out = tmp_path / "scores"
    scores.to_parquet(out)
    files = sorted(out.glob("*.parquet"))
    assert len(files) == 3
    assert pq.read_table(out).num_rows == scores.n_users
    metadata = pq.read_metadata(files[0]).metadata
    assert metadata[b"config_fingerprint"] == config.fingerprint.encode()
    assert metadata[b"now_ms"] == str(scores.now_ms).encode()


def test_ndjson_lake_with_replays_hysteresis_consent_and_explicit_now(
    client: Any, sim: ShopSimulation, tmp_path: Path
) -> None:
    # A user who revokes consent in one file and grants it again later in another is scored
    # (the latest consent event wins); one who revokes last is not.
    day = 86_400_000
    t0 = int(sim.batch.ts_ms.min())
    extra_events = [
        {"type": "app_opened", "user_id": "flip", "timestamp": t0 + 3 * day},
        {"type": "consent_changed", "user_id": "flip", "timestamp": t0 + day, "granted": False},
        {"type": "consent_changed", "user_id": "flip", "timestamp": t0 + 2 * day, "granted": True},
        {"type": "app_opened", "user_id": "gone", "timestamp": t0 + 3 * day},
        {"type": "consent_changed", "user_id": "gone", "timestamp": t0 + 4 * day, "granted": False},
        {"type": "consent_changed", "user_id": "gone", "timestamp": t0 + 2 * day, "granted": True},
    ]
    extra = [msgspec.json.encode(e) + b"\n" for e in extra_events]
    lines = [msgspec.json.encode(e) + b"\n" for e in sim.iter_events()]
    # Replays: 200 events delivered twice, the copies landing in other files; each folds once.
    replays = np.random.default_rng(SEED + 5).choice(len(lines), 200, replace=False)
    lines += [lines[i] for i in replays.tolist()] + extra
    lake = _write_ndjson_lake(lines, tmp_path, SEED + 2)
    config = ScoringConfig.from_dict(
        {**msgspec.to_builtins(default_config()), "tiers": {"high": 0.9, "medium": 0.6, "hysteresis": 0.05}}
    )
    now = "2026-02-10T12:00:00Z"
    scores = score_dataset(lake, config, now=now, npartitions=4, shuffle_method="tasks", blocksize=200_000)
    expected = _expected(sim, config, now, b"".join(extra))
    got = _check_same(scores, expected, config)
    assert "flip" in got.index and "gone" not in got.index
    assert scores.cut_up[0] > scores.cut_down[0] and scores.cut_up[1] > scores.cut_down[1]


def test_dask_dataframe_input_with_absolute_tiers(client: Any, sim: ShopSimulation) -> None:
    import dask.dataframe as dd

    flat = _shuffled_arrow(sim, SEED + 3).drop_columns(["products"]).to_pandas()
    events = dd.from_pandas(flat, npartitions=4)
    config = ScoringConfig.from_dict(
        {
            **msgspec.to_builtins(default_config()),
            "tiers": {"method": "absolute", "high": 60.0, "medium": 25.0},
        }
    )
    scores = score_dataset(events, config)
    _check_same(scores, _expected(sim, config), config)


def test_propensity_on_a_parquet_lake_matches_score_batch(
    client: Any, sim: ShopSimulation, tmp_path: Path
) -> None:
    from affinity_sdk.models.propensity import PropensityModel, TierSpec, build_training_set

    data = build_training_set(sim.batch, "purchase", [sim.end_ms - 7 * 86_400_000], "1w")
    model = PropensityModel.fit(data)
    lake = _write_parquet_lake(sim, tmp_path, SEED + 6, n_files=3)
    spec = TierSpec(method="quantile", high=0.8, medium=0.5)
    result = score_propensity(lake, model, now=sim.end_ms, tiers=spec, npartitions=3, rows_per_partition=1500)
    got = result.compute().set_index("user_id")

    # The simulation has opted-out users: they get no row, so compare with the consenting ones.
    out = _opted_out(sim.batch)
    assert out
    batch = EventBatch.from_events(e for e in sim.iter_events() if e.user_id not in out)
    p, seen = model.score_batch(batch, sim.end_ms)
    tiers = model.tiers(p, spec)
    users = list(batch.interners.users.names)
    assert sorted(got.index) == sorted(users) and result.n_users == len(users)
    got = got.loc[users]
    np.testing.assert_allclose(got["probability"], p, rtol=RTOL, atol=1e-15)
    assert got["seen"].tolist() == seen.tolist()
    assert got["tier"].tolist() == np.array(["low", "medium", "high"])[tiers].tolist()


def test_propensity_refuses_population_fitted_features(sim: ShopSimulation) -> None:
    from affinity_sdk.models.propensity import FeatureSpec, PropensityModel, build_training_set

    spec = FeatureSpec(bgnbd=True)
    data = build_training_set(sim.batch, "purchase", [sim.end_ms - 7 * 86_400_000], "1w", spec=spec)
    with pytest.raises(ValueError, match="BG/NBD"):
        score_propensity("unused/", PropensityModel.fit(data))


def _affinity_extras(sim: ShopSimulation, schema: Any) -> Any:
    """Events that make the lake order matter: user ``tie`` views two products of brands and
    categories nobody else has at the same instant (exact ties: the value seen first in the lake
    wins), and product ``flux`` is listed at two prices (the first listed one fits the cuts of
    its category, ``flux-cat``)."""
    t0 = int(sim.batch.ts_ms.min())

    def view(user: str, ts: int, product: str, category: str, brand: str, price: float) -> dict[str, Any]:
        line = {"product_id": product, "category": category, "brand": brand, "price": price, "quantity": 1}
        return {"type": "product_viewed", "user_id": user, "timestamp": ts, "products": [line]}

    rows = [
        view("tie", t0 + 5_000, "tie-p1", "tie-cat-1", "tie-brand-1", 5.0),
        view("tie", t0 + 5_000, "tie-p2", "tie-cat-2", "tie-brand-2", 5.0),
        view("flux-1", t0 + 1_000, "flux", "flux-cat", "flux-brand", 1.0),
        view("flux-2", t0 + 2_000, "flux", "flux-cat", "flux-brand", 10_000.0),
        view("flux-2", t0 + 3_000, "flux-a", "flux-cat", "flux-brand", 5.0),
        view("flux-1", t0 + 4_000, "flux-b", "flux-cat", "flux-brand", 6.0),
    ]
    return pa.Table.from_pylist(rows, schema=schema).cast(schema)


def _check_affinities(result: DaskAffinities, model: AffinityModel, dimension: Any, k: int) -> Any:
    """Same rows (user, rank, value) as ``affinities_table`` and affinities to 1e-9 relative."""
    expected = affinities_table(model, dimension, k, result.now_ms)
    got = result.compute().sort_values(["user_id", "rank"], kind="stable").reset_index(drop=True)
    order = sorted(
        range(len(expected["user_id"])), key=lambda i: (expected["user_id"][i], expected["rank"][i])
    )
    assert got["user_id"].tolist() == [expected["user_id"][i] for i in order]
    assert got["rank"].tolist() == [expected["rank"][i] for i in order]
    assert got["value"].tolist() == [expected["value"][i] for i in order]
    np.testing.assert_allclose(got["affinity"], [expected["affinity"][i] for i in order], rtol=RTOL, atol=0)
    assert result.n_users == len(set(expected["user_id"]))
    s = model.scores(dimension, result.now_ms)
    share = dict(zip(s.names, s.population_share.tolist(), strict=False))
    np.testing.assert_allclose(result.population_share, [share[v] for v in result.values], rtol=RTOL, atol=0)
    return got


def test_affinities_of_a_parquet_lake_match_the_single_process_model(
    client: Any, sim: ShopSimulation, tmp_path: Path
) -> None:
    table = _shuffled_arrow(sim, SEED + 7)
    table = pa.concat_tables([table, _affinity_extras(sim, table.schema)])
    table = table.take(pa.array(np.random.default_rng(SEED + 8).permutation(table.num_rows)))
    lake = tmp_path / "lake"
    lake.mkdir()
    for i, chunk in enumerate(np.array_split(np.arange(table.num_rows), 4)):
        pq.write_table(table.take(pa.array(chunk)), lake / f"part-{i}.parquet", row_group_size=600)
    # One model fed the lake in one batch, in the order Dask reads it (files, then row groups).
    model = AffinityModel().ingest(EventBatch.from_arrow(pq.read_table(lake)))
    k = 3
    results = {}
    for dimension in ("category", "brand", "price_band"):
        result = score_affinities(lake, dimension=dimension, k=k, npartitions=3, rows_per_partition=1500)
        assert result.now_ms == model.last_ms
        assert result.frame.npartitions == 3
        results[dimension] = _check_affinities(result, model, dimension, k)
    # Price cut points are the model's, fitted on the whole catalogue (each product at its
    # first listed price, so "flux" counts at the price of its first line in the lake).
    names = model.interners.categories.names if model.interners is not None else ()
    assert list(result.categories) == list(names)  # same codes: first appearance in the lake
    np.testing.assert_array_equal(result.price_cuts, model.price_cuts_[: len(names)])
    # The tied values come out in the model's order (first seen in the lake), and the lake order
    # of "flux"'s two prices decides the cut points of its category.
    for dimension in ("category", "brand"):
        tie = results[dimension].query("user_id == 'tie'")
        assert len(tie) == 2 and tie["affinity"].nunique() == 1
        assert tie["value"].tolist() == [v for v, _ in model.top_affinities("tie", dimension, k=2)]
    flux = list(result.categories).index("flux-cat")
    first_price_low = np.allclose(result.price_cuts[flux], [11 / 3, 16 / 3])  # flux at 1.0 first
    assert first_price_low or np.allclose(result.price_cuts[flux], [17 / 3, 10_012 / 3])


def test_affinities_of_an_ndjson_lake_with_a_config_and_explicit_now(
    client: Any, sim: ShopSimulation, tmp_path: Path
) -> None:
    lines = [msgspec.json.encode(e) + b"\n" for e in sim.iter_events()]
    lake = _write_ndjson_lake(lines, tmp_path, SEED + 9)
    config = AffinityConfig(shrinkage=8.0, price_quantiles=(0.25, 0.75))
    scoring = ScoringConfig.from_dict({**msgspec.to_builtins(default_config()), "affinity": config})
    now = "2026-02-10T12:00:00Z"
    result = score_affinities(
        lake,
        scoring,
        dimension="price_band",
        k=2,
        now=now,
        npartitions=2,
        shuffle_method="tasks",
        blocksize=150_000,
    )
    data = b"".join(path.read_bytes() for path in sorted(lake.iterdir()))
    model = AffinityModel(config).ingest(EventBatch.from_ndjson(data))
    assert result.config == config
    got = _check_affinities(result, model, "price_band", 2)
    out = tmp_path / "affinities"
    result.to_parquet(out)
    assert pq.read_table(out).num_rows == len(got)
    metadata = pq.read_metadata(sorted(out.glob("*.parquet"))[0]).metadata
    assert metadata[b"dimension"] == b"price_band"
    assert metadata[b"now_ms"] == str(result.now_ms).encode()


def test_score_affinities_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="unknown dimension"):
        score_affinities("unused/", dimension="colour")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="k must be >= 0"):
        score_affinities("unused/", dimension="brand", k=-1)


# --- without a cluster (synchronous scheduler) ------------------------------------------------
@settings(max_examples=40, deadline=None)
@given(
    values=st.lists(
        st.one_of(
            st.floats(allow_nan=False, allow_infinity=False, width=64),
            st.sampled_from([0.0, -0.0, 1.0, -1.0, 5e-324]),
        ),
        min_size=0,
        max_size=60,
    ),
    cuts=st.lists(st.integers(0, 60), max_size=4),
    fractions=st.lists(st.floats(0.0, 1.0), min_size=1, max_size=6),
)
def test_exact_quantile_cutoffs_equal_the_single_process_kernel(
    values: list[float], cuts: list[int], fractions: list[float]
) -> None:
    import dask.dataframe as dd
    import pandas as pd

    array = np.array(values, dtype=np.float64)
    bounds = sorted({min(c, len(values)) for c in cuts} | {0, len(values)})
    parts = [pd.DataFrame({"raw_score": array[lo:hi]}) for lo, hi in itertools.pairwise(bounds)]
    frame = dd.from_pandas(pd.DataFrame({"raw_score": array}), npartitions=1)
    if len(parts) > 1:
        frame = dd.concat([dd.from_pandas(p, npartitions=1) for p in parts])
    got = exact_quantile_cutoffs(frame, fractions, scheduler="sync")
    expected = kernels.quantile_cutoffs(array, np.array(fractions), backend="reference")
    assert got.tolist() == expected.tolist()  # -0.0 == 0.0, so a signed zero passes either way


def test_affinities_read_each_input_partition_once(
    sim: ShopSimulation, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import dask

    import affinity_sdk.scale.lake as module

    lake = _write_parquet_lake(sim, tmp_path, SEED + 11)
    reads: list[tuple[str, tuple[int, ...]]] = []
    read = module._read_parquet_part

    def counted(path: str, row_groups: list[int], *args: Any) -> Any:
        reads.append((path, tuple(row_groups)))
        return read(path, row_groups, *args)

    monkeypatch.setattr(module, "_read_parquet_part", counted)
    with dask.config.set(scheduler="sync"):
        result = score_affinities(
            lake, dimension="brand", k=2, shuffle_method="tasks", rows_per_partition=1500
        )
        # The catalogue pass and the shuffle by user share the reads; the table is built on
        # persisted engagement.
        _check_affinities(
            result, AffinityModel().ingest(EventBatch.from_arrow(pq.read_table(lake))), "brand", 2
        )
    assert len(reads) > 4 and len(set(reads)) == len(reads)


def test_affinities_of_a_dask_dataframe_with_product_lists(sim: ShopSimulation) -> None:
    import dask
    import dask.dataframe as dd
    import pandas as pd

    table = _shuffled_arrow(sim, SEED + 12)
    # Product lists stay Arrow lists in pandas (ArrowDtype); a column of Python lists would be
    # turned into strings by Dask and refused with a SchemaError naming `$.products`.
    events = dd.from_pandas(table.to_pandas(types_mapper=pd.ArrowDtype), npartitions=3)
    with dask.config.set(scheduler="sync"):
        result = score_affinities(events, dimension="category", k=2, shuffle_method="tasks")
        _check_affinities(result, AffinityModel().ingest(EventBatch.from_arrow(table)), "category", 2)
        as_text = dd.from_pandas(table.to_pandas(), npartitions=3)
        with pytest.raises(SchemaError, match=r"at `\$\.products`"):
            score_affinities(as_text, dimension="category", k=2).compute()


def test_unknown_event_type_names_row_and_value(tmp_path: Path) -> None:
    table = pa.table(
        {
            "type": ["app_opened", "teleported"],
            "user_id": ["a", "b"],
            "timestamp": pa.array([1_700_000_000_000, 1_700_000_000_001], pa.int64()),
        }
    )
    pq.write_table(table, tmp_path / "bad.parquet")
    with pytest.raises(SchemaError, match=r"Unknown event type 'teleported' - at `\$\[1\]\.type`"):
        read_events(tmp_path / "bad.parquet").compute(scheduler="sync")


def test_missing_user_id_column_is_a_schema_error(tmp_path: Path) -> None:
    pq.write_table(pa.table({"type": ["app_opened"], "timestamp": [1]}), tmp_path / "e.parquet")
    with pytest.raises(SchemaError, match="missing required field `user_id`"):
        read_events(tmp_path / "e.parquet").compute(scheduler="sync")


def test_parquet_timestamps_and_consent_columns_are_read_exactly(tmp_path: Path) -> None:
    ts = [1_700_000_000_123, 1_700_000_000_999, 1_700_000_001_000]
    table = pa.table(
        {
            "type": ["order_completed", "consent_changed", "consent_changed"],
            "user_id": ["a", "a", "b"],
            "timestamp": pa.array(ts, pa.int64())
            .cast(pa.timestamp("ms", tz="UTC"))
            .cast(pa.timestamp("us", "UTC")),
            "revenue": pa.array([12.5, None, None], pa.float64()),
            "granted": pa.array([None, False, True], pa.bool_()),
        }
    )
    pq.write_table(table, tmp_path / "e.parquet")
    events = read_events(tmp_path / "e.parquet").compute(scheduler="sync")
    assert events["ts_ms"].tolist() == ts
    assert events["consent"].tolist() == [-1, 0, 1]
    assert events["revenue"].iloc[0] == 12.5 and np.isnan(events["revenue"].iloc[1])


def test_functions_raise_a_clear_import_error_without_dask() -> None:
    code = textwrap.dedent(
        """
        import sys
        for name in ("dask", "dask.dataframe", "distributed"):
            sys.modules[name] = None
        import affinity_sdk.scale.dask as module
        try:
            module.score_dataset("lake/")
        except ImportError as exc:
            print(exc)
        """
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "pip install 'affinity_sdk[dask]'" in done.stdout


# --- consent: opted-out users are in no output and count in no population statistic ----------
def _opted_out(events: Any) -> set[str]:
    """The users a single-process profile store holds opted out after ``events``."""
    from affinity_sdk.profile.store import ProfileStore

    store = ProfileStore(views=("signals",), dedupe_window=None, max_future=None)
    store.ingest(events)
    return set(store.opted_out())


def _without(table: Any, users: set[str]) -> Any:
    """``table``'s rows of the users not in ``users``, in order."""
    import pyarrow.compute as pc

    return table.filter(pc.invert(pc.is_in(table["user_id"], value_set=pa.array(sorted(users)))))


def _consent_flips(sim: ShopSimulation, schema: Any) -> tuple[Any, set[str], set[str]]:
    """Consent events for busy simulated users (and for the simulation's own opt-outs), with the
    users they leave opted out and those they leave (or make) visible again.

    - ``revoked``: revokes after the lake's newest event (so the latest event is a revocation);
    - ``early``: revokes before all of their events and never grants again;
    - ``tie`` / ``tie2``: grant and revoke at the same instant, in either row order (the
      revocation wins a tie);
    - ``regrant``: revokes, then grants again; the simulation's first opted-out user grants
      again after their revocation.
    """
    from affinity_sdk.capture.events import EVENT_TYPE_CODES

    batch = sim.batch
    names = batch.interners.users.names
    already = sorted(_opted_out(batch))
    signal = np.isin(batch.event_type, [EVENT_TYPE_CODES[n] for n in AffinityConfig().signal_names])
    lines = np.bincount(batch.user[batch.item_event[signal[batch.item_event]]], minlength=len(names))
    has_consent = np.zeros(len(names), dtype=np.bool_)
    has_consent[batch.user[batch.consent >= 0]] = True
    busy = [names[i] for i in np.argsort(-lines, kind="stable").tolist() if not has_consent[i]][:5]
    revoked, early, tie, tie2, regrant = busy
    day = 86_400_000
    t0, t1 = int(batch.ts_ms.min()), int(batch.ts_ms.max())
    back = already[0]
    back_revoked = int(batch.ts_ms[(batch.consent == 0) & (batch.user == names.index(back))].max())

    def consent(user: str, ts: int, granted: bool) -> dict[str, Any]:
        return {"type": "consent_changed", "user_id": user, "timestamp": ts, "granted": granted}

    rows = [
        consent(revoked, t1 + 3_600_000, False),
        consent(early, t0 - day, False),
        consent(tie, t0 + 7 * day, True),
        consent(tie, t0 + 7 * day, False),
        consent(tie2, t0 + 9 * day, False),
        consent(tie2, t0 + 9 * day, True),
        consent(regrant, t0 + day, False),
        consent(regrant, t0 + 2 * day, True),
        consent(back, back_revoked + 1, True),
    ]
    out = {revoked, early, tie, tie2, *already[1:]}
    return pa.Table.from_pylist(rows, schema=schema).cast(schema), out, {regrant, back}


def _consent_lake(sim: ShopSimulation, root: Path, seed: int) -> tuple[Path, Any, set[str], set[str]]:
    """The simulation plus consent flips, in random order over four Parquet files with small
    row groups (a user's decision and their events land in different input partitions)."""
    table = sim.to_arrow()
    flips, out, back = _consent_flips(sim, table.schema)
    table = pa.concat_tables([table, flips])
    table = table.take(pa.array(np.random.default_rng(seed).permutation(table.num_rows)))
    lake = root / "consent-lake"
    lake.mkdir()
    for i, chunk in enumerate(np.array_split(np.arange(table.num_rows), 4)):
        pq.write_table(table.take(pa.array(chunk)), lake / f"part-{i}.parquet", row_group_size=500)
    table = pq.read_table(lake)  # the lake in the order Dask reads it (files, then row groups)
    assert _opted_out(EventBatch.from_arrow(table)) == out  # as designed, by the store's rule
    return lake, table, out, back


def test_opted_out_users_are_in_no_output_and_no_population_statistic(
    client: Any, sim: ShopSimulation, tmp_path: Path
) -> None:
    from affinity_sdk.models.propensity import PropensityModel, TierSpec, build_training_set

    lake, table, out, back = _consent_lake(sim, tmp_path, SEED + 13)
    consenting = _without(table, out)
    assert consenting.num_rows < table.num_rows and out.isdisjoint(set(consenting["user_id"].to_pylist()))

    # Affinities: the single-process model over the whole lake (it hides opted-out users and
    # computes the population shares over visible users only) ...
    model = AffinityModel().ingest(EventBatch.from_arrow(table))
    # ... and one fed only the consenting users' events: the same rows, affinities and shares.
    visible_model = AffinityModel().ingest(EventBatch.from_arrow(consenting))
    for dimension in ("category", "brand", "price_band"):
        result = score_affinities(lake, dimension=dimension, k=3, npartitions=3, rows_per_partition=1500)
        got = _check_affinities(result, model, dimension, 3)
        assert result.now_ms == model.last_ms == int(table["timestamp"].cast(pa.int64()).to_numpy().max())
        assert out.isdisjoint(set(got["user_id"])) and back <= set(got["user_id"])
        names = model.interners.categories.names if model.interners is not None else ()
        assert list(result.categories) == list(names)
        np.testing.assert_array_equal(result.price_cuts, model.price_cuts_[: len(names)])
        if dimension == "price_band":
            continue  # cut points describe the whole catalogue (the lake's), as in the model
        expected = affinities_table(visible_model, dimension, 3, result.now_ms)
        assert got["user_id"].tolist() == sorted(expected["user_id"])  # one block per user
        keys = list(zip(expected["user_id"], expected["rank"], strict=True))
        again = got.set_index(["user_id", "rank"]).loc[keys]
        assert again["value"].tolist() == expected["value"]
        np.testing.assert_allclose(again["affinity"], expected["affinity"], rtol=RTOL, atol=0)
        s = visible_model.scores(dimension, result.now_ms)
        share = dict(zip(s.names, s.population_share.tolist(), strict=False))
        np.testing.assert_allclose(
            result.population_share, [share.get(v, 0.0) for v in result.values], rtol=RTOL, atol=0
        )

    # Propensity: no row for opted-out users; probabilities and quantile tiers are those of the
    # consenting users alone.
    data = build_training_set(sim.batch, "purchase", [sim.end_ms - 7 * 86_400_000], "1w")
    propensity = PropensityModel.fit(data)
    spec = TierSpec(method="quantile", high=0.8, medium=0.5)
    result_p = score_propensity(
        lake, propensity, now=sim.end_ms, tiers=spec, npartitions=3, rows_per_partition=1500
    )
    got_p = result_p.compute().set_index("user_id")
    batch = EventBatch.from_arrow(consenting)
    p, seen = propensity.score_batch(batch, sim.end_ms)
    users = list(batch.interners.users.names)
    assert sorted(got_p.index) == sorted(users) and result_p.n_users == len(users)
    assert out.isdisjoint(set(got_p.index)) and back <= set(got_p.index)
    got_p = got_p.loc[users]
    np.testing.assert_allclose(got_p["probability"], p, rtol=RTOL, atol=1e-15)
    assert got_p["seen"].tolist() == seen.tolist()
    tiers = propensity.tiers(p, spec)
    assert got_p["tier"].tolist() == np.array(["low", "medium", "high"])[tiers].tolist()

    # Scores: a Scorer fed the whole lake, and one fed the consenting users only.
    config = default_config()
    scores = score_dataset(lake, config, npartitions=3, rows_per_partition=1500)
    for events in (table, consenting):
        scorer = Scorer(config)
        scorer.ingest(EventBatch.from_arrow(events))
        got_s = _check_same(scores, scorer.score(scores.now_ms).to_pandas().set_index("user_id"), config)
        assert out.isdisjoint(set(got_s.index)) and back <= set(got_s.index)


def test_drop_opted_out_keeps_whole_users_by_their_latest_decision() -> None:
    import pandas as pd

    from affinity_sdk.scale.lake import drop_opted_out

    # (user, ts, consent, kind): kind 1 rows are product lines (they repeat their event's columns)
    rows = [
        ("regrant", 5, 0, 0),
        ("regrant", 9, 1, 0),
        ("regrant", 7, -1, 1),
        ("tie", 4, 1, 0),
        ("tie", 4, 0, 0),
        ("tie2", 4, 0, 0),
        ("tie2", 4, 1, 0),
        ("late", 1, -1, 0),
        ("late", 2, 1, 0),
        ("late", 3, 0, 0),
        ("never", 3, -1, 0),
        ("never", 3, -1, 1),
    ]
    frame = pd.DataFrame(rows, columns=["user_id", "ts_ms", "consent", "kind"]).astype(
        {"ts_ms": np.int64, "consent": np.int8, "kind": np.int8}
    )
    kept = drop_opted_out(frame)
    assert kept["user_id"].tolist() == ["regrant"] * 3 + ["never"] * 2
    # The profile store decides the same from the same consent events.
    decisions = [
        {"type": "consent_changed", "user_id": u, "timestamp": t, "granted": bool(c)}
        for u, t, c, k in rows
        if c >= 0 and k == 0
    ]
    assert _opted_out(b"\n".join(map(msgspec.json.encode, decisions))) == {"tie", "tie2", "late"}
    plain = frame[frame["consent"] < 0]
    assert drop_opted_out(plain) is plain  # no consent rows: nothing to decide
