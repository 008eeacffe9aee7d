"""pytest-benchmark suite: each kernel × backend × size (see ``conftest.py`` for the workloads).

Run ``pytest benches/ --benchmark-group-by=group,param:size``. Each benchmark warms up once
(JIT compile) and checks its result against the reference outside the timed region; events/s or
profiles/s are stored in ``extra_info``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from conftest import LANDMARK_MS, SIGNALS, workload

from affinity_sdk import kernels

FRACTIONS = np.array([0.6, 0.9])


def _records(w: dict[str, Any], backend: str) -> np.ndarray[Any, np.dtype[np.void]]:
    records = kernels.empty_records(w["n_profiles"], SIGNALS)
    kernels.accumulate(
        records, w["users"], w["signals"], w["ts_ms"], w["values"], LANDMARK_MS, w["lam"], backend=backend
    )
    return records


def _skip_slow_reference(backend: str, size: str) -> None:
    if backend == "reference" and size == "10M":
        pytest.skip("the numpy reference is the oracle, not a contender, at 10M")


@pytest.mark.benchmark(group="accumulate")
def test_accumulate(benchmark: Any, bench_backend: str, size: str) -> None:
    _skip_slow_reference(bench_backend, size)
    w = workload(size)
    box: dict[str, Any] = {}

    def fresh() -> tuple[tuple[Any, ...], dict[str, Any]]:
        box["records"] = kernels.empty_records(w["n_profiles"], SIGNALS)
        args = (box["records"], w["users"], w["signals"], w["ts_ms"], w["values"], LANDMARK_MS, w["lam"])
        return args, {"backend": bench_backend}

    args, kw = fresh()
    kernels.accumulate(*args, **kw)  # warm-up / JIT
    benchmark.pedantic(kernels.accumulate, setup=fresh, rounds=3, iterations=1)
    assert int(box["records"]["count"].sum()) == w["users"].shape[0]
    if size == "1M" and bench_backend != "reference":
        want = _records(w, "reference")
        np.testing.assert_allclose(box["records"]["acc"], want["acc"], rtol=1e-9)
    benchmark.extra_info["events_per_s"] = w["users"].shape[0] / benchmark.stats.stats.min
    benchmark.extra_info["state_bytes_per_profile"] = SIGNALS * kernels.STATE_DTYPE.itemsize


@pytest.mark.benchmark(group="rebase")
def test_rebase(benchmark: Any, bench_backend: str, size: str) -> None:
    w = workload(size)
    records = kernels.empty_records(w["n_profiles"], SIGNALS)
    records["acc"] = 1.0
    factors = np.full(SIGNALS, 1.0)
    kernels.rebase(records, factors, backend=bench_backend)
    benchmark(kernels.rebase, records, factors, backend=bench_backend)
    assert float(records["acc"][0, 0]) == 1.0
    benchmark.extra_info["profiles_per_s"] = w["n_profiles"] / benchmark.stats.stats.min


@pytest.mark.benchmark(group="merge")
def test_merge(benchmark: Any, bench_backend: str, size: str) -> None:
    w = workload(size)
    into = kernels.empty_records(w["n_profiles"], SIGNALS)
    other = kernels.empty_records(w["n_profiles"], SIGNALS)
    kernels.merge(into, other, backend=bench_backend)
    benchmark(kernels.merge, into, other, backend=bench_backend)
    assert int(into["count"].sum()) == 0
    benchmark.extra_info["profiles_per_s"] = w["n_profiles"] / benchmark.stats.stats.min


@pytest.mark.benchmark(group="raw_scores")
def test_raw_scores(benchmark: Any, bench_backend: str, size: str) -> None:
    w = workload(size)
    records = kernels.empty_records(w["n_profiles"], SIGNALS)
    records["acc"] = np.random.default_rng(1).random(records.shape)
    coefs = np.linspace(0.5, 2.0, SIGNALS)
    out = np.empty(w["n_profiles"])
    kernels.raw_scores(records, coefs, out, backend=bench_backend)
    benchmark(kernels.raw_scores, records, coefs, out, backend=bench_backend)
    np.testing.assert_allclose(out, records["acc"] @ coefs, rtol=1e-9)
    benchmark.extra_info["profiles_per_s"] = w["n_profiles"] / benchmark.stats.stats.min


@pytest.mark.benchmark(group="score_tiers")
def test_score_tiers(benchmark: Any, bench_backend: str, size: str) -> None:
    """Raw score -> 0-100 score -> 60 % / 90 % quantile cut-offs -> tiers (the peers' step)."""
    w = workload(size)
    kernels.score_tiers(w["raw"], 5.0, FRACTIONS, backend=bench_backend)
    _scores, tiers, cuts = benchmark(kernels.score_tiers, w["raw"], 5.0, FRACTIONS, backend=bench_backend)
    want = kernels.score_tiers(w["raw"], 5.0, FRACTIONS, backend="reference")
    np.testing.assert_array_equal(tiers, want[1])
    np.testing.assert_array_equal(cuts, want[2])
    benchmark.extra_info["profiles_per_s"] = w["n_profiles"] / benchmark.stats.stats.min


@pytest.mark.benchmark(group="quantile_cutoffs")
def test_quantile_cutoffs(benchmark: Any, bench_backend: str, size: str) -> None:
    """Exact 60 % / 90 % cut-offs of a raw-score array (the step ``Scorer.score`` runs)."""
    w = workload(size)
    kernels.quantile_cutoffs(w["raw"], FRACTIONS, backend=bench_backend)
    cuts = benchmark(kernels.quantile_cutoffs, w["raw"], FRACTIONS, backend=bench_backend)
    np.testing.assert_array_equal(cuts, kernels.quantile_cutoffs(w["raw"], FRACTIONS, backend="reference"))
    benchmark.extra_info["profiles_per_s"] = w["n_profiles"] / benchmark.stats.stats.min


@pytest.mark.benchmark(group="topk_rows")
def test_topk_rows(benchmark: Any, bench_backend: str, size: str) -> None:
    w = workload(size)
    matrix = np.random.default_rng(2).random((w["n_profiles"] // 10, 64))
    kernels.topk_rows(matrix[:10], 5, backend=bench_backend)
    idx, _ = benchmark(kernels.topk_rows, matrix, 5, backend=bench_backend)
    np.testing.assert_array_equal(idx, np.argsort(-matrix, axis=1, kind="stable")[:, :5])
    benchmark.extra_info["rows_per_s"] = matrix.shape[0] / benchmark.stats.stats.min
