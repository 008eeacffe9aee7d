"""A folder (or list) of Parquet files read row group by row group (``ingest.parquet.read_parquet``,
``iter_parquet``): the same events as the simulator wrote, only the columns the views read,
strings as dictionaries, errors located by file and row group, scores as from one batch."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

pa = pytest.importorskip("pyarrow", reason="the [arrow] extra (pyarrow) is not installed")

from affinity_sdk.errors import SchemaError  # noqa: E402
from affinity_sdk.ingest import parquet  # noqa: E402
from affinity_sdk.ingest.batch import EVENT_COLUMNS, ITEM_COLUMNS, EventBatch, take_rows  # noqa: E402
from affinity_sdk.ingest.parquet import iter_parquet, parquet_files, read_parquet  # noqa: E402
from affinity_sdk.profile.store import ProfileStore  # noqa: E402
from affinity_sdk.sim.shop import ShopSimulation, simulate_shop  # noqa: E402

_CODED = {"user": "users", "campaign": "campaigns", "item_product": "products"}
_CODED_ITEMS = {"item_category": "categories", "item_brand": "brands"}


@pytest.fixture(scope="module")
def sim() -> ShopSimulation:
    return simulate_shop(60, weeks=3, horizon_weeks=1, seed=8)


def _lake(sim: ShopSimulation, root: Path, n_files: int = 3) -> list[Path]:
    """The simulator's events over ``n_files`` files (one in a sub-folder), several row groups each."""
    n = len(sim.batch)
    files = []
    for i, rows in enumerate(np.array_split(np.arange(n), n_files)):
        keep = np.zeros(n, dtype=np.bool_)
        keep[rows] = True
        folder = root / ("year=2026" if i == n_files - 1 else "")
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"part-{i}.parquet"
        take_rows(sim.batch, keep).to_parquet(path, row_group_size=max(1, len(rows) // 4))
        files.append(path)
    return files


def _by_name(batch: EventBatch) -> dict[str, Any]:
    """Every column with codes replaced by the names they stand for."""
    out: dict[str, Any] = {}
    for column in (*EVENT_COLUMNS, *ITEM_COLUMNS):
        values = getattr(batch, column)
        kind = _CODED.get(column) or _CODED_ITEMS.get(column)
        if kind is not None:
            names = getattr(batch.interners, kind).names
            values = [names[c] if c >= 0 else None for c in values.tolist()]
        out[column] = values
    return out


def assert_same_events(got: EventBatch, want: EventBatch) -> None:
    a, b = _by_name(got), _by_name(want)
    for column in a:
        np.testing.assert_array_equal(np.asarray(a[column]), np.asarray(b[column]), err_msg=column)


def test_a_folder_and_a_list_read_as_the_events_written(sim: ShopSimulation, tmp_path: Path) -> None:
    files = _lake(sim, tmp_path / "lake")
    assert parquet_files(tmp_path / "lake") == [str(f) for f in files]  # sorted: the sub-folder last
    whole = read_parquet(tmp_path / "lake")
    assert_same_events(whole, sim.batch)
    assert_same_events(read_parquet(files), sim.batch)
    first, _, last = np.array_split(np.arange(len(sim.batch)), 3)
    first_and_last = np.isin(np.arange(len(sim.batch)), np.r_[first, last])
    got = read_parquet([files[0], tmp_path / "lake" / "year=2026"])
    assert_same_events(got, take_rows(sim.batch, first_and_last))
    assert (
        whole.interners.users.names
        == EventBatch.from_arrow(
            pa.concat_tables([EventBatch.from_parquet(f).to_arrow() for f in files])
        ).interners.users.names
    )  # first-seen order, as one table gives


def test_row_groups_stream_and_fold_to_the_same_store(sim: ShopSimulation, tmp_path: Path) -> None:
    files = _lake(sim, tmp_path / "lake")
    batches = iter_parquet(tmp_path / "lake")
    first = next(batches)
    assert 0 < len(first) <= len(sim.batch) // 12 + 1  # one row group, not the lake
    streamed = ProfileStore(views=("signals", "engagement"), backend="reference")
    streamed.ingest(first)
    for batch in batches:
        streamed.ingest(batch)
    one = ProfileStore(views=("signals", "engagement"), backend="reference")
    one.ingest(sim.batch)
    now = one.now_ms(None)
    assert streamed.events_ingested == one.events_ingested == len(sim.batch)
    ids = one.interners.users.names
    for user_id in ids:
        a, b = streamed.interners.users.lookup(user_id), one.interners.users.lookup(user_id)
        assert a is not None and b is not None
        assert streamed.view("signals").raw_of(a, now) == pytest.approx(
            one.view("signals").raw_of(b, now), rel=1e-12
        )
    assert len(files) == 3


def test_only_the_views_columns_are_read_and_strings_as_dictionaries(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    table = EventBatch.from_ndjson(
        b'{"type":"app_opened","user_id":"u","timestamp":5}\n'
        b'{"type":"app_opened","user_id":"v","timestamp":6}'
    ).to_arrow()
    bad = table.set_column(
        table.column_names.index("channel"), "channel", pa.array(["web", "carrier-pigeon"])
    )
    import pyarrow.parquet as pq

    pq.write_table(table, tmp_path / "a.parquet")
    pq.write_table(bad, tmp_path / "b.parquet")
    seen: list[Any] = []
    original = EventBatch.from_arrow.__func__  # type: ignore[attr-defined]

    def spy(cls: type[EventBatch], table: Any, interners: Any = None) -> EventBatch:
        seen.append(table.schema)
        return original(cls, table, interners)  # type: ignore[no-any-return]

    monkeypatch.setattr(EventBatch, "from_arrow", classmethod(spy))
    batch = read_parquet(tmp_path, views=("signals",))  # the bad channel is never read
    assert batch.interners.users.names == ("u", "v")
    assert all("channel" not in schema.names for schema in seen)
    assert all(pa.types.is_dictionary(schema.field("user_id").type) for schema in seen)
    with pytest.raises(
        SchemaError, match=r"b\.parquet \(row group 0\): Invalid channel - at `\$\[1\]\.channel`"
    ) as info:
        read_parquet(tmp_path, views=("signals", "engagement"))
    assert info.value.position == 3  # counted from the start of the lake


def test_no_files_and_unknown_views_raise(tmp_path: Path) -> None:
    with pytest.raises(SchemaError, match=r"no \.parquet files in the folder"):
        read_parquet(tmp_path)
    with pytest.raises(ValueError, match="unknown views"):
        parquet.parquet_columns(("scores",))
