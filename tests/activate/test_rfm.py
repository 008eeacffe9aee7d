"""RFM scores and segments: the quintile rule, the segment partition, every data source, consent."""

from __future__ import annotations

import csv
import itertools
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from affinity_sdk.activate.rfm import (
    RFM_SEGMENTS,
    quintile_scores,
    rfm_from_batch,
    rfm_from_orders,
    rfm_from_store,
    rfm_segments,
)
from affinity_sdk.activate.segments import diff_segments, evaluate_segments, export_segments
from affinity_sdk.errors import ConfigError
from affinity_sdk.ingest.batch import EventBatch
from affinity_sdk.profile.store import ProfileStore
from affinity_sdk.sim.cdnow import cdnow_orders
from affinity_sdk.sim.shop import ShopSimulation, simulate_shop

DAY = 86_400_000
CDNOW = Path(__file__).parents[1] / "data" / "cdnow" / "cdnow_sample.csv"


@given(st.lists(st.integers(0, 6), min_size=1, max_size=60), st.booleans())
def test_quintile_scores_follow_the_stated_rule(values: list[int], higher: bool) -> None:
    scores = quintile_scores(values, higher_is_better=higher).tolist()
    n = len(values)
    for v, s in zip(values, scores, strict=True):
        worse = sum(w < v if higher else w > v for w in values)
        assert s == 1 + (5 * worse) // n
    for (v, s), (w, t) in itertools.combinations(zip(values, scores, strict=True), 2):
        if v == w:
            assert s == t
        elif (v > w) == higher:
            assert s >= t
    best = max(values) if higher else min(values)
    worst = min(values) if higher else max(values)
    assert all(s == 1 for v, s in zip(values, scores, strict=True) if v == worst)
    assert scores[values.index(best)] == max(scores)


def test_quintile_scores_without_ties_are_fifths() -> None:
    values = np.random.default_rng(0).permutation(1000).astype(float)
    assert np.bincount(quintile_scores(values), minlength=6)[1:].tolist() == [200] * 5
    assert np.bincount(quintile_scores(values, higher_is_better=False), minlength=6)[1:].tolist() == [200] * 5


def test_every_score_combination_lands_in_exactly_one_segment() -> None:
    combos = np.array(list(itertools.product(range(1, 6), repeat=3)))
    r, f, m = combos.T
    frame = {
        "user_id": np.array([f"c{i}" for i in range(len(combos))], dtype=object),
        "r_score": r,
        "fm_score": (f + m + 1) // 2,
    }
    masks = evaluate_segments(rfm_segments(), frame)
    assert list(masks) == [s.name for s in RFM_SEGMENTS] and len(masks) == 11
    hits = np.sum([mask for mask in masks.values()], axis=0)
    assert hits.tolist() == [1] * len(combos)
    assert all(mask.any() for mask in masks.values())  # no segment is unreachable


def test_a_hand_scored_order_log() -> None:
    # Ten customers, cutoff day 100. One order each except where listed.
    #   id  last order (day)  orders  revenue
    orders = {
        "a": ([99, 90, 80, 70], [100.0, 100.0, 100.0, 100.0]),  # recent, frequent, big
        "b": ([98], [5.0]),  # recent, one small order
        "c": ([60, 50, 40], [200.0, 200.0, 100.0]),  # frequent and big, a while ago
        "d": ([10], [4.0]),  # long ago, small
        "e": ([95, 20], [30.0, 30.0]),
        "f": ([85], [15.0]),
        "g": ([50], [25.0]),
        "h": ([30, 25], [70.0, 90.0]),
        "i": ([70], [8.0]),
        "j": ([5, 3, 2], [50.0, 60.0, 70.0]),
    }
    rows = [(c, d, v) for c, (days, values) in orders.items() for d, v in zip(days, values, strict=True)]
    rows.append(("a", 101, 999.0))  # after the cutoff: ignored
    table = rfm_from_orders(
        [c for c, _, _ in rows], [d * DAY for _, d, _ in rows], [v for _, _, v in rows], cutoff=100 * DAY
    )
    assert table.customer_id.tolist() == list("abcdefghij")
    assert table.recency_days.tolist() == [1, 2, 40, 90, 5, 15, 50, 70, 30, 95]
    assert table.orders.tolist() == [4, 1, 3, 1, 2, 1, 1, 2, 1, 3]
    assert table.revenue.tolist() == [400.0, 5.0, 500.0, 4.0, 60.0, 15.0, 25.0, 160.0, 8.0, 180.0]
    # By hand, score = 1 + floor(5 * (customers strictly worse) / 10):
    # recency worse = more days ago: a 9, b 8, e 7, f 6, i 5, c 4, g 3, h 2, d 1, j 0
    assert table.r.tolist() == [5, 5, 3, 1, 4, 4, 2, 2, 3, 1]
    # orders: one order (b d f g i) 0 worse, two (e h) 5, three (c j) 7, four (a) 9
    assert table.f.tolist() == [5, 1, 4, 1, 3, 1, 1, 3, 1, 4]
    # revenue ranks: d 0, b 1, i 2, f 3, g 4, e 5, h 6, j 7, a 8, c 9
    assert table.m.tolist() == [5, 1, 5, 1, 3, 2, 3, 4, 2, 4]
    assert table.fm.tolist() == [5, 1, 5, 1, 3, 2, 2, 4, 2, 4]
    assert table.segment.tolist() == [
        "champions",  # R5 FM5
        "new",  # R5 FM1
        "loyal",  # R3 FM5
        "lost",  # R1 FM1
        "potential_loyalist",  # R4 FM3
        "potential_loyalist",  # R4 FM2
        "hibernating",  # R2 FM2
        "at_risk",  # R2 FM4
        "about_to_sleep",  # R3 FM2
        "at_risk",  # R1 FM4
    ]
    counts = table.segment_counts()
    assert list(counts) == [s.name for s in RFM_SEGMENTS] and sum(counts.values()) == 10
    assert counts["at_risk"] == counts["potential_loyalist"] == 2 and counts["promising"] == 0


def test_cdnow_scores_match_an_independent_pandas_computation() -> None:
    log = pd.read_csv(CDNOW, dtype={"sample_id": str})
    log["ts"] = pd.to_datetime(log["date"]).astype("datetime64[ms]").astype("int64")
    cutoff = int(pd.Timestamp("1997-09-30").value // 1_000_000)
    table = rfm_from_orders(log["sample_id"], log["ts"], log["dollars"], cutoff=cutoff)
    seen = log[log["ts"] <= cutoff]
    g = seen.groupby("sample_id").agg(last=("ts", "max"), orders=("ts", "size"), revenue=("dollars", "sum"))
    g = g.sort_index()
    n = len(g)

    def score(x: pd.Series, ascending: bool) -> list[int]:
        rank = x.rank(method="min", ascending=ascending)  # 1 + number strictly worse
        return (1 + (5 * (rank.astype(int) - 1)) // n).tolist()

    recency = (cutoff - g["last"]) // DAY
    assert table.customer_id.tolist() == g.index.tolist()
    assert table.recency_days.tolist() == recency.tolist()
    assert table.orders.tolist() == g["orders"].tolist()
    np.testing.assert_allclose(table.revenue, g["revenue"].to_numpy(), rtol=1e-12)
    assert table.r.tolist() == score(recency, ascending=False)
    assert table.f.tolist() == score(g["orders"], ascending=True)
    assert table.m.tolist() == score(g["revenue"], ascending=True)
    # The batch path (orders as events) gives the same table.
    batch_table = rfm_from_batch(cdnow_orders(CDNOW), cutoff)
    assert batch_table.customer_id.tolist() == table.customer_id.tolist()
    assert (batch_table.segment == table.segment).all()


@pytest.fixture(scope="module")
def shop() -> ShopSimulation:
    return simulate_shop(600, weeks=8, horizon_weeks=1, seed=11)


def test_store_gives_the_batch_table_and_hides_opted_out_users(shop: ShopSimulation) -> None:
    sim = shop
    store = ProfileStore(views=("propensity",))
    store.ingest(sim.batch)
    from_store = rfm_from_store(store, now=sim.end_ms)
    from_batch = rfm_from_batch(sim.batch, sim.end_ms, visible=store)
    assert len(from_store) > 100
    assert from_store.customer_id.tolist() == from_batch.customer_id.tolist()
    for name in ("recency_days", "orders", "r", "f", "m", "segment"):
        assert (getattr(from_store, name) == getattr(from_batch, name)).all(), name
    np.testing.assert_allclose(from_store.revenue, from_batch.revenue, rtol=1e-9)
    # Revoked consent in the batch: never in either table.
    revoked = {sim.batch.interners.users.names[u] for u in sim.batch.user[sim.batch.consent == 0].tolist()}
    everyone = set(rfm_from_orders(*_orders_of(sim.batch), cutoff=sim.end_ms).customer_id)
    assert revoked & everyone  # the simulator planted some buyers who opted out
    assert not revoked & set(from_batch.customer_id) and not revoked & set(from_store.customer_id)
    # A later opt-out and a forget hide a customer from the store's table.
    gone, forgotten = from_store.customer_id[:2].tolist()
    store.opt_out(gone)
    store.forget(forgotten)
    after = set(rfm_from_store(store, now=sim.end_ms).customer_id)
    assert gone not in after and forgotten not in after and len(after) == len(from_store) - 2
    hidden = rfm_from_batch(sim.batch, sim.end_ms, visible=lambda ids: [i != gone for i in ids])
    assert gone not in set(hidden.customer_id) and len(hidden) == len(from_batch) - 1


def _orders_of(b: EventBatch) -> tuple[list[str], np.ndarray, np.ndarray]:
    from affinity_sdk.capture.events import EVENT_TYPE_CODES

    rows = b.event_type == EVENT_TYPE_CODES["order_completed"]
    names = b.interners.users.names
    return [names[u] for u in b.user[rows].tolist()], b.ts_ms[rows], b.revenue[rows]


def test_segments_export_and_diff_like_the_others(shop: ShopSimulation, tmp_path: Path) -> None:
    sim = shop
    before = rfm_from_batch(sim.batch, sim.end_ms - 14 * DAY)
    after = rfm_from_batch(sim.batch, sim.end_ms)
    members = after.members()
    assert {k: len(v) for k, v in members.items()} == after.segment_counts()
    path = export_segments(members, tmp_path / "rfm.csv", metadata={"cutoff_ms": str(after.cutoff_ms)})
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == len(after)  # one segment per customer
    assert {(r["segment"], r["user_id"]) for r in rows} == set(
        zip(after.segment.tolist(), after.customer_id.tolist(), strict=True)
    )
    diffs = {d.segment: d for d in diff_segments(before.members(), members)}
    new_buyers = set(after.customer_id) - set(before.customer_id)
    entered = set().union(*(set(d.entered) for d in diffs.values()))
    assert new_buyers and new_buyers <= entered
    saved = after.save(tmp_path / "scores.csv")
    header, *lines = saved.read_text().splitlines()
    assert header == "customer_id,recency_days,orders,revenue,r,f,m,segment" and len(lines) == len(after)


def test_bad_input_raises_clear_errors() -> None:
    with pytest.raises(ConfigError, match="1-D of one length"):
        rfm_from_orders(["a", "b"], [0], [1.0, 2.0])
    with pytest.raises(ConfigError, match="'propensity' view"):
        rfm_from_store(ProfileStore())


def test_empty_inputs_give_empty_tables() -> None:
    table = rfm_from_orders([], np.zeros(0, dtype=np.int64), [])
    assert len(table) == 0 and sum(table.segment_counts().values()) == 0
