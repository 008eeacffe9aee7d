"""Simulated batches back as typed events (:mod:`affinity_sdk.capture.events` Structs, for NDJSON)
and as a flat Arrow table."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Final

import numpy as np
from numpy.typing import NDArray

from affinity_sdk.capture import events as ev
from affinity_sdk.ingest.arrow import consent_arrow_columns
from affinity_sdk.ingest.batch import EventBatch
from affinity_sdk.sim.assembly import EventDetails
from affinity_sdk.sim.ids import _id_prefix, _order_id, _session_id
from affinity_sdk.sim.parameters import _T

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
        # a decision on one medium (batch code >= 2, see channel_consent.encode_consent)
        medium = ev.MEDIA[(consent - 2) // 2] if consent >= 2 else None
        product_cls = _PRODUCT_EVENTS.get(etype)
        campaign_cls = _CAMPAIGN_EVENTS.get(etype)
        app_cls = _APP_EVENTS.get(etype)
        if product_cls is not None:
            yield product_cls(product=lines[0], **common)
        elif campaign_cls is not None:
            on_medium: dict[str, Any] = {} if medium is None else {"medium": medium}  # unsubscribed
            yield campaign_cls(
                campaign_id=campaigns[campaign] if campaign >= 0 else None, **on_medium, **common
            )
        elif app_cls is not None:
            yield app_cls(**common)
        elif etype == _T["message_delivered"]:  # on email, sms or push: the medium is the channel
            yield ev.MessageDelivered(
                medium=common["channel"], campaign_id=campaigns[campaign] if campaign >= 0 else None, **common
            )
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
            yield ev.ConsentChanged(granted=consent % 2 == 1, medium=medium, **common)
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
    granted, medium = consent_arrow_columns(batch.consent)
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
        "medium": medium,
        "products": products,
    }
    return pa.table(columns)
