"""DataFrames in: pandas, polars and Arrow frames score as the same events sent as NDJSON, column
mapping, clear errors for missing or mistyped columns, and order logs from frames."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import polars as pl
import pyarrow as pa
import pytest

from affinity_sdk import Scorer
from affinity_sdk.capture.order_log import read_order_log
from affinity_sdk.errors import ConfigError, SchemaError
from affinity_sdk.ingest.batch import EVENT_COLUMNS, ITEM_COLUMNS, EventBatch
from affinity_sdk.ingest.frames import frame_kind

T0 = 1_767_225_600_000  # 2026-01-01
DAY = 86_400_000


def _events(seed: int = 7, n: int = 300) -> list[dict[str, Any]]:
    """Events as JSON objects, as a shop would send them."""
    rng = random.Random(seed)
    print(f"seed {seed}")

    def product() -> dict[str, Any]:
        return {
            "product_id": f"p{rng.randrange(40)}",
            "category": rng.choice(["shoes", "bags", "hats"]),
            "brand": rng.choice(["acme", "zed", "Café Noir"]),
            "price": round(rng.uniform(1, 200), 2),
            "quantity": rng.randint(1, 3),
        }

    events = []
    for i in range(n):
        base = {
            "user_id": f"u{rng.randrange(30)}",
            "timestamp": T0 + rng.randrange(60 * DAY),
            "event_id": f"e{i}",
        }
        kind = rng.choice(
            [
                "product_viewed",
                "product_added",
                "order_completed",
                "email_opened",
                "app_opened",
                "consent_changed",
            ]
        )
        if kind in ("product_viewed", "product_added"):
            events.append({"type": kind, **base, "product": product()})
        elif kind == "order_completed":
            lines = [product() for _ in range(rng.randint(1, 3))]
            coupon = {"coupon": "SAVE"} if rng.random() < 0.3 else {}
            revenue = sum(p["price"] * p["quantity"] for p in lines)
            events.append(
                {"type": kind, **base, "order_id": f"o{i}", "products": lines, "revenue": revenue, **coupon}
            )
        elif kind == "email_opened":
            events.append({"type": kind, **base, "campaign_id": rng.choice(["c1", "c2"])})
        elif kind == "consent_changed":
            events.append({"type": kind, **base, "granted": rng.random() < 0.8})
        else:
            events.append({"type": kind, **base, "channel": "app"})
    return events


def _rows(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The same events in the frame layout: one ``products`` list per row."""
    rows = []
    for e in events:
        products = e.get("products", [e["product"]] if "product" in e else [])
        rows.append(
            {
                "type": e["type"],
                "user_id": e["user_id"],
                "timestamp": e["timestamp"],
                "event_id": e["event_id"],
                "channel": e.get("channel"),
                "revenue": e.get("revenue"),
                "coupon": e.get("coupon"),
                "campaign_id": e.get("campaign_id"),
                "granted": e.get("granted"),
                "products": products,
            }
        )
    return rows


def _ndjson(events: list[dict[str, Any]]) -> bytes:
    return "".join(json.dumps(e) + "\n" for e in events).encode()


def _frame(kind: str, rows: list[dict[str, Any]], datetimes: bool = False) -> Any:
    if kind == "pandas":
        df = pd.DataFrame(rows)
        if datetimes:
            df["timestamp"] = pd.to_datetime(df["timestamp"], unit="ms", utc=True)
        return df
    if kind == "polars":
        df = pl.DataFrame(rows, infer_schema_length=None)
        if datetimes:
            df = df.with_columns(pl.col("timestamp").cast(pl.Datetime("ms", "UTC")))
        return df
    table = pa.Table.from_pylist(rows)
    if datetimes:
        at = table.column_names.index("timestamp")
        table = table.set_column(at, "timestamp", table.column(at).cast(pa.timestamp("ms", tz="UTC")))
    return table


KINDS = ["pandas", "polars", "arrow"]


def _assert_same_batch(got: EventBatch, want: EventBatch) -> None:
    for name in (*EVENT_COLUMNS, *ITEM_COLUMNS):
        np.testing.assert_array_equal(getattr(got, name), getattr(want, name), err_msg=name)
    for kind in ("users", "products", "categories", "brands", "campaigns"):
        assert getattr(got.interners, kind).names == getattr(want.interners, kind).names, kind


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("datetimes", [False, True])
def test_frame_scores_equal_ndjson_scores(backend: str, kind: str, datetimes: bool) -> None:
    events = _events()
    want = Scorer(backend=backend)
    want.ingest(_ndjson(events))
    got = Scorer(backend=backend)
    frame = _frame(kind, _rows(events), datetimes)
    assert frame_kind(frame) == kind
    report = got.ingest(frame)
    assert report.accepted == len(events)
    now = T0 + 61 * DAY
    a, b = got.score(now), want.score(now)
    assert a.user_ids == b.user_ids
    np.testing.assert_array_equal(a.raw_score, b.raw_score)
    np.testing.assert_array_equal(a.decayed, b.decayed)
    np.testing.assert_array_equal(a.tier_code, b.tier_code)


@pytest.mark.parametrize("kind", KINDS)
def test_from_frame_builds_the_ndjson_batch(kind: str) -> None:
    events = _events(seed=11)
    _assert_same_batch(
        EventBatch.from_frame(_frame(kind, _rows(events))), EventBatch.from_ndjson(_ndjson(events))
    )


@pytest.mark.parametrize("kind", KINDS)
def test_column_mapping(kind: str) -> None:
    events = _events(seed=3, n=50)
    rows = [
        {
            "customer": r["user_id"],
            "event_time": r["timestamp"],
            "kind": r["type"],
            "user_id": "decoy",
            **{k: v for k, v in r.items() if k not in ("user_id", "timestamp", "type")},
        }
        for r in _rows(events)
    ]
    mapping = {"user_id": "customer", "timestamp": "event_time", "type": "kind"}
    got = EventBatch.from_frame(_frame(kind, rows), columns=mapping)
    _assert_same_batch(got, EventBatch.from_ndjson(_ndjson(events)))
    assert "decoy" not in got.interners.users.names


def test_integer_user_ids_are_their_decimal_text() -> None:
    df = pd.DataFrame({"type": ["app_opened"] * 3, "user_id": [7, 12, 7], "timestamp": [T0, T0 + 1, T0 + 2]})
    batch = EventBatch.from_frame(df)
    assert batch.interners.users.names == ("7", "12")
    assert batch.user.tolist() == [0, 1, 0]


def test_missing_required_column_names_it() -> None:
    df = pd.DataFrame({"type": ["app_opened"], "user_id": ["u"]})
    with pytest.raises(SchemaError) as info:
        Scorer().ingest(df)
    assert str(info.value) == (
        "the frame has no column `timestamp` (required): its columns are 'type', 'user_id'; "
        "map another with columns={'timestamp': 'its_name'}"
    )


def test_missing_mapped_column_names_it() -> None:
    df = pl.DataFrame({"type": ["app_opened"], "user_id": ["u"], "ts": [T0]})
    with pytest.raises(SchemaError) as info:
        EventBatch.from_frame(df, columns={"timestamp": "event_time"})
    assert str(info.value) == (
        "the frame has no column 'event_time' (mapped to `timestamp`): its columns are 'type', 'user_id', 'ts'"
    )


def test_unknown_mapping_key() -> None:
    df = pd.DataFrame({"type": ["app_opened"], "user_id": ["u"], "timestamp": [T0]})
    with pytest.raises(
        ConfigError, match=r"^unknown event column 'ts' in columns=: use type, user_id, timestamp,"
    ):
        EventBatch.from_frame(df, columns={"ts": "timestamp"})


@pytest.mark.parametrize("kind", KINDS)
def test_wrong_dtype_is_located(kind: str) -> None:
    rows = [{"type": "order_completed", "user_id": "u", "timestamp": T0, "amount": "12.5"}]
    with pytest.raises(SchemaError) as info:
        EventBatch.from_frame(_frame(kind, rows), columns={"revenue": "amount"})
    message = str(info.value)
    assert message.startswith("Expected `float`, got `")
    assert message.endswith("string` - at `$.revenue` (frame column 'amount')")


@pytest.mark.parametrize(
    ("column", "values", "message"),
    [
        ("timestamp", [1.5, 2.5], "Expected `int | datetime`, got `double` - at `$.timestamp`"),
        ("user_id", [1.5, 2.5], "Expected `str`, got `double` - at `$.user_id`"),
    ],
)
def test_wrong_dtype_messages(column: str, values: list[Any], message: str) -> None:
    data: dict[str, Any] = {"type": ["app_opened"] * 2, "user_id": ["a", "b"], "timestamp": [T0, T0]}
    data[column] = values
    with pytest.raises(SchemaError) as info:
        EventBatch.from_frame(pd.DataFrame(data))
    assert str(info.value) == message


def test_null_id_is_located_by_row() -> None:
    df = pd.DataFrame({"type": ["app_opened"] * 2, "user_id": ["a", None], "timestamp": [T0, T0]})
    with pytest.raises(SchemaError) as info:
        EventBatch.from_frame(df)
    assert str(info.value) == "Expected `str`, got `null` - at `$[1].user_id`"
    assert info.value.position == 1


def test_mixed_object_column_names_the_column() -> None:
    df = pd.DataFrame(
        {"type": ["app_opened"] * 2, "user_id": ["a", "b"], "timestamp": [T0, T0], "revenue": [1.0, "x"]}
    )
    with pytest.raises(
        SchemaError, match=r"^Expected one type per column, got .* - in frame column 'revenue'$"
    ):
        EventBatch.from_frame(df)


def test_failed_frame_ingest_changes_nothing() -> None:
    scorer = Scorer()
    df = pd.DataFrame({"type": ["app_opened", "nope"], "user_id": ["a", "b"], "timestamp": [T0, T0]})
    with pytest.raises(SchemaError, match="Unknown event type 'nope'"):
        scorer.ingest(df)
    assert scorer.n_users == 0 and len(scorer.interners.users) == 0


def test_not_a_frame() -> None:
    with pytest.raises(
        SchemaError, match=r"^Expected a pandas or polars DataFrame or a pyarrow Table, got `dict`$"
    ):
        EventBatch.from_frame({"type": ["app_opened"]})


# --- order logs -----------------------------------------------------------------------------
ORDERS = [
    ("ann", "2024-01-05", 30.0),
    ("bob", "2024-01-06T10:00:00+02:00", 12.0),
    ("ann", "2024-02-01", 12.5),
]


def _orders_csv(tmp_path: Path) -> Path:
    path = tmp_path / "orders.csv"
    path.write_text("cust,day,amount\n" + "".join(f"{c},{d},{r}\n" for c, d, r in ORDERS))
    return path


@pytest.mark.parametrize("kind", KINDS)
def test_from_orders_frame_equals_csv(tmp_path: Path, kind: str) -> None:
    cols = {"cust": [o[0] for o in ORDERS], "day": [o[1] for o in ORDERS], "amount": [o[2] for o in ORDERS]}
    frame = {"pandas": pd.DataFrame, "polars": pl.DataFrame, "arrow": pa.table}[kind](cols)
    got = EventBatch.from_orders(frame, customer="cust", date="day", revenue="amount")
    want = EventBatch.from_orders(_orders_csv(tmp_path), customer="cust", date="day", revenue="amount")
    _assert_same_batch(got, want)
    assert want.ts_ms.tolist()[1] == 1_704_528_000_000  # 2024-01-06T08:00Z


def test_from_orders_typed_columns() -> None:
    df = pd.DataFrame(
        {
            "customer_id": [101, 202, 101],
            "date": pd.to_datetime(["2024-01-05", "2024-01-06", "2024-02-01"]),
            "revenue": [30, 12, 0],
        }
    )
    batch = EventBatch.from_orders(df)
    assert batch.interners.users.names == ("101", "202")
    assert batch.ts_ms.tolist() == [1_704_412_800_000, 1_704_499_200_000, 1_706_745_600_000]
    dates = pl.DataFrame(
        {"customer_id": ["a"], "date": [pd.Timestamp("2024-01-05").date()], "revenue": [1.0]}
    )
    assert EventBatch.from_orders(dates).ts_ms.tolist() == [1_704_412_800_000]


def test_from_orders_bad_rows() -> None:
    df = pd.DataFrame(
        {
            "customer_id": ["a", "", "c", "d"],
            "date": ["2024-01-05", "2024-01-05", "soon", "2024-01-05"],
            "revenue": [1.0, 2.0, 3.0, -4.0],
        }
    )
    batch = EventBatch.from_orders(df, errors="collect")
    assert batch.interners.users.names == ("a",)
    assert batch.rejects.errors == [
        (1, "Expected a customer id, got '' - at row 1, column `customer_id`"),
        (2, "Expected an ISO-8601 date (e.g. 1997-01-31), got 'soon' - at row 2, column `date`"),
        (3, "Expected a finite revenue >= 0, got -4.0 - at row 3, column `revenue`"),
    ]
    with pytest.raises(SchemaError, match=r"got '' - at row 1, column `customer_id`$"):
        EventBatch.from_orders(df)


def test_from_orders_missing_column() -> None:
    with pytest.raises(SchemaError) as info:
        EventBatch.from_orders(pd.DataFrame({"cust": ["a"], "date": ["2024-01-01"], "revenue": [1]}))
    assert str(info.value) == (
        "the order frame has no column `customer_id` (customer_id): its columns are 'cust', 'date', "
        "'revenue' (map others with customer=, date=, revenue=)"
    )


def test_from_orders_matches_lifetimes_summary(tmp_path: Path) -> None:
    """The orders give lifetimes' own RFM summary (frequency, recency, T in days)."""
    lifetimes = pytest.importorskip("lifetimes")
    from affinity_sdk.models.bgnbd import summary_from_batch

    rng = random.Random(5)
    tx = pd.DataFrame(
        {
            "cust": [rng.randrange(20) for _ in range(200)],
            "day": [f"2024-{rng.randint(1, 6):02d}-{rng.randint(1, 28):02d}" for _ in range(200)],
            "amount": [round(rng.uniform(1, 90), 2) for _ in range(200)],
        }
    )
    want = lifetimes.utils.summary_data_from_transaction_data(
        tx, "cust", "day", monetary_value_col="amount", observation_period_end="2024-07-01", freq="D"
    )
    batch = EventBatch.from_orders(tx, customer="cust", date="day", revenue="amount")
    got = summary_from_batch(batch, end_ms=1_719_792_000_000, period="1d")
    order = [batch.interners.users.lookup(str(c)) for c in want.index]
    np.testing.assert_array_equal(got.frequency[order], want["frequency"].to_numpy())
    np.testing.assert_array_equal(got.recency[order], want["recency"].to_numpy())
    np.testing.assert_array_equal(got.T[order], want["T"].to_numpy())


def test_read_order_log_unchanged(tmp_path: Path) -> None:
    batch = read_order_log(
        _orders_csv(tmp_path), columns={"customer_id": "cust", "date": "day", "revenue": "amount"}
    )
    assert batch.revenue.tolist() == [30.0, 12.0, 12.5]
