"""Scale-out throughput: events/s scoring a Parquet lake on a Dask ``LocalCluster`` (2 worker
processes, 1 thread each) against one process running ``Scorer`` over the same files.

The lake is a simulated shop's history split by time into 8 Parquet files (as a date-partitioned
lake is: every user spans every file), written once and cached under ``$AFFINITY_BENCH_DASK_DIR``
(default: the system temp dir). Size: ``AFFINITY_BENCH_DASK_EVENTS`` (default 10M events, about
44 events per customer). The cluster is started, and warmed up on a small lake, before timing.

Besides wall time, each run reports the CPU-seconds it spent (``cpu_s`` in ``extra_info``): the
single process's own, and for the cluster the client process (which hosts the ``LocalCluster``'s
scheduler and nannies) plus every process it started (the workers), so the two compare as costs.

Run: ``pytest benches/test_bench_dask.py --benchmark-only -s`` (events/s, CPU-seconds and the
workers' memory are printed and stored in ``extra_info``).
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("pytest_benchmark")
distributed = pytest.importorskip("distributed", reason="needs the [dask] extra")
pq = pytest.importorskip("pyarrow.parquet")

from affinity_sdk import EventBatch, Scorer  # noqa: E402
from affinity_sdk.scale.dask import score_dataset  # noqa: E402
from affinity_sdk.sim.shop import simulate_shop  # noqa: E402

N_EVENTS = int(float(os.environ.get("AFFINITY_BENCH_DASK_EVENTS", "10e6")))
N_FILES = 8
WEEKS = 6
EVENTS_PER_CUSTOMER = 44  # measured for weeks=6 with the simulator's defaults (seed 42: 43.9)


def _lake(n_events: int) -> Path:
    root = Path(os.environ.get("AFFINITY_BENCH_DASK_DIR", tempfile.gettempdir()))
    lake = root / f"affinity_bench_lake_{n_events}"
    if (lake / "_done").exists():
        return lake
    lake.mkdir(parents=True, exist_ok=True)
    sim = simulate_shop(max(n_events // EVENTS_PER_CUSTOMER, 10), weeks=WEEKS, horizon_weeks=1, seed=42)
    table = sim.batch.to_arrow()
    bounds = np.linspace(0, table.num_rows, N_FILES + 1).astype(int)
    for i in range(N_FILES):
        part = table.slice(bounds[i], bounds[i + 1] - bounds[i])
        pq.write_table(part, lake / f"day-{i:02d}.parquet", row_group_size=250_000)
    (lake / "_done").write_text(str(table.num_rows))
    return lake


@pytest.fixture(scope="module")
def lake() -> tuple[Path, int]:
    path = _lake(N_EVENTS)
    return path, int((path / "_done").read_text())


@pytest.fixture(scope="module")
def client() -> Any:
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0"
        ) as cluster,
        distributed.Client(cluster) as c,
    ):
        warm = _lake(20_000)
        score_dataset(warm).compute()  # imports and first-call costs in both workers
        yield c


def _cpu_seconds(children: bool) -> float:
    """User + system CPU-seconds of this process, all threads, and with ``children`` of every
    process it started (a ``LocalCluster``'s workers)."""
    import psutil

    me = psutil.Process()
    total = sum(me.cpu_times()[:2])
    for child in me.children(recursive=True) if children else []:
        try:
            total += sum(child.cpu_times()[:2])
        except psutil.NoSuchProcess:
            pass
    return total


def _timed_cpu(benchmark: Any, run: Any, *args: Any, children: bool = False) -> Any:
    """``benchmark.pedantic(run)`` once, with the CPU-seconds it took in ``extra_info``."""
    before = _cpu_seconds(children)
    result = benchmark.pedantic(run, args=args, rounds=1, iterations=1)
    benchmark.extra_info["cpu_s"] = _cpu_seconds(children) - before
    return result


def _single_process(path: Path) -> Any:
    scorer = Scorer()
    for file in sorted(path.glob("*.parquet")):
        scorer.ingest(EventBatch.from_parquet(file))
    return scorer.score()


def _report(benchmark: Any, n_events: int, label: str) -> None:
    seconds = float(benchmark.stats.stats.min)
    benchmark.extra_info["events"] = n_events
    benchmark.extra_info["events_per_s"] = n_events / seconds
    cpu = benchmark.extra_info.get("cpu_s")
    spent = "" if cpu is None else f", {cpu:.2f} CPU-s"
    print(f"\n{label}: {n_events:,} events in {seconds:.2f} s = {n_events / seconds:,.0f} events/s{spent}")


@pytest.mark.benchmark(group="dask-lake")
def test_single_process_scorer(benchmark: Any, lake: tuple[Path, int]) -> None:
    path, n_events = lake
    result = _timed_cpu(benchmark, _single_process, path)
    assert len(result) > 0
    benchmark.extra_info["users"] = len(result)
    _report(benchmark, n_events, "single process")


@pytest.mark.benchmark(group="dask-lake")
def test_local_cluster_2_workers(benchmark: Any, lake: tuple[Path, int], client: Any) -> None:
    path, n_events = lake

    def run() -> Any:
        scores = score_dataset(path)
        frame = scores.frame.persist()
        distributed.wait(frame)
        return scores, frame

    scores, frame = _timed_cpu(benchmark, run, children=True)
    assert int(frame.shape[0].compute()) == scores.n_users > 0
    rss = client.run(lambda: __import__("psutil").Process().memory_info().rss)
    benchmark.extra_info["users"] = scores.n_users
    benchmark.extra_info["worker_rss_mib"] = sorted(v / 2**20 for v in rss.values())
    print(
        f"users {scores.n_users:,}; worker RSS after the run (MiB): {benchmark.extra_info['worker_rss_mib']}"
    )
    _report(benchmark, n_events, "LocalCluster 2x1")
    started = time.perf_counter()
    tiers = frame["tier"].value_counts().compute()
    print(f"tiers {dict(tiers)} ({time.perf_counter() - started:.2f} s to count from persisted partitions)")


def _single_process_affinities(path: Path) -> Any:
    import pyarrow as pa

    from affinity_sdk.models.affinity import AffinityModel, affinities_table

    table = pa.concat_tables([pq.read_table(f) for f in sorted(path.glob("*.parquet"))])
    model = AffinityModel().ingest(EventBatch.from_arrow(table))  # one batch: cuts on the whole lake
    return affinities_table(model, "brand", 3)


@pytest.mark.benchmark(group="dask-affinities")
def test_single_process_affinities(benchmark: Any, lake: tuple[Path, int]) -> None:
    path, n_events = lake
    table = benchmark.pedantic(_single_process_affinities, args=(path,), rounds=1, iterations=1)
    assert len(table["user_id"]) > 0
    _report(benchmark, n_events, "single process AffinityModel, brand top 3")


@pytest.mark.benchmark(group="dask-affinities")
def test_local_cluster_affinities(benchmark: Any, lake: tuple[Path, int], client: Any) -> None:
    from affinity_sdk.scale.dask import score_affinities

    path, n_events = lake

    def run() -> Any:
        top = score_affinities(path, dimension="brand", k=3)
        frame = top.frame.persist()
        distributed.wait(frame)
        return top, frame

    top, _frame = benchmark.pedantic(run, rounds=1, iterations=1)
    assert top.n_users > 0
    benchmark.extra_info["users"] = top.n_users
    _report(benchmark, n_events, "LocalCluster 2x1 score_affinities, brand top 3")


#: The views ``fold_dataset`` is timed with (the two that had no Dask path before it).
FOLD_VIEWS = ("engagement", "products")


@pytest.mark.benchmark(group="dask-store")
def test_single_process_store(benchmark: Any, lake: tuple[Path, int]) -> None:
    from affinity_sdk.ingest.parquet import read_parquet
    from affinity_sdk.profile.store import ProfileStore

    path, n_events = lake

    def run() -> ProfileStore:
        store = ProfileStore(views=FOLD_VIEWS)
        store.ingest(read_parquet(path))
        return store

    store = benchmark.pedantic(run, rounds=1, iterations=1)
    assert store.events_ingested > 0
    _report(benchmark, n_events, f"single process ProfileStore {FOLD_VIEWS}")


@pytest.mark.benchmark(group="dask-store")
def test_local_cluster_fold_dataset(benchmark: Any, lake: tuple[Path, int], client: Any) -> None:
    from affinity_sdk.scale.dask import fold_dataset

    path, n_events = lake
    store = benchmark.pedantic(lambda: fold_dataset(path, views=FOLD_VIEWS), rounds=1, iterations=1)
    assert store.events_ingested > 0
    _report(benchmark, n_events, f"LocalCluster 2x1 fold_dataset {FOLD_VIEWS}")
