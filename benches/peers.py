"""Same aggregation + tiering in affinity_sdk and in numpy, pandas, polars and DuckDB.

Each engine runs in its own subprocess (so its peak memory is its own), on one core
(``POLARS_MAX_THREADS=1``, DuckDB ``threads=1``, single-threaded numpy and our kernels), on the
same seeded workload: random event order, ``--events`` events over ``--profiles`` profiles and 8
signals. Two timed steps, best of ``--repeat``:

* **aggregate**: per (profile, signal) the forward-decayed sum ``Σ v·exp(λ_s (t − L))``, the
  value total, the count and first / last seen (what :func:`affinity_sdk.kernels.accumulate` keeps);
* **score + tier**: from an already computed raw-score array, the 0-100 score
  ``100 r / (r + h)``, the 60 % / 90 % quantile cut-offs and the Low / Medium / High tier
  (best and median of ``--repeat``);
* **state -> score + tier** (affinity_sdk and numpy only): the same, starting from the aggregated
  state instead of a raw-score array, i.e. with the raw score ``Σ_s c_s A_us`` computed first:
  from our state's contiguous ``acc`` array (``kernels.raw_scores``) and from numpy's dense
  ``acc`` matrix; for the C++ backend also on two threads (``threads=2`` for the raw scores and
  for the score + tier passes, the table's last line).

Run ``python benches/peers.py --events 10000000 --profiles 1000000`` and it prints a Markdown table;
``--compile-times`` also measures the Numba backend's cold import + first call with and without
its on-disk cache.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

import numpy as np

SIGNALS = 8
LANDMARK = 1_700_000_000_000
HALF_LIVES_S = np.array([1, 3, 7, 14, 30, 60, 90, 365], dtype=np.float64) * 86_400.0
FRACTIONS = (0.6, 0.9)
HALF_POINT = 5.0
COEFS = np.linspace(0.5, 2.0, SIGNALS)  # weights x decay factors, for the state -> tier step
ENGINES = ("affinity_sdk[cpp]", "affinity_sdk[numba]", "numpy", "pandas", "polars", "duckdb")


def workload(n_events: int, n_profiles: int, seed: int = 42) -> dict[str, Any]:
    """Seeded events in random order (and a raw-score array for the tiering step)."""
    rng = np.random.default_rng(seed)
    return {
        "users": rng.integers(0, n_profiles, n_events),
        "signals": rng.integers(0, SIGNALS, n_events),
        "ts_ms": LANDMARK - rng.integers(0, 90 * 86_400_000, n_events),
        "values": np.round(rng.exponential(20.0, n_events), 2),
        "lam": np.log(2.0) / (HALF_LIVES_S * 1000.0),
        "raw": rng.exponential(HALF_POINT, n_profiles),
    }


def _best(fn: Callable[[], Any], repeat: int, setup: Callable[[], Any] | None = None) -> float:
    best = float("inf")
    for _ in range(repeat):
        if setup is not None:
            setup()
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def _best_median(fn: Callable[[], Any], repeat: int) -> tuple[float, float]:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    times.sort()
    return times[0], times[len(times) // 2]


def _contribution(w: dict[str, Any]) -> Any:
    return w["values"] * np.exp(w["lam"][w["signals"]] * (w["ts_ms"] - LANDMARK).astype(np.float64))


def _checksum(acc: Any, total: Any, count: Any, first: Any, last: Any, tiers: Any) -> dict[str, Any]:
    """A small summary of one engine's results, compared across engines by :func:`check_agreement`:
    the sums of the decayed values, value totals and counts over every (profile, signal) cell,
    the first / last event times, and the number of profiles per tier."""
    counts = np.bincount(np.asarray(tiers, dtype=np.int64), minlength=3)
    return {"acc": float(acc), "total": float(total), "count": int(count), "first_ms": int(first),
            "last_ms": int(last), "tiers": counts.tolist()}  # fmt: skip


def check_agreement(rows: list[dict[str, Any]], rel: float = 1e-9) -> None:
    """Every engine's checksum equals the first one's (floats to ``rel`` relative, the rest exactly)."""
    ref = rows[0]
    for r in rows[1:]:
        a, b = ref["checksum"], r["checksum"]
        for key in ("acc", "total"):
            if not math.isclose(a[key], b[key], rel_tol=rel, abs_tol=0.0):
                raise SystemExit(
                    f"{r['engine']} disagrees with {ref['engine']} on {key}: {b[key]!r} != {a[key]!r}"
                )
        for key in ("count", "first_ms", "last_ms", "tiers"):
            if a[key] != b[key]:
                raise SystemExit(
                    f"{r['engine']} disagrees with {ref['engine']} on {key}: {b[key]!r} != {a[key]!r}"
                )


def run_engine(engine: str, n_events: int, n_profiles: int, repeat: int) -> dict[str, Any]:
    """Time both steps for one engine (called inside its own subprocess)."""
    w = workload(n_events, n_profiles)
    n_cells = n_profiles * SIGNALS
    fns: dict[str, Callable[[], Any]] = {}
    setup: Callable[[], Any] | None = None
    checksum: Callable[[], dict[str, Any]]
    if engine.startswith("affinity_sdk"):
        from affinity_sdk import kernels

        backend = engine[len("affinity_sdk[") : -1]
        box: dict[str, Any] = {}

        def fresh() -> None:
            box["acc"], box["records"] = (
                np.zeros((n_profiles, SIGNALS)),
                kernels.empty_records(n_profiles, SIGNALS),
            )

        def aggregate() -> None:
            kernels.accumulate(
                box["acc"], box["records"], w["users"], w["signals"], w["ts_ms"], w["values"], LANDMARK, w["lam"],
                backend=backend,
            )  # fmt: skip

        fresh()
        aggregate()  # warm-up (JIT compile for numba)
        setup = fresh
        fns["aggregate"] = aggregate
        q = np.array(FRACTIONS)
        kernels.score_tiers(w["raw"][:1000], HALF_POINT, q, backend=backend)
        fns["score_tier"] = lambda: kernels.score_tiers(w["raw"], HALF_POINT, q, backend=backend)
        raw_out = np.empty(n_profiles)

        def state_tier(threads: int = 1) -> None:
            raw = kernels.raw_scores(box["acc"], COEFS, raw_out, threads=threads, backend=backend)
            kernels.score_tiers(raw, HALF_POINT, q, threads=threads, backend=backend)

        fns["state_tier"] = state_tier
        if backend == "cpp":
            fns["state_tier_2t"] = lambda: state_tier(2)

        def checksum_ours() -> dict[str, Any]:
            fresh()
            aggregate()
            rec = box["records"]
            seen = rec["count"] > 0
            return _checksum(
                box["acc"].sum(), rec["total"].sum(), rec["count"].sum(), rec["first_ms"][seen].min(),
                rec["last_ms"][seen].max(), kernels.score_tiers(w["raw"], HALF_POINT, q, backend=backend)[1],
            )  # fmt: skip

        checksum = checksum_ours
    elif engine == "numpy":
        cell = w["users"] * SIGNALS + w["signals"]

        def aggregate_np() -> tuple[Any, ...]:
            c = _contribution(w)
            acc = np.bincount(cell, weights=c, minlength=n_cells)
            total = np.bincount(cell, weights=w["values"], minlength=n_cells)
            count = np.bincount(cell, minlength=n_cells)
            first = np.full(n_cells, np.iinfo(np.int64).max)
            np.minimum.at(first, cell, w["ts_ms"])
            last = np.full(n_cells, np.iinfo(np.int64).min)
            np.maximum.at(last, cell, w["ts_ms"])
            return acc, total, count, first, last

        def tier_np(r: Any = w["raw"]) -> Any:
            s = 100.0 * r / (r + HALF_POINT)
            n = s.shape[0]
            ks = [n - max(1, int(np.ceil(n * (1 - q)))) for q in FRACTIONS]
            part = np.partition(s, ks)
            cuts = part[ks]
            tiers = (s >= cuts[0]).astype(np.int8) + (s >= cuts[1])
            tiers[s <= 0] = 0
            return tiers

        acc = np.bincount(cell, weights=_contribution(w), minlength=n_cells).reshape(n_profiles, SIGNALS)

        def state_tier_np() -> None:
            tier_np(acc @ COEFS)

        fns = {"aggregate": aggregate_np, "score_tier": tier_np, "state_tier": state_tier_np}

        def checksum_np() -> dict[str, Any]:
            acc_, total, count, first, last = aggregate_np()
            return _checksum(acc_.sum(), total.sum(), count.sum(), first.min(), last.max(), tier_np())

        checksum = checksum_np
    elif engine == "pandas":
        import pandas as pd

        df = pd.DataFrame({"cell": w["users"] * SIGNALS + w["signals"], "t": w["ts_ms"], "v": w["values"]})
        lam_ev = w["lam"][w["signals"]]

        def aggregate_pd() -> Any:
            d = df.assign(c=df["v"].to_numpy() * np.exp(lam_ev * (df["t"].to_numpy() - LANDMARK)))
            return d.groupby("cell", sort=False).agg(
                acc=("c", "sum"),
                total=("v", "sum"),
                count=("v", "size"),
                first=("t", "min"),
                last=("t", "max"),
            )

        raw = pd.Series(w["raw"])

        def tier_pd() -> Any:
            s = 100.0 * raw / (raw + HALF_POINT)
            cuts = s.quantile(list(FRACTIONS), interpolation="higher")
            tiers = (s >= cuts.iloc[0]).astype("int8") + (s >= cuts.iloc[1]).astype("int8")
            tiers[s <= 0] = 0
            return tiers.to_numpy()

        fns = {"aggregate": aggregate_pd, "score_tier": tier_pd}

        def checksum_pd() -> dict[str, Any]:
            a = aggregate_pd()
            return _checksum(
                a["acc"].sum(),
                a["total"].sum(),
                a["count"].sum(),
                a["first"].min(),
                a["last"].max(),
                tier_pd(),
            )

        checksum = checksum_pd
    elif engine == "polars":
        import polars as pl

        df = pl.DataFrame(
            {
                "cell": w["users"] * SIGNALS + w["signals"],
                "sig": w["signals"],
                "t": w["ts_ms"],
                "v": w["values"],
            }
        )
        lam_ev = w["lam"][w["signals"]]

        def aggregate_pl_fast() -> Any:
            return df.lazy().with_columns(
                c=pl.col("v") * (pl.lit(pl.Series(lam_ev)) * (pl.col("t") - LANDMARK).cast(pl.Float64)).exp()
            ).group_by("cell").agg(
                pl.col("c").sum().alias("acc"), pl.col("v").sum().alias("total"), pl.len().alias("count"),
                pl.col("t").min().alias("first"), pl.col("t").max().alias("last"),
            ).collect()  # fmt: skip

        raw = pl.DataFrame({"r": w["raw"]})

        def tier_pl() -> Any:
            s = pl.col("r").clip(lower_bound=0.0)
            score = 100.0 * s / (s + HALF_POINT)
            return raw.lazy().with_columns(score=score).with_columns(
                tier=pl.when((pl.col("score") >= pl.col("score").quantile(FRACTIONS[1], "higher")) & (pl.col("score") > 0))
                .then(2)
                .when((pl.col("score") >= pl.col("score").quantile(FRACTIONS[0], "higher")) & (pl.col("score") > 0))
                .then(1)
                .otherwise(0)
            ).collect()  # fmt: skip

        fns = {"aggregate": aggregate_pl_fast, "score_tier": tier_pl}

        def checksum_pl() -> dict[str, Any]:
            a = aggregate_pl_fast()
            return _checksum(
                a["acc"].sum(), a["total"].sum(), a["count"].sum(), a["first"].min(), a["last"].max(),
                tier_pl()["tier"].to_numpy(),
            )  # fmt: skip

        checksum = checksum_pl
    elif engine == "duckdb":
        import duckdb
        import pyarrow as pa

        con = duckdb.connect(config={"threads": 1})
        events = pa.table(
            {
                "cell": w["users"] * SIGNALS + w["signals"],
                "lam": w["lam"][w["signals"]],
                "t": w["ts_ms"],
                "v": w["values"],
            }
        )
        raw_t = pa.table({"r": w["raw"]})
        con.register("events", events)
        con.register("raw", raw_t)

        def aggregate_db() -> Any:
            return con.execute(
                f"SELECT cell, sum(v * exp(lam * (t - {LANDMARK}))) AS acc, sum(v) AS total, count(*) AS n, "
                "min(t) AS first, max(t) AS last FROM events GROUP BY cell"
            ).fetchnumpy()

        # quantile_disc takes the value at index ceil(q n) - 1 of the sorted scores; the other
        # engines (ours, numpy, pandas / polars "higher") take ceil(q (n - 1)): ask for a fraction
        # that lands on that index, so the tiers are the same.
        q1, q2 = ((math.ceil(f * (n_profiles - 1)) + 0.5) / n_profiles for f in FRACTIONS)

        def tier_db() -> Any:
            return con.execute(
                f"WITH s AS (SELECT 100 * greatest(r, 0) / (greatest(r, 0) + {HALF_POINT}) AS score FROM raw), "
                f"c AS (SELECT quantile_disc(score, {min(q1, 1.0)}) AS c1, quantile_disc(score, {min(q2, 1.0)}) AS c2 "
                "FROM s) SELECT score, CASE WHEN score > 0 AND score >= c2 THEN 2 WHEN score > 0 AND score >= c1 "
                "THEN 1 ELSE 0 END AS tier FROM s, c"
            ).fetchnumpy()

        fns = {"aggregate": aggregate_db, "score_tier": tier_db}

        def checksum_db() -> dict[str, Any]:
            a = aggregate_db()
            return _checksum(
                a["acc"].sum(), a["total"].sum(), a["n"].sum(), a["first"].min(), a["last"].max(),
                tier_db()["tier"],
            )  # fmt: skip

        checksum = checksum_db
    else:
        raise SystemExit(f"unknown engine {engine!r}")
    if not engine.startswith("affinity_sdk"):
        for fn in fns.values():
            fn()  # warm-up
    agg_s = _best(fns["aggregate"], repeat, setup)
    tier_s, tier_median_s = _best_median(fns["score_tier"], repeat)
    state_s = _best_median(fns["state_tier"], repeat)[0] if "state_tier" in fns else None
    state_2t_s = _best_median(fns["state_tier_2t"], repeat)[0] if "state_tier_2t" in fns else None
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    return {
        "engine": engine,
        "aggregate_s": agg_s,
        "score_tier_s": tier_s,
        "peak_mb": peak_mb,
        "score_tier_median_s": tier_median_s,
        "state_tier_s": state_s,
        "state_tier_2t_s": state_2t_s,
        "checksum": checksum(),
    }  # fmt: skip (after timing, so it costs no timed work)


def compile_times() -> list[str]:
    """Cold import + first call of the Numba backend, with an empty and with a warm on-disk cache."""
    code = (
        "import time; t0 = time.perf_counter(); import numpy as np; "
        "from affinity_sdk import DecayState, kernels; "
        "s = DecayState([3600.0, 60.0], backend='numba'); "
        "s.add(np.array([0, 1]), np.array([0, 1]), np.array([0, 5]), np.ones(2)); "
        "kernels.score_tiers(s.raw_scores(np.ones(2), 10), 1.0, np.array([0.6, 0.9]), backend='numba'); "
        "print(time.perf_counter() - t0)"
    )
    lines = []
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, NUMBA_CACHE_DIR=cache)
        for label in ("empty cache (compile)", "warm cache"):
            out = subprocess.run(
                [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
            )
            lines.append(f"| {label} | {float(out.stdout.strip()):.2f} s |")
    return lines


def machine() -> str:
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        model = next(
            line.split(":", 1)[1].strip() for line in lscpu.splitlines() if line.startswith("Model name")
        )
    except (OSError, subprocess.CalledProcessError, StopIteration):
        model = platform.processor() or "unknown CPU"
    return f"{model}, {os.cpu_count()} logical cores, Python {platform.python_version()}, {platform.system()}"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--profiles", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--engines", default=",".join(ENGINES))
    parser.add_argument("--compile-times", action="store_true")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(run_engine(args.worker, args.events, args.profiles, args.repeat)))
        return
    env = dict(os.environ, POLARS_MAX_THREADS="1", OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1",
               NUMBA_NUM_THREADS="1")  # fmt: skip
    rows = []
    for engine in args.engines.split(","):
        cmd = [sys.executable, __file__, "--worker", engine, "--events", str(args.events),
               "--profiles", str(args.profiles), "--repeat", str(args.repeat)]  # fmt: skip
        out = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if out.returncode != 0:
            print(f"{engine} failed:\n{out.stderr}", file=sys.stderr)
            continue
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    ours = next((r for r in rows if r["engine"].startswith("affinity_sdk")), rows[0])
    if len(rows) > 1:
        check_agreement([ours] + [r for r in rows if r is not ours])
    print(f"Machine: {machine()}  ")
    print(f"Workload: {args.events:,} events (random order), {args.profiles:,} profiles, {SIGNALS} signals; "
          f"one core; best of {args.repeat}\n")  # fmt: skip
    print(
        "| engine | aggregate events/s | ours / engine | score+tier profiles/s | ours / engine | peak RSS MB "
        "| score+tier median | state -> score+tier |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        state = r.get("state_tier_s")
        print(
            f"| {r['engine']} | {args.events / r['aggregate_s'] / 1e6:.1f}M | "
            f"{r['aggregate_s'] / ours['aggregate_s']:.2f}x | {args.profiles / r['score_tier_s'] / 1e6:.1f}M | "
            f"{r['score_tier_s'] / ours['score_tier_s']:.2f}x | {r['peak_mb']:.0f} | "
            f"{args.profiles / r['score_tier_median_s'] / 1e6:.1f}M | "
            f"{'-' if state is None else f'{args.profiles / state / 1e6:.1f}M'} |"
        )
    for r in rows:
        if r.get("state_tier_2t_s"):
            print(f"\n{r['engine']} state -> score+tier on 2 threads: "
                  f"{args.profiles / r['state_tier_2t_s'] / 1e6:.1f}M profiles/s")  # fmt: skip
    if args.compile_times:
        print("\nNumba backend, cold `import` + first `add` + `score_tiers` (fresh process):\n")
        print("| on-disk cache | time |\n| --- | ---: |")
        print("\n".join(compile_times()))
    if len(rows) > 1:
        print(
            f"\nengines agree ({len(rows)} engines: decayed sums to 1e-9 relative, counts and tiers exactly)"
        )


if __name__ == "__main__":
    main()
