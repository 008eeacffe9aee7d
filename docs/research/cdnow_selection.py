"""Honest model selection for the CDNOW split "buys again in the 39-week holdout".

Every modelling choice is made on calibration-period data only (purchases up to 1997-09-30):

1. Inner split. The last 13 weeks of the calibration period, (1997-07-01, 1997-09-30], are the
   validation window: features at the inner cutoff 1997-07-01, label "buys in those 13 weeks".
   Candidate models train on cutoffs whose labels end at the inner cutoff (nothing after it).
2. Every candidate in :data:`GRID` (half-lives, BG/NBD features, order-day features, label horizon,
   number and spacing of training cutoffs, l2) and every decay-baseline half-life in
   :data:`DECAY_HALF_LIVES_W` is scored by ROC AUC on the inner validation window; the best of
   each is kept (first in grid order on a tie).
3. The chosen model is refitted with the same recipe on cutoffs whose labels end at 1997-09-30,
   scored at 1997-09-30 and evaluated once on the 39-week holdout, beside the decay baseline at
   its chosen half-life and the BG/NBD scores (fitted on the calibration period); a paired
   bootstrap over customers gives the AUC differences' intervals.

Stage 1 (steps 1-3 over :data:`GRID`) chose a model that trails the decay score. Stage 2 was added
after ``docs/research/cdnow_ceiling.py`` showed, on calibration data only, that no fitted
multi-feature model beats the decay score even without a time shift, while weighting order days by
their dollars helped on two of three calibration splits. Its candidates are one-feature propensity
models (the logistic of one decayed order-day feature, so they rank exactly as that feature):

4. Every (half-life, value power) in :data:`DECAY_HALF_LIVES_W` x :data:`VALUE_POWERS`, and the
   decay baseline's half-life, is chosen by mean ROC AUC over the three calibration splits in
   :data:`VALIDATION_SPLITS` (every label window ends by 1997-09-30).
5. The chosen model is fitted through the public API (labels in the calibration period's last 13
   weeks, Platt-calibrated), scored at 1997-09-30 and evaluated once on the holdout against both
   decay baselines (stage 2's and stage 1's half-life), with paired bootstrap intervals.

Run from the repository root (about a minute on two cores)::

    .venv/bin/python docs/research/cdnow_selection.py

It prints the tables quoted in ``docs/propensity.md`` (section "CDNOW time split");
``tests/test_propensity.py::test_cdnow_purchase_propensity_vs_decay_baseline_honest_split`` re-checks the
chosen configuration's holdout result.
"""

from __future__ import annotations

import argparse
import itertools
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from affinity_sdk.activate.evaluate import roc_auc
from affinity_sdk.ingest.batch import EventBatch
from affinity_sdk.models import propensity as P
from affinity_sdk.models.bgnbd import BGNBD, summary_from_batch
from affinity_sdk.sim.cdnow import cdnow_orders

DAY = 86_400_000
WEEK = 7 * DAY
DATA = Path(__file__).resolve().parents[2] / "tests" / "data" / "cdnow" / "cdnow_sample.csv"
CAL_END = int(np.datetime64("1997-09-30", "ms").astype(np.int64))
HOLDOUT_END = int(np.datetime64("1998-06-30", "ms").astype(np.int64))
#: The inner validation window: the calibration period's last 13 weeks.
INNER_WEEKS = 13
INNER_END = CAL_END - INNER_WEEKS * WEEK  # 1997-07-01

#: Decay-baseline half-lives tried (weeks).
DECAY_HALF_LIVES_W = (2, 4, 6, 8, 10, 13, 17, 26)
#: Stage 2: (cutoff, label weeks) of the calibration splits; every label window ends by 1997-09-30.
VALIDATION_SPLITS = ((INNER_END, 13), (CAL_END - 26 * WEEK, 13), (CAL_END - 26 * WEEK, 26))
#: Stage 2: powers of each order day's dollars that weight it (0: the plain decay score).
VALUE_POWERS = (0.0, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3)


@dataclass(frozen=True)
class Candidate:
    """One modelling recipe; cutoffs are placed relative to the cutoff ``end`` they train for."""

    half_lives: tuple[str, ...]
    bgnbd: bool
    order_days: bool
    horizon_w: int
    n_cutoffs: int
    spacing_w: int
    l2: float

    def spec(self) -> P.FeatureSpec:
        # BG/NBD's expected orders over the label horizon: the feature matches what is labelled.
        return P.FeatureSpec(
            half_lives=self.half_lives,
            bgnbd=self.bgnbd,
            bgnbd_horizon=f"{self.horizon_w}w",
            order_days=self.order_days,
        )

    def cutoffs(self, end: int) -> list[int]:
        """Training cutoffs whose labels ``(T, T + H]`` end at or before ``end``."""
        last = end - self.horizon_w * WEEK
        return [last - k * self.spacing_w * WEEK for k in range(self.n_cutoffs)]

    def describe(self) -> str:
        groups = "+".join(
            ["base", *(["bgnbd"] if self.bgnbd else []), *(["order_days"] if self.order_days else [])]
        )
        return (
            f"half-lives {'/'.join(self.half_lives)}, features {groups}, label horizon {self.horizon_w}w, "
            f"{self.n_cutoffs} cutoff(s) every {self.spacing_w}w, l2 = {self.l2:g}"
        )


#: The candidates: every combination (324).
GRID: tuple[Candidate, ...] = tuple(
    Candidate(hl, bg, od, h, k, s, l2)
    for hl, bg, od, h, (k, s), l2 in itertools.product(
        [("28d", "91d"), ("70d", "182d"), ("14d", "56d", "182d")],
        [False, True],
        [False, True],
        [4, 8, 13],
        [(1, 1), (4, 1), (4, 3)],
        [1.0, 10.0, 100.0],
    )
)


def load_cdnow(path: Path = DATA) -> EventBatch:
    """The CDNOW sample as ``order_completed`` events (one per record, revenue = dollars)."""
    return cdnow_orders(path)


def bgnbd_scores(
    batch: EventBatch, cutoff: int, weeks: float
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """BG/NBD fitted on the purchases up to ``cutoff``: (expected purchases in ``weeks``, P(alive))."""
    s = summary_from_batch(batch, cutoff)
    model = BGNBD().fit(s.frequency, s.recency, s.T)
    n = len(batch.interners.users)
    expected, alive = np.zeros(n), np.zeros(n)
    who = s.customer.astype(np.int64)
    expected[who] = model.conditional_expected_purchases(weeks, s.frequency, s.recency, s.T)
    alive[who] = model.conditional_probability_alive(s.frequency, s.recency, s.T)
    return expected, alive


class Runner:
    """Fits and scores candidates, caching feature matrices per (spec, cutoff)."""

    def __init__(self, batch: EventBatch) -> None:
        self.batch = batch
        self.n = len(batch.interners.users)
        self._features: dict[tuple[P.FeatureSpec, int], P.Features] = {}
        self._labels: dict[tuple[int, int], tuple[NDArray[np.bool_], NDArray[np.bool_]]] = {}

    def features(self, spec: P.FeatureSpec, cutoff: int) -> P.Features:
        key = (spec, cutoff)
        if key not in self._features:
            self._features[key] = P.profile_features(self.batch, cutoff, spec=spec, n_profiles=self.n)
        return self._features[key]

    def labels(self, cutoff: int, horizon_ms: int) -> tuple[NDArray[np.bool_], NDArray[np.bool_]]:
        key = (cutoff, horizon_ms)
        if key not in self._labels:
            # outcome_labels reads a numeric horizon in seconds.
            eligible, label = P.outcome_labels(
                self.batch, "purchase", cutoff, horizon_ms / 1000, n_profiles=self.n
            )
            # Guard: the label is exactly "a purchase in (cutoff, cutoff + horizon]".
            ts = self.batch.ts_ms
            window = (ts > cutoff) & (ts <= cutoff + horizon_ms)
            assert np.array_equal(label, np.bincount(self.batch.user[window], minlength=self.n) > 0)
            self._labels[key] = eligible, label
        return self._labels[key]

    def training_set(self, c: Candidate, end: int) -> P.TrainingSet:
        """What :func:`~affinity_sdk.models.propensity.build_training_set` builds, from the cache."""
        spec, horizon_ms = c.spec(), c.horizon_w * WEEK
        cutoffs = c.cutoffs(end)
        assert max(cutoffs) + horizon_ms <= end  # labels never reach past ``end``
        xs, ys, us, ts = [], [], [], []
        for t in cutoffs:
            feats = self.features(spec, t)
            eligible, label = self.labels(t, horizon_ms)
            rows = np.flatnonzero(eligible & feats.seen)
            xs.append(feats.X[rows])
            ys.append(label[rows])
            us.append(rows.astype(np.int64))
            ts.append(np.full(rows.shape[0], t, dtype=np.int64))
        return P.TrainingSet(
            X=np.concatenate(xs),
            y=np.concatenate(ys),
            user=np.concatenate(us),
            cutoff_ms=np.concatenate(ts),
            feature_names=P.feature_names(spec),
            outcome="purchase",
            horizon_ms=horizon_ms,
            spec=spec,
        )

    def score(self, c: Candidate, end: int) -> NDArray[np.float64]:
        """Fit ``c`` on cutoffs with labels up to ``end``, score every customer at ``end``.

        Columns constant over the training rows (most of the web / app features: CDNOW has only
        orders) are dropped first: standardised to zero they get a zero coefficient at the L2
        optimum anyway, so the fit is the same, only faster."""
        data = self.training_set(c, end)
        used = np.flatnonzero(data.X.std(axis=0) >= 1e-12)
        data = replace(data, X=data.X[:, used], feature_names=tuple(data.feature_names[j] for j in used))
        model = P.PropensityModel.fit(data, l2=c.l2, calibration="none")
        return model.predict_proba(self.features(c.spec(), end).X[:, used])


def fit_chosen(batch: EventBatch, c: Candidate, end: int) -> NDArray[np.float64]:
    """The chosen recipe through the public API (what the test runs)."""
    data = P.build_training_set(batch, "purchase", c.cutoffs(end), f"{c.horizon_w}w", spec=c.spec())
    model = P.PropensityModel.fit(data, l2=c.l2, calibration="none")
    p, _ = model.score_batch(batch, end)
    return p


def one_feature_spec(half_life_w: int, power: float) -> P.FeatureSpec:
    """Stage 2's model: only the order-day decay at ``half_life_w``, days weighted by dollars ** power.
    (A spec names two or more half-lives; the second one's columns are computed and dropped.)"""
    return P.FeatureSpec(
        half_lives=(f"{half_life_w}w", f"{2 * half_life_w}w"),
        order_days=True,
        order_day_value_power=power,
        columns=(f"order_days_decay_{half_life_w}w",),
    )


def fit_one_feature(batch: EventBatch, half_life_w: int, power: float, end: int) -> NDArray[np.float64]:
    """Stage 2's chosen recipe through the public API: fitted on labels in the 13 weeks before ``end``,
    Platt-calibrated (monotone, so the ranking is the feature's), scored at ``end``."""
    spec = one_feature_spec(half_life_w, power)
    data = P.build_training_set(batch, "purchase", [end - 13 * WEEK], "13w", spec=spec)
    model = P.PropensityModel.fit(data, calibration="platt")
    assert model.coef_[0] > 0  # more recent, bigger order days: more likely to buy
    p, _ = model.score_batch(batch, end)
    return p


def stage_two_selection(
    batch: EventBatch,
) -> tuple[int, tuple[int, float], dict[tuple[int, float], float]]:
    """(baseline half-life, (half-life, power) of ours, mean validation AUC per (half-life, power))."""
    splits = []
    for cutoff, weeks in VALIDATION_SPLITS:
        assert cutoff + weeks * WEEK <= CAL_END
        splits.append((cutoff, P.outcome_labels(batch, "purchase", cutoff, f"{weeks}w")[1]))
    table = {
        (h, g): float(
            np.mean([roc_auc(y, P.decayed_order_days(batch, c, f"{h}w", value_power=g)) for c, y in splits])
        )
        for h in DECAY_HALF_LIVES_W
        for g in VALUE_POWERS
    }
    h_base = max(DECAY_HALF_LIVES_W, key=lambda h: table[h, 0.0])
    return h_base, max(table, key=lambda k: table[k]), table


def paired_bootstrap(
    y: NDArray[np.bool_], a: NDArray[np.float64], b: NDArray[np.float64], draws: int = 2000, seed: int = 0
) -> tuple[float, float, float]:
    """Mean and 95 % percentile interval of AUC(a) - AUC(b) over customers resampled with replacement."""
    rng = np.random.default_rng(seed)
    n = y.shape[0]
    diff = np.empty(draws)
    for i in range(draws):
        idx = rng.integers(0, n, n)
        diff[i] = roc_auc(y[idx], a[idx]) - roc_auc(y[idx], b[idx])
    lo, hi = np.percentile(diff, [2.5, 97.5])
    return float(diff.mean()), float(lo), float(hi)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--draws", type=int, default=2000, help="bootstrap draws (default 2000)")
    parser.add_argument("--top", type=int, default=10, help="inner-split leaders to print")
    parser.add_argument("--inner-only", action="store_true", help="stop before touching the holdout")
    args = parser.parse_args()
    start = time.perf_counter()
    batch = load_cdnow()
    run = Runner(batch)

    # 1-2. Selection on the inner split: nothing after 1997-09-30 is read, and the candidates'
    # training labels end at 1997-07-01.
    _, y_in = run.labels(INNER_END, INNER_WEEKS * WEEK)
    decay_in = {h: roc_auc(y_in, P.decayed_order_days(batch, INNER_END, f"{h}w")) for h in DECAY_HALF_LIVES_W}
    h_decay = max(DECAY_HALF_LIVES_W, key=lambda h: decay_in[h])
    exp_in, alive_in = bgnbd_scores(batch, INNER_END, INNER_WEEKS)
    inner = [(roc_auc(y_in, run.score(c, INNER_END)), i) for i, c in enumerate(GRID)]
    _, best_i = max(inner, key=lambda t: (t[0], -t[1]))
    chosen = GRID[best_i]

    print(
        f"# Inner split: features at 1997-07-01, label = buys in (1997-07-01, 1997-09-30] ({y_in.mean():.1%} do)"
    )
    print("\n| decay half-life (weeks) | " + " | ".join(str(h) for h in DECAY_HALF_LIVES_W) + " |")
    print("| --- |" + " --- |" * len(DECAY_HALF_LIVES_W))
    print("| inner AUC | " + " | ".join(f"{decay_in[h]:.4f}" for h in DECAY_HALF_LIVES_W) + " |")
    print(
        f"\nBG/NBD at 1997-07-01: expected purchases {roc_auc(y_in, exp_in):.4f}, "
        f"P(alive) {roc_auc(y_in, alive_in):.4f}"
    )
    print(f"\n{len(GRID)} candidates; the top {args.top} by inner AUC:\n")
    print("| rank | inner AUC | candidate |\n| --- | --- | --- |")
    for rank, (auc, i) in enumerate(sorted(inner, key=lambda t: (-t[0], t[1]))[: args.top], 1):
        print(f"| {rank} | {auc:.4f} | {GRID[i].describe()} |")
    by_group: dict[str, float] = {}
    for auc, i in inner:
        c = GRID[i]
        key = f"bgnbd={c.bgnbd}, order_days={c.order_days}"
        by_group[key] = max(by_group.get(key, 0.0), auc)
    print("\nBest inner AUC per feature set: " + "; ".join(f"{k}: {v:.4f}" for k, v in by_group.items()))
    print(f"\nChosen decay half-life: {h_decay} weeks; chosen model: {chosen.describe()}")

    if args.inner_only:
        return
    # 3. One evaluation on the holdout.
    _, y = run.labels(CAL_END, HOLDOUT_END - CAL_END)
    ours = fit_chosen(batch, chosen, CAL_END)
    decay = P.decayed_order_days(batch, CAL_END, f"{h_decay}w")
    expected, alive = bgnbd_scores(batch, CAL_END, (HOLDOUT_END - CAL_END) / WEEK)
    rows = [
        (f"decay score of past purchase days, half-life {h_decay} weeks (chosen on the inner split)", decay),
        ("BG/NBD expected holdout purchases (fitted on the calibration period)", expected),
        ("BG/NBD P(alive) alone", alive),
        ("SDK purchase propensity, chosen configuration", ours),
    ]
    print(
        f"\n# Holdout: features at 1997-09-30, label = buys in (1997-09-30, 1998-06-30] ({y.mean():.1%} do)\n"
    )
    print("| score | holdout ROC AUC |\n| --- | --- |")
    for name, score in rows:
        print(f"| {name} | {roc_auc(y, score):.4f} |")
    print(f"\nPaired bootstrap over customers ({args.draws} draws, seed 0), mean [95 % interval]:")
    for name, other in (("decay", decay), ("BG/NBD expected", expected)):
        mean, lo, hi = paired_bootstrap(y, ours, other, args.draws)
        print(f"- AUC(ours) - AUC({name}): {mean:+.4f} [{lo:+.4f}, {hi:+.4f}]")

    # 4-5. Stage 2: one-feature models chosen on three calibration splits, one holdout evaluation.
    h_base, (h_ours, power), table = stage_two_selection(batch)
    print(
        "\n# Stage 2: mean ROC AUC over the calibration splits "
        + ", ".join(f"{np.datetime64(c, 'ms').astype('datetime64[D]')} + {w}w" for c, w in VALIDATION_SPLITS)
    )
    print("\n| half-life | " + " | ".join(f"power {g:g}" for g in VALUE_POWERS) + " |")
    print("| --- |" + " ---: |" * len(VALUE_POWERS))
    for h in DECAY_HALF_LIVES_W:
        print(f"| {h}w | " + " | ".join(f"{table[h, g]:.4f}" for g in VALUE_POWERS) + " |")
    print(f"\nChosen: decay baseline {h_base} weeks; ours {h_ours} weeks, power {power:g}")
    ours2 = fit_one_feature(batch, h_ours, power, CAL_END)
    raw = P.decayed_order_days(batch, CAL_END, f"{h_ours}w", value_power=power)
    assert roc_auc(y, ours2) == roc_auc(y, raw)  # the model ranks exactly as its feature
    rows2 = [
        (
            f"decay score, half-life {h_base} weeks (chosen in stage 2)",
            P.decayed_order_days(batch, CAL_END, f"{h_base}w"),
        ),
        (f"decay score, half-life {h_decay} weeks (chosen in stage 1)", decay),
        (f"SDK purchase propensity, stage 2 ({h_ours}w order-day decay, dollars ** {power:g})", ours2),
    ]
    print("\n| score | holdout ROC AUC |\n| --- | --- |")
    for name, score in rows2:
        print(f"| {name} | {roc_auc(y, score):.4f} |")
    print(f"\nPaired bootstrap over customers ({args.draws} draws, seed 0), mean [95 % interval]:")
    for name, other in rows2[:2]:
        mean, lo, hi = paired_bootstrap(y, ours2, other, args.draws)
        print(f"- AUC(stage 2) - AUC({name.split(' (')[0]}): {mean:+.4f} [{lo:+.4f}, {hi:+.4f}]")
    mean, lo, hi = paired_bootstrap(y, ours2, expected, args.draws)
    print(f"- AUC(stage 2) - AUC(BG/NBD expected): {mean:+.4f} [{lo:+.4f}, {hi:+.4f}]")
    print(f"\n({time.perf_counter() - start:.0f} s)")


if __name__ == "__main__":
    main()
