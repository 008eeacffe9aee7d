"""The report's words and tables: what each tier and segment means and what to do with it, the
glossary, why users score 0, the users to act on (top N per segment, also written as a CSV) and
the users who moved most between two runs. Plain data and text; :mod:`~affinity_sdk.activate.report`
turns them into HTML.

Examples
--------
>>> horizon_text("churn (2w)")
'within the next 2 weeks'
>>> describe_outcome("churn (2w)")
'shows no activity at all within the next 2 weeks'
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

import numpy as np
from numpy.typing import NDArray

from affinity_sdk.activate.report_charts import TIER_NAMES, tier_cutoffs
from affinity_sdk.score.results import ScoreResult

if TYPE_CHECKING:
    from affinity_sdk.activate.segments import Segment
    from affinity_sdk.config import ScoringConfig
    from affinity_sdk.models.goals import Goal
    from affinity_sdk.profile.store import ProfileStore

__all__ = [
    "CHANNEL_GLOSSARY",
    "GLOSSARY",
    "ChannelPanel",
    "SegmentInfo",
    "TierLine",
    "ZeroScores",
    "action_table",
    "channel_panel",
    "describe_outcome",
    "describe_segments",
    "horizon_text",
    "movers",
    "tier_lines",
    "tier_segments",
    "zero_scores",
]

#: What to do with each tier (by code), in a marketer's words.
TIER_ACTIONS: Final = (
    "Keep them in low-cost channels (newsletter, organic); spend on win-back only for those with "
    "past orders.",
    "Nurture them towards High: personalised recommendations and reminders of what they viewed or "
    "put in the cart.",
    "Reward and retain: early access, loyalty perks and cross-sell; they buy without discounts.",
)
TIER_WHO: Final = (
    "little recent activity: browsing long ago, or none",
    "some recent activity: warm but not yet committed",
    "the most engaged right now: recent orders, carts and visits",
)

#: Term -> meaning, for the glossary; goals are added per report.
GLOSSARY: Final[tuple[tuple[str, str], ...]] = (
    (
        "Score",
        "How engaged a customer is right now, 0-100: the raw score mapped so that 50 is a typical "
        "active customer and 100 is reached only by very active ones. Higher is better.",
    ),
    (
        "Raw score",
        "The weighted sum of each customer's recent events (views, carts, checkouts, orders, email "
        "clicks, app opens; unsubscribes count against). Each event fades with its signal's half-life.",
    ),
    (
        "Half-life",
        "How fast an event stops counting: after one half-life it counts half, after two a quarter. "
        "A product view (3 days) fades faster than an order (30 days).",
    ),
    (
        "Tier",
        "High, Medium or Low: the score cut into three groups, by share of customers (quantile) or by "
        "fixed scores (absolute), as the scoring config says.",
    ),
    ("Cut-off", "The lowest score in a tier: the dashed lines on the score chart."),
    (
        "Hysteresis",
        "A margin around each cut-off: a customer changes tier only when the score passes the cut-off "
        "by the margin, so tiers do not flicker from run to run.",
    ),
    (
        "Segment",
        "A named group defined by a rule over tiers and model probabilities (e.g. vip_prospects); "
        "the rule is shown beside each segment.",
    ),
    (
        "Propensity",
        "A model's probability that a customer does something (orders, churns, unsubscribes) within "
        "a horizon.",
    ),
    (
        "(2w), (14d)",
        "The horizon of a propensity model or goal: it predicts what happens within the next 2 weeks "
        "(14 days) after the scores' date.",
    ),
    (
        "ROC AUC",
        "How well a model ranks customers: the chance that one who did it is ranked above one who "
        "did not. 0.5 is a coin toss, 1.0 perfect; above 0.7 is useful for targeting.",
    ),
    (
        "Brier score",
        "The mean squared error of the probabilities (0 is perfect). Compare it with the rate "
        "itself: a model predicting the average rate for everyone scores rate x (1 - rate).",
    ),
    (
        "Calibration",
        "Whether the probabilities mean what they say: of customers given 30 %, about 30 % do it. "
        "The calibration error is the average gap, weighted by customers; the chart's dots should "
        "sit on the diagonal.",
    ),
    (
        "Lift",
        "How many times more often customers in a decile do it than customers on average: a lift "
        "of 3 in decile 1 means targeting that tenth finds three times as many as a random tenth.",
    ),
    (
        "Cumulative gain",
        "The share of everyone who did it found in the top deciles: 49 % at decile 1 means the top "
        "tenth by probability holds 49 % of them.",
    ),
    (
        "Decile",
        "A tenth of the customers, ranked by predicted probability: decile 1 is the highest 10 %.",
    ),
    (
        "RFM",
        "Recency (days since the last order), frequency (orders) and monetary value (spend), each "
        "scored 1-5 by quintile among customers with an order; segments sit on the R x FM grid.",
    ),
    (
        "PSI",
        "Population stability index: how much the score distribution moved since the previous run. "
        "Below 0.1 no real change, 0.1-0.25 a moderate shift worth a look, above 0.25 an alert.",
    ),
    (
        "Tier transition",
        "How many customers moved from each tier in the previous run to each tier in this one. "
        "Skipping a tier (Low to High or back) in one run is rare; many skips suggest a data problem.",
    ),
)

#: Terms of the channel panel, added to the glossary when the report shows it.
CHANNEL_GLOSSARY: Final[tuple[tuple[str, str], ...]] = (
    (
        "Best channel",
        "The medium (email, SMS, push, in-app, WhatsApp) a customer most likely opens or clicks, "
        "among those they may be contacted on: their own opens and clicks out of messages "
        "received, pulled toward the medium's average when they have few messages (shrunk rate).",
    ),
    (
        "Best send hour",
        "The hour of the day (the customer's local hour where their events carry a time zone, else "
        "UTC) a customer most often opens or clicks, pulled toward everyone's "
        "busiest hours when they have little history of their own.",
    ),
    (
        "Fatigued",
        "A customer who has received as many messages on a medium as its cap allows in the cap's "
        "window (e.g. 3 emails in 7 days): send them nothing more on it until the window moves on.",
    ),
)

_HORIZON: Final = re.compile(r"\((\d+)\s*([hdw])\)")
_UNITS: Final = {"h": "hour", "d": "day", "w": "week"}
_OUTCOMES: Final = {
    "repurchase": "orders again (customers with a past order)",
    "purchase": "places an order",
    "churn": "shows no activity at all",
    "unsubscribe": "unsubscribes from marketing email",
    "uninstall": "uninstalls the app",
}


def horizon_text(label: str) -> str:
    """``"within the next 2 weeks"`` for a label ending in ``(2w)`` (``h``, ``d`` or ``w``), else
    ``"within the model's horizon"``."""
    match = _HORIZON.search(label)
    if match is None:
        return "within the model's horizon"
    n, unit = int(match.group(1)), _UNITS[match.group(2)]
    return f"within the next {n} {unit}{'s' if n != 1 else ''}"


def describe_outcome(label: str) -> str:
    """What a propensity model's label predicts, in words (its outcome and horizon)."""
    word = next((text for key, text in _OUTCOMES.items() if label.startswith(key)), "does it")
    return f"{word} {horizon_text(label)}"


@dataclass(frozen=True)
class TierLine:
    """One tier in words and numbers: who is in it, how many, its score range, what to do."""

    code: int
    name: str
    count: int
    share: float
    low: float | None
    high: float | None
    who: str
    todo: str


def tier_lines(result: ScoreResult, config: ScoringConfig | None = None) -> list[TierLine]:
    """High, Medium and Low (in that order) with their sizes and score ranges from ``result``
    and, given the scoring ``config``, how its tier plan defines them.

    Examples
    --------
    >>> r = ScoreResult(user_ids=["a", "b", "c"], raw_score=np.zeros(3),
    ...     score=np.array([90.0, 60.0, 5.0]), tier_code=np.array([2, 1, 0], dtype=np.int8),
    ...     signal_names=(), decayed=np.zeros((3, 0)), now_ms=0, config_version="v",
    ...     config_fingerprint="f")
    >>> [(t.name, t.count, t.low, t.high) for t in tier_lines(r)]
    [('High', 1, 90.0, 90.0), ('Medium', 1, 60.0, 60.0), ('Low', 1, 5.0, 5.0)]
    """
    counts = np.bincount(result.tier_code, minlength=3)
    n = max(len(result), 1)
    plan = _plan_text(config)
    lines = []
    for code in (2, 1, 0):
        scores = result.score[result.tier_code == code]
        low = float(scores.min()) if scores.size else None
        high = float(scores.max()) if scores.size else None
        who = TIER_WHO[code] + (f"; {plan[code]}" if plan else "")
        lines.append(
            TierLine(
                code,
                TIER_NAMES[code],
                int(counts[code]),
                counts[code] / n,
                low,
                high,
                who,
                TIER_ACTIONS[code],
            )
        )
    return lines


def _plan_text(config: ScoringConfig | None) -> tuple[str, str, str] | None:
    if config is None:
        return None
    t = config.tiers
    margin = f" (hysteresis {t.hysteresis:g})" if t.hysteresis > 0 else ""
    if t.method == "quantile":
        return (
            f"the bottom {t.medium:.0%} by score{margin}",
            f"the next {t.high - t.medium:.0%} by score{margin}",
            f"the top {1 - t.high:.0%} by score{margin}",
        )
    return (
        f"score below {t.medium:g}{margin}",
        f"score from {t.medium:g} to below {t.high:g}{margin}",
        f"score {t.high:g} or more{margin}",
    )


@dataclass(frozen=True)
class ZeroScores:
    """Why users sit at the bottom of the score scale."""

    n_zero: int  #: score exactly 0
    n_negative: int  #: ... because negative signals (unsubscribes) outweigh their activity
    n_inactive: int  #: ... because they have no scored activity at all
    n_faded: int  #: score above 0 but below 1: their activity is many half-lives old


def zero_scores(result: ScoreResult) -> ZeroScores:
    """Count the users at (or next to) score 0, by cause, from ``result``'s raw scores and signals.

    Examples
    --------
    >>> r = ScoreResult(user_ids=["a", "b", "c", "d"], raw_score=np.array([-2.0, 0.0, 0.05, 9.0]),
    ...     score=np.array([0.0, 0.0, 0.5, 47.0]), tier_code=np.zeros(4, dtype=np.int8),
    ...     signal_names=("x",), decayed=np.array([[1.0], [0.0], [0.05], [9.0]]), now_ms=0,
    ...     config_version="v", config_fingerprint="f")
    >>> zero_scores(r)
    ZeroScores(n_zero=2, n_negative=1, n_inactive=1, n_faded=1)
    """
    zero = result.score <= 0.0
    inactive = zero & ~np.any(result.decayed != 0.0, axis=1)
    return ZeroScores(
        n_zero=int(zero.sum()),
        n_negative=int((zero & (result.raw_score < 0)).sum()),
        n_inactive=int(inactive.sum()),
        n_faded=int(((result.score > 0.0) & (result.score < 1.0)).sum()),
    )


def zero_score_note(z: ZeroScores, config: ScoringConfig | None = None) -> str:
    """The sentence under the score chart that explains the bar at 0."""
    parts = []
    if z.n_negative:
        parts.append(
            f"{z.n_negative:,} because negative signals (an unsubscribe) outweigh their recent activity"
        )
    if z.n_inactive:
        parts.append(f"{z.n_inactive:,} with no scored activity at all")
    other = z.n_zero - z.n_negative - z.n_inactive
    if other:
        parts.append(f"{other:,} whose positive and negative activity cancel out")
    text = f"{z.n_zero:,} users score 0" + (": " + ", ".join(parts) if parts else "") + "."
    if z.n_faded:
        text += (
            f" Another {z.n_faded:,} score above 0 but below 1: they had no scored activity within "
            "several half-lives, so what they did has faded to almost nothing"
        )
        if config is not None:
            lives = sorted({str(s.half_life) for s in config.signals.values()})
            text += f" (half-lives {', '.join(lives)})"
        text += "."
    return text


@dataclass(frozen=True)
class SegmentInfo:
    """A segment in words: ``who`` is in it, what ``todo``, its exact ``rule``, and the column
    (a model probability) that orders its users to act on (``None``: by score)."""

    who: str
    todo: str
    rule: str = ""
    rank_by: str | None = None


_PROBABILITY_COLUMN: Final = re.compile(r"\b(p_\w+)\b")
#: Thresholds computed from data (a quantile) print with 16 digits; a reader needs 3.
_LONG_FLOAT: Final = re.compile(r"\d+\.\d{4,}")


def describe_segments(segments: Sequence[Segment]) -> dict[str, SegmentInfo]:
    """:class:`SegmentInfo` per segment: its description split at the first ``": "`` into who
    and what to do, its rule's text, and the first model probability (a ``p_`` column) the rule
    uses as the order of its users to act on.

    Examples
    --------
    >>> from affinity_sdk.activate.segments import Segment, col
    >>> s = Segment("churn_risk", (col("p_churn") >= 0.5123456) & (col("tier") >= "medium"),
    ...             "Valuable but slipping away: win back before they go")
    >>> describe_segments([s])["churn_risk"]  # doctest: +NORMALIZE_WHITESPACE
    SegmentInfo(who='Valuable but slipping away', todo='Win back before they go',
                rule="(p_churn >= 0.512 and tier >= 'medium')", rank_by='p_churn')
    """
    out = {}
    for s in segments:
        who, _, todo = s.description.partition(": ")
        match = _PROBABILITY_COLUMN.search(s.rule.text)
        rule = _LONG_FLOAT.sub(lambda m: f"{float(m.group()):.3g}", s.rule.text)
        out[s.name] = SegmentInfo(who, todo[:1].upper() + todo[1:], rule, match.group(1) if match else None)
    return out


def tier_segments(result: ScoreResult) -> tuple[dict[str, NDArray[np.bool_]], dict[str, SegmentInfo]]:
    """The tiers as segments (``High tier`` ...), for action lists when no segments are given."""
    masks = {}
    info = {}
    for line in tier_lines(result):
        name = f"{line.name} tier"
        masks[name] = result.tier_code == line.code
        info[name] = SegmentInfo(line.who[0].upper() + line.who[1:], line.todo)
    return masks, info


def action_table(
    result: ScoreResult,
    masks: Mapping[str, NDArray[np.bool_]],
    info: Mapping[str, SegmentInfo],
    *,
    user_columns: Mapping[str, NDArray[Any]] | None = None,
    weights: Mapping[str, float] | None = None,
    top_n: int = 20,
) -> dict[str, list[Any]]:
    """The users to act on: up to ``top_n`` per segment, as columns ``segment, rank, user_id,
    score, reason``. A segment's users are ordered by its ``rank_by`` column in ``user_columns``
    (highest first, missing values last) or else by score; the reason names the tier and score,
    that column, and, given the signal ``weights``, the signal that contributes most.

    Examples
    --------
    >>> r = ScoreResult(user_ids=["a", "b", "c"], raw_score=np.array([9.0, 3.0, 1.0]),
    ...     score=np.array([47.4, 23.1, 9.1]), tier_code=np.array([2, 1, 0], dtype=np.int8),
    ...     signal_names=("order_completed",), decayed=np.array([[0.9], [0.3], [0.1]]), now_ms=0,
    ...     config_version="v", config_fingerprint="f")
    >>> t = action_table(r, {"all": np.ones(3, bool)}, {}, weights={"order_completed": 10.0}, top_n=2)
    >>> t["user_id"], t["reason"][0]
    (['a', 'b'], 'High tier, score 47.4; mostly order_completed (100% of raw score)')
    """
    columns = user_columns or {}
    table: dict[str, list[Any]] = {"segment": [], "rank": [], "user_id": [], "score": [], "reason": []}
    signal_weights = (
        np.array([weights.get(s, 0.0) for s in result.signal_names], dtype=np.float64) if weights else None
    )
    for name, mask in masks.items():
        rows = np.flatnonzero(mask)
        segment = info.get(name)
        key_name = segment.rank_by if segment is not None and segment.rank_by in columns else None
        if key_name is not None:
            key = np.asarray(columns[key_name], dtype=np.float64)[rows]
            key = np.where(np.isnan(key), -np.inf, key)
            order = np.lexsort((-result.score[rows], -key))
        else:
            order = np.argsort(-result.score[rows], kind="stable")
        for rank, row in enumerate(rows[order[:top_n]].tolist(), 1):
            table["segment"].append(name)
            table["rank"].append(rank)
            table["user_id"].append(result.user_ids[row])
            table["score"].append(round(float(result.score[row]), 1))
            table["reason"].append(_reason(result, row, key_name, columns, signal_weights))
    return table


def _reason(
    result: ScoreResult,
    row: int,
    key_name: str | None,
    columns: Mapping[str, NDArray[Any]],
    weights: NDArray[np.float64] | None,
) -> str:
    parts = [f"{TIER_NAMES[int(result.tier_code[row])]} tier, score {result.score[row]:.1f}"]
    if key_name is not None:
        parts.append(f"{key_name} {float(columns[key_name][row]):.2f}")
    if weights is not None and len(weights):
        contribution = result.decayed[row] * weights
        positive = contribution[contribution > 0].sum()
        best = int(np.argmax(contribution))
        if positive > 0 and contribution[best] > 0:
            parts.append(
                f"mostly {result.signal_names[best]} ({contribution[best] / positive:.0%} of raw score)"
            )
    return "; ".join(parts)


@dataclass(frozen=True)
class Mover:
    """One user whose score moved between two runs."""

    user_id: str
    before: float
    after: float
    tier_before: str
    tier_after: str


def movers(previous: ScoreResult, current: ScoreResult, n: int = 10) -> tuple[list[Mover], list[Mover]]:
    """The ``n`` biggest risers and fallers in score among users in both runs (largest first).

    Examples
    --------
    >>> def run(scores):
    ...     return ScoreResult(user_ids=["a", "b", "c"], raw_score=np.array(scores),
    ...         score=np.array(scores), tier_code=np.zeros(3, dtype=np.int8), signal_names=(),
    ...         decayed=np.zeros((3, 0)), now_ms=0, config_version="v", config_fingerprint="f")
    >>> up, down = movers(run([10.0, 50.0, 30.0]), run([40.0, 20.0, 31.0]), n=1)
    >>> up[0].user_id, down[0].user_id
    ('a', 'b')
    """
    index = {u: i for i, u in enumerate(previous.user_ids)}
    rows = np.array([j for j, u in enumerate(current.user_ids) if u in index], dtype=np.int64)
    before = np.array([index[current.user_ids[j]] for j in rows.tolist()], dtype=np.int64)
    delta = current.score[rows] - previous.score[before] if rows.size else np.zeros(0)

    def pick(order: NDArray[np.intp], sign: float) -> list[Mover]:
        chosen = [k for k in order[:n].tolist() if sign * delta[k] > 0]
        return [
            Mover(
                current.user_ids[rows[k]],
                float(previous.score[before[k]]),
                float(current.score[rows[k]]),
                TIER_NAMES[int(previous.tier_code[before[k]])],
                TIER_NAMES[int(current.tier_code[rows[k]])],
            )
            for k in chosen
        ]

    return pick(np.argsort(-delta, kind="stable"), 1.0), pick(np.argsort(delta, kind="stable"), -1.0)


def goal_glossary(goals: Sequence[Goal]) -> list[tuple[str, str]]:
    """A glossary entry per custom goal: its name and definition."""
    return [(g.name, f"Custom goal: {g.describe()}.") for g in goals]


def cutoff_text(result: ScoreResult) -> str:
    """``"High ≥ 85.1, Medium ≥ 65.3"`` from the result's own scores."""
    cuts = tier_cutoffs(result)
    return ", ".join(f"{TIER_NAMES[c]} ≥ {cuts[c]:.1f}" for c in (2, 1) if c in cuts)


@dataclass(frozen=True)
class ChannelPanel:
    """The report's channel and send-time panel, per medium (in ``media`` order): ``reach`` (users
    who may be contacted on it: visible, not opted out of it), ``best_for`` (users whose best
    channel it is) and ``mean_rate`` (their mean shrunk engagement rate on it, NaN when none);
    ``send_hours`` (users per best send hour, 0-23, local where known); ``fatigued`` (users at or
    over a cap of ``caps``); ``n_users`` (visible users) and ``now_ms`` (when it was measured)."""

    media: tuple[str, ...]
    reach: tuple[int, ...]
    best_for: tuple[int, ...]
    mean_rate: tuple[float, ...]
    send_hours: tuple[int, ...]
    fatigued: int
    caps: Mapping[str, tuple[int, str]]
    n_users: int
    now_ms: int

    def caps_text(self) -> str:
        """``"email 3 in 7d, sms 2 in 7d, ..."``."""
        return ", ".join(f"{m} {count} in {window}" for m, (count, window) in self.caps.items())


def channel_panel(
    store: ProfileStore, now: Any = None, caps: Mapping[str, tuple[int, str]] | None = None
) -> ChannelPanel | None:
    """The :class:`ChannelPanel` of a profile store (a scorer's ``store``) at ``now`` (default:
    its latest event), from :func:`~affinity_sdk.models.channels.channel_table`; ``None`` when the
    store does not keep the ``engagement`` view (the report then has no channel panel).

    Examples
    --------
    >>> from affinity_sdk.profile.store import ProfileStore
    >>> store = ProfileStore(views=("signals", "engagement"))
    >>> _ = store.ingest(b'{"type":"push_opened","user_id":"cy","timestamp":68400000}')
    >>> panel = channel_panel(store)
    >>> panel.best_for[panel.media.index("push")], panel.send_hours[19], panel.fatigued
    (1, 1, 0)
    >>> channel_panel(ProfileStore(views=("signals",))) is None
    True
    """
    from affinity_sdk.capture.events import MEDIA
    from affinity_sdk.models.channels import DEFAULT_CAPS, channel_table

    if "engagement" not in store.views:
        return None
    used = dict(DEFAULT_CAPS if caps is None else caps)
    with store.lock:
        now_ms = store.now_ms(now)
        table = channel_table(store, now_ms, caps=used)
        visible = store.visible()
        reach = tuple(int(store.channel_consent.mask(m, visible).sum()) for m in MEDIA)
    best, rate = table["best_channel"], table["channel_rate"]
    best_for = tuple(int(np.count_nonzero(best == m)) for m in MEDIA)
    mean_rate = tuple(
        float(rate[best == m].mean()) if n else float("nan") for m, n in zip(MEDIA, best_for, strict=True)
    )
    hours = table["best_send_hour"]
    return ChannelPanel(
        media=tuple(MEDIA),
        reach=reach,
        best_for=best_for,
        mean_rate=mean_rate,
        send_hours=tuple(np.bincount(hours[hours >= 0], minlength=24).tolist()),
        fatigued=int(np.count_nonzero(table["fatigued"])),
        caps=used,
        n_users=len(table["user_id"]),
        now_ms=now_ms,
    )
