"""The simulated events themselves: browsing sessions, orders (with coupons and refunds) and the
weekly log's simple events, as blocks of events with their product lines."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from affinity_sdk.sim.assembly import _Part, _part, _time_order
from affinity_sdk.sim.catalogue import Catalogue
from affinity_sdk.sim.customers import _Customers
from affinity_sdk.sim.parameters import (
    _APP,
    _HOUR_MS,
    _MIN_MS,
    _T,
    _WEB,
    _WEEK_MS,
    COUPON_DISCOUNT,
    P_FAVOURITE_BRAND,
    P_FAVOURITE_CATEGORY,
    P_PREFERRED_BAND,
    PROMO_DISCOUNT,
    REFUND_RATE,
)
from affinity_sdk.sim.weeks import _Calendar, _Log


def _choose(
    rng: np.random.Generator,
    cust: _Customers,
    user: NDArray[np.int64],
    category: NDArray[np.int64] | None = None,
) -> NDArray[np.int64]:
    """Products the customers ``user`` pick: favourites first, the rest spread by popularity."""
    shop = cust.shop
    m = int(user.shape[0])
    fav_cat = cust.fav_cat[user].astype(np.int64)
    if category is None:
        other = np.searchsorted(np.cumsum(shop.category_weight), rng.random(m) * shop.category_weight.sum())
        other = np.minimum(other, len(shop.category_weight) - 1)
        category = np.where(rng.random(m) < P_FAVOURITE_CATEGORY, fav_cat, other)
    band = np.where(rng.random(m) < P_PREFERRED_BAND, cust.band[user], rng.integers(0, 3, m)).astype(np.int64)
    use_brand = (category == fav_cat) & (rng.random(m) < P_FAVOURITE_BRAND)
    brand = cust.fav_brand[user].astype(np.int64)
    nb = len(shop.cat.brand_names)
    u = rng.random(m)
    lo, hi = shop.by_cat_band.bounds(category * 3 + band)
    out = shop.by_cat_band.pick(lo, hi, u)
    if use_brand.any():
        sel = np.flatnonzero(use_brand)
        key = category[sel] * nb + brand[sel]
        lo, hi = shop.by_cat_brand_band.bounds(key * 3 + band[sel])
        ok = hi > lo
        out[sel[ok]] = shop.by_cat_brand_band.pick(lo[ok], hi[ok], u[sel[ok]])
        # The favourite brand lacks that band in this category: stay with the brand, any band.
        miss = sel[~ok]
        lo, hi = shop.by_cat_brand.bounds(category[miss] * nb + brand[miss])
        out[miss] = shop.by_cat_brand.pick(lo, hi, u[miss])
    return out


def _session_ts(
    rng: np.random.Generator, start: NDArray[np.int64], slot: NDArray[np.int64]
) -> NDArray[np.int64]:
    # One slot per minute keeps events of a session in order; jitter inside the minute.
    return start + slot * _MIN_MS + (rng.random(int(slot.shape[0])) * 55_000).astype(np.int64)


def _within(counts: NDArray[np.int64]) -> NDArray[np.int64]:
    """0, 1, ..., c-1 for each count c, concatenated."""
    total = int(counts.sum())
    starts = np.repeat(np.cumsum(counts) - counts, counts)
    return np.arange(total, dtype=np.int64) - starts


def _browse_parts(
    rng: np.random.Generator, cust: _Customers, log: _Log, start_ms: int, first_session: int
) -> list[_Part]:
    s = int(log.browse_user.shape[0])
    cat = cust.shop.cat
    start = (
        start_ms + log.browse_week * _WEEK_MS + (rng.random(s) * (_WEEK_MS - 3 * _HOUR_MS)).astype(np.int64)
    )
    # Sessions in time order make every part nearly sorted, so the final sort and gathers are cheap.
    by_time = _time_order(start)
    start, user = start[by_time], log.browse_user[by_time]
    channel = np.where(log.browse_app[by_time] & (rng.random(s) < 0.6), _APP, _WEB).astype(np.uint8)
    session = first_session + np.arange(s, dtype=np.int64)
    parts: list[_Part] = []

    page = rng.random(s) < 0.5
    parts.append(
        _part(
            user[page],
            _T["page_viewed"],
            _session_ts(rng, start[page], np.zeros(int(page.sum()), np.int64)),
            channel[page],
            session_no=session[page],
        )
    )
    # search: for the favourite category half the time
    srch = np.flatnonzero(rng.random(s) < 0.3)
    q_cat = cat.category[_choose(rng, cust, user[srch])]
    parts.append(
        _part(
            user[srch],
            _T["products_searched"],
            _session_ts(rng, start[srch], np.ones(srch.shape[0], np.int64)),
            channel[srch],
            session_no=session[srch],
            aux=q_cat,
        )
    )
    # list view: four products of one category
    lst = np.flatnonzero(rng.random(s) < 0.3)
    l_cat = cat.category[_choose(rng, cust, user[lst])].astype(np.int64)
    rep = np.repeat(np.arange(lst.shape[0], dtype=np.int64), 4)
    l_prod = _choose(rng, cust, user[lst][rep], l_cat[rep])
    parts.append(
        _part(
            user[lst],
            _T["product_list_viewed"],
            _session_ts(rng, start[lst], np.full(lst.shape[0], 2, np.int64)),
            channel[lst],
            session_no=session[lst],
            aux=l_cat.astype(np.int32),
            items=(
                rep,
                l_prod,
                cat.price[l_prod],
                np.full(rep.shape[0], np.nan),
                np.ones(rep.shape[0], np.int32),
            ),
        )
    )
    # product views, each maybe followed by a cart add (some removed later) or a wishlist add
    n_views = np.minimum(1 + rng.poisson(1.6, s), 12).astype(np.int64)
    v_sess = np.repeat(np.arange(s, dtype=np.int64), n_views)
    v_i = _within(n_views)
    v_prod = _choose(rng, cust, user[v_sess])
    v_price = cat.price[v_prod]

    def single(mask: NDArray[np.bool_], etype: int, slot: NDArray[np.int64]) -> _Part:
        sess = v_sess[mask]
        k = int(mask.sum())
        prod = v_prod[mask]
        price = v_price[mask]
        return _part(
            user[sess],
            etype,
            _session_ts(rng, start[sess], slot),
            channel[sess],
            revenue=price,
            session_no=session[sess],
            items=(np.arange(k, dtype=np.int64), prod, price, np.full(k, np.nan), np.ones(k, np.int32)),
        )

    every = np.ones(v_sess.shape[0], bool)
    parts.append(single(every, _T["product_viewed"], 3 + 3 * v_i))
    added = rng.random(v_sess.shape[0]) < 0.12
    parts.append(single(added, _T["product_added"], 3 + 3 * v_i[added] + 1))
    wished = rng.random(v_sess.shape[0]) < 0.04
    parts.append(single(wished, _T["product_added_to_wishlist"], 3 + 3 * v_i[wished] + 2))
    removed = added & (rng.random(v_sess.shape[0]) < 0.35)
    parts.append(single(removed, _T["product_removed"], 3 + 3 * n_views[v_sess[removed]] + v_i[removed]))
    return parts


def _order_parts(
    rng: np.random.Generator, cust: _Customers, cal: _Calendar, log: _Log, start_ms: int, first_session: int
) -> list[_Part]:
    o = int(log.order_user.shape[0])
    cat = cust.shop.cat
    week = log.order_week
    start = start_ms + week * _WEEK_MS + (rng.random(o) * (_WEEK_MS - 3 * _HOUR_MS)).astype(np.int64)
    by_time = _time_order(start)
    start, user, week, coupon = (
        start[by_time],
        log.order_user[by_time],
        week[by_time],
        log.order_coupon[by_time],
    )
    week_start = start_ms + week * _WEEK_MS
    channel = np.where(log.order_app[by_time] & (rng.random(o) < 0.6), _APP, _WEB).astype(np.uint8)
    session = first_session + np.arange(o, dtype=np.int64)
    order_no = np.arange(o, dtype=np.int64)
    promo = cal.promo[week]

    n_lines = np.minimum(1 + rng.poisson(0.4, o), 6).astype(np.int64)
    l_ord = np.repeat(np.arange(o, dtype=np.int64), n_lines)
    l_i = _within(n_lines)
    l_prod = _choose(rng, cust, user[l_ord])
    l_price = cat.price[l_prod]
    l_qty = (1 + rng.poisson(0.15, l_ord.shape[0])).astype(np.int32)
    l_gross = l_price * l_qty
    l_disc = np.where(promo[l_ord], np.round(l_gross * PROMO_DISCOUNT, 2), np.nan)
    subtotal = np.bincount(l_ord, weights=l_gross, minlength=o)
    line_disc = np.bincount(l_ord, weights=np.nan_to_num(l_disc), minlength=o)
    coupon_disc = np.where(coupon, np.round((subtotal - line_disc) * COUPON_DISCOUNT, 2), 0.0)
    total_disc = line_disc + coupon_disc
    discount = np.where(promo | coupon, total_disc, np.nan)
    revenue = np.maximum(np.round(subtotal - total_disc, 2), 0.0)
    n_l = l_ord.shape[0]
    lines = (l_ord, l_prod, l_price, l_disc, l_qty)
    parts: list[_Part] = []
    for etype, offset in ((_T["product_viewed"], 0), (_T["product_added"], 1)):
        qty = np.ones(n_l, np.int32) if offset == 0 else l_qty
        parts.append(
            _part(
                user[l_ord],
                etype,
                _session_ts(rng, start[l_ord], 2 * l_i + offset),
                channel[l_ord],
                revenue=l_price * qty,
                session_no=session[l_ord],
                items=(np.arange(n_l, dtype=np.int64), l_prod, l_price, np.full(n_l, np.nan), qty),
            )
        )
    parts.append(
        _part(user, _T["cart_viewed"], _session_ts(rng, start, 2 * n_lines), channel, session_no=session)
    )
    parts.append(
        _part(
            user,
            _T["checkout_started"],
            _session_ts(rng, start, 2 * n_lines + 1),
            channel,
            revenue=np.round(subtotal - line_disc, 2),
            session_no=session,
            order_no=order_no,
            items=lines,
        )
    )
    c = np.flatnonzero(coupon)
    parts.append(
        _part(
            user[c],
            _T["coupon_applied"],
            _session_ts(rng, start[c], 2 * n_lines[c] + 2),
            channel[c],
            discount=coupon_disc[c],
            has_coupon=np.ones(c.shape[0], bool),
            session_no=session[c],
            order_no=order_no[c],
        )
    )
    order_ts = _session_ts(rng, start, 2 * n_lines + 3)
    parts.append(
        _part(
            user,
            _T["order_completed"],
            order_ts,
            channel,
            revenue=revenue,
            discount=discount,
            has_coupon=coupon,
            session_no=session,
            order_no=order_no,
            items=lines,
        )
    )
    # refunds land later in the same week, so every week's events stay inside it
    r = np.flatnonzero(rng.random(o) < REFUND_RATE)
    week_end = week_start[r] + _WEEK_MS - 1
    lo = order_ts[r] + _HOUR_MS
    r_ts = np.minimum(lo + (rng.random(r.shape[0]) * np.maximum(week_end - lo, 0)).astype(np.int64), week_end)
    parts.append(_part(user[r], _T["order_refunded"], r_ts, _WEB, revenue=revenue[r], order_no=order_no[r]))
    return parts


def _build_events(
    rng: np.random.Generator, cat: Catalogue, cust: _Customers, cal: _Calendar, log: _Log, start_ms: int
) -> list[_Part]:
    parts = _browse_parts(rng, cust, log, start_ms, 0)
    parts += _order_parts(rng, cust, cal, log, start_ms, log.browse_user.shape[0])
    ts = start_ms + log.s_week * _WEEK_MS + log.s_offset
    by_time = _time_order(ts)
    parts.append(
        _part(
            log.s_user[by_time],
            log.s_type[by_time],
            ts[by_time],
            log.s_channel[by_time],
            campaign=log.s_campaign[by_time],
            consent=log.s_consent[by_time],
        )
    )
    return parts
