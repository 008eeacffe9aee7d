"""Ingest throughput: NDJSON bytes / Arrow tables -> finished EventBatch.

Peers in the same run: ``json.loads`` per line + building the same numpy columns, and msgspec into
Structs + ``EventBatch.from_events``. Correctness is asserted outside the timed region. The
workload is a seeded, realistic mix of event types (1M events by default; set
``AFFINITY_BENCH_EVENTS`` to change it).

Run: ``pytest benches/test_bench_ingest.py --benchmark-only --benchmark-group-by=group``
"""

from __future__ import annotations

import functools
import json
import os
from typing import Any

import msgspec
import numpy as np
import pytest

from affinity_sdk._backends import native
from affinity_sdk.capture import events as ev
from affinity_sdk.capture.decode import decode_ndjson
from affinity_sdk.ingest.batch import EventBatch
from affinity_sdk.ingest.interner import event_id_hash

N_EVENTS = int(os.environ.get("AFFINITY_BENCH_EVENTS", "1000000"))

_MIX = {
    "product_viewed": 0.36,
    "page_viewed": 0.14,
    "product_added": 0.08,
    "product_list_viewed": 0.04,
    "products_searched": 0.05,
    "product_removed": 0.01,
    "cart_viewed": 0.02,
    "checkout_started": 0.02,
    "order_completed": 0.04,
    "email_opened": 0.07,
    "email_clicked": 0.03,
    "push_opened": 0.03,
    "app_opened": 0.07,
    "unsubscribed": 0.01,
    "consent_changed": 0.01,
    "coupon_applied": 0.02,
}


def make_events(n: int, seed: int = 7) -> list[ev.Event]:
    """A seeded, realistic event stream: 50k users, 5k products, 40 categories, 300 brands."""
    rng = np.random.default_rng(seed)
    kinds = rng.choice(list(_MIX), size=n, p=np.array(list(_MIX.values())) / sum(_MIX.values()))
    users = rng.zipf(1.3, size=n) % 50_000
    ts = 1_700_000_000_000 + np.sort(rng.integers(0, 90 * 86_400_000, size=n))
    prod_ids = rng.zipf(1.2, size=(n, 3)) % 5_000
    prices = np.round(rng.lognormal(3.0, 1.0, size=(n, 3)), 2)
    qty = rng.integers(1, 4, size=(n, 3))
    iso = rng.random(n) < 0.5

    def product(i: int, k: int) -> ev.Product:
        p = int(prod_ids[i, k])
        return ev.Product(
            product_id=f"sku-{p:05d}",
            category=f"cat-{p % 40}",
            brand=f"brand-{p % 300}",
            price=float(prices[i, k]),
            quantity=int(qty[i, k]),
            discount=None if p % 5 else 1.5,
        )

    out: list[ev.Event] = []
    for i in range(n):
        kind = str(kinds[i])
        t: Any = int(ts[i])
        if iso[i]:
            t = msgspec.json.decode(
                msgspec.json.encode(np.datetime_as_string(ts[i].astype("datetime64[ms]")) + "Z")
            )
            t = msgspec.convert(t, ev.Timestamp)  # type: ignore[arg-type]
        common: dict[str, Any] = {"user_id": f"user-{users[i]}", "timestamp": t, "event_id": f"evt-{i:08x}"}
        if kind in ("product_viewed", "product_added", "product_removed"):
            extra: dict[str, Any] = {"product": product(i, 0)}
        elif kind in ("product_list_viewed", "cart_viewed", "checkout_started"):
            extra = {"products": [product(i, k) for k in range(3)]}
        elif kind == "order_completed":
            lines = [product(i, k) for k in range(1 + i % 3)]
            extra = {
                "order_id": f"ord-{i}",
                "products": lines,
                "revenue": round(sum(p.price * p.quantity for p in lines), 2),
                "currency": "USD",
                "coupon": "SPRING" if i % 4 == 0 else None,
            }
        elif kind in ("email_opened", "email_clicked", "push_opened", "unsubscribed"):
            extra = {"campaign_id": f"camp-{i % 100}"}
        elif kind == "products_searched":
            extra = {"query": "running shoes"}
        elif kind == "page_viewed":
            extra = {"url": "https://shop.example/p/" + str(i % 1000)}
        elif kind == "consent_changed":
            extra = {"granted": bool(i % 2)}
        elif kind == "coupon_applied":
            extra = {"coupon": "SPRING", "discount": 5.0}
        else:
            extra = {}
        out.append(ev.EVENT_CLASSES[kind](**common, **extra))  # type: ignore[arg-type]
    return out


@functools.cache
def workload(n: int = N_EVENTS) -> tuple[list[ev.Event], bytes]:
    events = make_events(n)
    enc = msgspec.json.Encoder()
    return events, b"\n".join(enc.encode(e) for e in events) + b"\n"


_CHANNELS = {name: code for code, name in enumerate(ev.CHANNELS)}
_SINGLE = {"product_viewed", "product_added", "product_removed", "product_added_to_wishlist"}


def json_loads_batch(data: bytes) -> dict[str, np.ndarray[Any, Any]]:
    """The stdlib peer: json.loads per line, then the same event columns as EventBatch."""
    users: dict[str, int] = {}
    user, etype, ts_ms, channel, revenue, event_id = [], [], [], [], [], []
    products: dict[str, int] = {}
    item_event, item_product, item_price = [], [], []
    for line in data.splitlines():
        if not line.strip():
            continue
        d = json.loads(line)
        row = len(user)
        kind = d["type"]
        user.append(users.setdefault(d["user_id"], len(users)))
        etype.append(ev.EVENT_TYPE_CODES[kind])
        t = d["timestamp"]
        if isinstance(t, str):
            t = int(np.datetime64(t.rstrip("Z"), "ms").astype(np.int64))
        ts_ms.append(t)
        channel.append(_CHANNELS[d.get("channel") or ev.default_channel(kind)])
        event_id.append(event_id_hash(d.get("event_id")))
        prods = [d["product"]] if kind in _SINGLE else d.get("products", [])
        revenue.append(
            prods[0]["price"] * prods[0].get("quantity", 1) if kind in _SINGLE else d.get("revenue", np.nan)
        )
        for p in prods:
            item_event.append(row)
            item_product.append(products.setdefault(p["product_id"], len(products)))
            item_price.append(p["price"])
    return {
        "user": np.asarray(user, np.int64),
        "event_type": np.asarray(etype, np.uint8),
        "ts_ms": np.asarray(ts_ms, np.int64),
        "channel": np.asarray(channel, np.uint8),
        "revenue": np.asarray(revenue, np.float64),
        "event_id": np.asarray(event_id, np.uint64),
        "item_event": np.asarray(item_event, np.int64),
        "item_product": np.asarray(item_product, np.int32),
        "item_price": np.asarray(item_price, np.float64),
    }


def _msgspec_batch(data: bytes) -> EventBatch:
    return EventBatch.from_events(decode_ndjson(data).events)


@pytest.fixture(scope="module")
def expected() -> EventBatch:
    return EventBatch.from_events(workload()[0])


def _same(batch: EventBatch, want: EventBatch) -> None:
    for name in (
        "user",
        "event_type",
        "ts_ms",
        "channel",
        "revenue",
        "event_id",
        "item_product",
        "item_price",
    ):
        np.testing.assert_array_equal(getattr(batch, name), getattr(want, name), err_msg=name)


@pytest.mark.benchmark(group="ndjson->EventBatch")
@pytest.mark.skipif(native() is None, reason="needs the compiled extension")
def test_ndjson_native(benchmark: Any, expected: EventBatch) -> None:
    data = workload()[1]
    EventBatch.from_ndjson(data[: data.rfind(b"\n", 0, 100_000)], reader="native")  # warm-up
    batch = benchmark.pedantic(EventBatch.from_ndjson, args=(data,), kwargs={"reader": "native"}, rounds=3)
    _same(batch, expected)
    benchmark.extra_info["events_per_s"] = len(batch) / benchmark.stats.stats.median


@pytest.mark.benchmark(group="ndjson->EventBatch")
def test_ndjson_msgspec_structs(benchmark: Any, expected: EventBatch) -> None:
    data = workload()[1]
    batch = benchmark.pedantic(_msgspec_batch, args=(data,), rounds=1)
    _same(batch, expected)
    benchmark.extra_info["events_per_s"] = len(batch) / benchmark.stats.stats.median


@pytest.mark.benchmark(group="ndjson->EventBatch")
def test_ndjson_json_loads(benchmark: Any, expected: EventBatch) -> None:
    data = workload()[1]
    cols = benchmark.pedantic(json_loads_batch, args=(data,), rounds=1)
    np.testing.assert_array_equal(cols["ts_ms"], expected.ts_ms)
    np.testing.assert_array_equal(cols["revenue"], expected.revenue)
    benchmark.extra_info["events_per_s"] = cols["user"].shape[0] / benchmark.stats.stats.median


@pytest.mark.benchmark(group="arrow->EventBatch")
def test_arrow(benchmark: Any, expected: EventBatch) -> None:
    pytest.importorskip("pyarrow")
    table = expected.to_arrow()
    EventBatch.from_arrow(table.slice(0, 1000))  # warm-up
    batch = benchmark.pedantic(EventBatch.from_arrow, args=(table,), rounds=5)
    _same(batch, expected)
    benchmark.extra_info["events_per_s"] = len(batch) / benchmark.stats.stats.median


# ---- Arrow / Parquet from the project's simulator ---------------------------------------------


@functools.cache
def sim_tables(n: int = N_EVENTS) -> tuple[Any, Any]:
    """``simulate_shop(...).batch.to_arrow()`` cut to ``n`` events (ids dictionary-encoded, as
    ``to_arrow`` writes them), and the same table with plain string columns (as another producer,
    or Parquet read without dictionaries, hands them over)."""
    pa = pytest.importorskip("pyarrow")
    from affinity_sdk.sim.shop import simulate_shop

    table = simulate_shop(max(50, n // 90), seed=1).batch.to_arrow().slice(0, n)
    table = pa.Table.from_batches(table.to_batches())

    def plain(t: Any) -> Any:
        if pa.types.is_dictionary(t):
            return pa.string()
        if pa.types.is_list(t):
            return pa.list_(plain(t.value_type))
        if pa.types.is_struct(t):
            return pa.struct([pa.field(f.name, plain(f.type)) for f in t])
        return t

    return table, table.cast(pa.schema([pa.field(f.name, plain(f.type)) for f in table.schema]))


def arrow_to_numpy_peer(table: Any) -> int:
    """The pyarrow peer: every leaf column (dictionary indices for strings) to numpy, nothing else."""
    pa = pytest.importorskip("pyarrow")
    total = 0
    for column in table.columns:
        array = column.combine_chunks()
        leaves = [array]
        if pa.types.is_list(array.type):
            flat = array.flatten()
            leaves = [array.offsets, *(flat.field(i) for i in range(flat.type.num_fields))]
        for leaf in leaves:
            leaf = leaf.indices if pa.types.is_dictionary(leaf.type) else leaf
            total += leaf.to_numpy(zero_copy_only=False).shape[0]
    return total


@pytest.mark.benchmark(group="simulator arrow->EventBatch")
@pytest.mark.parametrize("strings", ["dictionary", "plain"])
def test_arrow_simulator(benchmark: Any, strings: str) -> None:
    table = sim_tables()[0 if strings == "dictionary" else 1]
    EventBatch.from_arrow(table.slice(0, 1000))  # warm-up
    batch = benchmark.pedantic(EventBatch.from_arrow, args=(table,), rounds=7)
    assert len(batch) == table.num_rows
    benchmark.extra_info["events_per_s"] = len(batch) / benchmark.stats.stats.median


@pytest.mark.benchmark(group="simulator arrow->EventBatch")
def test_arrow_simulator_peer_to_numpy(benchmark: Any) -> None:
    table = sim_tables()[0]
    benchmark.pedantic(arrow_to_numpy_peer, args=(table,), rounds=7)
    benchmark.extra_info["events_per_s"] = table.num_rows / benchmark.stats.stats.median


@pytest.fixture(scope="module")
def parquet_files(tmp_path_factory: Any) -> dict[str, Any]:
    pq = pytest.importorskip("pyarrow.parquet")
    root = tmp_path_factory.mktemp("ingest")
    files = {}
    for strings, table in zip(("dictionary", "plain"), sim_tables(), strict=True):
        files[strings] = root / f"{strings}.parquet"
        pq.write_table(table, files[strings])
    return files


@pytest.mark.benchmark(group="simulator parquet->EventBatch")
@pytest.mark.parametrize("strings", ["dictionary", "plain"])
def test_parquet_simulator(benchmark: Any, parquet_files: dict[str, Any], strings: str) -> None:
    path = parquet_files[strings]
    EventBatch.from_parquet(path)  # warm-up (page cache)
    batch = benchmark.pedantic(EventBatch.from_parquet, args=(path,), rounds=5)
    assert len(batch) == sim_tables()[0].num_rows
    benchmark.extra_info["events_per_s"] = len(batch) / benchmark.stats.stats.median


@pytest.mark.benchmark(group="simulator parquet->EventBatch")
@pytest.mark.parametrize("strings", ["dictionary", "plain"])
def test_parquet_simulator_peer_read_table(
    benchmark: Any, parquet_files: dict[str, Any], strings: str
) -> None:
    pq = pytest.importorskip("pyarrow.parquet")
    path = parquet_files[strings]
    table = benchmark.pedantic(pq.read_table, args=(path,), rounds=5)
    benchmark.extra_info["events_per_s"] = table.num_rows / benchmark.stats.stats.median
