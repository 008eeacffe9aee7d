"""A file read ahead (started before its caller is ready) gives the batches of the file, stops
cleanly, and is started by ``affinity score`` before numpy and the scorer are loaded."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
import pytest
from _event_strategies import events
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from affinity_sdk._backends import native
from affinity_sdk.cli import main
from affinity_sdk.ingest import ndjson
from affinity_sdk.ingest.batch import EVENT_COLUMNS, EventBatch
from affinity_sdk.ingest.interner import Interners
from affinity_sdk.ingest.ndjson import read_ndjson_file
from affinity_sdk.ingest.read_ahead import AHEAD, Parsed, ReadAhead

pytestmark = pytest.mark.skipif(
    native() is None or not hasattr(native(), "NdjsonReader"), reason="no compiled reader"
)
LINE = b'{"type":"app_opened","user_id":"u-%d","timestamp":1}'


def workers_alive() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("affinity-ndjson") and t.is_alive()]


def wait_for(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    evs=st.lists(events, min_size=1, max_size=14),
    chunk_bytes=st.integers(1, 700),
    early=st.integers(0, 8),
    cuts=st.lists(st.integers(0, 14), max_size=2),
)
def test_read_ahead_gives_the_rows_of_the_whole_file(
    tmp_path: Path, evs: list[object], chunk_bytes: int, early: int, cuts: list[int]
) -> None:
    # Pieces parsed early (before the first is taken) and readers restarted on the way (the
    # interners rolled back after batch k) change nothing: the rows are those of the file.
    path = tmp_path / "events.ndjson"
    path.write_bytes(b"\n".join(msgspec.json.encode(e) for e in evs))
    whole_names = Interners()
    whole = EventBatch.from_ndjson(path.read_bytes(), whole_names, errors="collect", unknown_types="skip")
    names = Interners()
    rows: list[tuple[Any, ...]] = []
    with ReadAhead.open(path, threads=2, chunk_bytes=chunk_bytes, early=early) as ahead:
        stream = read_ndjson_file(path, names, errors="collect", unknown_types="skip", ahead=ahead)
        for k, batch in enumerate(stream):
            rows += _rows(batch, names)
            if k in cuts:
                names.users.truncate(0)  # e.g. a rolled-back ingest took back what was interned
    assert not workers_alive()
    assert rows == _rows(whole, whole_names)


def _rows(batch: EventBatch, names: Interners) -> list[tuple[Any, ...]]:
    """The batch's events as tuples, the user by name (codes change when a reader restarts)."""
    users = [names.users.names[int(u)] for u in batch.user]
    columns = [getattr(batch, name).tobytes() for name in EVENT_COLUMNS if name not in ("user", "campaign")]
    width = [getattr(batch, name).itemsize for name in EVENT_COLUMNS if name not in ("user", "campaign")]
    return [
        (users[i], *(col[i * w : (i + 1) * w] for col, w in zip(columns, width, strict=True)))
        for i in range(len(batch))
    ]


def test_early_pieces_are_parsed_before_the_first_is_taken_then_two_ahead(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "e.ndjson"
    path.write_bytes(b"\n".join(LINE % i for i in range(20)) + b"\n")
    parsed: list[int] = []
    parse = ReadAhead._parse

    def counting(self: ReadAhead, reader: Any) -> Parsed | None:
        parsed.append(1)
        return parse(self, reader)

    monkeypatch.setattr(ReadAhead, "_parse", counting)
    with ReadAhead.open(path, threads=2, chunk_bytes=len(LINE) + 2, early=5) as ahead:
        wait_for(lambda: len(parsed) == 5)
        time.sleep(0.05)
        assert len(parsed) == 5  # no further than `early`
        first = ahead.next_parsed()
        assert first is not None and bytes(first.chunk) == LINE % 0 + b"\n"
        ahead.top_up()
        time.sleep(0.05)
        assert len(parsed) == 5  # four still ahead: more than AHEAD, nothing new
        taken = 1
        while taken < 5 - AHEAD + 1:  # until fewer than AHEAD are left ahead
            ahead.next_parsed()
            ahead.top_up()
            taken += 1
        wait_for(lambda: len(parsed) == 5 + 1)  # then the worker tops up to AHEAD again
        rest = list(iter(ahead.next_parsed, None))
    assert [bytes(p.chunk) for p in rest] == [LINE % i + b"\n" for i in range(taken, 20)]


def test_closing_before_reading_stops_the_worker(tmp_path: Path) -> None:
    path = tmp_path / "e.ndjson"
    path.write_bytes(b"\n".join(LINE % i for i in range(50)) + b"\n")
    ahead = ReadAhead.open(path, threads=2, chunk_bytes=len(LINE) + 2, early=8)
    assert workers_alive()
    ahead.close()
    assert not workers_alive()


def test_score_with_a_bad_config_after_reading_started_leaves_no_worker(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    events_path = tmp_path / "e.ndjson"
    events_path.write_bytes(b"\n".join(LINE % i for i in range(1000)) + b"\n")
    config = tmp_path / "config.toml"
    config.write_text("this is not toml ===\n")
    code = main(
        [
            "score",
            str(events_path),
            "--config",
            str(config),
            "--threads",
            "2",
            "--out",
            str(tmp_path / "o.csv"),
        ]
    )
    assert code == 2
    assert "affinity: error:" in capsys.readouterr().err
    assert not workers_alive()


def test_the_command_starts_reading_before_numpy_is_imported(tmp_path: Path) -> None:
    # What `affinity score` needs up to the read-ahead's start: the package, the CLI and its
    # parser, the format sniffing and the read-ahead itself; numpy and msgspec load meanwhile.
    path = tmp_path / "e.ndjson"
    path.write_bytes(LINE % 1 + b"\n")
    code = (
        "import sys\n"
        "import affinity_sdk, affinity_sdk.cli as cli\n"
        "from affinity_sdk.capture.formats import input_format\n"
        "from affinity_sdk.ingest.read_ahead import ReadAhead\n"
        f"args = cli.build_parser().parse_args(['score', {str(path)!r}, '--out', 'o.csv'])\n"
        "assert input_format(args.events) == 'ndjson'\n"
        "print(sorted(m for m in ('numpy', 'msgspec') if m in sys.modules))\n"
        "ReadAhead.open(args.events, threads=2).close()\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_the_package_names_load_on_first_use() -> None:
    import affinity_sdk

    for name in affinity_sdk.__all__:
        assert getattr(affinity_sdk, name) is not None, name
    assert set(affinity_sdk.__all__) <= set(dir(affinity_sdk))
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        affinity_sdk.nope  # noqa: B018


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    evs=st.lists(events, min_size=1, max_size=14),
    chunk_bytes=st.integers(1, 700),
    threads=st.sampled_from([2, 4]),
)
def test_without_item_names_only_the_item_codes_differ(
    tmp_path: Path, evs: list[object], chunk_bytes: int, threads: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # item_names=False leaves the item rows' product, category and brand codes at -1 (and those
    # tables empty) where the compiled reader parsed the line; everything else is the same.
    monkeypatch.setattr(ndjson, "_MIN_PART_BYTES", 1)  # several parser threads on small chunks
    path = tmp_path / "events.ndjson"
    path.write_bytes(b"\n".join(msgspec.json.encode(e) for e in evs))
    got = {}
    for item_names in (True, False):
        names = Interners()
        ahead = ReadAhead.open(
            path, threads=threads, chunk_bytes=chunk_bytes, item_names=item_names, min_part_bytes=1
        )
        with ahead:
            batches = list(read_ndjson_file(path, names, errors="collect", unknown_types="skip", ahead=ahead))
        got[item_names] = (batches, names)
    (full, full_names), (lean, lean_names) = got[True], got[False]
    assert len(full) == len(lean)
    for a, b in zip(full, lean, strict=True):
        for name in (*EVENT_COLUMNS, "item_event", "item_price", "item_discount", "item_quantity"):
            assert getattr(a, name).tobytes() == getattr(b, name).tobytes(), name
        assert a.rejects == b.rejects
        for name, kind in (
            ("item_product", "products"),
            ("item_category", "categories"),
            ("item_brand", "brands"),
        ):
            lean_codes = getattr(b, name)
            named = lean_codes >= 0  # lines msgspec decoded keep their names
            full_names_of = [getattr(full_names, kind).names[c] for c in getattr(a, name)[named]]
            assert full_names_of == [getattr(lean_names, kind).names[c] for c in lean_codes[named]]
    assert lean_names.users == full_names.users


def test_score_without_item_names_writes_the_same_table(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from affinity_sdk.cli import events as cli_events
    from affinity_sdk.sim.shop import simulate_shop

    path = tmp_path / "events.ndjson"
    simulate_shop(300, weeks=6, seed=3).write_ndjson(path)
    outputs = []
    opened = ReadAhead.open
    for item_names in (True, False):

        def forced(p: Any, *, keep: bool = item_names, **kw: Any) -> ReadAhead:
            return opened(p, **{**kw, "item_names": keep})

        monkeypatch.setattr(ReadAhead, "open", staticmethod(forced))
        out = tmp_path / f"scores-{item_names}.csv"
        assert main(["score", str(path), "--threads", "2", "--out", str(out)]) == 0
        outputs.append(out.read_bytes())
        monkeypatch.undo()
    assert outputs[0] == outputs[1]
    ahead = cli_events._read_ahead(path, 2, ("signals",))
    assert ahead is not None  # the command reads this file ahead
    ahead.close()
