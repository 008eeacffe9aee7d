"""Identity stitching: which ids name the same person.

Segment / RudderStack ``identify`` (``anonymousId`` -> ``userId``) and ``alias`` (``previousId``
-> ``userId``) calls say that two ids are one customer. :class:`IdentityMap` keeps, for every
linked id, the *canonical* id whose profile holds the person's history (the ``userId`` of the
first link that reached it), so links compose: ``a -> b`` then ``b -> c`` sends ``a`` to ``c``.
The profile store (:meth:`~affinity_sdk.profile.store.ProfileStore.link`) folds the profiles
together (the state is additive: one row added into the other) and points the linked ids' names
at the canonical profile, so later events under any of them land there, and the result does not
depend on whether a link arrives before, between or after the events.

Examples
--------
>>> ids = IdentityMap()
>>> ids.add("anon-1", "ann")
>>> ids.add("ann", "ann@shop")
>>> ids.canonical_of("anon-1"), sorted(ids.aliases_of("ann@shop"))
('ann@shop', ['ann', 'anon-1'])
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["IdentityMap"]


class IdentityMap:
    """Linked id -> canonical id, with the reverse index (canonical -> its linked ids)."""

    __slots__ = ("_aliases", "_canonical")

    def __init__(self) -> None:
        self._canonical: dict[str, str] = {}
        self._aliases: dict[str, set[str]] = {}

    def __len__(self) -> int:
        return len(self._canonical)

    def canonical_of(self, user_id: str) -> str:
        """The id whose profile holds ``user_id``'s history (itself when not linked)."""
        return self._canonical.get(user_id, user_id)

    def aliases_of(self, canonical: str) -> set[str]:
        """The ids linked to ``canonical`` (not including it)."""
        return set(self._aliases.get(canonical, ()))

    def add(self, user_id: str, into: str) -> None:
        """Link ``user_id`` (and every id linked to it) into ``into``'s canonical id."""
        target = self.canonical_of(into)
        source = self.canonical_of(user_id)
        if source == target:
            return
        moved = self._aliases.pop(source, set()) | {source}
        for name in moved:
            self._canonical[name] = target
        self._aliases.setdefault(target, set()).update(moved)
        self._aliases[target].discard(target)
        self._canonical.pop(target, None)

    def remove(self, canonical: str) -> set[str]:
        """Drop ``canonical`` and its linked ids (a forget); returns the linked ids."""
        linked = self._aliases.pop(canonical, set())
        for name in linked:
            self._canonical.pop(name, None)
        return linked

    def pairs(self) -> list[list[str]]:
        """``[linked id, canonical id]`` pairs, for a state file."""
        return [[name, target] for name, target in sorted(self._canonical.items())]

    @classmethod
    def from_pairs(cls, pairs: Iterable[Iterable[str]]) -> IdentityMap:
        """Rebuild a map from :meth:`pairs`; ``ValueError`` if an entry is not a pair of ids."""
        identity = cls()
        for pair in pairs:
            items = list(pair)
            if len(items) != 2 or not all(isinstance(x, str) and x for x in items):
                raise ValueError(f"identity entry {items!r} is not a pair of ids")
            identity.add(items[0], items[1])
        return identity
