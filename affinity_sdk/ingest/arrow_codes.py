"""Arrow string columns as interner codes: plain or dictionary-encoded, checked and interned per
distinct value a row uses (:func:`_arrow_codes`), with the last dictionary of each interner kept
mapped (:class:`_DictionaryMemo`) so that the row groups of a Parquet lake, which usually share
it, intern only the values no earlier row group used. pyarrow is imported on first use."""

from __future__ import annotations

import importlib
from typing import Any

import numpy as np
from numpy.typing import NDArray

from affinity_sdk._backends import native
from affinity_sdk.errors import SchemaError
from affinity_sdk.ingest.interner import Interner


def _pyarrow(sub: str = "") -> Any:
    """pyarrow (or ``pyarrow.<sub>``), imported on first use with a clear error if missing."""
    try:
        return importlib.import_module("pyarrow" + (f".{sub}" if sub else ""))
    except ImportError as exc:
        raise ImportError("Arrow / Parquet support needs pyarrow: pip install 'affinity_sdk[arrow]'") from exc


def _one_array(column: Any) -> Any:
    """A ChunkedArray as one Array (no copy when it has a single chunk)."""
    pa = _pyarrow()
    if isinstance(column, pa.ChunkedArray):
        return column.combine_chunks() if column.num_chunks != 1 else column.chunk(0)
    return column


def _string_buffers(array: Any) -> tuple[NDArray[Any], Any] | None:
    """Offsets (numpy view) and data buffer of a string / large_string Array, or None for other types."""
    pa = _pyarrow()
    if pa.types.is_string(array.type):
        dtype: type[np.generic] = np.int32
    elif pa.types.is_large_string(array.type):
        dtype = np.int64
    else:
        return None
    buffers = array.buffers()
    offsets = np.frombuffer(buffers[1], dtype=dtype)[array.offset : array.offset + len(array) + 1]
    return offsets, (buffers[2] if buffers[2] is not None else b"")


_FirstSeen = tuple[NDArray[np.int32], NDArray[np.int64], NDArray[np.int64], tuple[NDArray[Any], Any]]
_LocalCodes = tuple[NDArray[np.int32], list[str], NDArray[np.int64], NDArray[np.int64]]


def _dictionary_first_seen(column: Any) -> _FirstSeen | None:
    """With the compiled extension, a dictionary column as local codes numbered in order of first
    appearance (-1 where null), with the dictionary index and the first row of each and the
    dictionary's offsets and data; None where only the pyarrow path applies (nulls in the
    dictionary, unusual index or value types)."""
    pa = _pyarrow()
    mod = native()
    if mod is None or not hasattr(mod, "arrow_dict_codes") or len(column) == 0:
        return None
    dictionary = column.dictionary
    indices = column.indices
    strings = _string_buffers(dictionary)
    if strings is None or dictionary.null_count or not pa.types.is_integer(indices.type):
        return None
    if pa.types.is_uint64(indices.type):
        return None
    buffers = indices.buffers()
    index_dtype = np.dtype(indices.type.to_pandas_dtype())
    idx = np.frombuffer(buffers[1], dtype=index_dtype)[indices.offset : indices.offset + len(indices)]
    validity = buffers[0] if indices.null_count else None
    local, order, first = mod.arrow_dict_codes(idx, validity, indices.offset, len(dictionary))
    return local, order, first, strings


def _local_codes(column: Any) -> _LocalCodes | None:
    """With the compiled extension, a plain string column as local codes numbered in order of
    first appearance (-1 where null), with the distinct values, the first row and the length in
    code points of each; None where only the pyarrow path applies."""
    mod = native()
    strings = _string_buffers(column)
    if mod is None or not hasattr(mod, "arrow_string_codes") or len(column) == 0 or strings is None:
        return None
    validity = column.buffers()[0] if column.null_count else None
    local, values, first, lengths = mod.arrow_string_codes(strings[0], strings[1], validity, column.offset)
    return local, values, first, lengths


class _DictionaryMemo:
    """The global code of each index of the last dictionary :func:`_arrow_codes` mapped into an
    interner (-1: no row has used it yet), kept as the interner's
    :attr:`~affinity_sdk.ingest.interner.Interner.memo`. A Parquet writer stores one dictionary
    per column chunk (pyarrow writing a dictionary column: the same one in every row group), so a
    lake's later row groups check and intern only the values no earlier row used, instead of
    making every id a ``str`` and looking it up again in each row group."""

    __slots__ = ("dictionary", "epoch", "normalize", "table")

    def __init__(self, dictionary: Any, interner: Interner) -> None:
        self.dictionary = dictionary
        self.epoch = interner.epoch
        self.normalize = interner.normalize
        self.table = np.full(len(dictionary), -1, dtype=np.int64)

    @staticmethod
    def of(interner: Interner, dictionary: Any) -> _DictionaryMemo:
        """``interner``'s memo if it is for the same dictionary values and no code of the interner
        has moved since it was filled (:attr:`Interner.epoch`), else a fresh one in its place."""
        memo = interner.memo
        if (
            isinstance(memo, _DictionaryMemo)
            and memo.epoch == interner.epoch
            and memo.normalize == interner.normalize
            and (memo.dictionary is dictionary or memo.dictionary.equals(dictionary))
        ):
            return memo
        memo = _DictionaryMemo(dictionary, interner)
        interner.memo = memo
        return memo


def _check_lengths(lengths: NDArray[np.int64], first: NDArray[np.int64], what: str) -> None:
    """Ids are 1..512 characters, required or not (an empty id would be a tombstone, see
    Interner): raise naming the first row of the first bad one (``lengths`` and their ``first``
    rows in order of first appearance)."""
    bad = (lengths < 1) | (lengths > 512)
    if bad.any():
        k = int(np.argmax(bad))
        row = int(first[k])
        bound = "<= 512" if lengths[k] > 0 else ">= 1"
        raise SchemaError(f"Expected `str` of length {bound} - at `$[{row}].{what}`", row)


def _dictionary_codes(column: Any, seen: _FirstSeen, interner: Interner, what: str) -> NDArray[np.int64]:
    """:func:`_arrow_codes` of a dictionary column (:func:`_dictionary_first_seen`'s ``seen``)
    through the interner's :class:`_DictionaryMemo`."""
    local, order, first, (offsets, data) = seen
    memo = _DictionaryMemo.of(interner, column.dictionary)
    known = memo.table[order]
    new = np.flatnonzero(known < 0)  # ascending local codes: still in order of first appearance
    if new.shape[0]:
        mod: Any = native()  # present: _dictionary_first_seen needed it
        values, lengths = mod.arrow_take_strings(offsets, data, order[new])
        _check_lengths(lengths, first[new], what)
        start = len(interner)
        codes = interner.intern_many(values)
        memo.table[order[new]] = codes
        if new.shape[0] == order.shape[0] and len(interner) - start == len(values) and not column.null_count:
            # All values were new and distinct: they got start, start + 1, ... in local code order.
            return np.add(local, start, dtype=np.int64)
        known[new] = codes
    mapped: NDArray[np.int64] = np.append(known, -1)[local]  # local -1 (null) picks the -1
    return mapped


def _arrow_codes(
    column: Any, interner: Interner, what: str, required: bool, dtype: type[np.generic] = np.int64
) -> NDArray[Any]:
    """Intern a string column per distinct value; -1 where null. Raises on nulls if required.

    Only values some row uses are checked and interned, in order of first appearance (a Parquet
    dictionary may carry values no row refers to: those must neither fail the batch nor be interned).
    """
    pa = _pyarrow()
    column = _text_column(_one_array(column), what)
    if column.null_count and required:
        row = int(_pyarrow("compute").index(column.is_null(), True).as_py())
        raise SchemaError(f"Expected `str`, got `null` - at `$[{row}].{what}`", row)
    if column.null_count == len(column):  # e.g. an all-None pandas column: Arrow type `null`
        return np.full(len(column), -1, dtype=dtype)
    if pa.types.is_dictionary(column.type):
        seen = _dictionary_first_seen(column)
        if seen is None:
            return np.asarray(_arrow_codes_pyarrow(column, interner, what), dtype=dtype)
        return _dictionary_codes(column, seen, interner, what).astype(dtype, copy=False)
    fast = _local_codes(column)
    if fast is None:
        return np.asarray(_arrow_codes_pyarrow(column, interner, what), dtype=dtype)
    local, values, first, lengths = fast
    _check_lengths(lengths, first, what)
    start = len(interner)
    table = interner.intern_many(values)
    if len(interner) - start == len(values) and not column.null_count:
        # All values were new and distinct: they got start, start + 1, ... in local code order.
        return (local + start).astype(dtype, copy=False) if start else local.astype(dtype, copy=False)
    codes: NDArray[Any] = np.append(table, -1).astype(dtype)[local]  # local -1 (null) picks the -1
    return codes


def _text_column(column: Any, what: str) -> Any:
    """``column`` if it holds text (plain or dictionary-encoded; a string view is cast to a string),
    else a :class:`SchemaError` naming it, as msgspec words a wrong type."""
    pa = _pyarrow()
    kind = column.type.value_type if pa.types.is_dictionary(column.type) else column.type
    if pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_null(kind):
        return column
    if hasattr(pa.types, "is_string_view") and pa.types.is_string_view(kind):
        return (
            column.cast(pa.large_string())
            if kind is column.type
            else column.cast(pa.dictionary(column.type.index_type, pa.large_string()))
        )
    raise SchemaError(f"Expected `str`, got `{kind}` - at `$.{what}`", None)


def _arrow_codes_pyarrow(column: Any, interner: Interner, what: str) -> NDArray[np.int64]:
    """:func:`_arrow_codes` with pyarrow and numpy only (no extension, or not a string column)."""
    pa = _pyarrow()
    pc = _pyarrow("compute")
    if not pa.types.is_dictionary(column.type):
        column = pc.dictionary_encode(column)
    indices = column.indices.fill_null(-1) if column.null_count else column.indices
    idx = np.asarray(indices.to_numpy(zero_copy_only=False), dtype=np.int64)
    first_row = np.full(len(column.dictionary), n_rows := idx.shape[0], dtype=np.int64)
    present = idx >= 0
    np.minimum.at(first_row, idx[present], np.flatnonzero(present))
    used = np.flatnonzero(first_row < n_rows)
    lengths = np.asarray(pc.utf8_length(column.dictionary).to_numpy(zero_copy_only=False))[used]
    bad = (lengths < 1) | (lengths > 512)
    if bad.any():
        rows = first_row[used[bad]]
        row = int(rows.min())
        bound = "<= 512" if column.dictionary[int(idx[row])].as_py() else ">= 1"
        raise SchemaError(f"Expected `str` of length {bound} - at `$[{row}].{what}`", row)
    used = used[np.argsort(first_row[used], kind="stable")]  # intern in order of first appearance
    values = column.dictionary.take(pa.array(used, pa.int64())).to_pylist()
    table = np.full(len(column.dictionary) + 1, -1, dtype=np.int64)  # the extra -1 serves null rows
    table[used] = interner.intern_many(values)
    codes: NDArray[np.int64] = table[idx]
    return codes
