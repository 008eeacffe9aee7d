"""A deterministic (seeded) simulator of an online shop, with the ground truth it planted.

:func:`simulate_shop` draws a catalogue (products with category, brand and price), customers with
latent preferences (a persona/segment, favourite category and brand, preferred price band,
discount sensitivity, purchase rate, engagement, churn hazard) and simulates them week by week:
browsing sessions (views, searches, list views, cart adds and removals, wishlists), orders (with
shop-wide promotions, personal coupons and rare refunds), email / SMS / push campaigns with opens,
clicks and unsubscribes, app installs, opens and uninstalls, consent revocations, and churn.

Everything is generated with vectorized numpy straight into :class:`~affinity_sdk.ingest.batch.EventBatch`
columns (about half a million events per second on one busy core, so 10M events in well under a
minute); :meth:`ShopSimulation.iter_events` rebuilds the typed events lazily for small simulations
and for writing NDJSON.

The process, per customer and week ``w`` (weeks start at ``start``; only customers that have signed
up and are still alive act; all draws independent given the latent state; names in ``code`` are
:class:`CustomerTruth` fields or module constants):

* browse sessions ~ Poisson(``browse_rate``): optional page view, search and list view, then
  product views, some added to the cart (some removed again) or to the wishlist;
* orders ~ Poisson(``purchase_rate`` × ``m``), ``m = discount_multiplier`` (4 for discount-sensitive
  customers, 1.15 otherwise) in a shop-wide promotion week (:data:`PROMO_DISCOUNT` off every line)
  or when the customer holds a personal coupon that week (probability :data:`COUPON_RATE`,
  :data:`COUPON_DISCOUNT` off the order), else 1; each order is refunded later that week with
  probability :data:`REFUND_RATE`;
* every product pick (view, list, order line) is in the favourite category with probability
  :data:`P_FAVOURITE_CATEGORY` (else a category by popularity), on the favourite brand with
  probability :data:`P_FAVOURITE_BRAND` when in the favourite category, and in the preferred price
  band with probability :data:`P_PREFERRED_BAND`; within that, products follow popularity;
* every email campaign of the week (1 or 2) reaches subscribed customers: opened with ``p_open``,
  clicked after opening with ``p_click``, unsubscribed from with ``p_unsubscribe_per_email``;
* SMS campaigns (even weeks) reach SMS opt-ins, clicked with ``p_sms_click``; push campaigns
  (weekly) reach customers with the app installed at the start of the week, opened with
  ``p_push_open``; app opens ~ Poisson(``app_open_rate``) for those customers;
* an installed app is uninstalled with ``p_app_uninstall``; an ``app_prone`` customer who never
  uninstalled installs it with :data:`APP_INSTALL_RATE` (:data:`APP_INSTALL_AT_SIGNUP` in the
  signup week);
* a customer who has consent revokes it with :data:`CONSENT_REVOKE_RATE`;
* at the end of the week the customer dies (churns for good) with ``churn_hazard``.

Engagement (a per-customer Beta draw around the persona's) raises opens, clicks, push opens and
app use, and lowers churn, unsubscribe and uninstall hazards, so those outcomes are correlated as
in real shops.

Because the horizon's events come from the same process, the true outcome probabilities in
:class:`CustomerTruth` follow exactly from the latent state at ``end_ms``.

Examples
--------
>>> sim = simulate_shop(200, weeks=4, horizon_weeks=1, seed=1)
>>> len(sim.batch) > 0, len(sim.truth.user_ids) == 200
(True, True)
>>> bool((sim.batch.ts_ms < sim.end_ms).all() and (sim.future.ts_ms >= sim.end_ms).all())
True
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from os import PathLike
from typing import Any, Final, Literal

import msgspec
import numpy as np
from numpy.typing import NDArray

from affinity_sdk._units import to_epoch_ms
from affinity_sdk.capture import events as ev
from affinity_sdk.ingest.batch import NO_CAMPAIGN, NO_CONSENT, EventBatch, Interners

__all__ = ["Catalogue", "CustomerTruth", "EventDetails", "ShopSimulation", "cdnow_orders", "simulate_shop"]

Which = Literal["history", "future"]

_MIN_MS: Final = 60_000
_HOUR_MS: Final = 3_600_000
_DAY_MS: Final = 86_400_000
_WEEK_MS: Final = 7 * _DAY_MS

_CATEGORY_NAMES: Final = (
    "apparel",
    "shoes",
    "electronics",
    "home",
    "beauty",
    "sports",
    "toys",
    "books",
    "grocery",
    "garden",
    "jewelry",
    "pets",
    "automotive",
    "health",
    "music",
    "office",
    "baby",
    "outdoor",
    "kitchen",
    "games",
)
_BRAND_HEADS: Final = (
    "Nor",
    "Vel",
    "Kai",
    "Zen",
    "Aur",
    "Lum",
    "Ori",
    "Tes",
    "Mar",
    "Sol",
    "Bri",
    "Cor",
    "Dal",
    "Fen",
    "Hal",
    "Ivo",
)
_BRAND_TAILS: Final = ("a", "ix", "on", "era", "ico", "us", "wood", "line", "ora", "ex")

_WEB: Final = ev.CHANNELS.index("web")
_APP: Final = ev.CHANNELS.index("app")
_EMAIL: Final = ev.CHANNELS.index("email")
_SMS: Final = ev.CHANNELS.index("sms")
_PUSH: Final = ev.CHANNELS.index("push")
_T = ev.EVENT_TYPE_CODES

#: Parameters of the process shared by every customer (see the module docstring).
COUPON_RATE: Final = 0.15
REFUND_RATE: Final = 0.03
PROMO_WEEK_RATE: Final = 0.25
PROMO_DISCOUNT: Final = 0.20
COUPON_DISCOUNT: Final = 0.10
CONSENT_REVOKE_RATE: Final = 0.001
APP_INSTALL_AT_SIGNUP: Final = 0.6
APP_INSTALL_RATE: Final = 0.02
#: Share of product choices made in the favourite category; of those, share on the favourite brand.
P_FAVOURITE_CATEGORY: Final = 0.5
P_FAVOURITE_BRAND: Final = 0.6
#: Share of product choices made in the preferred price band (the rest: any band).
P_PREFERRED_BAND: Final = 0.75


# --------------------------------------------------------------------------------------------
# public data structures
# --------------------------------------------------------------------------------------------
@dataclass(eq=False)
class Catalogue:
    """The shop's products, indexed by product code (``interners.products``).

    ``category`` and ``brand`` are codes in ``interners.categories`` / ``interners.brands``;
    ``price_band`` is 0 (low), 1 (mid) or 2 (premium): the product's price tertile within its
    category; ``popularity`` is the relative weight of the product in non-personal choices.
    """

    product_ids: list[str]
    category: NDArray[np.int32]
    brand: NDArray[np.int32]
    price: NDArray[np.float64]
    price_band: NDArray[np.int8]
    popularity: NDArray[np.float64]
    category_names: list[str]
    brand_names: list[str]

    def __len__(self) -> int:
        return len(self.product_ids)


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


@dataclass(eq=False)
class EventDetails:
    """Per-event fields a batch does not keep, aligned with the batch's rows.

    ``order_no`` (-1: none) names the order of order, checkout, coupon and refund events;
    ``session_no`` (-1: none) the browsing session; ``aux`` is the category code searched for or
    listed (``products_searched`` / ``product_list_viewed``), -1 otherwise; ``first_id`` is the
    serial number behind the first row's ``event_id``.
    """

    order_no: NDArray[np.int64]
    session_no: NDArray[np.int64]
    aux: NDArray[np.int32]
    first_id: int


@dataclass(eq=False)
class ShopSimulation:
    """A simulated shop: the history, the horizon's events and the ground truth.

    ``batch`` holds every event with ``start_ms <= ts < end_ms``, ``future`` those with
    ``end_ms <= ts < end_ms + horizon_ms``; both are sorted by time and share one
    :class:`~affinity_sdk.ingest.batch.Interners` whose users, products, categories, brands and
    campaigns are interned up front (user code ``i`` is customer ``i`` of ``truth``).
    """

    batch: EventBatch
    future: EventBatch
    start_ms: int
    end_ms: int
    horizon_ms: int
    seed: int
    truth: CustomerTruth
    catalogue: Catalogue
    details: EventDetails
    future_details: EventDetails

    def _pick(self, which: Which) -> tuple[EventBatch, EventDetails]:
        if which == "history":
            return self.batch, self.details
        if which == "future":
            return self.future, self.future_details
        raise ValueError(f"which must be 'history' or 'future', got {which!r}")

    def event_ids(self, which: Which = "history") -> list[str]:
        """The ``event_id`` strings of the batch's rows (``batch.event_id`` holds their hashes).

        Examples
        --------
        >>> from affinity_sdk.ingest.batch import event_id_hash
        >>> sim = simulate_shop(50, weeks=2, horizon_weeks=1, seed=3)
        >>> event_id_hash(sim.event_ids()[0]) == int(sim.batch.event_id[0])
        True
        """
        batch, details = self._pick(which)
        prefix = _id_prefix(self.seed)
        return [f"{prefix}{i:011d}" for i in range(details.first_id, details.first_id + len(batch))]

    def iter_events(self, which: Which = "history") -> Iterator[ev.Event]:
        """Rebuild the typed events (:mod:`affinity_sdk.capture.events` Structs) row by row.

        Meant for small simulations and for writing NDJSON: it builds one Struct per event.
        ``EventBatch.from_events(sim.iter_events(), sim.batch.interners)`` equals ``sim.batch``.

        Examples
        --------
        >>> sim = simulate_shop(30, weeks=2, horizon_weeks=1, seed=2)
        >>> events = list(sim.iter_events())
        >>> len(events) == len(sim.batch), type(events[0]).__module__
        (True, 'affinity_sdk.capture.events')
        """
        batch, details = self._pick(which)
        yield from _iter_events(batch, details, self.seed)

    def write_ndjson(self, path: str | PathLike[str], which: Which = "history") -> int:
        """Write the events as NDJSON (one JSON event per line, msgspec); return how many.

        Examples
        --------
        >>> import pathlib, tempfile
        >>> sim = simulate_shop(20, weeks=1, horizon_weeks=1, seed=4)
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     n = sim.write_ndjson(pathlib.Path(tmp) / "events.ndjson")
        ...     lines = (pathlib.Path(tmp) / "events.ndjson").read_bytes().count(b"\\n")
        >>> n == lines == len(sim.batch)
        True
        """
        encoder = msgspec.json.Encoder()
        count = 0
        chunk: list[ev.Event] = []
        with open(path, "wb") as out:
            for event in self.iter_events(which):
                chunk.append(event)
                if len(chunk) == 8192:
                    out.write(encoder.encode_lines(chunk))
                    count += len(chunk)
                    chunk.clear()
            out.write(encoder.encode_lines(chunk))
            count += len(chunk)
        return count

    def to_arrow(self, which: Which = "history") -> Any:
        """The events as a flat ``pyarrow.Table``, one row per event (needs ``pyarrow``).

        The layout is the one :meth:`EventBatch.from_arrow <affinity_sdk.ingest.batch.EventBatch.from_arrow>`
        reads, so ``EventBatch.from_arrow(sim.to_arrow(), sim.batch.interners)`` rebuilds the batch:
        ``type``, ``user_id``, ``timestamp`` (``timestamp[ms, UTC]``), ``event_id`` (string),
        ``channel``, ``revenue``, ``discount``, ``coupon``, ``campaign_id``, ``granted`` and
        ``products``: ``list<struct<product_id, category, brand, price, discount, quantity>>``
        (single-product events carry a one-element list). Also ``session_id``, ``order_id``,
        ``query`` and ``category`` (the listed category). Null where an event has no such field.

        Examples
        --------
        >>> sim = simulate_shop(20, weeks=1, horizon_weeks=1, seed=4)
        >>> table = sim.to_arrow()
        >>> table.num_rows == len(sim.batch), table.column_names[:3]
        (True, ['type', 'user_id', 'timestamp'])
        """
        batch, details = self._pick(which)
        return _to_arrow(batch, details, self.seed)

    def write_parquet(self, path: str | PathLike[str], which: Which = "history") -> int:
        """Write :meth:`to_arrow`'s table to a Parquet file (needs ``pyarrow``); return the row count.

        Examples
        --------
        >>> import pathlib, tempfile
        >>> import pyarrow.parquet as pq
        >>> sim = simulate_shop(20, weeks=1, horizon_weeks=1, seed=4)
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     n = sim.write_parquet(pathlib.Path(tmp) / "events.parquet")
        ...     rows = pq.read_metadata(pathlib.Path(tmp) / "events.parquet").num_rows
        >>> n == rows == len(sim.batch)
        True
        """
        import pyarrow.parquet as pq

        table = self.to_arrow(which)
        pq.write_table(table, path)
        return int(table.num_rows)


# --------------------------------------------------------------------------------------------
# the simulator
# --------------------------------------------------------------------------------------------
def simulate_shop(
    n_customers: int = 1000,
    *,
    weeks: int = 12,
    horizon_weeks: int = 2,
    n_categories: int = 12,
    n_brands: int = 40,
    n_products: int = 2000,
    n_segments: int = 12,
    seed: int = 0,
    start: str | datetime = "2026-01-05T00:00:00Z",
) -> ShopSimulation:
    """Simulate ``weeks`` of shop history and ``horizon_weeks`` after it, deterministically.

    Parameters
    ----------
    n_customers
        Number of customers (user ids ``c0000000``, ``c0000001``, ...). About 6 events per
        customer and week with the defaults (about 87 over 12 + 2 weeks).
    weeks, horizon_weeks
        Length of the history (``batch``) and of the horizon (``future``) in whole weeks.
    n_categories, n_brands, n_products
        Catalogue size; ``n_products`` must be at least ``3 * n_categories``.
    n_segments
        Number of personas; each customer's preferences are drawn around their persona's.
    seed
        Same seed and arguments, same simulation (every column, every id).
    start
        Start of the history: an ISO-8601 string with a zone or an aware ``datetime``.

    Returns
    -------
    ShopSimulation

    Examples
    --------
    >>> sim = simulate_shop(300, weeks=6, seed=7)
    >>> truth = sim.truth
    >>> truth.favourite_category.shape, sim.horizon_ms == 2 * 7 * 86_400_000
    ((300,), True)
    >>> bool(((truth.p_purchase >= 0) & (truth.p_purchase <= 1)).all())
    True
    """
    if n_customers < 1 or weeks < 1 or horizon_weeks < 0:
        raise ValueError("need n_customers >= 1, weeks >= 1 and horizon_weeks >= 0")
    if n_categories < 1 or n_brands < 1 or n_segments < 1:
        raise ValueError("need n_categories, n_brands and n_segments >= 1")
    if n_products < 3 * n_categories:
        raise ValueError(f"n_products must be >= 3 * n_categories = {3 * n_categories}, got {n_products}")
    start_ms = to_epoch_ms(start)
    end_ms = start_ms + weeks * _WEEK_MS
    horizon_ms = horizon_weeks * _WEEK_MS
    streams = [np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(5)]
    cat = _make_catalogue(streams[0], n_categories, n_brands, n_products)
    cust = _make_customers(streams[1], cat, n_customers, n_segments, weeks)
    cal = _make_calendar(streams[2], weeks + horizon_weeks)
    names = _make_interners(cat, n_customers, cal, start_ms)
    log = _simulate_weeks(streams[3], cust, cal, weeks, horizon_weeks)
    parts = _build_events(streams[4], cat, cust, cal, log, start_ms)
    hist, hist_d, fut, fut_d = _assemble(parts, cat, names, seed, end_ms)
    truth = _truth(cust, cal, log, weeks, horizon_weeks, names, hist, fut)
    truth.signup_ms = start_ms + cust.signup_week * _WEEK_MS
    return ShopSimulation(
        batch=hist,
        future=fut,
        start_ms=start_ms,
        end_ms=end_ms,
        horizon_ms=horizon_ms,
        seed=seed,
        truth=truth,
        catalogue=cat,
        details=hist_d,
        future_details=fut_d,
    )


# --- catalogue ------------------------------------------------------------------------------
class _Groups:
    """Products grouped by an integer key, for popularity-weighted picks within a group."""

    def __init__(self, keys: NDArray[np.int64], weight: NDArray[np.float64], n_keys: int) -> None:
        self.order = np.argsort(keys, kind="stable")
        self.cum = np.cumsum(weight[self.order])
        # group k is order[first[k]:first[k + 1]]; a table beats a binary search per pick
        self.first = np.searchsorted(keys[self.order], np.arange(n_keys + 1))

    def bounds(self, key: NDArray[np.int64]) -> tuple[NDArray[np.intp], NDArray[np.intp]]:
        return self.first[key], self.first[key + 1]

    def pick(self, lo: NDArray[np.intp], hi: NDArray[np.intp], u: NDArray[np.float64]) -> NDArray[np.int64]:
        """A product from each non-empty group ``[lo, hi)``, weighted by popularity."""
        base = np.where(lo > 0, self.cum[np.maximum(lo - 1, 0)], 0.0)
        target = base + u * (self.cum[hi - 1] - base)
        idx = np.clip(np.searchsorted(self.cum, target, "right"), lo, hi - 1)
        return self.order[idx]


@dataclass(eq=False)
class _Shop:
    cat: Catalogue
    by_cat_band: _Groups
    by_cat_brand_band: _Groups
    by_cat_brand: _Groups
    by_cat: _Groups
    category_weight: NDArray[np.float64]


def _brand_names(n: int, rng: np.random.Generator) -> list[str]:
    combos = [h + t for h in _BRAND_HEADS for t in _BRAND_TAILS]
    order = rng.permutation(len(combos))
    names = [combos[i] for i in order[:n]]
    names += [f"{combos[i % len(combos)]}{i // len(combos) + 1}" for i in range(len(names), n)]
    return names


def _make_catalogue(rng: np.random.Generator, n_cat: int, n_brand: int, n_prod: int) -> Catalogue:
    cat_names = [_CATEGORY_NAMES[i] if i < len(_CATEGORY_NAMES) else f"category-{i}" for i in range(n_cat)]
    brand_names = _brand_names(n_brand, rng)
    cat_weight = rng.permutation(1.0 / np.arange(1, n_cat + 1) ** 0.7)
    # Every category gets >= 3 products so each price band exists; the rest follow popularity.
    category = np.concatenate(
        [
            np.repeat(np.arange(n_cat), 3),
            rng.choice(n_cat, n_prod - 3 * n_cat, p=cat_weight / cat_weight.sum()),
        ]
    ).astype(np.int32)
    # Brands have a home category and mostly sell there, so a favourite brand goes with a category.
    home = rng.permutation(np.arange(n_brand) % n_cat)
    home_order = np.argsort(home, kind="stable")
    lo = np.searchsorted(home[home_order], category, "left")
    hi = np.searchsorted(home[home_order], category, "right")
    has_home = (hi > lo) & (rng.random(n_prod) < 0.85)
    local = lo + np.floor(rng.random(n_prod) * np.maximum(hi - lo, 1)).astype(np.intp)
    brand = np.where(
        has_home, home_order[np.minimum(local, n_brand - 1)], rng.integers(0, n_brand, n_prod)
    ).astype(np.int32)
    base = np.exp(rng.uniform(np.log(8.0), np.log(400.0), n_cat))
    premium = np.exp(rng.normal(0.0, 0.35, n_brand))
    raw = base[category] * premium[brand] * rng.lognormal(0.0, 0.45, n_prod)
    price = np.round(np.clip(raw, 0.5, 1e5), 2).astype(np.float64)
    # Band = price tertile within the category (by rank, so all three bands are non-empty).
    order = np.lexsort((np.arange(n_prod), price, category))
    counts = np.bincount(category, minlength=n_cat)
    first = np.concatenate([[0], np.cumsum(counts)[:-1]])
    rank = np.empty(n_prod, np.int64)
    rank[order] = np.arange(n_prod) - first[category[order]]
    band = ((3 * rank) // counts[category]).astype(np.int8)
    popularity = rng.lognormal(0.0, 1.0, n_prod)
    width = max(5, len(str(n_prod - 1)))
    return Catalogue(
        product_ids=[f"p{i:0{width}d}" for i in range(n_prod)],
        category=category,
        brand=brand,
        price=price,
        price_band=band,
        popularity=popularity,
        category_names=cat_names,
        brand_names=brand_names,
    )


def _shop(cat: Catalogue) -> _Shop:
    c = cat.category.astype(np.int64)
    b = cat.brand.astype(np.int64)
    nb = len(cat.brand_names)
    nc = len(cat.category_names)
    band = cat.price_band.astype(np.int64)
    weight = np.bincount(cat.category, weights=cat.popularity, minlength=len(cat.category_names))
    return _Shop(
        cat=cat,
        by_cat_band=_Groups(c * 3 + band, cat.popularity, nc * 3),
        by_cat_brand_band=_Groups((c * nb + b) * 3 + band, cat.popularity, nc * nb * 3),
        by_cat_brand=_Groups(c * nb + b, cat.popularity, nc * nb),
        by_cat=_Groups(c, cat.popularity, nc),
        category_weight=weight / weight.sum(),
    )


# --- customers ------------------------------------------------------------------------------
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


def _make_customers(rng: np.random.Generator, cat: Catalogue, n: int, n_seg: int, weeks: int) -> _Customers:
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
    )


# --- calendar -------------------------------------------------------------------------------
@dataclass(eq=False)
class _Calendar:
    promo: NDArray[np.bool_]  # per week
    n_email: NDArray[np.int64]  # email campaigns per week (1 or 2)
    sms: NDArray[np.bool_]  # an SMS campaign this week
    email_code: NDArray[np.int64]  # [week, j] campaign code
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
    return names


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


def _clamp_offset(x: NDArray[np.float64]) -> NDArray[np.int64]:
    return np.minimum(x, _WEEK_MS - 1).astype(np.int64)


def _simulate_weeks(
    rng: np.random.Generator, cust: _Customers, cal: _Calendar, weeks: int, horizon: int
) -> _Log:
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
        # email campaigns: sent Tuesday / Thursday 10:00
        for j in range(int(cal.n_email[w])):
            send = (1 + 2 * j) * _DAY_MS + 10 * _HOUR_MS
            recv = active & subscribed
            opened = recv & (rng.random(n) < cust.p_open)
            clicked = opened & (rng.random(n) < cust.p_click)
            unsub = recv & (rng.random(n) < cust.p_unsub)
            t_open = _clamp_offset(send + rng.exponential(6 * _HOUR_MS, n))
            t_click = _clamp_offset(t_open + rng.uniform(5_000, 300_000, n))
            t_unsub = _clamp_offset(send + rng.exponential(12 * _HOUR_MS, n))
            code = int(cal.email_code[w, j])
            add(opened, w, _T["email_opened"], _EMAIL, code, t_open)
            add(clicked, w, _T["email_clicked"], _EMAIL, code, t_click)
            add(unsub, w, _T["unsubscribed"], _EMAIL, code, t_unsub)
            subscribed &= ~unsub
        if cal.sms[w]:
            clicked = active & cust.sms_opt_in & (rng.random(n) < cust.p_sms)
            t = _clamp_offset(4 * _DAY_MS + 12 * _HOUR_MS + rng.exponential(_HOUR_MS, n))
            add(clicked, w, _T["sms_clicked"], _SMS, int(cal.sms_code[w]), t)
        # app: push Saturday 18:00, opens during the first six days, uninstalls on the last
        pushed = inst_start & (rng.random(n) < cust.p_push)
        t = _clamp_offset(5 * _DAY_MS + 18 * _HOUR_MS + rng.exponential(2 * _HOUR_MS, n))
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
            end_state = (alive.copy(), subscribed.copy(), installed.copy(), ever_un.copy(), consent.copy())

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
    )


# --- events ---------------------------------------------------------------------------------
@dataclass(eq=False)
class _Part:
    """A block of events (unsorted) with its product lines (``item_event`` local to the block)."""

    user: NDArray[np.int64]
    event_type: NDArray[np.uint8]
    ts_ms: NDArray[np.int64]
    channel: NDArray[np.uint8]
    revenue: NDArray[np.float64]
    discount: NDArray[np.float64]
    has_coupon: NDArray[np.bool_]
    campaign: NDArray[np.int32]
    consent: NDArray[np.int8]
    order_no: NDArray[np.int64]
    session_no: NDArray[np.int64]
    aux: NDArray[np.int32]
    item_event: NDArray[np.int64]
    item_product: NDArray[np.int64]
    item_price: NDArray[np.float64]
    item_discount: NDArray[np.float64]
    item_quantity: NDArray[np.int32]


def _part(
    user: NDArray[np.int64],
    etype: int | NDArray[np.uint8],
    ts: NDArray[np.int64],
    channel: int | NDArray[np.uint8],
    *,
    revenue: NDArray[np.float64] | None = None,
    discount: NDArray[np.float64] | None = None,
    has_coupon: NDArray[np.bool_] | None = None,
    campaign: NDArray[np.int32] | None = None,
    consent: NDArray[np.int8] | None = None,
    order_no: NDArray[np.int64] | None = None,
    session_no: NDArray[np.int64] | None = None,
    aux: NDArray[np.int32] | None = None,
    items: tuple[
        NDArray[np.int64], NDArray[np.int64], NDArray[np.float64], NDArray[np.float64], NDArray[np.int32]
    ]
    | None = None,
) -> _Part:
    n = int(user.shape[0])

    def full(value: Any, dtype: Any, fill: Any) -> Any:
        if value is None:
            return np.full(n, fill, dtype)
        return np.broadcast_to(np.asarray(value, dtype), (n,))

    if items is None:
        items = (
            np.empty(0, np.int64),
            np.empty(0, np.int64),
            np.empty(0, np.float64),
            np.empty(0, np.float64),
            np.empty(0, np.int32),
        )
    return _Part(
        user=user,
        event_type=full(etype, np.uint8, 0),
        ts_ms=ts,
        channel=full(channel, np.uint8, 0),
        revenue=full(revenue, np.float64, np.nan),
        discount=full(discount, np.float64, np.nan),
        has_coupon=full(has_coupon, np.bool_, False),
        campaign=full(campaign, np.int32, NO_CAMPAIGN),
        consent=full(consent, np.int8, NO_CONSENT),
        order_no=full(order_no, np.int64, -1),
        session_no=full(session_no, np.int64, -1),
        aux=full(aux, np.int32, -1),
        item_event=items[0],
        item_product=items[1],
        item_price=items[2],
        item_discount=items[3],
        item_quantity=items[4],
    )


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


_EVENT_FIELDS: Final = (
    "user",
    "event_type",
    "ts_ms",
    "channel",
    "revenue",
    "discount",
    "has_coupon",
    "campaign",
    "consent",
    "order_no",
    "session_no",
    "aux",
)


def _id_prefix(seed: int) -> str:
    return f"s{seed}-"


def _event_id_hashes(seed: int, first: int, n: int) -> NDArray[np.uint64]:
    """FNV-1a (as :func:`affinity_sdk.ingest.batch.event_id_hash`) of ``f"s{seed}-{i:011d}"``, vectorized."""
    prime = np.uint64(0x100000001B3)
    h = 0xCBF29CE484222325
    for byte in _id_prefix(seed).encode():
        h = ((h ^ byte) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    if n == 0:
        return np.empty(0, np.uint64)
    # Serials share their first 8 digits in runs of 1000: hash those once per run, then
    # finish the last 3 digits on a (runs, 1000) grid. uint64 arrays wrap modulo 2**64, as FNV wants.
    runs = np.arange(first // 1000, (first + n - 1) // 1000 + 1, dtype=np.int64)
    head = np.full(runs.shape[0], h, np.uint64)
    for p in range(7, -1, -1):
        head ^= ((runs // 10**p) % 10 + 48).astype(np.uint64)
        head *= prime
    grid = np.repeat(head[:, None], 1000, axis=1)
    tail = np.arange(1000, dtype=np.int64)
    for p in (2, 1, 0):
        grid ^= ((tail // 10**p) % 10 + 48).astype(np.uint64)[None, :]
        grid *= prime
    out = grid.reshape(-1)[first % 1000 : first % 1000 + n]
    out[out == 0] = 1
    return out


def _time_order(ts: NDArray[np.int64]) -> NDArray[np.intp]:
    """``np.argsort(ts, kind="stable")``, faster: bucket by the top 16 bits, then sort the nearly sorted."""
    if ts.shape[0] == 0:
        return np.empty(0, np.intp)
    offset = ts - ts.min()
    shift = max(0, int(offset.max()).bit_length() - 16)
    coarse = np.argsort((offset >> shift).astype(np.uint16), kind="stable")  # radix sort: O(n)
    return coarse[np.argsort(offset[coarse], kind="stable")]


def _assemble(
    parts: list[_Part], cat: Catalogue, names: Interners, seed: int, end_ms: int
) -> tuple[EventBatch, EventDetails, EventBatch, EventDetails]:
    n = sum(int(p.user.shape[0]) for p in parts)
    # Each part lists its product lines grouped by event, in event order.
    lines = np.concatenate(
        [np.bincount(p.item_event, minlength=p.user.shape[0]) for p in parts] or [np.empty(0, np.int64)]
    )
    order = _time_order(np.concatenate([p.ts_ms for p in parts]))
    cols: dict[str, NDArray[Any]] = {}
    for k in _EVENT_FIELDS:
        merged = np.concatenate([getattr(p, k) for p in parts])
        for p in parts:  # let the parts go as the batch fills, to keep peak memory down
            setattr(p, k, merged[:0])
        cols[k] = merged[order]
        del merged
    line_start = np.cumsum(lines) - lines
    count = lines[order]
    item_event = np.repeat(np.arange(n, dtype=np.int64), count)
    source = np.arange(item_event.shape[0], dtype=np.int64) + np.repeat(
        line_start[order] - (np.cumsum(count) - count), count
    )
    del lines, line_start, count
    item_cols: dict[str, NDArray[Any]] = {}
    for k in ("item_product", "item_price", "item_discount", "item_quantity"):
        merged = np.concatenate([getattr(p, k) for p in parts])
        for p in parts:
            setattr(p, k, merged[:0])
        item_cols[k] = merged[source]
        del merged
    del source
    n_hist = int(np.searchsorted(cols["ts_ms"], end_ms, "left"))
    n_hist_items = int(np.searchsorted(item_event, n_hist, "left"))

    def batch(ev_sl: slice, it_sl: slice, first: int) -> tuple[EventBatch, EventDetails]:
        product = item_cols["item_product"][it_sl]
        b = EventBatch(
            user=np.ascontiguousarray(cols["user"][ev_sl]),
            event_type=np.ascontiguousarray(cols["event_type"][ev_sl]),
            ts_ms=np.ascontiguousarray(cols["ts_ms"][ev_sl]),
            channel=np.ascontiguousarray(cols["channel"][ev_sl]),
            revenue=np.ascontiguousarray(cols["revenue"][ev_sl]),
            discount=np.ascontiguousarray(cols["discount"][ev_sl]),
            has_coupon=np.ascontiguousarray(cols["has_coupon"][ev_sl]),
            campaign=np.ascontiguousarray(cols["campaign"][ev_sl]),
            event_id=_event_id_hashes(seed, first, ev_sl.stop - ev_sl.start),
            consent=np.ascontiguousarray(cols["consent"][ev_sl]),
            item_event=item_event[it_sl] - ev_sl.start,
            item_product=product.astype(np.int32),
            item_category=cat.category[product],
            item_brand=cat.brand[product],
            item_price=np.ascontiguousarray(item_cols["item_price"][it_sl]),
            item_discount=np.ascontiguousarray(item_cols["item_discount"][it_sl]),
            item_quantity=np.ascontiguousarray(item_cols["item_quantity"][it_sl]),
            interners=names,
        )
        d = EventDetails(
            order_no=np.ascontiguousarray(cols["order_no"][ev_sl]),
            session_no=np.ascontiguousarray(cols["session_no"][ev_sl]),
            aux=np.ascontiguousarray(cols["aux"][ev_sl]),
            first_id=first,
        )
        return b, d

    hist, hist_d = batch(slice(0, n_hist), slice(0, n_hist_items), 0)
    fut, fut_d = batch(slice(n_hist, n), slice(n_hist_items, item_event.shape[0]), n_hist)
    return hist, hist_d, fut, fut_d


# --- truth ----------------------------------------------------------------------------------
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


# --- events back to Structs -----------------------------------------------------------------
_COUPON_CODE: Final = "SAVE10"
_CURRENCY: Final = "USD"
_PRODUCT_EVENTS: Final[
    dict[int, type[ev.ProductViewed | ev.ProductAdded | ev.ProductRemoved | ev.ProductAddedToWishlist]]
] = {
    _T["product_viewed"]: ev.ProductViewed,
    _T["product_added"]: ev.ProductAdded,
    _T["product_removed"]: ev.ProductRemoved,
    _T["product_added_to_wishlist"]: ev.ProductAddedToWishlist,
}
_CAMPAIGN_EVENTS: Final[
    dict[int, type[ev.EmailOpened | ev.EmailClicked | ev.SmsClicked | ev.PushOpened | ev.Unsubscribed]]
] = {
    _T["email_opened"]: ev.EmailOpened,
    _T["email_clicked"]: ev.EmailClicked,
    _T["sms_clicked"]: ev.SmsClicked,
    _T["push_opened"]: ev.PushOpened,
    _T["unsubscribed"]: ev.Unsubscribed,
}
_APP_EVENTS: Final[dict[int, type[ev.AppInstalled | ev.AppOpened | ev.AppUninstalled]]] = {
    _T["app_installed"]: ev.AppInstalled,
    _T["app_opened"]: ev.AppOpened,
    _T["app_uninstalled"]: ev.AppUninstalled,
}


def _order_id(order_no: int, seed: int) -> str:
    return f"{_id_prefix(seed)}o{order_no:09d}"


def _session_id(session_no: int, seed: int) -> str:
    return f"{_id_prefix(seed)}w{session_no:09d}"


def _iter_events(batch: EventBatch, details: EventDetails, seed: int) -> Iterator[ev.Event]:
    names = batch.interners
    users, products = names.users.names, names.products.names
    categories, brands, campaigns = names.categories.names, names.brands.names, names.campaigns.names
    n = len(batch)
    first_item = np.searchsorted(batch.item_event, np.arange(n + 1)).tolist()
    i_prod, i_cat, i_brand = (
        batch.item_product.tolist(),
        batch.item_category.tolist(),
        batch.item_brand.tolist(),
    )
    i_price, i_qty = batch.item_price.tolist(), batch.item_quantity.tolist()
    i_disc = [None if d != d else d for d in batch.item_discount.tolist()]
    revenue = batch.revenue.tolist()
    discount = [None if d != d else d for d in batch.discount.tolist()]
    prefix = _id_prefix(seed)
    rows = zip(
        batch.user.tolist(),
        batch.event_type.tolist(),
        batch.ts_ms.tolist(),
        batch.channel.tolist(),
        batch.has_coupon.tolist(),
        batch.campaign.tolist(),
        batch.consent.tolist(),
        details.order_no.tolist(),
        details.session_no.tolist(),
        details.aux.tolist(),
        strict=True,
    )
    for row, (user, etype, ts, channel, coupon, campaign, consent, order, session, aux) in enumerate(rows):
        common: dict[str, Any] = {
            "user_id": users[user],
            "timestamp": ts,
            "event_id": f"{prefix}{details.first_id + row:011d}",
            "channel": ev.CHANNELS[channel],
        }
        if session >= 0:
            common["session_id"] = _session_id(session, seed)
        lines = [
            ev.Product(
                product_id=products[i_prod[k]],
                category=categories[i_cat[k]],
                brand=brands[i_brand[k]],
                price=i_price[k],
                discount=i_disc[k],
                quantity=i_qty[k],
            )
            for k in range(first_item[row], first_item[row + 1])
        ]
        product_cls = _PRODUCT_EVENTS.get(etype)
        campaign_cls = _CAMPAIGN_EVENTS.get(etype)
        app_cls = _APP_EVENTS.get(etype)
        if product_cls is not None:
            yield product_cls(product=lines[0], **common)
        elif campaign_cls is not None:
            yield campaign_cls(campaign_id=campaigns[campaign] if campaign >= 0 else None, **common)
        elif app_cls is not None:
            yield app_cls(**common)
        elif etype == _T["page_viewed"]:
            yield ev.PageViewed(**common)
        elif etype == _T["products_searched"]:
            yield ev.ProductsSearched(query=categories[aux], **common)
        elif etype == _T["product_list_viewed"]:
            yield ev.ProductListViewed(category=categories[aux], products=lines, **common)
        elif etype == _T["cart_viewed"]:
            yield ev.CartViewed(products=lines, **common)
        elif etype == _T["checkout_started"]:
            yield ev.CheckoutStarted(
                order_id=_order_id(order, seed), products=lines, revenue=revenue[row], **common
            )
        elif etype == _T["coupon_applied"]:
            yield ev.CouponApplied(
                coupon=_COUPON_CODE, order_id=_order_id(order, seed), discount=discount[row], **common
            )
        elif etype == _T["order_completed"]:
            yield ev.OrderCompleted(
                order_id=_order_id(order, seed),
                products=lines,
                revenue=revenue[row],
                discount=discount[row],
                coupon=_COUPON_CODE if coupon else None,
                currency=_CURRENCY,
                **common,
            )
        elif etype == _T["order_refunded"]:
            yield ev.OrderRefunded(order_id=_order_id(order, seed), revenue=revenue[row], **common)
        elif etype == _T["consent_changed"]:
            yield ev.ConsentChanged(granted=consent == 1, **common)
        else:  # pragma: no cover - every generated type is handled above
            raise AssertionError(f"unexpected event type code {etype}")


def _to_arrow(batch: EventBatch, details: EventDetails, seed: int) -> Any:
    import pyarrow as pa
    import pyarrow.compute as pc

    names = batch.interners
    n = len(batch)
    prefix = _id_prefix(seed)

    def lookup(values: Any, codes: NDArray[Any]) -> Any:
        """Strings ``values[code]`` with nulls where ``code < 0``."""
        table = pa.array(list(values), pa.string())
        return pc.take(table, pa.array(codes, pa.int64(), mask=codes < 0))

    def serial(tag: str, numbers: NDArray[np.int64], width: int) -> Any:
        digits = pc.utf8_lpad(
            pc.cast(pa.array(numbers, mask=numbers < 0), pa.string()), width=width, padding="0"
        )
        return pc.binary_join_element_wise(prefix + tag, digits, "")

    etype = batch.event_type.astype(np.int64)
    is_type = {k: etype == _T[k] for k in ("products_searched", "product_list_viewed", "coupon_applied")}
    has_order = details.order_no >= 0
    coupon_code = np.where(batch.has_coupon, 0, -1)
    aux = details.aux.astype(np.int64)
    ts = pa.array(batch.ts_ms, pa.int64()).cast(pa.timestamp("ms", tz="UTC"))
    revenue = pa.array(batch.revenue, pa.float64(), mask=np.isnan(batch.revenue))
    discount = pa.array(batch.discount, pa.float64(), mask=np.isnan(batch.discount))
    granted = pa.array(batch.consent == 1, pa.bool_(), mask=batch.consent < 0)
    item_products = pa.StructArray.from_arrays(
        [
            lookup(names.products.names, batch.item_product.astype(np.int64)),
            lookup(names.categories.names, batch.item_category.astype(np.int64)),
            lookup(names.brands.names, batch.item_brand.astype(np.int64)),
            pa.array(batch.item_price, pa.float64()),
            pa.array(batch.item_discount, pa.float64(), mask=np.isnan(batch.item_discount)),
            pa.array(batch.item_quantity, pa.int64()),
        ],
        names=["product_id", "category", "brand", "price", "discount", "quantity"],
    )
    offsets = np.searchsorted(batch.item_event, np.arange(n + 1)).astype(np.int32)
    products = pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), item_products)
    columns = {
        "type": lookup(ev.EVENT_TYPES, etype),
        "user_id": lookup(names.users.names, batch.user),
        "timestamp": ts,
        "event_id": serial("", np.arange(details.first_id, details.first_id + n, dtype=np.int64), 11),
        "channel": lookup(ev.CHANNELS, batch.channel.astype(np.int64)),
        "session_id": serial("w", details.session_no, 9),
        "order_id": serial("o", np.where(has_order, details.order_no, -1), 9),
        "revenue": revenue,
        "discount": discount,
        "coupon": lookup([_COUPON_CODE], coupon_code),
        "campaign_id": lookup(names.campaigns.names, batch.campaign.astype(np.int64)),
        "query": lookup(names.categories.names, np.where(is_type["products_searched"], aux, -1)),
        "category": lookup(names.categories.names, np.where(is_type["product_list_viewed"], aux, -1)),
        "granted": granted,
        "products": products,
    }
    return pa.table(columns)


def cdnow_orders(path: str | PathLike[str]) -> EventBatch:
    """The CDNOW purchase log (a CSV with ``sample_id``, ``date``, ``dollars`` columns, one row per
    purchase record) as ``order_completed`` events: one per record, revenue = dollars, no products.

    Examples
    --------
    >>> import pathlib, tempfile
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "cdnow.csv"
    >>> _ = path.write_text("sample_id,date,dollars\\n4,1997-01-01,29.33\\n4,1997-01-18,29.73\\n")
    >>> batch = cdnow_orders(path)
    >>> list(batch.interners.users.names), batch.revenue.tolist(), int(batch.ts_ms[0])
    (['4'], [29.33, 29.73], 852076800000)
    """
    import csv

    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    names = Interners()
    user = names.users.intern_many([r["sample_id"] for r in rows])
    n = user.shape[0]
    return EventBatch(
        user=user,
        event_type=np.full(n, ev.EVENT_TYPE_CODES["order_completed"], np.uint8),
        ts_ms=np.array([r["date"] for r in rows], dtype="datetime64[ms]").astype(np.int64),
        channel=np.zeros(n, np.uint8),
        revenue=np.array([float(r["dollars"]) for r in rows]),
        discount=np.zeros(n),
        has_coupon=np.zeros(n, bool),
        campaign=np.full(n, NO_CAMPAIGN, np.int32),
        event_id=np.zeros(n, np.uint64),
        consent=np.full(n, NO_CONSENT, np.int8),
        item_event=np.zeros(0, np.int64),
        item_product=np.zeros(0, np.int32),
        item_category=np.zeros(0, np.int32),
        item_brand=np.zeros(0, np.int32),
        item_price=np.zeros(0),
        item_discount=np.zeros(0),
        item_quantity=np.zeros(0, np.int32),
        interners=names,
    )
