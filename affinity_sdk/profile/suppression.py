"""Forget suppression: keyed hashes of forgotten ids, never the ids themselves.

``forget(user)`` erases a profile and leaves a :class:`Suppression` entry: the BLAKE2b keyed hash
(16 bytes) of the id with the time of the forget. The ingest pipeline drops every later-arriving
event of that id stamped at or before that time (a replay, a late event), so a forgotten user is
never rebuilt from old events; an event stamped after it starts a new profile that stays opted out
until a consent grant arrives.

The key defaults to a fixed, public constant, so the hash hides the id from a casual reader of a
state file but not from someone who can guess candidate ids; pass your own secret
``suppression_key`` (the same one to every shard that is merged) to make entries unguessable.

Examples
--------
>>> s = Suppression()
>>> s.add("ann", 1_000)
>>> s.forget_ms_of(["ann", "bob"]).tolist() == [1_000, NOT_SUPPRESSED]
True
>>> b"ann" in s.to_arrays()["digests"].tobytes()
False
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Final

import numpy as np
from numpy.typing import NDArray

__all__ = ["DEFAULT_KEY", "NOT_SUPPRESSED", "Suppression"]

#: The public default key (see the module docstring for when to pass a secret one).
DEFAULT_KEY: Final = b"affinity_sdk/forget-suppression/v1"
#: ``forget_ms`` of an id that was never forgotten.
NOT_SUPPRESSED: Final = int(np.iinfo(np.int64).min)
_DIGEST: Final = 16


class Suppression:
    """Keyed hash of each forgotten id -> the latest time it was forgotten (epoch ms)."""

    __slots__ = ("_entries", "_key", "key_id")

    def __init__(self, key: bytes | None = None) -> None:
        self._key = DEFAULT_KEY if key is None else bytes(key)
        if not 1 <= len(self._key) <= 64:
            raise ValueError("suppression_key must be 1 to 64 bytes")
        #: Identifies the key without revealing it, so stores hashed with different keys never mix.
        self.key_id = hashlib.blake2b(self._key, digest_size=8, person=b"afsdk-kid").hexdigest()
        self._entries: dict[bytes, int] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Suppression(entries={len(self)}, key_id={self.key_id!r})"

    def digest(self, user_id: str) -> bytes:
        return hashlib.blake2b(
            user_id.encode("utf-8", "surrogatepass"), key=self._key, digest_size=_DIGEST
        ).digest()

    def add(self, user_id: str, forget_ms: int) -> None:
        """Suppress ``user_id``'s events stamped at or before ``forget_ms`` (keeps the later time)."""
        self._add_digest(self.digest(user_id), int(forget_ms))

    def _add_digest(self, digest: bytes, forget_ms: int) -> None:
        if forget_ms > self._entries.get(digest, NOT_SUPPRESSED):
            self._entries[digest] = forget_ms

    def forget_ms_of(self, user_ids: Sequence[str]) -> NDArray[np.int64]:
        """Per id, the time it was last forgotten, or :data:`NOT_SUPPRESSED`."""
        out = np.full(len(user_ids), NOT_SUPPRESSED, dtype=np.int64)
        if self._entries:
            get, digest = self._entries.get, self.digest
            out[:] = [get(digest(u), NOT_SUPPRESSED) for u in user_ids]
        return out

    def merge(self, other: Suppression) -> None:
        """Unite ``other``'s entries into this one (the later forget time wins)."""
        if other.key_id != self.key_id:
            raise ValueError("cannot merge stores whose forget suppression uses different keys")
        for digest, forget_ms in other._entries.items():
            self._add_digest(digest, forget_ms)

    def to_arrays(self) -> dict[str, NDArray[np.generic]]:
        """The entries as arrays for a state file (the digests, never the ids)."""
        digests = np.frombuffer(b"".join(self._entries), dtype=np.uint8).reshape(-1, _DIGEST)
        return {"digests": digests.copy(), "forget_ms": np.fromiter(self._entries.values(), np.int64)}

    def load_arrays(self, digests: NDArray[np.generic], forget_ms: NDArray[np.generic]) -> None:
        """Restore entries written by :meth:`to_arrays`; raises ``ValueError`` on malformed arrays."""
        if (
            digests.dtype != np.uint8
            or digests.ndim != 2
            or digests.shape[1] != _DIGEST
            or forget_ms.dtype != np.int64
            or forget_ms.shape != (digests.shape[0],)
        ):
            raise ValueError("malformed forget suppression arrays")
        raw = np.ascontiguousarray(digests).tobytes()
        for i, ms in enumerate(forget_ms.tolist()):
            self._add_digest(raw[i * _DIGEST : (i + 1) * _DIGEST], int(ms))
