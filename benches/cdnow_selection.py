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

Run from the repository root (about a minute on two cores)::

    .venv/bin/python benches/cdnow_selection.py

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

from affinity_sdk import propensity as P
from affinity_sdk.batch import EventBatch
from affinity_sdk.bgnbd import BGNBD, summary_from_batch
from affinity_sdk.datasets import cdnow_orders
from affinity_sdk.evaluate import roc_auc

DAY = 86_400_000
WEEK = 7 * DAY
DATA = Path(__file__).resolve().parent.parent / "tests" / "data" / "cdnow" / "cdnow_sample.csv"
CAL_END = int(np.datetime64("1997-09-30", "ms").astype(np.int64))
HOLDOUT_END = int(np.datetime64("1998-06-30", "ms").astype(np.int64))
#: The inner validation window: the calibration period's last 13 weeks.
INNER_WEEKS = 13
INNER_END = CAL_END - INNER_WEEKS * WEEK  # 1997-07-01

#: Decay-baseline half-lives tried (weeks).
DECAY_HALF_LIVES_W = (2, 4, 6, 8, 10, 13, 17, 26)


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
        """What :func:`~affinity_sdk.propensity.build_training_set` builds, from the cache."""
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
    print(f"\n({time.perf_counter() - start:.0f} s)")


if __name__ == "__main__":
    main()
