"""Traits: what ``identify`` calls say about a person (plan, name, city ...), kept on the profile.

:class:`TraitStore` keeps, per canonical user id (:mod:`affinity_sdk.profile.identity`) and trait,
the *latest* value by the time of the call that set it. Two values set at the same millisecond
are ordered by their JSON encoding, so the result is the same whatever order calls, identity
merges and shard merges arrive in (the store is a per-(user, trait) maximum: commutative and
associative, like the views' sums). An identity merge folds the linked id's traits into the
canonical id's; ``forget`` drops them, and a suppressed id's traits stamped at or before its
forget never come back.

Contact details are not kept in clear: a top-level ``email`` or ``phone`` trait (any case) is
stored as ``"blake2b:<hex>"``, the BLAKE2b keyed hash of the trimmed, lower-cased value, under the
store's ``suppression_key`` (:mod:`affinity_sdk.profile.suppression`: with the public default key
the hash hides the value from a casual reader, not from someone who can guess it; pass a secret
key). The same address always hashes the same, so it still matches across profiles and shards
hashed with one key. Name traits in :attr:`TraitStore.keep_in_clear` to keep them as sent.

Examples
--------
>>> traits = TraitStore()
>>> traits.set("ann", {"plan": "gold", "email": "Ann@Shop.example"}, ts_ms=1_000)
>>> traits.set("ann", {"plan": "silver"}, ts_ms=500)  # older: the gold plan stays
>>> got = traits.of("ann")
>>> got["plan"], got["email"].startswith("blake2b:"), "Ann" in got["email"]
('gold', True, False)
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Collection, Iterable, Mapping
from typing import Any, Final

import msgspec

from affinity_sdk.errors import SchemaError
from affinity_sdk.profile.suppression import DEFAULT_KEY, NOT_SUPPRESSED, Suppression

__all__ = ["SENSITIVE_TRAITS", "TraitStore"]

#: Traits (matched case-insensitively) stored as a keyed hash unless kept in clear.
SENSITIVE_TRAITS: Final = frozenset({"email", "phone"})
_PERSON: Final = b"afsdk-trait"
#: (time of the call that set it, the value's JSON encoding)
_Entry = tuple[int, bytes]


class TraitStore:
    """Canonical user id -> trait name -> latest value (see the module docstring).

    Parameters
    ----------
    key
        Key of the hashes of sensitive traits (the store's ``suppression_key``; ``None``: the
        public default).
    keep_in_clear
        Sensitive trait names (lower case) to keep as sent instead of hashing.
    """

    __slots__ = ("_by_user", "_key", "keep_in_clear")

    def __init__(self, key: bytes | None = None, keep_in_clear: Collection[str] = ()) -> None:
        self._key = DEFAULT_KEY if key is None else bytes(key)
        self._by_user: dict[str, dict[str, _Entry]] = {}
        self.keep_in_clear: frozenset[str] = frozenset(name.lower() for name in keep_in_clear)

    def __len__(self) -> int:
        """How many users have traits."""
        return len(self._by_user)

    def __repr__(self) -> str:
        return f"TraitStore(users={len(self)}, keep_in_clear={sorted(self.keep_in_clear)})"

    def _hashed(self, value: Any) -> str:
        text = value.strip().lower() if isinstance(value, str) else msgspec.json.encode(value).decode()
        digest = hashlib.blake2b(
            text.encode("utf-8", "surrogatepass"), key=self._key, digest_size=16, person=_PERSON
        )
        return "blake2b:" + digest.hexdigest()

    def set(self, user_id: str, traits: Mapping[str, Any], ts_ms: int) -> None:
        """Record ``traits`` for ``user_id`` as of ``ts_ms``; each one replaces the stored value
        only if it is newer (an equal time: the larger JSON encoding wins).

        Raises :class:`~affinity_sdk.errors.SchemaError` (and records nothing) when a trait name
        is not a non-empty string or a value cannot be encoded as JSON.
        """
        entries: dict[str, _Entry] = {}
        for name, value in traits.items():
            if not isinstance(name, str) or not name:
                raise SchemaError(f"Expected a non-empty `str` trait name, got {name!r} - at `$.traits`")
            if name.lower() in SENSITIVE_TRAITS and name.lower() not in self.keep_in_clear:
                value = None if value is None else self._hashed(value)
            try:
                entries[name] = (int(ts_ms), msgspec.json.encode(value))
            except (TypeError, ValueError, OverflowError) as exc:
                raise SchemaError(
                    f"Trait value cannot be encoded as JSON: {exc} - at `$.traits.{name}`"
                ) from None
        if entries:
            self._fold(user_id, entries)

    def _fold(self, user_id: str, entries: Mapping[str, _Entry]) -> None:
        mine = self._by_user.setdefault(user_id, {})
        for name, entry in entries.items():
            held = mine.get(name)
            if held is None or entry > held:
                mine[name] = entry

    def of(self, user_id: str) -> dict[str, Any]:
        """The traits of ``user_id`` (a canonical id), sorted by name; ``{}`` if none.

        Examples
        --------
        >>> traits = TraitStore()
        >>> traits.set("bob", {"b": 2, "a": [1]}, ts_ms=0)
        >>> traits.of("bob"), traits.of("nobody")
        ({'a': [1], 'b': 2}, {})
        """
        held = self._by_user.get(user_id, {})
        return {name: msgspec.json.decode(held[name][1]) for name in sorted(held)}

    def values_of(self, name: str) -> dict[str, Any]:
        """Every user holding trait ``name``, with its value (decoding that trait only).

        Examples
        --------
        >>> traits = TraitStore()
        >>> traits.set("ann", {"timezone": "Europe/Oslo", "plan": "gold"}, ts_ms=0)
        >>> traits.set("bob", {"plan": "free"}, ts_ms=0)
        >>> traits.values_of("timezone")
        {'ann': 'Europe/Oslo'}
        """
        return {
            user_id: msgspec.json.decode(entries[name][1])
            for user_id, entries in self._by_user.items()
            if name in entries
        }

    def move(self, source: str, target: str) -> None:
        """Fold ``source``'s traits into ``target``'s (an identity merge); ``source`` keeps none."""
        entries = self._by_user.pop(source, None)
        if entries and source != target:
            self._fold(target, entries)

    def drop(self, user_ids: Iterable[str]) -> None:
        """Erase the traits of ``user_ids`` (a forget)."""
        for user_id in user_ids:
            self._by_user.pop(user_id, None)

    def merge(self, other: TraitStore, canonical_of: Callable[[str], str]) -> None:
        """Fold ``other``'s traits in (a shard merge), each user under ``canonical_of(user)``."""
        for user_id, entries in other._by_user.items():
            self._fold(canonical_of(user_id), entries)

    def suppress(self, suppression: Suppression) -> None:
        """Drop the traits stamped at or before their user's forget (after suppression entries
        arrived from a merged shard)."""
        if len(suppression) == 0 or not self._by_user:
            return
        users = list(self._by_user)
        for user_id, forget_ms in zip(users, suppression.forget_ms_of(users).tolist(), strict=True):
            if forget_ms == NOT_SUPPRESSED:
                continue
            entries = self._by_user[user_id]
            kept = {name: entry for name, entry in entries.items() if entry[0] > forget_ms}
            if kept:
                self._by_user[user_id] = kept
            else:
                del self._by_user[user_id]

    def to_builtins(self) -> list[list[Any]]:
        """``[user, trait, ts_ms, JSON bytes]`` rows, for a state file's header."""
        return [
            [user_id, name, ts_ms, encoded]
            for user_id, entries in sorted(self._by_user.items())
            for name, (ts_ms, encoded) in sorted(entries.items())
        ]

    def load(self, rows: Iterable[Any]) -> None:
        """Restore :meth:`to_builtins` rows; ``ValueError`` names a malformed one.

        Examples
        --------
        >>> a = TraitStore()
        >>> a.set("ann", {"plan": "gold"}, ts_ms=7)
        >>> b = TraitStore()
        >>> b.load(a.to_builtins())
        >>> b.of("ann")
        {'plan': 'gold'}
        """
        for row in rows:
            ok = isinstance(row, list | tuple) and len(row) == 4
            if ok:
                user_id, name, ts_ms, encoded = row
                ok = (
                    isinstance(user_id, str)
                    and bool(user_id)
                    and isinstance(name, str)
                    and bool(name)
                    and isinstance(ts_ms, int)
                    and isinstance(encoded, bytes)
                )
            if not ok:
                raise ValueError(f"trait entry {row!r} is not [user, trait, ts_ms, JSON bytes]")
            try:
                msgspec.json.decode(encoded)
            except msgspec.DecodeError:
                raise ValueError(f"trait entry {row!r} holds a value that is not JSON") from None
            self._fold(user_id, {name: (ts_ms, encoded)})
