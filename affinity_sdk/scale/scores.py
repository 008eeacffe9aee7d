"""Scores on Dask: :func:`score_dataset` shuffles events by user, scores every partition with an
ordinary :class:`~affinity_sdk.score.scorer.Scorer` in a worker, and cuts tiers with the config's
:class:`~affinity_sdk.score.tiers.TierPlan` at the exact global quantiles of the raw score
(:mod:`affinity_sdk.scale.quantiles`) or at its absolute thresholds.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from os import PathLike, fspath
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from numpy.typing import NDArray

from affinity_sdk.config import ScoringConfig, load_scoring_config
from affinity_sdk.scale._common import (
    STR,
    Format,
    Reader,
    Source,
    dask_module,
    require_dask,
    shuffle_and_score,
)
from affinity_sdk.scale.identity import Links, link_profiles, replay_links, resolved_mapping, stitch
from affinity_sdk.scale.lake import batch_from_lean, read_events
from affinity_sdk.scale.quantiles import radix_select
from affinity_sdk.score.tiers import TierPlan

if TYPE_CHECKING:
    from affinity_sdk.profile.suppression import Suppression

__all__ = ["DaskScores", "score_dataset"]


def _scored_meta(config: ScoringConfig, with_tier: bool) -> Any:
    import pandas as pd

    cols: dict[str, Any] = {
        "user_id": pd.Series([], dtype=STR),
        "raw_score": pd.Series([], dtype=np.float64),
        "score": pd.Series([], dtype=np.float64),
    }
    if with_tier:
        cols["tier"] = pd.Series([], dtype=STR)
    for name in config.signal_names:
        cols[name] = pd.Series([], dtype=np.float64)
    return pd.DataFrame(cols)


def _score_partition(
    frame: Any, now_ms: Any, config: ScoringConfig, backend: str | None, dedupe: bool, mapping: Any
) -> Any:
    """Score the whole users of one partition at ``now_ms`` with a fresh Scorer (the events
    re-keyed to canonical ids; the links into this partition's canonical ids replayed)."""
    import pandas as pd

    from affinity_sdk.score.scorer import Scorer

    frame, links = replay_links(frame, mapping)

    if dedupe and len(frame):
        # Every copy of a replayed event has the same user, so it is in this partition: dropping
        # repeated ids here is exact, with no window to size (the Scorer's own window is off).
        ids = frame["event_id"]
        frame = frame[~(ids.duplicated() & (ids != 0))]
    scorer = Scorer(config, backend=backend, dedupe_window=None)
    if len(frame):
        scorer.ingest(batch_from_lean(frame))
    link_profiles(scorer, links)
    result = scorer.score(int(now_ms))
    cols: dict[str, Any] = {
        "user_id": pd.Series(result.user_ids, dtype=STR),
        "raw_score": result.raw_score,
        "score": result.score,
    }
    decayed = result.decayed.reshape(len(result), len(config.signal_names))
    for i, name in enumerate(config.signal_names):
        cols[name] = decayed[:, i]
    return pd.DataFrame(cols)


def _with_tiers(
    frame: Any,
    cut_up: NDArray[np.float64],
    cut_down: NDArray[np.float64],
    backend: str | None,
) -> Any:
    """The partition with its ``tier`` column (4th), against the global cut-offs."""
    import pandas as pd

    codes = TierPlan.assign(frame["raw_score"].to_numpy(dtype=np.float64), cut_up, cut_down, backend=backend)
    out = frame.copy()
    out.insert(3, "tier", pd.Series(TierPlan.labels(codes), index=out.index, dtype=STR))
    return out


@dataclass(frozen=True, eq=False)
class DaskScores:
    """What :func:`score_dataset` returns: the lazy score table and how its tiers were cut.

    ``frame`` is a Dask DataFrame with one row per consenting user: ``user_id``, ``raw_score``,
    ``score`` (0-100), ``tier`` (``"high"`` / ``"medium"`` / ``"low"``) and the decayed value of
    each signal, in the column order of :meth:`ScoreResult.columns
    <affinity_sdk.score.results.ScoreResult.columns>`. It is built on persisted per-partition scores,
    so computing or writing it does not re-read the events. ``cut_up`` / ``cut_down`` are the raw
    score thresholds to enter / stay in Medium and High (equal without hysteresis); with a band,
    ``cut_up`` also holds the plain cut-offs a user without a tier yet is placed by
    (:meth:`TierPlan.split_up <affinity_sdk.score.tiers.TierPlan.split_up>`).
    """

    frame: Any
    now_ms: int
    n_users: int
    cut_up: NDArray[np.float64]
    cut_down: NDArray[np.float64]
    config: ScoringConfig
    backend: str | None

    @property
    def metadata(self) -> dict[str, str]:
        """Provenance written with :meth:`to_parquet` (as in
        :class:`~affinity_sdk.score.results.ScoreResult`)."""
        return {
            "config_version": self.config.version,
            "config_fingerprint": self.config.fingerprint,
            "now_ms": str(self.now_ms),
            "backend": str(self.backend),
        }

    def compute(self, **kwargs: Any) -> Any:
        """The whole table as one pandas DataFrame (it must fit on the client)."""
        return self.frame.compute(**kwargs)

    def to_parquet(self, path: str | PathLike[str], **kwargs: Any) -> None:
        """Write the table as a partitioned Parquet dataset, one file per partition, with the
        provenance in each file's metadata."""
        self.frame.to_parquet(fspath(path), custom_metadata=self.metadata, write_index=False, **kwargs)


def score_dataset(
    source: Source,
    config: ScoringConfig | str | PathLike[str] | None = None,
    *,
    now: Any = None,
    format: Format = "auto",
    npartitions: int | None = None,
    backend: str | None = "auto",
    shuffle_method: str | None = None,
    blocksize: str | int = "64MiB",
    rows_per_partition: int = 2_000_000,
    errors: Literal["raise", "skip"] = "raise",
    reader: Reader = "auto",
    dedupe: bool = True,
    links: Links = None,
    forgotten: Suppression | Collection[str] | None = None,
    **compute: Any,
) -> DaskScores:
    """Score every user of a partitioned event dataset on Dask, exactly as one ``Scorer`` would.

    Events are hash-partitioned by ``user_id`` (Dask's shuffle), each partition is folded and
    scored at ``now`` by a fresh :class:`~affinity_sdk.score.scorer.Scorer` in a worker, the scored
    partitions are persisted, and tiers are cut at the exact global quantiles
    (:func:`exact_quantile_cutoffs`) or at the absolute thresholds of ``config``.

    Runs on whatever Dask scheduler is current: a ``distributed.Client`` (``LocalCluster`` or a
    cluster by address) once created is used automatically; ``**compute`` goes to
    :func:`dask.persist` / :func:`dask.compute` (e.g. ``scheduler="sync"``).

    Parameters
    ----------
    source
        Events: see :func:`read_events` (Parquet, NDJSON, a list of paths or a Dask DataFrame).
    config
        A :class:`~affinity_sdk.config.ScoringConfig`, a TOML / JSON path, or ``None`` (default).
    now
        Scoring time (``datetime``, ISO string or epoch ms); ``None`` means the latest event
        time in the dataset, as ``Scorer.score()`` does (computed in the same pass).
    npartitions
        Partitions after the shuffle (default: as many as the input). Each holds whole users, so
        memory per worker task is about ``n_users / npartitions`` profiles.
    backend
        Kernel backend used inside the workers (``"auto"``: the fastest available there).
    shuffle_method
        Passed to Dask's ``DataFrame.shuffle`` (``"p2p"``, ``"tasks"``, ``"disk"``; default:
        Dask's choice, ``p2p`` on a distributed cluster).
    blocksize, rows_per_partition, errors, reader
        Input partitioning and NDJSON reading, see :func:`read_events`.
    dedupe
        Fold each ``event_id`` once (events without an id always fold), as the ``Scorer``'s
        replay window does, but exactly: all copies of an event share its user and so its
        partition, whatever their number or distance apart.
    links
        Identity links: ``(previous_id, user_id)`` pairs (a list, a pandas or Dask frame) or
        Segment ``identify`` / ``alias`` calls, in arrival order. They are resolved once on the
        client with the single process's union-find (the same canonical ids as ``Scorer.identify``
        applied in that order) and every event is re-keyed to its canonical id before the
        shuffle (:mod:`affinity_sdk.scale.identity`), so a person scores as one profile, exactly
        as one ``Scorer`` given the same links.
    forgotten
        Ids (or a store's :class:`~affinity_sdk.profile.suppression.Suppression`) that are never
        linked, as ``Scorer.identify`` refuses a forgotten id.

    Returns
    -------
    DaskScores

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from affinity_sdk.sim.shop import simulate_shop
    >>> sim = simulate_shop(30, weeks=2, horizon_weeks=1, seed=2)
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     _ = sim.write_ndjson(pathlib.Path(tmp) / "events.ndjson")
    ...     scores = score_dataset(pathlib.Path(tmp) / "events.ndjson", now="2026-02-01T00:00:00Z",
    ...                            scheduler="sync")
    ...     table = scores.compute(scheduler="sync")
    >>> scores.n_users == len(table), sorted(table.columns[:4])
    (True, ['raw_score', 'score', 'tier', 'user_id'])
    """
    dd = require_dask()
    dask = dask_module()
    from affinity_sdk._backends import resolve_backend

    config = load_scoring_config(config)
    if backend not in (None, "auto"):
        resolve_backend(backend)  # fail here, not in every worker, for a backend nobody has
    events = read_events(
        source,
        format=format,
        blocksize=blocksize,
        rows_per_partition=rows_per_partition,
        errors=errors,
        reader=reader,
    )
    events, mapping = stitch(events, resolved_mapping(links, forgotten, **compute))
    scored, now_ms = shuffle_and_score(
        events,
        now,
        npartitions,
        shuffle_method,
        compute,
        _score_partition,
        (config, backend, dedupe, mapping),
        _scored_meta(config, with_tier=False),
    )
    plan = TierPlan.from_config(config)
    fractions = plan.quantile_fractions
    if fractions.size:
        quantiles, n_users = radix_select(scored, fractions, "raw_score", compute)
    else:  # absolute thresholds: only the count needs a pass
        quantiles, n_users = fractions, int(dask.compute(scored.shape[0], **compute)[0])
    cut_up, cut_down = plan.cutoffs_from_quantiles(quantiles)
    frame = scored.map_partitions(
        _with_tiers, cut_up, cut_down, backend, meta=_scored_meta(config, with_tier=True)
    )
    assert isinstance(frame, dd.DataFrame)
    return DaskScores(
        frame=frame,
        now_ms=now_ms,
        n_users=n_users,
        cut_up=cut_up,
        cut_down=cut_down,
        config=config,
        backend=backend,
    )
