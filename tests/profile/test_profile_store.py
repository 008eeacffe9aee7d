"""One profile store fed by one pipeline: failed calls change nothing, consent and forget hold
everywhere, merges are exact, scores are asked at a time the state can answer.

The last test drives random streams of events, consent changes, forgets, merges and save / load
against a plain-Python oracle that keeps every event and applies the documented rules."""

from __future__ import annotations

import math
import threading
from pathlib import Path

import msgspec
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from affinity_sdk import SchemaError, Scorer, StateError
from affinity_sdk.capture.events import AppOpened, ConsentChanged, OrderCompleted, Product, ProductViewed
from affinity_sdk.config import ScoringConfig
from affinity_sdk.ingest.batch import EventBatch, Interners
from affinity_sdk.models.affinity import affinities_table
from affinity_sdk.profile.store import NowBeforeDataError

CONFIG = ScoringConfig.from_toml(
    """
version = "store-test"
[signals.app_opened]
weight = 1.0
half_life = "2d"
[signals.order_completed]
weight = 3.0
half_life = "20d"
value = "revenue"
[tiers]
method = "quantile"
high = 0.8
medium = 0.5
"""
)
DAY_MS = 86_400_000
T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z
Y2100 = 4_102_444_800_000
OLD = b'{"type":"app_opened","user_id":"old","timestamp":1767225600000}'
NEW_FAR = b'{"type":"app_opened","user_id":"new","timestamp":4102444800000}'


def _assert_unchanged(scorer: Scorer, tmp_path: Path) -> None:
    assert scorer.interners.users.names == ("old",)
    assert scorer.tier_of("new") is None
    loaded = Scorer.load(scorer.save(tmp_path / "st.afs"))
    assert loaded.interners.users.names == ("old",)
    assert loaded.score().user_ids == ["old"]


@pytest.mark.parametrize(
    "bad",
    [
        pytest.param((NEW_FAR, "ndjson"), id="ndjson"),
        pytest.param((b"[" + OLD + b"," + NEW_FAR + b"]", "json"), id="json-array"),
        pytest.param(
            (msgspec.msgpack.encode([msgspec.json.decode(NEW_FAR)]), "msgpack"),
            id="msgpack",
        ),
    ],
)
def test_a_failed_ingest_changes_nothing_bytes(bad: tuple[bytes, str], backend: str, tmp_path: Path) -> None:
    """The issue's repro: the new id must not be interned when the call raises."""
    scorer = Scorer(CONFIG, backend=backend)
    scorer.ingest(OLD)
    with pytest.raises(SchemaError):
        scorer.ingest(bad[0], format=bad[1])  # type: ignore[arg-type]
    _assert_unchanged(scorer, tmp_path)


def test_a_failed_ingest_changes_nothing_structs_and_batches(backend: str, tmp_path: Path) -> None:
    scorer = Scorer(CONFIG, backend=backend)
    scorer.ingest(OLD)
    nan_price = ProductViewed(
        user_id="new", timestamp=T0, product=Product(product_id="p", category="c", brand="b", price=math.nan)
    )
    with pytest.raises(SchemaError):
        scorer.ingest(nan_price)
    with pytest.raises(SchemaError):
        scorer.ingest([AppOpened(user_id="old", timestamp=T0 + 1), AppOpened(user_id="new", timestamp=Y2100)])
    foreign = EventBatch.from_events([AppOpened(user_id="new", timestamp=Y2100)], Interners())
    with pytest.raises(SchemaError):
        scorer.ingest(foreign)
    pa = pytest.importorskip("pyarrow")
    table = pa.table({"type": ["app_opened"] * 2, "user_id": ["old", "new"], "timestamp": [T0, Y2100]})
    with pytest.raises(SchemaError, match=r"at `\$\[1\]\.timestamp`"):
        scorer.ingest(table)
    assert scorer.interners.products.names == ()  # nothing else interned either
    _assert_unchanged(scorer, tmp_path)
    assert scorer.score().raw_score.tolist() == [1.0]


def test_dropped_events_never_recreate_a_forgotten_user(backend: str, tmp_path: Path) -> None:
    scorer = Scorer(CONFIG, backend=backend)
    replay = AppOpened(user_id="u", timestamp=T0, event_id="e1")
    scorer.ingest([replay, AppOpened(user_id="v", timestamp=T0)])
    assert scorer.forget("u")
    # a replayed duplicate, a far-future event, a replay without event_id: all dropped
    assert scorer.ingest(replay).n_suppressed == 1
    assert scorer.ingest(NEW_FAR.replace(b'"new"', b'"u"'), errors="skip").n_future == 1
    assert scorer.ingest(AppOpened(user_id="u", timestamp=T0 + 5)).n_suppressed == 1
    assert scorer.interners.users.lookup("u") is None
    assert scorer.score().user_ids == ["v"]
    saved = scorer.save(tmp_path / "s.afs")
    assert b'"u"' not in saved.read_bytes() and Scorer.load(saved).score().user_ids == ["v"]


def test_opt_out_forget_then_a_new_event_stays_opted_out(backend: str) -> None:
    scorer = Scorer(CONFIG, backend=backend)
    scorer.ingest(AppOpened(user_id="u", timestamp=T0))
    scorer.opt_out("u", at=T0 + 1)
    scorer.forget("u", at=T0 + 2)
    scorer.ingest(AppOpened(user_id="u", timestamp=T0 + 3))
    assert scorer.score().user_ids == [] and scorer.opted_out() == ["u"]
    scorer.ingest(ConsentChanged(user_id="u", timestamp=T0 + 2, granted=True))  # not after the forget
    assert scorer.score().user_ids == []
    scorer.ingest(ConsentChanged(user_id="u", timestamp=T0 + 4, granted=True))
    assert scorer.score().user_ids == ["u"]
    assert scorer.explain("u").signals[0].count == 1  # only the event after the forget


def test_forget_in_one_shard_reaches_the_merge(backend: str) -> None:
    a, b = Scorer(CONFIG, backend=backend), Scorer(CONFIG, backend=backend)
    a.ingest(AppOpened(user_id="u", timestamp=T0))
    b.ingest([AppOpened(user_id="u", timestamp=T0 + 1), AppOpened(user_id="w", timestamp=T0)])
    a.forget("u", at=T0 + 10)
    assert a.merge(b).score().user_ids == ["w"]
    assert a.interners.users.lookup("u") is None
    # the other order: the shard that holds the forget is merged in
    c, d = Scorer(CONFIG, backend=backend), Scorer(CONFIG, backend=backend)
    c.ingest(AppOpened(user_id="u", timestamp=T0))
    d.forget("u", at=T0 + 10)
    assert c.merge(d).score().user_ids == []
    # a profile whose events all follow the forget survives, opted out until a later grant
    e, f = Scorer(CONFIG, backend=backend), Scorer(CONFIG, backend=backend)
    e.forget("u", at=T0 + 10)
    f.ingest(AppOpened(user_id="u", timestamp=T0 + 20))
    e.merge(f)
    assert e.opted_out() == ["u"] and e.score().user_ids == []


def test_merged_consent_takes_the_latest_decision(backend: str) -> None:
    a, b = Scorer(CONFIG, backend=backend), Scorer(CONFIG, backend=backend)
    a.ingest(
        [AppOpened(user_id="u", timestamp=T0), ConsentChanged(user_id="u", timestamp=T0 + 1, granted=False)]
    )
    b.ingest(
        [AppOpened(user_id="u", timestamp=T0), ConsentChanged(user_id="u", timestamp=T0 + 2, granted=True)]
    )
    assert a.merge(b).score().user_ids == ["u"]
    c, d = Scorer(CONFIG, backend=backend), Scorer(CONFIG, backend=backend)
    c.ingest(ConsentChanged(user_id="u", timestamp=T0 + 2, granted=True))
    d.ingest(ConsentChanged(user_id="u", timestamp=T0 + 1, granted=False))
    assert c.merge(d).score().user_ids == ["u"]
    assert d.merge(Scorer(CONFIG, backend=backend)).score().user_ids == []


def test_merged_dedupe_window_keeps_the_other_shards_ids(backend: str) -> None:
    a, b = Scorer(CONFIG, backend=backend), Scorer(CONFIG, backend=backend)
    b.ingest(AppOpened(user_id="u", timestamp=T0, event_id="e1"))
    a.merge(b)
    report = a.ingest(AppOpened(user_id="u", timestamp=T0, event_id="e1"))
    assert report.n_duplicates == 1 and a.explain("u").signals[0].count == 1


def test_an_event_both_shards_folded_counts_once(backend: str, tmp_path: Path) -> None:
    shared = [
        OrderCompleted(user_id="u", timestamp=T0, order_id="o1", products=[], revenue=40.0, event_id="e1"),
        AppOpened(user_id="v", timestamp=T0 + 1, event_id="e2"),
    ]
    a, b, one = (Scorer(CONFIG, backend=backend) for _ in range(3))
    a.ingest([*shared, AppOpened(user_id="u", timestamp=T0 + 2, event_id="e3")])
    b.ingest([*shared, AppOpened(user_id="w", timestamp=T0 + 3)])
    one.ingest(
        [
            *shared,
            AppOpened(user_id="u", timestamp=T0 + 2, event_id="e3"),
            AppOpened(user_id="w", timestamp=T0 + 3),
        ]
    )
    b = Scorer.load(b.save(tmp_path / "b.afs"), backend=backend)  # the journal survives a restart
    merged = a.merge(b).score()
    want = one.score()
    assert merged.user_ids == want.user_ids
    np.testing.assert_allclose(merged.raw_score, want.raw_score, rtol=1e-12)
    assert a.events_ingested == one.events_ingested == 4
    assert [s.count for s in a.explain("u").signals if s.signal == "order_completed"] == [1]
    # ... and a third shard that saw e1 again still counts it once after merging into a
    c = Scorer(CONFIG, backend=backend)
    c.ingest(shared[:1])
    np.testing.assert_allclose(a.merge(c).score().raw_score, want.raw_score, rtol=1e-12)


def test_a_scorer_without_a_journal_drops_replays_and_refuses_merges(tmp_path: Path) -> None:
    events = [AppOpened(user_id="u", timestamp=T0, event_id="e1"), AppOpened(user_id="u", timestamp=T0 + 1)]
    lean, full = Scorer(CONFIG, journal=False), Scorer(CONFIG)
    for scorer in (lean, full):
        scorer.ingest(events)
        report = scorer.ingest(AppOpened(user_id="u", timestamp=T0, event_id="e1"))  # a replay
        assert report.n_duplicates == 1 and scorer.events_ingested == 2
    assert lean.store.journal is None and full.store.journal is not None
    np.testing.assert_array_equal(lean.score().raw_score, full.score().raw_score)
    for a, b in ((lean, full), (full, lean)):
        with pytest.raises(ValueError, match="keeps no event journal"):
            a.merge(b)
    assert full.events_ingested == 2  # the refused merge changed nothing
    # saved and loaded, it still has none (and still drops the replay)
    again = Scorer.load(lean.save(tmp_path / "lean.afs"))
    assert again.store.journal is None
    assert again.ingest(AppOpened(user_id="u", timestamp=T0, event_id="e1")).n_duplicates == 1
    with pytest.raises(ValueError, match="keeps no event journal"):
        Scorer(CONFIG).merge(again)
    # without a dedupe window there is nothing to take back: merges go through
    Scorer(CONFIG, dedupe_window=None, journal=False).merge(Scorer(CONFIG, dedupe_window=None))


def test_forget_erases_the_journal(tmp_path: Path) -> None:
    scorer = Scorer(CONFIG)
    scorer.ingest(
        [
            AppOpened(user_id="secret-user", timestamp=T0, event_id="e1"),
            AppOpened(user_id="v", timestamp=T0, event_id="e2"),
        ]
    )
    scorer.forget("secret-user")
    journal = scorer.store.journal
    assert journal is not None and len(journal) == 1
    assert b"secret-user" not in scorer.save(tmp_path / "s.afs").read_bytes()


def test_opposite_merges_from_two_threads_do_not_deadlock(backend: str) -> None:
    a, b = Scorer(CONFIG, backend=backend), Scorer(CONFIG, backend=backend)
    a.ingest(AppOpened(user_id="x", timestamp=T0))
    b.ingest(AppOpened(user_id="y", timestamp=T0))
    barrier = threading.Barrier(2)

    def run(left: Scorer, right: Scorer) -> None:
        barrier.wait()
        for _ in range(200):
            left.merge(right)

    threads = [threading.Thread(target=run, args=pair) for pair in ((a, b), (b, a))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not any(t.is_alive() for t in threads)


def test_scores_before_the_data_raise(backend: str) -> None:
    scorer = Scorer(CONFIG, backend=backend)
    scorer.ingest([AppOpened(user_id="u", timestamp=T0), AppOpened(user_id="u", timestamp=T0 + DAY_MS)])
    message = (
        r"^cannot score at 2026-01-01T12:00:00Z: the state already holds events up to 2026-01-02T00:00:00Z"
    )
    for call in (scorer.score, lambda t: scorer.tier_of("u", t), lambda t: scorer.explain("u", t)):
        with pytest.raises(NowBeforeDataError, match=message):
            call(T0 + DAY_MS // 2)
    with pytest.raises(NowBeforeDataError):
        scorer.score_of("u", "2026-01-01T00:00:00Z")
    assert scorer.score(T0 + DAY_MS).user_ids == ["u"]


def test_state_files_carry_the_suppression_key_id(tmp_path: Path) -> None:
    scorer = Scorer(CONFIG, suppression_key=b"secret")
    scorer.forget("u")
    path = scorer.save(tmp_path / "k.afs")
    with pytest.raises(StateError, match="another suppression_key"):
        Scorer.load(path)
    assert (
        Scorer.load(path, suppression_key=b"secret").store.suppression.key_id
        == scorer.store.suppression.key_id
    )
    with pytest.raises(ValueError, match="different keys"):
        Scorer(CONFIG).merge(scorer)


# --- random streams against an oracle ---------------------------------------------------------
_LAM = {"app_opened": math.log(2) / (2 * DAY_MS), "order_completed": math.log(2) / (20 * DAY_MS)}
_WEIGHT = {"app_opened": 1.0, "order_completed": 3.0}
NEVER = -(2**63)


class Oracle:
    """Every kept event in a list, the documented rules applied literally."""

    def __init__(self) -> None:
        self.events: dict[str, list[tuple[int, str, float, str | None]]] = {}
        self.known: set[str] = set()
        self.consent: dict[str, tuple[int, bool]] = {}
        self.suppressed: dict[str, int] = {}
        self.reborn: dict[str, int] = {}
        self.ids: set[str] = set()
        self.latest: int | None = None

    def _profile(self, user: str) -> None:
        if user not in self.known:
            self.known.add(user)
            self.events[user] = []
            if user in self.suppressed:
                self.reborn[user] = self.suppressed[user]
                self.consent[user] = (self.suppressed[user], True)

    def _decide(self, user: str, ts: int, out: bool) -> None:
        now = self.consent.get(user, (NEVER, False))
        if ts > now[0] or (ts == now[0] and out):
            self.consent[user] = (ts, out)

    def ingest(self, rows: list[tuple[str, int, str, float, str | None]]) -> None:
        for user, ts, kind, value, event_id in rows:
            if ts <= self.suppressed.get(user, NEVER):
                continue
            if event_id is not None:
                if event_id in self.ids:
                    continue
                self.ids.add(event_id)
            self._profile(user)
            if kind in ("grant", "revoke"):
                self._decide(user, ts, kind == "revoke")
            self.events[user].append((ts, kind, value, event_id))
            self.latest = ts if self.latest is None else max(self.latest, ts)

    def opt_out(self, user: str, at: int) -> None:
        self._profile(user)
        self._decide(user, at, True)

    def forget(self, user: str, at: int) -> None:
        self.suppressed[user] = max(at, self.suppressed.get(user, NEVER))
        if user in self.known:
            self._erase(user)

    def _erase(self, user: str) -> None:
        self.known.discard(user)
        self.events.pop(user, None)
        self.consent.pop(user, None)
        self.reborn.pop(user, None)

    def _survives(self, user: str, store: Oracle) -> bool:
        forget = self.suppressed.get(user, NEVER)
        if forget <= store.reborn.get(user, NEVER):
            return True
        first = min((row[0] for row in store.events[user]), default=2**63 - 1)
        if first <= forget:
            return False
        store.reborn[user] = forget
        if store.consent.get(user, (NEVER, False))[0] < forget:
            store.consent[user] = (forget, True)
        return True

    def merge(self, other: Oracle) -> None:
        for user, at in other.suppressed.items():
            self.suppressed[user] = max(at, self.suppressed.get(user, NEVER))
        for user in sorted(self.known):
            if not self._survives(user, self):
                self._erase(user)
        for user in sorted(other.known):
            if not self._survives(user, other):
                continue
            self._profile(user)
            # an event both shards folded (same event_id) counts once
            self.events[user] += [
                row for row in other.events[user] if row[3] is None or row[3] not in self.ids
            ]
            if user in other.consent:
                self._decide(user, *other.consent[user])
            self.reborn[user] = max(self.reborn.get(user, NEVER), other.reborn.get(user, NEVER))
        self.ids |= other.ids
        if other.latest is not None:
            self.latest = other.latest if self.latest is None else max(self.latest, other.latest)

    def scores(self) -> dict[str, float]:
        now = self.latest or 0
        out = {}
        for user in self.known:
            if self.consent.get(user, (NEVER, False))[1]:
                continue
            out[user] = sum(
                _WEIGHT[kind] * value * math.exp(-_LAM[kind] * (now - ts))
                for ts, kind, value, _ in self.events[user]
                if kind in _WEIGHT
            )
        return out


_SHOE = Product(product_id="p1", category="shoes", brand="acme", price=30.0)


def _event(user: str, ts: int, kind: str, value: float, event_id: str | None) -> object:
    if kind == "product_viewed":
        return ProductViewed(user_id=user, timestamp=ts, product=_SHOE, event_id=event_id)
    if kind == "app_opened":
        return AppOpened(user_id=user, timestamp=ts, event_id=event_id)
    if kind == "order_completed":
        return OrderCompleted(
            user_id=user, timestamp=ts, order_id="o", products=[], revenue=value, event_id=event_id
        )
    return ConsentChanged(user_id=user, timestamp=ts, granted=kind == "grant", event_id=event_id)


_users = st.sampled_from(["ann", "bob", "cy", "dee"])
_times = st.integers(0, 40).map(lambda d: T0 + d * DAY_MS // 4)
_rows = st.tuples(
    _users,
    _times,
    st.sampled_from(["app_opened", "product_viewed", "order_completed", "grant", "revoke"]),
    st.sampled_from([1.0, 20.0, 55.5]),
    st.one_of(st.none(), st.sampled_from(["e1", "e2", "e3", "e4"])),
).map(lambda r: (r[0], r[1], r[2], r[3] if r[2] == "order_completed" else 1.0, r[4]))
_ops = st.lists(
    st.one_of(
        st.tuples(st.just("ingest"), st.integers(0, 1), st.lists(_rows, min_size=1, max_size=6)),
        st.tuples(st.just("opt_out"), st.integers(0, 1), _users, _times),
        st.tuples(st.just("forget"), st.integers(0, 1), _users, _times),
        st.tuples(st.just("save_load"), st.integers(0, 1)),
    ),
    max_size=14,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=_ops)
def test_random_streams_match_the_oracle(
    ops: list[tuple[object, ...]], backend: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    views = ("signals", "affinity")
    shards = [Scorer(CONFIG, backend=backend, max_future=None, views=views) for _ in range(2)]
    oracles = [Oracle(), Oracle()]
    folder = tmp_path_factory.mktemp("oracle")
    for op in ops:
        kind, side = op[0], int(op[1])  # type: ignore[call-overload]
        if kind == "ingest":
            rows = op[2]
            shards[side].ingest([_event(*row) for row in rows])  # type: ignore[union-attr, misc]
            oracles[side].ingest(rows)  # type: ignore[arg-type]
        elif kind == "opt_out":
            shards[side].opt_out(op[2], at=op[3])  # type: ignore[arg-type]
            oracles[side].opt_out(op[2], op[3])  # type: ignore[arg-type]
        elif kind == "forget":
            shards[side].forget(op[2], at=op[3])  # type: ignore[arg-type]
            oracles[side].forget(op[2], op[3])  # type: ignore[arg-type]
        else:
            shards[side] = Scorer.load(shards[side].save(folder / f"s{side}.afs"), backend=backend)
        _check(shards[side], oracles[side])
    shards[0].merge(shards[1])
    oracles[0].merge(oracles[1])
    _check(shards[0], oracles[0])


def _check(scorer: Scorer, oracle: Oracle) -> None:
    want = oracle.scores()
    result = scorer.score()
    got = dict(zip(result.user_ids, result.raw_score.tolist(), strict=True))
    assert sorted(got) == sorted(want)
    for user, raw in want.items():
        assert got[user] == pytest.approx(raw, rel=1e-9, abs=1e-12)
    assert sorted(scorer.opted_out()) == sorted(
        u for u in oracle.known if oracle.consent.get(u, (NEVER, False))[1]
    )
    assert np.all(np.isfinite(result.raw_score))
    # The affinity view of the same store shows exactly the visible users with product events.
    viewers = {u for u in want if any(kind == "product_viewed" for _, kind, _, _ in oracle.events[u])}
    table = affinities_table(scorer.affinity, "category", 1)
    assert set(table["user_id"]) == viewers
    assert set(scorer.affinity.audience("category", "shoes", min_affinity=0.0)) <= viewers
