"""Input hygiene: a UTF-8 BOM is skipped, duplicate keys keep the last value (both readers), and
ids are NFC-normalised (configurable) so composed and decomposed "José" are one user."""

from __future__ import annotations

import unicodedata
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from affinity_sdk import Scorer
from affinity_sdk._backends import native
from affinity_sdk.capture import events as ev
from affinity_sdk.capture.decode import decode_json, decode_ndjson
from affinity_sdk.capture.formats import sniff_text
from affinity_sdk.errors import SchemaError
from affinity_sdk.ingest.batch import EVENT_COLUMNS, EventBatch
from affinity_sdk.ingest.interner import Interner, Interners, normalize_id
from affinity_sdk.ingest.ndjson import read_ndjson_file

BOM = b"\xef\xbb\xbf"
T0 = 1_767_225_600_000
LINES = (
    b'{"type":"app_opened","user_id":"a","timestamp":1767225600000}\n'
    b'{"type":"email_opened","user_id":"b","timestamp":1767225600001,"campaign_id":"c"}\n'
)
READERS = ["python", *(["native"] if native() is not None else [])]
COMPOSED = "Jos\u00e9"
DECOMPOSED = "Jose\u0301"


def _same(a: EventBatch, b: EventBatch) -> None:
    for name in EVENT_COLUMNS:
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
    assert a.interners.users.names == b.interners.users.names


# --- BOM ------------------------------------------------------------------------------------
@pytest.mark.parametrize("reader", READERS)
def test_bom_is_skipped_by_from_ndjson(reader: str) -> None:
    _same(EventBatch.from_ndjson(BOM + LINES, reader=reader), EventBatch.from_ndjson(LINES, reader=reader))  # type: ignore[arg-type]
    text = (BOM + LINES).decode()
    assert text[0] == "\ufeff"
    assert len(EventBatch.from_ndjson(text, reader=reader)) == 2  # type: ignore[arg-type]


@pytest.mark.parametrize("reader", READERS)
def test_bom_keeps_line_numbers(reader: str) -> None:
    bad = BOM + LINES + b'{"type":"app_opened","user_id":"c"}\n'
    with pytest.raises(SchemaError) as info:
        EventBatch.from_ndjson(bad, reader=reader)  # type: ignore[arg-type]
    assert str(info.value) == "Object missing required field `timestamp` (line 3)"
    assert info.value.position == 2


def test_bom_is_skipped_by_the_struct_decoders() -> None:
    assert [e.user_id for e in decode_ndjson(BOM + LINES)] == ["a", "b"]
    assert decode_json(BOM + LINES.splitlines()[0])[0].user_id == "a"
    assert len(decode_json(BOM + b"[" + b",".join(LINES.splitlines()) + b"]")) == 2


@pytest.mark.parametrize("reader", READERS)
@pytest.mark.parametrize("chunk_bytes", [16, 1 << 20])
def test_bom_is_skipped_in_files(tmp_path: Path, reader: str, chunk_bytes: int) -> None:
    path = tmp_path / "events.ndjson"
    path.write_bytes(BOM + LINES)
    names = Interners()
    batches = list(read_ndjson_file(path, names, reader=reader, chunk_bytes=chunk_bytes))  # type: ignore[arg-type]
    assert sum(len(b) for b in batches) == 2
    assert names.users.names == ("a", "b")


@pytest.mark.parametrize("fmt", ["ndjson", "json"])
def test_scorer_ingest_skips_bom(fmt: str) -> None:
    data = BOM + (LINES if fmt == "ndjson" else LINES.splitlines()[0])
    assert Scorer().ingest(data, format=fmt).accepted == (2 if fmt == "ndjson" else 1)  # type: ignore[arg-type]


def test_bom_inside_is_still_an_error() -> None:
    with pytest.raises(SchemaError, match=r"\(line 2\)$"):
        EventBatch.from_ndjson(LINES.splitlines()[0] + b"\n" + BOM + LINES.splitlines()[1])


def test_sniff_text() -> None:
    assert sniff_text(BOM + b"customer_id;date;revenue\r\n") == ("csv", "customer_id;date;revenue")
    assert sniff_text(b"\n\n[1, 2]") == ("json", "[1, 2]")
    assert sniff_text(b"hello") == ("text", "hello")
    assert sniff_text(b"\x82\xa4type") == ("binary", "")


# --- duplicate keys ---------------------------------------------------------------------------
DUPLICATE = b'{"type":"app_opened","user_id":"first","timestamp":1767225600000,"user_id":"last"}\n'


@pytest.mark.parametrize("reader", READERS)
def test_duplicate_keys_last_wins(reader: str) -> None:
    batch = EventBatch.from_ndjson(DUPLICATE, reader=reader)  # type: ignore[arg-type]
    assert batch.interners.users.names == ("last",)
    nested = b'{"type":"product_viewed","user_id":"u","timestamp":0,"product":{"product_id":"p","price":1,"price":2,"category":"c","brand":"b"}}'
    assert EventBatch.from_ndjson(nested, reader=reader).item_price.tolist() == [2.0]  # type: ignore[arg-type]


def test_duplicate_keys_last_wins_in_struct_decoders() -> None:
    assert decode_ndjson(DUPLICATE)[0].user_id == "last"
    assert decode_json(DUPLICATE)[0].user_id == "last"


# --- NFC ------------------------------------------------------------------------------------
def test_spellings_differ_as_bytes() -> None:
    assert COMPOSED != DECOMPOSED
    assert unicodedata.normalize("NFC", DECOMPOSED) == COMPOSED


def _line(user: str, product: str = "p", t: int = 0) -> bytes:
    return (
        f'{{"type":"product_viewed","user_id":"{user}","timestamp":{T0 + t},'
        f'"product":{{"product_id":"{product}","category":"c","brand":"b","price":5}}}}\n'
    ).encode()


@pytest.mark.parametrize("reader", READERS)
def test_composed_and_decomposed_are_one_user(reader: str) -> None:
    data = _line(COMPOSED, "caf\u00e9") + _line(DECOMPOSED, "cafe\u0301", 1) + _line("ann", "caf\u00e9")
    batch = EventBatch.from_ndjson(data, reader=reader)  # type: ignore[arg-type]
    assert batch.interners.users.names == (COMPOSED, "ann")
    assert batch.user.tolist() == [0, 0, 1]
    assert batch.interners.products.names == ("caf\u00e9",)


def test_one_user_in_structs_arrow_and_frames() -> None:
    product = ev.Product(product_id="p", category="c", brand="b", price=1.0)
    structs = [ev.ProductViewed(user_id=u, timestamp=T0, product=product) for u in (DECOMPOSED, COMPOSED)]
    assert EventBatch.from_events(structs).user.tolist() == [0, 0]
    table = pa.table({"type": ["app_opened"] * 2, "user_id": [DECOMPOSED, COMPOSED], "timestamp": [T0, T0]})
    arrow = EventBatch.from_arrow(table)
    assert arrow.user.tolist() == [0, 0] and arrow.interners.users.names == (COMPOSED,)
    assert EventBatch.from_frame(table.to_pandas()).user.tolist() == [0, 0]


def test_scorer_sees_one_user_under_either_spelling() -> None:
    scorer = Scorer()
    scorer.ingest(_line(DECOMPOSED) + _line(COMPOSED, t=1))
    assert scorer.n_users == 1
    result = scorer.score()
    assert result.user_ids == [COMPOSED]
    assert scorer.tier_of(DECOMPOSED) == scorer.tier_of(COMPOSED) is not None


def test_normalisation_can_be_turned_off() -> None:
    names = Interners(normalize_ids=None)
    batch = EventBatch.from_ndjson(_line(COMPOSED) + _line(DECOMPOSED), names)
    assert batch.user.tolist() == [0, 1]
    assert names.users.names == (COMPOSED, DECOMPOSED)


def test_other_forms_and_bad_form() -> None:
    names = Interner(normalize="NFKC")
    assert names.intern("\ufb01le") == names.intern("file")  # the "fi" ligature
    assert Interner().intern("\ufb01le") != Interner().lookup("file")
    with pytest.raises(ValueError, match="normalize_ids must be 'NFC', 'NFKC', 'NFD', 'NFKD' or None"):
        Interners(normalize_ids="nfc")  # type: ignore[arg-type]


def test_interner_methods_normalise() -> None:
    names = Interner(["ann"])
    code = names.intern(COMPOSED)
    assert names.lookup(DECOMPOSED) == code
    names.alias("Ren\u0065\u0301", code)  # decomposed "René" becomes an alias of José
    assert names.lookup("Ren\u00e9") == code
    names.drop_alias("Ren\u00e9")
    assert names.lookup("Ren\u0065\u0301") is None
    assert names.forget(DECOMPOSED) == code
    assert names.lookup(COMPOSED) is None


def test_saved_tables_are_taken_verbatim() -> None:
    """A saved table keeps its codes even if it holds two spellings (saved without normalising)."""
    names = Interner([COMPOSED, DECOMPOSED, "ann"])
    assert names.names == (COMPOSED, DECOMPOSED, "ann")
    assert names.lookup(DECOMPOSED) == 1


def test_ascii_ids_are_left_alone() -> None:
    assert normalize_id("plain-id") == "plain-id"
    assert normalize_id(DECOMPOSED) == COMPOSED
    assert normalize_id(DECOMPOSED, None) == DECOMPOSED


def test_order_frames_normalise_customers() -> None:
    df = pd.DataFrame(
        {"customer_id": [COMPOSED, DECOMPOSED], "date": ["2024-01-01", "2024-01-02"], "revenue": [1, 2]}
    )
    assert EventBatch.from_orders(df).user.tolist() == [0, 0]


def test_forget_in_either_spelling_keeps_the_user_away() -> None:
    """A forget names the user in decomposed form; a late event in composed form stays dropped."""
    from affinity_sdk import capture
    from affinity_sdk.score.scorer import Scorer

    events = capture.events
    scorer = Scorer()
    scorer.ingest(events.PageViewed(user_id="Jos\u00e9", timestamp=1_000))
    assert scorer.forget("Jose\u0301", at=2_000)
    report = scorer.ingest(events.PageViewed(user_id="Jos\u00e9", timestamp=1_500))
    assert report.accepted == 0 and scorer.score_of("Jos\u00e9") is None
