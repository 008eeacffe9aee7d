"""Custom goals: labels by hand, features before the cutoff only, built-in equivalence, end to end."""

from __future__ import annotations

from pathlib import Path

import msgspec
import numpy as np
import pytest

from affinity_sdk.activate.evaluate import roc_auc
from affinity_sdk.capture.events import (
    CheckoutStarted,
    Event,
    OrderCompleted,
    PageViewed,
    Product,
    ProductAdded,
)
from affinity_sdk.errors import ConfigError, StateError
from affinity_sdk.ingest.batch import EventBatch, take_rows
from affinity_sdk.models.goals import (
    CartAbandonmentGoal,
    EventGoal,
    Goal,
    VipGoal,
    goal_labels,
    parse_goal,
)
from affinity_sdk.models.propensity import (
    PropensityModel,
    build_training_set,
    outcome_labels,
)
from affinity_sdk.models.training import build_training_sets
from affinity_sdk.profile.store import ProfileStore
from affinity_sdk.sim.shop import ShopSimulation, simulate_shop

HOUR = 3_600_000
DAY = 24 * HOUR
T = 10 * DAY  # the cutoff of the hand-computed case; horizon 7 days


def _product(category: str, discount: float | None = None) -> Product:
    return Product(product_id=f"p-{category}", category=category, brand="acme", price=20.0, discount=discount)


def _order(user: str, day: float, revenue: float, *products: Product, **extra: object) -> OrderCompleted:
    ts = round(day * DAY)
    return OrderCompleted(
        user_id=user, timestamp=ts, order_id=f"{user}-{ts}", products=list(products), revenue=revenue, **extra
    )


def _checkout(user: str, day: float) -> CheckoutStarted:
    return CheckoutStarted(user_id=user, timestamp=round(day * DAY), products=[_product("shoes")])


def hand_case() -> list[Event]:
    """Eight users; the window is (day 10, day 17]."""
    return [
        # a: bought before; in the window a full-price shoe order of 40 and a checkout completed 2h later
        _order("a", 1, 25.0, _product("bags")),
        _checkout("a", 12),
        _order("a", 12 + 2 / 24, 40.0, _product("shoes")),
        # b: browsed before; in the window a discounted bag order (line discount) of 300
        PageViewed(user_id="b", timestamp=2 * DAY),
        _order("b", 13, 300.0, _product("bags", discount=5.0)),
        # c: bought before; in the window a checkout with the order 30h later (abandoned), and a
        #    coupon order of 90 with shoes and hats
        _order("c", 3, 10.0),
        _checkout("c", 11),
        _order("c", 11 + 30 / 24, 90.0, _product("shoes"), _product("hats"), coupon="SAVE"),
        # d: browsed before; a checkout late in the window whose 24h run past its end (not counted)
        PageViewed(user_id="d", timestamp=4 * DAY),
        _checkout("d", 16.5),
        # e: browsed before; a checkout right before the cutoff (not in the window), no order
        PageViewed(user_id="e", timestamp=5 * DAY),
        _checkout("e", 9.9),
        # f: first seen in the window (not eligible); orders 500 of shoes there
        _order("f", 12, 500.0, _product("shoes")),
        # g: bought before; an order at the very moment of its checkout, with an order discount,
        #    and two orders of 120 + 130 in the window
        _order("g", 1, 5.0),
        _checkout("g", 14),
        _order("g", 14, 120.0, _product("hats"), discount=12.0),
        _order("g", 15, 130.0, _product("hats")),
        # h: bought before; orders after the window only
        _order("h", 2, 60.0),
        _order("h", 17.5, 999.0, _product("shoes")),
    ]


USERS = list("abcdefgh")


def labels(goal: Goal, events: list[Event] | None = None) -> dict[str, tuple[bool, bool]]:
    batch = EventBatch.from_events(hand_case() if events is None else events)
    eligible, y = goal_labels(batch, goal, T, "7d")
    names = batch.interners.users.names
    return {names[i]: (bool(eligible[i]), bool(y[i])) for i in range(len(names))}


def positives(goal: Goal) -> set[str]:
    return {u for u, (_, y) in labels(goal).items() if y}


def test_event_goals_by_hand() -> None:
    assert positives(EventGoal(name="any_order")) == {"a", "b", "c", "f", "g"}
    assert positives(EventGoal(name="shoes", category="shoes")) == {"a", "c", "f"}
    assert positives(EventGoal(name="hats", category="hats")) == {"c", "g"}
    assert positives(EventGoal(name="nobody", category="socks")) == set()
    # discounted: a line discount (b), a coupon (c), an order discount (g)
    assert positives(EventGoal(name="deal", discounted=True)) == {"b", "c", "g"}
    assert positives(EventGoal(name="full_price", discounted=False)) == {"a", "f", "g"}
    assert positives(EventGoal(name="big", min_revenue=100)) == {"b", "f", "g"}
    assert positives(EventGoal(name="checkout", event_type="checkout_started")) == {"a", "c", "d", "g"}
    assert positives(EventGoal(name="shoe_deal", category="shoes", discounted=True)) == {"c"}


def test_eligibility_by_hand() -> None:
    active = labels(EventGoal(name="any_order"))
    assert {u for u, (e, _) in active.items() if e} == {"a", "b", "c", "d", "e", "g", "h"}
    buyers = labels(EventGoal(name="repeat", eligible="buyers"))
    assert {u for u, (e, _) in buyers.items() if e} == {"a", "c", "g", "h"}


def test_cart_abandonment_by_hand() -> None:
    # c's checkout (order 30h later) is abandoned after 24h; a's and g's were completed within it,
    # d's 24h end after the window, e's checkout is before the cutoff.
    assert positives(CartAbandonmentGoal(name="abandon", within="24h")) == {"c"}
    # within 1h: a's order came 2h after its checkout; d's hour ends inside the window
    assert positives(CartAbandonmentGoal(name="abandon", within="1h")) == {"a", "c", "d"}
    assert positives(CartAbandonmentGoal(name="abandon", within="36h")) == set()
    # a checkout with no order at all, inside the window
    extra = [*hand_case(), _checkout("h", 12)]
    assert {u for u, (_, y) in labels(CartAbandonmentGoal(name="x"), extra).items() if y} == {"c", "h"}
    started = CartAbandonmentGoal(name="x", started="product_added", within="24h")
    added = [*hand_case(), ProductAdded(user_id="b", timestamp=11 * DAY, product=_product("hats"))]
    assert {u for u, (_, y) in labels(started, added).items() if y} == {"b"}


def test_vip_by_hand() -> None:
    # window revenue: a 40, b 300, c 90, f 500, g 250, h 0 (its 999 is after the window)
    assert positives(VipGoal(name="vip", min_revenue=250)) == {"b", "f", "g"}
    assert positives(VipGoal(name="vip", min_revenue=250.01)) == {"b", "f"}
    assert positives(VipGoal(name="vip", min_revenue=40)) == {"a", "b", "c", "f", "g"}


def test_labels_read_the_future_batch_like_one_batch() -> None:
    events = hand_case()
    whole = EventBatch.from_events(events)
    history = take_rows(whole, whole.ts_ms <= T)
    future = take_rows(whole, whole.ts_ms > T)
    for goal in (
        EventGoal(name="shoes", category="shoes"),
        EventGoal(name="deal", discounted=True),
        CartAbandonmentGoal(name="abandon"),
        VipGoal(name="vip", min_revenue=100),
    ):
        a = goal_labels(whole, goal, T, "7d")
        b = goal_labels(history, goal, T, "7d", future=future)
        assert (a[0] == b[0]).all() and (a[1] == b[1]).all(), goal.name


@pytest.fixture(scope="module")
def shop() -> ShopSimulation:
    return simulate_shop(1500, weeks=8, horizon_weeks=2, seed=5)


GOALS = (
    VipGoal(name="vip", min_revenue=250),
    CartAbandonmentGoal(name="abandon", started="product_added", within="24h"),
    EventGoal(name="deal", discounted=True),
)


@pytest.mark.parametrize("goal", GOALS, ids=[g.name for g in GOALS])
def test_features_use_only_events_before_the_cutoff(shop: ShopSimulation, goal: Goal) -> None:
    b = shop.batch
    cutoff = shop.end_ms - 3 * 7 * DAY
    full = build_training_set(b, goal, [cutoff], "2w")
    # Only the history up to the cutoff as the batch, the rest as `future`: the same set.
    split = build_training_set(
        take_rows(b, b.ts_ms <= cutoff), goal, [cutoff], "2w", future=take_rows(b, b.ts_ms > cutoff)
    )
    assert (split.X == full.X).all() and (split.y == full.y).all() and (split.user == full.user).all()
    # Drop every other event after the cutoff: the labels move, the features do not.
    after = np.flatnonzero(b.ts_ms > cutoff)
    keep = np.ones(len(b), dtype=bool)
    keep[after[::2]] = False
    keep |= b.consent >= 0  # consent decisions decide who gets rows: keep them all
    thinned = build_training_set(take_rows(b, keep), goal, [cutoff], "2w")
    assert (thinned.user == full.user).all() and (thinned.X == full.X).all()
    assert (thinned.y != full.y).any()


@pytest.mark.parametrize(
    ("goal", "builtin"),
    [
        (EventGoal(name="any_order"), "purchase"),
        (EventGoal(name="repeat_order", eligible="buyers"), "repurchase"),
        (EventGoal(name="unsub", event_type="unsubscribed"), "unsubscribe"),
    ],
)
def test_a_goal_equal_to_a_builtin_gives_the_same_labels_and_model(
    shop: ShopSimulation, goal: Goal, builtin: str
) -> None:
    week = 7 * DAY
    cutoffs = [shop.end_ms - 6 * week, shop.end_ms - 4 * week, shop.end_ms - 2 * week]
    for cutoff in cutoffs:
        e1, y1 = outcome_labels(shop.batch, goal, cutoff, "2w")
        e2, y2 = outcome_labels(shop.batch, builtin, cutoff, "2w")  # type: ignore[arg-type]
        assert (e1 == e2).all() and (y1 == y2).all()
        assert y1[e1].any() and not y1[e1].all()
    sets = build_training_sets(shop.batch, [goal, builtin], cutoffs, "2w")  # type: ignore[list-item]
    mine, theirs = sets[goal.name], sets[builtin]
    assert (mine.X == theirs.X).all() and (mine.y == theirs.y).all() and (mine.user == theirs.user).all()
    assert mine.goal == goal and theirs.goal is None and mine.outcome == goal.name
    m1, m2 = PropensityModel.fit(mine), PropensityModel.fit(theirs)
    assert np.array_equal(m1.coef_, m2.coef_) and m1.intercept_ == m2.intercept_
    assert m1.calibrator_ == m2.calibrator_
    p1, _ = m1.score_batch(shop.batch, shop.end_ms)
    p2, _ = m2.score_batch(shop.batch, shop.end_ms)
    assert np.array_equal(p1, p2, equal_nan=True)
    # The single-outcome builder gives the same rows as the shared one.
    alone = build_training_set(shop.batch, goal, cutoffs, "2w")
    assert (alone.X == mine.X).all() and (alone.y == mine.y).all()


@pytest.mark.parametrize("goal", GOALS[:2], ids=[g.name for g in GOALS[:2]])
def test_planted_goals_are_predicted_on_the_simulated_future(shop: ShopSimulation, goal: Goal) -> None:
    """Fit on the history, score at its end, compare with what the simulator drew next."""
    week = 7 * DAY
    train = build_training_set(shop.batch, goal, [shop.end_ms - 4 * week, shop.end_ms - 2 * week], "2w")
    model = PropensityModel.fit(train)
    assert model.outcome == goal.name and model.goal == goal
    p, seen = model.score_batch(shop.batch, shop.end_ms)
    eligible, y = goal_labels(shop.batch, goal, shop.end_ms, "2w", future=shop.future)
    rows = seen & eligible
    assert 0.02 < y[rows].mean() < 0.98
    assert roc_auc(y[rows], p[rows]) > 0.65
    # Tiers and live scoring from the profile store: the same machinery as the built-ins.
    tiers = model.tiers(p[rows])
    assert set(np.unique(tiers).tolist()) == {0, 1, 2}
    store = ProfileStore(views=("propensity",))
    store.ingest(shop.batch)
    users, live = model.score_profiles(store, now=shop.end_ms)
    codes = [shop.batch.interners.users.lookup(u) for u in users]
    np.testing.assert_allclose(live, p[codes], rtol=0, atol=1e-9)


def test_a_goal_model_saves_and_loads_with_its_goal(shop: ShopSimulation, tmp_path: Path) -> None:
    goal = GOALS[0]
    data = build_training_set(shop.batch, goal, [shop.end_ms - 2 * 7 * DAY], "2w")
    model = PropensityModel.fit(data)
    model.save(tmp_path / "vip.model")
    again = PropensityModel.load(tmp_path / "vip.model")
    assert again.goal == goal and again.outcome == "vip"
    assert np.array_equal(again.predict_proba(data.X), model.predict_proba(data.X))
    other = build_training_set(shop.batch, VipGoal(name="vip", min_revenue=99), [shop.end_ms - 7 * DAY], "2w")
    with pytest.raises(ConfigError, match="same features, outcome and horizon"):
        model.refit(other)
    with pytest.raises(ConfigError, match="cannot stack"):
        data.concat(other)


def test_a_corrupt_goal_in_a_model_file_is_a_state_error(shop: ShopSimulation, tmp_path: Path) -> None:
    from affinity_sdk._persist import read_container, write_container

    data = build_training_set(shop.batch, GOALS[0], [shop.end_ms - 2 * 7 * DAY], "2w")
    PropensityModel.fit(data).save(tmp_path / "m")
    header, arrays = read_container(tmp_path / "m", "propensity-model")
    header["goal"] = {"kind": "vip", "name": "vip", "min_revenue": -3}
    write_container(tmp_path / "m", "propensity-model", header, arrays)
    with pytest.raises(StateError, match="malformed propensity model"):
        PropensityModel.load(tmp_path / "m")


def test_goals_round_trip_through_builtins() -> None:
    for goal in (*GOALS, EventGoal(name="x", category="shoes", min_revenue=10.5, eligible="buyers")):
        assert parse_goal(msgspec.to_builtins(goal)) == goal
        assert parse_goal(msgspec.json.encode(goal)) == goal


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: EventGoal(name=""), "goal `name`: need a non-empty name of at most 80 characters (got '')"),
        (
            lambda: EventGoal(name="x", event_type="bought"),
            "goal 'x': unknown `event_type` 'bought'; choose one of page_viewed,",
        ),
        (
            lambda: EventGoal(name="x", event_type="email_opened", discounted=True),
            "goal 'x': `discounted` needs an event type with discounts, not 'email_opened'",
        ),
        (
            lambda: EventGoal(name="x", event_type="cart_viewed", min_revenue=5),
            "goal 'x': `min_revenue` needs an event type with a revenue, not 'cart_viewed'",
        ),
        (
            lambda: EventGoal(name="x", min_revenue=float("nan")),
            "goal 'x': `min_revenue` must be a finite amount in [0, 1e+12] (got nan)",
        ),
        (
            lambda: CartAbandonmentGoal(name="x", within="soon"),
            "goal 'x': `within`: invalid duration 'soon'",
        ),
        (
            lambda: CartAbandonmentGoal(name="x", within="0h"),
            "goal 'x': `within` must be a positive, finite duration (got '0h')",
        ),
        (
            lambda: CartAbandonmentGoal(name="x", started="order_completed"),
            "goal 'x': `started` must be an event type other than order_completed (got 'order_completed')",
        ),
        (
            lambda: VipGoal(name="x", min_revenue=0),
            "goal 'x': `min_revenue` must be a finite amount in (0, 1e+12] (got 0)",
        ),
        (
            lambda: EventGoal(name="x", eligible="everyone"),  # type: ignore[arg-type]
            "goal 'x': `eligible` must be 'active' or 'buyers' (got 'everyone')",
        ),
        (
            lambda: parse_goal('{"kind": "vip", "name": "x", "min_revenue": "lots"}'),
            "invalid goal: Expected `float`, got `str` - at `$.min_revenue`",
        ),
        (
            lambda: parse_goal('{"kind": "sale", "name": "x"}'),
            "invalid goal: Invalid value 'sale' - at `$.kind`",
        ),
    ],
)
def test_bad_goals_raise_config_errors_naming_the_field(make: object, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        make()  # type: ignore[operator]
    assert str(info.value).startswith(message)


def test_label_window_errors() -> None:
    batch = EventBatch.from_events(hand_case())
    with pytest.raises(ConfigError, match="must be shorter than the horizon"):
        goal_labels(batch, CartAbandonmentGoal(name="x", within="8d"), T, "7d")
    with pytest.raises(ConfigError, match="expected an EventGoal"):
        goal_labels(batch, Goal(name="plain"), T, "7d")
    with pytest.raises(ConfigError, match="horizon must be positive"):
        goal_labels(batch, VipGoal(name="v", min_revenue=1), T, "0d")
    with pytest.raises(ConfigError, match="names must be distinct"):
        build_training_sets(batch, [EventGoal(name="purchase"), "purchase"], [T], "7d")
