"""The compiled whole-call shortcuts of ``Scorer.ingest`` / ``tier_of`` / ``score_of``
(``affinity_sdk.score.live_calls``): the common event folds in one call and leaves the
state Python's path leaves, bit for bit; anything else is left to Python with nothing changed; the
lookups answer what the Python methods answer."""

from __future__ import annotations

from typing import Any

import msgspec
import numpy as np
import pytest

from affinity_sdk import Scorer
from affinity_sdk.capture.events import AppOpened, ConsentChanged, Product, ProductViewed
from affinity_sdk.config import default_config
from affinity_sdk.ingest import one_event
from affinity_sdk.score.tier_changes import LABELS

T0 = 1_767_225_600_000
DAY = 86_400_000
LIVE_INGEST, LIVE_TIER_OF, LIVE_SCORE_OF = one_event.live_calls(LABELS)
pytestmark = pytest.mark.skipif(LIVE_INGEST is None, reason="the extension has no live_calls")


def _product(product_id: str = "p1", price: float = 59.0) -> Product:
    return Product(product_id=product_id, category="shoes", brand="acme", price=price)


def _take(scorer: Scorer, data: Any, format: str = "ndjson") -> Any:
    """The compiled ingest call itself, as ``Scorer.ingest`` makes it."""
    return scorer._ingest_live(data, format)


def _python_only(scorer: Scorer) -> Scorer:
    """The scorer with its compiled shortcuts off: every call takes the Python path."""
    scorer._live_ingest = scorer._live_tier_of = scorer._live_score_of = None
    return scorer


def _state(scorer: Scorer) -> tuple[Any, dict[str, bytes], int | None, int]:
    header, arrays = scorer.store.to_container()
    blobs = {name: array.tobytes() for name, array in sorted(arrays.items())}
    return header, blobs, scorer.latest_ms, scorer.events_ingested


def _seeded(**options: Any) -> Scorer:
    """A scorer that knows users u0..u3 and product p1, has seen an event id and has cut-offs."""
    scorer = Scorer(**options)
    for u in range(4):
        scorer.ingest(AppOpened(user_id=f"u{u}", timestamp=T0 - u * DAY))
        scorer.ingest(ProductViewed(user_id=f"u{u}", timestamp=T0 - DAY, product=_product(price=10.0 * u)))
    scorer.ingest(AppOpened(user_id="u0", timestamp=T0 - 9 * DAY, event_id="seed"))  # the window exists
    scorer.score()
    return scorer


def _common_stream() -> list[Any]:
    """Known users and items, with and without event ids (some replayed): what the compiled call
    takes."""
    stream: list[Any] = []
    for i in range(36):
        user, ts = f"u{i % 4}", T0 + i * 60_000
        ids = {"event_id": f"m{i % 13}"} if i % 4 == 1 else {}  # m1 comes back: a replay
        if i % 3 == 0:
            stream.append(AppOpened(user_id=user, timestamp=ts, channel="web" if i % 2 else None, **ids))
        elif i % 3 == 1:
            discount = 0.5 if i % 2 else None
            product = Product(
                product_id="p1", category="shoes", brand="acme", price=1.5 * i, discount=discount
            )
            stream.append(ProductViewed(user_id=user, timestamp=ts - 5 * DAY, product=product, **ids))
        else:
            line = msgspec.json.encode(ProductViewed(user_id=user, timestamp=ts, product=_product(), **ids))
            stream.append(b"  " + line + b"\n" if i % 2 else line)
    return stream


@pytest.mark.parametrize("window", [2, 1 << 16, None])  # 2: generations fill and rotate
@pytest.mark.parametrize("shadow", [None, "halved"])
def test_the_compiled_call_leaves_pythons_state(shadow: str | None, window: int | None) -> None:
    live = default_config()
    shadows = None
    if shadow is not None:  # a candidate with a state of its own: the event folds into both views
        signal = msgspec.structs.replace(live.signals["app_opened"], half_life="12h")
        shadows = {shadow: msgspec.structs.replace(live, signals={**live.signals, "app_opened": signal})}
    fast = _seeded(shadow=shadows, dedupe_window=window)
    slow = _python_only(_seeded(shadow=shadows, dedupe_window=window))
    left = 0
    for event in _common_stream():
        taken = _take(fast, event)  # the compiled call itself
        if taken is None:  # only where a generation of the event-id window is full: Python rotates it
            assert window == 2
            left += 1
            taken = fast.ingest(event)
        report = slow.ingest(event)
        assert vars(taken).keys() == vars(report).keys()
        assert [(k, v) for k, v in vars(taken).items() if k != "user_codes"] == [
            (k, v) for k, v in vars(report).items() if k != "user_codes"
        ]
        assert taken.user_codes.dtype == report.user_codes.dtype
        assert taken.user_codes.tolist() == report.user_codes.tolist()
        assert _state(fast) == _state(slow)
    assert fast.score().raw_score.tobytes() == slow.score().raw_score.tobytes()
    if window is not None:
        assert fast.store.dedupe is not None and fast.store.journal is not None
        assert slow.store.journal is not None and fast.store.journal.batch().event_id.tobytes() == (
            slow.store.journal.batch().event_id.tobytes()
        )
        assert (left > 0) == (window == 2) and fast.store.dedupe.rotations == left


def test_a_replay_is_reported_as_a_duplicate() -> None:
    scorer = _seeded()
    event = AppOpened(user_id="u1", timestamp=T0, event_id="m1")
    first, again = _take(scorer, event), _take(scorer, event)
    assert (first.accepted, first.n_duplicates, first.user_codes.tolist()) == (1, 0, [1])
    assert (again.accepted, again.scored, again.n_duplicates, again.user_codes.tolist()) == (0, 0, 1, [])
    assert again.user_codes.dtype == np.int64 and scorer.events_ingested == 10


def _unusual(scorer: Scorer) -> list[tuple[str, Any, str]]:
    """Events (and formats) the compiled call must leave to Python: (why, data, format)."""
    newest = scorer.latest_ms or 0
    known = {"user_id": "u1", "timestamp": newest}
    line = msgspec.json.encode(AppOpened(**known))
    return [
        ("a new user", AppOpened(user_id="new", timestamp=newest), "ndjson"),
        ("a new product", ProductViewed(**known, product=_product("p2")), "ndjson"),
        ("a consent decision", ConsentChanged(**known, granted=False), "ndjson"),
        (
            "past max_future of the newest event",
            AppOpened(user_id="u1", timestamp=newest + 400 * DAY),
            "ndjson",
        ),
        ("a move of the landmark", AppOpened(user_id="u1", timestamp=newest + 300 * DAY), "ndjson"),
        ("bytes of another format", line, "json"),
        ("two lines", line + b"\n" + line, "ndjson"),
        ("a line that does not decode", b'{"type":"app_opened"', "ndjson"),
        ("a negative price", ProductViewed(**known, product=_product(price=-1.0)), "ndjson"),
    ]


def test_anything_else_is_left_to_python_with_nothing_changed() -> None:
    scorer = _seeded()
    before = _state(scorer)
    for why, data, format in _unusual(scorer):
        assert _take(scorer, data, format) is None, why
        assert _state(scorer) == before, why
    common = AppOpened(user_id="u1", timestamp=scorer.latest_ms)
    one_event.ONE_EVENT_PATH = False
    try:
        assert _take(scorer, common) is None  # the switch the benchmark flips
    finally:
        one_event.ONE_EVENT_PATH = True
    assert _state(scorer) == before
    assert _take(scorer, common) is not None


def test_events_of_a_forgotten_user_before_the_forget_are_left_to_python() -> None:
    scorer = _seeded()
    scorer.forget("u2", at=T0 + DAY)
    scorer.ingest(ConsentChanged(user_id="u2", timestamp=T0 + 2 * DAY, granted=True))  # reborn
    before = _state(scorer)
    assert _take(scorer, AppOpened(user_id="u2", timestamp=T0 + DAY)) is None
    assert _state(scorer) == before
    assert scorer.ingest(AppOpened(user_id="u2", timestamp=T0 + DAY)).n_suppressed == 1
    later = _take(scorer, AppOpened(user_id="u2", timestamp=T0 + 3 * DAY))
    assert later is not None and later.accepted == 1


def _spied(scorer: Scorer) -> dict[str, list[Any]]:
    """Record what the scorer's compiled calls answer, by call."""
    answers: dict[str, list[Any]] = {"ingest": [], "tier_of": [], "score_of": []}
    for name, call in (("ingest", LIVE_INGEST), ("tier_of", LIVE_TIER_OF), ("score_of", LIVE_SCORE_OF)):

        def spy(*args: Any, _call: Any = call, _seen: list[Any] = answers[name]) -> Any:
            _seen.append(_call(*args))
            return _seen[-1]

        setattr(scorer, f"_live_{name}", spy)
    return answers


def test_scorer_ingest_takes_the_compiled_call_first() -> None:
    scorer = _seeded()
    answers = _spied(scorer)
    event = AppOpened(user_id="u3", timestamp=T0)
    assert scorer.ingest(event).accepted == 1 and scorer.ingest(event, errors="skip").accepted == 1
    assert scorer.ingest(AppOpened(user_id="new", timestamp=T0)).accepted == 1  # Python's path
    assert [report is not None for report in answers["ingest"]] == [True, True, False]
    assert scorer.n_users == 5


def _lookups(scorer: Scorer, users: list[str]) -> list[Any]:
    return [(scorer.tier_of(u), scorer.score_of(u)) for u in users]


def test_the_compiled_lookups_answer_as_python() -> None:
    fast, slow = _seeded(), _python_only(_seeded())
    answers = _spied(fast)
    users = ["u0", "u1", "u2", "u3", "nobody", "Jos\u00e9", "Jose\u0301"]
    for scorer in (fast, slow):
        scorer.ingest(AppOpened(user_id="Jose\u0301", timestamp=T0))  # interned in normal form
        scorer.opt_out("u1")
        scorer.forget("u2")
    assert _lookups(fast, users) == _lookups(slow, users)
    # the first tier_of keeps the cut-offs as floats (Python); a non-ASCII id not as interned is
    # Python's to normalise; the others the compiled calls answer (None: unknown or hidden)
    assert answers["tier_of"] == [NotImplemented, *answers["tier_of"][1:]]
    assert answers["tier_of"][1:6] == [t for t, _ in _lookups(slow, users[1:6])]
    assert answers["tier_of"][6] is NotImplemented and answers["score_of"][6] is NotImplemented
    assert answers["score_of"][:6] == [s for _, s in _lookups(slow, users[:6])]
    for scorer in (fast, slow):  # new events move the latest time; new cut-offs after score()
        scorer.ingest(ProductViewed(user_id="u3", timestamp=T0 + 2 * DAY, product=_product(price=900.0)))
    assert _lookups(fast, users) == _lookups(slow, users)
    fast.score(), slow.score()
    assert _lookups(fast, users) == _lookups(slow, users)
    assert fast._tiers.tobytes() == slow._tiers.tobytes()
    # Python answered only the first tier_of after each new set of cut-offs and the decomposed id
    assert len(answers["tier_of"]) == 3 * len(users) and answers["tier_of"].count(NotImplemented) == 2 + 1 + 2


def test_without_cut_offs_or_with_a_time_tier_of_asks_python() -> None:
    scorer = Scorer()
    answers = _spied(scorer)
    scorer.ingest(AppOpened(user_id="ann", timestamp=T0))
    assert scorer.tier_of("ann") in LABELS and answers["tier_of"] == [NotImplemented]  # no cut-offs yet
    assert scorer.tier_of("ann") == scorer.tier_of("ann", now=T0) and answers["tier_of"][1] in LABELS
    with pytest.raises(AttributeError):  # not a str: Python's lookup answers as it always did
        scorer.tier_of(7)  # type: ignore[arg-type]
    assert answers["tier_of"][2] is NotImplemented


def test_the_calls_check_their_arity() -> None:
    with pytest.raises(TypeError, match="takes 12 arguments"):
        LIVE_TIER_OF("ann")
    with pytest.raises(TypeError, match="takes 11 arguments"):
        LIVE_INGEST(Scorer().store, b"")


def test_a_shadow_view_that_must_move_its_landmark_leaves_the_event_to_python() -> None:
    live = default_config()
    fast_decay = msgspec.structs.replace(live.signals["app_opened"], half_life="1h")
    shadow = {"fast": msgspec.structs.replace(live, signals={**live.signals, "app_opened": fast_decay})}
    fast, slow = _seeded(shadow=shadow), _python_only(_seeded(shadow=shadow))
    # 100 hours on, the 1-hour half-life moves the shadow's landmark; the live view's would stay
    event = AppOpened(user_id="u1", timestamp=T0 + 100 * 3_600_000)
    before = _state(fast)
    assert _take(fast, event) is None and _state(fast) == before
    fast.ingest(event), slow.ingest(event)
    assert _state(fast) == _state(slow)
    later = AppOpened(user_id="u2", timestamp=T0 + 101 * 3_600_000)
    assert _take(fast, later) is not None  # the landmark moved: the compiled call takes events again
    slow.ingest(later)
    assert _state(fast) == _state(slow)
