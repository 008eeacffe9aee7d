"""Scores on Dask: :func:`score_dataset` folds every input partition where it is read into
per-user partial rows of the scores view, adds them up per user bucket and scores them there
(:mod:`affinity_sdk.scale.partials`: no event crosses the network), and cuts tiers with the
config's :class:`~affinity_sdk.score.tiers.TierPlan` at the exact global quantiles of the raw score
(:mod:`affinity_sdk.scale.quantiles`) or at its absolute thresholds.
"""

from __future__ import annotations

import math
from collections.abc import Collection
from dataclasses import dataclass
from os import PathLike, fspath
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from numpy.typing import NDArray

from affinity_sdk.config import ScoringConfig, load_scoring_config
from affinity_sdk.scale._common import STR, Format, Reader, Source, dask_module, require_dask
from affinity_sdk.scale.identity import Links, resolved_mapping
from affinity_sdk.scale.partials import (
    FoldSpec,
    combine_partials,
    fold_partition,
    input_readers,
    now_of,
    read_partition,
    repeated_ids,
    scored_meta,
    user_buckets,
)
from affinity_sdk.scale.quantiles import radix_select
from affinity_sdk.score.tiers import TierPlan

if TYPE_CHECKING:
    from affinity_sdk.profile.suppression import Suppression

__all__ = ["DaskScores", "score_dataset"]


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

    Each input partition is folded where it is read, by the single process's pipeline, into
    per-user partial rows of the scores view (decayed sums per signal, the latest consent
    decision); the partial rows, never the events, are exchanged by a hash of the user id, added
    up and scored at ``now`` per user bucket, the scored buckets are persisted, and tiers are cut
    at the exact global quantiles (:func:`exact_quantile_cutoffs`) or at the absolute thresholds
    of ``config``. Only the ids of the events that feed the scores cross the network for the
    replay dedupe (:mod:`affinity_sdk.scale.partials`).

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
        User buckets, the partitions of the result (default: about the square root of the
        number of input partitions; the exchange of partial rows takes inputs x buckets tasks).
        Each holds whole users, so memory per worker task is about ``n_users / npartitions``
        profiles.
    backend
        Kernel backend used inside the workers (``"auto"``: the fastest available there).
    shuffle_method
        Unused, kept so that calls written for the earlier event shuffle still work: events no
        longer move, and the partial rows are exchanged by plain tasks.
    blocksize, rows_per_partition, errors, reader
        Input partitioning and NDJSON reading, see :func:`read_events`.
    dedupe
        Fold each ``event_id`` once (events without an id always fold): its first copy in lake
        order, as a ``Scorer`` fed the lake in order does, but whatever the number of copies or
        their distance apart (no window). The ids of the events that feed the scores are
        exchanged by a hash of the id; each input partition then drops the copies an earlier
        partition (or an earlier row of its own) holds, before its fold.
    links
        Identity links: ``(previous_id, user_id)`` pairs (a list, a pandas or Dask frame) or
        Segment ``identify`` / ``alias`` calls, in arrival order. They are resolved once on the
        client with the single process's union-find (the same canonical ids as ``Scorer.identify``
        applied in that order) and every event is re-keyed to its canonical id before the fold
        (:mod:`affinity_sdk.scale.identity`), so a person scores as one profile, exactly as one
        ``Scorer`` given the same links; a canonical id without events gets its empty profile.
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
    delayed = dask.delayed
    import pandas as pd

    from affinity_sdk._backends import resolve_backend
    from affinity_sdk._units import to_epoch_ms

    config = load_scoring_config(config)
    if backend not in (None, "auto"):
        resolve_backend(backend)  # fail here, not in every worker, for a backend nobody has
    readers = input_readers(
        source,
        format=format,
        blocksize=blocksize,
        rows_per_partition=rows_per_partition,
        errors=errors,
        reader=reader,
    )
    # Partials are far smaller than the events, so a few user buckets do: the all-to-all
    # exchange costs tasks in proportion to inputs x buckets.
    n_buckets = npartitions or max(1, round(math.sqrt(len(readers))))
    spec = FoldSpec(config, backend, n_buckets, None if now is None else to_epoch_ms(now))
    mapping = resolved_mapping(links, forgotten, **compute)
    shared = delayed(mapping, pure=True) if len(mapping) else None
    # Each input partition is read once and, in the same task, its fed ids split by id bucket:
    # the batches stay where they were read until their fold.
    reads = [
        delayed(read_partition, nout=1 + n_buckets * dedupe)(read, args, spec, dedupe)
        for read, args in readers
    ]
    repeats: list[Any] = []
    if dedupe:
        # Every id folds once: each id bucket's reduction names the later copies (a
        # partition's own repeats included), which their partition drops before its fold.
        repeats = [delayed(repeated_ids)(*[part[1 + b] for part in reads]) for b in range(n_buckets)]
    # A fold takes its partition's whole read (batches and id buckets, where it runs).
    folds = [
        delayed(fold_partition, nout=n_buckets)(part, i, spec, shared, *repeats)
        for i, part in enumerate(reads)
    ]
    canonical = pd.unique(mapping.to_numpy()) if len(mapping) else np.zeros(0, dtype=object)
    marker_bucket = user_buckets(canonical, n_buckets)
    parts = [
        delayed(combine_partials)(spec, canonical[marker_bucket == b].tolist(), *[f[b] for f in folds])
        for b in range(n_buckets)
    ]
    parts = list(dask.persist(*parts, **compute))
    now_ms = spec.now_ms
    if now_ms is None:
        now_ms = int(dask.compute(delayed(now_of)(parts[0]), **compute)[0])
    scored = dd.from_delayed(parts, meta=scored_meta(config, with_tier=False), verify_meta=False)
    plan = TierPlan.from_config(config)
    fractions = plan.quantile_fractions
    if fractions.size:
        quantiles, n_users = radix_select(scored, fractions, "raw_score", compute)
    else:  # absolute thresholds: only the count needs a pass
        quantiles, n_users = fractions, int(dask.compute(scored.shape[0], **compute)[0])
    cut_up, cut_down = plan.cutoffs_from_quantiles(quantiles)
    frame = scored.map_partitions(
        _with_tiers, cut_up, cut_down, backend, meta=scored_meta(config, with_tier=True)
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
