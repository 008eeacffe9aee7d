"""The ground truth a simulation planted: each customer's latent state and the exact probabilities
of the horizon's outcomes given it, beside the realised outcomes."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from affinity_sdk.ingest.batch import EventBatch
from affinity_sdk.ingest.interner import Interners
from affinity_sdk.sim.customers import _Customers
from affinity_sdk.sim.parameters import _T, APP_INSTALL_RATE, CONSENT_REVOKE_RATE, COUPON_RATE
from affinity_sdk.sim.weeks import _Calendar, _Log

__all__ = ["CustomerTruth"]


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
    * ``churn``: no event at all in the horizon (dead customers: 1);
    * ``unsubscribe``: at least one ``unsubscribed`` (0 unless ``subscribed`` at ``end_ms``);
    * ``uninstall``: at least one ``app_uninstalled`` (includes install-then-uninstall).

    ``churned`` says the customer died (stopped acting for good) before ``end_ms``; ``segment``
    is the persona whose profile the customer's preferences were drawn from.
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
    no_unsub = [(1.0 - cust.p_unsub) ** int(cal.n_email[w]) for w in hw]
    p_unsub = np.where(log.subscribed, 1.0 - _no_event_prob(log.alive, h, no_unsub), 0.0)
    # no event at all: given none, nothing about the customer's state changes during the horizon
    inst = log.installed
    can_install = ~inst & cust.app_prone & ~log.ever_uninstalled
    quiet: list[NDArray[np.float64]] = []
    for w, x in zip(hw, no_order, strict=True):
        q = x * np.exp(-cust.browse)
        email = ((1.0 - cust.p_open) * (1.0 - cust.p_unsub)) ** int(cal.n_email[w])
        q = q * np.where(log.subscribed, email, 1.0)
        if cal.sms[w]:
            q = q * np.where(cust.sms_opt_in, 1.0 - cust.p_sms, 1.0)
        app = (1.0 - cust.p_push) * np.exp(-cust.app_rate) * (1.0 - cust.p_uninstall)
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
        y_churn=np.bincount(fut.user, minlength=n) == 0,
        y_unsubscribe=any_of("unsubscribed"),
        y_uninstall=any_of("app_uninstalled"),
    )


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
