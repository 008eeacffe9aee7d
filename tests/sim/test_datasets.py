"""The shop simulator: determinism, schema validity, round trips and the planted ground truth."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import msgspec
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from affinity_sdk.capture import events as ev
from affinity_sdk.ingest.batch import EventBatch
from affinity_sdk.ingest.interner import event_id_hash
from affinity_sdk.sim.shop import ShopSimulation, simulate_shop

T = ev.EVENT_TYPE_CODES
BATCH_FIELDS = [
    f.name
    for f in dataclasses.fields(EventBatch)
    if isinstance(getattr(EventBatch.empty(), f.name), np.ndarray)
]


@pytest.fixture(scope="module")
def sim() -> ShopSimulation:
    return simulate_shop(400, weeks=6, horizon_weeks=2, seed=11)


@pytest.fixture(scope="module")
def big() -> ShopSimulation:
    # Large enough for the statistical checks to have little noise, still well under a second.
    return simulate_shop(4000, weeks=8, horizon_weeks=2, seed=5)


def assert_batches_equal(a: EventBatch, b: EventBatch, *, check_dtype: bool = True) -> None:
    for name in BATCH_FIELDS:
        x, y = getattr(a, name), getattr(b, name)
        assert x.dtype == y.dtype or not check_dtype, name
        np.testing.assert_array_equal(x, y, err_msg=name)


def test_same_seed_same_simulation() -> None:
    a = simulate_shop(150, weeks=3, seed=42)
    b = simulate_shop(150, weeks=3, seed=42)
    assert_batches_equal(a.batch, b.batch)
    assert_batches_equal(a.future, b.future)
    np.testing.assert_array_equal(a.truth.p_purchase, b.truth.p_purchase)
    assert a.batch.interners.campaigns == b.batch.interners.campaigns


def test_other_seed_other_simulation() -> None:
    a = simulate_shop(150, weeks=3, seed=1)
    b = simulate_shop(150, weeks=3, seed=2)
    assert len(a.batch) != len(b.batch) or not np.array_equal(a.batch.ts_ms, b.batch.ts_ms)
    assert not set(a.event_ids()) & set(b.event_ids())


def test_columns_have_batch_dtypes(sim: ShopSimulation) -> None:
    ref = EventBatch.empty()
    for name in BATCH_FIELDS:
        assert getattr(sim.batch, name).dtype == getattr(ref, name).dtype, name
        assert getattr(sim.batch, name).flags.c_contiguous, name


def test_history_and_future_split_at_end(sim: ShopSimulation) -> None:
    assert sim.future.interners is sim.batch.interners
    assert sim.end_ms - sim.start_ms == 6 * 7 * 86_400_000
    assert sim.batch.ts_ms.min() >= sim.start_ms
    assert sim.batch.ts_ms.max() < sim.end_ms <= sim.future.ts_ms.min()
    assert sim.future.ts_ms.max() < sim.end_ms + sim.horizon_ms
    assert np.all(np.diff(sim.batch.ts_ms) >= 0) and np.all(np.diff(sim.future.ts_ms) >= 0)


def test_every_event_type_is_generated(big: ShopSimulation) -> None:
    modelled = ev.EVENT_TYPES[: ev.EVENT_TYPE_CODES["consent_changed"] + 1]  # the simulator's types
    counts = np.bincount(big.batch.event_type, minlength=len(ev.EVENT_TYPES))
    missing = [name for name, c in zip(modelled, counts, strict=False) if c == 0]
    assert not missing


def test_item_table_is_consistent(sim: ShopSimulation) -> None:
    b = sim.batch
    cat = sim.catalogue
    assert np.all(np.diff(b.item_event) >= 0)
    assert b.item_event.min() >= 0 and b.item_event.max() < len(b)
    np.testing.assert_array_equal(b.item_category, cat.category[b.item_product])
    np.testing.assert_array_equal(b.item_brand, cat.brand[b.item_product])
    np.testing.assert_array_equal(b.item_price, cat.price[b.item_product])
    assert b.item_quantity.min() >= 1
    lines = np.bincount(b.item_event, minlength=len(b))
    single = np.isin(b.event_type, [T["product_viewed"], T["product_added"], T["product_removed"]])
    assert np.all(lines[single] == 1)
    assert np.all(lines[b.event_type == T["order_completed"]] >= 1)
    assert np.all(lines[b.event_type == T["email_opened"]] == 0)


def test_orders_add_up(sim: ShopSimulation) -> None:
    b = sim.batch
    orders = np.flatnonzero(b.event_type == T["order_completed"])
    in_order = np.isin(b.item_event, orders)
    gross = np.bincount(
        b.item_event[in_order], weights=(b.item_price * b.item_quantity)[in_order], minlength=len(b)
    )[orders]
    discount = np.nan_to_num(b.discount[orders])
    np.testing.assert_allclose(b.revenue[orders], gross - discount, atol=0.011)
    assert np.all(b.revenue[orders] >= 0) and np.all(discount <= gross)
    # a coupon order has a discount; an order without promotion or coupon has none
    assert np.all(~np.isnan(b.discount[orders][b.has_coupon[orders]]))
    refunds = b.event_type == T["order_refunded"]
    assert np.all(b.revenue[refunds] >= 0)


def test_ndjson_sample_decodes_and_matches_batch(sim: ShopSimulation, tmp_path: Path) -> None:
    path = tmp_path / "events.ndjson"
    assert sim.write_ndjson(path) == len(sim.batch)
    decoder = msgspec.json.Decoder(ev.Event)
    with path.open("rb") as lines:
        decoded = [decoder.decode(line) for line in lines]
    rebuilt = EventBatch.from_events(decoded, sim.batch.interners)
    assert_batches_equal(rebuilt, sim.batch)
    assert len(sim.batch.interners.products) == len(sim.catalogue)  # nothing new was interned
    # the SDK's own NDJSON reader reads the file to the same batch
    from_file = EventBatch.from_ndjson(path.read_bytes(), sim.batch.interners)
    assert_batches_equal(from_file, sim.batch)


def test_iter_events_round_trip_future_with_fresh_interners(sim: ShopSimulation) -> None:
    rebuilt = EventBatch.from_events(sim.iter_events("future"))
    names = rebuilt.interners
    own = sim.future.interners
    # same events under the rebuilt batch's own codes: compare through the names
    assert [names.users.name(u) for u in rebuilt.user] == [own.users.name(u) for u in sim.future.user]
    assert [names.products.name(p) for p in rebuilt.item_product] == [
        own.products.name(p) for p in sim.future.item_product
    ]
    for name in ("event_type", "ts_ms", "channel", "revenue", "discount", "has_coupon", "event_id"):
        np.testing.assert_array_equal(getattr(rebuilt, name), getattr(sim.future, name), err_msg=name)


def test_event_ids_hash_like_the_batch(sim: ShopSimulation) -> None:
    ids = sim.event_ids("future")
    assert len(set(ids)) == len(ids) == len(sim.future)
    assert [event_id_hash(i) for i in ids[:50]] == sim.future.event_id[:50].tolist()
    assert set(ids).isdisjoint(sim.event_ids("history"))


def test_which_is_checked(sim: ShopSimulation) -> None:
    with pytest.raises(ValueError, match="which"):
        next(sim.iter_events("past"))  # type: ignore[arg-type]


def test_parquet_flat_layout(sim: ShopSimulation, tmp_path: Path) -> None:
    pq = pytest.importorskip("pyarrow.parquet")
    path = tmp_path / "events.parquet"
    assert sim.write_parquet(path, "future") == len(sim.future)
    table = pq.read_table(path)
    rows = table.slice(0, 300).to_pylist()
    structs = list(sim.iter_events("future"))[:300]
    for row, event in zip(rows, structs, strict=True):
        assert row["type"] == event.__struct_config__.tag
        assert row["user_id"] == event.user_id and row["event_id"] == event.event_id
        assert int(row["timestamp"].timestamp() * 1000) == ev.timestamp_ms(event)
        products = getattr(event, "products", None)
        if products is None:
            products = [event.product] if hasattr(event, "product") else []
        assert [p["product_id"] for p in row["products"]] == [p.product_id for p in products]
        for key in ("order_id", "coupon", "campaign_id", "query", "revenue", "discount", "granted"):
            if hasattr(event, key) and not (key == "revenue" and products and hasattr(event, "product")):
                assert row[key] == getattr(event, key), key


def test_parquet_reads_back_with_from_parquet(sim: ShopSimulation, tmp_path: Path) -> None:
    pytest.importorskip("pyarrow")
    path = tmp_path / "events.parquet"
    sim.write_parquet(path)
    # values only: from_arrow currently returns int64 item codes where the batch declares int32
    assert_batches_equal(EventBatch.from_parquet(path, sim.batch.interners), sim.batch, check_dtype=False)


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="n_products"):
        simulate_shop(10, n_categories=5, n_products=10)
    with pytest.raises(ValueError, match="n_customers"):
        simulate_shop(0)


def test_truth_shapes_and_ranges(sim: ShopSimulation) -> None:
    t = sim.truth
    n = len(t.user_ids)
    assert list(sim.batch.interners.users.names) == t.user_ids
    for f in dataclasses.fields(t):
        value = getattr(t, f.name)
        if isinstance(value, np.ndarray):
            assert value.shape == (n,), f.name
    for name in ("p_purchase", "p_repurchase", "p_churn", "p_unsubscribe", "p_uninstall"):
        p = getattr(t, name)
        assert np.all((p >= 0) & (p <= 1)), name
    assert set(np.unique(t.price_band)) <= {0, 1, 2}
    assert t.favourite_category.max() < len(sim.batch.interners.categories)
    assert t.favourite_brand.max() < len(sim.batch.interners.brands)
    # the dead do nothing in the horizon, and are certain to "churn"
    assert np.all(t.p_churn[t.churned] == 1.0) and np.all(t.y_churn[t.churned])
    assert np.all(t.p_unsubscribe[~t.subscribed] == 0.0) and not np.any(t.y_unsubscribe[~t.subscribed])
    assert np.all(t.p_repurchase[~t.purchased_before] == 0.0)


def test_dead_customers_stay_silent(big: ShopSimulation) -> None:
    t = big.truth
    last = np.full(len(t.user_ids), big.start_ms)
    np.maximum.at(last, big.batch.user, big.batch.ts_ms)
    active_users = np.unique(big.future.user)
    assert not np.any(t.churned[active_users])


def _calibration_gap(p: np.ndarray, y: np.ndarray) -> float:
    """Largest |mean(p) - mean(y)| over deciles of p, in units of the binomial standard error."""
    order = np.argsort(p, kind="stable")
    worst = 0.0
    for chunk in np.array_split(order, 10):
        mp, my = p[chunk].mean(), y[chunk].mean()
        se = np.sqrt(max(mp * (1 - mp), 1e-4) / len(chunk))
        worst = max(worst, abs(mp - my) / se)
    return worst


@pytest.mark.parametrize("outcome", ["purchase", "repurchase", "churn", "unsubscribe", "uninstall"])
def test_true_probabilities_are_calibrated(big: ShopSimulation, outcome: str) -> None:
    p = getattr(big.truth, f"p_{outcome}")
    y = getattr(big.truth, f"y_{outcome}").astype(float)
    # The future is drawn from the same process the probabilities describe.
    assert abs(p.sum() - y.sum()) < 4.5 * np.sqrt((p * (1 - p)).sum()) + 1
    assert _calibration_gap(p, y) < 4.5


def test_oracle_probabilities_rank_outcomes(big: ShopSimulation) -> None:
    from scipy.stats import mannwhitneyu

    for outcome in ("purchase", "churn"):
        p = getattr(big.truth, f"p_{outcome}")
        y = getattr(big.truth, f"y_{outcome}")
        auc = mannwhitneyu(p[y], p[~y]).statistic / (y.sum() * (~y).sum())
        assert auc > 0.7, outcome


def test_views_concentrate_on_planted_favourites(big: ShopSimulation) -> None:
    b, t = big.batch, big.truth
    views = b.event_type[b.item_event] == T["product_viewed"]
    user = b.user[b.item_event[views]]
    on_cat = b.item_category[views] == t.favourite_category[user]
    on_brand = b.item_brand[views] == t.favourite_brand[user]
    assert 0.4 < on_cat.mean() < 0.7
    assert 0.2 < on_brand.mean() < 0.5
    # the favourite is each customer's most viewed category for nearly all active customers
    n_cat = len(b.interners.categories)
    counts = np.zeros((len(t.user_ids), n_cat))
    np.add.at(counts, (user, b.item_category[views]), 1)
    busy = counts.sum(axis=1) >= 20
    assert (counts.argmax(axis=1) == t.favourite_category)[busy].mean() > 0.9


def test_price_choices_follow_the_planted_band(big: ShopSimulation) -> None:
    b, t = big.batch, big.truth
    views = b.event_type[b.item_event] == T["product_viewed"]
    user = b.user[b.item_event[views]]
    band = big.catalogue.price_band[b.item_product[views]]
    assert (band == t.price_band[user]).mean() > 0.6


def test_discount_sensitive_customers_buy_on_discount(big: ShopSimulation) -> None:
    b, t = big.batch, big.truth
    orders = b.event_type == T["order_completed"]
    discounted = ~np.isnan(b.discount[orders])
    sensitive = t.discount_sensitive[b.user[orders]]
    assert discounted[sensitive].mean() > discounted[~sensitive].mean() + 0.2


def test_segments_share_preferences(big: ShopSimulation) -> None:
    t = big.truth
    same_cat = []
    for s in np.unique(t.segment):
        cats = t.favourite_category[t.segment == s]
        same_cat.append(np.bincount(cats).max() / len(cats))
    assert np.mean(same_cat) > 0.7
    assert len(np.unique(t.segment)) >= 8


def test_low_engagement_unsubscribes_more(big: ShopSimulation) -> None:
    t = big.truth
    unsub = (
        np.bincount(big.batch.user[big.batch.event_type == T["unsubscribed"]], minlength=len(t.user_ids)) > 0
    )
    low = t.engagement < np.median(t.engagement)
    assert unsub[low].mean() > 1.5 * unsub[~low].mean()


@settings(max_examples=8, deadline=None)
@given(
    n=st.integers(1, 60),
    weeks=st.integers(1, 4),
    horizon=st.integers(0, 2),
    n_categories=st.integers(1, 6),
    n_brands=st.integers(1, 8),
    seed=st.integers(0, 2**32 - 1),
)
def test_any_small_shop_is_valid(
    n: int, weeks: int, horizon: int, n_categories: int, n_brands: int, seed: int
) -> None:
    s = simulate_shop(
        n,
        weeks=weeks,
        horizon_weeks=horizon,
        n_categories=n_categories,
        n_brands=n_brands,
        n_products=3 * n_categories + 2,
        n_segments=3,
        seed=seed,
    )
    assert_batches_equal(EventBatch.from_events(s.iter_events(), s.batch.interners), s.batch)
    assert_batches_equal(EventBatch.from_events(s.iter_events("future"), s.batch.interners), s.future)
    assert len(s.future) == 0 or horizon > 0
    assert np.all(s.batch.item_price > 0) and np.all(s.batch.item_quantity >= 1)
