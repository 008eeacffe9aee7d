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

Many links at once (a Dask job, a state file): :func:`resolve_links` gives the same canonical ids
as :meth:`IdentityMap.add` applied in the same order, with a union-find over integer codes.

>>> resolve_links([("anon-1", "ann"), ("ann", "ann@shop"), ("old", "bob")])
{'anon-1': 'ann@shop', 'ann': 'ann@shop', 'old': 'bob'}
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from typing import TYPE_CHECKING

from affinity_sdk.errors import SchemaError

if TYPE_CHECKING:
    from affinity_sdk.profile.suppression import Suppression

__all__ = ["IdentityMap", "resolve_links"]


def resolve_links(
    pairs: Iterable[tuple[str, str] | list[str]],
    *,
    forgotten: Suppression | Collection[str] | None = None,
) -> dict[str, str]:
    """The canonical id of every linked id, after the links ``(user_id, into)`` in order.

    The rule is :meth:`IdentityMap.add`'s: a link moves ``user_id``'s whole group into the
    group of ``into``, whose canonical id stays canonical, so ``a -> b`` then ``b -> c`` puts
    ``a`` and ``b`` under ``c``, and ``a -> b`` then ``a -> c`` puts ``a`` and ``b`` under ``c``
    too. It runs as a union-find over integer codes (the root of ``into``'s tree becomes the
    parent of ``user_id``'s root; no union by rank, which would change which id is canonical),
    in O(n α(n)) for n links. A link that names an id in ``forgotten`` (a set of ids, or a
    store's :class:`~affinity_sdk.profile.suppression.Suppression`) is skipped, as
    :meth:`ProfileStore.link <affinity_sdk.profile.store.ProfileStore.link>` refuses it: a
    forgotten id is never merged back. Self-links change nothing.

    Parameters
    ----------
    pairs
        ``(user_id, into)`` pairs of non-empty strings (Segment ``identify``: anonymous id, user id;
        ``alias``: previous id, user id), in arrival order.
    forgotten
        Ids that must not be linked.

    Returns
    -------
    dict
        Linked id -> canonical id, for every id whose canonical id is another id (the
        :meth:`IdentityMap.pairs` of the same links).

    Raises
    ------
    SchemaError
        A pair is not two non-empty strings (the message names its position).

    Examples
    --------
    >>> resolve_links([("a", "b"), ("a", "c")])  # b's group follows a into c
    {'a': 'c', 'b': 'c'}
    >>> resolve_links([("anon", "ann"), ("gone", "ann")], forgotten={"gone"})
    {'anon': 'ann'}
    """
    codes: dict[str, int] = {}
    sources: list[int] = []
    targets: list[int] = []
    for position, pair in enumerate(pairs):
        items = tuple(pair)
        if len(items) != 2 or not all(isinstance(x, str) and x for x in items):
            raise SchemaError(
                f"identity link {position}: expected a pair of non-empty string ids, got {items!r}",
                position,
            )
        sources.append(codes.setdefault(items[0], len(codes)))
        targets.append(codes.setdefault(items[1], len(codes)))
    names = list(codes)
    blocked = _forgotten_mask(names, forgotten)
    parent = list(range(len(names)))
    for source, target in zip(sources, targets, strict=True):
        if blocked is not None and (blocked[source] or blocked[target]):
            continue
        source, target = _root(parent, source), _root(parent, target)
        if source != target:
            parent[source] = target
    resolved: dict[str, str] = {}
    for code, name in enumerate(names):
        root = _root(parent, code)
        if root != code:
            resolved[name] = names[root]
    return resolved


def _root(parent: list[int], code: int) -> int:
    """The root of ``code``'s tree, halving the path on the way (each node skips a level)."""
    while parent[code] != code:
        grand = parent[parent[code]]
        parent[code] = grand
        code = grand
    return code


def _forgotten_mask(names: list[str], forgotten: Suppression | Collection[str] | None) -> list[bool] | None:
    """Per id in ``names``: is it forgotten? ``None`` when nothing is."""
    from affinity_sdk.profile.suppression import NOT_SUPPRESSED, Suppression

    if forgotten is None or len(forgotten) == 0:
        return None
    if isinstance(forgotten, Suppression):
        return (forgotten.forget_ms_of(names) != NOT_SUPPRESSED).tolist()  # type: ignore[no-any-return]
    return [name in forgotten for name in names]


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
        checked: list[tuple[str, str]] = []
        for pair in pairs:
            items = list(pair)
            if len(items) != 2 or not all(isinstance(x, str) and x for x in items):
                raise ValueError(f"identity entry {items!r} is not a pair of ids")
            checked.append((items[0], items[1]))
        return cls.from_mapping(resolve_links(checked))

    @classmethod
    def from_mapping(cls, canonical: dict[str, str]) -> IdentityMap:
        """A map from linked id -> canonical id (:func:`resolve_links` output) as it is."""
        identity = cls()
        identity._canonical = dict(canonical)
        for name, target in canonical.items():
            identity._aliases.setdefault(target, set()).add(name)
        return identity
