"""The string-id interner (ids to dense integer codes) and the event-id hash.

Ids are Unicode-normalised when interned (NFC by default, see :data:`IdForm`), so the composed
and decomposed spellings of "José" are one user; an ASCII id is never touched, and an id already
known in the spelling given costs nothing extra.

Examples
--------
>>> names = Interners()
>>> names.users.intern("u1"), names.users.intern("u2"), names.users.lookup("u1")
(0, 1, 0)
>>> names.users.intern("Jose\\u0301") == names.users.intern("Jos\\u00e9")
True
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import InitVar, dataclass, field
from typing import Final, Literal, TypeAlias, get_args

import numpy as np
from numpy.typing import NDArray

__all__ = ["INTERNER_KINDS", "TOMBSTONE", "IdForm", "Interner", "Interners", "event_id_hash", "normalize_id"]

#: The Unicode normal form string ids are put in when interned; ``None`` keeps them as given.
IdForm: TypeAlias = Literal["NFC", "NFKC", "NFD", "NFKD"]

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


def _check_form(form: object) -> IdForm | None:
    if form is not None and form not in get_args(IdForm):
        raise ValueError(f"normalize_ids must be 'NFC', 'NFKC', 'NFD', 'NFKD' or None (got {form!r})")
    return form  # type: ignore[return-value]


def normalize_id(name: str, form: IdForm | None = "NFC") -> str:
    """``name`` in Unicode normal form ``form`` (``None``: as given); ASCII ids are returned as is.

    Examples
    --------
    >>> normalize_id("Jose\\u0301") == "Jos\\u00e9", normalize_id("Jose\\u0301", None) == "Jos\\u00e9"
    (True, False)
    """
    if form is None or name.isascii():
        return name
    return unicodedata.normalize(form, name)


#: What an erased (forgotten) id leaves in :attr:`Interner.names`; never a valid id.
TOMBSTONE: Final = ""


class Interner:
    """Maps string ids to dense ``int`` codes 0, 1, 2, ... in first-seen order, stably.

    Every method that takes an id (:meth:`intern`, :meth:`lookup`, :meth:`forget`, :meth:`alias`)
    puts it in normal form ``normalize`` first (:func:`normalize_id`), so :attr:`names` holds the
    normalised spellings. Only a non-ASCII id not found as given pays for it. The ``names`` given
    to the constructor (a saved table) are taken verbatim, so their codes are kept.

    Examples
    --------
    >>> names = Interner()
    >>> names.intern("a"), names.intern("b"), names.intern("a"), len(names)
    (0, 1, 0, 2)
    >>> names.lookup("zzz") is None
    True
    >>> Interner(normalize=None).intern_many(["Jos\\u00e9", "Jose\\u0301"]).tolist()
    [0, 1]
    """

    __slots__ = ("_codes", "_epoch", "_indexed", "_names", "memo", "normalize")

    def __init__(self, names: Iterable[str] = (), *, normalize: IdForm | None = "NFC") -> None:
        self._names: list[str] = []
        self._codes: dict[str, int] = {}
        # _codes holds the names of codes below _indexed (and the aliases); names appended by
        # extend_new after that are put in it when a lookup next needs it (_index).
        self._indexed = 0
        self._epoch = 0
        #: The normal form ids are put in (``None``: as given); see :func:`normalize_id`.
        self.normalize: IdForm | None = _check_form(normalize)
        #: A reader's cache of codes it looked up here (the Arrow reader keeps its last
        #: dictionary's), to be trusted only while :attr:`epoch` and :attr:`normalize` are as they
        #: were when it was filled; never pickled.
        self.memo: object = None
        for name in names:
            if name == TOMBSTONE:
                self._names.append(name)
            else:
                self._codes.setdefault(name, len(self._names))
                if self._codes[name] == len(self._names):
                    self._names.append(name)
        self._indexed = len(self._names)

    def _index(self) -> dict[str, int]:
        """The name -> code table, brought up to date with the names :meth:`extend_new` appended."""
        start, end = self._indexed, len(self._names)
        if start < end:
            before = len(self._codes)
            self._codes.update(zip(self._names[start:end], range(start, end), strict=True))
            self._indexed = end
            if len(self._codes) - before != end - start:
                raise RuntimeError("Interner.extend_new was given a name that was not new")
        return self._codes

    def _normal(self, name: str) -> str:
        return normalize_id(name, self.normalize)

    @property
    def epoch(self) -> int:
        """A counter that moves whenever a name may stop looking up the code it did (:meth:`forget`,
        :meth:`alias`, :meth:`drop_alias`, :meth:`retire`, :meth:`truncate`); interning new names
        leaves it, so a cache of name -> code lookups stays right while it is unchanged.

        Examples
        --------
        >>> names = Interner(["a"])
        >>> before = names.epoch
        >>> _ = names.intern("b")
        >>> names.epoch == before, (names.forget("a"), names.epoch == before)
        (True, (0, False))
        """
        return self._epoch

    def __getstate__(self) -> tuple[list[str], dict[str, int], int, IdForm | None]:
        return self._names, self._index(), self._epoch, self.normalize

    def __setstate__(self, state: tuple[list[str], dict[str, int], int, IdForm | None]) -> None:
        self._names, self._codes, self._epoch, self.normalize = state
        self._indexed = len(self._names)
        self.memo = None

    def intern(self, name: str) -> int:
        """The code of ``name``, assigning the next free one if it is new."""
        codes = self._index()
        code = codes.get(name)
        if code is None:
            name = self._normal(name)
            code = codes.get(name)
            if code is None:
                code = len(self._names)
                codes[name] = code
                self._names.append(name)
                self._indexed += 1
        return code

    def intern_many(self, names: Iterable[str]) -> NDArray[np.int64]:
        """The codes of ``names`` (an int64 array), interning new ones in order.

        Examples
        --------
        >>> Interner(["a"]).intern_many(["b", "a", "b"]).tolist()
        [1, 0, 1]
        """
        names = names if isinstance(names, list | tuple) else list(names)
        codes = list(map(self._index().get, names))
        n_new = codes.count(None)
        if n_new and n_new == len(names) and self._take_distinct(names):
            return np.arange(len(self._names) - n_new, len(self._names), dtype=np.int64)
        if n_new:
            # Only ids unknown as spelled are normalised and interned, in order; a dictionary's
            # known ids (most of them, batch after batch) cost one lookup each.
            missing = [i for i, c in enumerate(codes) if c is None]
            new = [names[i] for i in missing]
            if self.normalize is None or "".join(new).isascii():
                # Nothing to normalise: the new ids take the next codes in first-seen order at
                # once, as one intern() each would give them.
                start = len(self._names)
                fresh = list(dict.fromkeys(new))
                self._codes.update(zip(fresh, range(start, start + len(fresh)), strict=True))
                self._names.extend(fresh)
                self._indexed = len(self._names)
                for i, code in zip(missing, map(self._codes.__getitem__, new), strict=True):
                    codes[i] = code
            else:
                intern = self.intern
                for i, name in zip(missing, new, strict=True):
                    codes[i] = intern(name)
        return np.asarray(codes, dtype=np.int64)

    def _take_distinct(self, names: list[str] | tuple[str, ...]) -> bool:
        """Give ``names`` (none known) the next codes in order if they are distinct and need no
        normalising (a reader's new names, chunk after chunk); else change nothing, return False."""
        if self.normalize is not None and not "".join(names).isascii():
            return False
        start, before = len(self._names), len(self._codes)
        self._codes.update(zip(names, range(start, start + len(names)), strict=True))
        if len(self._codes) - before < len(names):  # a repeated name: undo, intern one by one
            for name in names:
                self._codes.pop(name, None)
            return False
        self._names.extend(names)
        self._indexed = len(self._names)
        return True

    def extend_new(self, names: Sequence[str]) -> NDArray[np.int64]:
        """Give ``names`` the next codes, in order, without looking them up: for a caller that
        knows they are distinct, unknown here and in normal form (a streaming reader's new names,
        going into interners that hold only what that reader gave them). They are put in the
        name -> code table by the next call that looks a name up; a name that was not new then
        raises ``RuntimeError`` (a broken promise, not bad input).

        Examples
        --------
        >>> names = Interner(["a"])
        >>> names.extend_new(["b", "c"]).tolist(), names.lookup("c"), names.intern("d")
        ([1, 2], 2, 3)
        """
        start = len(self._names)
        self._names.extend(names)
        return np.arange(start, len(self._names), dtype=np.int64)

    def lookup(self, name: str) -> int | None:
        """The code of ``name`` or ``None`` if it was never interned."""
        codes = self._index()
        code = codes.get(name)
        return codes.get(self._normal(name)) if code is None and self.normalize else code

    def forget(self, name: str) -> int | None:
        """Erase ``name``: its code becomes a tombstone (``""``, never reused) and a later
        :meth:`intern` of the same name gets a new code. Returns the erased code, if any."""
        code = self._index().pop(self._normal(name), None)
        if code is not None:
            self._names[code] = TOMBSTONE
            self._epoch += 1
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
        name = self._normal(name)
        current = self._index().get(name)
        if current is not None and current != code and self._names[current] == name:
            raise ValueError(f"{name!r} names code {current} of its own; retire that code first")
        self._codes[name] = code
        self._epoch += 1

    def drop_alias(self, name: str) -> None:
        """Make ``name`` look up nothing again, if it is an alias (a code's own name stays)."""
        name = self._normal(name)
        code = self._index().get(name)
        if code is not None and self._names[code] != name:
            del self._codes[name]
            self._epoch += 1

    def retire(self, code: int) -> None:
        """Turn ``code`` into a tombstone; its own name no longer looks up (aliases that point to
        it are the caller's to move first)."""
        name = self._names[code]
        codes = self._index()
        if codes.get(name) == code:
            del codes[name]
        self._names[code] = TOMBSTONE
        self._epoch += 1

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
        codes = self._codes
        for code in range(n, self._indexed):  # names not indexed yet have no entry
            name = self._names[code]
            if codes.get(name) == code:  # a tombstone ("") never has an entry
                del codes[name]
        if n < len(self._names):
            del self._names[n:]
            self._indexed = min(self._indexed, n)
            self._epoch += 1

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


#: The id kinds an :class:`Interners` holds, in its field order (saved states list them so).
INTERNER_KINDS: Final = ("users", "products", "categories", "brands", "campaigns")


@dataclass(eq=False)
class Interners:
    """The interners a batch's integer columns refer to; share one across batches.

    ``normalize_ids`` is the Unicode normal form every one of them puts ids in (``"NFC"`` by
    default; ``None`` keeps ids byte for byte as given), also for interners passed in.

    Examples
    --------
    >>> names = Interners(normalize_ids=None)
    >>> names.users.intern("Jos\\u00e9") == names.users.intern("Jose\\u0301")
    False
    """

    users: Interner = field(default_factory=Interner)
    products: Interner = field(default_factory=Interner)
    categories: Interner = field(default_factory=Interner)
    brands: Interner = field(default_factory=Interner)
    campaigns: Interner = field(default_factory=Interner)
    normalize_ids: InitVar[IdForm | None] = "NFC"

    def __post_init__(self, normalize_ids: IdForm | None) -> None:
        form = _check_form(normalize_ids)
        for interner in (getattr(self, kind) for kind in INTERNER_KINDS):
            interner.normalize = form
