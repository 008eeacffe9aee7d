"""Message events on every medium, and per-channel consent kept beside the global opt-out."""

from __future__ import annotations

import random
from pathlib import Path

import msgspec
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from affinity_sdk.capture import events as ev
from affinity_sdk.capture.decode import decode_json
from affinity_sdk.capture.segment_adapter import from_segment
from affinity_sdk.ingest.batch import EventBatch
from affinity_sdk.profile.channel_consent import (
    NO_DECISION,
    ChannelConsent,
    UnknownMediumError,
    decode_channel_rows,
    encode_consent,
)
from affinity_sdk.score.scorer import Scorer

MEDIA = ("email", "sms", "push", "in_app", "whatsapp")
ACTIONS = ("sent", "delivered", "opened", "clicked", "bounced", "marked_as_spam")


def test_media_and_new_codes_are_appended() -> None:
    assert ev.MEDIA == MEDIA
    assert ev.EVENT_TYPES[:21][-1] == "consent_changed"  # codes persisted before stay put
    assert ev.EVENT_TYPES[-6:] == tuple(f"message_{a}" for a in ACTIONS)


@pytest.mark.parametrize("medium", MEDIA)
@pytest.mark.parametrize("action", ACTIONS)
def test_every_action_on_every_medium_ingests(action: str, medium: str) -> None:
    line = {"type": f"message_{action}", "user_id": "u", "timestamp": 5, "medium": medium, "campaign_id": "c"}
    raw = msgspec.json.encode(line)
    (event,) = decode_json(raw)
    assert ev.message_action(event) == (action, medium)
    scorer = Scorer()
    report = scorer.ingest(raw + b"\n")  # NDJSON: the C++ reader hands unknown types to msgspec
    assert report.accepted == 1 and scorer.events_ingested == 1
    batch = EventBatch.from_events([event])
    assert batch.event_type.tolist() == [ev.EVENT_TYPE_CODES[f"message_{action}"]]


def test_a_message_needs_its_medium() -> None:
    with pytest.raises(Exception, match="medium"):
        decode_json(b'{"type":"message_sent","user_id":"u","timestamp":1}')
    with pytest.raises(Exception, match="medium"):
        decode_json(b'{"type":"message_sent","user_id":"u","timestamp":1,"medium":"fax"}')


def test_legacy_names_decode_as_before_and_share_the_actions() -> None:
    legacy = {
        "email_opened": ("opened", "email"),
        "email_clicked": ("clicked", "email"),
        "sms_clicked": ("clicked", "sms"),
        "push_opened": ("opened", "push"),
        "unsubscribed": ("unsubscribed", "email"),
    }
    for kind, expected in legacy.items():
        (event,) = decode_json(msgspec.json.encode({"type": kind, "user_id": "u", "timestamp": 1}))
        assert type(event) is ev.EVENT_CLASSES[kind]
        assert ev.message_action(event) == expected
    sms_unsub = ev.Unsubscribed(user_id="u", timestamp=1, channel="sms")
    assert ev.message_action(sms_unsub) == ("unsubscribed", "sms")
    assert ev.message_action(ev.Unsubscribed(user_id="u", timestamp=1, medium="whatsapp")) == (
        "unsubscribed",
        "whatsapp",
    )
    assert ev.message_action(ev.PageViewed(user_id="u", timestamp=1)) is None


def test_open_rate_over_both_spellings() -> None:
    events = [
        ev.MessageDelivered(user_id="u", timestamp=1, medium="email"),
        ev.MessageDelivered(user_id="u", timestamp=2, medium="email"),
        ev.MessageDelivered(user_id="u", timestamp=3, medium="push"),
        ev.EmailOpened(user_id="u", timestamp=4),
        ev.MessageOpened(user_id="u", timestamp=5, medium="push"),
    ]
    actions = [ev.message_action(e) for e in events]
    delivered = sum(a == ("delivered", "email") for a in actions)
    opened = sum(a == ("opened", "email") for a in actions)
    assert (opened, delivered) == (1, 2)


def test_message_channels() -> None:
    channel = {m: ev.event_channel(ev.MessageSent(user_id="u", timestamp=0, medium=m)) for m in MEDIA}
    assert channel == {
        "email": "email",
        "sms": "sms",
        "push": "push",
        "in_app": "app",
        "whatsapp": "whatsapp",
    }
    given_channel = ev.MessageSent(user_id="u", timestamp=0, medium="email", channel="web")
    assert ev.event_channel(given_channel) == "web"


def test_segment_message_calls_read_the_medium() -> None:
    call = {"type": "track", "userId": "u", "timestamp": 0, "event": "Message Clicked"}
    (event,) = from_segment({**call, "properties": {"channel": "whatsapp", "campaign_id": "c"}})
    assert event == ev.MessageClicked(
        user_id="u", timestamp=0, medium="whatsapp", campaign_id="c", channel="whatsapp"
    )
    (event,) = from_segment(
        {**call, "event": "Consent Changed", "properties": {"granted": False, "medium": "sms"}}
    )
    assert isinstance(event, ev.ConsentChanged) and (event.granted, event.medium) == (False, "sms")


def test_consent_changed_reads_medium_and_purpose() -> None:
    raw = b'{"type":"consent_changed","user_id":"u","timestamp":1,"granted":false,"medium":"email","purpose":"marketing"}'
    (event,) = decode_json(raw)
    assert isinstance(event, ev.ConsentChanged)
    assert (event.granted, event.medium, event.purpose) == (False, "email", "marketing")
    (plain,) = decode_json(b'{"type":"consent_changed","user_id":"u","timestamp":1,"granted":false}')
    assert isinstance(plain, ev.ConsentChanged) and plain.medium is None  # all channels, as before


# --- per-channel consent ------------------------------------------------------------------------
def _scorer(*users: str) -> Scorer:
    scorer = Scorer()
    product = ev.Product(product_id="p", category="c", brand="b", price=5.0)
    scorer.ingest([ev.ProductViewed(user_id=u, timestamp=1000, product=product) for u in users])
    return scorer


def test_email_unsubscriber_stays_in_push_audiences() -> None:
    scorer = _scorer("ann", "bob")
    scorer.opt_out("ann", medium="email", at=2000)
    assert scorer.may_contact("ann", "push") and not scorer.may_contact("ann", "email")
    assert scorer.consents_of("ann") == {m: m != "email" for m in MEDIA}
    assert scorer.score_of("ann") is not None and scorer.opted_out() == []
    assert scorer.contact_mask("email").tolist() == [False, True]
    assert scorer.contact_mask("push").tolist() == [True, True]
    scorer.opt_in("ann", medium="email", at=3000)
    assert scorer.may_contact("ann", "email")
    scorer.opt_in("ann", medium="email", at=2500)  # older than the decision in force: ignored
    scorer.opt_out("ann", medium="email", at=2400)
    assert scorer.may_contact("ann", "email")


def test_global_opt_out_covers_every_medium() -> None:
    scorer = _scorer("ann")
    scorer.opt_out("ann", at=2000)
    assert scorer.consents_of("ann") == dict.fromkeys(MEDIA, False)
    assert scorer.contact_mask("sms").tolist() == [False]
    assert scorer.consents_of("nobody") == dict.fromkeys(MEDIA, False)


def test_unknown_medium_raises_and_changes_nothing() -> None:
    scorer = _scorer("ann")
    with pytest.raises(UnknownMediumError, match="'fax'"):
        scorer.opt_out("zed", medium="fax")
    assert scorer.n_users == 1
    with pytest.raises(UnknownMediumError):
        scorer.may_contact("ann", "fax")


def test_channel_consent_saves_loads_merges_and_forgets(tmp_path: Path) -> None:
    scorer = _scorer("ann", "bob")
    scorer.opt_out("ann", medium="sms", at=2000)
    path = scorer.save(tmp_path / "state.bin")
    loaded = Scorer.load(path)
    assert loaded.consents_of("ann") == {m: m != "sms" for m in MEDIA}
    other = _scorer("bob", "cy")
    other.opt_out("bob", medium="push", at=2000)
    other.opt_out("ann", medium="sms", at=1500)  # older than ann's decision here
    other.opt_in("cy", medium="email", at=2000)
    loaded.merge(other)
    assert loaded.consents_of("bob") == {m: m != "push" for m in MEDIA}
    assert not loaded.may_contact("ann", "sms") and loaded.may_contact("cy", "email")
    assert loaded.forget("bob", at=3000)
    assert loaded.store.channel_consent.decided_ms[loaded.interners.users.lookup("ann") or 0, 1] == 2000
    loaded.ingest([ev.AppOpened(user_id="bob", timestamp=4000)])  # after the forget: reborn, fresh
    assert loaded.consents_of("bob") == dict.fromkeys(MEDIA, False)  # reborn profiles stay opted out
    assert not loaded.store.channel_consent.revoked(loaded.interners.users.lookup("bob") or 0).any()


def test_identity_link_folds_channel_consent() -> None:
    scorer = _scorer("anon", "ann")
    scorer.opt_out("anon", medium="whatsapp", at=2000)
    scorer.opt_out("ann", medium="email", at=2000)
    scorer.identify("anon", "ann")
    assert scorer.consents_of("ann") == {m: m not in ("email", "whatsapp") for m in MEDIA}


def test_state_without_channel_consent_loads() -> None:
    consent = ChannelConsent()
    consent.load_arrays({}, 3)
    assert consent.decided_ms.shape == (3, 5) and (consent.decided_ms == NO_DECISION).all()
    with pytest.raises(ValueError, match="shape"):
        consent.load_arrays({"decided_ms": np.zeros((2, 5), np.int64), "revoked": np.zeros((2, 5), bool)}, 3)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 3), st.integers(0, 4), st.integers(0, 5), st.booleans()),
        min_size=1,
        max_size=30,
    ),
    st.randoms(use_true_random=False),
)
def test_decisions_fold_in_any_order_and_split(
    rows: list[tuple[int, int, int, bool]], rnd: random.Random
) -> None:
    def fold(part: list[tuple[int, int, int, bool]], into: ChannelConsent) -> ChannelConsent:
        if part:
            u, m, t, r = (np.array(c) for c in zip(*part, strict=True))
            into.apply(u.astype(np.int64), m.astype(np.int64), t.astype(np.int64), r.astype(bool))
        return into

    whole = fold(rows, ChannelConsent())
    shuffled = rows[:]
    rnd.shuffle(shuffled)
    cut = rnd.randrange(len(rows) + 1)
    split = fold(shuffled[cut:], fold(shuffled[:cut], ChannelConsent()))
    split.grow(whole.n_users)
    assert np.array_equal(whole.decided_ms, split.decided_ms) and np.array_equal(
        whole.revoked_, split.revoked_
    )
    for u, m, _, _ in rows:  # the latest decision wins, a revoke wins a tie
        latest = max(t2 for u2, m2, t2, _ in rows if (u2, m2) == (u, m))
        ties = [r2 for u2, m2, t2, r2 in rows if (u2, m2, t2) == (u, m, latest)]
        assert whole.decided_ms[u, m] == latest and whole.revoked_[u, m] == any(ties)


def test_batch_consent_codes_round_trip() -> None:
    codes = np.array([encode_consent(g, m) for m in (None, *MEDIA) for g in (False, True)], dtype=np.int8)
    rows, media, revoked = decode_channel_rows(codes)
    assert codes[:2].tolist() == [0, 1] and rows.tolist() == [False, False] + [True] * 10
    assert media.tolist() == [i for i in range(5) for _ in (0, 1)]
    assert revoked.tolist() == [True, False] * 5


def test_native_reader_hands_new_types_to_msgspec() -> None:
    """The C++ NDJSON reader knows only the first 21 types: every other line must come out as the
    msgspec path makes it (the reader flags what it does not know)."""
    from affinity_sdk.ingest.batch import EVENT_COLUMNS

    lines = [
        {"type": "message_opened", "user_id": "u", "timestamp": 1, "medium": "whatsapp", "campaign_id": "c"},
        {"type": "unsubscribed", "user_id": "u", "timestamp": 2, "medium": "sms"},
        {"type": "consent_changed", "user_id": "u", "timestamp": 3, "granted": True, "purpose": "marketing"},
        {"type": "promotion_clicked", "user_id": "v", "timestamp": 4, "promotion_id": "p"},
        {"type": "app_opened", "user_id": "v", "timestamp": 5},
        # per-medium decisions (codes >= 2) beside global ones, and the legacy types with a medium
        {"type": "consent_changed", "user_id": "v", "timestamp": 6, "granted": False, "medium": "push"},
        {"type": "consent_changed", "user_id": "v", "timestamp": 7, "granted": True, "medium": None},
        {"type": "consent_changed", "user_id": "w", "timestamp": 8, "granted": False},
        {"type": "unsubscribed", "user_id": "w", "timestamp": 9, "medium": "email", "campaign_id": "c"},
        {"type": "unsubscribed", "user_id": "w", "timestamp": 10, "channel": "sms"},
        {"type": "email_opened", "user_id": "w", "timestamp": 11, "medium": "email"},
    ]
    data = b"\n".join(msgspec.json.encode(line) for line in lines)
    python = EventBatch.from_ndjson(data, reader="python")
    try:
        native = EventBatch.from_ndjson(data, reader="native")
    except Exception as exc:  # no compiled reader in this build
        pytest.skip(f"native reader unavailable: {exc}")
    for name in EVENT_COLUMNS:
        x, y = getattr(native, name), getattr(python, name)
        assert np.array_equal(x, y, equal_nan=x.dtype.kind == "f"), name
    assert native.consent.tolist()[5:] == [
        encode_consent(False, "push"),
        1,
        0,
        encode_consent(False, "email"),
        -1,
        -1,
    ]


def test_consent_events_on_one_medium_leave_the_others_open() -> None:
    scorer = _scorer("ann", "bob")
    scorer.ingest(
        [
            ev.ConsentChanged(
                user_id="ann", timestamp=2000, granted=False, medium="email", purpose="marketing"
            ),
            ev.ConsentChanged(user_id="bob", timestamp=2000, granted=False),  # global, as before
        ]
    )
    assert scorer.opted_out() == ["bob"] and scorer.score_of("ann") is not None
    assert scorer.consents_of("ann") == {m: m != "email" for m in MEDIA}
    scorer.ingest(
        b'{"type":"consent_changed","user_id":"ann","timestamp":3000,"granted":true,"medium":"email"}\n'
    )
    assert scorer.may_contact("ann", "email")


def test_batch_channel_follows_the_medium() -> None:
    events = [ev.MessageOpened(user_id="u", timestamp=1, medium=m) for m in MEDIA]
    channels = [ev.CHANNELS[c] for c in EventBatch.from_events(events).channel.tolist()]
    assert channels == ["email", "sms", "push", "app", "whatsapp"]
