"""The ground truth a simulation planted: each customer's latent state and the exact probabilities
of the horizon's outcomes given it, beside the realised outcomes."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from affinity_sdk.ingest.batch import IS_ACTIVITY, EventBatch
from affinity_sdk.ingest.interner import Interners
from affinity_sdk.sim.customers import _Customers
from affinity_sdk.sim.parameters import (
    _EMAIL,
    _T,
    APP_INSTALL_RATE,
    CONSENT_REVOKE_RATE,
    COUPON_RATE,
    EMAIL_SLOT_DAYS,
    fatigue_multiplier,
)
from affinity_sdk.sim.weeks import _Calendar, _emails_7d, _Log

__all__ = ["CustomerTruth", "EmailSends", "email_sends"]


@dataclass(eq=False)
class CustomerTruth:
    """The planted latent state of each customer and their true outcomes in the horizon.

    Arrays are aligned with user codes ``0 .. n-1`` of ``sim.batch.interners.users``.

    Outcomes over the horizon ``[end_ms, end_ms + horizon_ms)``; each ``p_*`` is the exact
    probability given the latent state at ``end_ms`` and each ``y_*`` the realised outcome
    (read off ``sim.future``):

    * ``purchase``: at least one ``order_completed``;
    * ``repurchase``: at least one order in the horizon *and* one in the history
      (``p_repurchase = p_purchase`` where ``purchased_before`` else 0; evaluate it on
      ``purchased_before`` customers);
    * ``churn``: nothing the customer did in the horizon (messages received do not count: dead
      customers: 1);
    * ``unsubscribe``: at least one ``unsubscribed`` (0 unless ``subscribed`` at ``end_ms``);
    * ``uninstall``: at least one ``app_uninstalled`` (includes install-then-uninstall).

    ``churned`` says the customer died (stopped acting for good) before ``end_ms``; ``segment``
    is the persona whose profile the customer's preferences were drawn from; ``high_frequency``
    says the customer is on the list that gets extra emails (``p_unsubscribe`` accounts for the
    fatigue of the horizon's planned emails).
    """

    user_ids: list[str]
    segment: NDArray[np.int16]
    favourite_category: NDArray[np.int32]
    favourite_brand: NDArray[np.int32]
    price_band: NDArray[np.int8]
    discount_sensitive: NDArray[np.bool_]
    discount_multiplier: NDArray[np.float64]
    purchase_rate: NDArray[np.float64]
    browse_rate: NDArray[np.float64]
    engagement: NDArray[np.float64]
    churn_hazard: NDArray[np.float64]
    p_open: NDArray[np.float64]
    p_click: NDArray[np.float64]
    p_unsubscribe_per_email: NDArray[np.float64]
    p_sms_click: NDArray[np.float64]
    p_push_open: NDArray[np.float64]
    app_open_rate: NDArray[np.float64]
    p_app_uninstall: NDArray[np.float64]
    app_prone: NDArray[np.bool_]
    sms_opt_in: NDArray[np.bool_]
    high_frequency: NDArray[np.bool_]
    signup_ms: NDArray[np.int64]
    churned: NDArray[np.bool_]
    subscribed: NDArray[np.bool_]
    app_installed: NDArray[np.bool_]
    consent: NDArray[np.bool_]
    purchased_before: NDArray[np.bool_]
    p_purchase: NDArray[np.float64]
    p_repurchase: NDArray[np.float64]
    p_churn: NDArray[np.float64]
    p_unsubscribe: NDArray[np.float64]
    p_uninstall: NDArray[np.float64]
    y_purchase: NDArray[np.bool_]
    y_repurchase: NDArray[np.bool_]
    y_churn: NDArray[np.bool_]
    y_unsubscribe: NDArray[np.bool_]
    y_uninstall: NDArray[np.bool_]


@dataclass(eq=False)
class EmailSends:
    """One row per email delivered (a ``message_delivered`` event on the email channel), in the
    batch's order: who got it, when, which campaign, how many emails the customer had received on
    the 6 UTC days before its day and earlier that day (``emails_7d``: the window of a ``"7d"``
    cap, this email not counted) and whether they unsubscribed from it (an ``unsubscribed``
    event of theirs with the same campaign)."""

    user: NDArray[np.int64]
    ts_ms: NDArray[np.int64]
    campaign: NDArray[np.int64]
    emails_7d: NDArray[np.int64]
    unsubscribed: NDArray[np.bool_]


def email_sends(batch: EventBatch) -> EmailSends:
    """The emails of a simulation run with ``deliveries=True``, read off its events
    (:class:`EmailSends`): the data behind "unsubscribing rises with the emails of the last 7 days".

    Examples
    --------
    >>> from affinity_sdk.sim.shop import simulate_shop
    >>> sends = email_sends(simulate_shop(300, weeks=4, seed=1, deliveries=True).batch)
    >>> bool(sends.emails_7d.max() <= 6), len(sends.user) > 300
    (True, True)
    """
    day_ms = 86_400_000
    email = batch.channel == _EMAIL
    rows = np.flatnonzero(email & (batch.event_type == _T["message_delivered"]))
    user = batch.user[rows].astype(np.int64)
    ts = batch.ts_ms[rows]
    day = ts // day_ms
    # per user in time order: deliveries on days D-6 .. D before this one
    order = np.lexsort((ts, user))
    key_user, key_day = user[order], day[order]
    position = np.arange(order.shape[0])
    days = key_day - (int(day.min()) - 6 if day.shape[0] else 0)  # >= 6, so a window start is >= 0
    keys = key_user << 32 | days
    start = np.searchsorted(keys, key_user << 32 | (days - 6), "left")
    emails_7d = np.empty(order.shape[0], np.int64)
    emails_7d[order] = position - start
    unsub = np.flatnonzero(email & (batch.event_type == _T["unsubscribed"]))
    left = batch.user[unsub].astype(np.int64) << 32 | batch.campaign[unsub].astype(np.int64)
    campaign = batch.campaign[rows].astype(np.int64)
    return EmailSends(
        user=user,
        ts_ms=ts,
        campaign=campaign,
        emails_7d=emails_7d,
        unsubscribed=np.isin(user << 32 | campaign, left),
    )


def _no_event_prob(
    alive: NDArray[np.bool_], hazard: NDArray[np.float64], weekly: list[NDArray[np.float64]]
) -> NDArray[np.float64]:
    """P(no event of a kind in the horizon) for a customer alive at its start.

    ``weekly[k]`` is P(no such event in week k | alive in week k, none before); the customer
    survives each week with ``1 - hazard``. Dead customers: 1.
    """
    surv = np.ones(alive.shape[0])
    total = np.zeros(alive.shape[0])
    for x in weekly:
        surv = surv * x
        total += surv * hazard
        surv = surv * (1.0 - hazard)
    return np.where(alive, total + surv, 1.0)


def _truth(
    cust: _Customers,
    cal: _Calendar,
    log: _Log,
    weeks: int,
    horizon: int,
    names: Interners,
    hist: EventBatch,
    fut: EventBatch,
) -> CustomerTruth:
    n = cust.n
    h = cust.hazard
    hw = range(weeks, weeks + horizon)
    boosted = np.exp(-cust.rate * cust.mult)
    plain = (1.0 - COUPON_RATE) * np.exp(-cust.rate) + COUPON_RATE * boosted
    no_order = [boosted if cal.promo[w] else plain for w in hw]
    p_purchase = 1.0 - _no_event_prob(log.alive, h, no_order)
    purchased_before = np.bincount(hist.user[hist.event_type == _T["order_completed"]], minlength=n) > 0
    no_unsub, email_quiet = _email_weeks(cust, log)
    p_unsub = np.where(log.subscribed, 1.0 - _no_event_prob(log.alive, h, no_unsub), 0.0)
    # nothing the customer did (a message received is no act of theirs, ACTIVITY_TYPES): given
    # nothing, nothing about the customer's state changes during the horizon
    inst = log.installed
    can_install = ~inst & cust.app_prone & ~log.ever_uninstalled
    quiet: list[NDArray[np.float64]] = []
    for w, x, email in zip(hw, no_order, email_quiet, strict=True):
        q = x * np.exp(-cust.browse)
        q = q * np.where(log.subscribed, email, 1.0)
        if cal.sms[w]:
            q = q * np.where(cust.sms_opt_in, 1.0 - cust.p_sms, 1.0)
        push_quiet = 1.0 - cust.p_push
        app = push_quiet * np.exp(-cust.app_rate) * (1.0 - cust.p_uninstall)
        q = q * np.where(inst, app, 1.0) * np.where(can_install, 1.0 - APP_INSTALL_RATE, 1.0)
        q = q * np.where(log.consent, 1.0 - CONSENT_REVOKE_RATE, 1.0)
        quiet.append(q)
    p_churn = _no_event_prob(log.alive, h, quiet)
    # uninstall: installed now, or installs during the horizon and uninstalls in a later week
    p_uninstall = _uninstall_prob(inst, can_install, log.alive, h, cust.p_uninstall, horizon)

    def any_of(etype: str) -> NDArray[np.bool_]:
        return np.bincount(fut.user[fut.event_type == _T[etype]], minlength=n) > 0

    y_purchase = any_of("order_completed")
    return CustomerTruth(
        user_ids=list(names.users.names),
        segment=cust.segment,
        favourite_category=cust.fav_cat,
        favourite_brand=cust.fav_brand,
        price_band=cust.band,
        discount_sensitive=cust.sensitive,
        discount_multiplier=cust.mult,
        purchase_rate=cust.rate,
        browse_rate=cust.browse,
        engagement=cust.engagement,
        churn_hazard=h,
        p_open=cust.p_open,
        p_click=cust.p_click,
        p_unsubscribe_per_email=cust.p_unsub,
        p_sms_click=cust.p_sms,
        p_push_open=cust.p_push,
        app_open_rate=cust.app_rate,
        p_app_uninstall=cust.p_uninstall,
        app_prone=cust.app_prone,
        sms_opt_in=cust.sms_opt_in,
        high_frequency=cust.high_frequency,
        signup_ms=np.zeros(n, np.int64),
        churned=~log.alive,
        subscribed=log.subscribed,
        app_installed=inst,
        consent=log.consent,
        purchased_before=purchased_before,
        p_purchase=p_purchase,
        p_repurchase=np.where(purchased_before, p_purchase, 0.0),
        p_churn=p_churn,
        p_unsubscribe=p_unsub,
        p_uninstall=p_uninstall,
        y_purchase=y_purchase,
        y_repurchase=y_purchase & purchased_before,
        y_churn=np.bincount(fut.user[IS_ACTIVITY[fut.event_type]], minlength=n) == 0,
        y_unsubscribe=any_of("unsubscribed"),
        y_uninstall=any_of("app_uninstalled"),
    )


def _email_weeks(cust: _Customers, log: _Log) -> tuple[list[NDArray[np.float64]], list[NDArray[np.float64]]]:
    """Per horizon week, for a customer subscribed and alive at its start: P(no unsubscribe) and
    P(no email event of theirs: no open, no unsubscribe).

    Such a customer received every email planned for them since ``end_ms``, so the emails of the
    7 days before each send, and with them its fatigue, follow from the plan."""
    no_unsub: list[NDArray[np.float64]] = []
    quiet: list[NDArray[np.float64]] = []
    last_week = log.emails_last_week
    for plan in log.emails_planned:
        keep = np.ones(cust.n)
        silent = np.ones(cust.n)
        for slot in range(len(EMAIL_SLOT_DAYS)):
            p = np.minimum(cust.p_unsub * fatigue_multiplier(_emails_7d(plan, last_week, slot)), 1.0)
            sent = plan[slot]
            keep = keep * np.where(sent, 1.0 - p, 1.0)
            event_free = (1.0 - cust.p_open) * (1.0 - p)
            silent = silent * np.where(sent, event_free, 1.0)
        no_unsub.append(keep)
        quiet.append(silent)
        last_week = plan
    return no_unsub, quiet


def _uninstall_prob(
    inst: NDArray[np.bool_],
    can_install: NDArray[np.bool_],
    alive: NDArray[np.bool_],
    h: NDArray[np.float64],
    q: NDArray[np.float64],
    horizon: int,
) -> NDArray[np.float64]:
    # probability mass of (alive, installed, not yet uninstalled) and (alive, not installed)
    p_inst = np.where(inst & alive, 1.0, 0.0)
    p_not = np.where(can_install & alive, 1.0, 0.0)
    uninstalled = np.zeros(inst.shape[0])
    for _ in range(horizon):
        uninstalled += p_inst * q
        # installs this week can only be uninstalled from next week on
        p_inst, p_not = p_inst * (1.0 - q) + p_not * APP_INSTALL_RATE, p_not * (1.0 - APP_INSTALL_RATE)
        p_inst = p_inst * (1.0 - h)
        p_not = p_not * (1.0 - h)
    return uninstalled
