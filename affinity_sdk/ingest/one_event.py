"""One event through the pipeline on scalars: what an app backend calling ``ingest`` per event runs.

:func:`ingest_one` takes one event (a Struct, or one NDJSON line as bytes) through the steps of
:func:`~affinity_sdk.ingest.pipeline.run_ingest` (decode, screen, forget suppression, event-id
dedupe, consent, fold, journal) without building a batch: Python scalars and a few compiled calls
(``csrc/bind_live.cpp``): one reads a common event's fields, its event-id hash and the codes its
ids already have, one folds it, one builds the report (and one probes the event-id window). It
applies when the store keeps only scored-signals views (the live config's and shadow configs');
the state it leaves equals the batch path's bit for bit (the tests run both on the same streams).
:func:`live_calls` gives ``Scorer.ingest`` one compiled call that does all of it for the common
event, and ``Scorer.tier_of`` / ``score_of`` one call each; whatever they are unsure of comes here.

It never raises on bad input and never changes anything before it knows the event is good: an
event it does not fully understand (a line it cannot decode, a Struct with odd field types) or one
the screen would reject returns ``None`` before any state is touched, and the caller takes the
batch path, which then raises or reports it with its own message.

Examples
--------
>>> from affinity_sdk.profile.store import ProfileStore
>>> store = ProfileStore(views=("signals",))
>>> line = b'{"type":"app_opened","user_id":"ann","timestamp":1767225600000,"event_id":"e1"}'
>>> ingest_one(store, line).accepted, ingest_one(store, line).n_duplicates, store.n_users
(1, 1, 1)
>>> ingest_one(store, b'{"type":"app_opened"}') is None  # the batch path explains what is wrong
True
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Final

import msgspec
import numpy as np

from affinity_sdk._backends import native
from affinity_sdk.capture import events as ev
from affinity_sdk.capture.decode import _JSON_EVENT
from affinity_sdk.ingest.interner import event_id_hash, normalize_id
from affinity_sdk.ingest.pipeline import IngestReport
from affinity_sdk.ingest.screen import MAX_ROW_REVENUE
from affinity_sdk.profile.signals import SignalView
from affinity_sdk.profile.suppression import NOT_SUPPRESSED

if TYPE_CHECKING:
    from affinity_sdk.profile.store import ProfileStore

__all__ = ["ONE_EVENT_PATH", "ingest_one", "live_calls", "takes_one"]

#: Take single events through :func:`ingest_one` where it applies (``False``: always the batch
#: path; the tests and the benchmark compare the two).
ONE_EVENT_PATH = True

_NAN: Final = float("nan")
_CHANNEL_CODES: Final = {name: code for code, name in enumerate(ev.CHANNELS)}
_ORDER: Final = ev.EVENT_TYPE_CODES["order_completed"]
_MAX_QUANTITY: Final = 2**31 - 1  # the int32 item column
_NUMBER: Final = (float, int)
# How _event reads each kind: batch._append_event's branches, in its order (_shape_of).
_PLAIN, _ONE, _ORDER_SHAPE, _REFUND_SHAPE, _LIST_SHAPE, _COUPON_SHAPE, _MESSAGE_SHAPE = range(7)
_SHAPES: dict[type, tuple[int, int, int] | None] = {}
_ONE_PRODUCT: Final = (ev.ProductViewed, ev.ProductAdded, ev.ProductRemoved, ev.ProductAddedToWishlist)
_MESSAGE: Final = (ev.EmailOpened, ev.EmailClicked, ev.SmsClicked, ev.PushOpened, ev.Unsubscribed)


def takes_one(store: ProfileStore, data: Any, format: str) -> bool:
    """Whether ``data`` is one event :func:`ingest_one` may take into ``store``: a Struct, or
    bytes read as NDJSON, into a store whose views are all scored-signals views (the live one
    and any shadow configs')."""
    if not ONE_EVENT_PATH or not (
        isinstance(data, msgspec.Struct) or (type(data) is bytes and format == "ndjson")
    ):
        return False
    views = store.views
    return (len(views) == 1 and "signals" in views) or all(type(v) is SignalView for v in views.values())


def _decode_line(data: bytes) -> Any:
    """The one event on a single NDJSON line, or ``None`` (several lines, or not decodable)."""
    line = data.strip()
    if not line or b"\n" in line or b"\r" in line:
        return None
    try:
        return _JSON_EVENT.decode(line)
    except (msgspec.DecodeError, ValueError):
        return None


def _amount(value: Any, limit: float, *, required: bool = False) -> float | None:
    """``value`` as a float if the screen accepts it (missing is NaN), else ``None``."""
    if value is None:
        return None if required else _NAN
    if type(value) not in _NUMBER:
        return None
    number = float(value)
    if number != number:
        return None if required else _NAN
    return number if 0.0 <= number <= limit else None


def _products(products: Any) -> list[ev.Product] | None:
    """The product lines if every one passes the screen and fits the item columns (ids all
    strings: a product without a category or brand takes the batch path)."""
    if type(products) is not list:
        return None
    for product in products:
        if type(product) is not ev.Product:
            return None
        price: Any = product.price
        discount, quantity = product.discount, product.quantity
        if (
            type(product.product_id) is not str
            or type(product.category) is not str
            or type(product.brand) is not str
            or type(quantity) is not int
            or not 1 <= quantity <= _MAX_QUANTITY
            or type(price) not in _NUMBER
            or not 0.0 <= price <= ev.MAX_AMOUNT  # NaN fails too: a price is required
            or (discount is not None and _amount(discount, ev.MAX_AMOUNT) is None)
        ):
            return None
    return products


#: The last type code this path knows: later ones take the batch path.
_LAST_PLAIN: Final = ev.EVENT_TYPE_CODES["consent_changed"]


def _shape_of(cls: type) -> tuple[int, int, int] | None:
    """``(type code, shape, default channel code)`` of an event class, ``None`` if it is none;
    the shape names the branch of ``batch._append_event`` its fields take (kept per class)."""
    if cls in _SHAPES:
        return _SHAPES[cls]
    kind = getattr(getattr(cls, "__struct_config__", None), "tag", None)
    if type(kind) is not str or kind not in ev.EVENT_TYPE_CODES or ev.EVENT_TYPE_CODES[kind] > _LAST_PLAIN:
        _SHAPES[cls] = None  # the types added after consent_changed (Segment v2, messages): batch path
        return None
    branches = (
        _ONE_PRODUCT,
        ev.OrderCompleted,
        ev.OrderRefunded | ev.CheckoutStarted,
        ev.ProductListViewed | ev.CartViewed,
        ev.CouponApplied,
        _MESSAGE,
        ev.ConsentChanged,
    )
    shape = next((i + 1 for i, branch in enumerate(branches) if issubclass(cls, branch)), _PLAIN)
    found = _SHAPES[cls] = (ev.EVENT_TYPE_CODES[kind], shape, _CHANNEL_CODES[ev.default_channel(kind)])
    return found


def _event(event: Any) -> tuple[Any, ...] | None:
    """The event's columns as ``batch._append_event`` computes them, or ``None`` when the screen
    (:func:`~affinity_sdk.ingest.screen.screen_rows`) would reject it or it is not plain."""
    cls = type(event)
    found = _SHAPES[cls] if cls in _SHAPES else _shape_of(cls)
    if found is None:
        return None
    user_id = event.user_id
    if type(user_id) is not str or not user_id:
        return None
    type_code, shape, default_channel = found
    channel: int | None = default_channel
    ts = event.timestamp
    if type(ts) is not int:
        ts = ev.timestamp_ms(event)
    if type(ts) is not int or not ev.MIN_TS_MS <= ts <= ev.MAX_TS_MS:
        return None
    named_channel = event.channel
    if named_channel:
        channel = _CHANNEL_CODES.get(named_channel)
    event_id = event.event_id
    if channel is None or (event_id is not None and type(event_id) is not str):
        return None
    products: list[ev.Product] | None = []
    revenue: Any = _NAN
    discount: Any = _NAN
    has_coupon = False
    campaign_id = None
    consent = -1
    if shape == _PLAIN:
        return type_code, user_id, ts, channel, _NAN, _NAN, False, None, -1, event_id, products
    if shape == _ONE:
        products = _products([event.product])
        if products is None:
            return None
        revenue = event.product.price * event.product.quantity
        discount = event.product.discount
    elif shape == _ORDER_SHAPE:
        products = _products(event.products)
        revenue, discount, has_coupon = event.revenue, event.discount, event.coupon is not None
    elif shape == _REFUND_SHAPE:
        products, revenue = _products(event.products), event.revenue
    elif shape == _LIST_SHAPE:
        products = _products(event.products)
    elif shape == _COUPON_SHAPE:
        discount, has_coupon = event.discount, event.coupon is not None
    elif shape == _MESSAGE_SHAPE:
        campaign_id = event.campaign_id
        if (campaign_id is not None and type(campaign_id) is not str) or getattr(event, "medium", None):
            return None  # a medium-specific unsubscribe is the batch path's (channel consent)
    else:  # consent
        if type(event.granted) is not bool or event.medium is not None:
            return None  # a decision on one medium is the batch path's (channel consent)
        consent = 1 if event.granted else 0
    # _amount's answer for a plain float in range (NaN fails the comparison) without the call
    if type(revenue) is not float or not 0.0 <= revenue <= MAX_ROW_REVENUE:
        revenue = _amount(revenue, MAX_ROW_REVENUE, required=type_code == _ORDER)
    if discount is None:
        discount = _NAN
    elif type(discount) is not float or not 0.0 <= discount <= ev.MAX_AMOUNT:
        discount = _amount(discount, ev.MAX_AMOUNT)
    if products is None or revenue is None or discount is None:
        return None
    return (
        type_code,
        user_id,
        ts,
        channel,
        revenue,
        discount,
        has_coupon,
        campaign_id,
        consent,
        event_id,
        products,
    )


def _hash(event_id: str | None) -> int:
    """:func:`~affinity_sdk.ingest.interner.event_id_hash`, compiled where the extension is."""
    if event_id is None:
        return 0
    compiled = getattr(native(), "live_event_id", None)  # None: no extension, or one built before it
    return int(compiled(event_id)) if compiled is not None else event_id_hash(event_id)


_COMPILED: list[tuple[Any, Any]] = []  # (reader, report maker), once looked up


def _compiled() -> tuple[Any, Any]:
    """The extension's one-event helpers, ``(None, None)`` without it (or with one built before
    them): ``live_event`` set up with this module's tables, :func:`_event`'s fields, the event-id
    hash and the user's and items' codes (``None`` where the interners do not hold the id as
    spelled) of a plain or one-product Struct whose fields all have their usual types and pass the
    screen, ``None`` for any other event (ask :func:`_event`); and ``live_report``, which builds
    :func:`_accepted`'s report."""
    if not _COMPILED:
        module: Any = native()
        setup = getattr(module, "live_event_setup", None)
        if setup is not None:
            limits = (ev.MIN_TS_MS, ev.MAX_TS_MS, ev.MAX_AMOUNT, MAX_ROW_REVENUE)
            setup(_SHAPES, _CHANNEL_CODES, ev.Product, _PLAIN, _ONE, *limits)
        _COMPILED.append((module.live_event, module.live_report) if setup is not None else (None, None))
    return _COMPILED[0]


_CALLS: list[tuple[Any, Any, Any]] = []  # (live_ingest, live_tier_of, live_score_of), once set up


def live_calls(labels: tuple[str, ...]) -> tuple[Any, Any, Any]:
    """The extension's whole-call shortcuts of :class:`~affinity_sdk.score.scorer.Scorer`'s
    ``ingest``, ``tier_of`` and ``score_of`` (``(None, None, None)`` without them), set up with
    this module's tables and ``labels`` (tier code -> label). Each takes what the Scorer method
    reads off the store as arguments (``csrc/bind_live_calls.cpp`` lists them,
    :mod:`affinity_sdk.score.live_calls` passes them) and answers in one call, or says to take
    the Python path having changed nothing:

    - ``live_ingest`` takes a common event (a plain or one-product Struct or NDJSON line of a
      known user and known items, that neither moves the decay landmark nor needs the clock, a
      rotation of the event-id window or the forget suppression) through every step of
      :func:`ingest_one` (the event-id probe and journal included) and returns its report, or
      ``None``;
    - ``live_tier_of`` and ``live_score_of`` answer at the latest event time: a label or a score,
      ``None`` for an unknown or hidden user, or ``NotImplemented``.

    Examples
    --------
    >>> from affinity_sdk.score.tier_changes import LABELS
    >>> calls = live_calls(LABELS)
    >>> all(call is None for call in calls) or all(callable(call) for call in calls)
    True
    """
    if not _CALLS:
        module: Any = native()
        setup = getattr(module, "live_calls_setup", None)
        if setup is None or _compiled()[0] is None:
            _CALLS.append((None, None, None))
        else:
            from affinity_sdk.kernels import REBASE_EXPONENT

            duplicate = {**_REPORT_FIELDS, "n_duplicates": 1}
            scored = (IngestReport, *_ACCEPTED_FIELDS, duplicate, globals(), SignalView, _JSON_EVENT.decode)
            setup(labels, *scored, msgspec.DecodeError, REBASE_EXPONENT)
            _CALLS.append((module.live_ingest, module.live_tier_of, module.live_score_of))
    return _CALLS[0]


def ingest_one(store: ProfileStore, data: Any) -> IngestReport | None:
    """Take one event into ``store`` as :func:`~affinity_sdk.ingest.pipeline.run_ingest` would,
    on scalars; ``None`` (nothing changed) when the batch path must take it instead. The caller
    holds the store's lock and has checked :func:`takes_one`."""
    event = _decode_line(data) if type(data) is bytes else data
    if event is None:
        return None
    names = store.interners
    read, make_report = _COMPILED[0] if _COMPILED else _compiled()
    fields = read(event, names) if read is not None else None
    if fields is None:  # not the compiled reader's common case: the Python reader decides
        try:
            found = _event(event)
            if found is None:
                return None
            fields = (*found, _hash(found[9]), None, None)
        except Exception:  # whatever the batch path makes of it, it says so itself
            return None
    # code and items: as the interners hold them (None: looked up / interned below)
    (
        type_code,
        user_id,
        ts,
        channel,
        revenue,
        discount,
        has_coupon,
        campaign_id,
        consent,
        _,
        products,
        key,
        code,
        items,
    ) = fields
    limit = store.max_future_ms
    if limit is not None:
        latest = store.latest_ms or 0
        # ts > max(clock, latest) + limit, the clock read only when the newest event allows it
        if ts > latest + limit and ts > max(int(time.time() * 1000), latest) + limit:
            return None
    users = names.users
    if code is None:
        code = users.lookup(user_id)
    flags = store.flags
    if code is not None and code >= flags.n:
        return None  # a profile the flags do not cover yet: the batch path grows them first
    reborn = NOT_SUPPRESSED
    if len(store.suppression):
        if code is None:
            # the batch path looks the new profile's name up: the id in the interner's normal form
            name = normalize_id(user_id, users.normalize)
            reborn = int(store.suppression.forget_ms_of([name])[0])
            until = reborn
        else:
            until = int(flags.reborn_ms[code])
        if ts <= until:
            if items is None:
                _intern_items(names, campaign_id, products)
            return _report(0, 0, np.zeros(0, dtype=np.int64), n_suppressed=1)
    # From here on nothing can fail: the batch path has interned the item ids by now.
    if items is None:
        items = _intern_items(names, campaign_id, products)
    dedupe = store.dedupe
    if dedupe is not None and key and dedupe.seen_one(key):
        return _report(0, 0, np.zeros(0, dtype=np.int64), n_duplicates=1)
    if code is None:
        code = users.intern(user_id)
        store.grow(len(users))
        if reborn != NOT_SUPPRESSED:
            flags.mark_reborn(np.array([code], dtype=np.int64), np.array([reborn], dtype=np.int64))
    if consent >= 0:
        flags.apply_consent_one(code, ts, consent == 1)
    flags.touch_one(code, ts)
    views = store.views
    if len(views) == 1:  # the live config's signals only (no shadow configs)
        scored = views["signals"].fold_one(code, type_code, ts, revenue)  # type: ignore[attr-defined]
    else:
        scored = False
        for view in views.values():
            used = view.fold_one(code, type_code, ts, revenue)  # type: ignore[attr-defined]
            if view.name == "signals":
                scored = used
    if key and store.journal is not None and dedupe is not None:
        row = (code, type_code, ts, channel, revenue, discount, has_coupon, items[0], key, consent)
        item_rows = _item_rows(products, items[1]) if products else _NO_ITEMS
        store.journal.append_row(row, item_rows, rotations=dedupe.rotations, interners=names)
    newest = store.latest_ms
    if newest is None or ts > newest:
        store.latest_ms = ts
    store.events_ingested += 1
    if make_report is not None:
        return make_report(IngestReport, _ACCEPTED_FIELDS[scored], code)  # type: ignore[no-any-return]
    return _accepted(code, scored)


# IngestReport is a frozen dataclass whose __init__ sets each field through object.__setattr__:
# most of the one-event path's cost. _report and _accepted give a new instance a filled __dict__.
_REPORT_FIELDS: Final = dict(vars(IngestReport(accepted=0, scored=0)))
_ACCEPTED_FIELDS: Final = (
    {**_REPORT_FIELDS, "accepted": 1, "scored": 0},
    {**_REPORT_FIELDS, "accepted": 1, "scored": 1},
)
_ONE_CODE: Final = np.zeros(1, dtype=np.int64)
_new = object.__new__
_set_attr = object.__setattr__


def _report(
    accepted: int, scored: int, codes: Any, *, n_duplicates: int = 0, n_suppressed: int = 0
) -> IngestReport:
    """``IngestReport(accepted=..., scored=..., user_codes=codes, ...)``, built faster."""
    fields = _REPORT_FIELDS.copy()
    fields.update(
        accepted=accepted,
        scored=scored,
        rejected=[],
        user_codes=codes,
        n_duplicates=n_duplicates,
        n_suppressed=n_suppressed,
    )
    report = _new(IngestReport)
    _set_attr(report, "__dict__", fields)
    return report


def _accepted(code: int, scored: bool) -> IngestReport:
    """``_report(1, int(scored), np.array([code]))``: the report of one folded event (what the
    compiled ``live_report`` builds from ``_ACCEPTED_FIELDS[scored]``)."""
    codes = _ONE_CODE.copy()
    codes[0] = code
    fields = _ACCEPTED_FIELDS[scored].copy()
    fields["rejected"] = []
    fields["user_codes"] = codes
    report = _new(IngestReport)
    _set_attr(report, "__dict__", fields)
    return report


def _intern_items(
    names: Any, campaign_id: str | None, products: list[ev.Product]
) -> tuple[int, list[tuple[int, int, int]]]:
    """Intern the event's campaign and product ids as decoding a batch does: ``(campaign code,
    [(product, category, brand) codes])``."""
    campaign = -1 if campaign_id is None else names.campaigns.intern(campaign_id)
    if not products:
        return campaign, []
    if len(products) == 1:  # the usual one: no loop
        p = products[0]
        return campaign, [
            (
                names.products.intern(p.product_id),
                names.categories.intern(p.category),
                names.brands.intern(p.brand),
            )
        ]
    product, category, brand = names.products.intern, names.categories.intern, names.brands.intern
    return campaign, [(product(p.product_id), category(p.category), brand(p.brand)) for p in products]


_NO_ITEMS: Final[list[tuple[Any, ...]]] = []


def _item_rows(products: list[ev.Product], codes: list[tuple[int, int, int]]) -> list[tuple[Any, ...]]:
    """The event's item rows as ``EventBatch.from_events`` fills the item columns after
    ``item_event``: codes, price, discount (NaN when missing), quantity (for the journal)."""
    if len(products) == 1:  # the usual one: a third of the comprehension's time
        p, (product, category, brand) = products[0], codes[0]
        discount = p.discount
        return [(product, category, brand, p.price, _NAN if discount is None else discount, p.quantity)]
    return [
        (*c, p.price, _NAN if p.discount is None else p.discount, p.quantity)
        for p, c in zip(products, codes, strict=True)
    ]
