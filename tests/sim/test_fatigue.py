"""Email fatigue in the simulator: extra emails for a high-frequency list, an unsubscribe
probability that grows with the emails of the last 7 days, delivery events the engagement view
counts, and true probabilities that account for it."""

from __future__ import annotations

import numpy as np
import pytest

from affinity_sdk.capture import events as ev
from affinity_sdk.ingest.batch import EventBatch, take_rows
from affinity_sdk.sim.parameters import FATIGUE_FREE_EMAILS, fatigue_multiplier
from affinity_sdk.sim.shop import ShopSimulation, simulate_shop
from affinity_sdk.sim.truth import email_sends

T = ev.EVENT_TYPE_CODES
DAY = 86_400_000


@pytest.fixture(scope="module")
def shop() -> ShopSimulation:
    return simulate_shop(8000, weeks=8, horizon_weeks=2, seed=21, deliveries=True)


def test_the_fatigue_curve() -> None:
    n = np.arange(8)
    f = np.asarray(fatigue_multiplier(n))
    assert np.all(f[: FATIGUE_FREE_EMAILS + 1] == 1.0)  # a normal week costs nothing
    assert np.all(np.diff(f[FATIGUE_FREE_EMAILS:]) > 0)  # then every email adds to it


def test_deliveries_only_add_events() -> None:
    """``deliveries=True`` adds one ``message_delivered`` per email and changes nothing else."""
    plain = simulate_shop(600, weeks=4, seed=8)
    both = simulate_shop(600, weeks=4, seed=8, deliveries=True)
    assert not np.any(plain.batch.event_type == T["message_delivered"])
    delivered = both.batch.event_type == T["message_delivered"]
    rest = take_rows(both.batch, ~delivered)
    for name in ("user", "event_type", "ts_ms", "channel", "campaign", "revenue"):
        np.testing.assert_array_equal(getattr(rest, name), getattr(plain.batch, name), err_msg=name)
    b = both.batch
    media = {ev.CHANNELS[c] for c in np.unique(b.channel[delivered]).tolist()}
    assert media == {"email", "sms", "push"}
    # every open, click and unsubscribe is of a message delivered to that customer on its medium
    for kind, medium in (
        ("email_opened", "email"),
        ("email_clicked", "email"),
        ("unsubscribed", "email"),
        ("sms_clicked", "sms"),
        ("push_opened", "push"),
    ):
        on = delivered & (b.channel == ev.CHANNELS.index(medium))
        sent = set(zip(b.user[on].tolist(), b.campaign[on].tolist(), strict=True))
        rows = b.event_type == T[kind]
        assert rows.any() and set(zip(b.user[rows].tolist(), b.campaign[rows].tolist(), strict=True)) <= sent


def test_email_sends_counts_the_last_7_days() -> None:
    """``email_sends`` against a plain loop over the deliveries."""
    sim = simulate_shop(150, weeks=4, seed=4, deliveries=True)
    sends = email_sends(sim.batch)
    b = sim.batch
    rows = np.flatnonzero(
        (b.event_type == T["message_delivered"]) & (b.channel == ev.CHANNELS.index("email"))
    )
    assert len(sends.user) == len(rows)
    unsub = {
        (u, c)
        for u, c, t in zip(b.user.tolist(), b.campaign.tolist(), b.event_type.tolist(), strict=True)
        if t == T["unsubscribed"]
    }
    for i, r in enumerate(rows.tolist()):
        u, ts = int(b.user[r]), int(b.ts_ms[r])
        day = ts // DAY
        before = [
            q
            for q in rows.tolist()
            if b.user[q] == u and day - 6 <= b.ts_ms[q] // DAY and (b.ts_ms[q], q) < (ts, r)
        ]
        assert sends.emails_7d[i] == len(before)
        assert sends.unsubscribed[i] == ((u, int(b.campaign[r])) in unsub)


def test_unsubscribing_rises_with_the_emails_of_the_last_7_days(shop: ShopSimulation) -> None:
    sends = email_sends(shop.batch)
    base = shop.truth.p_unsubscribe_per_email[sends.user]
    expected = base * np.asarray(fatigue_multiplier(sends.emails_7d))
    rates = []
    for low, high in ((0, FATIGUE_FREE_EMAILS), (FATIGUE_FREE_EMAILS + 1, 3), (4, 9)):
        inside = (sends.emails_7d >= low) & (sends.emails_7d <= high)
        assert inside.sum() > 2000
        observed = sends.unsubscribed[inside].sum()
        p = expected[inside]
        # the realised unsubscribes match the planted curve in each bucket
        assert abs(observed - p.sum()) < 4.5 * np.sqrt((p * (1 - p)).sum()) + 1
        rates.append(observed / inside.sum())
    assert rates[0] < rates[1] < rates[2] and rates[2] > 2 * rates[0]
    # not because those customers are different: their base probabilities are alike
    busy = sends.emails_7d > FATIGUE_FREE_EMAILS
    assert abs(base[busy].mean() - base[~busy].mean()) < 0.2 * base.mean()


def test_the_high_frequency_list_gets_more_email_and_unsubscribes_more(shop: ShopSimulation) -> None:
    t = shop.truth
    n = len(t.user_ids)
    b = shop.batch
    email = (b.event_type == T["message_delivered"]) & (b.channel == ev.CHANNELS.index("email"))
    emails = np.bincount(b.user[email], minlength=n)
    ever_subscribed = emails > 0
    hf = t.high_frequency & ever_subscribed
    assert emails[hf].mean() > 1.5 * emails[~t.high_frequency & ever_subscribed].mean()
    unsub = np.bincount(b.user[b.event_type == T["unsubscribed"]], minlength=n) > 0
    assert unsub[hf].mean() > 1.3 * unsub[~t.high_frequency & ever_subscribed].mean()
    # and the number of emails varies from week to week: on the list, most get 3+ more in one
    # week than in another; off it, hardly anyone
    week = (b.ts_ms - shop.start_ms) // (7 * DAY)
    per_week = np.zeros((n, 8))
    np.add.at(per_week, (b.user[email], week[email]), 1)
    spread = per_week.max(axis=1) - per_week.min(axis=1) >= 3
    every_week = per_week.min(axis=1) > 0
    assert spread[every_week & t.high_frequency].mean() > 0.5
    assert spread[every_week & ~t.high_frequency].mean() < 0.05


@pytest.mark.parametrize("deliveries", [False, True])
@pytest.mark.parametrize("outcome", ["unsubscribe", "churn"])
def test_true_probabilities_account_for_fatigue(outcome: str, deliveries: bool) -> None:
    sim = simulate_shop(6000, weeks=6, horizon_weeks=2, seed=9, deliveries=deliveries)
    t = sim.truth
    p = getattr(t, f"p_{outcome}")
    y = getattr(t, f"y_{outcome}").astype(float)
    groups = [t.high_frequency, ~t.high_frequency]
    for g in groups:
        assert abs(p[g].sum() - y[g].sum()) < 4.5 * np.sqrt((p[g] * (1 - p[g])).sum()) + 1
    if outcome == "unsubscribe":
        # the high-frequency list is planned more email in the horizon, so it is likelier to leave
        sub = t.subscribed & ~t.churned
        assert p[sub & t.high_frequency].mean() > 1.3 * p[sub & ~t.high_frequency].mean()
    if outcome == "churn" and deliveries:  # a message received is no act of the customer's
        without = simulate_shop(6000, weeks=6, horizon_weeks=2, seed=9).truth
        np.testing.assert_array_equal(p, without.p_churn)
        np.testing.assert_array_equal(t.y_churn, without.y_churn)


def test_the_engagement_view_sees_the_fatigued(shop: ShopSimulation) -> None:
    """``channel_table``'s fatigued flag equals a count of deliveries on each cap's UTC days."""
    from affinity_sdk.models.channels import DEFAULT_CAPS, channel_table
    from affinity_sdk.profile.store import ProfileStore

    store = ProfileStore(views=("signals", "engagement"))
    store.ingest(EventBatch.from_events(shop.iter_events(), shop.batch.interners))
    table = channel_table(store, shop.end_ms)
    assert {window for _, window in DEFAULT_CAPS.values()} == {"7d"}
    b = shop.batch
    today = shop.end_ms // DAY  # the cap counts the UTC days today - 6 .. today
    recent = (b.event_type == T["message_delivered"]) & (b.ts_ms // DAY > today - 7)
    over = np.zeros(len(shop.truth.user_ids), bool)
    for medium in ("email", "sms", "push"):
        on = recent & (b.channel == ev.CHANNELS.index(medium))
        over |= np.bincount(b.user[on], minlength=over.shape[0]) >= DEFAULT_CAPS[medium][0]
    names = shop.batch.interners.users.names
    code = {u: i for i, u in enumerate(names)}
    rows = np.array([code[u] for u in table["user_id"]])
    np.testing.assert_array_equal(table["fatigued"], over[rows])
    assert 0.05 < table["fatigued"].mean() < 0.5
    # the high-frequency list is over-represented among the fatigued
    hf = shop.truth.high_frequency[rows]
    assert hf[table["fatigued"]].mean() > 2 * hf.mean()
