"""The C++ NDJSON reader's own line handling: where a line ends (found by the parse itself), its
RFC 3339 timestamps, and the output buffers it reuses from chunk to chunk."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import msgspec
import numpy as np
import pytest
from _event_strategies import events
from hypothesis import given, settings
from hypothesis import strategies as st

from affinity_sdk._backends import native
from affinity_sdk.ingest.batch import EVENT_COLUMNS, ITEM_COLUMNS, EventBatch

NATIVE: Any = native()
pytestmark = pytest.mark.skipif(
    NATIVE is None or not hasattr(NATIVE, "NdjsonReader"), reason="no _native NdjsonReader"
)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
COLUMNS = (
    "line",
    "begin",
    "end",
    "status",
    "user",
    "event_type",
    "ts_ms",
    "revenue",
    "item_slot",
    "item_product",
)


def assert_same_batches(a: EventBatch, b: EventBatch) -> None:
    assert len(a) == len(b) and a.n_items == b.n_items
    for name in (*EVENT_COLUMNS, *ITEM_COLUMNS):
        assert getattr(a, name).tobytes() == getattr(b, name).tobytes(), name  # bitwise, NaN included
    # which lines were rejected; the messages' byte offsets may differ, as the reader hands msgspec a
    # line without its leading blanks
    ra, rb = a.rejects, b.rejects
    assert [i for i, _ in ra.errors] == [i for i, _ in rb.errors]
    assert (ra.n_invalid, ra.n_unknown) == (rb.n_invalid, rb.n_unknown)


# Bytes that end, split or pad lines: the reader finds a line's end while parsing it.
breaks = st.sampled_from([b"\n", b"\r", b"\t", b" ", b"\r\n", b" \n ", b"}\n{", b"\n\n", b" \t\r"])


@settings(max_examples=150, deadline=None)
@given(
    evs=st.lists(events, min_size=1, max_size=8),
    edits=st.lists(st.tuples(st.integers(0, 7), st.integers(0, 400), breaks), max_size=4),
    pad=st.tuples(breaks, breaks),
)
def test_line_ends_agree_with_msgspec(
    evs: list[object], edits: list[tuple[int, int, bytes]], pad: tuple[bytes, bytes]
) -> None:
    lines = [msgspec.json.encode(e) for e in evs]
    for which, at, junk in edits:
        line = lines[which % len(lines)]
        at %= len(line) + 1
        lines[which % len(lines)] = line[:at] + junk + line[at:]
    data = pad[0] + b"\n".join(lines) + pad[1]
    kw: dict[str, Any] = {"errors": "collect", "unknown_types": "skip"}
    py = EventBatch.from_ndjson(data, reader="python", **kw)
    assert_same_batches(EventBatch.from_ndjson(data, reader="native", **kw), py)


def test_slots_span_their_lines_without_padding() -> None:
    data = (
        b'  {"type":"app_opened","user_id":"a","timestamp":1} \t\r\n'
        b"\r\n"
        b'{"type":"app_opened","user_id":"b","timestamp":2}x\n'
        b'{"type":"app_opened",\n"user_id":"c","timestamp":3}\n'
        b'\t{"type":"app_opened","user_id":"d","timestamp":4}'
    )
    res = NATIVE.read_ndjson(data)
    lines = data.split(b"\n")
    assert res["n_lines"] == len(lines)
    want_lines = [i for i, line in enumerate(lines) if line.strip(b" \t\r")]
    assert res["line"].tolist() == want_lines
    for slot, i in enumerate(want_lines):
        start = sum(len(x) + 1 for x in lines[:i])
        text = lines[i].lstrip(b" \t\r")
        assert res["begin"][slot] == start + len(lines[i]) - len(text)
        assert res["end"][slot] == start + len(lines[i])
    # committed: the first and the last; trailing junk and a split object are left to msgspec
    assert res["status"].tolist() == [0, 1, 1, 1, 0]
    assert res["ts_ms"][[0, 4]].tolist() == [1, 4]


def _stamp(rng: random.Random) -> tuple[str, int | None]:
    """A timestamp string of a random shape, and its Unix milliseconds (None: not a valid date)."""
    year = rng.choice([rng.randint(1900, 2199), 2000, 2024, 2100, 1900])
    month, day = rng.randint(1, 12), rng.choice([1, 28, 29, 30, 31, rng.randint(1, 31)])
    hh, mm, ss = rng.randint(0, 23), rng.randint(0, 59), rng.randint(0, 59)
    digits = rng.randint(0, 6)
    frac = "".join(rng.choice("0123456789") for _ in range(digits))
    off_min = rng.choice([0, 0, rng.randint(-23 * 60 - 59, 23 * 60 + 59)])
    zone = (
        "Z"
        if off_min == 0 and rng.random() < 0.7
        else f"{'-' if off_min < 0 else '+'}{abs(off_min) // 60:02d}:{abs(off_min) % 60:02d}"
    )
    text = f"{year:04d}-{month:02d}-{day:02d}T{hh:02d}:{mm:02d}:{ss:02d}{'.' + frac if digits else ''}{zone}"
    try:
        when = datetime(
            year,
            month,
            day,
            hh,
            mm,
            ss,
            int(frac.ljust(6, "0")) if digits else 0,
            timezone(timedelta(minutes=off_min)),
        )
    except ValueError:
        return text, None
    return text, (when - EPOCH) // timedelta(milliseconds=1)


def test_rfc3339_timestamps_match_datetime() -> None:
    rng = random.Random(3339)
    stamps = [_stamp(rng) for _ in range(4000)]
    data = b"\n".join(
        msgspec.json.encode({"type": "app_opened", "user_id": "u", "timestamp": text}) for text, _ in stamps
    )
    res = NATIVE.read_ndjson(data)
    lo, hi = -2208988800000, 7258118400000  # the reader's range; outside it msgspec decides
    for slot, (text, ms) in enumerate(stamps):
        if ms is None:
            assert res["status"][slot] == 1, text
        elif lo <= ms <= hi:
            assert (res["status"][slot], res["ts_ms"][slot]) == (0, ms), text
    assert (res["status"] == 0).sum() > 3000  # most shapes are the reader's to decode


def _chunk(first_user: int, n: int) -> bytes:
    return b"".join(
        msgspec.json.encode(
            {
                "type": "product_viewed",
                "user_id": f"u{first_user + i}",
                "timestamp": 1_700_000_000_000 + i,
                "product": {"product_id": f"p{i % 7}", "category": "c", "brand": "b", "price": i + 0.5},
            }
        )
        + b"\n"
        for i in range(n)
    )


def test_results_stay_intact_while_held_and_reused_when_freed() -> None:
    reader = NATIVE.NdjsonReader(1)
    chunks = [_chunk(k * 1000, 300 + 50 * k) for k in range(6)]
    held = [reader.read(chunks[0]), reader.read(chunks[1])]
    snapshot = [{k: r[k].copy() for k in COLUMNS} for r in held]
    for chunk in chunks[2:]:
        res = reader.read(chunk)  # freed at once: its buffers go back for the next chunk
        n = chunk.count(b"\n")
        assert res["n_lines"] == n and (res["status"] == 0).all()
        assert res["ts_ms"].tolist() == [1_700_000_000_000 + i for i in range(n)]
        assert res["item_slot"].tolist() == list(range(n))
        del res
    for r, snap in zip(held, snapshot, strict=True):
        for k in COLUMNS:
            np.testing.assert_array_equal(r[k], snap[k], err_msg=k)
    # the arrays outlive the reader, and are writable numpy arrays of their own
    del reader
    held[0]["revenue"][:] = 1.0
    assert held[1]["revenue"][0] == 0.5


def _mixed_lines(rng: random.Random, n: int) -> list[bytes]:
    """``n`` lines of many users and products (ids short, long and non-ASCII), some with product
    lists, some the reader leaves to msgspec (an escaped string) and some blank."""
    users = [f"user-{k}" for k in range(900)] + [
        f"a-long-user-id-of-more-than-16-bytes-{k}" for k in range(60)
    ]
    users += [f"usé-{k}" for k in range(40)]
    products = [f"p{k}" for k in range(700)] + [f"product-with-a-long-id-{k}" for k in range(50)]

    def item() -> dict[str, Any]:
        k = rng.randrange(len(products))
        return {
            "product_id": products[k],
            "category": f"c{k % 37}",
            "brand": f"brand-{k % 101}",
            "price": 1.5,
        }

    lines = []
    for i in range(n):
        user = rng.choice(users)
        roll = rng.random()
        if roll < 0.02:
            lines.append(b"")
            continue
        if roll < 0.06:  # an escape: left to msgspec (flagged)
            lines.append(
                b'{"type":"page_viewed","user_id":"%s","timestamp":1,"url":"a\\u00e9"}' % user.encode()
            )
            continue
        event: dict[str, Any] = {"type": "product_viewed", "user_id": user, "timestamp": i, "product": item()}
        if roll < 0.5:
            event = {
                "type": "cart_viewed",
                "user_id": user,
                "timestamp": i,
                "products": [item() for _ in range(rng.randrange(4))],
            }
        lines.append(msgspec.json.encode(event))
    return lines


@pytest.mark.parametrize("threads", [1, 3])
def test_names_take_codes_in_first_seen_order_over_many_blocks(threads: int) -> None:
    # More slots and item rows than the reader interns in one block (4096), flagged lines between.
    lines = _mixed_lines(random.Random(7), 12_000)
    data = b"\n".join(lines) + b"\n"
    decoded = {i: msgspec.json.decode(line) for i, line in enumerate(lines) if line}
    for res in (
        NATIVE.read_ndjson(data, threads=threads, min_part_bytes=1 << 16),
        NATIVE.NdjsonReader(threads, 1 << 16).read(data),
    ):
        ok = res["status"] == 0
        assert 0.9 * len(decoded) < ok.sum() < len(decoded)  # the escaped lines are flagged
        assert (res["user"][~ok] == -1).all()
        users, first = res["users"]
        got = [users[c] for c in res["user"][ok]]
        want = [decoded[int(line)]["user_id"] for line in res["line"][ok]]
        assert got == want
        # code k is the k-th distinct user in slot order, first met at slot first[k]
        slots = np.flatnonzero(ok)
        order = list(dict.fromkeys(got))
        assert users == order
        assert first.tolist() == [int(slots[got.index(u)]) for u in order]
        items = [
            p
            for line in res["line"][ok]
            for p in (
                [decoded[int(line)]["product"]]
                if "product" in decoded[int(line)]
                else decoded[int(line)]["products"]
            )
        ]
        assert len(res["item_slot"]) == len(items) > 2 * 4096
        for column, table, key in (
            ("item_product", "products", "product_id"),
            ("item_category", "categories", "category"),
            ("item_brand", "brands", "brand"),
        ):
            names, first_row = res[table]
            seen = [p[key] for p in items]
            assert [names[c] for c in res[column]] == seen, column
            assert names == list(dict.fromkeys(seen)), column
            assert first_row.tolist() == [seen.index(name) for name in names], column
