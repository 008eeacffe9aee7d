"""``affinity channels EVENTS --out channels.csv``: each user's best channel, send hour and fatigue.

The command reads the events into a profile store with the ``engagement`` view (consent, forget,
replay dedupe and identity applied once, in the pipeline) and writes, for every user the store
shows, ``user_id, best_channel, channel_rate, best_send_hour, fatigued``
(:func:`~affinity_sdk.models.channels.channel_table`, whose module docstring has the maths):
the medium with the highest shrunk engagement rate among those the user consents to ("" when
none), the hour of the day in the user's time zone (the ``timezone`` trait, e.g. Segment's
``context.timezone`` with ``--format segment``; UTC without one; -1 when nobody engaged yet) and
whether the user is at a message cap on some medium (the default caps). Written atomically
(csv / jsonl / parquet by extension).

Examples
--------
>>> import tempfile
>>> from pathlib import Path
>>> from affinity_sdk.cli import main
>>> folder = Path(tempfile.mkdtemp())
>>> _ = (folder / "events.ndjson").write_text('{"type":"push_opened","user_id":"u","timestamp":0}\\n')
>>> main(["channels", str(folder / "events.ndjson"), "--out", str(folder / "ch.csv")])
... # doctest: +ELLIPSIS
channels of 1 users in ...
0
>>> (folder / "ch.csv").read_text().splitlines()[0]
'user_id,best_channel,channel_rate,best_send_hour,fatigued'
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from affinity_sdk.cli import _add_event_input, _add_now
from affinity_sdk.cli.events import ingest_file

__all__ = ["add_parser"]

COLUMNS = ("user_id", "best_channel", "channel_rate", "best_send_hour", "fatigued")


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``affinity channels``."""
    p = sub.add_parser(
        "channels",
        help="write each user's best channel, best send hour and fatigue flag",
        description=(
            "Learn message engagement per medium and hour from an event file and write user_id, "
            "best_channel, channel_rate, best_send_hour, fatigued for every consenting user."
        ),
    )
    _add_event_input(p)
    p.add_argument(
        "--hour-of-week",
        action="store_true",
        help="best_send_hour as the local hour of the week (0 = Monday 00:00) instead of the day",
    )
    _add_now(p)
    p.add_argument("--out", type=Path, required=True, help="output file: .csv, .jsonl or .parquet")
    p.set_defaults(handler=_run_channels)


def _run_channels(args: argparse.Namespace) -> int:
    from affinity_sdk.models.channels import channel_table
    from affinity_sdk.score.results import write_columns

    started = time.perf_counter()
    scorer, _ = ingest_file(args, args.events, args.now, views=("signals", "engagement"))
    store = scorer.store
    table = channel_table(store, args.now, hour_of_week=args.hour_of_week)
    metadata = {
        "config_version": scorer.config.version,
        "config_fingerprint": scorer.config.fingerprint,
        "now_ms": str(store.now_ms(args.now)),
        "hour_of_week": str(args.hour_of_week),
        "source": str(args.events),
    }
    write_columns({name: table[name] for name in COLUMNS}, args.out, metadata=metadata)
    print(f"channels of {len(table['user_id']):,} users in {time.perf_counter() - started:.2f}s")
    print(f"wrote {args.out}")
    return 0
