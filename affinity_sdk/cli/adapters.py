"""Files of a source's own payloads for ``affinity score`` and the other event commands:
``--format snowplow`` (tracker-protocol bodies, one per line, or the enriched TSV),
``--format shopify`` and ``--format woocommerce`` (webhook deliveries, one ``{"topic": ...,
"payload": ...}`` per line). ``--format rudderstack`` is read as ``segment`` (the same calls).

Payloads a source sends that map to no event (Snowplow page pings, webhook topics that carry no
behaviour) are skipped and counted on stderr; bad ones follow ``--errors``.

Examples
--------
>>> import pathlib, tempfile
>>> path = pathlib.Path(tempfile.mkdtemp()) / "hits.ndjson"
>>> _ = path.write_text('{"data": [{"e": "pv", "uid": "u1", "dtm": "1714557600000"}]}\\n')
>>> batch = read_adapter_file(path, "snowplow", "raise")
>>> len(batch), batch.interners.users.names
(1, ('u1',))
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from affinity_sdk.errors import AffinityError, SchemaError

if TYPE_CHECKING:
    from affinity_sdk.capture.decode import DecodeResult
    from affinity_sdk.ingest.batch import EventBatch
    from affinity_sdk.ingest.interner import Interners

__all__ = ["ADAPTER_FORMATS", "read_adapter_file"]

#: The ``--format`` values read here (``rudderstack`` goes the Segment way: see the CLI).
ADAPTER_FORMATS: Final = ("snowplow", "shopify", "woocommerce")


def _decoder(fmt: str, data: bytes) -> Callable[..., DecodeResult]:
    from affinity_sdk.capture import snowplow, webhooks

    if fmt == "shopify":
        return webhooks.from_shopify
    if fmt == "woocommerce":
        return webhooks.from_woocommerce
    first_line = data.lstrip(b"\xef\xbb\xbf").split(b"\n", 1)[0]
    return snowplow.from_snowplow_tsv if b"\t" in first_line else _snowplow_lines


def _snowplow_lines(data: bytes, *, errors: str, unknown_types: str) -> DecodeResult:
    """Tracker-protocol bodies, one per line, as one result (positions are line numbers)."""
    from affinity_sdk.capture.decode import DecodeResult, Rejects
    from affinity_sdk.capture.snowplow import from_snowplow

    events: list[Any] = []
    located: list[tuple[int, str]] = []
    n_invalid = n_unknown = 0
    for line_no, line in enumerate(data.splitlines()):
        if not line.strip():
            continue
        try:
            result = from_snowplow(line, errors=errors, unknown_types=unknown_types)  # type: ignore[arg-type]
        except SchemaError as exc:
            raise SchemaError(f"{exc} (line {line_no + 1})", line_no) from None
        events.extend(result)
        located += [(line_no, f"{message} (line {line_no + 1})") for _, message in result.rejects.errors]
        n_invalid += result.rejects.n_invalid
        n_unknown += result.rejects.n_unknown
    return DecodeResult(events, Rejects(located, n_invalid, n_unknown))


def read_adapter_file(path: Path, fmt: str, errors: str, interners: Interners | None = None) -> EventBatch:
    """The events of a ``--format snowplow | shopify | woocommerce`` file as one batch (ids
    interned into ``interners``), with the decode rejects in ``batch.rejects``."""
    from affinity_sdk.ingest.batch import EventBatch

    if fmt not in ADAPTER_FORMATS:
        raise AffinityError(f"--format {fmt} is not a source adapter ({', '.join(ADAPTER_FORMATS)})")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise AffinityError(f"cannot read {path}: {exc.strerror or exc}") from None
    result = _decoder(fmt, data)(data, errors=errors, unknown_types="skip")
    if result.rejects.n_unknown:
        print(f"skipped {result.rejects.n_unknown:,} {fmt} payloads that map to no event", file=sys.stderr)
    from affinity_sdk.capture.decode import Rejects

    batch = EventBatch.from_events(list(result), interners)
    batch.rejects = Rejects(list(result.rejects.errors), result.rejects.n_invalid)
    return batch
