"""``affinity score`` on a CSV order log: ``--format orders``, detection from the content, the same
scores as the orders sent as events, and one-line errors when a file is not in the format named."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from affinity_sdk import Scorer
from affinity_sdk.cli import main

ORDERS = [("ann", "2024-01-05", "30"), ("bob", "2024-01-06", "12"), ("ann", "2024-02-01", "12.5")]
NOW = "2024-03-01T00:00:00Z"


def _write_orders(path: Path, header: str = "customer_id,date,revenue") -> Path:
    path.write_text(header + "\n" + "".join(",".join(o) + "\n" for o in ORDERS))
    return path


def _scores(path: Path) -> dict[str, tuple[str, str]]:
    with open(path, newline="") as fh:
        return {row["user_id"]: (row["raw_score"], row["tier"]) for row in csv.DictReader(fh)}


@pytest.mark.parametrize("fmt", [["--format", "orders"], []])
def test_score_order_log(tmp_path: Path, fmt: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    orders = _write_orders(tmp_path / "orders.csv")
    out = tmp_path / "scores.csv"
    assert main(["score", str(orders), *fmt, "--now", NOW, "--out", str(out)]) == 0
    assert "from 3 events" in capsys.readouterr().out
    # The same orders sent as order_completed events score the same.
    events = tmp_path / "orders.ndjson"
    events.write_text(
        "".join(
            json.dumps(
                {
                    "type": "order_completed",
                    "user_id": c,
                    "timestamp": f"{d}T00:00:00Z",
                    "order_id": str(i),
                    "products": [],
                    "revenue": float(r),
                }
            )
            + "\n"
            for i, (c, d, r) in enumerate(ORDERS)
        )
    )
    want = tmp_path / "want.csv"
    assert main(["score", str(events), "--now", NOW, "--out", str(want)]) == 0
    assert _scores(out) == _scores(want)
    assert set(_scores(out)) == {"ann", "bob"}


def test_scores_match_the_sdk(tmp_path: Path) -> None:
    from affinity_sdk.ingest.batch import EventBatch

    orders = _write_orders(tmp_path / "orders.csv")
    out = tmp_path / "scores.csv"
    assert main(["score", str(orders), "--now", NOW, "--out", str(out)]) == 0
    scorer = Scorer()
    scorer.ingest(EventBatch.from_orders(orders))
    result = scorer.score(NOW)
    assert {u: repr(float(s)) for u, s in zip(result.user_ids, result.raw_score, strict=True)} == {
        u: repr(float(s)) for u, (s, _) in _scores(out).items()
    }


def test_order_log_with_other_headers(tmp_path: Path) -> None:
    orders = _write_orders(tmp_path / "sales.txt", "cust,day,amount")
    out = tmp_path / "scores.csv"
    mapping = "customer_id=cust,date=day,revenue=amount"
    assert main(["score", str(orders), "--columns", mapping, "--now", NOW, "--out", str(out)]) == 0
    assert set(_scores(out)) == {"ann", "bob"}


def test_order_log_with_bom_and_bad_rows(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    orders = tmp_path / "orders.csv"
    orders.write_bytes(b"\xef\xbb\xbfcustomer_id,date,revenue\nann,2024-01-05,30\nbob,someday,3\n")
    out = tmp_path / "scores.csv"
    assert main(["score", str(orders), "--errors", "collect", "--now", NOW, "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert "rejected 1 bad events" in err
    assert "Expected an ISO-8601 date (e.g. 1997-01-31), got 'someday' - at line 3, column `date`" in err
    assert set(_scores(out)) == {"ann"}


def _error(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err  # one line
    return err.strip()


def test_csv_given_as_ndjson(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    orders = _write_orders(tmp_path / "orders.csv")
    err = _error(["score", str(orders), "--format", "ndjson", "--out", str(tmp_path / "o.csv")], capsys)
    assert err == (
        f"affinity: error: --format ndjson expects one JSON object per line, but {orders} starts with "
        "a CSV header line `customer_id,date,revenue`: is it --format orders?"
    )


def test_events_given_as_orders(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    events = tmp_path / "events.ndjson"
    events.write_text('{"type":"app_opened","user_id":"a","timestamp":0}\n')
    err = _error(["score", str(events), "--format", "orders", "--out", str(tmp_path / "o.csv")], capsys)
    assert err == (
        "affinity: error: --format orders expects a CSV order log (a header line such as "
        f"customer_id,date,revenue), but {events} starts with JSON "
        '`{"type":"app_opened","user_id":"a","timestamp":0}`: is it --format ndjson?'
    )


def test_parquet_without_its_extension(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("pyarrow")
    from affinity_sdk.ingest.batch import EventBatch

    path = tmp_path / "events.dat"
    EventBatch.from_ndjson(b'{"type":"app_opened","user_id":"a","timestamp":0}').to_parquet(path)
    err = _error(["score", str(path), "--out", str(tmp_path / "o.csv")], capsys)
    assert err.startswith(
        f"affinity: error: cannot read {path}: expected NDJSON events (one JSON object per line)"
    )
    assert err.endswith("found Parquet data; name its format with --format")
    assert main(["score", str(path), "--format", "parquet", "--out", str(tmp_path / "o.csv")]) == 0


def test_columns_only_for_order_logs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    events = tmp_path / "events.ndjson"
    events.write_text('{"type":"app_opened","user_id":"a","timestamp":0}\n')
    err = _error(["score", str(events), "--columns", "date=day", "--out", str(tmp_path / "o.csv")], capsys)
    assert err == f"affinity: error: --columns maps order-log CSV headers; {events} is read as ndjson"


def test_ndjson_still_detected(tmp_path: Path) -> None:
    events = tmp_path / "events.jsonl"
    events.write_bytes(b'\xef\xbb\xbf\n{"type":"app_opened","user_id":"a","timestamp":1767225600000}\n')
    assert main(["score", str(events), "--out", str(tmp_path / "o.csv")]) == 0
    assert set(_scores(tmp_path / "o.csv")) == {"a"}
