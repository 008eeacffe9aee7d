"""The string-id interner (ids to dense integer codes) and the event-id hash.

Examples
--------
>>> names = Interners()
>>> names.users.intern("u1"), names.users.intern("u2"), names.users.lookup("u1")
(0, 1, 0)
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Final

import numpy as np
from numpy.typing import NDArray

__all__ = ["TOMBSTONE", "Interner", "Interners", "event_id_hash"]

_FNV_OFFSET: Final = 0xCBF29CE484222325
_FNV_PRIME: Final = 0x100000001B3
_MASK64: Final = (1 << 64) - 1


def event_id_hash(event_id: str | None) -> int:
    """64-bit FNV-1a of the UTF-8 bytes of ``event_id``; 0 means "no event id".

    The C++ NDJSON reader computes the same hash, so batches built either way agree.

    Examples
    --------
    >>> event_id_hash(None), event_id_hash("a") == event_id_hash("a") != event_id_hash("b")
    (0, True)
    """
    if event_id is None:
        return 0
    h = _FNV_OFFSET
    for byte in event_id.encode():
        h = ((h ^ byte) * _FNV_PRIME) & _MASK64
    return h or 1


#: What an erased (forgotten) id leaves in :attr:`Interner.names`; never a valid id.
TOMBSTONE: Final = ""


class Interner:
    """Maps string ids to dense ``int`` codes 0, 1, 2, ... in first-seen order, stably.

    Examples
    --------
    >>> names = Interner()
    >>> names.intern("a"), names.intern("b"), names.intern("a"), len(names)
    (0, 1, 0, 2)
    >>> names.lookup("zzz") is None
    True
    """

    __slots__ = ("_codes", "_names")

    def __init__(self, names: Iterable[str] = ()) -> None:
        self._names: list[str] = []
        self._codes: dict[str, int] = {}
        for name in names:
            if name == TOMBSTONE:
                self._names.append(name)
            else:
                self.intern(name)

    def intern(self, name: str) -> int:
        """The code of ``name``, assigning the next free one if it is new."""
        code = self._codes.get(name)
        if code is None:
            code = len(self._names)
            self._codes[name] = code
            self._names.append(name)
        return code

    def intern_many(self, names: Iterable[str]) -> NDArray[np.int64]:
        """The codes of ``names`` (an int64 array), interning new ones in order.

        Examples
        --------
        >>> Interner(["a"]).intern_many(["b", "a", "b"]).tolist()
        [1, 0, 1]
        """
        names = names if isinstance(names, list | tuple) else list(names)
        codes = list(map(self._codes.get, names))
        if None in codes:
            missing = [n for n, c in zip(names, codes, strict=True) if c is None]
            if len(set(missing)) == len(missing):
                # Distinct new names (the usual case: a dictionary) are appended in one go.
                start = len(self._names)
                self._codes.update(zip(missing, range(start, start + len(missing)), strict=True))
                self._names.extend(missing)
                codes = list(map(self._codes.get, names))
            else:
                codes = [self.intern(n) if c is None else c for n, c in zip(names, codes, strict=True)]
        return np.asarray(codes, dtype=np.int64)

    def lookup(self, name: str) -> int | None:
        """The code of ``name`` or ``None`` if it was never interned."""
        return self._codes.get(name)

    def forget(self, name: str) -> int | None:
        """Erase ``name``: its code becomes a tombstone (``""``, never reused) and a later
        :meth:`intern` of the same name gets a new code. Returns the erased code, if any."""
        code = self._codes.pop(name, None)
        if code is not None:
            self._names[code] = TOMBSTONE
        return code

    def alias(self, name: str, code: int) -> None:
        """Make ``name`` one more name of the live ``code`` (identity stitching): it looks up to
        ``code`` from now on, while ``names[code]`` stays the code's own name.

        Examples
        --------
        >>> names = Interner(["known"])
        >>> names.alias("anon-1", 0)
        >>> names.lookup("anon-1"), names.intern("anon-1"), names.names
        (0, 0, ('known',))
        """
        if not 0 <= code < len(self._names) or self._names[code] == TOMBSTONE:
            raise ValueError(f"cannot alias {name!r} to code {code}: no such live code")
        current = self._codes.get(name)
        if current is not None and current != code and self._names[current] == name:
            raise ValueError(f"{name!r} names code {current} of its own; retire that code first")
        self._codes[name] = code

    def drop_alias(self, name: str) -> None:
        """Make ``name`` look up nothing again, if it is an alias (a code's own name stays)."""
        code = self._codes.get(name)
        if code is not None and self._names[code] != name:
            del self._codes[name]

    def retire(self, code: int) -> None:
        """Turn ``code`` into a tombstone; its own name no longer looks up (aliases that point to
        it are the caller's to move first)."""
        name = self._names[code]
        if self._codes.get(name) == code:
            del self._codes[name]
        self._names[code] = TOMBSTONE

    def truncate(self, n: int) -> None:
        """Drop every code ``>= n`` (the names and their entries; tombstones have no entry), so
        ``len(self) == n`` again: rolls back what a failed ingest interned after ``n = len(self)``.
        Raises :class:`ValueError` unless ``0 <= n <= len(self)``.

        Examples
        --------
        >>> names = Interner(["a", "b"])
        >>> before = len(names)
        >>> names.intern_many(["c", "d"]).tolist(), names.forget("d")
        ([2, 3], 3)
        >>> names.truncate(before)
        >>> names.names, names.lookup("c"), names.intern("d")
        (('a', 'b'), None, 2)
        >>> names.truncate(4)
        Traceback (most recent call last):
        ...
        ValueError: cannot truncate an Interner of 3 codes to 4
        """
        if not 0 <= n <= len(self._names):
            raise ValueError(f"cannot truncate an Interner of {len(self._names)} codes to {n}")
        for code in range(n, len(self._names)):
            name = self._names[code]
            if self._codes.get(name) == code:  # a tombstone ("") never has an entry
                del self._codes[name]
        del self._names[n:]

    def name(self, code: int) -> str:
        """The string behind ``code``."""
        return self._names[code]

    @property
    def names(self) -> Sequence[str]:
        """All interned strings, indexed by code (read-only view)."""
        return tuple(self._names)

    def __len__(self) -> int:
        return len(self._names)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Interner) and self._names == other._names

    __hash__ = None  # type: ignore[assignment]


@dataclass(eq=False)
class Interners:
    """The interners a batch's integer columns refer to; share one across batches."""

    users: Interner = field(default_factory=Interner)
    products: Interner = field(default_factory=Interner)
    categories: Interner = field(default_factory=Interner)
    brands: Interner = field(default_factory=Interner)
    campaigns: Interner = field(default_factory=Interner)
