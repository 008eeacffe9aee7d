"""End to end on a Parquet lake: the SDK reading a folder of Parquet files row group by row group
(``affinity_sdk.ingest.parquet.iter_parquet``) into a ``Scorer``, against DuckDB's
``read_parquet('lake/*.parquet')`` doing the same job, each as a whole process.

The lake: the shop simulator's events (``--events``, default 4M) over ``--files`` Parquet files
(default 12; row groups of 128k rows, dictionary-encoded strings as ``EventBatch.to_parquet``
writes them), with about 0.5 % of each file's events replayed at its end (same ``event_id``).
The job, as in ``benches/e2e.py``: drop the replays, every user's decayed value of each signal of
the built-in config at ``NOW`` (the newest event), the raw score, the 0-100 score and the quantile
tier; users whose latest global consent decision revokes consent (a revocation wins a tie) are
left out of the output and of the tier quantiles, as the SDK does. Engines: ``affinity`` (the SDK
folds in one thread while a worker thread reads the next row group; pyarrow decodes with its own
pool), ``duckdb-1`` and ``duckdb-all`` (every core). The CSVs are compared afterwards (same
users, raw scores to 1e-9 relative, same tiers).

Run ``python benches/e2e_parquet.py`` (the lake is cached in ``--dir``) or
``python benches/e2e_parquet.py --events 400000 --repeat 1`` for a quick look.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from e2e import check_agreement, compile_bytecode, duckdb_job, machine

ENGINES = ("affinity", "duckdb-1", "duckdb-all")
EVENTS_PER_CUSTOMER = 44  # the simulator's mean at weeks=6 (benches/test_bench_dask.py)
REPLAY_SHARE = 0.005


def build_lake(root: Path, n_events: int, n_files: int) -> tuple[Path, int]:
    """The cached lake folder and its newest event time (epoch ms)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from affinity_sdk.sim.shop import simulate_shop

    lake = root / f"lake-{n_events}-{n_files}"
    done = lake / "_newest_ms"
    if done.exists():
        return lake, int(done.read_text())
    lake.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    sim = simulate_shop(max(n_events // EVENTS_PER_CUSTOMER, 10), weeks=6, horizon_weeks=1, seed=42)
    table = sim.batch.to_arrow()
    rng = np.random.default_rng(3)
    bounds = np.linspace(0, table.num_rows, n_files + 1).astype(int)
    for i in range(n_files):
        part = table.slice(bounds[i], bounds[i + 1] - bounds[i])
        replay = np.sort(rng.choice(part.num_rows, int(part.num_rows * REPLAY_SHARE), replace=False))
        part = pa.concat_tables([part, part.take(pa.array(replay))]).combine_chunks()
        pq.write_table(part, lake / f"part-{i:02d}.parquet", row_group_size=128_000)
    newest = int(sim.batch.ts_ms.max())
    done.write_text(str(newest))
    print(f"built {lake} ({table.num_rows:,} events) in {time.perf_counter() - start:.0f}s", file=sys.stderr)
    return lake, newest


def affinity_program(lake: Path, out: Path, now_ms: int) -> str:
    return f"""
from affinity_sdk.ingest.parquet import iter_parquet
from affinity_sdk.score.scorer import Scorer
scorer = Scorer()
for batch in iter_parquet({str(lake)!r}, scorer.interners, views=("signals",)):
    scorer.ingest(batch)
scorer.score({now_ms}).save({str(out)!r})
"""


def duckdb_program(lake: Path, out: Path, now_ms: int, threads: int | None) -> str:
    """The job as one DuckDB query over ``read_parquet`` (only the columns it needs), opted-out
    users (latest global consent decision a revoke; a tie revokes) left out."""
    inputs = f"""ev AS (
  SELECT DISTINCT ON (event_id) CAST(type AS VARCHAR) AS type, CAST(user_id AS VARCHAR) AS user_id,
    epoch_ms(timestamp) AS t, granted, medium
  FROM read_parquet('{lake}/*.parquet')
), decided AS (
  SELECT user_id, t, granted FROM ev WHERE type = 'consent_changed' AND granted IS NOT NULL AND medium IS NULL
), latest AS (SELECT user_id, max(t) AS t FROM decided GROUP BY user_id),
gone AS (
  SELECT d.user_id FROM decided d JOIN latest l USING (user_id) WHERE d.t = l.t GROUP BY d.user_id
  HAVING bool_or(NOT d.granted)
)"""
    return duckdb_job(inputs, out, now_ms, threads, "WHERE ev.user_id NOT IN (SELECT user_id FROM gone)")


def run_once(engine: str, lake: Path, out: Path, now_ms: int) -> tuple[float, float, float]:
    """Wall seconds, peak RSS (MB) and CPU seconds of one whole process of ``engine``."""
    if engine == "affinity":
        program = affinity_program(lake, out, now_ms)
    else:
        program = duckdb_program(lake, out, now_ms, 1 if engine == "duckdb-1" else None)
    start = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-c", program], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        err = proc.stderr.read().decode() if proc.stderr else ""
        raise SystemExit(f"{engine} failed:\n{err}")
    return wall, usage.ru_maxrss / 1024.0, usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=4_000_000)
    parser.add_argument("--files", type=int, default=12)
    parser.add_argument(
        "--repeat", type=int, default=3, help="rounds; engines alternate in each (0: build the lake only)"
    )
    parser.add_argument("--engines", default=",".join(ENGINES))
    parser.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()) / "affinity-e2e-parquet")
    args = parser.parse_args()
    engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    if args.repeat < 1:  # build the lake only (in its own process: see below)
        build_lake(args.dir, args.events, args.files)
        return
    # Built in a child process, so this one stays small: a child's peak RSS starts from its parent's.
    subprocess.run([sys.executable, __file__, "--events", str(args.events), "--files", str(args.files),
                    "--dir", str(args.dir), "--repeat", "0"], check=True)  # fmt: skip
    lake, now_ms = build_lake(args.dir, args.events, args.files)
    outputs = {e: args.dir / f"out-{e}.csv" for e in engines}
    compile_bytecode(engines)
    walls: dict[str, list[float]] = {e: [] for e in engines}
    peaks: dict[str, list[float]] = {e: [] for e in engines}
    cpus: dict[str, list[float]] = {e: [] for e in engines}
    for r in range(args.repeat):
        for engine in engines if r % 2 == 0 else engines[::-1]:
            wall, peak, cpu = run_once(engine, lake, outputs[engine], now_ms)
            walls[engine].append(wall)
            peaks[engine].append(peak)
            cpus[engine].append(cpu)
            print(
                f"round {r + 1} {engine:<11} {wall:6.2f} s {peak:7.0f} MB {cpu:6.2f} s CPU", file=sys.stderr
            )
    if args.repeat and "affinity" in engines:
        check_agreement(outputs)
        print("engines agree: same users, raw scores to 1e-9, same tiers", file=sys.stderr)
    import pyarrow.parquet as pq

    size_mb = sum(f.stat().st_size for f in lake.glob("*.parquet")) / 1e6
    rows = sum(pq.read_metadata(f).num_rows for f in lake.glob("*.parquet"))
    print(f"\n{rows:,} rows in {args.files} Parquet files ({size_mb:.0f} MB); {machine()}; "
          f"median of {args.repeat} alternated runs\n")  # fmt: skip
    base = statistics.median(walls["affinity"]) if "affinity" in engines else None
    print("| engine | wall s (median) | peak RSS MB | CPU s (median) | wall / affinity |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for e in engines:
        wall = statistics.median(walls[e])
        ratio = f"{wall / base:.2f}" if base else "-"
        print(f"| {e} | {wall:.2f} | {max(peaks[e]):.0f} | {statistics.median(cpus[e]):.2f} | {ratio} |")


if __name__ == "__main__":
    main()
