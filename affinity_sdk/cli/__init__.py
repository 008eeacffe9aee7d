"""The ``affinity`` command.

``affinity demo`` simulates a shop and scores it; ``affinity score EVENTS --config C --out F``
scores an NDJSON (or Parquet) event file; ``affinity affinities`` writes every user's top
categories, brands or price bands, ``affinity lookalikes`` ranks users like a seed list and
``affinity report`` writes the HTML report.
Errors print one readable line and exit with status 2. Before any work, an ``--out`` that is one
of the command's inputs (the events, ``--previous``, ``--seeds`` or ``--config`` file, compared
as resolved paths, so symlinks and other spellings count) is refused, and so is Parquet in or
out without pyarrow installed. Tables are written atomically (see
:func:`~affinity_sdk.score.results.write_columns`). ``python -m affinity_sdk`` runs the same
command.

Examples
--------
>>> main(["--version"])  # doctest: +ELLIPSIS
affinity_sdk ...
0
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, redirect_stdout
from pathlib import Path
from typing import Any, Final, NoReturn

from affinity_sdk import __version__
from affinity_sdk.cli.events import ingest_file, score_file
from affinity_sdk.errors import AffinityError

DIMENSIONS = ("category", "brand", "price_band")  # affinity.DIMENSIONS, without importing numpy


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
    _add_event_input(p)
    _add_now(p)
    p.add_argument("--out", type=Path, required=True, help="output file: .csv, .jsonl or .parquet")
    p.set_defaults(handler=_run_score)


def _run_score(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    scorer, accepted = ingest_file(args, args.events, args.now)
    result = scorer.score(args.now)
    result.save(args.out, threads=scorer.threads)
    elapsed = time.perf_counter() - started
    counts = result.tier_counts()
    print(
        f"scored {len(result):,} users from {accepted:,} events in {elapsed:.2f}s "
        f"(backend {scorer.backend}, config {scorer.config.version}/{scorer.config.fingerprint})"
    )
    print(f"tiers: high {counts['high']:,} · medium {counts['medium']:,} · low {counts['low']:,}")
    print(f"wrote {args.out}")
    return 0


def _add_event_input(p: argparse.ArgumentParser) -> None:
    """Arguments shared by the commands that read an event file."""
    p.add_argument(
        "events",
        type=Path,
        help="events file (.ndjson / .jsonl / .json lines, or .parquet), or a folder of .parquet files",
    )
    p.add_argument(
        "--config", type=Path, default=None, help="config (.toml or .json); default: the built-in one"
    )
    p.add_argument(
        "--errors",
        choices=("raise", "skip", "collect"),
        default="raise",
        help="bad events: stop (raise), drop and count (skip), or drop and list them (collect)",
    )
    p.add_argument("--backend", default="auto", help="kernel backend: auto, cpp, numba or reference")
    p.add_argument(
        "--format",
        choices=(
            "auto",
            "ndjson",
            "parquet",
            "segment",
            "rudderstack",
            "snowplow",
            "shopify",
            "woocommerce",
            "orders",
        ),
        default="auto",
        help="input format: the SDK's NDJSON events, Parquet, Segment / RudderStack calls (one "
        "call or /v1/batch body per line: track, page, screen, identify, alias), or a CSV order log "
        "(customer_id,date,revenue); rudderstack reads as segment; snowplow: tracker-protocol bodies, "
        "one per line, or the enriched TSV; shopify / woocommerce: one webhook delivery {topic, payload} "
        "per line; "
        "default: Parquet by extension, else NDJSON or an order log by content",
    )
    p.add_argument(
        "--columns",
        default="",
        help="order-log header names (--format orders), e.g. customer_id=cust,date=day,revenue=amount",
    )
    p.add_argument(
        "--threads",
        type=_thread_count,
        default=None,
        metavar="N",
        help="threads that read NDJSON events, score and write CSV (default: every core); any count "
        "gives the same output",
    )


def _thread_count(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}")
    return n


def _add_now(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--now",
        default=None,
        help="score as of this time (ISO-8601 with zone): later events are set aside and counted "
        "(default: the latest event time)",
    )


def _fit_affinity(args: argparse.Namespace) -> tuple[Any, dict[str, str]]:
    """Read the events into a profile store with the affinity view (consent and forget applied
    once, in the pipeline) and return its :class:`~affinity_sdk.models.affinity.AffinityModel`."""
    scorer, _ = ingest_file(args, args.events, args.now, views=("signals", "affinity"))
    model = scorer.affinity
    metadata = {
        "config_version": scorer.config.version,
        "config_fingerprint": scorer.config.fingerprint,
        "now_ms": str(scorer.store.now_ms(args.now)),
        "backend": str(scorer.backend),
    }
    return model, metadata


def _add_affinities(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "affinities",
        help="write each user's top categories, brands or price bands",
        description=(
            "Learn decayed affinities from the product-level events of an event file and write "
            "user_id, rank, value, affinity (a lift: 1 = like the population) for each user's top values."
        ),
    )
    _add_event_input(p)
    p.add_argument(
        "--dimension", choices=("category", "brand", "price_band"), required=True, help="what to rank"
    )
    p.add_argument("--top", type=int, default=3, help="values per user (default 3)")
    _add_now(p)
    p.add_argument("--out", type=Path, required=True, help="output file: .csv, .jsonl or .parquet")
    p.set_defaults(handler=_run_affinities)


def _run_affinities(args: argparse.Namespace) -> int:
    from affinity_sdk.models.affinity import affinities_table
    from affinity_sdk.score.results import write_columns

    if args.top < 1:
        raise AffinityError(f"--top must be >= 1 (got {args.top})")
    started = time.perf_counter()
    model, metadata = _fit_affinity(args)
    table = affinities_table(model, args.dimension, args.top)
    write_columns(table, args.out, metadata={**metadata, "dimension": args.dimension})
    users = len(set(table["user_id"]))
    print(
        f"top {args.top} {args.dimension} affinities of {users:,} users "
        f"in {time.perf_counter() - started:.2f}s (backend {model.backend})"
    )
    print(f"wrote {args.out}")
    return 0


def _add_lookalikes(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "lookalikes",
        help="rank users by similarity to a seed list",
        description=(
            "Learn affinity and behaviour vectors from an event file and write user_id, rank, score "
            "(cosine similarity to the seed centroid) for the --n users most like the seeds."
        ),
    )
    _add_event_input(p)
    p.add_argument("--seeds", type=Path, required=True, help="text file: one seed user id per line")
    p.add_argument("--n", type=int, default=100, help="lookalikes to return (default 100)")
    p.add_argument("--min-score", type=float, default=-1.0, help="leave out users below this similarity")
    _add_now(p)
    p.add_argument("--out", type=Path, required=True, help="output file: .csv, .jsonl or .parquet")
    p.set_defaults(handler=_run_lookalikes)


def _run_lookalikes(args: argparse.Namespace) -> int:
    from affinity_sdk.models.affinity import lookalikes_table
    from affinity_sdk.score.results import write_columns

    if args.n < 1:
        raise AffinityError(f"--n must be >= 1 (got {args.n})")
    try:
        seeds = [line.strip() for line in args.seeds.read_text(encoding="utf-8").splitlines()]
    except (OSError, UnicodeDecodeError) as exc:
        raise AffinityError(f"cannot read seeds {args.seeds}: {exc}") from None
    seeds = [s for s in seeds if s]
    started = time.perf_counter()
    model, metadata = _fit_affinity(args)
    # An opted-out or forgotten seed is not used (as if it were not in the events).
    known = [s for s in seeds if model.store.code_of(s) is not None]
    if not known:
        raise AffinityError(
            f"none of the {len(seeds):,} seed ids in {args.seeds} appear (with consent) in the events"
        )
    table = lookalikes_table(model, known, args.n, min_score=args.min_score)
    write_columns(table, args.out, metadata={**metadata, "seeds": str(len(known))})
    print(
        f"{len(table['user_id']):,} lookalikes of {len(known):,} seeds ({len(seeds) - len(known):,} "
        f"unknown) in {time.perf_counter() - started:.2f}s (backend {model.backend})"
    )
    print(f"wrote {args.out}")
    return 0


def _add_report(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "report",
        help="write the HTML report (tiers, users to act on, affinities, trends) for an event file",
        description=(
            "Score an event file, learn its affinities and write one self-contained HTML file: each "
            "tier in plain words (who is in it, what to do) with the score distribution and its "
            "cut-offs, why users score 0, the top --top users of each tier to act on (also written "
            "to <out>_actions.csv beside the report), favourite categories / brands / price bands, "
            "and a glossary. Given --previous (an older export of the same shop), also the trends: "
            "PSI of the scores (below 0.1 no change, 0.1-0.25 moderate, above 0.25 alert), the tier "
            "transition matrix and the biggest risers and fallers. Needs the [report] extra "
            "(matplotlib)."
        ),
    )
    _add_event_input(p)
    p.add_argument("--previous", type=Path, default=None, help="an earlier event file to compare with")
    _add_now(p)
    p.add_argument("--title", default="Customer affinity & propensity", help="report title")
    p.add_argument("--top", type=int, default=20, help="users to act on listed per tier (default 20)")
    p.add_argument("--out", type=Path, default=Path("report.html"), help="output file (default report.html)")
    p.set_defaults(handler=_run_report)


def _run_report(args: argparse.Namespace) -> int:
    from affinity_sdk.activate.report import ReportInputs, actions_path, favourite_shares, write_report
    from affinity_sdk.activate.segments import compare_runs
    from affinity_sdk.models import affinity

    if args.top < 1:
        raise AffinityError(f"--top must be at least 1 (got {args.top})")
    started = time.perf_counter()
    scorer, result, _ = score_file(args, args.events, args.now, views=("signals", "affinity", "engagement"))
    model = scorer.affinity
    favourites: dict[str, list[tuple[str, float]]] = {
        dim: favourite_shares(model.top_affinities_all(dim, 1)) for dim in affinity.DIMENSIONS
    }
    previous = drift = None
    if args.previous is not None:
        _, previous, _ = score_file(args, args.previous, None)
        drift = compare_runs(previous, result)
    inputs = ReportInputs(
        result=result,
        title=args.title,
        top_affinities=favourites,
        previous=previous,
        drift=drift,
        config=scorer.config,
        top_n=args.top,
        channels=_channel_panel(scorer.store, args.now),
    )
    write_report(args.out, inputs)
    print(f"report of {len(result):,} users in {time.perf_counter() - started:.2f}s")
    if drift is not None:
        verdict = "ALERT: " + "; ".join(drift.reasons) if drift.alert else "no alert"
        print(f"drift: PSI {drift.psi:.3f} ({drift.level}), {verdict}")
    print(f"wrote {args.out} and {actions_path(args.out)}")
    return 0


def _channel_panel(store: Any, now: str | None) -> Any:
    """The report's channel and send-time panel, or ``None`` when the file holds no message events
    (the panel would be all population defaults)."""
    from affinity_sdk.activate.report_text import channel_panel

    if not len(store.view("engagement").media_table()[0]):
        return None
    return channel_panel(store, now)


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
    from affinity_sdk.demo import run_demo

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
    _add_affinities(sub)
    _add_lookalikes(sub)
    _add_report(sub)
    for name in _COMMAND_MODULES:
        importlib.import_module(f"affinity_sdk.cli.{name}").add_parser(sub)
    _add_output_options(parser, default=None)
    for command in _commands(parser):
        _add_output_options(command, default=argparse.SUPPRESS)
    return parser


def _add_output_options(parser: argparse.ArgumentParser, default: Any) -> None:
    """``-v``, ``-q`` and ``--progress``, on the main parser (with their defaults) and on every
    command (with ``default`` = SUPPRESS, so ``affinity -v score ...`` is not undone by the
    command's own default)."""
    group = parser.add_argument_group("output")
    group.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=0 if default is None else default,
        help="log the steps on stderr (-v: INFO, -vv: DEBUG)",
    )
    group.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        default=False if default is None else default,
        help="print errors only (no summary lines, warnings or progress)",
    )
    group.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=default,
        help="show progress of the long steps on stderr (default: only when stderr is a terminal)",
    )


def _commands(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    """Every (nested) command parser below ``parser``, each once."""
    found: dict[int, argparse.ArgumentParser] = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action._name_parser_map.values():
                if id(child) not in found:
                    found[id(child)] = child
                    found.update((id(c), c) for c in _commands(child))
    return list(found.values())


#: Commands that live in a module of their own (``affinity_sdk/cli/<name>.py``): each module has
#: ``add_parser(sub)``, which registers its sub-command and sets ``handler``. They are imported
#: when the parser is built, so a module may import this package's helpers at its top.
_COMMAND_MODULES: Final[tuple[str, ...]] = ("propensity", "segments", "clv", "recommend", "channels")


#: The arguments that name a file a command reads, and how an error calls them.
_INPUTS: Final = (
    ("events", "events file"),
    ("previous", "--previous file"),
    ("seeds", "--seeds file"),
    ("config", "--config file"),
)
_ARROW_EXTRA: Final = "needs the [arrow] extra: pip install 'affinity_sdk[arrow]'"


def _same_file(a: Path, b: Path) -> bool:
    """Whether ``a`` and ``b`` name one file: the same file on disk (hard links, case-insensitive
    names) or the same resolved path (symlinks, ``..``, relative spellings)."""
    try:
        if os.path.samefile(a, b):
            return True
    except (OSError, ValueError):  # one of them does not exist (yet)
        pass
    try:
        return a.resolve() == b.resolve()
    except (OSError, RuntimeError):  # a symlink loop
        return False


def _check_paths(args: argparse.Namespace) -> None:
    """Refuse an ``--out`` (or the ``.meta.json`` written beside it) that is one of the inputs,
    before anything is read or written."""
    out: Path | None = getattr(args, "out", None)
    if out is None or not hasattr(args, "events"):
        return
    outputs = [out]
    if out.suffix.lower() in (".csv", ".jsonl", ".ndjson"):
        outputs.append(out.with_name(out.name + ".meta.json"))
    for name, role in _INPUTS:
        source: Path | None = getattr(args, name, None)
        if source is None:
            continue
        for target in outputs:
            if _same_file(target, source):
                what = "--out" if target is out else f"the metadata file {target} of --out"
                raise AffinityError(f"{what} {out} is the {role} {source}: write the output to another file")


def _arrow_available() -> bool:
    try:
        importlib.import_module("pyarrow")
        importlib.import_module("pyarrow.parquet")
    except ImportError:
        return False
    return True


def _check_arrow(args: argparse.Namespace) -> None:
    """Parquet in or out without pyarrow: one clear error before any work."""
    parquet = [
        (f"reading {path}", path)
        for path in (getattr(args, "events", None), getattr(args, "previous", None))
        if path is not None and (path.suffix.lower() == ".parquet" or path.is_dir())
    ]
    out: Path | None = getattr(args, "out", None)
    if hasattr(args, "events") and out is not None and out.suffix.lower() == ".parquet":
        parquet.append((f"writing {out}", out))
    if parquet and not _arrow_available():
        raise AffinityError(f"{parquet[0][0]} (Parquet) {_ARROW_EXTRA}")


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
    with _logging_to_stderr(args.verbose, args.quiet), _quiet_stdout(args.quiet):
        try:
            _check_paths(args)
            _check_arrow(args)
            return handler(args)
        except (AffinityError, OSError, ValueError, KeyError) as exc:
            _log.debug("the error's traceback", exc_info=True)
            message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            print(f"affinity: error: {message}", file=sys.stderr)
            return 2


def run() -> NoReturn:
    """The ``affinity`` command (also ``python -m affinity_sdk``): :func:`main` on ``sys.argv``,
    then the process exits without the interpreter's teardown, which only frees, object by object,
    memory the system takes back anyway (~25 ms, 2 % of ``affinity score`` on 3M events). Output
    is flushed first, and every file a command writes is closed before :func:`main` returns; an
    exception out of it, output that cannot be flushed, or a thread still running (which the usual
    exit waits for) takes the usual way out.

    Before anything loads numpy, idle OpenBLAS threads are told to sleep after 2^16 cycles
    (``OPENBLAS_THREAD_TIMEOUT``, unless set already) instead of 2^28: on import, numpy's OpenBLAS
    starts a thread per core that otherwise busy-waits ~0.1 CPU-s for work, on the core the NDJSON
    reader is using. Matrix products still use every core."""
    import threading

    os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "16")
    code = main()
    try:
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
    except (OSError, ValueError):  # e.g. stdout piped into a command that has exited
        sys.exit(code)
    if any(t.is_alive() and not t.daemon for t in threading.enumerate() if t is not threading.main_thread()):
        sys.exit(code)
    os._exit(code)


_log = logging.getLogger(__name__)


@contextmanager
def _logging_to_stderr(verbose: int, quiet: bool) -> Iterator[None]:
    """Send the package's log records (logger ``affinity_sdk``) to stderr for one command: WARNING
    and up by default, INFO with ``-v``, DEBUG with ``-vv``, ERROR only with ``-q``. The library
    itself configures no handler; this is the one place that does, undone when the command ends."""
    level = logging.ERROR if quiet else {0: logging.WARNING, 1: logging.INFO}.get(verbose, logging.DEBUG)
    package = logging.getLogger("affinity_sdk")
    from affinity_sdk.cli.progress import LineSafeHandler

    handler = LineSafeHandler(sys.stderr)
    handler.setFormatter(
        logging.Formatter("%(asctime)s.%(msecs)03d %(levelname)s %(name)s: %(message)s", "%H:%M:%S")
    )
    handler.setLevel(level)
    saved = package.level
    package.setLevel(level)
    package.addHandler(handler)
    try:
        yield
    finally:
        package.removeHandler(handler)
        package.setLevel(saved)


@contextmanager
def _quiet_stdout(quiet: bool) -> Iterator[None]:
    """With ``-q``, drop what a command prints on stdout (its summary lines); stderr stays."""
    if not quiet:
        yield
        return
    with open(os.devnull, "w", encoding="utf-8") as null, redirect_stdout(null):
        yield


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
