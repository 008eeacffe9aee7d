"""The simulated customers' latent state: persona, favourite category / brand / price band and
behaviour rates, drawn around their persona's."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from affinity_sdk.sim.catalogue import Catalogue, _Shop, _shop
from affinity_sdk.sim.parameters import HIGH_FREQUENCY_SHARE


@dataclass(eq=False)
class _Customers:
    n: int
    shop: _Shop
    segment: NDArray[np.int16]
    fav_cat: NDArray[np.int32]
    fav_brand: NDArray[np.int32]
    band: NDArray[np.int8]
    sensitive: NDArray[np.bool_]
    mult: NDArray[np.float64]
    rate: NDArray[np.float64]
    browse: NDArray[np.float64]
    engagement: NDArray[np.float64]
    hazard: NDArray[np.float64]
    p_open: NDArray[np.float64]
    p_click: NDArray[np.float64]
    p_unsub: NDArray[np.float64]
    p_sms: NDArray[np.float64]
    p_push: NDArray[np.float64]
    app_rate: NDArray[np.float64]
    p_uninstall: NDArray[np.float64]
    app_prone: NDArray[np.bool_]
    sms_opt_in: NDArray[np.bool_]
    subscribed0: NDArray[np.bool_]
    signup_week: NDArray[np.int64]
    high_frequency: NDArray[np.bool_]


def _make_customers(
    rng: np.random.Generator,
    cat: Catalogue,
    n: int,
    n_seg: int,
    weeks: int,
    rng_extra: np.random.Generator,
) -> _Customers:
    """Customers drawn from ``rng`` as before extra emails existed; who is on the high-frequency
    email list from ``rng_extra`` (independent of everything else about the customer)."""
    shop = _shop(cat)
    n_cat = len(cat.category_names)
    # Personas: a top category (distinct while there are enough), brand, band and behaviour.
    seg_cat = np.concatenate([rng.permutation(n_cat), rng.choice(n_cat, max(0, n_seg - n_cat))])[:n_seg]
    lo, hi = shop.by_cat.bounds(seg_cat.astype(np.int64))
    seg_brand = cat.brand[shop.by_cat.pick(lo, hi, rng.random(n_seg))]
    seg_band = rng.integers(0, 3, n_seg)
    seg_disc = np.where(rng.random(n_seg) < 0.4, 0.8, 0.1)
    seg_rate = np.exp(rng.normal(np.log(0.12), 0.6, n_seg))
    seg_eng = rng.uniform(0.15, 0.75, n_seg)
    seg_app = rng.uniform(0.1, 0.7, n_seg)
    seg_sms = rng.uniform(0.05, 0.4, n_seg)
    seg_size = rng.dirichlet(np.full(n_seg, 3.0))

    segment = rng.choice(n_seg, n, p=seg_size).astype(np.int16)
    own = rng.random(n) < 0.85
    fav_cat = np.where(own, seg_cat[segment], rng.choice(n_cat, n, p=shop.category_weight)).astype(np.int32)
    # A non-persona favourite brand is a brand sold in the favourite category (by product count).
    lo, hi = shop.by_cat.bounds(fav_cat.astype(np.int64))
    any_idx = lo + np.floor(rng.random(n) * (hi - lo)).astype(np.intp)
    other_brand = cat.brand[shop.by_cat.order[any_idx]]
    keep = (fav_cat == seg_cat[segment]) & (rng.random(n) < 0.8)
    fav_brand = np.where(keep, seg_brand[segment], other_brand).astype(np.int32)
    band = np.where(rng.random(n) < 0.8, seg_band[segment], rng.integers(0, 3, n)).astype(np.int8)
    sensitive = rng.random(n) < seg_disc[segment]
    mult = np.where(sensitive, 4.0, 1.15)
    rate = rng.gamma(2.0, seg_rate[segment] / 2.0)
    m = seg_eng[segment]
    engagement = rng.beta(6.0 * m, 6.0 * (1.0 - m))
    browse = (0.4 + 5.0 * rate + 1.2 * engagement) * rng.gamma(4.0, 0.25, n)
    hazard = (0.004 + 0.08 * (1.0 - engagement) ** 2) / (1.0 + 2.0 * rate)
    if weeks > 1:
        signup = np.where(rng.random(n) < 0.5, 0, rng.integers(0, max(1, weeks // 2), n))
    else:
        signup = np.zeros(n, np.int64)
    return _Customers(
        n=n,
        shop=shop,
        segment=segment,
        fav_cat=fav_cat,
        fav_brand=fav_brand,
        band=band,
        sensitive=sensitive,
        mult=mult,
        rate=rate,
        browse=browse,
        engagement=engagement,
        hazard=hazard,
        p_open=0.03 + 0.5 * engagement,
        p_click=0.05 + 0.4 * engagement,
        p_unsub=0.003 + 0.06 * (1.0 - engagement) ** 2,
        p_sms=0.02 + 0.2 * engagement,
        p_push=0.02 + 0.3 * engagement,
        app_rate=0.3 + 3.0 * engagement,
        p_uninstall=0.005 + 0.08 * (1.0 - engagement) ** 2,
        app_prone=rng.random(n) < seg_app[segment],
        sms_opt_in=rng.random(n) < seg_sms[segment],
        subscribed0=rng.random(n) < 0.85,
        signup_week=signup.astype(np.int64),
        high_frequency=rng_extra.random(n) < HIGH_FREQUENCY_SHARE,
    )
