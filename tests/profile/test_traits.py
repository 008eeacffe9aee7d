"""Traits from identify calls live on the profile: latest value per (person, trait) by time,
merged on identity merges and shard merges in any order, erased by forget, saved and loaded;
email / phone kept as a keyed hash unless kept in clear."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from affinity_sdk import Scorer
from affinity_sdk.capture.events import AppOpened
from affinity_sdk.errors import SchemaError
from affinity_sdk.profile.traits import TraitStore

T0 = 1_767_225_600_000

#: (id the traits are sent under, traits, time) -- anon-1 and ann are one person once linked
CALLS: list[tuple[str, dict[str, Any], int]] = [
    ("anon-1", {"plan": "free", "city": "Oslo"}, T0 + 1),
    ("ann", {"plan": "gold"}, T0 + 5),
    ("anon-1", {"plan": "trial", "city": "Bergen"}, T0 + 3),  # plan older than gold, city newer
    ("ann", {"vip": True}, T0 + 5),
    ("ann", {"city": "Oslo"}, T0 + 2),
    ("bob", {"plan": "free"}, T0 + 4),
    ("bob", {"plan": "pro"}, T0 + 4),  # a tie: the order of the JSON encodings decides
]
WANT = {"city": "Bergen", "plan": "gold", "vip": True}


@settings(max_examples=60, deadline=None)
@given(order=st.permutations(range(len(CALLS) + 1)), split=st.integers(0, len(CALLS) + 1))
def test_latest_trait_wins_whatever_the_order_of_calls_links_and_shards(order: list[int], split: int) -> None:
    """Calls and the link, in any order, spread over two shards, merged: the same traits."""
    shards = (Scorer(), Scorer())
    for position, i in enumerate(order):
        scorer = shards[position >= split]
        if i == len(CALLS):
            scorer.identify("anon-1", "ann")
        else:
            user_id, traits, at = CALLS[i]
            scorer.store.set_traits(user_id, traits, at=at)
    one = shards[0].merge(shards[1])
    one.identify("anon-1", "ann")  # the shard without the link learns it here
    assert one.traits_of("ann") == one.traits_of("anon-1") == WANT
    assert one.traits_of("bob") == {"plan": "pro"}


def test_email_and_phone_are_keyed_hashes_unless_kept_in_clear() -> None:
    scorer = Scorer(suppression_key=b"secret")
    scorer.identify("anon-1", "ann", traits={"email": " Ann@Shop.example", "Phone": "+47 123"}, at=T0)
    scorer.identify("anon-2", "ann2", traits={"email": "ann@shop.example"}, at=T0)
    got = scorer.traits_of("ann")
    assert got["email"].startswith("blake2b:") and "ann" not in got["email"].lower().replace("blake2b:", "")
    assert got["Phone"].startswith("blake2b:") and "123" not in got["Phone"]
    assert got["email"] == scorer.traits_of("ann2")["email"]  # one address, one hash
    other_key = Scorer(suppression_key=b"other")
    other_key.identify("anon-1", "ann", traits={"email": "ann@shop.example"}, at=T0)
    assert other_key.traits_of("ann")["email"] != got["email"]
    clear = Scorer()
    clear.store.traits.keep_in_clear = frozenset({"email"})
    clear.identify("anon-1", "ann", traits={"email": "Ann@Shop.example", "phone": "1"}, at=T0)
    assert clear.traits_of("ann")["email"] == "Ann@Shop.example"
    assert clear.traits_of("ann")["phone"].startswith("blake2b:")


def test_saved_and_loaded_with_the_state(tmp_path: Path) -> None:
    scorer = Scorer()
    scorer.ingest(AppOpened(user_id="anon-1", timestamp=T0))
    scorer.identify("anon-1", "ann", traits={"plan": "gold", "tags": ["a", "b"], "age": 41}, at=T0)
    loaded = Scorer.load(scorer.save(tmp_path / "s.afs"))
    assert loaded.traits_of("anon-1") == {"age": 41, "plan": "gold", "tags": ["a", "b"]}
    loaded.store.set_traits("anon-1", {"plan": "silver"}, at=T0 - 1)
    assert loaded.traits_of("ann")["plan"] == "gold"


def test_forget_erases_traits_and_late_ones_stay_out(tmp_path: Path) -> None:
    scorer = Scorer()
    scorer.ingest(AppOpened(user_id="ann", timestamp=T0))
    scorer.identify("anon-1", "ann", traits={"plan": "gold"}, at=T0)
    scorer.forget("anon-1", at=T0 + 10)
    assert scorer.traits_of("ann") == {} and len(scorer.store.traits) == 0
    assert not scorer.store.set_traits("ann", {"plan": "late"}, at=T0 + 10)  # a replay
    assert scorer.traits_of("ann") == {}
    assert scorer.store.set_traits("ann", {"plan": "new"}, at=T0 + 11)  # after the forget
    assert scorer.store.traits.of("ann") == {"plan": "new"}
    # A shard that still holds the traits brings nothing back on merge.
    shard = Scorer()
    shard.identify("anon-1", "ann", traits={"plan": "gold", "city": "Oslo"}, at=T0)
    scorer.merge(shard)
    assert scorer.store.traits.of("ann") == {"plan": "new"}
    assert b"gold" not in scorer.save(tmp_path / "s.afs").read_bytes()


def test_hidden_users_show_no_traits() -> None:
    scorer = Scorer()
    scorer.ingest(AppOpened(user_id="ann", timestamp=T0))
    scorer.identify("anon-1", "ann", traits={"plan": "gold"}, at=T0)
    scorer.opt_out("anon-1", at=T0 + 1)
    assert scorer.traits_of("ann") == scorer.traits_of("anon-1") == {}
    scorer.opt_in("ann", at=T0 + 2)
    assert scorer.traits_of("anon-1") == {"plan": "gold"}
    assert scorer.traits_of("nobody") == {}


def test_traits_create_no_profile() -> None:
    """Traits of an id without events change no score: no profile, no row in score()."""
    scorer = Scorer()
    scorer.ingest(AppOpened(user_id="bob", timestamp=T0))
    scorer.ingest_segment(
        [
            {
                "type": "identify",
                "userId": "cleo",
                "traits": {"plan": "gold"},
                "timestamp": "2026-01-01T00:00:00Z",
            }
        ]
    )
    assert scorer.score().user_ids == ["bob"] and scorer.traits_of("cleo") == {"plan": "gold"}


def test_ingest_segment_stamps_traits_with_the_call_time() -> None:
    calls = [
        {
            "type": "identify",
            "anonymousId": "a1",
            "userId": "ann",
            "traits": {"plan": "gold"},
            "timestamp": "2026-01-02T00:00:00Z",
        },
        {
            "type": "identify",
            "userId": "ann",
            "traits": {"plan": "free", "": 1},
            "timestamp": "2026-01-01T00:00:00Z",
        },
    ]
    scorer = Scorer()
    scorer.ingest_segment(calls)
    assert scorer.traits_of("a1") == {"plan": "gold"}  # the later call wins, not the later arrival
    later = Scorer()
    later.ingest_segment(calls, until="2026-01-01T12:00:00Z")
    assert later.traits_of("ann") == {"plan": "free"}


@pytest.mark.parametrize(
    ("traits", "message"),
    [
        ({"": 1}, "Expected a non-empty `str` trait name, got '' - at `$.traits`"),
        ({"when": object()}, "at `$.traits.when`"),
    ],
)
def test_bad_traits_are_refused_whole(traits: dict[str, Any], message: str) -> None:
    store = TraitStore()
    with pytest.raises(SchemaError) as info:
        store.set("ann", {"plan": "gold", **traits}, ts_ms=0)
    assert message in str(info.value)
    assert store.of("ann") == {}


def test_a_malformed_stored_entry_is_refused() -> None:
    with pytest.raises(ValueError, match="is not \\[user, trait, ts_ms, JSON bytes\\]"):
        TraitStore().load([["ann", "plan", "x", b'"gold"']])
