"""``affinity score --format shopify | woocommerce | snowplow | rudderstack``: a file of a source's
own payloads scores as the same payloads through the adapter and ``Scorer.ingest``."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pytest
from capture.test_snowplow import ACTION, SHOE, TSV_LINES, _hit
from capture.test_webhooks import CATALOG, CHECKOUT, CUSTOMER, ORDER, WOO_ORDER

from affinity_sdk.capture.snowplow import from_snowplow, from_snowplow_tsv
from affinity_sdk.capture.webhooks import from_shopify, from_woocommerce
from affinity_sdk.cli import main
from affinity_sdk.score.scorer import Scorer


def _scores(path: Path) -> dict[str, str]:
    with path.open(newline="") as fh:
        return {row["user_id"]: row["raw_score"] for row in csv.DictReader(fh)}


def _expected(events: Any) -> dict[str, str]:
    scorer = Scorer()
    scorer.ingest(list(events))
    result = scorer.score()
    return {u: repr(float(r)) for u, r in zip(result.user_ids, result.raw_score, strict=True)}


def _run(tmp_path: Path, name: str, text: str, fmt: str, *extra: str) -> dict[str, str]:
    source = tmp_path / name
    source.write_text(text)
    out = tmp_path / "scores.csv"
    assert main(["score", str(source), "--format", fmt, *extra, "--out", str(out)]) == 0
    return _scores(out)


def _catalogued(order: dict[str, Any]) -> dict[str, Any]:
    """``order`` with every line item's category filled from the tests' catalogue."""
    items = [
        {**item, "product_type": CATALOG.get(str(item["product_id"]), {}).get("category", "misc")}
        for item in order["line_items"]
    ]
    return {**order, "line_items": items}


def test_shopify_deliveries(tmp_path: Path) -> None:
    deliveries = [
        {"topic": "orders/create", "payload": _catalogued(ORDER)},
        {"topic": "checkouts/create", "payload": _catalogued(CHECKOUT)},
        {"topic": "customers/update", "payload": CUSTOMER},
        {"topic": "orders/create", "payload": _catalogued(ORDER)},  # re-delivered: dedupes
    ]
    text = "\n".join(json.dumps(d) for d in deliveries) + "\n"
    got = _run(tmp_path, "shopify.ndjson", text, "shopify")
    assert got == _expected(from_shopify(text))
    assert got  # the order's customer is scored


def test_woocommerce_deliveries(tmp_path: Path) -> None:
    text = json.dumps({"topic": "order.created", "payload": WOO_ORDER}) + "\n"
    got = _run(tmp_path, "woo.ndjson", text, "woocommerce")
    assert got == _expected(from_woocommerce(text, catalog=None)) and got


def test_snowplow_bodies_one_per_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    view = _hit("product_view", SHOE)
    body = {"schema": "iglu:com.snowplowanalytics.snowplow/payload_data/jsonschema/1-0-4", "data": [view]}
    ping = {"data": [{"e": "pp", "uid": view["uid"], "dtm": view["dtm"]}]}
    text = json.dumps(body) + "\n" + json.dumps(ping) + "\n"
    got = _run(tmp_path, "hits.ndjson", text, "snowplow")
    assert got == _expected(from_snowplow(body)) and got
    assert "skipped 1 snowplow payloads that map to no event" in capsys.readouterr().err
    assert ACTION in json.dumps(view)


def test_snowplow_enriched_tsv(tmp_path: Path) -> None:
    text = "\n".join(TSV_LINES) + "\n"
    got = _run(tmp_path, "enriched.tsv", text, "snowplow")
    assert got == _expected(from_snowplow_tsv(text, unknown_types="skip")) and got


def test_a_bad_delivery_is_one_error_line_or_skipped(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = json.dumps({"topic": "orders/create", "payload": _catalogued(ORDER)})
    bad = json.dumps({"topic": "orders/create", "payload": {**ORDER, "customer": {}}})
    source = tmp_path / "shopify.ndjson"
    source.write_text(good + "\n" + bad + "\n")
    out = tmp_path / "scores.csv"
    assert main(["score", str(source), "--format", "shopify", "--out", str(out)]) == 2
    assert capsys.readouterr().err.startswith("affinity: error: ")
    assert main(["score", str(source), "--format", "shopify", "--errors", "skip", "--out", str(out)]) == 0
    assert _scores(out) == _expected(from_shopify(good))
