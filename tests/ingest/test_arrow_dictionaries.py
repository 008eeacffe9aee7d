"""Dictionary columns read row group by row group (``ingest.arrow_codes._DictionaryMemo``): a dictionary
shared by row groups is mapped once, only values some row uses are checked and interned (in
order of first appearance), nulls stay -1, and codes follow the interner when its codes move;
plus the buffer reads that replace pyarrow's ``to_numpy`` and the read-ahead of ``iter_parquet``."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pa = pytest.importorskip("pyarrow", reason="the [arrow] extra (pyarrow) is not installed")
pq = pytest.importorskip("pyarrow.parquet")

from affinity_sdk.errors import SchemaError  # noqa: E402
from affinity_sdk.ingest import arrow, arrow_codes  # noqa: E402
from affinity_sdk.ingest.batch import EventBatch  # noqa: E402
from affinity_sdk.ingest.interner import Interner, Interners, normalize_id  # noqa: E402
from affinity_sdk.ingest.parquet import iter_parquet, read_parquet  # noqa: E402

_TS = 1_700_000_000_000


def _table(users: Any, campaigns: Any = None) -> Any:
    """An ``app_opened`` table with these ``user_id`` (and ``campaign_id``) columns."""
    n = len(users)
    columns = {"type": pa.array(["app_opened"] * n), "user_id": users, "timestamp": pa.array([_TS] * n)}
    if campaigns is not None:
        columns["campaign_id"] = campaigns
    return pa.table(columns)


def _dictionary_column(indices: list[int | None], values: list[str]) -> Any:
    return pa.DictionaryArray.from_arrays(pa.array(indices, pa.int32()), pa.array(values, pa.string()))


def _names_of(batches: list[EventBatch], interners: Interners) -> list[str]:
    names = interners.users.names
    return [names[c] for batch in batches for c in batch.user.tolist()]


@pytest.mark.parametrize("shared", [True, False], ids=["shared-dictionary", "own-dictionaries"])
def test_a_lake_reads_the_ids_written_coded_in_first_seen_order(tmp_path: Path, shared: bool) -> None:
    rng = np.random.default_rng(5)
    ids = [f"user-{i}" for i in range(300)] + ["Jose\u0301", "Jos\u00e9"]  # one user after NFC
    rows = rng.integers(0, len(ids), size=2_000)
    column = pa.array([ids[i] for i in rows.tolist()], pa.string())
    if shared:  # pyarrow writes a dictionary column's whole dictionary into every row group
        column = pa.DictionaryArray.from_arrays(pa.array(rows, pa.int32()), pa.array(ids, pa.string()))
    pq.write_table(_table(column), tmp_path / "a.parquet", row_group_size=250)
    assert pq.ParquetFile(tmp_path / "a.parquet").num_row_groups == 8

    names = Interners()
    batches = list(iter_parquet(tmp_path, names))
    want = [normalize_id(ids[i]) for i in rows.tolist()]
    assert _names_of(batches, names) == want
    assert list(names.users.names) == list(dict.fromkeys(want))  # first-seen order, each once
    memo = names.users.memo
    assert isinstance(memo, arrow_codes._DictionaryMemo)
    if shared:  # the last row group's memo covers every value used in the lake, and only those
        used = np.unique(rows)
        assert (memo.table[used] >= 0).all()
        assert (np.delete(memo.table, used) == -1).all()


def test_unused_dictionary_values_are_neither_checked_nor_interned_until_a_row_uses_them(
    tmp_path: Path,
) -> None:
    values = ["a", "", "x" * 600, "b", "late"]  # "" and a 600-character id are bad ids
    groups = [[0, 3, 0], [3, None, 0], [4, 0, 3], [1, 0]]  # the last group uses "" (row 0)
    names = Interners()
    # Nulls in the user id column are an error, with a dictionary or without.
    with pytest.raises(SchemaError, match=r"Expected `str`, got `null` - at `\$\[1\]\.user_id`"):
        EventBatch.from_arrow(_table(_dictionary_column(groups[1], values)), names)
    batch = EventBatch.from_arrow(_table(_dictionary_column(groups[0], values)), names)
    assert batch.user.tolist() == [0, 1, 0]
    batch = EventBatch.from_arrow(_table(_dictionary_column(groups[2], values)), names)
    assert batch.user.tolist() == [2, 0, 1]
    assert names.users.names == ("a", "b", "late")  # the bad values were never interned
    with pytest.raises(SchemaError, match=r"Expected `str` of length >= 1 - at `\$\[0\]\.user_id`"):
        EventBatch.from_arrow(_table(_dictionary_column(groups[3], values)), names)
    assert names.users.names == ("a", "b", "late")
    # Through Parquet (pyarrow writes the whole dictionary, bad values included, in every row
    # group): positions count from the start of the lake.
    rows = [0, 3, 0, 3, 0, 0, 4, 0, 3]
    pq.write_table(_table(_dictionary_column(rows, values)), tmp_path / "a.parquet", row_group_size=3)
    assert [b.user.tolist() for b in iter_parquet(tmp_path / "a.parquet")] == [
        [0, 1, 0],
        [1, 0, 0],
        [2, 0, 1],
    ]
    pq.write_table(_table(_dictionary_column([2], values)), tmp_path / "b.parquet")
    with pytest.raises(
        SchemaError, match=r"b\.parquet \(row group 0\): Expected `str` of length <= 512"
    ) as info:
        list(iter_parquet([tmp_path / "a.parquet", tmp_path / "b.parquet"]))
    assert info.value.position == 9


def test_optional_columns_keep_nulls_with_a_shared_dictionary() -> None:
    values = pa.array(["spring", "summer", "unused"], pa.string())
    names = Interners()
    users = pa.array(["u", "v", "u"])
    first = pa.DictionaryArray.from_arrays(pa.array([1, None, 1], pa.int8()), values)
    again = pa.DictionaryArray.from_arrays(pa.array([None, 0, 1], pa.int8()), pa.array(values.to_pylist()))
    assert EventBatch.from_arrow(_table(users, first), names).campaign.tolist() == [0, -1, 0]
    assert EventBatch.from_arrow(_table(users, again), names).campaign.tolist() == [-1, 1, 0]
    assert names.campaigns.names == ("summer", "spring")
    sliced = EventBatch.from_arrow(_table(users.slice(1), again.slice(1)), names)  # an offset in the indices
    assert sliced.campaign.tolist() == [1, 0]


def test_codes_follow_the_interner_when_its_codes_move() -> None:
    values = ["u0", "u1", "u2"]
    names = Interners()
    EventBatch.from_arrow(_table(_dictionary_column([0, 1], values)), names)
    names.users.forget("u1")  # a forgotten id comes back as a new user
    batch = EventBatch.from_arrow(_table(_dictionary_column([1, 0, 2], values)), names)
    assert batch.user.tolist() == [names.users.lookup("u1"), 0, names.users.lookup("u2")] == [2, 0, 3]
    names.users.truncate(2)  # a rolled-back ingest: "u1" and "u2" were never interned
    batch = EventBatch.from_arrow(_table(_dictionary_column([2, 1], values)), names)
    assert batch.user.tolist() == [2, 3]
    assert names.users.names == ("u0", "", "u2", "u1")
    names.users.alias("anon", 0)
    EventBatch.from_arrow(_table(_dictionary_column([0, 1, 2], ["anon", "u1", "u2"])), names)
    names.users.alias("anon", 2)  # identity stitching moves an alias
    batch = EventBatch.from_arrow(_table(_dictionary_column([0, 1], ["anon", "u1"])), names)
    assert batch.user.tolist() == [2, 3]
    names.users.drop_alias("anon")
    batch = EventBatch.from_arrow(_table(_dictionary_column([0, 1], ["anon", "u1"])), names)
    assert batch.user.tolist() == [4, 3]


def test_a_change_of_normal_form_is_not_hidden_by_the_memo() -> None:
    values = ["Jose\u0301"]
    names = Interners()
    assert EventBatch.from_arrow(_table(_dictionary_column([0], values)), names).user.tolist() == [0]
    names.users.normalize = None  # from now on the decomposed spelling is an id of its own
    assert EventBatch.from_arrow(_table(_dictionary_column([0], values)), names).user.tolist() == [1]


def test_an_interner_pickles_without_its_memo() -> None:
    names = Interners()
    EventBatch.from_arrow(_table(_dictionary_column([0, 1], ["a", "b"])), names)
    names.users.forget("a")
    assert names.users.memo is not None
    copy = pickle.loads(pickle.dumps(names.users))
    assert copy.memo is None
    assert copy == names.users and copy.epoch == names.users.epoch and copy.normalize == "NFC"
    assert copy.lookup("b") == 1 and copy.lookup("a") is None and copy.intern("a") == 2


@pytest.mark.parametrize(
    "kind", ["int8", "uint16", "int32", "int64", "uint64", "float32", "float64", "bool_"]
)
def test_numpy_reads_the_buffers_as_to_numpy_would(kind: str) -> None:
    rng = np.random.default_rng(11)
    for _ in range(25):
        n = int(rng.integers(1, 40))
        raw = rng.integers(0, 2 if kind == "bool_" else 100, size=n)
        values = [None if rng.random() < 0.2 else (bool(v) if kind == "bool_" else int(v)) for v in raw]
        array = pa.array(values, getattr(pa, kind)())
        start = int(rng.integers(0, n))
        part = array.slice(start, int(rng.integers(0, n - start + 1)))
        fill = False if kind == "bool_" else 7
        got = arrow._numpy(part, fill)
        want = part.fill_null(fill).to_numpy(zero_copy_only=False)
        assert got.dtype == want.dtype and got.tolist() == want.tolist()
        if not part.null_count:
            got = arrow._numpy(pa.chunked_array([part], part.type))
            assert got.tolist() == part.to_numpy(zero_copy_only=False).tolist()


def test_read_ahead_gives_the_same_batches_and_stops_cleanly(tmp_path: Path) -> None:
    for i in range(3):
        users = pa.array([f"u{(i * 7 + k) % 13}" for k in range(40)])
        pq.write_table(_table(users), tmp_path / f"part-{i}.parquet", row_group_size=15)
    ahead, plain = Interners(), Interners()
    a = [b.user.tolist() for b in iter_parquet(tmp_path, ahead)]
    b = [b.user.tolist() for b in iter_parquet(tmp_path, plain, read_ahead=False)]
    assert a == b and len(a) == 9 and ahead.users == plain.users
    batches = iter_parquet(tmp_path)
    next(batches)
    batches.close()  # the worker finishes its row group; the file is closed after it
    pq.write_table(_table(pa.array(["u", ""])), tmp_path / "part-3.parquet")
    with pytest.raises(SchemaError, match=r"part-3\.parquet \(row group 0\)") as info:
        read_parquet(tmp_path)
    assert info.value.position == 121
    assert isinstance(Interner().epoch, int)


def test_product_lists_with_nulls_and_a_slice_offset_give_their_own_items() -> None:
    item = pa.struct([("product_id", pa.string()), ("category", pa.string()), ("brand", pa.string()),
                      ("price", pa.float64()), ("quantity", pa.int32())])  # fmt: skip
    lists = [
        [{"product_id": "p0", "category": "c", "brand": "b", "price": 1.0, "quantity": 1}],
        [{"product_id": "p1", "category": "c", "brand": "b", "price": 2.0, "quantity": 3}],
        None,
        [{"product_id": f"p{k}", "category": "d", "brand": "b", "price": 4.0, "quantity": 2} for k in (2, 3)],
    ]
    n = len(lists)
    table = pa.table(
        {
            "type": pa.array(["order_completed"] * n),
            "user_id": pa.array(["u"] * n),
            "timestamp": pa.array([_TS] * n),
            "products": pa.array(lists, pa.list_(item)),
        }
    )
    batch = EventBatch.from_arrow(table.slice(1))
    names = batch.interners.products.names
    assert [names[c] for c in batch.item_product.tolist()] == ["p1", "p2", "p3"]
    assert batch.item_event.tolist() == [0, 2, 2]
    assert batch.item_price.tolist() == [2.0, 4.0, 4.0] and batch.item_quantity.tolist() == [3, 2, 2]
    batch = EventBatch.from_arrow(table.slice(1, 1))  # no null list: the values are read in place
    assert batch.item_price.tolist() == [2.0] and batch.item_event.tolist() == [0]
