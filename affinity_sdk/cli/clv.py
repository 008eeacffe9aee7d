"""``affinity clv ORDERS --cutoff DATE --horizon 39w --out clv.csv``: customer lifetime value.

``ORDERS`` is an order-log CSV (``customer_id, date, revenue``; other header names through
``--columns customer_id=cust,date=day,revenue=amount``; see
:mod:`affinity_sdk.capture.order_log`) or an event file the other commands read (NDJSON or
Parquet: its ``order_completed`` events are the orders, after its consent decisions: a customer
whose latest decision is an opt-out is left out, as are repeated ``event_id`` s). Only orders up to
``--cutoff`` are used (a date means the end of that UTC day; a date-time needs a zone); the
horizon starts right after it. The BG/NBD and Gamma-Gamma models are fitted on those orders
(:class:`~affinity_sdk.models.clv.CustomerValue`, model period one week) and one row per
customer with an order by the cutoff is written atomically (csv / jsonl / parquet by extension):
``customer_id, p_alive, purchase_probability, expected_orders, expected_revenue, clv,
next_order_date, avg_days_between_orders, churn_risk, value_tier``.

Examples
--------
>>> import pathlib, tempfile
>>> import numpy as np
>>> from affinity_sdk.cli import main
>>> rng, day0, rows = np.random.default_rng(1), np.datetime64("2024-01-01"), []
>>> for i in range(60):  # customers who buy for a while, then stop
...     start, life = rng.uniform(0, 100), rng.exponential(80)
...     for _ in range(int(rng.geometric(0.35))):
...         rows.append(f"c{i},{day0 + int(start + rng.uniform(0, 1) * life)},{rng.integers(5, 60)}")
>>> folder = pathlib.Path(tempfile.mkdtemp())
>>> _ = (folder / "orders.csv").write_text("customer_id,date,revenue\\n" + "\\n".join(rows) + "\\n")
>>> main([
...     "clv", str(folder / "orders.csv"), "--cutoff", "2024-05-31", "--horizon", "13w",
...     "--out", str(folder / "clv.csv"),
... ])  # doctest: +ELLIPSIS
clv of 57 customers from 174 orders up to 2024-05-31 (horizon 13w) in ...
...
0
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from affinity_sdk.errors import AffinityError

__all__ = ["add_parser"]

_MS_PER_DAY: Final = 86_400_000
#: The order-log suffixes; any other file is read as events, like the other commands' input.
_ORDER_LOG_SUFFIXES: Final = (".csv",)


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``affinity clv``."""
    p = sub.add_parser(
        "clv",
        help="customer lifetime value from an order log (BG/NBD + Gamma-Gamma)",
        description=(
            "Fit BG/NBD (how many orders) and Gamma-Gamma (how much per order) on the orders up to "
            "--cutoff and write, per customer, P(alive), the chance of an order in the horizon, "
            "expected orders and revenue, discounted CLV, the expected next order date, the mean "
            "days between orders, churn risk and value tier."
        ),
    )
    # ``dest="events"`` lets the shared checks refuse an --out that is the input.
    p.add_argument(
        "events",
        metavar="ORDERS",
        type=Path,
        help="order log (.csv: customer_id,date,revenue) or event file (.ndjson / .jsonl / .parquet)",
    )
    p.add_argument(
        "--cutoff",
        required=True,
        help="last day (or ISO date-time with zone) of the data used; the horizon starts after it",
    )
    p.add_argument("--horizon", default="39w", help="forecast horizon, e.g. 39w, 90d (default 39w)")
    p.add_argument("--out", type=Path, required=True, help="output file: .csv, .jsonl or .parquet")
    p.add_argument(
        "--columns",
        default="",
        help="order-log header names, e.g. customer_id=cust,date=day,revenue=amount",
    )
    p.add_argument(
        "--discount-rate", type=float, default=0.10, help="annual discount rate of the CLV (default 0.10)"
    )
    p.add_argument(
        "--errors",
        choices=("raise", "skip", "collect"),
        default="raise",
        help="bad rows or events: stop (raise), drop and count (skip), or drop and list them (collect)",
    )
    p.add_argument("--backend", default="auto", help="kernel backend: auto, cpp, numba or reference")
    p.set_defaults(handler=_run_clv)


def _cutoff_ms(text: str) -> tuple[int, str]:
    """The last epoch ms the data may hold, and how to print the cutoff: a bare date is the end
    of that UTC day; a date-time needs a zone."""
    from affinity_sdk._units import to_epoch_ms

    text = text.strip()
    if len(text) in (8, 10) and "T" not in text and " " not in text:
        try:
            day = datetime.fromisoformat(text).replace(tzinfo=UTC)
        except ValueError:
            raise AffinityError(f"--cutoff {text!r} is not a date (YYYY-MM-DD) or ISO date-time") from None
        return to_epoch_ms(day) + _MS_PER_DAY - 1, day.date().isoformat()
    try:
        return to_epoch_ms(text), text
    except ValueError as exc:
        raise AffinityError(f"--cutoff: {exc}") from None


def _read_orders(args: argparse.Namespace) -> Any:
    """The input's orders as an event batch, bad rows handled by ``--errors`` (listed on stderr),
    opted-out customers and replayed ``event_id`` s left out."""
    import numpy as np

    from affinity_sdk.capture.events import EVENT_TYPE_CODES
    from affinity_sdk.capture.order_log import parse_column_map, read_order_log
    from affinity_sdk.cli.events import print_rejected, read_batch
    from affinity_sdk.ingest.batch import take_rows
    from affinity_sdk.models.visibility import visible_users

    path: Path = args.events
    columns = parse_column_map(args.columns)
    if path.suffix.lower() in _ORDER_LOG_SUFFIXES:
        batch = read_order_log(path, columns=columns, errors=args.errors)
        print_rejected(batch.rejects.errors, batch.rejects.n_invalid)
    else:
        if columns:
            raise AffinityError(f"--columns maps order-log CSV headers; {path} is read as an event file")
        batch = read_batch(path, None, args.errors)
        print_rejected(batch.rejects.errors, batch.rejects.n_invalid)
        keep = (batch.event_type == EVENT_TYPE_CODES["order_completed"]) & visible_users(batch)[batch.user]
        # A replayed event (same non-zero event_id) is one order, as in the ingest pipeline.
        ids = batch.event_id
        _, first = np.unique(ids, return_index=True)
        repeat = np.ones(len(batch), dtype=np.bool_)
        repeat[first] = False
        keep &= ~(repeat & (ids != 0))
        batch = take_rows(batch, keep)
    return batch


def _run_clv(args: argparse.Namespace) -> int:
    import numpy as np

    from affinity_sdk._units import parse_duration
    from affinity_sdk.models.bgnbd import summary_from_batch
    from affinity_sdk.models.clv import CustomerValue
    from affinity_sdk.score.results import write_columns

    started = time.perf_counter()
    end_ms, cutoff = _cutoff_ms(args.cutoff)
    if not parse_duration(args.horizon) > 0:
        raise AffinityError(f"--horizon must be positive (got {args.horizon!r})")
    model = CustomerValue(discount_rate=args.discount_rate, backend=args.backend)
    batch = _read_orders(args)
    n_later = int((batch.ts_ms > end_ms).sum())
    summary = summary_from_batch(batch, end_ms)
    if len(summary) == 0:
        raise AffinityError(f"no orders on or before the cutoff {cutoff} in {args.events}")
    model.fit(summary)
    table = model.predict(summary, args.horizon)
    names = batch.interners.users.names
    ids = [names[c] for c in summary.customer.tolist()]
    orders_p, spend_p = model.orders_.params_, model.spend_.params_
    assert orders_p is not None and spend_p is not None  # fitted just above
    metadata = {
        "cutoff": cutoff,
        "horizon": str(args.horizon),
        "discount_rate": str(args.discount_rate),
        "bgnbd": f"r={orders_p.r:.6g} alpha={orders_p.alpha:.6g} a={orders_p.a:.6g} b={orders_p.b:.6g}",
        "gamma_gamma": f"p={spend_p.p:.6g} q={spend_p.q:.6g} v={spend_p.v:.6g}",
        "source": str(args.events),
    }
    write_columns(table.columns(ids), args.out, metadata=metadata)
    n_orders = len(batch) - n_later
    print(
        f"clv of {len(summary):,} customers from {n_orders:,} orders up to {cutoff} "
        f"(horizon {args.horizon}) in {time.perf_counter() - started:.2f}s"
    )
    if n_later:
        print(f"set aside {n_later:,} orders after the cutoff", file=sys.stderr)
    print(
        f"BG/NBD r={orders_p.r:.3f} alpha={orders_p.alpha:.3f} a={orders_p.a:.3f} b={orders_p.b:.3f}; "
        f"Gamma-Gamma p={spend_p.p:.3f} q={spend_p.q:.3f} v={spend_p.v:.3f} "
        f"({spend_p.n_customers:,} repeat buyers)"
    )
    print(
        f"expected orders {table.expected_orders.sum():,.1f}, revenue {table.expected_revenue.sum():,.2f}, "
        f"CLV {table.clv.sum():,.2f} (discount {args.discount_rate:g}/year)"
    )
    churn = np.bincount(table.churn_risk, minlength=3)
    print(f"churn risk: high {churn[2]:,} · medium {churn[1]:,} · low {churn[0]:,}")
    print(f"wrote {args.out}")
    return 0
