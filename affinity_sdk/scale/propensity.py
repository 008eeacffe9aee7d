"""Propensity on Dask: :func:`score_propensity` scores a fitted
:class:`~affinity_sdk.models.propensity.PropensityModel` on every user of an event lake (events and
their product lines shuffled by user, features and probabilities per partition in the workers)
and tiers the probabilities with a :class:`~affinity_sdk.score.tiers.TierPlan` at exact global
quantiles (:mod:`affinity_sdk.scale.quantiles`) or thresholds. Opted-out users get no row and
do not count in the quantiles.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from affinity_sdk.scale._common import (
    STR,
    Format,
    Reader,
    Source,
    dask_module,
    empty_frame,
    require_dask,
    shuffle_and_score,
)
from affinity_sdk.scale.lake import batch_from_lean, drop_opted_out, read_events
from affinity_sdk.scale.quantiles import radix_select
from affinity_sdk.score.tiers import TierPlan

__all__ = ["DaskPropensity", "score_propensity"]


def _propensity_partition(frame: Any, now_ms: Any, model: Any, backend: str | None) -> Any:
    """Probabilities of the partition's consenting users (whole users: every event of theirs,
    consent events included, is here, so the latest decision is known; opted-out users are
    dropped before their features are built)."""
    import pandas as pd

    batch = batch_from_lean(drop_opted_out(frame))
    if len(batch) == 0:
        return _propensity_meta(False)
    p, seen = model.score_batch(batch, int(now_ms), backend=backend)
    shown = ~np.isnan(p)  # a user score_batch leaves out (hidden) has no row, as opted-out ones
    names = np.asarray(batch.interners.users.names, dtype=object)
    return pd.DataFrame(
        {"user_id": pd.Series(names[shown], dtype=STR), "probability": p[shown], "seen": seen[shown]}
    )


def _propensity_meta(with_tier: bool) -> Any:
    tier = {"tier": STR} if with_tier else {}
    return empty_frame({"user_id": STR, "probability": np.float64, "seen": np.bool_, **tier})


def _propensity_tiers(frame: Any, cuts: NDArray[np.float64], backend: str | None) -> Any:
    """The partition with its ``tier`` column, against the global probability cut-offs."""
    import pandas as pd

    codes = TierPlan.assign(frame["probability"].to_numpy(dtype=np.float64), cuts, backend=backend)
    return frame.assign(tier=pd.Series(TierPlan.labels(codes), index=frame.index, dtype=STR))


@dataclass(frozen=True, eq=False)
class DaskPropensity:
    """What :func:`score_propensity` returns: ``frame`` (Dask DataFrame: ``user_id``,
    ``probability``, ``seen``, ``tier``; one row per consenting user), the scoring time, the
    number of users and the probability cut-offs for Medium and High."""

    frame: Any
    now_ms: int
    n_users: int
    cuts: NDArray[np.float64]
    outcome: str

    def compute(self, **kwargs: Any) -> Any:
        """The whole table as one pandas DataFrame."""
        return self.frame.compute(**kwargs)


def score_propensity(
    source: Source,
    model: Any,
    *,
    now: Any = None,
    tiers: Any = None,
    format: Format = "auto",
    npartitions: int | None = None,
    backend: str | None = "auto",
    shuffle_method: str | None = None,
    blocksize: str | int = "64MiB",
    rows_per_partition: int = 2_000_000,
    errors: Literal["raise", "skip"] = "raise",
    reader: Reader = "auto",
    **compute: Any,
) -> DaskPropensity:
    """Score a fitted :class:`~affinity_sdk.models.propensity.PropensityModel` on every user of an event
    dataset on Dask, as ``model.score_batch`` and ``model.tiers`` do in one process.

    Events and their product lines are shuffled by user (``read_events(detail=True)``), each
    partition's users get their features and probabilities in a worker, and quantile tiers are
    cut at the exact global quantiles of the probability (:func:`exact_quantile_cutoffs`).

    Consent is the profile store's: a user whose latest ``consent_changed`` event revokes consent
    (a revocation wins a tie) is opted out and gets no row, and the quantiles are those of the
    consenting users' probabilities. The decision is taken after the shuffle, where each
    partition holds all of a user's events (consent events included, wherever they were in the
    lake), so it is exact at no extra cost; a separate global pass over the consent rows would
    read the input twice. ``now`` defaults to the latest event in the lake, as in
    :func:`score_dataset`.
    Features are per user, so the result does not depend on the partitioning; a model whose
    ``spec.bgnbd`` is set is refused, because its BG/NBD features are fitted on the whole
    population at scoring time.

    Parameters
    ----------
    model
        A fitted :class:`~affinity_sdk.models.propensity.PropensityModel`.
    now
        Feature cut-off (default: the latest event time in the dataset).
    tiers
        A :class:`~affinity_sdk.models.propensity.TierSpec` (default ``TierSpec()``: quantile 0.9 / 0.6).
    source, format, npartitions, backend, shuffle_method, blocksize, rows_per_partition, errors, reader
        As in :func:`score_dataset`.

    Returns
    -------
    DaskPropensity

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from affinity_sdk.sim.shop import simulate_shop
    >>> from affinity_sdk.models.propensity import PropensityModel, build_training_set
    >>> sim = simulate_shop(200, weeks=6, horizon_weeks=1, seed=2)
    >>> data = build_training_set(sim.batch, "purchase", [sim.end_ms - 7 * 86_400_000], "1w")
    >>> model = PropensityModel.fit(data)
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     _ = sim.write_parquet(pathlib.Path(tmp) / "events.parquet")
    ...     result = score_propensity(tmp, model, now=sim.end_ms, scheduler="sync")
    ...     table = result.compute(scheduler="sync")
    >>> sorted(table.columns), result.n_users == len(table)
    (['probability', 'seen', 'tier', 'user_id'], True)
    """
    dd = require_dask()
    from affinity_sdk.models.propensity import tier_plan

    if getattr(model.spec, "bgnbd", False):
        raise ValueError(
            "score_propensity cannot split a model with BG/NBD features (spec.bgnbd): they are "
            "fitted on the whole population when scoring; use a model without them"
        )
    plan = tier_plan(tiers)  # validated before any work
    events = read_events(
        source,
        format=format,
        blocksize=blocksize,
        rows_per_partition=rows_per_partition,
        errors=errors,
        reader=reader,
        detail=True,
    )
    scored, now_ms = shuffle_and_score(
        events,
        now,
        npartitions,
        shuffle_method,
        compute,
        _propensity_partition,
        (model, backend),
        _propensity_meta(False),
    )
    fractions = plan.quantile_fractions
    if fractions.size:
        quantiles, n_users = radix_select(scored, fractions, "probability", compute)
    else:  # thresholds on the probability: only the count needs a pass
        quantiles, n_users = fractions, int(dask_module().compute(scored.shape[0], **compute)[0])
    cuts, _ = plan.cutoffs_from_quantiles(quantiles)  # no hysteresis: up == down
    frame = scored.map_partitions(_propensity_tiers, cuts, backend, meta=_propensity_meta(True))
    assert isinstance(frame, dd.DataFrame)
    return DaskPropensity(frame=frame, now_ms=now_ms, n_users=n_users, cuts=cuts, outcome=model.outcome)
