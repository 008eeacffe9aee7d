r"""Best channel, best send hour and message fatigue: queries of the store's ``engagement`` view
(:mod:`affinity_sdk.profile.engagement_view`).

**Best channel.** Per (profile, medium) the decayed counts give a number of *engagements*
:math:`s = \max(\text{opened}, \text{clicked})` out of :math:`n = \max(\text{sent}, \text{delivered}, s)`
messages (an event stream may report sends, deliveries or neither, so the larger count stands for
the messages that reached the user). Each medium's rate is shrunk toward its population
(empirical Bayes, Beta-Binomial): the prior :math:`\mathrm{Beta}(\alpha_m, \beta_m)` is fitted by
the method of moments on the profiles with :math:`n \ge 1` on that medium,

.. math::
    \mu = \frac{\sum s}{\sum n}, \quad
    \sigma^2_b = \overline{(s/n - \mu)^2} - \mu (1 - \mu)\, \overline{1/n}, \quad
    \alpha + \beta = \frac{\mu (1 - \mu)}{\sigma^2_b} - 1

(clipped to [:data:`MIN_STRENGTH`, :data:`MAX_STRENGTH`]; no between-profile spread gives the
largest strength), and a profile's expected rate is :math:`(s + \alpha) / (n + \alpha + \beta)`.
A thin profile thus gets about the population's rate, and its best channel is the population's
best. Only media the profile may be contacted on (global consent and the per-medium decision,
:mod:`affinity_sdk.profile.channel_consent`) compete; a medium nobody has data on is not ranked.
The channel tier is the SDK's tier plan (:class:`~affinity_sdk.score.tiers.TierPlan`, quantiles
by default) on the best rates.

**Conversions.** The view counts, per (profile, medium), the decayed orders whose channel is that
message medium (:mod:`affinity_sdk.profile.engagement_view`). The conversion rate is shrunk the
same way, :math:`c` conversions out of :math:`\max(n, c)` messages, with its own per-medium prior;
:func:`channel_table` reports it on the best channel. It does not rank the media: orders are far
rarer than opens, so on most profiles the conversion rate is the prior's, and it counts only the
orders a source tagged with a medium (docs/channels.md).

**Best send hour.** The profile's decayed engagement per UTC hour of the week :math:`h` is shrunk
toward the population's distribution :math:`\pi` (Dirichlet prior of strength :math:`\kappa`,
fitted by the method of moments unless given, :func:`fit_dirichlet_strength`):
:math:`\theta \propto h + \kappa \pi`; the best hour is :math:`\arg\max \theta` (ties: the earliest)
and the confidence :math:`\sum h / (\sum h + \kappa)`, the share of the profile's own evidence
(0: the population's hour). By default the 168 hours are folded into the 24 hours of the day.
The hour is reported in the user's local time: shifted by the UTC offset, at ``now``, of the
``timezone`` trait (whole hours, half up); the counts and the population's distribution stay in
UTC, so the answer is the same instant whatever the zone; no zone: UTC.

**Fatigue.** Messages received on a medium in a window of ``d`` UTC days ending on the day of
``now`` (bucketed by day, exact): :math:`\max(\text{sent}, \text{delivered})` summed over those
days. A cap ``{"email": (3, "7d")}`` allows at most 3 emails in 7 days; :func:`may_message` is
true when the profile may be contacted on the medium and is under its cap, and a profile is
*fatigued* when it is at or over a cap on any medium.

Examples
--------
>>> from affinity_sdk.profile.store import ProfileStore
>>> store = ProfileStore(views=("signals", "engagement"))
>>> lines = [
...     {"type": "message_delivered", "user_id": "ann", "timestamp": t, "medium": m}
...     for t, m in [(0, "email"), (1, "push"), (2, "push")]
... ] + [{"type": "message_opened", "user_id": "ann", "timestamp": 3, "medium": "push"}]
>>> import json
>>> _ = store.ingest("\n".join(json.dumps(x) for x in lines).encode())
>>> best_channel(store, "ann")[0]
'push'
>>> may_message(store, "ann", "push", caps={"push": (2, "7d")})
False
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any, Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
from numpy.typing import NDArray

from affinity_sdk._units import parse_duration, to_epoch_ms
from affinity_sdk.activate.segments import Segment, col
from affinity_sdk.capture.events import MEDIA
from affinity_sdk.errors import ConfigError
from affinity_sdk.profile.channel_consent import medium_code
from affinity_sdk.profile.engagement_view import ACTIONS, DAY_MS, HOURS_OF_WEEK, EngagementView
from affinity_sdk.profile.store import ProfileStore
from affinity_sdk.score.tiers import TierPlan

__all__ = [
    "DEFAULT_CAPS",
    "MAX_STRENGTH",
    "MIN_STRENGTH",
    "TIMEZONE_TRAIT",
    "BetaPrior",
    "best_channel",
    "best_send_hour",
    "channel_table",
    "fatigued_segment",
    "fit_beta_prior",
    "fit_dirichlet_strength",
    "may_message",
    "utc_offset_s",
]

#: Caps: per medium, at most this many messages in this window.
Caps = dict[str, tuple[int, str]]
DEFAULT_CAPS: Final[Caps] = {
    "email": (3, "7d"),
    "sms": (2, "7d"),
    "push": (5, "7d"),
    "in_app": (10, "7d"),
    "whatsapp": (2, "7d"),
}
#: Bounds on a fitted prior's strength :math:`\alpha + \beta` (pseudo-messages).
MIN_STRENGTH: Final = 0.5
MAX_STRENGTH: Final = 1e4
BetaPrior = tuple[float, float]
_CONVERTED: Final = ACTIONS.index("converted")
#: The profile trait holding the user's IANA time zone (Segment ``context.timezone``).
TIMEZONE_TRAIT: Final = "timezone"


def fit_beta_prior(
    successes: NDArray[np.float64],
    trials: NDArray[np.float64],
    effective: NDArray[np.float64] | None = None,
) -> BetaPrior | None:
    r"""Method-of-moments Beta prior ``(alpha, beta)`` of rates ``successes / trials`` (rows with
    ``trials >= 1``); ``None`` when no row has a trial.

    ``effective`` is each row's effective number of trials for the binomial noise term (decayed
    counts weigh messages unequally, so their rate is noisier than ``trials`` plain messages
    would make it: :math:`(\sum w)^2 / \sum w^2`); by default ``trials``.

    Examples
    --------
    >>> a, b = fit_beta_prior(np.array([1.0, 9.0, 5.0]), np.array([10.0, 10.0, 10.0]))
    >>> round(a / (a + b), 3), round(a + b, 2)
    (0.5, 2.06)
    >>> fit_beta_prior(np.array([2.0, 2.0]), np.array([4.0, 4.0]))  # no spread: strongest prior
    (5000.0, 5000.0)
    """
    keep = trials >= 1.0
    s, n = successes[keep], trials[keep]
    n_eff = n if effective is None else effective[keep]
    if n.shape[0] == 0:
        return None
    mu = float(s.sum() / n.sum())
    if mu <= 0.0 or mu >= 1.0:
        strength = MAX_STRENGTH
    else:
        spread = float(np.mean((s / n - mu) ** 2) - mu * (1.0 - mu) * np.mean(1.0 / n_eff))
        strength = MAX_STRENGTH if spread <= 0.0 else mu * (1.0 - mu) / spread - 1.0
    strength = float(np.clip(strength, MIN_STRENGTH, MAX_STRENGTH))
    return mu * strength, (1.0 - mu) * strength


def _view(store: ProfileStore) -> EngagementView:
    view: EngagementView = store.view("engagement")
    return view


def _contactable(store: ProfileStore) -> NDArray[np.bool_]:
    """(n_users, media) mask: may the profile be contacted on the medium?"""
    visible = store.visible()
    return np.stack([store.channel_consent.mask(m, visible) for m in MEDIA], axis=1)


def _shrunk(
    successes: NDArray[np.float64],
    trials: NDArray[np.float64],
    effective: NDArray[np.float64],
    ok: NDArray[np.bool_],
) -> NDArray[np.float64]:
    """(n_users, media) posterior rates, each medium's Beta prior fitted on the rows ``ok`` marks
    (NaN where not ``ok`` or nobody has a trial on the medium)."""
    rates = np.full(successes.shape, np.nan)
    for m in range(successes.shape[1]):
        prior = fit_beta_prior(successes[ok[:, m], m], trials[ok[:, m], m], effective[ok[:, m], m])
        if prior is not None:
            a, b = prior
            rates[:, m] = (successes[:, m] + a) / (trials[:, m] + a + b)
    rates[~ok] = np.nan
    return rates


def _rates(store: ProfileStore, now_ms: int) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Posterior engagement rates and conversion rates, both (n_users, media); NaN where the
    profile may not be contacted on the medium or nobody has data on it."""
    view = _view(store)
    n_users = store.n_users
    users, media, acc = view.media_table()
    factor = view.factor(now_ms)
    half = acc.shape[1] // 2
    counts = np.zeros((n_users, len(MEDIA), half))
    squares = np.zeros((n_users, len(MEDIA), half))
    counts[users, media] = acc[:, :half] * factor
    squares[users, media] = acc[:, half:] * factor**2
    engaged = np.maximum(counts[:, :, 2], counts[:, :, 3])
    ok = _contactable(store)
    # trials: the largest of sent, delivered and engaged (for conversions, converted too: an
    # order may name a medium no message event reached us on), with that column's squares
    trials, effective = _largest(counts, squares, (3, 2, 1, 0))
    reached, reached_effective = _largest(counts, squares, (_CONVERTED, 3, 2, 1, 0))
    converted = counts[:, :, _CONVERTED]
    return _shrunk(engaged, trials, effective, ok), _shrunk(converted, reached, reached_effective, ok)


def _largest(
    counts: NDArray[np.float64], squares: NDArray[np.float64], columns: tuple[int, ...]
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    r"""Per cell: the largest of the decayed ``columns`` (ties: the later-listed column) and its
    effective number :math:`(\sum w)^2 / \sum w^2` (0 where empty)."""
    column = np.full(counts.shape[:2], columns[0], dtype=np.int64)
    for c in columns[1:]:
        held = np.take_along_axis(counts, column[..., None], 2)[..., 0]
        column = np.where(counts[:, :, c] >= held, c, column)
    value = np.take_along_axis(counts, column[..., None], 2)[..., 0]
    square = np.take_along_axis(squares, column[..., None], 2)[..., 0]
    with np.errstate(divide="ignore", invalid="ignore"):
        effective = np.where(square > 0, value * value / square, 0.0)
    return value, effective


def _pick(rates: NDArray[np.float64]) -> tuple[NDArray[np.int64], NDArray[np.float64]]:
    """Per row: the medium of the highest rate (-1 when none is ranked) and that rate."""
    ranked = ~np.isnan(rates).all(axis=1)
    best = np.full(rates.shape[0], -1, dtype=np.int64)
    best[ranked] = np.nanargmax(rates[ranked], axis=1)
    rate = np.full(rates.shape[0], np.nan)
    rate[ranked] = rates[ranked, best[ranked]]
    return best, rate


def _now(store: ProfileStore, now: Any) -> int:
    return store.now_ms(now)


def best_channel(store: ProfileStore, user_id: str, now: Any = None) -> tuple[str | None, float]:
    """The medium ``user_id`` most likely engages with and its expected (shrunk) rate.

    ``(None, nan)`` for a user who is hidden (opted out, forgotten), unknown, or contactable on
    no medium anybody has data on.

    Examples
    --------
    >>> store = ProfileStore(views=("signals", "engagement"))
    >>> _ = store.ingest(b'{"type":"email_opened","user_id":"bo","timestamp":0}')
    >>> best_channel(store, "bo")
    ('email', 1.0)
    >>> store.opt_out("bo", medium="email", at=1)
    >>> best_channel(store, "bo")
    (None, nan)
    """
    with store.lock:
        code = store.code_of(user_id)
        if code is None:
            return None, float("nan")
        rates, _ = _rates(store, _now(store, now))
        best, rate = _pick(rates[code : code + 1])
        return (MEDIA[int(best[0])] if best[0] >= 0 else None), float(rate[0])


def fit_dirichlet_strength(
    users: NDArray[np.int64],
    counts: NDArray[np.float64],
    squares: NDArray[np.float64],
    pi: NDArray[np.float64],
    bins: NDArray[np.int64],
) -> float:
    r"""Method-of-moments strength :math:`\kappa` of a Dirichlet prior with mean ``pi``, from
    sparse per-(user, bin) counts (rows sorted by user; ``squares``: the sums of squared
    weights, for each user's effective count :math:`n_e`). With :math:`r` the mean over users
    (count :math:`\ge 1`) of :math:`\sum_k (p_k - \pi_k)^2 / (1 - \sum_k \pi_k^2)` and
    :math:`c` the mean of :math:`1 / n_e`: :math:`\kappa = (1 - r) / (r - c)`, clipped to
    [:data:`MIN_STRENGTH`, :data:`MAX_STRENGTH`].

    Examples
    --------
    >>> u = np.array([0, 1, 2, 3])  # four users, ten plain engagements each, all in one bin
    >>> fit_dirichlet_strength(u, np.full(4, 10.0), np.full(4, 10.0), np.full(4, 0.25), np.arange(4))
    0.5
    """
    starts = np.r_[0, np.flatnonzero(users[1:] != users[:-1]) + 1]
    n = np.add.reduceat(counts, starts) if counts.shape[0] else np.zeros(0)
    q = np.add.reduceat(squares, starts) if counts.shape[0] else np.zeros(0)
    spread_q = 1.0 - float(np.sum(pi * pi))
    keep = n >= 1.0
    if not keep.any() or spread_q <= 0.0:
        return MAX_STRENGTH
    p = counts / np.repeat(n, np.diff(np.r_[starts, counts.shape[0]]))
    per_user = np.add.reduceat(p * p - 2.0 * p * pi[bins], starts) + float(np.sum(pi * pi))
    r = float(np.mean(per_user[keep])) / spread_q
    c = float(np.mean(q[keep] / (n[keep] * n[keep])))
    strength = MIN_STRENGTH if r >= 1.0 else MAX_STRENGTH if r <= c else (1.0 - r) / (r - c)
    return float(np.clip(strength, MIN_STRENGTH, MAX_STRENGTH))


@lru_cache(maxsize=1024)
def _zone(name: str) -> ZoneInfo | None:
    try:
        return ZoneInfo(name)
    except (ValueError, OSError, ZoneInfoNotFoundError):  # not an IANA name (or no tz database)
        return None


def utc_offset_s(tz: Any, now: Any = None) -> int | None:
    """The UTC offset in seconds of IANA time zone ``tz`` at ``now`` (epoch ms, ``datetime`` or
    ISO string; default: the current time), or ``None`` when ``tz`` is not a known zone name.

    Examples
    --------
    >>> utc_offset_s("Asia/Tokyo", 0), utc_offset_s("Europe/Oslo", "2026-07-01T00:00:00Z")
    (32400, 7200)
    >>> utc_offset_s("Mars/Olympus", 0) is None
    True
    """
    zone = _zone(tz) if isinstance(tz, str) and tz else None
    if zone is None:
        return None
    now_ms = int(time.time() * 1000) if now is None else to_epoch_ms(now)
    offset = datetime.fromtimestamp(now_ms / 1000, UTC).astimezone(zone).utcoffset()
    return None if offset is None else int(offset.total_seconds())


def _time_zones(store: ProfileStore, now_ms: int) -> tuple[NDArray[np.object_], NDArray[np.float64]]:
    """Per profile code: its ``timezone`` trait ("" when none or not a known zone) and UTC
    offset in hours at ``now_ms`` (0 without a zone)."""
    zones = np.full(store.n_users, "", dtype=object)
    offsets = np.zeros(store.n_users)
    users = store.interners.users
    for user_id, tz in store.traits.values_of(TIMEZONE_TRAIT).items():
        code = users.lookup(user_id)
        offset = utc_offset_s(tz, now_ms)
        if code is not None and code < store.n_users and offset is not None:
            zones[code], offsets[code] = tz, offset / 3600
    return zones, offsets


def _send_hours(
    store: ProfileStore,
    now_ms: int,
    hour_of_week: bool,
    strength: float | None,
    offset_h: NDArray[np.float64] | None = None,
) -> tuple[NDArray[np.int64], NDArray[np.float64]]:
    """Per profile code: best send hour (-1: no data anywhere) and its confidence; the hour in
    each profile's local time where ``offset_h`` (UTC offsets in hours) is given, else UTC."""
    if strength is not None and not (np.isfinite(strength) and strength > 0):
        raise ConfigError(f"strength must be a positive number (got {strength})")
    view = _view(store)
    n_users = store.n_users
    users, hours, acc = view.hour_table()
    factor = view.factor(now_ms)
    weight, weight_sq = acc[:, 0] * factor, acc[:, 1] * factor**2
    bins = HOURS_OF_WEEK if hour_of_week else 24
    if not hour_of_week:
        hours = hours % 24
    visible = store.visible()
    shown = visible[users]
    population = np.bincount(hours[shown], weights=weight[shown], minlength=bins)
    total = population.sum()
    best = np.full(n_users, -1, dtype=np.int64)
    confidence = np.zeros(n_users)
    if total <= 0:
        return best, confidence
    pi = population / total
    # the argmax of h + κπ is a bin where h > 0 or, failing those, the population's best bin
    key = users * bins + hours
    cells, inverse = np.unique(key, return_inverse=True)
    h = np.bincount(inverse, weights=weight)
    cell_user, cell_bin = cells // bins, cells % bins
    if strength is None:
        fit = visible[cell_user]
        h_sq = np.bincount(inverse, weights=weight_sq)
        strength = fit_dirichlet_strength(cell_user[fit], h[fit], h_sq[fit], pi, cell_bin[fit])
    top = int(np.argmax(pi))
    value = np.concatenate([h + strength * pi[cell_bin], np.full(n_users, strength * pi[top])])
    owner = np.concatenate([cell_user, np.arange(n_users)])
    hour = np.concatenate([cell_bin, np.full(n_users, top)])
    has_top = np.zeros(n_users, dtype=np.bool_)
    has_top[cell_user[cell_bin == top]] = True
    candidate = np.concatenate([np.ones(cells.shape[0], dtype=np.bool_), ~has_top])
    owner, value, hour = owner[candidate], value[candidate], hour[candidate]
    if offset_h is not None:  # whole hours, half up: the bins are UTC hours
        shift = np.floor(offset_h + 0.5).astype(np.int64)
        hour = (hour + shift[owner]) % bins
    order = np.lexsort((hour, -value, owner))  # per owner: highest value, then earliest hour
    first = order[np.r_[True, owner[order][1:] != owner[order][:-1]]]
    best[owner[first]] = hour[first]
    own = np.bincount(cell_user, weights=h, minlength=n_users)
    confidence = own / (own + strength)
    best[~visible[:n_users]] = -1
    confidence[~visible[:n_users]] = 0.0
    return best, confidence


def best_send_hour(
    store: ProfileStore,
    user_id: str,
    now: Any = None,
    *,
    hour_of_week: bool = False,
    strength: float | None = None,
) -> tuple[int | None, float]:
    """The hour (of the day, 0-23, or of the week, 0-167 from Monday 00:00) at which ``user_id``
    most likely engages, in the user's local time, and the confidence (share of their own
    evidence).

    Local time: the user's :data:`TIMEZONE_TRAIT` trait (an IANA name, from Segment's
    ``context.timezone`` or identify traits), by its UTC offset at ``now`` (rounded to whole
    hours; a DST change between the engagements and ``now`` is not corrected for); UTC for a
    user without a known zone. ``(None, 0.0)`` for a hidden or unknown user, or when nobody has
    engaged yet.

    Examples
    --------
    >>> store = ProfileStore(views=("signals", "engagement"))
    >>> _ = store.ingest(b'{"type":"push_opened","user_id":"cy","timestamp":68400000}')
    >>> hour, confidence = best_send_hour(store, "cy", strength=5.0)  # 19:00 UTC
    >>> hour, round(confidence, 3)
    (19, 0.167)
    >>> store.set_traits("cy", {"timezone": "Asia/Tokyo"}, at=0)
    True
    >>> best_send_hour(store, "cy", strength=5.0)[0]  # 04:00 the next day in Tokyo
    4
    """
    with store.lock:
        code = store.code_of(user_id)
        if code is None:
            return None, 0.0
        now_ms = _now(store, now)
        offset_h = np.zeros(store.n_users)
        zone = store.traits.of(store.interners.users.names[code]).get(TIMEZONE_TRAIT)
        offset_s = utc_offset_s(zone, now_ms)
        offset_h[code] = 0.0 if offset_s is None else offset_s / 3600
        best, confidence = _send_hours(store, now_ms, hour_of_week, strength, offset_h)
        return (int(best[code]) if best[code] >= 0 else None), float(confidence[code])


def _cap_windows(caps: Caps) -> dict[int, tuple[int, int]]:
    """Medium code -> (most messages, window in whole days)."""
    out: dict[int, tuple[int, int]] = {}
    for medium, cap in caps.items():
        try:
            limit, window = cap
            days = parse_duration(window) / 86_400
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"caps[{medium!r}] must be (count, window like '7d'): {exc}") from None
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
            raise ConfigError(f"caps[{medium!r}]: the count must be an integer >= 0 (got {limit!r})")
        if days < 1 or days != int(days):
            raise ConfigError(f"caps[{medium!r}]: the window must be a whole number of days (got {window!r})")
        out[medium_code(medium)] = (limit, int(days))
    return out


def _received(store: ProfileStore, now_ms: int, windows: dict[int, tuple[int, int]]) -> NDArray[np.float64]:
    """(n_users, media): messages received in each medium's cap window ending on ``now``'s day."""
    view = _view(store)
    longest = max((d for _, d in windows.values()), default=0)
    if longest > view.retention_days:
        raise ConfigError(
            f"a cap window of {longest} days is longer than the engagement view keeps "
            f"({view.retention_days} days)"
        )
    users, media, days, acc = view.send_table()
    today = now_ms // DAY_MS
    span = np.zeros(len(MEDIA), dtype=np.int64)
    for m, (_, d) in windows.items():
        span[m] = d
    inside = (days <= today) & (days > today - span[media])
    out = np.zeros((store.n_users, len(MEDIA), 2))
    np.add.at(out, (users[inside], media[inside]), acc[inside])
    received: NDArray[np.float64] = out.max(axis=2)
    return received


def _over_cap(store: ProfileStore, now_ms: int, caps: Caps) -> NDArray[np.bool_]:
    windows = _cap_windows(caps)
    received = _received(store, now_ms, windows)
    limit = np.full(len(MEDIA), np.inf)
    for m, (count, _) in windows.items():
        limit[m] = count
    over: NDArray[np.bool_] = received >= limit
    return over


def may_message(
    store: ProfileStore, user_id: str, medium: str, now: Any = None, caps: Caps | None = None
) -> bool:
    """Whether ``user_id`` may get one more message on ``medium`` at ``now``: a known user who
    may be contacted on it (consent) and is under its cap (:data:`DEFAULT_CAPS` by default).

    Examples
    --------
    >>> store = ProfileStore(views=("signals", "engagement"))
    >>> _ = store.ingest(b'{"type":"message_sent","user_id":"di","timestamp":0,"medium":"sms"}')
    >>> may_message(store, "di", "sms", caps={"sms": (1, "1d")})
    False
    >>> may_message(store, "di", "sms", now=86_400_000, caps={"sms": (1, "1d")})
    True
    """
    column = medium_code(medium)
    with store.lock:
        code = store.code_of(user_id)
        if code is None or store.channel_consent.revoked(code)[column]:
            return False
        over = _over_cap(store, _now(store, now), DEFAULT_CAPS if caps is None else caps)
        return not bool(over[code, column])


def channel_table(
    store: ProfileStore,
    now: Any = None,
    *,
    caps: Caps | None = None,
    hour_of_week: bool = False,
    strength: float | None = None,
    tiers: TierPlan | None = None,
) -> dict[str, NDArray[Any]]:
    """For every visible user: ``user_id``, ``best_channel`` ("" when none), ``channel_rate``,
    ``best_send_hour`` (local, -1 when none) and ``fatigued``, the columns of ``affinity
    channels``; then ``channel_tier`` (on the best rates; quantile tiers by default),
    ``conversion_rate`` (the shrunk orders-per-message rate on the best channel, NaN when none),
    ``send_hour_confidence``, ``tz`` (the zone the send hour is in, "" for UTC) and
    ``utc_offset`` (its offset at ``now``, hours). The same numbers as the one-user queries.

    Examples
    --------
    >>> store = ProfileStore(views=("signals", "engagement"))
    >>> _ = store.ingest(b'{"type":"sms_clicked","user_id":"ed","timestamp":0}')
    >>> table = channel_table(store)
    >>> table["user_id"].tolist(), table["best_channel"].tolist(), table["fatigued"].tolist()
    (['ed'], ['sms'], [False])
    """
    with store.lock:
        now_ms = _now(store, now)
        rates, conversions = _rates(store, now_ms)
        best, rate = _pick(rates)
        converts = np.where(best >= 0, conversions[np.arange(best.shape[0]), best], np.nan)
        zones, offset_h = _time_zones(store, now_ms)
        hour, confidence = _send_hours(store, now_ms, hour_of_week, strength, offset_h)
        fatigued: NDArray[np.bool_] = np.any(
            _over_cap(store, now_ms, DEFAULT_CAPS if caps is None else caps), axis=1
        )
        codes = np.flatnonzero(store.visible())
        plan = tiers if tiers is not None else TierPlan(half_point=None)
        ranked = ~np.isnan(rate[codes])
        up, down = plan.cutoffs(rate[codes][ranked])
        tier = np.zeros(codes.shape[0], dtype=np.int8)
        tier[ranked] = plan.assign(rate[codes][ranked], up, down)
        names = np.array((*MEDIA, ""), dtype=object)
        ids = store.interners.users.names
        return {
            "user_id": np.array([ids[c] for c in codes.tolist()], dtype=object),
            "best_channel": names[best[codes]],
            "channel_rate": rate[codes],
            "best_send_hour": hour[codes],
            "fatigued": fatigued[codes],
            "channel_tier": plan.labels(tier).astype(object),
            "conversion_rate": converts[codes],
            "send_hour_confidence": confidence[codes],
            "tz": zones[codes],
            "utc_offset": offset_h[codes],
        }


def fatigued_segment() -> Segment:
    """The ``fatigued`` segment of a :func:`channel_table` frame: users at a cap on some medium.

    Examples
    --------
    >>> fatigued_segment().members({"user_id": np.array(["a", "b"]), "fatigued": np.array([True, False])})
    array(['a'], dtype='<U1')
    """
    return Segment("fatigued", col("fatigued") == True, "at or over a message cap on some medium")  # noqa: E712
