"""Propensity benches: BG/NBD fit on CDNOW (vs lifetimes), logistic fit, scoring at 1M profiles.

Run: ``pytest benches/test_bench_propensity.py --benchmark-only -q``. Correctness is asserted
outside the timed region; ratios come from the same run.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from affinity_sdk.models.bgnbd import BGNBD, RFMSummary, summary_from_batch
from affinity_sdk.models.propensity import FeatureSpec, PropensityModel, TrainingSet, feature_names
from affinity_sdk.sim.cdnow import cdnow_orders

CDNOW = Path(__file__).parents[1] / "tests" / "data" / "cdnow" / "cdnow_sample.csv"
CAL_END = int(np.datetime64("1997-09-30", "ms").astype(np.int64))


@pytest.fixture(scope="module")
def cdnow() -> RFMSummary:
    return summary_from_batch(cdnow_orders(CDNOW), CAL_END)


@pytest.mark.benchmark(group="bgnbd-fit-cdnow")
def test_bgnbd_fit_affinity_sdk(benchmark, cdnow: RFMSummary) -> None:  # type: ignore[no-untyped-def]
    BGNBD().fit(cdnow.frequency, cdnow.recency, cdnow.T)  # compile outside the timing
    model = benchmark(lambda: BGNBD().fit(cdnow.frequency, cdnow.recency, cdnow.T))
    assert round(model.params_.r, 3) == 0.243 and round(model.params_.b, 3) == 2.426


@pytest.mark.benchmark(group="bgnbd-fit-cdnow")
@pytest.mark.skipif(importlib.util.find_spec("lifetimes") is None, reason="lifetimes not installed")
def test_bgnbd_fit_lifetimes(benchmark, cdnow: RFMSummary) -> None:  # type: ignore[no-untyped-def]
    import warnings

    import pandas as pd

    # lifetimes 0.11.3 predates pandas 3 and warns on import and fit; the suite turns warnings
    # into errors, so silence them for the peer only.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from lifetimes import BetaGeoFitter

        freq, rec, T = (pd.Series(a) for a in (cdnow.frequency, cdnow.recency, cdnow.T))
        fitter = benchmark(lambda: BetaGeoFitter().fit(freq, rec, T))
    assert round(float(fitter.params_["r"]), 3) == 0.243


def synthetic_training(n: int, seed: int = 0) -> TrainingSet:
    rng = np.random.default_rng(seed)
    spec = FeatureSpec()
    names = feature_names(spec)
    X = rng.normal(size=(n, len(names)))
    w = rng.normal(size=len(names)) * 0.3
    y = rng.random(n) < 1 / (1 + np.exp(-(X @ w - 1.0)))
    return TrainingSet(
        X=X, y=y, user=np.arange(n), cutoff_ms=np.zeros(n, np.int64), feature_names=names,
        outcome="purchase", horizon_ms=14 * 86_400_000, spec=spec,
    )  # fmt: skip


@pytest.mark.benchmark(group="propensity-fit")
def test_logistic_fit_100k(benchmark) -> None:  # type: ignore[no-untyped-def]
    data = synthetic_training(100_000)
    model = benchmark.pedantic(lambda: PropensityModel.fit(data, calibration="auto"), rounds=3, iterations=1)
    assert model.calibrator_.kind in ("platt", "isotonic")


@pytest.mark.benchmark(group="propensity-score-1M")
@pytest.mark.parametrize("calibration", ["platt", "isotonic"])
def test_score_1m_profiles(benchmark, calibration: str) -> None:  # type: ignore[no-untyped-def]
    model = PropensityModel.fit(synthetic_training(50_000), calibration=calibration)  # type: ignore[arg-type]
    X = np.random.default_rng(1).normal(size=(1_000_000, len(model.feature_names)))
    p = model.predict_proba(X)  # compile outside the timing
    benchmark(model.predict_proba, X)
    assert p.shape == (1_000_000,) and np.all((p >= 0) & (p <= 1))
