"""Best channel, send hour and fatigue: shrinkage, consent, caps, conversions, local send hours,
and the table = the scalar calls."""

from __future__ import annotations

import json

import numpy as np
import pytest

from affinity_sdk.errors import ConfigError
from affinity_sdk.models.channels import (
    best_channel,
    best_send_hour,
    channel_table,
    fatigued_segment,
    fit_beta_prior,
    fit_dirichlet_strength,
    may_message,
    utc_offset_s,
)
from affinity_sdk.profile.store import ProfileStore

T0 = 1_767_225_600_000  # Thursday 2026-01-01 00:00 UTC
H = 3_600_000


def ingest(store: ProfileStore, events: list[dict[str, object]]) -> None:
    store.ingest("\n".join(json.dumps(e) for e in events).encode())


def messages(user: str, medium: str, sent: int, opened: int, at: int = T0) -> list[dict[str, object]]:
    out: list[dict[str, object]] = [
        {"type": "message_delivered", "user_id": user, "timestamp": at + i, "medium": medium}
        for i in range(sent)
    ]
    out += [
        {"type": "message_opened", "user_id": user, "timestamp": at + i, "medium": medium}
        for i in range(opened)
    ]
    return out


@pytest.fixture
def store() -> ProfileStore:
    s = ProfileStore(views=("signals", "engagement"), backend="reference")
    events: list[dict[str, object]] = []
    rng = np.random.default_rng(0)
    for i in range(40):  # population: push opens about 40 %, email about 10 %
        events += messages(f"p{i}", "push", 10, int(rng.binomial(10, 0.4)))
        events += messages(f"p{i}", "email", 10, int(rng.binomial(10, 0.1)))
    events += messages("fan", "email", 30, 27)  # an email lover
    events += messages("fan", "push", 30, 3)
    events += messages("thin", "email", 1, 1)  # one open: too little to beat the population
    ingest(s, events)
    return s


def test_prior_recovers_mean_and_caps_strength() -> None:
    rng = np.random.default_rng(1)
    p = rng.beta(2.0, 8.0, size=5000)
    n = np.full(5000, 50.0)
    a, b = fit_beta_prior(rng.binomial(50, p).astype(float), n)  # type: ignore[misc]
    assert abs(a / (a + b) - 0.2) < 0.01 and 6 < a + b < 14
    assert fit_beta_prior(np.zeros(3), np.zeros(3)) is None


def test_best_channel_follows_evidence_and_shrinks_thin_profiles(store: ProfileStore) -> None:
    medium, rate = best_channel(store, "fan")
    assert medium == "email" and 0.5 < rate < 0.9
    medium, rate = best_channel(store, "thin")
    assert medium == "push"  # the population's best: one open is not enough evidence
    assert 0.3 < rate < 0.5


def test_opt_outs_hide_users_and_media(store: ProfileStore) -> None:
    store.opt_out("fan", medium="email", at=T0 + 10**6)
    assert best_channel(store, "fan")[0] == "push"
    assert not may_message(store, "fan", "email", caps={})
    store.opt_out("thin", at=T0 + 10**6)
    assert best_channel(store, "thin") == (None, pytest.approx(float("nan"), nan_ok=True))
    table = channel_table(store)
    assert "thin" not in table["user_id"].tolist()
    row = table["user_id"].tolist().index("fan")
    assert table["best_channel"][row] == "push"


def test_table_matches_scalar_calls(store: ProfileStore) -> None:
    ingest(store, [{"type": "message_clicked", "user_id": "p3", "timestamp": T0 + 7 * H, "medium": "push"}])
    table = channel_table(store)
    for i, user in enumerate(table["user_id"].tolist()):
        medium, rate = best_channel(store, user)
        assert table["best_channel"][i] == (medium or "") and table["channel_rate"][i] == pytest.approx(rate)
        hour, confidence = best_send_hour(store, user)
        assert table["best_send_hour"][i] == (-1 if hour is None else hour)
        assert table["send_hour_confidence"][i] == pytest.approx(confidence)
    assert set(table["channel_tier"].tolist()) <= {"low", "medium", "high"}


def test_send_hour_shrinks_toward_population() -> None:
    store = ProfileStore(views=("signals", "engagement"), backend="reference")
    events: list[dict[str, object]] = []
    for i in range(30):  # everyone engages at 09:00
        events += [
            {"type": "push_opened", "user_id": f"p{i}", "timestamp": T0 + 9 * H + d * 86_400_000}
            for d in range(3)
        ]
    events += [
        {"type": "push_opened", "user_id": "owl", "timestamp": T0 + 23 * H + d * 86_400_000}
        for d in range(20)
    ]
    events += [{"type": "push_opened", "user_id": "one", "timestamp": T0 + 22 * H}]
    ingest(store, events)
    hour, confidence = best_send_hour(store, "owl", strength=5.0)
    assert hour == 23 and confidence > 0.7
    hour, confidence = best_send_hour(store, "one", strength=5.0)
    assert hour == 9 and confidence < 0.25
    hour_week, _ = best_send_hour(store, "owl", hour_of_week=True, strength=5.0)
    assert hour_week is not None and hour_week % 24 == 23
    with pytest.raises(ConfigError):
        best_send_hour(store, "owl", strength=0.0)


def test_caps_count_messages_in_the_window() -> None:
    store = ProfileStore(views=("signals", "engagement"), backend="reference")
    sends = [
        {"type": "message_sent", "user_id": "a", "timestamp": T0 + d * 86_400_000, "medium": "email"}
        for d in range(3)
    ]
    ingest(store, sends)
    now = T0 + 2 * 86_400_000
    assert not may_message(store, "a", "email", now, caps={"email": (3, "7d")})
    assert may_message(store, "a", "email", now, caps={"email": (3, "2d")})
    assert may_message(store, "a", "email", now + 5 * 86_400_000, caps={"email": (3, "7d")})
    assert may_message(store, "a", "push", now, caps={"email": (3, "7d")})
    assert not may_message(store, "nobody", "email", now)
    table = channel_table(store, now, caps={"email": (3, "7d")})
    assert fatigued_segment().members(table).tolist() == ["a"]
    for bad in ({"email": (3, "36h")}, {"email": (-1, "7d")}, {"email": (3, "1000d")}):
        with pytest.raises(ConfigError):
            may_message(store, "a", "email", now, caps=bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("kappa", [2.0, 20.0])
def test_dirichlet_strength_recovers_planted_kappa(kappa: float) -> None:
    rng = np.random.default_rng(7)
    pi = rng.dirichlet(np.ones(24))
    users, bins, counts = [], [], []
    for u in range(3000):
        h = rng.multinomial(30, rng.dirichlet(kappa * pi))
        nz = np.flatnonzero(h)
        users += [u] * nz.shape[0]
        bins += nz.tolist()
        counts += h[nz].tolist()
    c = np.array(counts, dtype=float)
    fitted = fit_dirichlet_strength(np.array(users), c, c, pi, np.array(bins))
    assert kappa / 1.3 < fitted < kappa * 1.3


def orders(user: str, channel: str, n: int, at: int = T0) -> list[dict[str, object]]:
    return [
        {
            "type": "order_completed",
            "user_id": user,
            "timestamp": at + i,
            "order_id": f"o-{user}-{channel}-{i}",
            "products": [],
            "revenue": 5.0,
            "channel": channel,
        }
        for i in range(n)
    ]


def test_whatsapp_opt_out_is_never_given_whatsapp() -> None:
    store = ProfileStore(views=("signals", "engagement"), backend="reference")
    events: list[dict[str, object]] = []
    for i in range(10):
        events += messages(f"p{i}", "whatsapp", 10, 8) + messages(f"p{i}", "sms", 10, 1)
    events += messages("wa", "whatsapp", 20, 20) + messages("wa", "sms", 20, 1)
    ingest(store, events)
    assert best_channel(store, "wa")[0] == "whatsapp"
    table = channel_table(store)
    assert set(table["best_channel"].tolist()) == {"whatsapp"}  # not folded into sms
    store.opt_out("wa", medium="whatsapp", at=T0 + 10**6)
    ingest(store, messages("wa", "whatsapp", 5, 5, at=T0 + 2 * 10**6))  # later engagement too
    assert best_channel(store, "wa")[0] == "sms"
    assert not may_message(store, "wa", "whatsapp", caps={})
    table = channel_table(store)
    row = table["user_id"].tolist().index("wa")
    assert table["best_channel"][row] == "sms"
    assert best_channel(store, "p1")[0] == "whatsapp"  # others keep it


def test_conversion_rate_is_shrunk_and_reported_on_the_best_channel() -> None:
    store = ProfileStore(views=("signals", "engagement"), backend="reference")
    events: list[dict[str, object]] = []
    for i in range(20):  # population: email, 10 messages, 1 order each from every other user
        events += messages(f"p{i}", "email", 10, 5) + orders(f"p{i}", "email", i % 2)
    events += messages("buyer", "email", 10, 5) + orders("buyer", "email", 6)
    events += messages("none", "email", 10, 5)
    events += orders("none", "app", 3) + orders("none", "web", 3)  # not conversions
    ingest(store, events)
    table = channel_table(store)
    rate = dict(zip(table["user_id"].tolist(), table["conversion_rate"].tolist(), strict=True))
    population = (10 + 6) / 220  # the prior's mean: orders per email message over everyone
    assert 0.6 > rate["buyer"] > population  # pulled toward the population from 6 / 10
    assert rate["none"] < population  # no orders on email: below the mean, above 0
    assert rate["none"] > 0
    # the ranking stays on engagement: the same rate for both
    assert table["channel_rate"][table["user_id"].tolist().index("buyer")] == pytest.approx(
        table["channel_rate"][table["user_id"].tolist().index("none")]
    )


def test_send_hour_is_local_where_the_user_has_a_zone() -> None:
    store = ProfileStore(views=("signals", "engagement"), backend="reference")
    events = [
        {"type": "push_opened", "user_id": user, "timestamp": T0 + 1 * H + d * 86_400_000}
        for user in ("tokyo", "utc", "bogus")
        for d in range(5)
    ]
    ingest(store, events)
    store.set_traits("tokyo", {"timezone": "Asia/Tokyo"}, at=T0)
    store.set_traits("bogus", {"timezone": "Not/AZone"}, at=T0)
    assert best_send_hour(store, "tokyo", strength=1.0)[0] == 10  # 01:00 UTC is 10:00 in Tokyo
    assert best_send_hour(store, "utc", strength=1.0)[0] == 1
    assert best_send_hour(store, "bogus", strength=1.0)[0] == 1  # an unknown zone: UTC
    week, _ = best_send_hour(store, "tokyo", hour_of_week=True, strength=1.0)
    assert week is not None and week % 24 == 10
    table = channel_table(store, strength=1.0)
    rows = {u: i for i, u in enumerate(table["user_id"].tolist())}
    assert table["best_send_hour"][rows["tokyo"]] == 10 and table["best_send_hour"][rows["utc"]] == 1
    assert table["tz"][rows["tokyo"]] == "Asia/Tokyo" and table["utc_offset"][rows["tokyo"]] == 9.0
    assert table["tz"][rows["bogus"]] == "" and table["utc_offset"][rows["bogus"]] == 0.0


def test_offsets_follow_dst_at_now() -> None:
    winter, summer = "2026-01-15T12:00:00Z", "2026-07-15T12:00:00Z"
    assert utc_offset_s("Europe/Oslo", winter) == 3600 and utc_offset_s("Europe/Oslo", summer) == 7200
    assert utc_offset_s("America/St_Johns", winter) == -12_600  # -03:30
    assert utc_offset_s("", winter) is None and utc_offset_s(None, winter) is None
    store = ProfileStore(views=("signals", "engagement"), backend="reference")
    ingest(store, [{"type": "push_opened", "user_id": "n", "timestamp": T0 + 20 * H}])
    store.set_traits("n", {"timezone": "America/St_Johns"}, at=T0)
    # 20:00 UTC - 3:30 = 16:30 local: whole hours, half up -> -3 -> 17
    assert best_send_hour(store, "n", strength=1.0)[0] == 17
