"""How much room is there above the decay score on CDNOW? Checks that read calibration data only.

``docs/research/cdnow_selection.py`` found that no propensity candidate beats the plain decay score
of past purchase days on the CDNOW time split, and put part of the blame on the time shift between
training cutoffs and the scoring cutoff. This script removes that excuse and asks whether the
information is there at all. On three splits that end inside the calibration period (nothing after
1997-09-30 is read) it compares the decay score (half-life 13 weeks, chosen on the inner split)
with:

1. *Same-cutoff cross-validation*: models trained on the very cutoff and horizon they are scored on,
   5-fold over customers, 3 repeats, out-of-fold predictions averaged. No time shift at all, so this
   is an optimistic ceiling for what a fitted model can learn from these features:
   the SDK's logistic model (:class:`~affinity_sdk.models.propensity.PropensityModel`, base + order-day
   features at 14d / 56d / 182d, l2 = 10) and, if scikit-learn is installed (``[bench]`` extra), a
   gradient-boosted tree model on the same features.
2. *One-parameter variants of the decay score*: each order day weighted by its dollars ** gamma
   (``decayed_order_days(..., value_power=gamma)``).
3. *A generative model fitted without labels*: a self-exciting (Hawkes) purchase process. Customer i
   repeats at rate ``mu_i + eta * sum_j beta * exp(-beta * (t - t_j))`` over their earlier order days
   ``t_j``, with ``mu_i ~ Gamma(r, a)`` across customers; the four parameters are fitted by maximum
   likelihood on the orders up to the cutoff (the gamma integral is exact: the likelihood's product
   of rates is a polynomial in ``mu_i``), and the score is P(at least one order in the horizon).
   Its excitation term is the decay score itself, so it can only win through the per-customer base
   rate.

Run from the repository root (about a minute on two cores)::

    .venv/bin/python docs/research/cdnow_ceiling.py

It prints the table quoted in ``docs/propensity.md`` (section "Is there room above the decay score?").
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass

import numpy as np
from cdnow_selection import CAL_END, DATA, WEEK
from numpy.typing import NDArray
from scipy.optimize import minimize
from scipy.special import gammaln

from affinity_sdk.activate.evaluate import roc_auc
from affinity_sdk.ingest.batch import EventBatch
from affinity_sdk.models import propensity as P
from affinity_sdk.sim.cdnow import cdnow_orders

SPEC = P.FeatureSpec(half_lives=("14d", "56d", "182d"), order_days=True)
#: (name, cutoff, label horizon in weeks): every label window ends by 1997-09-30.
SPLITS = (
    ("inner: 1997-07-01 + 13w", CAL_END - 13 * WEEK, 13),
    ("1997-04-01 + 13w", CAL_END - 26 * WEEK, 13),
    ("1997-04-01 + 26w", CAL_END - 26 * WEEK, 26),
)
GAMMAS = (0.1, 0.2, 0.3)


def labels(batch: EventBatch, cutoff: int, weeks: int) -> NDArray[np.bool_]:
    """Per customer: an order in ``(cutoff, cutoff + weeks]``."""
    return P.outcome_labels(batch, "purchase", cutoff, f"{weeks}w")[1]


def cross_validated(
    batch: EventBatch, cutoff: int, y: NDArray[np.bool_], *, folds: int = 5, repeats: int = 3
) -> dict[str, NDArray[np.float64]]:
    """Out-of-fold scores of models trained on the same cutoff and horizon (no time shift)."""
    n = y.shape[0]
    X = P.profile_features(batch, cutoff, spec=SPEC, n_profiles=n).X
    used = np.flatnonzero(X.std(axis=0) >= 1e-12)  # CDNOW has orders only: drop constant columns
    X = X[:, used]
    names = tuple(P.feature_names(SPEC)[j] for j in used)
    try:
        from sklearn.ensemble import HistGradientBoostingClassifier
    except ImportError:  # the [bench] extra is not installed
        HistGradientBoostingClassifier = None
    out = {
        "logistic": np.zeros(n),
        **({"boosted trees": np.zeros(n)} if HistGradientBoostingClassifier else {}),
    }
    rng = np.random.default_rng(0)
    for _ in range(repeats):
        fold = rng.permutation(n) % folds
        for k in range(folds):
            train, test = fold != k, fold == k
            data = P.TrainingSet(
                X=X[train],
                y=y[train],
                user=np.flatnonzero(train),
                cutoff_ms=np.full(int(train.sum()), cutoff),
                feature_names=names,
                outcome="purchase",
                horizon_ms=0,
                spec=SPEC,
            )
            model = P.PropensityModel.fit(data, l2=10.0, calibration="none")
            out["logistic"][test] += model.predict_proba(X[test])
            if HistGradientBoostingClassifier is not None:
                trees = HistGradientBoostingClassifier(
                    max_iter=150, learning_rate=0.05, max_leaf_nodes=8, min_samples_leaf=40, random_state=0
                ).fit(X[train], y[train])
                out["boosted trees"][test] += trees.predict_proba(X[test])[:, 1]
    return out


@dataclass
class Customer:
    """One customer's order days for the self-exciting model, as ages at the cutoff (days)."""

    ages: NDArray[np.float64]  # oldest first: ages[0] is the trial purchase, i.e. the tenure


def _log_gamma_moments(d: NDArray[np.float64], r: float, log_s: tuple[float, ...]) -> list[float]:
    """log sum_k c_k Gamma(r + k) / s ** (r + k) for each s, c_k the coefficients of prod_j (u + d_j)."""
    c, log_scale = np.ones(1), 0.0
    for dj in d:  # multiply the polynomial by (u + dj), rescaling so it never overflows
        c = np.concatenate([dj * c, [0.0]]) + np.concatenate([[0.0], c])
        top = c.max()
        c, log_scale = c / top, log_scale + np.log(top)
    k = np.arange(c.shape[0])
    with np.errstate(divide="ignore"):
        base = np.log(c) + log_scale + gammaln(r + k)
    out = []
    for ls in log_s:
        t = base - (r + k) * ls
        top = t.max()
        out.append(float(top + np.log(np.exp(t - top).sum())))
    return out


class SelfExciting:
    """Hawkes purchase process with a gamma-distributed base rate per customer (see the module doc)."""

    def __init__(self, customers: list[Customer]) -> None:
        self.customers = customers
        self.params = np.log([0.5, 10.0, 0.3, 1 / 30])  # log r, a, eta, beta (days)

    @staticmethod
    def _excitation(c: Customer, eta: float, beta: float) -> NDArray[np.float64]:
        """The excitation of each repeat order day by the order days before it."""
        a = c.ages
        return np.array([eta * beta * np.exp(-beta * (a[:j] - a[j])).sum() for j in range(1, a.shape[0])])

    def neg_log_likelihood(self, params: NDArray[np.float64]) -> float:
        r, a, eta, beta = np.exp(params)
        total = 0.0
        for c in self.customers:
            compensator = eta * (1 - np.exp(-beta * c.ages)).sum()
            (moments,) = _log_gamma_moments(self._excitation(c, eta, beta), r, (np.log(a + c.ages[0]),))
            total += -compensator + r * np.log(a) - gammaln(r) + moments
        return -total

    def fit(self) -> SelfExciting:
        result = minimize(self.neg_log_likelihood, self.params, method="L-BFGS-B")
        self.params = result.x
        return self

    def probability_of_order(self, horizon_days: float) -> NDArray[np.float64]:
        """P(at least one order in the next ``horizon_days``) per customer."""
        r, a, eta, beta = np.exp(self.params)
        p = np.zeros(len(self.customers))
        for i, c in enumerate(self.customers):
            tenure = c.ages[0]
            m0, m1 = _log_gamma_moments(
                self._excitation(c, eta, beta), r, (np.log(a + tenure), np.log(a + tenure + horizon_days))
            )
            excitation = eta * (np.exp(-beta * c.ages) - np.exp(-beta * (c.ages + horizon_days))).sum()
            p[i] = 1 - np.exp(m1 - m0 - excitation)
        return p


def self_exciting_scores(
    batch: EventBatch, cutoff: int, weeks: int
) -> tuple[NDArray[np.float64], SelfExciting]:
    n = len(batch.interners.users)
    seen = batch.ts_ms <= cutoff
    # Distinct order days sorted by customer, then day (so the oldest first), as the features see them.
    user, ages, _ = P._order_days(
        batch.user[seen],
        batch.event_type[seen].astype(np.int64),
        batch.ts_ms[seen],
        batch.revenue[seen],
        cutoff,
        n,
    )
    starts = np.searchsorted(user, np.arange(n + 1))
    customers = [Customer(ages=ages[s:e]) for s, e in itertools.pairwise(starts)]
    assert all(c.ages.shape[0] > 0 for c in customers)  # every CDNOW customer orders in week 1-12
    model = SelfExciting(customers).fit()
    return model.probability_of_order(7 * weeks), model


def main() -> None:
    start = time.perf_counter()
    batch = cdnow_orders(DATA)
    assert int(batch.ts_ms.max()) > CAL_END  # the holdout is in the file; only labels before CAL_END are read
    rows: dict[str, list[str]] = {}
    for _, cutoff, weeks in SPLITS:
        assert cutoff + weeks * WEEK <= CAL_END
        y = labels(batch, cutoff, weeks)
        scores = {"decay score, half-life 13 weeks": P.decayed_order_days(batch, cutoff, "13w")}
        for gamma in GAMMAS:
            scores[f"decay score, order days weighted by dollars ** {gamma}"] = P.decayed_order_days(
                batch, cutoff, "13w", value_power=gamma
            )
        for name, s in cross_validated(batch, cutoff, y).items():
            scores[f"{name}, same-cutoff 5-fold CV (no time shift)"] = s
        hawkes, model = self_exciting_scores(batch, cutoff, weeks)
        r, a, eta, beta = np.exp(model.params)
        print(
            f"self-exciting fit at {cutoff}: r {r:.3f}, a {a:.1f} d, eta {eta:.3f}, 1/beta {1 / beta:.1f} d"
        )
        scores["self-exciting process, P(order in horizon), fitted without labels"] = hawkes
        for name, s in scores.items():
            rows.setdefault(name, []).append(f"{roc_auc(y, s):.4f}")
    print("\n| score (ROC AUC) | " + " | ".join(name for name, _, _ in SPLITS) + " |")
    print("| --- |" + " ---: |" * len(SPLITS))
    for name, cells in rows.items():
        print(f"| {name} | " + " | ".join(cells) + " |")
    print(f"\n({time.perf_counter() - start:.0f} s)")


if __name__ == "__main__":
    main()
