"""``affinity clv``: CDNOW, a hand-made order log, the cutoff, bad rows, column mappings, events."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from affinity_sdk.cli import main

CDNOW = Path(__file__).parent / "data" / "cdnow" / "cdnow_sample.csv"
COLUMNS = [
    "customer_id",
    "p_alive",
    "purchase_probability",
    "expected_orders",
    "expected_revenue",
    "clv",
    "next_order_date",
    "avg_days_between_orders",
    "churn_risk",
    "value_tier",
]


def read_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def order_rows(n_customers: int = 80, seed: int = 4) -> list[tuple[str, str, float]]:
    """(customer, date, revenue): customers who buy for a while and then stop, all in 2024."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n_customers):
        start, life = rng.uniform(0, 120), rng.exponential(90)
        for _ in range(int(rng.geometric(0.35))):
            day = np.datetime64("2024-01-01") + int(start + rng.uniform(0, 1) * life)
            rows.append((f"cust-{i:03d}", str(day), round(float(rng.gamma(3.0, 15.0)), 2)))
    return rows


def write_log(
    path: Path, rows: list[tuple[str, str, float]], header: tuple[str, str, str] | None = None
) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(header or ("customer_id", "date", "revenue"))
        writer.writerows(rows)
    return path


def run(*argv: str) -> int:
    return main(["clv", *argv])


def test_cdnow_sample(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "clv.csv"
    args = ["--columns", "customer_id=sample_id,revenue=dollars", "--cutoff", "1997-09-30", "--out", str(out)]
    assert run(str(CDNOW), *args, "--horizon", "39w") == 0
    printed = capsys.readouterr()
    assert "clv of 2,357 customers" in printed.out and "set aside 1,959 orders" in printed.err
    rows = read_rows(out)
    assert list(rows[0]) == COLUMNS and len(rows) == 2357
    # The 39-week holdout revenue of the anchor ($59,932 with lifetimes).
    assert sum(float(r["expected_revenue"]) for r in rows) == pytest.approx(59_932, abs=1)
    assert {r["churn_risk"] for r in rows} == {r["value_tier"] for r in rows} == {"Low", "Medium", "High"}
    meta = json.loads(out.with_name("clv.csv.meta.json").read_text())
    assert meta["cutoff"] == "1997-09-30" and meta["gamma_gamma"].startswith("p=6.2495")


def test_hand_made_log(tmp_path: Path) -> None:
    rows = [
        *order_rows(),
        ("solo", "2024-03-03", 20.0),
        ("pair", "2024-02-01", 10.0),
        ("pair", "2024-02-11", 30.0),
    ]
    rows.append(("newcomer", "2024-07-02", 5.0))  # first order after the cutoff: not scored
    log = write_log(tmp_path / "orders.csv", rows)
    out = tmp_path / "clv.csv"
    assert run(str(log), "--cutoff", "2024-06-30", "--horizon", "90d", "--out", str(out)) == 0
    got = {r["customer_id"]: r for r in read_rows(out)}
    seen = {c for c, d, _ in rows if d <= "2024-06-30"}
    assert set(got) == seen and "newcomer" not in got
    assert got["pair"]["avg_days_between_orders"] == "10.0"
    assert got["solo"]["avg_days_between_orders"] == "nan" and got["solo"]["p_alive"] == "1.0"
    for r in got.values():
        assert 0 <= float(r["purchase_probability"]) <= float(r["p_alive"]) <= 1
        assert 0 <= float(r["clv"]) <= float(r["expected_revenue"])
        date = r["next_order_date"]
        assert date == "" or "2024-07-01" <= date <= str(np.datetime64("2024-06-30") + 90)


def test_orders_after_the_cutoff_change_nothing(tmp_path: Path) -> None:
    rows = order_rows()
    later = [("cust-001", "2024-07-01", 500.0), ("cust-002", "2024-09-15", 1.0), ("late", "2024-08-01", 9.0)]
    outputs = []
    for name, log_rows in (("before", rows), ("after", rows + later)):
        log = write_log(tmp_path / f"{name}.csv", log_rows)
        out = tmp_path / f"{name}-clv.csv"
        assert run(str(log), "--cutoff", "2024-06-30", "--horizon", "26w", "--out", str(out)) == 0
        outputs.append(out.read_bytes())
    assert outputs[0] == outputs[1]
    # An order on the cutoff day itself counts.
    with_last_day = write_log(tmp_path / "last-day.csv", [*rows, ("cust-001", "2024-06-30", 500.0)])
    out = tmp_path / "last-day-clv.csv"
    assert run(str(with_last_day), "--cutoff", "2024-06-30", "--horizon", "26w", "--out", str(out)) == 0
    assert out.read_bytes() != outputs[0]


def test_bad_rows(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rows: list[tuple[str, str, object]] = list(order_rows())
    rows.insert(2, ("cust-x", "2024-02-30", 5.0))  # line 4: no such day
    rows.insert(5, ("cust-y", "2024-02-03", "n/a"))  # line 7
    rows.insert(7, ("", "2024-02-03", 5.0))  # line 9
    log = write_log(tmp_path / "orders.csv", rows)  # type: ignore[arg-type]
    out = tmp_path / "clv.csv"
    base = [str(log), "--cutoff", "2024-06-30", "--out", str(out)]
    assert run(*base) == 2
    assert capsys.readouterr().err.strip() == (
        "affinity: error: Expected an ISO-8601 date (e.g. 1997-01-31), got '2024-02-30' - at line 4, column `date`"
    )
    assert not out.exists()
    assert run(*base, "--errors", "skip") == 0
    err = capsys.readouterr().err
    assert "rejected 3 bad events" in err and "line 7" not in err
    assert run(*base, "--errors", "collect") == 0
    err = capsys.readouterr().err
    assert "  line 7: Expected a finite revenue >= 0, got n/a - at line 7, column `revenue`" in err
    assert "  line 9: Expected a customer id, got '' - at line 9, column `customer_id`" in err
    assert {r["customer_id"] for r in read_rows(out)}.isdisjoint({"cust-x", "cust-y", ""})


def test_column_mapping(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rows = order_rows()
    log = write_log(tmp_path / "orders.csv", rows, header=("cust", "day", "amount"))
    out = tmp_path / "clv.jsonl"
    base = [str(log), "--cutoff", "2024-06-30", "--out", str(out)]
    assert run(*base, "--columns", "customer_id=cust,date=day,revenue=amount") == 0
    capsys.readouterr()
    assert len(out.read_text().splitlines()) == len({c for c, d, _ in rows if d <= "2024-06-30"})
    assert run(*base, "--columns", "user=cust,date=day,revenue=amount") == 2
    assert capsys.readouterr().err.strip() == (
        "affinity: error: unknown order column 'user' in --columns: use customer_id, date, revenue"
    )
    assert run(*base, "--columns", "customer_id=cust,date=day") == 2
    err = capsys.readouterr().err
    assert "has no column `revenue` (revenue)" in err and "'cust', 'day', 'amount'" in err
    assert run(*base, "--columns", "customer_id") == 2
    assert "invalid column mapping 'customer_id'" in capsys.readouterr().err


def test_event_file_uses_its_orders_with_consent(tmp_path: Path) -> None:
    rows = order_rows()
    start = np.datetime64("1970-01-01")
    lines = [
        json.dumps(
            {
                "type": "order_completed",
                "user_id": c,
                "timestamp": int((np.datetime64(d) - start).astype("timedelta64[ms]").astype(np.int64))
                + 3_600_000,
                "order_id": f"o{i}",
                "event_id": f"e{i}",
                "products": [],
                "revenue": r,
            }
        )
        for i, (c, d, r) in enumerate(rows)
    ]
    lines.append(json.dumps({"type": "app_opened", "user_id": "browser", "timestamp": 1_704_067_200_000}))
    lines.append(lines[0])  # a replay (same event_id) is not a second order
    opted_out = rows[0][0]
    lines.append(
        json.dumps(
            {
                "type": "consent_changed",
                "user_id": opted_out,
                "timestamp": 1_730_000_000_000,
                "granted": False,
            }
        )
    )
    events = tmp_path / "events.ndjson"
    events.write_text("\n".join(lines) + "\n")
    out = tmp_path / "from-events.csv"
    assert run(str(events), "--cutoff", "2024-06-30", "--horizon", "26w", "--out", str(out)) == 0
    from_events = read_rows(out)
    # The same orders, less the opted-out customer's, as an order log.
    log = write_log(tmp_path / "orders.csv", [r for r in rows if r[0] != opted_out])
    out_log = tmp_path / "from-log.csv"
    assert run(str(log), "--cutoff", "2024-06-30", "--horizon", "26w", "--out", str(out_log)) == 0
    assert from_events == read_rows(out_log)
    assert opted_out not in {r["customer_id"] for r in from_events}
    assert run(str(events), "--cutoff", "2024-06-30", "--columns", "date=day", "--out", str(out)) == 2


def test_input_checks(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    log = write_log(tmp_path / "orders.csv", order_rows())
    assert run(str(log), "--cutoff", "2024-06-30", "--out", str(log)) == 2
    assert "is the events file" in capsys.readouterr().err
    assert run(str(log), "--cutoff", "June", "--out", str(tmp_path / "x.csv")) == 2
    assert "--cutoff" in capsys.readouterr().err
    assert run(str(log), "--cutoff", "2023-01-01", "--out", str(tmp_path / "x.csv")) == 2
    assert "no orders on or before the cutoff 2023-01-01" in capsys.readouterr().err
    assert run(str(log), "--cutoff", "2024-06-30", "--horizon", "0d", "--out", str(tmp_path / "x.csv")) == 2
    assert "--horizon must be positive" in capsys.readouterr().err
    parquet = tmp_path / "clv.parquet"
    assert run(str(log), "--cutoff", "2024-06-30T23:59:59.999Z", "--out", str(parquet)) == 0
    pq = pytest.importorskip("pyarrow.parquet")
    csv_out = tmp_path / "clv.csv"
    assert run(str(log), "--cutoff", "2024-06-30", "--out", str(csv_out)) == 0
    table = pq.read_table(parquet)
    assert table.column_names == COLUMNS and table.num_rows == len(read_rows(csv_out))
