"""The profile store's section of a state file: a MessagePack-able header and named arrays
(:meth:`ProfileStore.to_container <affinity_sdk.profile.store.ProfileStore.to_container>`), and
the checked way back (:meth:`~affinity_sdk.profile.store.ProfileStore.from_container`).

The header carries the format version (:data:`STORE_FORMAT`), the config and its fingerprint, the
interners, identity links and traits; the arrays carry the flags, every view, the suppression
entries, the per-medium consent and the dedupe window and journal. Anything that does not decode
or does not fit the rest raises :class:`~affinity_sdk.errors.StateError` naming the file.

Examples
--------
>>> from affinity_sdk.profile.store import ProfileStore
>>> store = ProfileStore(views=("signals",))
>>> _ = store.ingest(b'{"type":"app_opened","user_id":"ann","timestamp":0}')
>>> header, arrays = store_to_container(store)
>>> header["store_format"] == STORE_FORMAT, header["interners"]["users"]
(True, ['ann'])
>>> store_from_container(ProfileStore, "memory", header, arrays, backend="auto",
...                      suppression_key=None).code_of("ann")
0
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import msgspec
import numpy as np
from numpy.typing import NDArray

from affinity_sdk.config import ScoringConfig
from affinity_sdk.errors import ConfigError, StateError
from affinity_sdk.ingest.batch import TOMBSTONE, EventBatch, Interner
from affinity_sdk.ingest.dedupe import EventIdWindow
from affinity_sdk.ingest.interner import INTERNER_KINDS
from affinity_sdk.ingest.journal import EventJournal
from affinity_sdk.profile.identity import IdentityMap
from affinity_sdk.profile.signals import SignalView

if TYPE_CHECKING:
    from affinity_sdk.profile.store import ProfileStore

__all__ = ["STORE_FORMAT", "store_from_container", "store_to_container"]

#: Version of the store's section of a state file.
STORE_FORMAT: Final = 2


def store_to_container(store: ProfileStore) -> tuple[dict[str, Any], dict[str, NDArray[Any]]]:
    """:meth:`ProfileStore.to_container <affinity_sdk.profile.store.ProfileStore.to_container>`:
    ``store`` (under its lock) as a header and named arrays."""
    with store.lock:
        store.grow(store.n_users)
        arrays: dict[str, NDArray[Any]] = {f"flags.{k}": v for k, v in store.flags.to_arrays().items()}
        view_headers: dict[str, Any] = {}
        for name, view in store.views.items():
            header, view_arrays = view.to_arrays()
            view_headers[name] = header
            arrays.update({f"{name}.{k}": v for k, v in view_arrays.items()})
        arrays.update({f"suppression.{k}": v for k, v in store.suppression.to_arrays().items()})
        arrays.update({f"medium_consent.{k}": v for k, v in store.channel_consent.to_arrays().items()})
        if store.dedupe is not None:
            ids = store.dedupe.to_arrays()
            arrays["dedupe.previous"], arrays["dedupe.current"] = ids["previous"], ids["current"]
        if store.journal is not None and store.dedupe is not None:
            store.journal.append(EventBatch.empty(store.interners), rotations=store.dedupe.rotations)
            arrays.update({f"journal.{k}": v for k, v in store.journal.to_arrays().items()})
        header = {
            "store_format": STORE_FORMAT,
            "config": msgspec.to_builtins(store.config),
            "fingerprint": store.config.fingerprint,
            "views": view_headers,
            "latest_ms": store.latest_ms,
            "events_ingested": store.events_ingested,
            "source_position": store.source_position,
            "interners": {name: list(getattr(store.interners, name).names) for name in INTERNER_KINDS},
            "dedupe_window": None if store.dedupe is None else store.dedupe.generation_size,
            "journal": store.journal is not None,
            "suppression_key_id": store.suppression.key_id,
            "identity": store.identity.pairs(),
            "traits": store.traits.to_builtins(),
            "max_future_ms": store.max_future_ms,
        }
        return header, arrays


def store_from_container(
    cls: type[ProfileStore],
    path: str | Path,
    header: dict[str, Any],
    arrays: dict[str, NDArray[Any]],
    *,
    backend: str | None,
    suppression_key: bytes | None,
) -> ProfileStore:
    """:meth:`ProfileStore.from_container <affinity_sdk.profile.store.ProfileStore.from_container>`:
    a ``cls`` rebuilt from a header and arrays; :class:`StateError` if they are not a store's."""
    stored = _decode_header(path, header)
    try:
        config = msgspec.convert(stored.config, ScoringConfig)
    except (msgspec.ValidationError, ConfigError) as exc:
        raise StateError(f"{path}: stored config is invalid: {exc}") from None
    if config.fingerprint != stored.fingerprint:
        raise StateError(f"{path}: config fingerprint mismatch (file {stored.fingerprint})")
    try:
        store = cls(
            config,
            views=tuple(stored.views),  # type: ignore[arg-type]
            backend=backend,
            dedupe_window=None,
            max_future=None,
            suppression_key=suppression_key,
        )
    except ValueError as exc:
        raise StateError(f"{path}: {exc}") from None
    if store.suppression.key_id != stored.suppression_key_id:
        raise StateError(
            f"{path}: its forget suppression was written with another suppression_key; pass that key"
        )
    store.max_future_ms = stored.max_future_ms
    for name in INTERNER_KINDS:
        setattr(store.interners, name, Interner(getattr(stored.interners, name)))
    n = store.n_users
    try:
        store.identity = IdentityMap.from_pairs(stored.identity)
        for name, canonical in store.identity.pairs():
            code = store.interners.users.lookup(canonical)
            if code is None:
                raise ValueError(f"linked id {name!r} points to {canonical!r}, which has no profile")
            store.interners.users.alias(name, code)
        store.flags.load_arrays(arrays, n)
        prefix = "medium_consent."  # not "channel_...": a forgotten "ann" is looked for in files
        store.channel_consent.load_arrays(
            {k[len(prefix) :]: v for k, v in arrays.items() if k.startswith(prefix)}, n
        )
        store.suppression.load_arrays(arrays["suppression.digests"], arrays["suppression.forget_ms"])
        store.traits.load(stored.traits)
    except (KeyError, ValueError) as exc:
        raise StateError(f"{path}: {exc}") from None
    retired = np.array([name == TOMBSTONE for name in store.interners.users.names], dtype=np.bool_)
    if not np.array_equal(retired, store.flags.retired):
        raise StateError(f"{path}: retired profiles do not match the stored users")
    for name, view in store.views.items():
        prefix = f"{name}."
        view_arrays = {k[len(prefix) :]: v for k, v in arrays.items() if k.startswith(prefix)}
        try:
            view.load_arrays(stored.views[name], view_arrays, n)
        except StateError as exc:
            raise StateError(f"{path}: {exc}") from None
    latest = stored.latest_ms
    signals = store.views.get("signals")
    landmark = signals.state.landmark_ms if isinstance(signals, SignalView) else None
    if landmark is not None and (latest is None or landmark > latest):
        raise StateError(f"{path}: decay landmark {landmark} lies after the newest event {latest}")
    store.latest_ms = latest
    store.events_ingested = stored.events_ingested
    store.source_position = stored.source_position
    if stored.dedupe_window is not None:
        try:
            store.dedupe = EventIdWindow.from_arrays(
                stored.dedupe_window, arrays["dedupe.previous"], arrays["dedupe.current"], backend=backend
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise StateError(f"{path}: stored dedupe window is invalid: {exc}") from None
        except MemoryError:
            raise StateError(
                f"{path}: stored dedupe window of {stored.dedupe_window} ids does not fit in memory"
            ) from None
        if stored.journal:
            store.journal = EventJournal()
            journal = {k[len("journal.") :]: v for k, v in arrays.items() if k.startswith("journal.")}
            try:
                store.journal.load_arrays(journal, store.interners, rotations=store.dedupe.rotations)
            except ValueError as exc:
                raise StateError(f"{path}: stored event journal is invalid: {exc}") from None
    return store


class _StoredInterners(msgspec.Struct):
    users: list[str]
    products: list[str]
    categories: list[str]
    brands: list[str]
    campaigns: list[str]


class _StoredStore(msgspec.Struct):
    store_format: int
    config: dict[str, Any]
    fingerprint: str
    views: dict[str, dict[str, Any]]
    latest_ms: int | None
    events_ingested: int = msgspec.field(default=0)
    source_position: Any = None
    interners: _StoredInterners = msgspec.field(default_factory=lambda: _StoredInterners([], [], [], [], []))
    dedupe_window: int | None = None
    journal: bool = True  # False: saved by a store that kept no journal (files before it had one)
    suppression_key_id: str = ""
    identity: list[list[str]] = msgspec.field(default_factory=list)
    traits: list[Any] = msgspec.field(default_factory=list)
    max_future_ms: int | None = None


def _decode_header(path: str | Path, header: Any) -> _StoredStore:
    if not isinstance(header, dict) or header.get("store_format") != STORE_FORMAT:
        found = header.get("store_format", 1) if isinstance(header, dict) else "?"
        raise StateError(
            f"{path}: state format {found} is not supported (this affinity_sdk reads format {STORE_FORMAT}); "
            "rebuild the state from the events"
        )
    try:
        stored = msgspec.convert(header, _StoredStore)
    except msgspec.ValidationError as exc:
        raise StateError(f"{path}: malformed state header: {exc}") from None
    if stored.events_ingested < 0:
        raise StateError(f"{path}: malformed state header: events_ingested < 0")
    return stored
