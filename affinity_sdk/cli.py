"""The ``affinity`` command.

``affinity demo`` simulates a shop and scores it; ``affinity score EVENTS --config C --out F``
scores an NDJSON (or Parquet) event file. Errors print one readable line and exit with status 2.

Examples
--------
>>> main(["--version"])  # doctest: +ELLIPSIS
affinity_sdk ...
0
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from . import __version__
from .errors import AffinityError

__all__ = ["main"]

Handler = Callable[[argparse.Namespace], int]


def _add_score(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "score",
        help="score an event file and write one row per user",
        description=(
            "Read events (NDJSON, one event per line, or Parquet with the [arrow] extra), score every "
            "user at --now and write user_id, raw_score, score, tier and one column per signal."
        ),
    )
    p.add_argument("events", type=Path, help="events file (.ndjson / .jsonl / .json lines, or .parquet)")
    p.add_argument(
        "--config", type=Path, default=None, help="scoring config (.toml or .json); default: built-in"
    )
    p.add_argument("--now", default=None, help="score time, ISO-8601 with zone (default: latest event time)")
    p.add_argument("--out", type=Path, required=True, help="output file: .csv, .jsonl or .parquet")
    p.add_argument(
        "--errors",
        choices=("raise", "skip", "collect"),
        default="raise",
        help="bad events: stop (raise), drop and count (skip), or drop and list them (collect)",
    )
    p.add_argument("--backend", default="auto", help="kernel backend: auto, cpp, numba or reference")
    p.set_defaults(handler=_run_score)


def _run_score(args: argparse.Namespace) -> int:
    from .batch import EventBatch
    from .scorer import Scorer

    started = time.perf_counter()
    scorer = Scorer(args.config, backend=args.backend)
    path: Path = args.events
    if path.suffix.lower() == ".parquet":
        report = scorer.ingest(EventBatch.from_parquet(path, scorer.interners))
    else:
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise AffinityError(f"cannot read {path}: {exc.strerror or exc}") from None
        report = scorer.ingest(data, errors=args.errors)
    result = scorer.score(args.now)
    result.save(args.out)
    elapsed = time.perf_counter() - started
    counts = result.tier_counts()
    print(
        f"scored {len(result):,} users from {report.accepted:,} events in {elapsed:.2f}s "
        f"(backend {scorer.backend}, config {scorer.config.version}/{scorer.config.fingerprint})"
    )
    print(f"tiers: high {counts['high']:,} · medium {counts['medium']:,} · low {counts['low']:,}")
    if report.rejected:
        print(f"rejected {len(report.rejected):,} bad events:", file=sys.stderr)
        for position, message in report.rejected[:20]:
            print(f"  line {position + 1}: {message}", file=sys.stderr)
        if len(report.rejected) > 20:
            print(f"  ... and {len(report.rejected) - 20:,} more", file=sys.stderr)
    print(f"wrote {args.out}")
    return 0


def _add_demo(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "demo",
        help="simulate a shop, score it and write the results (the first thing to run)",
        description=(
            "Simulate an online shop with known customer preferences, score it, learn affinities and "
            "propensities, build segments, and write scores, segments and report.html to --out."
        ),
    )
    p.add_argument("--customers", type=int, default=8_000, help="simulated customers (default 8000)")
    p.add_argument("--weeks", type=int, default=12, help="weeks of history (default 12)")
    p.add_argument("--seed", type=int, default=7, help="random seed (default 7)")
    p.add_argument(
        "--out", type=Path, default=Path("affinity-demo"), help="output folder (default ./affinity-demo)"
    )
    p.add_argument("--backend", default="auto", help="kernel backend: auto, cpp, numba or reference")
    p.set_defaults(handler=_run_demo)


def _run_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    return run_demo(
        customers=args.customers, weeks=args.weeks, seed=args.seed, out=args.out, backend=args.backend
    )


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``affinity`` command."""
    parser = argparse.ArgumentParser(
        prog="affinity",
        description="Score e-commerce customers for affinity and propensity, with High / Medium / Low tiers.",
    )
    parser.add_argument("--version", action="version", version=f"affinity_sdk {__version__}")
    sub = parser.add_subparsers(title="commands", metavar="COMMAND")
    _add_demo(sub)
    _add_score(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``affinity`` command; returns the exit status."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    handler: Handler | None = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return 2
    try:
        return handler(args)
    except (AffinityError, OSError, ValueError, KeyError) as exc:
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        print(f"affinity: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
