"""Reading an event file for the CLI's commands: NDJSON streamed in chunks (on ``--threads``),
a Parquet file or folder row group by row group, an order log, a source's own payloads
(``--format segment | rudderstack | snowplow | shopify | woocommerce``), into a
:class:`~affinity_sdk.score.scorer.Scorer` or one :class:`~affinity_sdk.ingest.batch.EventBatch`;
bad events handled by ``--errors`` and listed on stderr."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Any

from affinity_sdk.errors import AffinityError

if TYPE_CHECKING:
    from affinity_sdk.ingest.batch import EventBatch
    from affinity_sdk.ingest.interner import Interners
    from affinity_sdk.ingest.read_ahead import ReadAhead

__all__ = ["ingest_file", "ingest_segment_file", "print_rejected", "read_batch", "score_file"]


def read_batch(
    path: Path,
    interners: Interners | None,
    errors: str,
    fmt: str = "auto",
    columns: str = "",
    threads: int | None = None,
) -> EventBatch:
    from affinity_sdk.capture.formats import input_format
    from affinity_sdk.cli.adapters import ADAPTER_FORMATS, read_adapter_file
    from affinity_sdk.ingest.batch import EventBatch
    from affinity_sdk.ingest.ndjson import ndjson_batch

    if fmt in ADAPTER_FORMATS:
        return read_adapter_file(path, fmt, errors, interners)
    if fmt in ("segment", "rudderstack"):
        raise AffinityError(f"--format {fmt} is read by the commands that score (score, report, ...)")
    fmt = input_format(path, fmt, columns)
    if fmt == "parquet":
        return EventBatch.from_parquet(path, interners)
    if fmt == "orders":
        from affinity_sdk.capture.order_log import parse_column_map, read_order_log

        columns_map = parse_column_map(columns)
        return read_order_log(path, columns=columns_map, errors=errors, interners=interners)  # type: ignore[arg-type]
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise AffinityError(f"cannot read {path}: {exc.strerror or exc}") from None
    return ndjson_batch(data, interners, errors=errors, threads=threads)  # type: ignore[arg-type]


def print_rejected(rejected: Sequence[tuple[int, str]], n_dropped: int) -> None:
    if n_dropped:
        print(f"rejected {n_dropped:,} bad events", file=sys.stderr)
    for position, message in rejected[:20]:
        print(f"  line {position + 1}: {message}", file=sys.stderr)
    if len(rejected) > 20:
        print(f"  ... and {len(rejected) - 20:,} more", file=sys.stderr)


def ingest_file(
    args: argparse.Namespace, path: Path, now: str | None, views: tuple[str, ...] = ("signals",)
) -> tuple[Any, int]:
    """Read an event file into a new :class:`~affinity_sdk.score.scorer.Scorer` (its store keeps
    ``views``); bad events are handled by ``--errors`` and listed on stderr. With ``now``, events
    after it are set aside (and counted on stderr), so the state is the one as of ``now``.
    Returns the scorer and the number of events accepted.

    NDJSON streams through in chunks (:func:`~affinity_sdk.ingest.ndjson.read_ndjson_file`), each
    ingested before the next is read, so memory holds the state and one chunk, not the file; with
    the ``affinity`` view the file is read whole (see below). On two threads or more the compiled
    reader starts on the file before the scorer and its modules are loaded
    (:class:`~affinity_sdk.ingest.read_ahead.ReadAhead`), so the first chunks are parsed by then."""
    from affinity_sdk.capture.formats import input_format
    from affinity_sdk.cli.adapters import ADAPTER_FORMATS, read_adapter_file

    threads = getattr(args, "threads", None)
    columns = getattr(args, "columns", "")
    fmt = getattr(args, "format", "auto")
    if fmt not in ADAPTER_FORMATS and fmt not in ("segment", "rudderstack"):
        fmt = input_format(path, fmt, columns)
    # The affinity view fits each category's price bands from the products it first sees, so it
    # takes the file in one batch: its numbers then do not depend on where chunks happen to end.
    whole = "affinity" in views or fmt == "orders"
    reading = _read_ahead(path, threads, views) if fmt == "ndjson" and not whole else nullcontext()
    with reading as ahead:  # started before the modules below load
        from affinity_sdk._units import to_epoch_ms
        from affinity_sdk.ingest.batch import take_rows
        from affinity_sdk.ingest.ndjson import read_ndjson_file
        from affinity_sdk.score.scorer import Scorer

        # A command's scorer is never merged: no event journal (replays are still dropped).
        scorer = Scorer(args.config, backend=args.backend, views=views, threads=threads, journal=False)  # type: ignore[arg-type]
        now_ms = to_epoch_ms(now) if now is not None else None
        if fmt in ("segment", "rudderstack"):
            return scorer, ingest_segment_file(scorer, path, now, args.errors)
        batches: Iterator[EventBatch]
        if fmt in ADAPTER_FORMATS:
            batches = iter([read_adapter_file(path, fmt, args.errors, scorer.interners)])
        elif fmt == "parquet" and not whole:  # row group by row group, only the columns the views read
            from affinity_sdk.ingest.parquet import iter_parquet

            batches = iter_parquet(path, scorer.interners, views=views)
        elif whole:
            batches = iter([read_batch(path, scorer.interners, args.errors, fmt, columns, threads)])
        else:
            batches = read_ndjson_file(
                path, scorer.interners, errors=args.errors, threads=threads, ahead=ahead
            )
        accepted = n_later = n_dropped = 0
        decode_rejects: list[tuple[int, str]] = []
        ingest_rejects: list[tuple[int, str]] = []
        for batch in batches:
            kept = batch
            if now_ms is not None:
                later = batch.ts_ms > now_ms
                n_batch_later = int(later.sum())
                if n_batch_later:
                    kept = take_rows(batch, ~later)
                    n_later += n_batch_later
            report = scorer.ingest(kept, errors=args.errors)
            decode_rejects += batch.rejects.errors
            ingest_rejects += report.rejected
            n_dropped += batch.rejects.n_invalid + report.n_rejected
            accepted += report.accepted
    if n_later:
        print(f"set aside {n_later:,} events stamped after {now} (--now)", file=sys.stderr)
    print_rejected([*decode_rejects, *ingest_rejects], n_dropped)
    return scorer, accepted


def _read_ahead(
    path: Path, threads: int | None, views: tuple[str, ...]
) -> AbstractContextManager[ReadAhead | None]:
    """``path`` being read ahead by the compiled reader (up to :data:`_EARLY_PIECES` pieces until
    the first is folded; closed at the ``with`` block's end), or ``None`` on one thread or without
    the compiled reader. A store of the scored signals alone reads no product, category or brand:
    the reader leaves them out."""
    from affinity_sdk.errors import BackendUnavailableError
    from affinity_sdk.ingest.read_ahead import ReadAhead, resolve_threads

    if resolve_threads(threads) < 2:
        return nullcontext()
    try:
        item_names = not set(views) <= {"signals"}
        return ReadAhead.open(path, threads=threads, early=_EARLY_PIECES, item_names=item_names)
    except BackendUnavailableError:
        return nullcontext()


#: Pieces ``affinity score`` may parse while it loads (the ramped first pieces of a large file:
#: 2, 4, 8, then 16 MB each, ~220 MB in all): more than the imports and the scorer's set-up
#: (~0.1-0.2 s) give the reader time for, so it does not stop before the first fold.
_EARLY_PIECES = 16


def ingest_segment_file(scorer: Any, path: Path, now: str | None, errors: str) -> int:
    """Fold a file of Segment / RudderStack calls (one call, list or ``/v1/batch`` body per line)
    through :meth:`Scorer.ingest_segment <affinity_sdk.score.scorer.Scorer.ingest_segment>`."""
    from affinity_sdk.capture.segment_adapter import parse_segment, segment_links
    from affinity_sdk.errors import SchemaError

    try:
        data = path.read_bytes()
    except OSError as exc:
        raise AffinityError(f"cannot read {path}: {exc.strerror or exc}") from None
    calls: list[Any] = []
    call_lines: list[int] = []  # the line of each call, to report rejects where a person looks
    for line_no, line in enumerate(data.splitlines()):
        if not line.strip():
            continue
        try:
            body = parse_segment(line)
        except SchemaError as exc:
            raise SchemaError(f"{exc} (line {line_no + 1})", line_no) from None
        items = body["batch"] if isinstance(body, dict) and isinstance(body.get("batch"), list) else body
        items = items if isinstance(items, list) else [items]
        calls.extend(items)
        call_lines.extend([line_no] * len(items))
    report = scorer.ingest_segment(calls, errors=errors, until=now)
    if report.n_later:
        print(f"set aside {report.n_later:,} events stamped after {now} (--now)", file=sys.stderr)
    rejected = [(call_lines[i], message) for i, message in report.rejected]
    print_rejected(rejected, report.n_rejected)
    n_links = len(segment_links(calls))
    if n_links:
        print(f"stitched {n_links:,} identify / alias links", file=sys.stderr)
    accepted: int = report.accepted
    return accepted


def score_file(
    args: argparse.Namespace,
    path: Path,
    now: str | None,
    views: tuple[str, ...] = ("signals", "affinity"),
) -> tuple[Any, Any, int]:
    """Score an event file at ``now`` (default: its latest event): the scorer (its store keeps
    ``views``), its result and the number of events accepted."""
    scorer, accepted = ingest_file(args, path, now, views=views)
    return scorer, scorer.score(now), accepted
