"""Who buys again? A purchase propensity and High / Medium / Low tiers from a plain order log.

A data job with nothing but orders (customer, date, dollars) can still rank customers for a
win-back or loyalty campaign. This script fits the small model that did best on the CDNOW log
(``docs/propensity.md``, "Stage 2"): a logistic model of one feature, each customer's order days
decayed with a 10-week half-life and weighted by ``dollars ** 0.15``, Platt-calibrated on the last
13 weeks before the cutoff. It scores everyone at the cutoff, cuts tiers (top 10 % High, next 30 %
Medium), and, when the file goes on past the cutoff, checks the ranking against what happened.

Run it on the CDNOW sample shipped with the tests (cutoff 1997-09-30, 39 weeks of outcomes after)::

    python examples/order_log_propensity.py

or on your own CSV with ``sample_id,date,dollars`` columns::

    python examples/order_log_propensity.py --csv orders.csv --cutoff 2026-06-30 --out tiers.csv
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np

from affinity_sdk.activate.evaluate import roc_auc
from affinity_sdk.models.bgnbd import BGNBD, summary_from_batch
from affinity_sdk.models.propensity import (
    TIER_NAMES,
    FeatureSpec,
    PropensityModel,
    TierSpec,
    build_training_set,
    decayed_order_days,
    outcome_labels,
)
from affinity_sdk.sim.cdnow import cdnow_orders

WEEK_MS = 7 * 86_400_000
CDNOW = Path(__file__).resolve().parent.parent / "tests" / "data" / "cdnow" / "cdnow_sample.csv"
SPEC = FeatureSpec(
    half_lives=("10w", "20w"),  # a spec names two or more; `columns` keeps the one the model uses
    order_days=True,
    order_day_value_power=0.15,
    columns=("order_days_decay_10w",),
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--csv", type=Path, default=CDNOW, help="orders: sample_id,date,dollars")
    parser.add_argument("--cutoff", default="1997-09-30", help="score at the end of this day (UTC)")
    parser.add_argument(
        "--weeks", type=int, default=39, help="outcome window after the cutoff, if the file has it"
    )
    parser.add_argument("--out", type=Path, help="write customer,probability,tier here")
    args = parser.parse_args()

    batch = cdnow_orders(args.csv)
    cutoff = int(np.datetime64(args.cutoff, "ms").astype(np.int64))  # orders are dated at midnight
    train = build_training_set(batch, "purchase", [cutoff - 13 * WEEK_MS], "13w", spec=SPEC)
    model = PropensityModel.fit(train, calibration="platt")
    p, seen = model.score_batch(batch, cutoff)
    tiers = model.tiers(p, TierSpec(method="quantile", high=0.9, medium=0.6))
    customers = np.asarray(batch.interners.users.names)
    print(f"{int(seen.sum())} customers with orders by {args.cutoff}; trained on {len(train)} rows")
    print(f"log-odds per standard deviation: {model.explain()}")
    for code in (2, 1, 0):
        members = tiers[seen] == code
        print(
            f"{TIER_NAMES[code]:>6}: {int(members.sum()):5d} customers, mean P(order in 13 weeks) "
            f"{p[seen][members].mean():.3f}"
        )

    if args.out:
        with open(args.out, "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(["customer", "probability", "tier"])
            for i in np.flatnonzero(seen):
                writer.writerow([customers[i], f"{p[i]:.6f}", TIER_NAMES[tiers[i]]])
        print(f"wrote {args.out}")

    if int(batch.ts_ms.max()) <= cutoff:
        return
    # The file goes on: how well did the cutoff's ranking foresee the next --weeks weeks?
    bought = outcome_labels(batch, "purchase", cutoff, f"{args.weeks}w")[1][seen]
    summary = summary_from_batch(batch, cutoff)
    bgnbd = BGNBD().fit(summary.frequency, summary.recency, summary.T)
    expected = np.zeros(len(customers))
    expected[summary.customer.astype(np.int64)] = bgnbd.conditional_expected_purchases(
        args.weeks, summary.frequency, summary.recency, summary.T
    )
    print(f"\nafter the cutoff: {bought.mean():.1%} ordered within {args.weeks} weeks")
    for name, score in (
        ("this model", p),
        ("plain decay score of order days, 10-week half-life", decayed_order_days(batch, cutoff, "10w")),
        ("BG/NBD expected purchases", expected),
    ):
        print(f"ROC AUC {roc_auc(bought, score[seen]):.4f}  {name}")
    for code in (2, 1, 0):
        members = tiers[seen] == code
        print(f"{TIER_NAMES[code]:>6}: {bought[members].mean():.1%} ordered again")


if __name__ == "__main__":
    main()
