"""Atomic, checksummed, versioned container files for saved state and models.

Layout: ``MAGIC`` (8 bytes) · format version (u32 LE) · header length (u64 LE) · header
(MessagePack) · array payloads · SHA-256 of everything before it (32 bytes). Files are written to
a temporary name in the same folder, fsynced, then renamed over the target (and the folder is
fsynced), so a reader sees the old file or the new one, never a half-written one.

Examples
--------
>>> import numpy as np, tempfile, os
>>> path = os.path.join(tempfile.mkdtemp(), "x.afs")
>>> write_container(path, "demo", {"answer": 42}, {"a": np.arange(3)})
>>> header, arrays = read_container(path, "demo")
>>> header["answer"], arrays["a"].tolist()
(42, [0, 1, 2])
"""

from __future__ import annotations

import hashlib
import os
import struct
import tempfile
from pathlib import Path
from typing import Annotated, Any, Final

import msgspec
import numpy as np
from numpy.typing import NDArray

from affinity_sdk.errors import StateError

__all__ = ["FORMAT_VERSION", "MAGIC", "read_container", "write_container"]

MAGIC: Final = b"AFFSDK\x00\x01"
FORMAT_VERSION: Final = 1
_PREFIX: Final = struct.Struct("<8sIQ")
_DIGEST_SIZE: Final = 32

_NonNegative = Annotated[int, msgspec.Meta(ge=0)]


class _ArraySpec(msgspec.Struct, frozen=True):
    """Where one array lies in the payload; typed so hostile metadata fails as a decode error."""

    name: str
    dtype: str | list[Any]  # numpy's ``dtype_to_descr`` form (a list for structured dtypes)
    shape: list[_NonNegative]
    offset: _NonNegative
    nbytes: _NonNegative


class _Meta(msgspec.Struct, frozen=True):
    kind: str
    header: dict[str, Any]
    arrays: list[_ArraySpec]


def write_container(
    path: str | Path, kind: str, header: dict[str, Any], arrays: dict[str, NDArray[Any]]
) -> None:
    """Atomically write ``header`` (MessagePack-able) and ``arrays`` to ``path``."""
    target = Path(path)
    layout = []
    offset = 0
    contiguous = {name: np.ascontiguousarray(arr) for name, arr in arrays.items()}
    for name, arr in contiguous.items():
        descr = np.lib.format.dtype_to_descr(arr.dtype)
        layout.append(_ArraySpec(name, descr, list(arr.shape), offset, int(arr.nbytes)))
        offset += int(arr.nbytes)
    meta = msgspec.msgpack.encode(_Meta(kind, header, layout))
    digest = hashlib.sha256()
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent or ".")
    try:
        with os.fdopen(fd, "wb") as fh:
            for chunk in (_PREFIX.pack(MAGIC, FORMAT_VERSION, len(meta)), meta):
                digest.update(chunk)
                fh.write(chunk)
            for arr in contiguous.values():
                view = arr.reshape(-1).view(np.uint8).data if arr.size else memoryview(b"")
                digest.update(view)
                fh.write(view)
            fh.write(digest.digest())
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp_name, target)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    _fsync_dir(target.parent)


def read_container(path: str | Path, kind: str) -> tuple[dict[str, Any], dict[str, NDArray[Any]]]:
    """Read and verify a container written by :func:`write_container` for ``kind``.

    Raises :class:`StateError` for a missing, truncated, corrupt, foreign or newer-format file.
    """
    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise StateError(f"cannot read {p}: {exc.strerror or exc}") from None
    if len(data) < _PREFIX.size + _DIGEST_SIZE or data[:6] != MAGIC[:6]:
        raise StateError(f"{p} is not an affinity_sdk file (bad magic or too short)")
    magic, version, meta_len = _PREFIX.unpack_from(data)
    if magic != MAGIC or version > FORMAT_VERSION:
        raise StateError(f"{p} has format version {version}; this affinity_sdk reads up to {FORMAT_VERSION}")
    body, stored = data[:-_DIGEST_SIZE], data[-_DIGEST_SIZE:]
    if hashlib.sha256(body).digest() != stored:
        raise StateError(f"{p} is corrupt or truncated (checksum mismatch)")
    start = _PREFIX.size
    try:
        meta = msgspec.msgpack.decode(body[start : start + meta_len], type=_Meta)
        if meta.kind != kind:
            raise StateError(f"{p} holds a {meta.kind!r}, not a {kind!r}")
        payload = memoryview(body)[start + meta_len :]
        arrays = {}
        for spec in meta.arrays:
            # numpy's stubs list only the structured form; a plain "<f8" string is accepted too.
            dtype = np.lib.format.descr_to_dtype(spec.dtype)  # type: ignore[arg-type]
            chunk = payload[spec.offset : spec.offset + spec.nbytes]
            arrays[spec.name] = np.frombuffer(chunk, dtype=dtype).reshape(spec.shape).copy()
    except StateError:
        raise
    except (msgspec.DecodeError, TypeError, ValueError) as exc:
        raise StateError(f"{p} has a malformed header: {exc}") from None
    return meta.header, arrays


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder if str(folder) else ".", os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
