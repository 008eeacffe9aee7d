"""The campaign calendar, the interned names, and the week-by-week simulation of every customer's
state (what happened each week, and the state at the history's end)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

import numpy as np
from numpy.typing import NDArray

from affinity_sdk.ingest.batch import NO_CAMPAIGN
from affinity_sdk.ingest.interner import Interners
from affinity_sdk.profile.channel_consent import encode_consent
from affinity_sdk.sim.catalogue import Catalogue
from affinity_sdk.sim.customers import _Customers
from affinity_sdk.sim.parameters import (
    _APP,
    _DAY_MS,
    _EMAIL,
    _HOUR_MS,
    _PUSH,
    _SMS,
    _T,
    _WEB,
    _WEEK_MS,
    APP_INSTALL_AT_SIGNUP,
    APP_INSTALL_RATE,
    CONSENT_REVOKE_RATE,
    COUPON_RATE,
    EMAIL_SLOT_DAYS,
    EXTRA_EMAIL_RATE,
    EXTRA_EMAIL_SLOTS,
    HIGH_FREQUENCY_EXTRA_RATE,
    PROMO_WEEK_RATE,
    fatigue_multiplier,
)

#: An unsubscribe from an email opts the customer out of email (and of email only).
_EMAIL_OPT_OUT = encode_consent(False, "email")


@dataclass(eq=False)
class _Calendar:
    promo: NDArray[np.bool_]  # per week
    n_email: NDArray[np.int64]  # email campaigns per week (1 or 2)
    sms: NDArray[np.bool_]  # an SMS campaign this week
    email_code: NDArray[np.int64]  # [week, j] campaign code
    extra_code: NDArray[np.int64]  # [week, k] code of the extra email in slot EXTRA_EMAIL_SLOTS[k]
    sms_code: NDArray[np.int64]
    push_code: NDArray[np.int64]
    names: list[str]


def _make_calendar(rng: np.random.Generator, n_weeks: int) -> _Calendar:
    promo = rng.random(n_weeks) < PROMO_WEEK_RATE
    n_email = 1 + (rng.random(n_weeks) < 0.5).astype(np.int64)
    sms = np.arange(n_weeks) % 2 == 0
    return _Calendar(
        promo=promo,
        n_email=n_email,
        sms=sms,
        email_code=np.full((n_weeks, 2), -1, np.int64),
        extra_code=np.full((n_weeks, len(EXTRA_EMAIL_SLOTS)), -1, np.int64),
        sms_code=np.full(n_weeks, -1, np.int64),
        push_code=np.full(n_weeks, -1, np.int64),
        names=[],
    )


def _make_interners(cat: Catalogue, n: int, cal: _Calendar, start_ms: int) -> Interners:
    names = Interners()
    width = max(7, len(str(n - 1)))
    for i in range(n):
        names.users.intern(f"c{i:0{width}d}")
    for name in cat.category_names:
        names.categories.intern(name)
    for name in cat.brand_names:
        names.brands.intern(name)
    for name in cat.product_ids:
        names.products.intern(name)
    start = datetime(1970, 1, 1, tzinfo=timezone.utc)  # noqa: UP017 - datetime.UTC needs Python 3.11 + timedelta(milliseconds=start_ms)
    for w in range(len(cal.promo)):
        day = (start + timedelta(weeks=w)).strftime("%Y-%m-%d")
        for j in range(int(cal.n_email[w])):
            cal.email_code[w, j] = names.campaigns.intern(f"email-{day}-{'ab'[j]}")
        if cal.sms[w]:
            cal.sms_code[w] = names.campaigns.intern(f"sms-{day}")
        cal.push_code[w] = names.campaigns.intern(f"push-{day}")
    # after the weekly campaigns, so theirs keep the codes they had before extra emails existed
    for w in range(len(cal.promo)):
        for k, slot in enumerate(EXTRA_EMAIL_SLOTS):
            day = (start + timedelta(weeks=w, days=EMAIL_SLOT_DAYS[slot])).strftime("%Y-%m-%d")
            cal.extra_code[w, k] = names.campaigns.intern(f"email-{day}-extra")
    return names


def _regular_slots(cal: _Calendar, w: int) -> list[int]:
    """The email slots of week ``w``'s weekly campaigns (Tuesday, and Thursday in weeks with two)."""
    return [1 + 2 * j for j in range(int(cal.n_email[w]))]


def _emails_7d(this_week: NDArray[np.bool_], last_week: NDArray[np.bool_], slot: int) -> NDArray[np.int64]:
    """Emails received in the 7 days before a send in ``slot`` (one slot a day, days ``D-6 .. D``):
    this week's earlier slots and last week's later ones (rows: slots, columns: customers)."""
    out: NDArray[np.int64] = this_week[:slot].sum(axis=0) + last_week[slot + 1 :].sum(axis=0)
    return out


# --- week-by-week state ---------------------------------------------------------------------
@dataclass(eq=False)
class _Log:
    """What happened each week, as (user, week, ...) rows; plus the state at the history's end."""

    browse_user: NDArray[np.int64]
    browse_week: NDArray[np.int64]
    browse_app: NDArray[np.bool_]
    order_user: NDArray[np.int64]
    order_week: NDArray[np.int64]
    order_coupon: NDArray[np.bool_]
    order_app: NDArray[np.bool_]
    # simple events: (user, week, type, channel, campaign, ts offset within week in ms)
    s_user: NDArray[np.int64]
    s_week: NDArray[np.int64]
    s_type: NDArray[np.uint8]
    s_channel: NDArray[np.uint8]
    s_campaign: NDArray[np.int32]
    s_offset: NDArray[np.int64]
    s_consent: NDArray[np.int8]
    # state at end_ms
    alive: NDArray[np.bool_]
    subscribed: NDArray[np.bool_]
    installed: NDArray[np.bool_]
    ever_uninstalled: NDArray[np.bool_]
    consent: NDArray[np.bool_]
    #: [slot, customer]: emails received in the history's last week
    emails_last_week: NDArray[np.bool_]
    #: [horizon week, slot, customer]: emails planned (weekly campaigns and extras) in the horizon
    emails_planned: NDArray[np.bool_]


def _clamp_offset(x: NDArray[np.float64]) -> NDArray[np.int64]:
    return np.minimum(x, _WEEK_MS - 1).astype(np.int64)


def _extra_plan(rng: np.random.Generator, cust: _Customers) -> NDArray[np.bool_]:
    """[slot, customer]: who is sent an extra email in each slot this week."""
    plan = np.zeros((len(EMAIL_SLOT_DAYS), cust.n), bool)
    rate = np.where(cust.high_frequency, HIGH_FREQUENCY_EXTRA_RATE, EXTRA_EMAIL_RATE)
    plan[list(EXTRA_EMAIL_SLOTS)] = rng.random((len(EXTRA_EMAIL_SLOTS), cust.n)) < rate
    return plan


def _simulate_weeks(
    rng: np.random.Generator,
    cust: _Customers,
    cal: _Calendar,
    weeks: int,
    horizon: int,
    rng_extra: np.random.Generator,
    deliveries: bool,
) -> _Log:
    """Simulate week by week. ``rng`` draws what the shop did before extra emails existed, in the
    same order as then (so those draws did not move); ``rng_extra`` draws the extra emails and
    the responses to them. ``deliveries``: log a ``message_delivered`` for every email, SMS and
    push message received."""
    n = cust.n
    alive = np.ones(n, bool)
    subscribed = cust.subscribed0.copy()
    installed = np.zeros(n, bool)
    ever_un = np.zeros(n, bool)
    consent = np.ones(n, bool)
    b_user: list[NDArray[np.int64]] = []
    b_week: list[NDArray[np.int64]] = []
    b_app: list[NDArray[np.bool_]] = []
    o_user: list[NDArray[np.int64]] = []
    o_week: list[NDArray[np.int64]] = []
    o_coupon: list[NDArray[np.bool_]] = []
    o_app: list[NDArray[np.bool_]] = []
    simple: list[tuple[NDArray[np.int64], int, int, int, NDArray[np.int32], NDArray[np.int64], int]] = []
    users = np.arange(n, dtype=np.int64)
    end_state: tuple[NDArray[np.bool_], ...] = ()
    last_week = np.zeros((len(EMAIL_SLOT_DAYS), n), bool)
    planned: list[NDArray[np.bool_]] = []

    def add(
        mask: NDArray[np.bool_], w: int, etype: int, channel: int, campaign: int, offset: Any, cons: int = -1
    ) -> None:
        idx = users[mask]
        off = (
            offset[mask].astype(np.int64)
            if isinstance(offset, np.ndarray)
            else np.full(idx.shape[0], offset, np.int64)
        )
        simple.append((idx, w, etype, channel, np.full(idx.shape[0], campaign, np.int32), off, cons))

    for w in range(weeks + horizon):
        active = alive & (cust.signup_week <= w)
        inst_start = installed & active
        # commerce
        nb = rng.poisson(cust.browse) * active
        coupon = rng.random(n) < COUPON_RATE
        boosted = coupon | bool(cal.promo[w])
        no = rng.poisson(cust.rate * np.where(boosted, cust.mult, 1.0)) * active
        b_user.append(np.repeat(users, nb))
        b_week.append(np.full(int(nb.sum()), w, np.int64))
        b_app.append(np.repeat(inst_start, nb))
        o_user.append(np.repeat(users, no))
        o_week.append(np.full(int(no.sum()), w, np.int64))
        o_coupon.append(np.repeat(coupon, no))
        o_app.append(np.repeat(inst_start, no))
        # emails, in slot order (one a day, 10:00): the weekly campaigns draw from rng as they
        # always did, extras from rng_extra; unsubscribing grows with the emails of the last 7 days
        plan = _extra_plan(rng_extra, cust)
        regular = _regular_slots(cal, w)
        plan[regular] = True
        if w >= weeks:
            planned.append(plan.copy())
        this_week = np.zeros_like(plan)
        for slot, day in enumerate(EMAIL_SLOT_DAYS):
            if not plan[slot].any():
                continue
            draw = rng if slot in regular else rng_extra
            send = day * _DAY_MS + 10 * _HOUR_MS
            recv = active & subscribed & plan[slot]
            fatigue = fatigue_multiplier(_emails_7d(this_week, last_week, slot))
            opened = recv & (draw.random(n) < cust.p_open)
            clicked = opened & (draw.random(n) < cust.p_click)
            unsub = recv & (draw.random(n) < np.minimum(cust.p_unsub * fatigue, 1.0))
            t_open = _clamp_offset(send + draw.exponential(6 * _HOUR_MS, n))
            t_click = _clamp_offset(t_open + draw.uniform(5_000, 300_000, n))
            t_unsub = _clamp_offset(send + draw.exponential(12 * _HOUR_MS, n))
            if slot in regular:
                code = int(cal.email_code[w, regular.index(slot)])
            else:
                code = int(cal.extra_code[w, EXTRA_EMAIL_SLOTS.index(slot)])
            if deliveries:
                add(recv, w, _T["message_delivered"], _EMAIL, code, send)
            add(opened, w, _T["email_opened"], _EMAIL, code, t_open)
            add(clicked, w, _T["email_clicked"], _EMAIL, code, t_click)
            add(unsub, w, _T["unsubscribed"], _EMAIL, code, t_unsub, _EMAIL_OPT_OUT)
            this_week[slot] = recv
            subscribed &= ~unsub
        last_week = this_week
        if cal.sms[w]:  # Friday 12:00
            clicked = active & cust.sms_opt_in & (rng.random(n) < cust.p_sms)
            t = _clamp_offset(4 * _DAY_MS + 12 * _HOUR_MS + rng.exponential(_HOUR_MS, n))
            if deliveries:
                sent = 4 * _DAY_MS + 12 * _HOUR_MS
                add(active & cust.sms_opt_in, w, _T["message_delivered"], _SMS, int(cal.sms_code[w]), sent)
            add(clicked, w, _T["sms_clicked"], _SMS, int(cal.sms_code[w]), t)
        # app: push Saturday 18:00, opens during the first six days, uninstalls on the last
        pushed = inst_start & (rng.random(n) < cust.p_push)
        t = _clamp_offset(5 * _DAY_MS + 18 * _HOUR_MS + rng.exponential(2 * _HOUR_MS, n))
        if deliveries:
            add(
                inst_start,
                w,
                _T["message_delivered"],
                _PUSH,
                int(cal.push_code[w]),
                5 * _DAY_MS + 18 * _HOUR_MS,
            )
        add(pushed, w, _T["push_opened"], _PUSH, int(cal.push_code[w]), t)
        n_open = rng.poisson(cust.app_rate) * inst_start
        idx = np.repeat(users, n_open)
        simple.append(
            (
                idx,
                w,
                _T["app_opened"],
                _APP,
                np.full(idx.shape[0], NO_CAMPAIGN, np.int32),
                (rng.random(idx.shape[0]) * 6 * _DAY_MS).astype(np.int64),
                -1,
            )
        )
        uninstall = inst_start & (rng.random(n) < cust.p_uninstall)
        add(uninstall, w, _T["app_uninstalled"], _APP, NO_CAMPAIGN, (6 + rng.random(n)) * _DAY_MS)
        p_inst = np.where(cust.signup_week == w, APP_INSTALL_AT_SIGNUP, APP_INSTALL_RATE)
        install = active & ~installed & cust.app_prone & ~ever_un & (rng.random(n) < p_inst)
        add(
            install, w, _T["app_installed"], _APP, NO_CAMPAIGN, (rng.random(n) * 6 * _DAY_MS).astype(np.int64)
        )
        installed = (installed & ~uninstall) | install
        ever_un |= uninstall
        revoke = active & consent & (rng.random(n) < CONSENT_REVOKE_RATE)
        add(
            revoke,
            w,
            _T["consent_changed"],
            _WEB,
            NO_CAMPAIGN,
            (rng.random(n) * _WEEK_MS).astype(np.int64),
            0,
        )
        consent &= ~revoke
        alive &= ~(active & (rng.random(n) < cust.hazard))
        if w == weeks - 1:
            end_state = (
                alive.copy(),
                subscribed.copy(),
                installed.copy(),
                ever_un.copy(),
                consent.copy(),
                last_week.copy(),
            )

    s_user = np.concatenate([s[0] for s in simple])
    sizes = [s[0].shape[0] for s in simple]
    return _Log(
        browse_user=np.concatenate(b_user),
        browse_week=np.concatenate(b_week),
        browse_app=np.concatenate(b_app),
        order_user=np.concatenate(o_user),
        order_week=np.concatenate(o_week),
        order_coupon=np.concatenate(o_coupon),
        order_app=np.concatenate(o_app),
        s_user=s_user,
        s_week=np.repeat(np.array([s[1] for s in simple], np.int64), sizes),
        s_type=np.repeat(np.array([s[2] for s in simple], np.uint8), sizes),
        s_channel=np.repeat(np.array([s[3] for s in simple], np.uint8), sizes),
        s_campaign=np.concatenate([s[4] for s in simple]),
        s_offset=np.concatenate([s[5] for s in simple]),
        s_consent=np.repeat(np.array([s[6] for s in simple], np.int8), sizes),
        alive=end_state[0],
        subscribed=end_state[1],
        installed=end_state[2],
        ever_uninstalled=end_state[3],
        consent=end_state[4],
        emails_last_week=end_state[5],
        emails_planned=np.stack(planned) if planned else np.zeros((0, len(EMAIL_SLOT_DAYS), n), bool),
    )
