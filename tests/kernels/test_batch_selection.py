"""The compiled helper of the batch fold against numpy: ``scored_events``, the rows
``SignalView.fold`` folds."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from affinity_sdk._backends import native
from affinity_sdk.capture.events import EVENT_TYPES
from affinity_sdk.config import default_config
from affinity_sdk.ingest.batch import EventBatch
from affinity_sdk.profile.signals import SignalView

module = native()
pytestmark = pytest.mark.skipif(
    module is None or not hasattr(module, "scored_events"), reason="no compiled extension"
)
N_TYPES = len(EVENT_TYPES)
TIMES = st.integers(-(2**62), 2**62)
REVENUES = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.just(-0.0), st.just(float("nan")))


def numpy_selection(
    event_type: np.ndarray, user: np.ndarray, ts: np.ndarray, revenue: np.ndarray,
    table: np.ndarray, decays: np.ndarray,
) -> tuple[np.ndarray, ...]:  # fmt: skip
    signal = table[event_type]
    keep = signal >= 0
    signal = signal[keep]
    values = np.where(decays[signal], np.where(np.isnan(revenue[keep]), 0.0, revenue[keep]), 1.0)
    return user[keep], signal, ts[keep], values


@settings(max_examples=150, deadline=None)
@given(
    data=st.data(),
    n=st.integers(0, 40),
    n_signals=st.integers(1, 6),
)
def test_scored_events_selects_what_numpy_selects(data: st.DataObject, n: int, n_signals: int) -> None:
    table = np.array(data.draw(st.lists(st.integers(-1, n_signals - 1), min_size=N_TYPES, max_size=N_TYPES)))
    decays = np.array(data.draw(st.lists(st.booleans(), min_size=n_signals, max_size=n_signals)))
    event_type = np.array(data.draw(st.lists(st.integers(0, N_TYPES - 1), min_size=n, max_size=n)), np.uint8)
    user = np.array(data.draw(st.lists(st.integers(0, 2**62), min_size=n, max_size=n)), np.int64)
    ts = np.array(data.draw(st.lists(TIMES, min_size=n, max_size=n)), np.int64)
    revenue = np.array(data.draw(st.lists(REVENUES, min_size=n, max_size=n)), np.float64)
    got = module.scored_events(event_type, user, ts, revenue, table.astype(np.int64), decays.astype(np.bool_))
    want = numpy_selection(event_type, user, ts, revenue, table, decays)
    for g, w in zip(got, want, strict=True):
        assert g.dtype == w.dtype
        assert g.tobytes() == w.tobytes()  # bitwise: -0.0 and inf kept as they are


def test_scored_events_refuses_codes_outside_its_tables() -> None:
    one = np.zeros(1, np.int64)
    table = np.zeros(N_TYPES, np.int64)
    with pytest.raises(ValueError, match="event_type"):
        module.scored_events(np.array([N_TYPES], np.uint8), one, one, np.zeros(1), table, np.ones(1, bool))
    with pytest.raises(ValueError, match="signal_of_type"):
        module.scored_events(np.zeros(1, np.uint8), one, one, np.zeros(1), table + 1, np.ones(1, bool))
    with pytest.raises(ValueError, match="length"):
        module.scored_events(np.zeros(2, np.uint8), one, one, np.zeros(1), table, np.ones(1, bool))


def test_signal_view_folds_the_same_state_either_way() -> None:
    from affinity_sdk.sim.shop import simulate_shop

    batch: EventBatch = simulate_shop(300, weeks=4, horizon_weeks=0, seed=5).batch
    compiled = SignalView(default_config(), backend="cpp")
    numpy_path = SignalView(default_config(), backend="cpp")
    numpy_path._scored_events = None
    assert compiled.fold(batch) == numpy_path.fold(batch) > 0
    assert compiled.state.acc.tobytes() == numpy_path.state.acc.tobytes()
    assert compiled.state.records.tobytes() == numpy_path.state.records.tobytes()
