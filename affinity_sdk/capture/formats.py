"""Which format an input file is in, from its name and its first bytes, without loading the decoders.

:func:`input_format` resolves the CLI's ``--format`` for a file (Parquet by name or folder, an order
log by a CSV header line, else NDJSON) from :func:`sniff_text`'s look at its start. The module
needs neither numpy nor msgspec, so the ``affinity`` command can start reading an event file
before the rest of the package has loaded.

Examples
--------
>>> sniff_text(b'{"type":"app_opened"}\\n')
('json', '{"type":"app_opened"}')
"""

from __future__ import annotations

import re
from os import PathLike
from pathlib import Path
from typing import Final, Literal, TypeAlias

from affinity_sdk.errors import AffinityError

__all__ = ["BOM", "Sniffed", "input_format", "skip_bom", "sniff_text"]


#: The UTF-8 byte order mark.
BOM: Final = b"\xef\xbb\xbf"


def skip_bom(data: bytes | bytearray | memoryview) -> bytes | bytearray | memoryview:
    """``data`` without a leading UTF-8 byte order mark (a view, not a copy, for a memoryview).

    Examples
    --------
    >>> skip_bom(b'\\xef\\xbb\\xbf{"a":1}'), skip_bom(b'{"a":1}')
    (b'{"a":1}', b'{"a":1}')
    """
    if bytes(data[:3]) == BOM:
        return data[3:]
    return data


_CONTROL: Final = re.compile(rb"[\x00-\x08\x0b\x0c\x0e-\x1f]")
Sniffed: TypeAlias = Literal["json", "csv", "binary", "text", "empty"]


def sniff_text(head: bytes) -> tuple[Sniffed, str]:
    """What the start of an input looks like, and its first non-blank line (shortened) to show.

    ``"json"``: the first line starts with ``{`` or ``[`` (JSON, NDJSON); ``"csv"``: a line with
    a comma, semicolon or tab and no brace, as a CSV header; ``"binary"``: not UTF-8 text or has
    control bytes other than tab and line ends (Parquet, MessagePack); ``"text"``: anything else;
    ``"empty"``: only blank lines. A leading byte order mark is skipped.

    Examples
    --------
    >>> sniff_text(b'\\xef\\xbb\\xbf\\n{"type":"app_opened"}\\n')
    ('json', '{"type":"app_opened"}')
    >>> sniff_text(b"customer_id,date,revenue\\nann,2024-01-05,30\\n")
    ('csv', 'customer_id,date,revenue')
    >>> sniff_text(b"PAR1\\x15\\x04")[0], sniff_text(b"  \\n")[0]
    ('binary', 'empty')
    """
    head = bytes(skip_bom(head))
    if _CONTROL.search(head):
        return "binary", ""
    line = next((raw.strip() for raw in head.split(b"\n") if raw.strip()), b"")
    if not line:
        return "empty", ""
    try:
        text = line.decode()
    except UnicodeDecodeError as exc:
        if exc.start < len(line) - 3:  # not just a character cut at the end of ``head``
            return "binary", ""
        text = line[: exc.start].decode()
    shown = text if len(text) <= 80 else text[:77] + "..."
    if text[0] in "{[":
        return "json", shown
    if any(sep in text for sep in ",;\t") and "{" not in text:
        return "csv", shown
    return "text", shown


#: What the start of a file looks like for --format orders / the JSON-lines formats, in words.
_ORDERS_WANTED: Final = "a CSV order log (a header line such as customer_id,date,revenue)"
_JSON_WANTED: Final = "one JSON object per line"


def input_format(path: str | PathLike[str], fmt: str = "auto", columns: str = "") -> str:
    """The CLI's ``--format`` resolved for the file at ``path``: ``auto`` is ``"parquet"`` for a
    folder or by extension, else ``"orders"`` (an order log) if the file starts with a CSV header line, else
    ``"ndjson"``; any other ``fmt`` is returned as given. A file that plainly is not in the format
    named (a CSV header for a JSON-lines format, JSON or binary data for ``orders``, binary data
    for ``auto``) raises one :class:`~affinity_sdk.errors.AffinityError` line saying what was
    expected and what was found; so does ``columns`` (``--columns``) for anything but an order log.

    Examples
    --------
    >>> import pathlib, tempfile
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "sales.txt"
    >>> _ = path.write_text("customer_id,date,revenue\\nann,2024-01-05,30\\n")
    >>> input_format(path)
    'orders'
    >>> input_format(path, "ndjson")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    affinity_sdk.errors.AffinityError: --format ndjson expects one JSON object per line, ... orders?
    """
    by_name = str(path).lower().endswith(".parquet") or Path(path).is_dir()
    if fmt == "parquet" or (fmt == "auto" and by_name):
        found = "parquet"
    else:
        try:
            with open(path, "rb") as fh:
                head = fh.read(1 << 16)
        except OSError as exc:
            raise AffinityError(f"cannot read {path}: {exc.strerror or exc}") from None
        kind, line = sniff_text(head)
        shown = {
            "csv": f"a CSV header line `{line}`",
            "json": f"JSON `{line}`",
            "binary": "Parquet data" if head[:4] == b"PAR1" else "binary data (not text)",
        }.get(kind, f"`{line}`")
        hint = {"csv": "--format orders", "json": "--format ndjson", "binary": "--format parquet"}
        found = "orders" if kind == "csv" else "ndjson"
        wanted = _ORDERS_WANTED if fmt == "orders" else _JSON_WANTED
        clash = kind in ("json", "binary") if fmt == "orders" else kind in ("csv", "binary")
        if fmt != "auto" and clash:
            raise AffinityError(
                f"--format {fmt} expects {wanted}, but {path} starts with {shown}: is it {hint[kind]}?"
            )
        if fmt == "auto" and kind == "binary":
            raise AffinityError(
                f"cannot read {path}: expected NDJSON events ({_JSON_WANTED}), {_ORDERS_WANTED} or "
                f"Parquet (.parquet), found {shown}; name its format with --format"
            )
    resolved = found if fmt == "auto" else fmt
    if columns and resolved != "orders":
        raise AffinityError(f"--columns maps order-log CSV headers; {path} is read as {resolved}")
    return resolved
