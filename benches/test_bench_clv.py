"""CLV benches: the Gamma-Gamma fit on CDNOW (ours vs lifetimes) and the value table.

Run one-threaded, medians side by side::

    OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 pytest benches/test_bench_clv.py --benchmark-only -q \\
        --benchmark-columns=median,iqr,rounds

``test_gamma_gamma_fit_ratio`` (run with ``-s``) prints the ratio of the two medians from one
process. Correctness is asserted outside the timed region.
"""

from __future__ import annotations

import timeit
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from affinity_sdk.models.bgnbd import RFMSummary, summary_from_batch
from affinity_sdk.models.clv import CustomerValue
from affinity_sdk.models.gamma_gamma import GammaGamma
from affinity_sdk.sim.cdnow import cdnow_orders

CDNOW = Path(__file__).parents[1] / "tests" / "data" / "cdnow" / "cdnow_sample.csv"
CAL_END = int(np.datetime64("1997-09-30", "ms").astype(np.int64))


@pytest.fixture(scope="module")
def cdnow() -> RFMSummary:
    return summary_from_batch(cdnow_orders(CDNOW), CAL_END)


def _repeat_buyers(s: RFMSummary) -> tuple[np.ndarray, np.ndarray]:
    assert s.repeat_monetary is not None
    repeat = s.frequency > 0
    return s.frequency[repeat], s.repeat_monetary[repeat]


def _lifetimes_fit(x: np.ndarray, m: np.ndarray) -> Any:
    # lifetimes 0.11.3 predates pandas 3 and warns on fit; the suite turns warnings into errors.
    from lifetimes import GammaGammaFitter

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return GammaGammaFitter().fit(x, m)


@pytest.mark.benchmark(group="gamma-gamma-fit-cdnow")
def test_gamma_gamma_fit_affinity_sdk(benchmark, cdnow: RFMSummary) -> None:  # type: ignore[no-untyped-def]
    x, m = _repeat_buyers(cdnow)
    model = benchmark(lambda: GammaGamma().fit(x, m))
    assert model.params_.p == pytest.approx(6.2496, abs=5e-4)


@pytest.mark.benchmark(group="gamma-gamma-fit-cdnow")
def test_gamma_gamma_fit_lifetimes(benchmark, cdnow: RFMSummary) -> None:  # type: ignore[no-untyped-def]
    pytest.importorskip("lifetimes")
    x, m = _repeat_buyers(cdnow)
    fitter = benchmark(lambda: _lifetimes_fit(x, m))
    assert float(fitter.params_["p"]) == pytest.approx(6.2496, abs=5e-4)


def test_gamma_gamma_fit_ratio(cdnow: RFMSummary) -> None:
    """Median fit times from one process, printed (no timed assertion)."""
    pytest.importorskip("lifetimes")
    x, m = _repeat_buyers(cdnow)
    ours = float(np.median(timeit.repeat(lambda: GammaGamma().fit(x, m), number=20, repeat=15))) / 20
    theirs = float(np.median(timeit.repeat(lambda: _lifetimes_fit(x, m), number=2, repeat=15))) / 2
    print(
        f"\nGamma-Gamma fit on CDNOW ({len(x)} repeat buyers): affinity_sdk {ours * 1e3:.3f} ms, "
        f"lifetimes {theirs * 1e3:.3f} ms, ratio {theirs / ours:.1f}x"
    )


@pytest.mark.benchmark(group="clv-cdnow")
def test_customer_value_fit_predict(benchmark, cdnow: RFMSummary) -> None:  # type: ignore[no-untyped-def]
    CustomerValue().fit(cdnow)  # compile the BG/NBD kernel outside the timing
    table = benchmark(lambda: CustomerValue().fit(cdnow).predict(cdnow, "39w"))
    assert table.expected_revenue.sum() == pytest.approx(59_932, abs=1)
