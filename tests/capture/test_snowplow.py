"""The Snowplow adapter, proven on what the real snowplow-tracker client POSTs to a collector,
and on enriched TSV lines cross-checked with snowplow-analytics-sdk's ``transform``."""

from __future__ import annotations

import base64
import doctest
import http.server
import json
import threading
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any, ClassVar

import pytest

from affinity_sdk.capture import events as ev
from affinity_sdk.capture.snowplow import (
    ACTION_TYPES,
    ENRICHED_COLUMNS,
    from_snowplow,
    from_snowplow_tsv,
)
from affinity_sdk.errors import SchemaError
from affinity_sdk.score.scorer import Scorer

ECOM = "iglu:com.snowplowanalytics.snowplow.ecommerce/"
ACTION = ECOM + "snowplow_ecommerce_action/jsonschema/1-0-2"
T0 = 1_714_557_600_000  # 2024-05-01T10:00:00Z


def entity(schema_name: str, /, **data: Any) -> dict[str, Any]:
    return {"schema": f"{ECOM}{schema_name}/jsonschema/1-0-0", "data": data}


SHOE = entity("product", id="p1", name="Runner", category="shoes", brand="acme", price=59.0,
              currency="EUR", quantity=1)  # fmt: skip
SOCK = entity("product", id="p2", category="socks", brand="knit", price=5.0, currency="EUR",
              quantity=3)  # fmt: skip


class _Collector(http.server.BaseHTTPRequestHandler):
    received: ClassVar[list[tuple[str, bytes]]] = []

    def do_POST(self) -> None:
        self.received.append((self.path, self.rfile.read(int(self.headers["Content-Length"]))))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def collector() -> Iterator[tuple[int, list[tuple[str, bytes]]]]:
    """A local Snowplow collector that records (path, body) of each POST."""
    received: list[tuple[str, bytes]] = []
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), type("C", (_Collector,), {"received": received})
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1], received
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def _send_with_real_tracker(port: int, encode_base64: bool) -> None:
    tracker_mod = pytest.importorskip("snowplow_tracker")
    from snowplow_tracker.events import PageView, SelfDescribing

    emitter = tracker_mod.Emitter("127.0.0.1", protocol="http", port=port, method="post", batch_size=100)
    subject = tracker_mod.Subject().set_user_id("u1").set_platform("web")
    tracker = tracker_mod.Tracker("shop", emitter, subject=subject, encode_base64=encode_base64)

    def action(kind: str, *context: dict[str, Any], at: int, **extra: Any) -> None:
        json_ = tracker_mod.SelfDescribingJson(ACTION, {"type": kind, **extra})
        entities = [tracker_mod.SelfDescribingJson(c["schema"], c["data"]) for c in context]
        tracker.track(SelfDescribing(json_, context=entities, true_timestamp=T0 + at))

    tracker.track(PageView(page_url="https://shop.example/p1", true_timestamp=T0))
    action("product_view", SHOE, at=1)
    action("add_to_cart", SHOE, SOCK, entity("cart", cart_id="c9", total_value=74.0, currency="EUR"), at=2)
    action("remove_from_cart", SOCK, entity("cart", cart_id="c9", total_value=59.0, currency="EUR"), at=3)
    action("checkout_step", entity("checkout_step", step=1), entity("cart", cart_id="c9", total_value=59.0,
           currency="EUR"), at=4)  # fmt: skip
    action("checkout_step", entity("checkout_step", step=2, delivery_method="express"), at=5)
    transaction = entity("transaction", transaction_id="o1", revenue=64.0, currency="EUR",
                         payment_method="card", total_quantity=1, discount_code="SPRING",
                         discount_amount=5.0)  # fmt: skip
    action("transaction", transaction, SHOE, at=6)
    refund = entity("refund", transaction_id="o1", currency="EUR", refund_amount=59.0, refund_reason="size")
    action("refund", refund, SHOE, at=7)
    action("list_view", SHOE, SOCK, at=8, name="recommended")
    action("promo_view", entity("promotion", id="spring-banner", name="Spring", position=2), at=9)
    action("list_click", SOCK, at=10, name="recommended")
    tracker.flush()


@pytest.mark.parametrize("encode_base64", [True, False])
def test_real_tracker_payloads(collector: tuple[int, list[tuple[str, bytes]]], encode_base64: bool) -> None:
    port, received = collector
    _send_with_real_tracker(port, encode_base64)
    assert [path for path, _ in received] == ["/com.snowplowanalytics.snowplow/tp2"]
    body = received[0][1]
    hits = json.loads(body)["data"]
    assert ("ue_px" in hits[1]) is encode_base64 and ("ue_pr" in hits[1]) is not encode_base64
    result = from_snowplow(body, unknown_types="skip")
    names = [type(e).__name__ for e in result]
    assert names == ["PageViewed", "ProductViewed", "ProductAdded", "ProductAdded", "ProductRemoved",
                     "CheckoutStepCompleted", "CheckoutStarted", "CheckoutStepCompleted", "OrderCompleted",
                     "OrderRefunded", "ProductListViewed", "PromotionViewed", "ProductClicked"]  # fmt: skip
    assert result.rejects.total == 0
    page, viewed, added1, added2, removed, step1, checkout, step2, order, refund, listed, promo, click = (
        result
    )
    assert all(e.user_id == "u1" and e.channel == "web" for e in result)
    assert [ev.timestamp_ms(e) - T0 for e in result] == [0, 1, 2, 2, 3, 4, 4, 5, 6, 7, 8, 9, 10]
    assert isinstance(step1, ev.CheckoutStepCompleted) and isinstance(step2, ev.CheckoutStepCompleted)
    assert (step1.step, step2.step, step2.shipping_method) == (1, 2, "express")
    assert step1.event_id == hits[4]["eid"] and checkout.event_id == hits[4]["eid"] + ":started"
    assert isinstance(promo, ev.PromotionViewed)
    assert (promo.promotion_id, promo.name, promo.position) == ("spring-banner", "Spring", "2")
    assert isinstance(click, ev.ProductClicked)
    assert (click.product.product_id, click.list_id) == ("p2", "recommended")
    assert isinstance(page, ev.PageViewed) and page.url == "https://shop.example/p1"
    assert isinstance(viewed, ev.ProductViewed)
    assert viewed.event_id == hits[1]["eid"]
    assert viewed.product == ev.Product(product_id="p1", category="shoes", brand="acme", price=59.0)
    assert isinstance(added1, ev.ProductAdded) and isinstance(added2, ev.ProductAdded)
    assert (added1.product.product_id, added2.product.product_id) == ("p1", "p2")
    assert (added1.event_id, added2.event_id) == (hits[2]["eid"], hits[2]["eid"] + ":1")
    assert added2.product.quantity == 3 and added1.cart_id == added2.cart_id == "c9"
    assert isinstance(removed, ev.ProductRemoved) and removed.product.product_id == "p2"
    assert isinstance(checkout, ev.CheckoutStarted) and checkout.revenue == 59.0
    assert isinstance(order, ev.OrderCompleted)
    assert (order.order_id, order.revenue, order.currency, order.coupon, order.discount) == (
        "o1", 64.0, "EUR", "SPRING", 5.0)  # fmt: skip
    assert [p.product_id for p in order.products] == ["p1"]
    assert isinstance(refund, ev.OrderRefunded)
    assert (refund.order_id, refund.revenue, len(refund.products)) == ("o1", 59.0, 1)
    assert isinstance(listed, ev.ProductListViewed)
    assert listed.list_id == "recommended" and [p.product_id for p in listed.products] == ["p1", "p2"]
    report = Scorer(backend="reference").ingest(result)
    assert report.accepted == len(result) and report.n_rejected == 0


#: Written from the plugin's action enum, not from the module: a changed mapping fails here.
EXPECTED_ACTIONS = {
    "product_view": "product_viewed",
    "add_to_cart": "product_added",
    "remove_from_cart": "product_removed",
    "checkout_step": "checkout_step_completed",
    "transaction": "order_completed",
    "refund": "order_refunded",
    "list_view": "product_list_viewed",
    "list_click": "product_clicked",
    "promo_view": "promotion_viewed",
    "promo_click": "promotion_clicked",
}


def _hit(kind: str, *context: dict[str, Any], **extra: Any) -> dict[str, Any]:
    ue = {"schema": "iglu:com.snowplowanalytics.snowplow/unstruct_event/jsonschema/1-0-0",
          "data": {"schema": ACTION, "data": {"type": kind}}}  # fmt: skip
    co = {"schema": "iglu:com.snowplowanalytics.snowplow/contexts/jsonschema/1-0-1", "data": list(context)}
    return {"e": "ue", "eid": "e1", "uid": "u1", "dtm": str(T0), "p": "mob",
            "ue_pr": json.dumps(ue), "co": json.dumps(co), **extra}  # fmt: skip


_CONTEXT_FOR = {
    "transaction": [entity("transaction", transaction_id="o1", revenue=59.0, currency="EUR"), SHOE],
    "refund": [entity("refund", transaction_id="o1", currency="EUR", refund_amount=59.0), SHOE],
    "promo_view": [entity("promotion", id="x")],
    "promo_click": [entity("promotion", id="x")],
    "checkout_step": [entity("checkout_step", step=3)],
}


@pytest.mark.parametrize("action", sorted(EXPECTED_ACTIONS))
def test_each_action_maps_to_its_type(action: str) -> None:
    assert ACTION_TYPES[action] == EXPECTED_ACTIONS[action]
    hit = _hit(action, *_CONTEXT_FOR.get(action, [SHOE]))
    expected = EXPECTED_ACTIONS[action]
    if expected in ev.EVENT_TYPE_CODES:
        [event] = from_snowplow([hit])
        assert ev.EVENT_CLASSES[expected] is type(event)
        assert event.channel == "app" and event.event_id == "e1"
    else:
        result = from_snowplow([hit], unknown_types="skip")
        assert len(result) == 0 and result.rejects.n_unknown == 1
        with pytest.raises(SchemaError, match=f"Unknown e-commerce action '{action}'"):
            from_snowplow([hit])


def test_errors_name_the_payload_path() -> None:
    bad_price = _hit("product_view", entity("product", id="p", category="c", brand="b", price=-1))
    no_user = {k: v for k, v in _hit("product_view", SHOE).items() if k != "uid"}
    no_txn = _hit("transaction", SHOE)
    body = {"data": [bad_price, no_user, no_txn, {"e": "se", "uid": "u", "dtm": "0"}, "x",
                     {**_hit("product_view", SHOE), "co": "{nope"}]}  # fmt: skip
    result = from_snowplow(body, errors="collect")
    assert result.rejects.errors == [
        (0, "Expected `float` >= 0.0 - at `$.data[0].co.data[0].data.price`"),
        (1, "Object missing required field `user_id` - at `$.data[1].uid`"),
        (2, "Missing `transaction` entity for action 'transaction' - at `$.data[2].co.data`"),
        (3, "Unknown event type 'se' - at `$.data[3].e`"),
        (4, "Expected `object` - at `$.data[4]`"),
        (5, "Invalid JSON (Expecting property name enclosed in double quotes at char 1) - at `$.data[5].co`"),
    ]
    encoded = dict(_hit("product_view", SHOE))
    encoded["cx"] = base64.urlsafe_b64encode(encoded.pop("co").encode()).decode().rstrip("=")
    assert from_snowplow([encoded])[0].event_id == "e1"


def test_legacy_transaction_takes_its_items() -> None:
    tr = {"e": "tr", "uid": "u1", "dtm": str(T0), "eid": "t1", "tr_id": "o7", "tr_tt": "10.5", "tr_cu": "USD"}
    ti = {"e": "ti", "uid": "u1", "dtm": str(T0), "eid": "t2", "ti_id": "o7", "ti_sk": "123",
          "ti_pr": "10.5", "ti_qu": "1", "ti_ca": "books"}  # fmt: skip
    empty = from_snowplow([{**tr, "tr_id": "o8"}])
    assert isinstance(empty[0], ev.OrderCompleted) and empty[0].products == []
    assert (empty[0].order_id, empty[0].revenue, empty[0].currency) == ("o8", 10.5, "USD")
    result = from_snowplow([ti, tr])
    assert result.rejects.n_unknown == 1 and result.positions == [1]
    [order] = result
    assert isinstance(order, ev.OrderCompleted) and order.event_id == "t1"
    assert [(p.product_id, p.category, p.brand, p.price) for p in order.products] == [
        ("123", "books", None, 10.5)
    ]


# --- enriched TSV ---------------------------------------------------------------------------
def _tsv_row(**values: str) -> str:
    row = dict.fromkeys(ENRICHED_COLUMNS, "")
    assert set(values) <= set(row)
    row.update(values)
    return "\t".join(row.values())


def _contexts(*entities: dict[str, Any]) -> str:
    return json.dumps({"schema": "iglu:com.snowplowanalytics.snowplow/contexts/jsonschema/1-0-0",
                       "data": list(entities)})  # fmt: skip


def _unstruct(kind: str) -> str:
    return json.dumps({"schema": "iglu:com.snowplowanalytics.snowplow/unstruct_event/jsonschema/1-0-0",
                       "data": {"schema": ACTION, "data": {"type": kind}}})  # fmt: skip


TSV_LINES = [
    _tsv_row(app_id="shop", platform="web", collector_tstamp="2024-05-01 10:00:00.500",
             dvce_created_tstamp="2024-05-01 10:00:00.000", derived_tstamp="2024-05-01 10:00:00.000",
             event="page_view", event_id="e-pv", domain_userid="d1", page_url="https://shop.example/",
             domain_sessionid="s1", event_vendor="com.snowplowanalytics.snowplow", event_name="page_view",
             event_format="jsonschema", event_version="1-0-0"),
    _tsv_row(app_id="shop", platform="mob", collector_tstamp="2024-05-01 10:01:00.000",
             derived_tstamp="2024-05-01 10:01:00.250", event="unstruct", event_id="e-add",
             user_id="u1", domain_userid="d1", contexts=_contexts(SHOE), unstruct_event=_unstruct("add_to_cart"),
             event_vendor="com.snowplowanalytics.snowplow.ecommerce", event_name="snowplow_ecommerce_action",
             event_format="jsonschema", event_version="1-0-2"),
    _tsv_row(app_id="shop", platform="web", collector_tstamp="2024-05-01 10:02:00.000",
             true_tstamp="2024-05-01 10:01:59.000", event="unstruct", event_id="e-tr", user_id="u1",
             contexts=_contexts(entity("transaction", transaction_id="o1", revenue=59.0, currency="EUR"), SHOE),
             unstruct_event=_unstruct("transaction")),
]  # fmt: skip


def test_enriched_columns_match_the_analytics_sdk() -> None:
    transformer = pytest.importorskip("snowplow_analytics_sdk.event_transformer")
    assert ENRICHED_COLUMNS == tuple(name for name, _ in transformer.ENRICHED_EVENT_FIELD_TYPES)
    assert len(ENRICHED_COLUMNS) == 131


def test_tsv_agrees_with_the_analytics_sdk_transform() -> None:
    transformer = pytest.importorskip("snowplow_analytics_sdk.event_transformer")
    events = from_snowplow_tsv("\n".join(TSV_LINES) + "\n")
    assert [type(e).__name__ for e in events] == ["PageViewed", "ProductAdded", "OrderCompleted"]
    for line, event in zip(TSV_LINES, events, strict=True):
        shredded = transformer.transform(line)
        assert event.event_id == shredded["event_id"]
        assert event.user_id == shredded.get("user_id", shredded.get("domain_userid"))
        stamp = shredded.get("true_tstamp") or shredded.get("derived_tstamp")
        expected = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
        assert ev.timestamp_ms(event) == round(expected.timestamp() * 1000)
        assert event.channel == {"web": "web", "mob": "app"}[shredded["platform"]]
        products = shredded.get("contexts_com_snowplowanalytics_snowplow_ecommerce_product_1", [])
        ours = getattr(event, "products", None) or ([event.product] if hasattr(event, "product") else [])
        assert [(p.product_id, p.category, p.brand, p.price) for p in ours] == [
            (p["id"], p["category"], p["brand"], p["price"]) for p in products
        ]
    page, _, order = events
    assert isinstance(page, ev.PageViewed)
    assert page.url == "https://shop.example/" and page.session_id == "s1" and page.user_id == "d1"
    txn = transformer.transform(TSV_LINES[2])[
        "contexts_com_snowplowanalytics_snowplow_ecommerce_transaction_1"
    ][0]
    assert isinstance(order, ev.OrderCompleted)
    assert (order.order_id, order.revenue, order.currency) == (txn["transaction_id"], txn["revenue"], "EUR")


def test_tsv_errors_name_column_and_line() -> None:
    bad = TSV_LINES[1].replace('"price": 59.0', '"price": "free"')
    result = from_snowplow_tsv("\n".join([TSV_LINES[0], "a\tb", bad]), errors="collect")
    assert len(result) == 1
    assert result.rejects.errors == [
        (1, "Expected 131 tab-separated columns, got 2 (line 2)"),
        (2, "Expected `float | null`, got `str` - at `$.contexts.data[0].data.price` (line 3)"),
    ]


def test_protocol_and_tsv_give_the_same_events_and_scores() -> None:
    line = TSV_LINES[1]
    hit = _hit("add_to_cart", SHOE, eid="e-add", dtm=str(T0 + 60_250), p="mob")
    assert from_snowplow([hit]).events == from_snowplow_tsv(line).events
    first, again = Scorer(backend="reference"), Scorer(backend="reference")
    first.ingest(from_snowplow([hit]))
    report = first.ingest(from_snowplow_tsv(line))
    assert report.n_duplicates == 1 and report.accepted == 0
    again.ingest(from_snowplow_tsv(line))
    now = "2024-05-02T00:00:00Z"
    assert first.score(now=now).raw_score.tolist() == again.score(now=now).raw_score.tolist()


def test_docs_examples_run() -> None:
    doc = Path(__file__).parents[2] / "docs" / "snowplow.md"
    failures, tried = doctest.testfile(str(doc), module_relative=False, optionflags=doctest.ELLIPSIS)
    assert failures == 0 and tried > 5


def test_a_hit_with_several_events_is_taken_whole_or_not_at_all() -> None:
    bad_sock = entity("product", id="p2", price="free")
    result = from_snowplow([_hit("add_to_cart", SHOE, bad_sock), _hit("add_to_cart", SHOE, eid="e2")],
                           errors="collect")  # fmt: skip
    assert [e.event_id for e in result] == ["e2"]
    assert result.rejects.errors == [
        (0, "Expected `float | null`, got `str` - at `$[0].co.data[1].data.price`")
    ]
    no_payload = {k: v for k, v in _hit("product_view", SHOE).items() if k != "ue_pr"}
    with pytest.raises(
        SchemaError, match=r"Expected a self-describing event \(`ue_pr` or `ue_px`\) - at `\$\[0\]`"
    ):
        from_snowplow([no_payload])
