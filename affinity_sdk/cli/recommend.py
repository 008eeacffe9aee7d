"""``affinity recommend EVENTS --k 10 --out recs.csv``: each user's top products.

The command reads the events into a profile store with the affinity and products views (consent,
forget, replay dedupe and identity applied once, in the pipeline) and writes, for every user the
store shows, their ``--k`` best products as ``user_id, rank, product_id, score`` rows (rank 1 is
best; :meth:`~affinity_sdk.models.recommend.Recommender.recommend_all`, whose module docstring
has the score). Users without product history get the popular products; opted-out users get no
rows. Written atomically (csv / jsonl / parquet by extension), with the run's settings in the
file's metadata.

Examples
--------
>>> import tempfile
>>> from pathlib import Path
>>> from affinity_sdk.cli import main
>>> from affinity_sdk.sim.shop import simulate_shop
>>> folder = Path(tempfile.mkdtemp())
>>> _ = simulate_shop(200, weeks=4, horizon_weeks=0, seed=3).write_ndjson(folder / "events.ndjson")
>>> main(["recommend", str(folder / "events.ndjson"), "--k", "3", "--out", str(folder / "recs.csv")])
... # doctest: +ELLIPSIS
top 3 products of ... users in ...
0
>>> (folder / "recs.csv").read_text().splitlines()[0]
'user_id,rank,product_id,score'
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from affinity_sdk.cli import _add_event_input, _add_now
from affinity_sdk.cli.events import ingest_file
from affinity_sdk.errors import AffinityError

__all__ = ["add_parser"]


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``affinity recommend``."""
    p = sub.add_parser(
        "recommend",
        help="write each user's top products (co-purchase / co-view lift, affinity, popularity)",
        description=(
            "Learn per-product interactions from an event file and write user_id, rank, product_id, "
            "score: each user's best products from co-purchase and co-view lift with what they "
            "engaged with, their category / brand / price-band affinity and popularity, without "
            "products they already bought unless those are bought again and again."
        ),
    )
    _add_event_input(p)
    p.add_argument("--k", type=int, default=10, help="products per user (default 10)")
    p.add_argument(
        "--popularity-weight",
        type=float,
        default=1.0,
        help="weight of popularity beside the item-to-item score (default 1.0)",
    )
    _add_now(p)
    p.add_argument("--out", type=Path, required=True, help="output file: .csv, .jsonl or .parquet")
    p.set_defaults(handler=_run_recommend)


def _run_recommend(args: argparse.Namespace) -> int:
    from affinity_sdk.models.recommend import Recommender
    from affinity_sdk.score.results import write_columns

    if args.k < 1:
        raise AffinityError(f"--k must be >= 1 (got {args.k})")
    started = time.perf_counter()
    scorer, _ = ingest_file(args, args.events, args.now, views=("signals", "affinity", "products"))
    store = scorer.store
    try:
        rec = Recommender(store, popularity_weight=args.popularity_weight)
    except AffinityError as exc:
        raise AffinityError(f"--popularity-weight: {exc}") from None
    table = rec.recommend_all(k=args.k, now=args.now)
    metadata = {
        "config_version": scorer.config.version,
        "config_fingerprint": scorer.config.fingerprint,
        "now_ms": str(store.now_ms(args.now)),
        "k": str(args.k),
        "popularity_weight": str(args.popularity_weight),
        "source": str(args.events),
    }
    write_columns(table, args.out, metadata=metadata)
    users = len(set(table["user_id"]))
    print(
        f"top {args.k} products of {users:,} users in {time.perf_counter() - started:.2f}s "
        f"(backend {scorer.backend})"
    )
    print(f"wrote {args.out}")
    return 0
