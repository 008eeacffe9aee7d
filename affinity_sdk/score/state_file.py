"""A Scorer's state file: the profile store's section plus the tier memory, the cut-offs and the
shadow configs (:meth:`Scorer.save <affinity_sdk.score.scorer.Scorer.save>` /
:meth:`Scorer.load <affinity_sdk.score.scorer.Scorer.load>`).

The file itself is :mod:`affinity_sdk._persist`'s atomic, checksummed container of kind
:data:`STATE_KIND`.

Examples
--------
>>> import tempfile
>>> from pathlib import Path
>>> from affinity_sdk import Scorer
>>> scorer = Scorer()
>>> _ = scorer.ingest(b'{"type":"app_opened","user_id":"ann","timestamp":0}')
>>> with tempfile.TemporaryDirectory() as folder:
...     path = Path(folder) / "state.bin"
...     write_state(scorer, path, None)
...     load_state(Scorer, path, None, backend="auto", suppression_key=None, refresh_every=None,
...                threads=None).n_users
1
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import numpy as np

from affinity_sdk.config import ScoringConfig
from affinity_sdk.errors import StateError
from affinity_sdk.profile.store import ProfileStore
from affinity_sdk.score.tiers import NO_TIER

if TYPE_CHECKING:
    from affinity_sdk.score.scorer import Scorer

__all__ = ["STATE_KIND", "load_state", "write_state"]

#: The container kind of a Scorer's state file.
STATE_KIND: Final = "affinity_sdk.Scorer"


def write_state(scorer: Scorer, path: str | Path, source_position: Any) -> None:
    """Atomically write ``scorer``'s state to ``path`` (the caller holds the lock); a
    ``source_position`` other than ``None`` is stored first."""
    from affinity_sdk._persist import write_container

    if source_position is not None:
        scorer.store.source_position = source_position
    header, arrays = scorer.store.to_container()
    arrays["score.tiers"] = scorer._grown_tiers().copy()
    scorer._shadows.to_container(header)
    if scorer._cutoffs is not None:
        arrays["score.cut_up"], arrays["score.cut_down"] = scorer._cutoffs
    write_container(path, STATE_KIND, header, arrays)


def load_state(
    cls: type[Scorer],
    path: str | Path,
    config: ScoringConfig | str | Path | None,
    *,
    backend: str | None,
    suppression_key: bytes | None,
    refresh_every: int | None,
    threads: int | None,
) -> Scorer:
    """A ``cls`` rebuilt from the file at ``path`` (:meth:`Scorer.load
    <affinity_sdk.score.scorer.Scorer.load>`, ``refresh_every`` checked already): a corrupt,
    truncated or foreign file raises :class:`StateError`, a ``config`` whose fingerprint differs
    from the stored one :class:`~affinity_sdk.errors.ConfigError`."""
    from affinity_sdk._persist import read_container
    from affinity_sdk.config import load_scoring_config
    from affinity_sdk.errors import ConfigError

    expected = None if config is None else load_scoring_config(config)

    header, arrays = read_container(path, STATE_KIND)
    store = ProfileStore.from_container(
        path, header, arrays, backend=backend, suppression_key=suppression_key
    )
    if expected is not None and expected.fingerprint != store.config.fingerprint:
        stored = store.config
        raise ConfigError(
            f"{path} was built with config {stored.version!r} (fingerprint {stored.fingerprint}), "
            f"not the given {expected.version!r} (fingerprint {expected.fingerprint}): rebuild the "
            "state by replaying the events into Scorer(config), or load without config= to keep "
            "scoring with the stored config"
        )
    if "signals" not in store.views:
        raise StateError(f"{path}: the state keeps no 'signals' view")
    scorer = cls.__new__(cls)
    scorer._attach(store, refresh_every, threads)
    scorer._shadows.load(path, header, arrays)
    n = store.n_users
    tiers = arrays.get("score.tiers")
    if tiers is None or tiers.dtype != np.int8 or tiers.shape != (n,):
        raise StateError(f"{path}: state array 'score.tiers' is missing or does not match the stored users")
    if ((tiers < NO_TIER) | (tiers > 2)).any():
        raise StateError(f"{path}: stored tiers are out of range")
    scorer._grown_tiers()[:] = tiers
    cuts = [arrays[k] for k in ("score.cut_up", "score.cut_down") if k in arrays]
    # up: (2,), or (4,) for a banded plan (entering, then first-assignment cut-offs); a
    # (2,) up of a banded plan (an older file) still works, new users entering at it.
    shapes = [((2,), (4,)) if scorer.plan.banded else ((2,),), ((2,),)]
    if len(cuts) == 1 or any(
        c.dtype != np.float64 or c.shape not in allowed for c, allowed in zip(cuts, shapes, strict=False)
    ):
        raise StateError(f"{path}: stored tier cut-offs are malformed")
    if cuts:
        scorer._cutoffs = (cuts[0], cuts[1])
    return scorer
