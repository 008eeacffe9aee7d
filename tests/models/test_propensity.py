"""Propensity: no leakage, labels, logistic fit, calibration, tiers, persistence, CDNOW split."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import msgspec
import numpy as np
import pytest

from affinity_sdk.activate.evaluate import expected_calibration_error, roc_auc
from affinity_sdk.capture.events import AppInstalled, AppUninstalled, OrderCompleted, PageViewed
from affinity_sdk.errors import ConfigError, StateError
from affinity_sdk.ingest.batch import EventBatch
from affinity_sdk.models import propensity as P
from affinity_sdk.sim.cdnow import cdnow_orders
from affinity_sdk.sim.shop import simulate_shop

DAY = 86_400_000
WEEK = 7 * DAY
CDNOW = Path(__file__).parents[1] / "data" / "cdnow" / "cdnow_sample.csv"


@pytest.fixture(scope="module")
def sim():  # type: ignore[no-untyped-def]
    return simulate_shop(3000, weeks=10, horizon_weeks=2, seed=7)


def subset(batch: EventBatch, keep: np.ndarray) -> EventBatch:
    """The events where ``keep`` holds, with their item rows (same interners)."""
    new_index = np.cumsum(keep) - 1
    items = keep[batch.item_event]
    cols = {k: getattr(batch, k)[keep] for k in ("user", "event_type", "ts_ms", "channel", "revenue")}
    cols |= {
        k: getattr(batch, k)[keep] for k in ("discount", "has_coupon", "campaign", "event_id", "consent")
    }
    item_cols = {
        k: getattr(batch, k)[items]
        for k in (
            "item_product",
            "item_category",
            "item_brand",
            "item_price",
            "item_discount",
            "item_quantity",
        )
    }
    return EventBatch(
        **cols, item_event=new_index[batch.item_event[items]], **item_cols, interners=batch.interners
    )


def test_features_ignore_everything_after_the_cutoff(sim) -> None:  # type: ignore[no-untyped-def]
    cutoff = sim.end_ms - 3 * WEEK
    full = P.profile_features(sim.batch, cutoff)
    # Drop every later event, or shift them all further into the future: features stay identical.
    trimmed = P.profile_features(subset(sim.batch, sim.batch.ts_ms <= cutoff), cutoff, n_profiles=3000)
    np.testing.assert_array_equal(full.X, trimmed.X)
    moved = replace(
        sim.batch, ts_ms=np.where(sim.batch.ts_ms > cutoff, sim.batch.ts_ms + 9 * WEEK, sim.batch.ts_ms)
    )
    np.testing.assert_array_equal(full.X, P.profile_features(moved, cutoff).X)
    # ... while moving an earlier event does change them (the test can fail).
    assert not np.array_equal(full.X, P.profile_features(sim.batch, cutoff - WEEK).X)


def test_training_set_stacks_cutoffs_without_leakage(sim) -> None:  # type: ignore[no-untyped-def]
    cutoffs = [sim.end_ms - 4 * WEEK, sim.end_ms - 2 * WEEK]
    data = P.build_training_set(sim.batch, "purchase", cutoffs, "2w")
    assert set(np.unique(data.cutoff_ms).tolist()) == set(cutoffs)
    assert data.window_ms == (cutoffs[0], sim.end_ms)
    for c in cutoffs:
        rows = data.cutoff_ms == c
        feats = P.profile_features(subset(sim.batch, sim.batch.ts_ms <= c), c, n_profiles=3000)
        np.testing.assert_array_equal(data.X[rows], feats.X[data.user[rows]])


def test_outcome_labels_hand_case() -> None:
    events = [
        PageViewed(user_id="a", timestamp=0),
        OrderCompleted(user_id="a", timestamp=DAY, order_id="1", products=[], revenue=5.0),
        AppInstalled(user_id="a", timestamp=DAY),
        PageViewed(user_id="b", timestamp=2 * DAY),
        OrderCompleted(user_id="a", timestamp=12 * DAY, order_id="2", products=[], revenue=5.0),
        OrderCompleted(user_id="b", timestamp=11 * DAY, order_id="3", products=[], revenue=5.0),
        AppUninstalled(user_id="a", timestamp=13 * DAY),
        PageViewed(user_id="c", timestamp=12 * DAY),  # new in the horizon: never eligible
        OrderCompleted(user_id="b", timestamp=30 * DAY, order_id="4", products=[], revenue=5.0),  # after H
    ]
    batch = EventBatch.from_events(events)
    T = 10 * DAY

    def lab(outcome: P.Outcome) -> tuple[list[bool], list[bool]]:
        eligible, y = P.outcome_labels(batch, outcome, T, "7d")
        return eligible.tolist(), y.tolist()

    assert lab("purchase") == ([True, True, False], [True, True, False])
    assert lab("repurchase") == ([True, False, False], [True, True, False])
    assert lab("churn") == ([True, True, False], [False, False, False])
    assert lab("uninstall") == ([True, False, False], [True, False, False])
    assert lab("unsubscribe")[1] == [False, False, False]
    with pytest.raises(ConfigError, match="unknown outcome"):
        P.outcome_labels(batch, "bogus", T, "7d")  # type: ignore[arg-type]


def test_logistic_recovers_planted_coefficients() -> None:
    rng = np.random.default_rng(4)
    n, f = 40_000, 3
    X = rng.normal(size=(n, f)) * np.array([1.0, 2.0, 0.5]) + 3.0
    true_w = np.array([1.0, -0.25, 4.0])  # per standard deviation: 1, -0.5, 2
    y = rng.random(n) < 1 / (1 + np.exp(-(X - 3.0) @ true_w + 0.3))
    spec = P.FeatureSpec()
    names = tuple(f"x{i}" for i in range(f))
    data = P.TrainingSet(
        X=X, y=y, user=np.arange(n), cutoff_ms=np.zeros(n, np.int64), feature_names=names,
        outcome="purchase", horizon_ms=WEEK, spec=spec,
    )  # fmt: skip
    model = P.PropensityModel.fit(data, l2=1e-6, calibration="none")
    np.testing.assert_allclose(model.coef_ / model.scale_, true_w, rtol=0.06)
    # The compiled scorer equals the plain formula.
    z = model.intercept_ + ((X - model.mean_) / model.scale_) @ model.coef_
    np.testing.assert_allclose(model.predict_proba(X), 1 / (1 + np.exp(-z)), rtol=1e-12)
    assert next(iter(model.explain())) == "x2"


def test_fit_beats_chance_and_calibrates_on_simulator(sim) -> None:  # type: ignore[no-untyped-def]
    cutoffs = [sim.end_ms - 2 * WEEK - k * WEEK for k in range(3)]
    data = P.build_training_set(sim.batch, "churn", cutoffs, "2w")
    model = P.PropensityModel.fit(data)
    assert model.calibrator_.kind in ("platt", "isotonic")
    p, seen = model.score_batch(sim.batch, sim.end_ms)
    y, truth = sim.truth.y_churn[seen], sim.truth.p_churn[seen]
    assert roc_auc(y, p[seen]) > 0.85
    assert roc_auc(y, p[seen]) <= roc_auc(y, truth) + 0.02  # the oracle is (nearly) an upper bound
    assert expected_calibration_error(y, p[seen]) < 0.05


def test_refit_warm_start_matches_a_fresh_fit(sim) -> None:  # type: ignore[no-untyped-def]
    old = P.build_training_set(sim.batch, "purchase", [sim.end_ms - 4 * WEEK], "2w")
    new = P.build_training_set(sim.batch, "purchase", [sim.end_ms - 2 * WEEK], "2w")
    model = P.PropensityModel.fit(old, calibration="none", config_fingerprint="f1")
    first = model.predict_proba(new.X)
    model.refit(new, calibration="none")
    fresh = P.PropensityModel.fit(new, calibration="none")
    # The objective is convex: the warm start lands on the same optimum (to the solver tolerance).
    np.testing.assert_allclose(model.predict_proba(new.X), fresh.predict_proba(new.X), atol=5e-3)
    assert not np.allclose(first, model.predict_proba(new.X))
    assert model.version == 2 and model.config_fingerprint == "f1"
    assert model.training_window_ms == (sim.end_ms - 4 * WEEK, sim.end_ms)
    other = P.build_training_set(sim.batch, "churn", [sim.end_ms - 2 * WEEK], "2w")
    with pytest.raises(ConfigError, match="same features, outcome"):
        model.refit(other)


def test_save_load_round_trip_and_refusals(sim, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    data = P.build_training_set(sim.batch, "purchase", [sim.end_ms - 2 * WEEK], "2w")
    model = P.PropensityModel.fit(data, calibration="isotonic", config_fingerprint="cfg-a")
    path = tmp_path / "m.afs"
    model.save(path)
    again = P.PropensityModel.load(path, config_fingerprint="cfg-a")
    np.testing.assert_array_equal(again.predict_proba(data.X), model.predict_proba(data.X))
    assert (again.feature_names, again.training_window_ms, again.version) == (
        model.feature_names,
        model.training_window_ms,
        model.version,
    )
    with pytest.raises(StateError, match="trained under config 'cfg-a'"):
        P.PropensityModel.load(path, config_fingerprint="cfg-b")
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    path.write_bytes(bytes(raw))
    with pytest.raises(StateError):
        P.PropensityModel.load(path)


def test_tiers_threshold_and_quantile() -> None:
    p = np.array([0.05, 0.2, 0.35, 0.5, 0.65, 0.8, 0.95, 0.4, 0.1, 0.7])
    thr = P.assign_tiers(p, P.TierSpec(method="threshold", high=0.6, medium=0.3))
    assert thr.tolist() == [0, 0, 1, 1, 2, 2, 2, 1, 0, 2]
    q = P.assign_tiers(p, P.TierSpec(method="quantile", high=0.8, medium=0.5))
    assert np.bincount(q, minlength=3).tolist() == [5, 3, 2]
    # Monotone: a higher probability never gets a lower tier.
    order = np.argsort(p)
    assert np.all(np.diff(q[order]) >= 0)
    with pytest.raises(ConfigError, match="medium <= high"):
        P.assign_tiers(p, P.TierSpec(method="threshold", high=0.2, medium=0.3))


def test_order_day_features_hand_case_and_no_leakage(sim) -> None:  # type: ignore[no-untyped-def]
    orders = [(0, 0.0), (0, 0.5), (10, 0.0), (30, 0.0), (50, 0.0)]  # (day, fraction of a day)
    events = [
        OrderCompleted(user_id="a", timestamp=int((d + f) * DAY), order_id=str(i), products=[], revenue=1.0)
        for i, (d, f) in enumerate(orders)
    ] + [PageViewed(user_id="b", timestamp=DAY)]
    spec = P.FeatureSpec(half_lives=("7d", "28d"), order_days=True)
    f = P.profile_features(EventBatch.from_events(events), 40 * DAY, spec=spec)
    a = dict(zip(f.names, f.X[0], strict=True))
    # Order days 0, 10, 30 (two orders on day 0 count once; day 50 is after T).
    assert a["log_order_days"] == pytest.approx(np.log1p(3))
    assert a["log_mean_gap_days"] == pytest.approx(np.log1p(15))
    assert a["log_gap_ratio"] == pytest.approx(np.log1p(10 / 15))
    assert a["log_order_day_rate"] == pytest.approx(np.log1p(7 * 3 / 41))
    assert a["order_days_decay_7d"] == pytest.approx(np.log1p(sum(0.5 ** (x / 7) for x in (40, 30, 10))))
    b = dict(zip(f.names, f.X[1], strict=True))  # never ordered: zeros
    assert [b[k] for k in P._ORDER_DAY_FEATURES] == [0.0] * 4 and b["order_days_decay_28d"] == 0.0
    # No leakage on the simulator: dropping or moving every event after T leaves them identical.
    cutoff = sim.end_ms - 3 * WEEK
    full = P.profile_features(sim.batch, cutoff, spec=spec)
    trimmed = P.profile_features(
        subset(sim.batch, sim.batch.ts_ms <= cutoff), cutoff, spec=spec, n_profiles=3000
    )
    np.testing.assert_array_equal(full.X, trimmed.X)
    moved = replace(
        sim.batch, ts_ms=np.where(sim.batch.ts_ms > cutoff, sim.batch.ts_ms + 9 * WEEK, sim.batch.ts_ms)
    )
    np.testing.assert_array_equal(full.X, P.profile_features(moved, cutoff, spec=spec).X)
    cols = [f.names.index(k) for k in P._ORDER_DAY_FEATURES]
    assert full.X[:, cols].std(axis=0).min() > 0  # the columns carry information on the simulator


def test_feature_spec_validation() -> None:
    with pytest.raises(ConfigError, match="two or more"):
        P.FeatureSpec(half_lives=("7d",))
    with pytest.raises(ConfigError, match="distinct"):
        P.FeatureSpec(half_lives=("7d", "1w"))
    with pytest.raises(ConfigError, match="order_day_value_power"):
        P.FeatureSpec(order_day_value_power=-0.1)
    with pytest.raises(ConfigError, match="order_day_value_power"):
        P.FeatureSpec(order_day_value_power=float("nan"))
    with pytest.raises(ConfigError, match="'order_days_decay_14d'"):  # needs order_days=True
        P.FeatureSpec(columns=("order_days_decay_14d",))
    with pytest.raises(ConfigError, match="at most once"):
        P.FeatureSpec(columns=("log_orders", "log_orders"))
    with pytest.raises(ConfigError, match="value_power"):
        P.decayed_order_days(EventBatch.from_events([]), 0, "7d", value_power=5.0)


def test_order_day_value_weighting_hand_case() -> None:
    # Day 0: two orders (3 + 5 dollars); day 10: 0.5 dollars (weight floored at 1); cutoff day 20.
    events = [
        OrderCompleted(user_id="a", timestamp=int(d * DAY), order_id=str(i), products=[], revenue=r)
        for i, (d, r) in enumerate([(0, 3.0), (0.2, 5.0), (10, 0.5)])
    ]
    batch = EventBatch.from_events(events)
    expected = 8.0**0.5 * 0.5 ** (20 / 7) + 1.0 * 0.5 ** (10 / 7)
    assert P.decayed_order_days(batch, 20 * DAY, "7d", value_power=0.5)[0] == pytest.approx(expected)
    spec = P.FeatureSpec(half_lives=("7d", "28d"), order_days=True, order_day_value_power=0.5)
    f = P.profile_features(batch, 20 * DAY, spec=spec)
    assert f.X[0, f.names.index("order_days_decay_7d")] == pytest.approx(np.log1p(expected))
    # The other order-day features do not depend on the weighting.
    plain = P.profile_features(batch, 20 * DAY, spec=msgspec.structs.replace(spec, order_day_value_power=0.0))
    others = [f.names.index(k) for k in P._ORDER_DAY_FEATURES]
    np.testing.assert_array_equal(f.X[0, others], plain.X[0, others])


def test_feature_columns_select_and_survive_save_load(sim, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    full_spec = P.FeatureSpec(half_lives=("7d", "28d"), order_days=True)
    columns = ("order_days_decay_28d", "log_tenure_days", "browse_decay_7d")
    spec = msgspec.structs.replace(full_spec, columns=columns)
    assert P.feature_names(spec) == columns
    cutoff = sim.end_ms - 2 * WEEK
    full, small = (
        P.profile_features(sim.batch, cutoff, spec=full_spec),
        P.profile_features(sim.batch, cutoff, spec=spec),
    )
    assert small.names == columns
    np.testing.assert_array_equal(small.X, full.X[:, [full.names.index(c) for c in columns]])
    data = P.build_training_set(sim.batch, "purchase", [cutoff], "2w", spec=spec)
    model = P.PropensityModel.fit(data, calibration="platt")
    assert set(model.explain()) == set(columns)
    model.save(tmp_path / "small.model")
    again = P.PropensityModel.load(tmp_path / "small.model")
    assert again.spec == spec
    np.testing.assert_array_equal(
        again.score_batch(sim.batch, sim.end_ms)[0], model.score_batch(sim.batch, sim.end_ms)[0]
    )


def test_a_model_saved_before_a_feature_was_added_loads_and_predicts_the_same(  # type: ignore[no-untyped-def]
    sim, tmp_path: Path
) -> None:
    # What a file from before `channel_share_whatsapp` existed holds: the full list without it.
    full = P.feature_names(P.FeatureSpec())
    older = tuple(name for name in full if name != "channel_share_whatsapp")
    assert len(older) == len(full) - 1
    spec = msgspec.structs.replace(P.FeatureSpec(), columns=older)
    cutoff = sim.end_ms - 2 * WEEK
    model = P.PropensityModel.fit(P.build_training_set(sim.batch, "purchase", [cutoff], "2w", spec=spec))
    model.spec = P.FeatureSpec()  # as the older SDK wrote it: no column selection
    model.save(tmp_path / "old.model")
    again = P.PropensityModel.load(tmp_path / "old.model")
    assert again.feature_names == full and again.coef_[full.index("channel_share_whatsapp")] == 0.0
    model.spec = spec
    np.testing.assert_allclose(
        again.score_batch(sim.batch, sim.end_ms)[0], model.score_batch(sim.batch, sim.end_ms)[0], rtol=1e-12
    )
    model.feature_names = ("no_such_feature", *older[1:])
    model.spec = P.FeatureSpec()
    model.save(tmp_path / "odd.model")
    with pytest.raises(StateError, match="feature list"):
        P.PropensityModel.load(tmp_path / "odd.model")


# --- CDNOW time split --------------------------------------------------------------------------
CAL_END = int(np.datetime64("1997-09-30", "ms").astype(np.int64))
HOLDOUT_END = int(np.datetime64("1998-06-30", "ms").astype(np.int64))


def cdnow_batch() -> EventBatch:
    return cdnow_orders(CDNOW)


def test_cdnow_purchase_propensity_vs_decay_baseline_honest_split() -> None:
    """The configuration ``docs/research/cdnow_selection.py`` chose on calibration data only (inner
    split: features at 1997-07-01, label = buys in the calibration period's last 13 weeks), refitted
    on cutoffs up to 1997-09-30 and evaluated once on the 39-week holdout (docs/propensity.md)."""
    batch = cdnow_batch()
    inner_end = CAL_END - 13 * WEEK
    _, y_inner = P.outcome_labels(batch, "purchase", inner_end, "13w")
    _, y = P.outcome_labels(batch, "purchase", CAL_END, "39w")
    assert y.mean() == pytest.approx(0.29, abs=0.005)
    # The baseline's half-life is chosen like ours: on the inner split, never on the holdout.
    grid = (2, 4, 6, 8, 10, 13, 17, 26)
    inner = {h: roc_auc(y_inner, P.decayed_order_days(batch, inner_end, f"{h}w")) for h in grid}
    h_decay = max(grid, key=lambda h: inner[h])
    assert h_decay == 13 and inner[13] == pytest.approx(0.7520, abs=5e-4)
    baseline = roc_auc(y, P.decayed_order_days(batch, CAL_END, f"{h_decay}w"))
    assert baseline == pytest.approx(0.7820, abs=5e-4)

    # Ours, the chosen recipe: labels (T, T + 4w] at 4 weekly cutoffs ending at the scoring cutoff.
    spec = P.FeatureSpec(half_lives=("14d", "56d", "182d"), order_days=True)

    def fit_and_score(end: int) -> np.ndarray:
        cutoffs = [end - 4 * WEEK - k * WEEK for k in range(4)]
        data = P.build_training_set(batch, "purchase", cutoffs, "4w", spec=spec)
        assert data.window_ms[1] == end  # no label reaches past the scoring cutoff
        p, _ = P.PropensityModel.fit(data, l2=100.0, calibration="none").score_batch(batch, end)
        return p

    assert roc_auc(y_inner, fit_and_score(inner_end)) == pytest.approx(0.7505, abs=5e-4)
    ours = roc_auc(y, fit_and_score(CAL_END))
    assert ours == pytest.approx(0.7794, abs=5e-4)
    # The honest relation: ours does NOT beat the decay baseline; it trails it by under 0.005.
    assert baseline - 0.005 < ours < baseline


def test_cdnow_one_feature_propensity_stage_two_beats_decay_point_estimate() -> None:
    """Stage 2 of ``docs/research/cdnow_selection.py``: one-feature models (order-day decay, days weighted
    by dollars ** power) and the decay baseline's half-life chosen by mean ROC AUC over three
    calibration splits, evaluated once on the holdout (docs/propensity.md)."""
    batch = cdnow_batch()
    splits = []
    for cutoff, weeks in ((CAL_END - 13 * WEEK, 13), (CAL_END - 26 * WEEK, 13), (CAL_END - 26 * WEEK, 26)):
        assert cutoff + weeks * WEEK <= CAL_END  # selection reads calibration labels only
        splits.append((cutoff, P.outcome_labels(batch, "purchase", cutoff, f"{weeks}w")[1]))
    half_lives, powers = (2, 4, 6, 8, 10, 13, 17, 26), (0.0, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3)
    mean_auc = {
        (h, g): np.mean(
            [roc_auc(y, P.decayed_order_days(batch, c, f"{h}w", value_power=g)) for c, y in splits]
        )
        for h in half_lives
        for g in powers
    }
    h_base = max(half_lives, key=lambda h: mean_auc[h, 0.0])
    h_ours, power = max(mean_auc, key=lambda k: mean_auc[k])
    assert (h_base, h_ours, power) == (10, 10, 0.15)
    assert mean_auc[10, 0.15] - mean_auc[10, 0.0] == pytest.approx(0.0032, abs=2e-4)

    spec = P.FeatureSpec(
        half_lives=("10w", "20w"),
        order_days=True,
        order_day_value_power=0.15,
        columns=("order_days_decay_10w",),
    )
    data = P.build_training_set(batch, "purchase", [CAL_END - 13 * WEEK], "13w", spec=spec)
    assert data.window_ms[1] == CAL_END
    model = P.PropensityModel.fit(data, calibration="platt")
    p, _ = model.score_batch(batch, CAL_END)
    _, y = P.outcome_labels(batch, "purchase", CAL_END, "39w")
    ours = roc_auc(y, p)
    assert ours == roc_auc(y, P.decayed_order_days(batch, CAL_END, "10w", value_power=0.15))
    assert ours == pytest.approx(0.7838, abs=5e-4)
    for h, documented in ((10, 0.7821), (13, 0.7820)):
        baseline = roc_auc(y, P.decayed_order_days(batch, CAL_END, f"{h}w"))
        assert baseline == pytest.approx(documented, abs=5e-4)
        assert ours > baseline  # the point estimate; the paired interval spans zero (docs)


def test_messages_sent_to_a_person_are_not_their_activity_in_the_labels() -> None:
    from affinity_sdk.capture.events import AppOpened, MessageDelivered, MessageSent

    day = 86_400_000
    events = [
        AppOpened(user_id="ann", timestamp=0),  # active before T, then only receives messages
        AppOpened(user_id="bob", timestamp=0),
        AppOpened(user_id="bob", timestamp=3 * day),  # active in the window: not churned
        MessageSent(user_id="ann", timestamp=3 * day, medium="email"),
        MessageDelivered(user_id="ann", timestamp=3 * day, medium="email"),
        MessageDelivered(user_id="zoe", timestamp=0, medium="sms"),  # only ever received one
    ]
    batch = EventBatch.from_events(events)
    eligible, churned = P.outcome_labels(batch, "churn", day, "7d")
    code = {name: batch.interners.users.lookup(name) for name in ("ann", "bob", "zoe")}
    assert [bool(eligible[code[u]]) for u in ("ann", "bob", "zoe")] == [True, True, False]
    assert bool(churned[code["ann"]]) and not churned[code["bob"]]
