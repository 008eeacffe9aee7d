"""Best channel and best send hour against the truth of two small dedicated generators.

Messages per user and medium (email, sms, push, in_app; WhatsApp is left out because the batch
counts it as SMS) are Poisson with mean ``m``, sent at random over 60 days; each is opened with the
user's true rate on that medium, at an hour drawn from the user's true hour distribution.

- ``planted``: each user has one planted medium whose rate is ``LIFT`` times the population's
  ``BASE`` rate on it, and a planted hour that takes ``HOUR_SHARE`` of their engagements (the rest
  fall on four busy hours). The truth is then bimodal, not Beta / Dirichlet.
- ``conjugate``: rates drawn from a Beta per medium (mean ``BASE``, strength ``BETA_STRENGTH``) and
  the hour distribution from a Dirichlet (strength ``HOUR_KAPPA``) around a busy-hours profile:
  the world the empirical-Bayes model assumes.

Truth: the medium of the highest true rate, the hour of the highest true probability. Compared:
the shipped model (shrunk, priors fitted on the data), the raw argmax of the same decayed counts
(no shrinkage), the population's best for everyone, and a Bayes-optimal oracle that knows the
generator's priors and sees the plain counts.

Run: ``python docs/research/channel_evaluation.py [n_users] [seed]``.
"""

from __future__ import annotations

import json
import sys

import numpy as np
from numpy.typing import NDArray

from affinity_sdk.models.channels import channel_table
from affinity_sdk.profile.store import ProfileStore

MEDIA = ("email", "sms", "push", "in_app")
BASE = np.array([0.15, 0.25, 0.20, 0.10])
LIFT = 2.0
HOUR_SHARE = 0.5
BETA_STRENGTH = 8.0
HOUR_KAPPA = 10.0
BUSY = np.array([8, 12, 19, 20])
T0 = 1_767_225_600_000
DAY, HOUR = 86_400_000, 3_600_000
Array = NDArray[np.float64]


def busy_profile() -> Array:
    pi = np.full(24, 0.2)
    pi[BUSY] = 3.0
    out: Array = pi / pi.sum()
    return out


def planted_truth(n_users: int, rng: np.random.Generator) -> tuple[Array, Array, NDArray[np.int64]]:
    """Per user: true rates (n, 4), true hour distributions (n, 24), planted medium."""
    planted = rng.integers(len(MEDIA), size=n_users)
    rates = np.tile(BASE, (n_users, 1))
    rates[np.arange(n_users), planted] *= LIFT
    hours = np.zeros((n_users, 24))
    hours[:, BUSY] = (1.0 - HOUR_SHARE) / len(BUSY)
    hours[np.arange(n_users), rng.integers(24, size=n_users)] += HOUR_SHARE
    return rates, hours, planted


def conjugate_truth(n_users: int, rng: np.random.Generator) -> tuple[Array, Array, NDArray[np.int64]]:
    rates = rng.beta(BASE * BETA_STRENGTH, (1 - BASE) * BETA_STRENGTH, size=(n_users, len(MEDIA)))
    hours = rng.dirichlet(HOUR_KAPPA * busy_profile(), size=n_users)
    return rates, hours, np.zeros(n_users, dtype=np.int64)


def simulate(
    rates: Array, hours: Array, mean_messages: float, rng: np.random.Generator
) -> tuple[list[dict[str, object]], NDArray[np.int64], NDArray[np.int64]]:
    """Events, plain (delivered, opened) counts per (user, medium) and opens per (user, hour)."""
    n_users = rates.shape[0]
    counts = np.zeros((n_users, len(MEDIA), 2), dtype=np.int64)
    by_hour = np.zeros((n_users, 24), dtype=np.int64)
    events: list[dict[str, object]] = []
    for u in range(n_users):
        for m, medium in enumerate(MEDIA):
            for _ in range(rng.poisson(mean_messages)):
                day = int(rng.integers(60))
                sent = T0 + day * DAY + int(rng.integers(24)) * HOUR
                events.append(
                    {"type": "message_delivered", "user_id": f"u{u}", "timestamp": sent, "medium": medium}
                )
                counts[u, m, 0] += 1
                if rng.random() < rates[u, m]:
                    h = int(rng.choice(24, p=hours[u]))
                    at = T0 + day * DAY + h * HOUR + int(rng.integers(HOUR))
                    events.append(
                        {"type": "message_opened", "user_id": f"u{u}", "timestamp": at, "medium": medium}
                    )
                    counts[u, m, 1] += 1
                    by_hour[u, h] += 1
    return events, counts, by_hour


def oracle_channel(world: str, counts: NDArray[np.int64]) -> NDArray[np.int64]:
    """Highest posterior expected rate, knowing the generator's prior."""
    n, s = counts[:, :, 0].astype(float), counts[:, :, 1].astype(float)
    if world == "conjugate":
        a, b = BASE * BETA_STRENGTH, (1 - BASE) * BETA_STRENGTH
        best: NDArray[np.int64] = np.argmax((s + a) / (n + a + b), axis=1)
        return best
    table = np.tile(BASE, (len(MEDIA), 1))
    table[np.arange(len(MEDIA)), np.arange(len(MEDIA))] *= LIFT  # row j: planted on j
    log_like = s @ np.log(table).T + (n - s) @ np.log1p(-table).T
    post = np.exp(log_like - log_like.max(axis=1, keepdims=True))
    post /= post.sum(axis=1, keepdims=True)
    best = np.argmax(post @ table, axis=1)
    return best


def run(world: str, n_users: int, seed: int) -> None:
    print(f"\n{world}: {n_users} users, seed {seed}")
    print("msgs/medium | channel: shrunk  raw   popul. oracle | hour: shrunk  raw   popul. oracle")
    for mean_messages in (2.0, 5.0, 15.0, 40.0):
        rng = np.random.default_rng(seed)
        truth_fn = planted_truth if world == "planted" else conjugate_truth
        rates, hours, _ = truth_fn(n_users, rng)
        events, counts, by_hour = simulate(rates, hours, mean_messages, rng)
        store = ProfileStore(views=("signals", "engagement"), backend="reference")
        store.ingest("\n".join(json.dumps(e) for e in events).encode())
        now = T0 + 61 * DAY
        table = channel_table(store, now)
        codes = np.array([int(u[1:]) for u in table["user_id"].tolist()])
        view = store.view("engagement")
        users, media, acc = view.media_table()
        decayed = np.zeros((store.n_users, 5, 4))
        decayed[users, media] = acc[:, :4] * view.factor(now)
        names = store.interners.users.names
        row_of = np.array([int(names[c][1:]) for c in range(store.n_users)])
        raw_rate = np.full((n_users, len(MEDIA)), -1.0)
        seen = decayed[:, :4, 1] > 0
        raw_rate[row_of[np.nonzero(seen)[0]], np.nonzero(seen)[1]] = (
            decayed[:, :4, 2] / np.where(seen, decayed[:, :4, 1], 1)
        )[seen]
        true_best = np.argmax(rates, axis=1)[codes]
        true_hour = np.argmax(hours, axis=1)[codes]
        chosen = np.array([MEDIA.index(m) if m in MEDIA else -1 for m in table["best_channel"].tolist()])
        raw = np.argmax(raw_rate, axis=1)[codes]
        population = int(np.argmax(BASE))
        oracle = oracle_channel(world, counts)[codes]
        shrunk_hour = table["best_send_hour"]
        raw_hour = channel_table(store, now, strength=1e-9)["best_send_hour"]
        pop_hour = int(np.argmax(busy_profile()))
        prior = HOUR_KAPPA * busy_profile() if world == "conjugate" else None
        oracle_hour = (
            np.argmax(by_hour + prior, axis=1)[codes]
            if prior is not None
            else np.where(
                by_hour.max(axis=1) > 0,
                np.argmax(by_hour - 0.5 * np.isin(np.arange(24), BUSY), axis=1),
                pop_hour,
            )[codes]
        )
        print(
            f"{mean_messages:>11} | "
            f"{np.mean(chosen == true_best):.3f}  {np.mean(raw == true_best):.3f}  "
            f"{np.mean(true_best == population):.3f}  {np.mean(oracle == true_best):.3f} | "
            f"{np.mean(shrunk_hour == true_hour):.3f}  {np.mean(raw_hour == true_hour):.3f}  "
            f"{np.mean(true_hour == pop_hour):.3f}  {np.mean(oracle_hour == true_hour):.3f}"
        )


def main() -> None:
    n_users = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    seed = int(sys.argv[2]) if len(sys.argv) > 2 else 0
    for world in ("planted", "conjugate"):
        run(world, n_users, seed)


if __name__ == "__main__":
    main()
