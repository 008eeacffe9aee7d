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


State = tuple[np.ndarray[Any, np.dtype[np.float64]], np.ndarray[Any, np.dtype[np.void]]]


def _empty(n_profiles: int) -> State:
    return np.zeros((n_profiles, SIGNALS)), kernels.empty_records(n_profiles, SIGNALS)


def _state(w: dict[str, Any], backend: str) -> State:
    state = _empty(w["n_profiles"])
    kernels.accumulate(
        *state, w["users"], w["signals"], w["ts_ms"], w["values"], LANDMARK_MS, w["lam"], backend=backend
    )
    return state


def _skip_slow_reference(backend: str, size: str) -> None:
    if backend == "reference" and size == "10M":
        pytest.skip("the numpy reference is the oracle, not a contender, at 10M")


@pytest.mark.benchmark(group="accumulate")
def test_accumulate(benchmark: Any, bench_backend: str, size: str) -> None:
    _skip_slow_reference(bench_backend, size)
    w = workload(size)
    box: dict[str, Any] = {}

    def fresh() -> tuple[tuple[Any, ...], dict[str, Any]]:
        box["acc"], box["records"] = _empty(w["n_profiles"])
        args = (
            box["acc"],
            box["records"],
            w["users"],
            w["signals"],
            w["ts_ms"],
            w["values"],
            LANDMARK_MS,
            w["lam"],
        )
        return args, {"backend": bench_backend}

    args, kw = fresh()
    kernels.accumulate(*args, **kw)  # warm-up / JIT
    benchmark.pedantic(kernels.accumulate, setup=fresh, rounds=3, iterations=1)
    assert int(box["records"]["count"].sum()) == w["users"].shape[0]
    if size == "1M" and bench_backend != "reference":
        want_acc, _ = _state(w, "reference")
        np.testing.assert_allclose(box["acc"], want_acc, rtol=1e-9)
    benchmark.extra_info["events_per_s"] = w["users"].shape[0] / benchmark.stats.stats.min
    benchmark.extra_info["state_bytes_per_profile"] = SIGNALS * (kernels.STATE_DTYPE.itemsize + 8)


@pytest.mark.benchmark(group="rebase")
def test_rebase(benchmark: Any, bench_backend: str, size: str) -> None:
    w = workload(size)
    acc = np.ones((w["n_profiles"], SIGNALS))
    factors = np.full(SIGNALS, 1.0)
    kernels.rebase(acc, factors, backend=bench_backend)
    benchmark(kernels.rebase, acc, factors, backend=bench_backend)
    assert float(acc[0, 0]) == 1.0
    benchmark.extra_info["profiles_per_s"] = w["n_profiles"] / benchmark.stats.stats.min


@pytest.mark.benchmark(group="merge")
def test_merge(benchmark: Any, bench_backend: str, size: str) -> None:
    w = workload(size)
    into, other = _empty(w["n_profiles"]), _empty(w["n_profiles"])
    kernels.merge(*into, *other, backend=bench_backend)
    benchmark(kernels.merge, *into, *other, backend=bench_backend)
    assert int(into[1]["count"].sum()) == 0
    benchmark.extra_info["profiles_per_s"] = w["n_profiles"] / benchmark.stats.stats.min


@pytest.mark.benchmark(group="raw_scores")
@pytest.mark.parametrize("threads", [1, 2])
def test_raw_scores(benchmark: Any, bench_backend: str, size: str, threads: int) -> None:
    if threads > 1 and bench_backend != "cpp":
        pytest.skip("only the C++ backend splits the raw scores over threads")
    w = workload(size)
    acc = np.random.default_rng(1).random((w["n_profiles"], SIGNALS))
    coefs = np.linspace(0.5, 2.0, SIGNALS)
    out = np.empty(w["n_profiles"])
    kernels.raw_scores(acc, coefs, out, threads=threads, backend=bench_backend)
    benchmark(kernels.raw_scores, acc, coefs, out, threads=threads, backend=bench_backend)
    np.testing.assert_allclose(out, acc @ coefs, rtol=1e-9)
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
