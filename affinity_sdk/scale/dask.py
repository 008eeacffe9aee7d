"""Scale-out on Dask: score a partitioned event lake exactly, on any Dask cluster.

:func:`score_dataset` reads a partitioned Parquet or NDJSON event dataset (or takes a Dask
DataFrame) and folds each input partition where it is read into per-user *partial rows* of the
scores view (:mod:`affinity_sdk.scale.partials`): decayed sums per signal and the latest consent
decision. Only those rows, and the ids of the events that feed the view (for the exact replay
dedupe), cross the network, never the events. The partials are added per user bucket (decayed
sums add; the latest consent decision wins), scored there, and High / Medium / Low tiers are cut
at the *exact* global quantiles of the raw score with a distributed radix selection (small
histograms summed on the workers, never the scores themselves, travel to the client). The result
matches a single-process ``Scorer`` fed the same events in lake order to float rounding.

:func:`score_propensity` does the same for a fitted
:class:`~affinity_sdk.models.propensity.PropensityModel` (events and their product lines are shuffled,
features and probabilities are computed per user in the workers, tiers at exact quantiles).

The module imports without Dask; its functions raise :class:`ImportError` naming the
``[dask]`` extra when Dask is missing. Worker tasks are plain top-level functions of their
arguments (no global state), so any worker with ``affinity_sdk`` installed can run them.

This module is the public entry point; the work lives in focused modules:

* :mod:`affinity_sdk.scale.lake`: reading a lake into the lean event frame (:func:`read_events`)
  and back into an :class:`~affinity_sdk.ingest.batch.EventBatch` in the workers;
* :mod:`affinity_sdk.scale.quantiles`: exact distributed quantiles (:func:`exact_quantile_cutoffs`);
* :mod:`affinity_sdk.scale.identity`: identify / alias links resolved once and events re-keyed to
  canonical ids before they are folded (``score_dataset(..., links=...)``);
* :mod:`affinity_sdk.scale.partials`: the map-side fold behind :func:`score_dataset`;
* :mod:`affinity_sdk.scale.scores`: :func:`score_dataset` (tiers by
  :class:`~affinity_sdk.score.tiers.TierPlan`, the single-process Scorer's plan);
* :mod:`affinity_sdk.scale.propensity`: :func:`score_propensity`;
* :mod:`affinity_sdk.scale.affinities`: :func:`score_affinities`;
* :mod:`affinity_sdk.scale.views`: :func:`fold_dataset`, every view of the profile store (one
  store per input partition, merged in a tree: no shuffle).

Examples
--------
>>> import tempfile, pathlib
>>> import numpy as np
>>> from affinity_sdk import Scorer
>>> from affinity_sdk.sim.shop import simulate_shop
>>> sim = simulate_shop(40, weeks=2, horizon_weeks=1, seed=5)
>>> with tempfile.TemporaryDirectory() as tmp:
...     _ = sim.write_parquet(pathlib.Path(tmp) / "events.parquet")
...     scores = score_dataset(tmp, scheduler="sync")
...     frame = scores.compute()
>>> single = Scorer()
>>> _ = single.ingest(sim.batch)
>>> expected = single.score().to_pandas().set_index("user_id")
>>> got = frame.set_index("user_id").loc[expected.index]
>>> bool((got["tier"] == expected["tier"]).all()), bool(np.allclose(got["score"], expected["score"]))
(True, True)
"""

from __future__ import annotations

from affinity_sdk.scale._common import Format, Reader, Source
from affinity_sdk.scale.affinities import DaskAffinities, score_affinities
from affinity_sdk.scale.lake import EVENT_COLUMNS, read_events
from affinity_sdk.scale.propensity import DaskPropensity, score_propensity
from affinity_sdk.scale.quantiles import exact_quantile_cutoffs
from affinity_sdk.scale.scores import DaskScores, score_dataset
from affinity_sdk.scale.views import Forgotten, fold_dataset

__all__ = [
    "EVENT_COLUMNS",
    "DaskAffinities",
    "DaskPropensity",
    "DaskScores",
    "Forgotten",
    "Format",
    "Reader",
    "Source",
    "exact_quantile_cutoffs",
    "fold_dataset",
    "read_events",
    "score_affinities",
    "score_dataset",
    "score_propensity",
]
