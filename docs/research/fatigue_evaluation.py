"""Email fatigue: does the simulator plant it, does the SDK's fatigue flag see it, and does the
unsubscribe model gain from a recent-messages feature?

One simulated shop (``simulate_shop(N, weeks=12, horizon_weeks=2, seed=SEED, deliveries=True)``:
every email, SMS and push received is also a ``message_delivered`` event, as a messaging
platform's delivery feed would send) and three questions:

(a) *The truth.* Every email of the history, bucketed by the emails the customer received on the
    cap window's UTC days before it (:func:`affinity_sdk.sim.truth.email_sends`, read off the
    events): sends, unsubscribes from that email, the rate, and the planted mean probability.
(b) *The SDK's flag.* The events up to ``end`` go into a profile store with the ``engagement``
    view; :func:`~affinity_sdk.models.channels.channel_table` at ``end`` with
    :data:`~affinity_sdk.models.channels.DEFAULT_CAPS` and :func:`fatigued_segment` split the
    users the SDK may email (visible, not opted out of email) into fatigued and the rest; the
    outcome is the simulator's realised ``y_unsubscribe`` in the next two weeks. Rate ratio with a
    bootstrap 95 % interval (users resampled within each group, 2,000 draws, seed 0).
(c) *The model.* The SDK's unsubscribe propensity model (:mod:`affinity_sdk.models.propensity`,
    default features), trained as the demo trains it (cutoffs ``end - 4w`` and ``end - 2w``,
    horizon 2 weeks), scored at ``end`` against ``y_unsubscribe``: ROC AUC, and the AUC of the
    true probabilities (the ceiling). The research variant adds one column to the same rows,
    ``log1p(emails delivered on the 7 UTC days ending at the cutoff)`` (the quantity the email cap
    counts), refitted the same way; a second variant centres that column on its mean over the
    cutoff's users (added after the first variant's result on seed 1, and disclosed as such: the
    number of weekly campaigns differs between the training cutoffs and the scoring one, and the
    raw count carries that shift into every score). They are evaluated here and not added to
    :mod:`affinity_sdk.models.propensity_features`: a 7-day window count is not a forward-decay
    sum, so the store's propensity view cannot keep it exactly and additively as it keeps every
    other feature. Paired bootstrap 95 % interval of the AUC difference over users (2,000 draws,
    seed 0).

Run from the repository root (about a minute on two cores at the default size)::

    .venv/bin/python docs/research/fatigue_evaluation.py [N] [SEED]

It prints the tables quoted in ``docs/fatigue.md``.
"""

from __future__ import annotations

import sys
import time

import numpy as np
from numpy.typing import NDArray

from affinity_sdk.activate.evaluate import roc_auc
from affinity_sdk.capture.events import CHANNELS, EVENT_TYPE_CODES
from affinity_sdk.ingest.batch import EventBatch
from affinity_sdk.models.channels import DEFAULT_CAPS, channel_table, fatigued_segment
from affinity_sdk.models.propensity import PropensityModel, build_training_set, profile_features
from affinity_sdk.models.training import TrainingSet
from affinity_sdk.profile.store import ProfileStore
from affinity_sdk.sim.parameters import fatigue_multiplier
from affinity_sdk.sim.shop import ShopSimulation, simulate_shop
from affinity_sdk.sim.truth import email_sends

WEEK_MS = 7 * 86_400_000
DAY_MS = 86_400_000
N_BOOT = 2_000
BUCKETS = ((0, 0), (1, 1), (2, 2), (3, 3), (4, 4), (5, 99))


def truth_table(sim: ShopSimulation) -> None:
    sends = email_sends(sim.batch)
    p = sim.truth.p_unsubscribe_per_email[sends.user] * np.asarray(fatigue_multiplier(sends.emails_7d))
    print("(a) emails of the history by emails received in the 7 days before (truth, from events)")
    print("| emails in the 7 days before | emails | unsubscribes | rate | planted mean probability |")
    print("| --- | --- | --- | --- | --- |")
    for low, high in BUCKETS:
        inside = (sends.emails_7d >= low) & (sends.emails_7d <= high)
        label = str(low) if low == high else f"{low}+"
        n, k = int(inside.sum()), int(sends.unsubscribed[inside].sum())
        rate = k / n if n else float("nan")
        print(f"| {label} | {n:,} | {k:,} | {rate:.2%} | {p[inside].mean():.2%} |")


def _boot_ratio(
    y1: NDArray[np.bool_], y0: NDArray[np.bool_], rng: np.random.Generator
) -> NDArray[np.float64]:
    r1 = rng.binomial(len(y1), y1.mean(), N_BOOT) / len(y1)  # resampling 0/1 outcomes: binomial
    r0 = rng.binomial(len(y0), y0.mean(), N_BOOT) / len(y0)
    out: NDArray[np.float64] = r1 / np.maximum(r0, 1e-12)
    return out


def flag_table(sim: ShopSimulation) -> None:
    store = ProfileStore(views=("signals", "engagement"))
    store.ingest(sim.batch)
    table = channel_table(store, sim.end_ms)
    code = {u: i for i, u in enumerate(sim.batch.interners.users.names)}
    rows = np.array([code[u] for u in table["user_id"]], dtype=np.int64)
    emailable = store.channel_consent.mask("email", store.visible())
    store_code = {u: i for i, u in enumerate(store.interners.users.names)}
    may_email = emailable[[store_code[u] for u in table["user_id"]]]
    flagged = np.isin(table["user_id"], fatigued_segment().members(table))
    y = sim.truth.y_unsubscribe[rows]
    hf = sim.truth.high_frequency[rows]
    caps = ", ".join(f"{m} {c} in {w}" for m, (c, w) in DEFAULT_CAPS.items())
    print(f"\n(b) the SDK's fatigued flag at the end of the history (caps: {caps})")
    print(
        "| users the SDK may email | users | unsubscribed in the next 2 weeks | rate | on the high-frequency list |"
    )
    print("| --- | --- | --- | --- | --- |")
    groups = {"fatigued": may_email & flagged, "not fatigued": may_email & ~flagged}
    for name, g in groups.items():
        print(f"| {name} | {int(g.sum()):,} | {int(y[g].sum()):,} | {y[g].mean():.2%} | {hf[g].mean():.0%} |")
    rng = np.random.default_rng(0)
    y1, y0 = y[groups["fatigued"]], y[groups["not fatigued"]]
    boot = _boot_ratio(y1, y0, rng)
    lo, hi = np.percentile(boot, [2.5, 97.5])
    print(
        f"rate ratio fatigued / not: {y1.mean() / y0.mean():.2f} (95% bootstrap interval {lo:.2f}-{hi:.2f})"
    )
    # within the list and off it: is the flag more than "on the high-frequency list"?
    for name, part in (("on the high-frequency list", hf), ("off it", ~hf)):
        a, b = y[groups["fatigued"] & part], y[groups["not fatigued"] & part]
        if len(a) and len(b) and b.mean() > 0:
            boot = _boot_ratio(a, b, rng)
            lo, hi = np.percentile(boot, [2.5, 97.5])
            print(
                f"  {name}: fatigued {a.mean():.2%} of {len(a):,}, not {b.mean():.2%} of {len(b):,}; "
                f"ratio {a.mean() / b.mean():.2f} ({lo:.2f}-{hi:.2f})"
            )


def emails_7d(batch: EventBatch, cutoff_ms: int) -> NDArray[np.float64]:
    """Per user: emails delivered on the 7 UTC days ending on the cutoff's day, up to the cutoff."""
    today = cutoff_ms // DAY_MS
    rows = (
        (batch.event_type == EVENT_TYPE_CODES["message_delivered"])
        & (batch.channel == CHANNELS.index("email"))
        & (batch.ts_ms <= cutoff_ms)
        & (batch.ts_ms // DAY_MS > today - 7)
    )
    return np.bincount(batch.user[rows], minlength=len(batch.interners.users)).astype(np.float64)


def _with_column(data: TrainingSet, extra: NDArray[np.float64]) -> TrainingSet:
    from dataclasses import replace

    return replace(data, X=np.c_[data.X, extra], feature_names=(*data.feature_names, "log1p_emails_7d"))


def _paired_auc_diff(
    y: NDArray[np.bool_], p_new: NDArray[np.float64], p_old: NDArray[np.float64]
) -> tuple[float, float]:
    rng = np.random.default_rng(0)
    diffs = np.empty(N_BOOT)
    for i in range(N_BOOT):
        take = rng.integers(0, len(y), len(y))
        diffs[i] = roc_auc(y[take], p_new[take]) - roc_auc(y[take], p_old[take])
    lo, hi = np.percentile(diffs, [2.5, 97.5])
    return float(lo), float(hi)


def model_table(sim: ShopSimulation) -> None:
    cutoffs = [sim.end_ms - 4 * WEEK_MS, sim.end_ms - 2 * WEEK_MS]
    train = build_training_set(sim.batch, "unsubscribe", cutoffs, "2w")
    model = PropensityModel.fit(train)
    now = profile_features(sim.batch, sim.end_ms)
    seen = now.seen
    y = sim.truth.y_unsubscribe[seen]
    p_base = model.predict_proba(now.X)[seen]
    raw = {c: np.log1p(emails_7d(sim.batch, c)) for c in [*cutoffs, sim.end_ms]}
    print("\n(c) unsubscribe propensity, scored at the end of the history, next 2 weeks")
    print(f"users scored: {int(seen.sum()):,}, unsubscribed: {int(y.sum()):,} ({y.mean():.2%})")
    shown = ", ".join(
        f"{'end' if c == sim.end_ms else f'end - {(sim.end_ms - c) // WEEK_MS}w'} {np.expm1(v[seen]).mean():.2f}"
        for c, v in raw.items()
    )
    print(f"mean emails delivered in the 7 days to each cutoff: {shown}")
    print("| model | ROC AUC | AUC - default (95% paired bootstrap) | distinct probabilities | coefficient |")
    print("| --- | --- | --- | --- | --- |")
    base = roc_auc(y, p_base)
    print(f"| SDK model, default features | {base:.3f} | | {len(np.unique(p_base)):,} | |")
    # raw: the count as it is; centred: minus its mean over the cutoff's users, so a week with
    # more campaigns for everyone does not shift every score
    for name, centre in (("+ log1p(emails in 7 days)", False), ("+ the same, centred per cutoff", True)):

        def column(c: int, rows: NDArray[np.int64], centre: bool = centre) -> NDArray[np.float64]:
            v = raw[c][rows]
            out: NDArray[np.float64] = v - v.mean() if centre else v
            return out

        extra = np.empty(len(train))
        for c in cutoffs:
            at = train.cutoff_ms == c
            extra[at] = column(c, train.user[at])
        variant = PropensityModel.fit(_with_column(train, extra))
        scored = np.flatnonzero(seen)
        x = np.c_[now.X[seen], column(sim.end_ms, scored)]
        p_var = variant.predict_proba(x)
        auc = roc_auc(y, p_var)
        lo, hi = _paired_auc_diff(y, p_var, p_base)
        coef = variant.explain()["log1p_emails_7d"]
        print(
            f"| {name} | {auc:.3f} | {auc - base:+.3f} ({lo:+.3f} to {hi:+.3f}) | "
            f"{len(np.unique(p_var)):,} | {coef:+.2f} |"
        )
    print(f"| true probabilities (ceiling) | {roc_auc(y, sim.truth.p_unsubscribe[seen]):.3f} | | | |")
    print(f"calibration of the default model: {model.calibrator_.kind}")


def main(n: int, seed: int) -> None:
    started = time.perf_counter()
    sim = simulate_shop(n, weeks=12, horizon_weeks=2, seed=seed, deliveries=True)
    print(
        f"simulate_shop({n}, weeks=12, horizon_weeks=2, seed={seed}, deliveries=True): {len(sim.batch):,} events"
    )
    truth_table(sim)
    flag_table(sim)
    model_table(sim)
    print(f"\n{time.perf_counter() - started:.0f}s")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 20_000, int(sys.argv[2]) if len(sys.argv) > 2 else 0)
