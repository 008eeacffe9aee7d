"""EventBatch builders agree: Structs, NDJSON (C++ reader and msgspec), Arrow."""

from __future__ import annotations

import msgspec
import numpy as np
import pytest
from _event_strategies import events
from hypothesis import given, settings
from hypothesis import strategies as st

from affinity_sdk._backends import native
from affinity_sdk.capture.decode import decode_ndjson
from affinity_sdk.errors import SchemaError
from affinity_sdk.ingest.batch import EVENT_COLUMNS, ITEM_COLUMNS, EventBatch, take_rows
from affinity_sdk.ingest.interner import Interner, Interners

HAS_READER = native() is not None and hasattr(native(), "read_ndjson")
READERS = ["python", pytest.param("native", marks=pytest.mark.skipif(not HAS_READER, reason="no _native"))]
KINDS = ("users", "products", "categories", "brands", "campaigns")


def assert_same(a: EventBatch, b: EventBatch) -> None:
    assert len(a) == len(b) and a.n_items == b.n_items
    for name in (*EVENT_COLUMNS, *ITEM_COLUMNS):
        x, y = getattr(a, name), getattr(b, name)
        assert x.dtype == y.dtype, name
        # bitwise: NaN == NaN, and -0.0 differs from 0.0
        assert x.tobytes() == y.tobytes(), name
    for kind in KINDS:
        assert getattr(a.interners, kind) == getattr(b.interners, kind), kind


def ndjson(evs: list[object]) -> bytes:
    return b"\n".join(msgspec.json.encode(e) for e in evs)


@pytest.mark.parametrize("reader", READERS)
@settings(max_examples=60, deadline=None)
@given(evs=st.lists(events, max_size=12))
def test_ndjson_equals_from_events(reader: str, evs: list[object]) -> None:
    want = EventBatch.from_events(evs)  # type: ignore[arg-type]
    assert_same(EventBatch.from_ndjson(ndjson(evs), reader=reader), want)  # type: ignore[arg-type]


def _mutate(line: bytes, at: int, junk: bytes) -> bytes:
    at = at % (len(line) + 1)
    return line[:at] + junk + line[at + len(junk) :]


mutations = st.sampled_from(
    [b'"', b"\\", b"-", b"0", b"1e5", b" ", b"null", b"}", b",", b"\xc3\xa9", b"\xff", b"T", b"Z", b"\\u00e9"]
)


@pytest.mark.skipif(not HAS_READER, reason="no _native")
@settings(max_examples=120, deadline=None)
@given(
    evs=st.lists(events, min_size=1, max_size=8),
    edits=st.lists(st.tuples(st.integers(0, 7), st.integers(0, 400), mutations), max_size=4),
    mode=st.sampled_from(["skip", "collect"]),
)
def test_native_reader_matches_msgspec_on_mutated_lines(
    evs: list[object], edits: list[tuple[int, int, bytes]], mode: str
) -> None:
    lines = [msgspec.json.encode(e) for e in evs]
    for which, at, junk in edits:
        i = which % len(lines)
        lines[i] = _mutate(lines[i], at, junk)
    data = b"\n".join(lines)
    py = EventBatch.from_ndjson(data, errors=mode, unknown_types="skip", reader="python")  # type: ignore[arg-type]
    cpp = EventBatch.from_ndjson(data, errors=mode, unknown_types="skip", reader="native")  # type: ignore[arg-type]
    assert_same(cpp, py)
    assert cpp.rejects == py.rejects
    # ...and both equal the Struct path.
    assert_same(py, EventBatch.from_events(decode_ndjson(data, errors="skip", unknown_types="skip")))


@pytest.mark.parametrize("reader", READERS)
def test_interner_is_stable_across_batches(reader: str) -> None:
    names = Interners()
    a = EventBatch.from_ndjson(b'{"type":"app_opened","user_id":"x","timestamp":1}', names, reader=reader)  # type: ignore[arg-type]
    b = EventBatch.from_ndjson(
        b'{"type":"app_opened","user_id":"y","timestamp":1}\n{"type":"app_opened","user_id":"x","timestamp":2}',
        names,
        reader=reader,  # type: ignore[arg-type]
    )
    assert a.user.tolist() == [0] and b.user.tolist() == [1, 0]
    assert Interner(names.users.names) == names.users


@pytest.mark.parametrize("reader", READERS)
def test_batch_error_modes(reader: str) -> None:
    data = b'{"type":"app_opened","user_id":"u","timestamp":1}\n{"type":"app_opened"}\n\n{"type":"q"}'
    with pytest.raises(SchemaError, match=r"\(line 2\)") as info:
        EventBatch.from_ndjson(data, reader=reader)  # type: ignore[arg-type]
    assert info.value.position == 1
    batch = EventBatch.from_ndjson(data, errors="collect", unknown_types="skip", reader=reader)  # type: ignore[arg-type]
    assert len(batch) == 1
    assert batch.rejects.errors == [(1, "Object missing required field `user_id` (line 2)")]
    assert batch.rejects.n_unknown == 1


def test_interner_intern_many() -> None:
    names = Interner(["a"])
    assert names.intern_many(["b", "a", "c", "b"]).tolist() == [1, 0, 2, 1]
    assert names.names == ("a", "b", "c")


@settings(max_examples=40, deadline=None)
@given(evs=st.lists(events, max_size=10))
def test_arrow_round_trip(evs: list[object]) -> None:
    pytest.importorskip("pyarrow")
    batch = EventBatch.from_events(evs)  # type: ignore[arg-type]
    assert_same(EventBatch.from_arrow(batch.to_arrow()), batch)


def test_arrow_products_column_must_be_a_list_of_objects() -> None:
    pa = pytest.importorskip("pyarrow")
    base = {"type": ["product_viewed"], "user_id": ["u"], "timestamp": [1]}
    # A column of Python lists that became strings on the way (Dask's string conversion does that).
    as_text = pa.table({**base, "products": ["[{'product_id': 'p'}]"]})
    with pytest.raises(
        SchemaError, match=r"Expected `array` of product objects, got `string` - at `\$\.products`"
    ):
        EventBatch.from_arrow(as_text)
    with pytest.raises(SchemaError, match="got `list<item: int64>`"):
        EventBatch.from_arrow(pa.table({**base, "products": [[1]]}))
    # An all-null column has Arrow type null: no product lines, like a missing column.
    batch = EventBatch.from_arrow(pa.table({**base, "products": pa.array([None], pa.null())}))
    assert len(batch) == 1 and batch.n_items == 0


def test_arrow_plain_columns_and_errors(tmp_path: object) -> None:
    pa = pytest.importorskip("pyarrow")
    table = pa.table(
        {
            "type": ["product_viewed", "email_opened"],
            "user_id": ["u1", "u2"],
            "timestamp": pa.array([1_000, 2_000], type=pa.timestamp("us", tz="UTC")),
            "event_id": ["e1", None],
            "campaign_id": [None, "c"],
            "products": [
                [{"product_id": "p", "category": "c", "brand": "b", "price": 2.0, "quantity": 3}],
                [],
            ],
        }
    )
    batch = EventBatch.from_arrow(table)
    assert batch.ts_ms.tolist() == [1, 2]
    assert batch.revenue[0] == 6.0 and np.isnan(batch.revenue[1])
    assert batch.event_id[1] == 0 and batch.event_id[0] != 0
    assert batch.campaign.tolist() == [-1, 0] and batch.channel.tolist() == [0, 2]
    bad = table.set_column(0, "type", pa.array(["product_viewed", "bogus"]))
    with pytest.raises(SchemaError, match=r"Unknown event type 'bogus' - at `\$\[1\]\.type`"):
        EventBatch.from_arrow(bad)
    missing = table.set_column(1, "user_id", pa.array(["u1", None]))
    with pytest.raises(SchemaError, match=r"got `null` - at `\$\[1\]\.user_id`"):
        EventBatch.from_arrow(missing)
    from affinity_sdk.ingest.interner import event_id_hash

    assert int(batch.event_id[0]) == event_id_hash("e1")


@settings(max_examples=60, deadline=None)
@given(evs=st.lists(events, max_size=12), data=st.data())
def test_take_rows_equals_the_batch_of_the_kept_events(evs: list[object], data: st.DataObject) -> None:
    keep = np.array(data.draw(st.lists(st.booleans(), min_size=len(evs), max_size=len(evs))), dtype=bool)
    names = Interners()
    whole = EventBatch.from_events(evs, names)  # type: ignore[arg-type]
    kept = take_rows(whole, keep)
    # The same interners: codes of the dropped events' names stay interned, as in `whole`.
    alone = EventBatch.from_events([e for e, k in zip(evs, keep, strict=True) if k], names)  # type: ignore[arg-type]
    assert_same(kept, alone)
