"""Score a partitioned Parquet event lake on Dask, exactly as one ``Scorer`` would.

Writes a small simulated lake (one Parquet file per week, as a date-partitioned lake is), starts
a ``LocalCluster`` with two worker processes (or connects to a cluster given by address), scores
every user with :func:`affinity_sdk.scale.dask.score_dataset`, writes the scores as Parquet and checks a
few users against a single-process ``Scorer``; then finds every user's top brands with
:func:`affinity_sdk.scale.dask.score_affinities` and checks them against one ``AffinityModel``.

Run it::

    python examples/dask_lake.py                        # a LocalCluster on this machine
    python examples/dask_lake.py tcp://scheduler:8786   # an existing cluster (workers need
                                                        # affinity_sdk installed and the lake's path)
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from distributed import Client, LocalCluster

from affinity_sdk import EventBatch, Scorer, default_config
from affinity_sdk.models.affinity import AffinityModel, affinities_table
from affinity_sdk.scale.dask import score_affinities, score_dataset
from affinity_sdk.sim.shop import simulate_shop


def write_lake(root: Path, n_customers: int = 2_000, weeks: int = 4) -> Path:
    """One Parquet file per week of events; every customer spans several files."""
    sim = simulate_shop(n_customers, weeks=weeks, horizon_weeks=1, seed=3)
    table = sim.to_arrow()  # plain strings (a dictionary column would also list users with no events)
    lake = root / "events"
    lake.mkdir()
    week_ms = 7 * 86_400_000
    ts = pc.cast(pc.cast(table["timestamp"], "timestamp[ms]"), "int64").to_numpy()
    for week in range(weeks):
        rows = np.flatnonzero((ts - sim.start_ms) // week_ms == week)
        pq.write_table(table.take(rows), lake / f"week={week:02d}.parquet")
    return lake


def main(address: str | None) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        lake = write_lake(Path(tmp))
        cluster = None if address else LocalCluster(n_workers=2, threads_per_worker=1, processes=True)
        with Client(address or cluster) as client:
            print(f"Dask: {client}")
            scores = score_dataset(lake, default_config(), npartitions=4)
            print(
                f"scored {scores.n_users:,} users at now_ms={scores.now_ms}; "
                f"raw cut-offs medium/high = {scores.cut_up.round(3).tolist()}"
            )
            out = Path(tmp) / "scores"
            scores.to_parquet(out)  # one file per partition, provenance in the metadata
            table = scores.compute()
            # Each user's top 3 brands (lift against the whole population), also on the cluster.
            brands = score_affinities(lake, default_config(), dimension="brand", k=3, npartitions=4)
            top = brands.compute()
        if cluster is not None:
            cluster.close()
        print(table.head().to_string(index=False))
        print("tier counts:", table["tier"].value_counts().to_dict())

        # The same events through one process give the same scores and tiers.
        single = Scorer()
        for file in sorted(lake.glob("*.parquet")):
            single.ingest(EventBatch.from_parquet(file))
        expected = single.score().to_pandas().set_index("user_id")
        got = table.set_index("user_id").loc[expected.index]
        assert np.allclose(got["raw_score"], expected["raw_score"], rtol=1e-9, atol=1e-12)
        assert (got["tier"] == expected["tier"]).all()
        print(f"identical to the single-process Scorer for all {len(expected):,} users")

        print(top.head(6).to_string(index=False))
        # One AffinityModel fed the lake files in order, in one batch, gives the same top brands.
        files = sorted(lake.glob("*.parquet"))
        model = AffinityModel().ingest(
            EventBatch.from_arrow(pa.concat_tables([pq.read_table(f) for f in files]))
        )
        single_top = affinities_table(model, "brand", 3)
        got = top.set_index(["user_id", "rank"]).loc[
            list(zip(single_top["user_id"], single_top["rank"], strict=True))
        ]
        assert got["value"].tolist() == single_top["value"]
        assert np.allclose(got["affinity"], single_top["affinity"], rtol=1e-9, atol=0)
        print(f"top brands identical to the single-process AffinityModel for all {brands.n_users:,} users")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else None)
