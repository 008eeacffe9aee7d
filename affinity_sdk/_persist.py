"""Atomic, checksummed, versioned container files for saved state and models.

Layout: ``MAGIC`` (8 bytes) · format version (u32 LE) · header length (u64 LE) · header
(MessagePack) · array payloads · SHA-256 of everything before it (32 bytes). Files are written to
a temporary name in the same folder, fsynced, then renamed over the target (and the folder is
fsynced), so a reader sees the old file or the new one, never a half-written one.
:func:`write_atomically` does the same for any file (the CLI's tables and their sidecars).

A writer killed mid-write (``SIGKILL``, power loss) leaves its temporary file behind. Temporary
names are ``.<target name>.<writer pid>.<8 hex digits>.tmp``, and every successful write to a
target removes that target's stale temporary files (:func:`remove_stale_temps`): those whose
writer pid is not a running process on this machine, and any older than an hour (a pid that was
reused since, a name from another machine or from an older version). A live writer's file is
fresh and its pid alive, so it is kept.

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
import math
import os
import re
import secrets
import stat
import struct
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Annotated, Any, BinaryIO, Final

import msgspec
import numpy as np
from numpy.typing import NDArray

from affinity_sdk.errors import StateError

__all__ = [
    "FORMAT_VERSION",
    "MAGIC",
    "STALE_TEMP_AGE_S",
    "read_container",
    "remove_stale_temps",
    "write_atomically",
    "write_container",
]

MAGIC: Final = b"AFFSDK\x00\x01"
FORMAT_VERSION: Final = 1
_PREFIX: Final = struct.Struct("<8sIQ")
_DIGEST_SIZE: Final = 32

_NonNegative = Annotated[int, msgspec.Meta(ge=0)]

#: A temporary file of a target older than this (seconds since its last write) is stale whatever
#: its writer pid says.
STALE_TEMP_AGE_S: Final = 3600.0
#: ``<pid>.<token>`` between ``.<target name>.`` and ``.tmp``; the older ``tempfile.mkstemp``
#: names had 8 characters of ``[a-z0-9_]`` and no pid.
_TEMP_PID: Final = re.compile(r"([0-9]{1,10})\.[0-9a-f]{8}")
_TEMP_LEGACY: Final = re.compile(r"[a-z0-9_]{8}")

Writer = Callable[[BinaryIO], None]


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
    layout = []
    offset = 0
    contiguous = {name: np.ascontiguousarray(arr) for name, arr in arrays.items()}
    for name, arr in contiguous.items():
        descr = np.lib.format.dtype_to_descr(arr.dtype)
        layout.append(_ArraySpec(name, descr, list(arr.shape), offset, int(arr.nbytes)))
        offset += int(arr.nbytes)
    meta = msgspec.msgpack.encode(_Meta(kind, header, layout))

    def write(fh: BinaryIO) -> None:
        digest = hashlib.sha256()
        for chunk in (_PREFIX.pack(MAGIC, FORMAT_VERSION, len(meta)), meta):
            digest.update(chunk)
            fh.write(chunk)
        for arr in contiguous.values():
            view = arr.reshape(-1).view(np.uint8).data if arr.size else memoryview(b"")
            digest.update(view)
            fh.write(view)
        fh.write(digest.digest())

    write_atomically([(Path(path), write)], new_file_mode=0o600)


def write_atomically(files: Sequence[tuple[str | Path, Writer]], *, new_file_mode: int = 0o666) -> None:
    """Write each ``(path, writer)`` so that a reader sees the old file or the new one.

    Every writer fills a temporary file beside its target (``.<name>.<pid>.<token>.tmp``), which
    is flushed and fsynced; only when all of them are written are they renamed over their targets
    (``os.replace``, in order) and the folders fsynced. If a writer raises, every temporary file
    is removed and no target is touched. A target that is a symlink is written through (the file
    it points to is replaced). A new file gets ``new_file_mode`` less the umask, an existing one
    keeps its permission bits. After the renames each target's stale temporary files are removed
    (:func:`remove_stale_temps`).

    Examples
    --------
    >>> import tempfile
    >>> out = Path(tempfile.mkdtemp()) / "a.txt"
    >>> write_atomically([(out, lambda fh: fh.write(b"hi"))])
    >>> out.read_bytes(), [p.name for p in out.parent.iterdir()]
    (b'hi', ['a.txt'])
    """
    targets = [Path(os.path.realpath(path)) for path, _ in files]
    temps: list[Path] = []
    try:
        for target, (_, write) in zip(targets, files, strict=True):
            tmp, fd = _open_temp(target, new_file_mode)
            temps.append(tmp)
            with os.fdopen(fd, "wb") as fh:
                write(fh)
                fh.flush()
                os.fsync(fh.fileno())
        for tmp, target in zip(temps, targets, strict=True):
            os.replace(tmp, target)
    except BaseException:
        for tmp in temps:
            tmp.unlink(missing_ok=True)
        raise
    for folder in dict.fromkeys(target.parent for target in targets):
        _fsync_dir(folder)
    for target in targets:
        remove_stale_temps(target)


def _open_temp(target: Path, new_file_mode: int) -> tuple[Path, int]:
    """Create ``.<name>.<pid>.<token>.tmp`` beside ``target`` (exclusively) and open it."""
    try:
        mode = stat.S_IMODE(os.stat(target).st_mode)
    except OSError:
        mode = None
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0) | getattr(os, "O_CLOEXEC", 0)
    for _ in range(100):
        tmp = target.parent / f".{target.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
        try:
            fd = os.open(tmp, flags, new_file_mode)  # the umask applies
        except FileExistsError:  # pragma: no cover - 32 random bits
            continue
        if mode is not None:
            try:
                os.chmod(fd if os.chmod in os.supports_fd else tmp, mode)
            except OSError:  # pragma: no cover - e.g. a file system without permissions
                pass
        return tmp, fd
    raise FileExistsError(f"cannot create a temporary file beside {target}")  # pragma: no cover


def remove_stale_temps(target: str | Path, *, max_age_s: float = STALE_TEMP_AGE_S) -> list[Path]:
    """Remove the temporary files that killed writers of ``target`` left beside it; returns them.

    A file counts as ``target``'s only if its name is exactly ``.<target name>.<pid>.<8 hex
    digits>.tmp`` (or the older ``.<target name>.<8 characters>.tmp``), so the temporary files of
    other targets and unrelated files are never touched. It is stale, and removed, when

    - the pid in its name is not a running process here (checked with ``os.kill(pid, 0)``; on
      Windows, where that would end the process, only the age rule applies), or
    - it was last written more than ``max_age_s`` seconds ago (default an hour): this covers a
      dead writer whose pid was reused, a writer on another machine sharing the folder, and
      names without a pid.

    A live writer (its pid running, its file written moments ago) keeps its file, so two
    processes, or two threads of one process, may save the same target at the same time.
    """
    target = Path(target)
    prefix = f".{target.name}."
    removed: list[Path] = []
    now = time.time()
    try:
        entries = list(os.scandir(target.parent))
    except OSError:
        return removed
    for entry in entries:
        name = entry.name
        if not (name.startswith(prefix) and name.endswith(".tmp")):
            continue
        middle = name[len(prefix) : -len(".tmp")]
        match = _TEMP_PID.fullmatch(middle)
        if match is None and _TEMP_LEGACY.fullmatch(middle) is None:
            continue
        try:
            if not entry.is_file(follow_symlinks=False):
                continue
            old = now - entry.stat(follow_symlinks=False).st_mtime > max_age_s
            if old or (match is not None and not _pid_alive(int(match.group(1)))):
                os.unlink(entry.path)
                removed.append(Path(entry.path))
        except OSError:  # gone already (another writer cleaned it), or not ours to remove
            continue
    return removed


def _pid_alive(pid: int) -> bool:
    """Whether ``pid`` is a running process here; ``True`` when that cannot be told."""
    if pid <= 0 or os.name == "nt":  # 0 / negative address process groups; Windows kill ends it
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (OSError, OverflowError):  # PermissionError: alive, another user's
        return True
    return True


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
    # Every length the header claims is bounded by the file before anything is sliced, decoded
    # or allocated: a tiny file cannot ask for gigabytes.
    if meta_len > len(body) - start:
        raise StateError(
            f"{p} has a malformed header: it claims {meta_len} bytes of metadata in a file of {len(data)}"
        )
    try:
        meta = msgspec.msgpack.decode(memoryview(body)[start : start + meta_len], type=_Meta)
        if meta.kind != kind:
            raise StateError(f"{p} holds a {meta.kind!r}, not a {kind!r}")
        payload = memoryview(body)[start + meta_len :]
        arrays = {}
        for spec in meta.arrays:
            # numpy's stubs list only the structured form; a plain "<f8" string is accepted too.
            dtype = np.lib.format.descr_to_dtype(spec.dtype)  # type: ignore[arg-type]
            _check_array_spec(p, spec, dtype, len(payload))
            chunk = payload[spec.offset : spec.offset + spec.nbytes]
            arrays[spec.name] = np.frombuffer(chunk, dtype=dtype).reshape(spec.shape).copy()
    except StateError:
        raise
    except (msgspec.DecodeError, TypeError, ValueError) as exc:
        raise StateError(f"{p} has a malformed header: {exc}") from None
    except RecursionError:
        raise StateError(f"{p} has a malformed header: nesting too deep") from None
    return meta.header, arrays


def _check_array_spec(p: Path, spec: _ArraySpec, dtype: np.dtype[Any], payload_size: int) -> None:
    """:class:`StateError` unless ``spec`` describes exactly ``prod(shape) · itemsize`` bytes of
    plain data lying inside the payload (checked in Python integers, so nothing overflows)."""
    if dtype.hasobject:
        raise StateError(f"{p} has a malformed header: array {spec.name!r} holds Python objects")
    expected = math.prod(spec.shape) * dtype.itemsize
    if spec.nbytes != expected:
        raise StateError(
            f"{p} has a malformed header: array {spec.name!r} of shape {spec.shape} and dtype "
            f"{dtype.str} needs {expected} bytes, not {spec.nbytes}"
        )
    if spec.offset + spec.nbytes > payload_size:
        raise StateError(
            f"{p} has a malformed header: array {spec.name!r} ({spec.nbytes} bytes at offset "
            f"{spec.offset}) lies outside the {payload_size}-byte payload"
        )


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder if str(folder) else ".", os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
