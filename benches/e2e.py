"""End to end: ``affinity score`` on an NDJSON file against the same job in DuckDB and polars.

The job, for every engine: read seeded NDJSON events (``--events``, default 3M, over ``--users``
users; both timestamp forms the schema accepts, integer epoch ms and RFC 3339 strings; event types
that feed no signal; about 0.5 % replayed lines with a repeated ``event_id``), drop the repeats
(``event_id`` dedupe), and write one CSV row per user: the decayed value of each signal of the
built-in config at ``NOW``, the raw score ``Σ_s w_s D_s``, the 0-100 score ``100 r / (r + h)``
and the quantile tier (``config.toml``'s 60 % / 90 %; cut-off = the ``k``-th largest raw score,
``k = max(1, ceil(n (1 - q)))``, and a raw score must be ``> 0`` to leave Low).

Every engine runs as a whole process (interpreter start, imports, reading, writing), one at a time,
alternating over ``--repeat`` rounds; wall time is measured around the process and peak RSS with
``os.wait4`` (that process's own ``ru_maxrss``). affinity, DuckDB and polars run with one thread and
with all threads. After the timed rounds the CSVs are compared: same users, raw scores to 1e-9 relative,
same tiers.

Run ``python benches/e2e.py`` (3M events: about 500 MB of NDJSON, cached in ``--dir``) or
``python benches/e2e.py --events 300000 --users 30000 --repeat 3`` for a quick look;
``--baseline FOLDER`` also runs the ``affinity_sdk`` package found in ``FOLDER`` (a copy from
before a change) in the same rounds, for before -> after figures; ``--repeat 0`` only writes the
events file.
"""

from __future__ import annotations

import argparse
import compileall
import importlib.util
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

NOW_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z: every event is before it
SPAN_MS = 90 * 86_400_000
DUPLICATE_SHARE = 0.005

#: The built-in config (affinity_sdk/data/default_config.toml): signal -> (weight, half-life in days).
SIGNALS: dict[str, tuple[float, float]] = {
    "product_viewed": (1.0, 3.0),
    "product_added_to_wishlist": (2.0, 14.0),
    "product_added": (4.0, 7.0),
    "checkout_started": (6.0, 3.0),
    "order_completed": (10.0, 30.0),
    "email_clicked": (1.5, 7.0),
    "app_opened": (0.5, 7.0),
    "unsubscribed": (-3.0, 60.0),
}
HALF_POINT = 10.0
FRACTIONS = (0.6, 0.9)
#: Event mix: the signals above and four types that feed none.
EVENT_MIX: dict[str, float] = {
    "product_viewed": 0.40,
    "page_viewed": 0.15,
    "products_searched": 0.08,
    "product_added": 0.08,
    "cart_viewed": 0.05,
    "product_added_to_wishlist": 0.04,
    "email_opened": 0.05,
    "email_clicked": 0.04,
    "checkout_started": 0.03,
    "order_completed": 0.03,
    "app_opened": 0.045,
    "unsubscribed": 0.005,
}
ENGINES = ("affinity", "affinity-1", "duckdb-1", "duckdb-all", "polars-1", "polars-all")


# --- the workload ---------------------------------------------------------------------------------
def generate(path: Path, n_events: int, n_users: int, seed: int = 7) -> None:
    """Write ``n_events`` seeded NDJSON events (plus replayed duplicates) to ``path``."""
    rng = np.random.default_rng(seed)
    types = np.array(list(EVENT_MIX))
    p = np.array(list(EVENT_MIX.values()))
    kind = rng.choice(len(types), size=n_events, p=p / p.sum())
    users = rng.integers(0, n_users, n_events)
    ts = NOW_MS - SPAN_MS + rng.integers(0, SPAN_MS, n_events)
    iso = rng.random(n_events) < 0.5
    product = rng.integers(0, 20_000, n_events)
    price = np.round(rng.lognormal(3.0, 1.0, n_events), 2)
    qty = rng.integers(1, 4, n_events)
    campaign = rng.integers(0, 50, n_events)
    replay = rng.random(n_events) < DUPLICATE_SHARE
    with open(path, "w", encoding="utf-8") as fh:
        lines: list[str] = []
        for i in range(n_events):
            t = types[kind[i]]
            stamp = _iso(int(ts[i])) if iso[i] else str(int(ts[i]))
            head = f'{{"type":"{t}","user_id":"user-{users[i]:07d}","timestamp":{stamp},"event_id":"e{i:09d}"'
            pid = int(product[i])
            prod = (
                f'{{"product_id":"p{pid:05d}","category":"cat-{pid % 97}","brand":"brand-{pid % 211}",'
                f'"price":{price[i]},"quantity":{qty[i]}}}'
            )
            if t in ("product_viewed", "product_added", "product_added_to_wishlist"):
                body = f',"product":{prod}'
            elif t == "order_completed":
                body = f',"order_id":"o{i}","products":[{prod}],"revenue":{round(price[i] * qty[i], 2)},"currency":"EUR"'
            elif t == "checkout_started":
                body = f',"revenue":{round(price[i] * qty[i], 2)}'
            elif t in ("email_clicked", "email_opened", "unsubscribed"):
                body = f',"campaign_id":"camp-{campaign[i]}"'
            elif t == "page_viewed":
                body = f',"url":"https://shop.example/p/{pid}"'
            elif t == "products_searched":
                body = f',"query":"q{pid % 1000}"'
            else:
                body = ""
            line = head + body + ',"channel":"web"}\n' if t == "page_viewed" else head + body + "}\n"
            lines.append(line)
            if replay[i]:
                lines.append(line)
            if len(lines) >= 100_000:
                fh.writelines(lines)
                lines.clear()
        fh.writelines(lines)


def _iso(ms: int) -> str:
    sec, milli = divmod(ms, 1000)
    return '"' + time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec)) + f'.{milli:03d}Z"'


def workload(folder: Path, n_events: int, n_users: int) -> tuple[Path, Path]:
    """The cached events file and a config file naming ``NOW``'s job (the built-in config)."""
    folder.mkdir(parents=True, exist_ok=True)
    events = folder / f"events-{n_events}-{n_users}.ndjson"
    if not events.exists():
        start = time.perf_counter()
        partial = events.with_suffix(".partial")
        generate(partial, n_events, n_users)
        partial.rename(events)
        print(
            f"generated {events} ({events.stat().st_size / 1e6:.0f} MB) in {time.perf_counter() - start:.0f}s"
        )
    return events, folder


# --- the peers' programs (run as `python -c`) -------------------------------------------------------
def _lam_table() -> str:
    return ", ".join(
        f"('{s}', {w!r}, {math.log(2.0) / (h * 86_400_000.0)!r})" for s, (w, h) in SIGNALS.items()
    )


def duckdb_job(inputs: str, out: Path, now_ms: int, threads: int | None, keep: str = "") -> str:
    """A DuckDB program scoring the events of ``inputs`` (SQL common table expressions ending in
    ``ev(type, user_id, t)``) at ``now_ms`` and writing the job's CSV; ``keep`` is an optional
    ``WHERE`` on the events scored."""
    per_signal = ", ".join(f"coalesce(sum(d) FILTER (WHERE e.type = '{s}'), 0.0) AS {s}" for s in SIGNALS)
    cols = ", ".join(SIGNALS)
    k = [f"greatest(1, ceil(n * (1 - {q!r}) - 1e-9))" for q in FRACTIONS]
    sql = f"""
COPY (
WITH {inputs}, w(type, weight, lam) AS (VALUES {_lam_table()}),
e AS (
  SELECT ev.user_id, ev.type, w.weight, exp(-w.lam * ({now_ms} - ev.t)) AS d
  FROM ev LEFT JOIN w USING (type) {keep}
),
u AS (SELECT user_id, coalesce(sum(weight * d), 0.0) AS raw_score, {per_signal} FROM e GROUP BY user_id),
r AS (SELECT *, row_number() OVER (ORDER BY raw_score DESC) AS rk, count(*) OVER () AS n FROM u),
c AS (SELECT max(raw_score) FILTER (WHERE rk = {k[0]}) AS c1, max(raw_score) FILTER (WHERE rk = {k[1]}) AS c2 FROM r)
SELECT user_id, raw_score, 100 * greatest(raw_score, 0) / (greatest(raw_score, 0) + {HALF_POINT}) AS score,
  CASE WHEN raw_score > 0 AND raw_score >= c2 THEN 'high' WHEN raw_score > 0 AND raw_score >= c1 THEN 'medium'
       ELSE 'low' END AS tier, {cols}
FROM r, c
) TO '{out}' (HEADER, DELIMITER ',')
"""
    setting = f"con.execute('SET threads={threads}')\n" if threads else ""
    return f"import duckdb\ncon = duckdb.connect()\n{setting}con.execute({sql!r})\n"


def duckdb_program(events: Path, out: Path, threads: int | None) -> str:
    """The job as one DuckDB query (reads only the four fields it needs)."""
    inputs = f"""raw AS (
  SELECT type, user_id, timestamp AS ts, event_id FROM read_json('{events}', format='newline_delimited',
    columns={{type: 'VARCHAR', user_id: 'VARCHAR', timestamp: 'VARCHAR', event_id: 'VARCHAR'}})
), ev AS (
  SELECT DISTINCT ON (event_id) type, user_id,
    coalesce(TRY_CAST(ts AS BIGINT), epoch_ms(CAST(replace(ts, 'Z', '') AS TIMESTAMP))) AS t
  FROM raw
)"""
    return duckdb_job(inputs, out, NOW_MS, threads)


def polars_program(events: Path, out: Path) -> str:
    """The job with polars' lazy API (thread count from ``POLARS_MAX_THREADS``)."""
    weights = {s: w for s, (w, _) in SIGNALS.items()}
    lams = {s: math.log(2.0) / (h * 86_400_000.0) for s, (_, h) in SIGNALS.items()}
    k = [f"max(1, math.ceil(n * (1 - {q!r}) - 1e-9))" for q in FRACTIONS]
    return f"""
import math
import polars as pl
schema = {{"type": pl.String, "user_id": pl.String, "timestamp": pl.String, "event_id": pl.String}}
ev = pl.scan_ndjson({str(events)!r}, schema=schema).unique("event_id", keep="any", maintain_order=False)
ts = pl.col("timestamp")
t = pl.coalesce(
    ts.cast(pl.Int64, strict=False),
    ts.str.strptime(pl.Datetime("ms", "UTC"), "%Y-%m-%dT%H:%M:%S%.fZ", strict=False).dt.epoch("ms"),
)
weights, lams = {weights!r}, {lams!r}
w = pl.col("type").replace_strict(weights, default=0.0, return_dtype=pl.Float64)
lam = pl.col("type").replace_strict(lams, default=0.0, return_dtype=pl.Float64)
d = (-lam * ({NOW_MS} - t).cast(pl.Float64)).exp()
aggs = [(w * d).sum().alias("raw_score")] + [
    d.filter(pl.col("type") == s).sum().alias(s) for s in weights
]
u = ev.group_by("user_id").agg(aggs).collect()
n = u.height
raw = u["raw_score"].sort(descending=True)
c1, c2 = raw[{k[0]} - 1], raw[{k[1]} - 1]
r = pl.col("raw_score")
u = u.with_columns(
    (100 * r.clip(0) / (r.clip(0) + {HALF_POINT})).alias("score"),
    pl.when((r > 0) & (r >= c2)).then(pl.lit("high")).when((r > 0) & (r >= c1)).then(pl.lit("medium"))
    .otherwise(pl.lit("low")).alias("tier"),
).select(["user_id", "raw_score", "score", "tier", *weights])
u.write_csv({str(out)!r})
"""


def compile_bytecode(engines: list[str]) -> None:
    """Byte-compile the ``affinity_sdk`` packages the rounds run, as ``pip install`` does for an
    installed package (and did for duckdb and polars): an editable checkout run with
    ``PYTHONDONTWRITEBYTECODE`` would otherwise compile every module in every timed process."""
    spec = importlib.util.find_spec("affinity_sdk")
    folders = [Path(spec.origin).parent] if spec is not None and spec.origin else []
    folders += [Path(e.split("@", 1)[1]) / "affinity_sdk" for e in engines if e.startswith("affinity@")]
    for folder in folders:
        compileall.compile_dir(str(folder), quiet=1)


def command(engine: str, events: Path, out: Path) -> tuple[list[str], dict[str, str]]:
    env = dict(os.environ)
    if engine in ("affinity", "affinity-1") or engine.startswith("affinity@"):
        if engine.startswith("affinity@"):  # another copy of the package, e.g. the one before a change
            env["PYTHONPATH"] = engine.split("@", 1)[1]
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(NOW_MS // 1000))
        argv = [sys.executable, "-m", "affinity_sdk", "score", str(events), "--out", str(out), "--now", now]
        # "affinity": every core (the default); "affinity-1": one thread reads and folds
        return argv + (["--threads", "1"] if engine == "affinity-1" else []), env
    if engine.startswith("duckdb"):
        threads = 1 if engine.endswith("-1") else None
        return [sys.executable, "-c", duckdb_program(events, out, threads)], env
    if engine.startswith("polars"):
        if engine.endswith("-1"):
            env["POLARS_MAX_THREADS"] = "1"
        else:
            env.pop("POLARS_MAX_THREADS", None)
        return [sys.executable, "-c", polars_program(events, out)], env
    raise SystemExit(f"unknown engine {engine!r}")


def run_once(engine: str, events: Path, out: Path) -> tuple[float, float, float]:
    """Wall seconds, peak RSS (MB) and CPU seconds (user + system) of one whole process of ``engine``."""
    argv, env = command(engine, events, out)
    start = time.perf_counter()
    # From the events' folder: ``python -m`` puts the working directory first on sys.path, so run
    # from a checkout it would import that checkout's package ahead of a baseline's PYTHONPATH.
    proc = subprocess.Popen(
        argv, env=env, cwd=events.parent, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    err = proc.stderr.read().decode() if proc.stderr else ""
    if proc.returncode != 0:
        raise SystemExit(f"{engine} failed ({proc.returncode}):\n{err}")
    return wall, usage.ru_maxrss / 1024.0, usage.ru_utime + usage.ru_stime


# --- agreement --------------------------------------------------------------------------------------
def check_agreement(outputs: dict[str, Path], rel: float = 1e-9) -> None:
    """Every engine's CSV has the same users, raw scores (to ``rel``) and tiers as ours."""
    import polars as pl

    def load(path: Path) -> Any:
        return pl.read_csv(path, columns=["user_id", "raw_score", "tier"]).sort("user_id")

    ref = load(outputs["affinity"])
    for engine, path in outputs.items():
        if engine == "affinity":
            continue
        other = load(path)
        if other["user_id"].to_list() != ref["user_id"].to_list():
            raise SystemExit(f"{engine}: not the same users as affinity ({other.height} vs {ref.height})")
        a, b = ref["raw_score"].to_numpy(), other["raw_score"].to_numpy()
        if not np.allclose(b, a, rtol=rel, atol=1e-12):
            worst = int(np.argmax(np.abs(a - b)))
            raise SystemExit(
                f"{engine}: raw score of {ref['user_id'][worst]} is {b[worst]!r}, ours {a[worst]!r}"
            )
        differ = int((ref["tier"] != other["tier"]).sum())
        if differ:
            raise SystemExit(f"{engine}: {differ} users in another tier than ours")


# --- main -------------------------------------------------------------------------------------------
def machine() -> str:
    return f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"


def warm_page_cache(path: Path) -> None:
    """Read ``path`` once, so the first round's first engine does not read it from disk (one run
    took 6.89 s against ~1 s for the others after other jobs had pushed the file out of memory)."""
    with open(path, "rb") as fh:
        while fh.read(16 << 20):
            pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=3_000_000)
    parser.add_argument("--users", type=int, default=300_000)
    parser.add_argument("--repeat", type=int, default=3, help="rounds; engines alternate in each")
    parser.add_argument(
        "--engines", default=",".join(ENGINES), help="comma-separated subset of " + ", ".join(ENGINES)
    )
    parser.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()) / "affinity-e2e")
    parser.add_argument("--no-check", action="store_true", help="skip the agreement check")
    parser.add_argument(
        "--baseline",
        type=Path,
        default=None,
        help="a folder holding another affinity_sdk package (e.g. a copy from before a change): "
        "run it too, as engine affinity@FOLDER",
    )
    args = parser.parse_args()
    engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    if args.baseline is not None:
        engines.insert(1, f"affinity@{args.baseline}")
    events, folder = workload(args.dir, args.events, args.users)
    if args.repeat < 1:  # generate the file only
        return
    outputs = {e: folder / f"out-{_label(e).replace(' ', '-')}.csv" for e in engines}
    compile_bytecode(engines)
    warm_page_cache(events)
    walls: dict[str, list[float]] = {e: [] for e in engines}
    peaks: dict[str, list[float]] = {e: [] for e in engines}
    cpus: dict[str, list[float]] = {e: [] for e in engines}
    for r in range(args.repeat):
        order = engines if r % 2 == 0 else engines[::-1]
        for engine in order:
            wall, peak, cpu = run_once(engine, events, outputs[engine])
            walls[engine].append(wall)
            peaks[engine].append(peak)
            cpus[engine].append(cpu)
            print(
                f"round {r + 1} {_label(engine):<19} {wall:6.2f} s {peak:7.0f} MB {cpu:6.2f} s CPU",
                file=sys.stderr,
            )
    if args.repeat and not args.no_check and "affinity" in engines:
        check_agreement(outputs)
        print("engines agree: same users, raw scores to 1e-9, same tiers", file=sys.stderr)
    size_mb = events.stat().st_size / 1e6
    print(f"\n{args.events:,} events ({size_mb:.0f} MB NDJSON), {args.users:,} users; {machine()}; "
          f"median of {args.repeat} alternated runs\n")  # fmt: skip
    base = statistics.median(walls["affinity"]) if "affinity" in engines else None
    print("| engine | wall s (median) | MB/s | peak RSS MB | CPU s (median) | wall / affinity |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for e in engines:
        wall = statistics.median(walls[e])
        ratio = f"{wall / base:.2f}" if base else "-"
        cpu = statistics.median(cpus[e])
        print(
            f"| {_label(e)} | {wall:.2f} | {size_mb / wall:.0f} | {max(peaks[e]):.0f} | {cpu:.2f} | {ratio} |"
        )


def _label(engine: str) -> str:
    return "affinity(baseline)" if engine.startswith("affinity@") else engine


if __name__ == "__main__":
    main()
