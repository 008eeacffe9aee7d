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
:class:`CustomerTruth` fields or constants of :mod:`affinity_sdk.sim.parameters`):

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
* every email campaign of the week (1 or 2, Tuesday and Thursday 10:00) reaches subscribed
  customers; customers on the high-frequency list (``high_frequency``, share
  :data:`HIGH_FREQUENCY_SHARE`) also get an extra email in each of the Monday, Wednesday, Friday
  and Saturday slots with probability :data:`HIGH_FREQUENCY_EXTRA_RATE` (others with
  :data:`EXTRA_EMAIL_RATE`), drawn afresh each week. Each email received is opened with
  ``p_open``, clicked after opening with ``p_click``, and unsubscribed from with
  ``p_unsubscribe_per_email`` × :func:`~affinity_sdk.sim.parameters.fatigue_multiplier` of the
  emails received in the 7 days before it (fatigue: from the third email in 7 days on, each
  email adds the base probability once more);
* SMS campaigns (even weeks) reach SMS opt-ins, clicked with ``p_sms_click``; push campaigns
  (weekly) reach customers with the app installed at the start of the week, opened with
  ``p_push_open``; app opens ~ Poisson(``app_open_rate``) for those customers;
* an installed app is uninstalled with ``p_app_uninstall``; an ``app_prone`` customer who never
  uninstalled installs it with :data:`APP_INSTALL_RATE` (:data:`APP_INSTALL_AT_SIGNUP` in the
  signup week);
* a customer who has consent revokes it with :data:`CONSENT_REVOKE_RATE`;
* at the end of the week the customer dies (churns for good) with ``churn_hazard``.

With ``deliveries=True`` every email, SMS and push received is also a ``message_delivered``
event (medium = its channel). An unsubscribe is an opt-out of email alone (the ``unsubscribed``
event carries medium email).

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
from datetime import datetime
from os import PathLike
from typing import Any, Literal

import msgspec
import numpy as np

from affinity_sdk._units import to_epoch_ms
from affinity_sdk.capture import events as ev
from affinity_sdk.ingest.batch import EventBatch
from affinity_sdk.sim.assembly import EventDetails, _assemble
from affinity_sdk.sim.catalogue import Catalogue, _make_catalogue
from affinity_sdk.sim.customers import _make_customers
from affinity_sdk.sim.event_generation import _build_events
from affinity_sdk.sim.export import _iter_events, _to_arrow
from affinity_sdk.sim.ids import _id_prefix
from affinity_sdk.sim.parameters import _WEEK_MS
from affinity_sdk.sim.truth import CustomerTruth, _truth
from affinity_sdk.sim.weeks import _make_calendar, _make_interners, _simulate_weeks

__all__ = ["ShopSimulation", "simulate_shop"]

Which = Literal["history", "future"]


@dataclass(eq=False)
class ShopSimulation:
    """A simulated shop: the history, the horizon's events and the ground truth.

    ``batch`` holds every event with ``start_ms <= ts < end_ms``, ``future`` those with
    ``end_ms <= ts < end_ms + horizon_ms``; both are sorted by time and share one
    :class:`~affinity_sdk.ingest.interner.Interners` whose users, products, categories, brands and
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
        >>> from affinity_sdk.ingest.interner import event_id_hash
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
    deliveries: bool = False,
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
    deliveries
        Also log a ``message_delivered`` event (medium email, sms or push, the campaign's id) for
        every message a customer receives, as a messaging platform's delivery feed would: what
        the engagement view counts for channel rates and fatigue caps. Off by default (the
        shop's history stays what it was before deliveries existed). A message received is no
        act of the customer's: it does not count for ``churn`` ("nothing they did") in the
        truth, nor in the SDK's labels and activity features.

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
    # the sixth stream (extra emails) came last, so the first five draw what they drew before it
    streams = [np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(6)]
    cat = _make_catalogue(streams[0], n_categories, n_brands, n_products)
    cust = _make_customers(streams[1], cat, n_customers, n_segments, weeks, streams[5])
    cal = _make_calendar(streams[2], weeks + horizon_weeks)
    names = _make_interners(cat, n_customers, cal, start_ms)
    log = _simulate_weeks(streams[3], cust, cal, weeks, horizon_weeks, streams[5], deliveries)
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
