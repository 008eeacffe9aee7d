"""Segments and activation: composable rules, entered / exited diffs, holdouts and drift.

A *frame* is a mapping of column name → numpy array, one row per user, plus the ``user_id``
column (see :func:`frame_from_result`). Rules are built from :func:`col` with comparisons and
``&``, ``|``, ``~``, and are evaluated vectorized over the whole frame. Tier columns hold codes
0 / 1 / 2; comparing them with a label (``col("tier") >= "medium"``) compares codes.

Examples
--------
>>> import numpy as np
>>> frame = {"user_id": np.array(["a", "b", "c"]), "tier": np.array([2, 1, 0], dtype=np.int8),
...          "p_purchase": np.array([0.2, 0.7, 0.9])}
>>> hot = Segment("high_intent", (col("tier") >= "medium") & (col("p_purchase") >= 0.5))
>>> hot.members(frame).tolist()
['b']
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import numpy as np
from numpy.typing import NDArray

from affinity_sdk.score.results import ScoreResult, write_columns

__all__ = [
    "PSI_ALERT",
    "PSI_MODERATE",
    "Col",
    "DriftReport",
    "Rule",
    "Segment",
    "SegmentDiff",
    "col",
    "compare_runs",
    "diff_segments",
    "evaluate_segments",
    "export_segments",
    "frame_from_result",
    "holdout_mask",
    "psi",
    "psi_level",
    "standard_segments",
]

Frame = Mapping[str, NDArray[Any]]
TIER_CODES: Final = {"low": 0, "medium": 1, "high": 2}


def _operand(column: NDArray[Any], value: Any) -> Any:
    if isinstance(value, str) and value in TIER_CODES and np.issubdtype(column.dtype, np.integer):
        return TIER_CODES[value]
    return value


class Rule:
    """A boolean condition over a frame; combine with ``&``, ``|`` and ``~``."""

    def __init__(self, evaluate: Callable[[Frame], NDArray[np.bool_]], text: str) -> None:
        self._evaluate = evaluate
        self.text = text

    def __call__(self, frame: Frame) -> NDArray[np.bool_]:
        return np.asarray(self._evaluate(frame), dtype=np.bool_)

    def __and__(self, other: Rule) -> Rule:
        return Rule(lambda f: self(f) & other(f), f"({self.text} and {other.text})")

    def __or__(self, other: Rule) -> Rule:
        return Rule(lambda f: self(f) | other(f), f"({self.text} or {other.text})")

    def __invert__(self) -> Rule:
        return Rule(lambda f: ~self(f), f"not {self.text}")

    def __repr__(self) -> str:
        return f"Rule({self.text})"


class Col:
    """A frame column in a rule: compare with ``==, !=, <, <=, >, >=`` or :meth:`isin`."""

    def __init__(self, name: str) -> None:
        self.name = name

    def _get(self, frame: Frame) -> NDArray[Any]:
        try:
            return frame[self.name]
        except KeyError:
            raise KeyError(f"segment rule uses column {self.name!r}, which the frame does not have") from None

    def _cmp(self, op: Callable[[Any, Any], Any], symbol: str, value: Any) -> Rule:
        return Rule(
            lambda f: op(self._get(f), _operand(self._get(f), value)), f"{self.name} {symbol} {value!r}"
        )

    def __eq__(self, value: object) -> Rule:  # type: ignore[override]
        return self._cmp(np.equal, "==", value)

    def __ne__(self, value: object) -> Rule:  # type: ignore[override]
        return self._cmp(np.not_equal, "!=", value)

    def __lt__(self, value: Any) -> Rule:
        return self._cmp(np.less, "<", value)

    def __le__(self, value: Any) -> Rule:
        return self._cmp(np.less_equal, "<=", value)

    def __gt__(self, value: Any) -> Rule:
        return self._cmp(np.greater, ">", value)

    def __ge__(self, value: Any) -> Rule:
        return self._cmp(np.greater_equal, ">=", value)

    def isin(self, values: Iterable[Any]) -> Rule:
        wanted = list(values)
        return Rule(
            lambda f: np.isin(self._get(f), [_operand(self._get(f), v) for v in wanted]),
            f"{self.name} in {wanted!r}",
        )

    __hash__ = None  # type: ignore[assignment]


def col(name: str) -> Col:
    """The column ``name`` of the frame a rule is evaluated on."""
    return Col(name)


@dataclass(frozen=True)
class Segment:
    """A named rule. ``members(frame)`` gives the ids of the users it selects."""

    name: str
    rule: Rule
    description: str = ""

    def mask(self, frame: Frame) -> NDArray[np.bool_]:
        return self.rule(frame)

    def members(self, frame: Frame) -> NDArray[Any]:
        ids: NDArray[Any] = np.asarray(frame["user_id"])[self.mask(frame)]
        return ids


def frame_from_result(result: ScoreResult, **extra: NDArray[Any]) -> dict[str, NDArray[Any]]:
    """A segment frame from a :class:`ScoreResult` (``user_id, raw_score, score, tier`` and one
    column per signal), plus any extra columns aligned with ``result.user_ids`` (propensities,
    affinity flags ...)."""
    frame: dict[str, NDArray[Any]] = {
        "user_id": np.asarray(result.user_ids, dtype=object),
        "raw_score": result.raw_score,
        "score": result.score,
        "tier": result.tier_code,
    }
    for i, name in enumerate(result.signal_names):
        frame[name] = result.decayed[:, i]
    for name, values in extra.items():
        if len(values) != len(result):
            raise ValueError(f"column {name!r} has {len(values)} rows, the result has {len(result)}")
        frame[name] = np.asarray(values)
    return frame


def standard_segments(frame: Mapping[str, NDArray[Any]], brand_names: Sequence[str]) -> list[Segment]:
    """The SDK's standard segments over a segment frame with the columns ``tier``, ``p_purchase``,
    ``p_churn``, ``p_unsubscribe``, ``discount_tier`` (0 / 1 / 2) and ``favourite_brand`` (a code
    into ``brand_names``, -1 for none); probabilities may be NaN (no model: never a member).

    - ``high_intent``: High tier and a purchase probability in the top 40 %;
    - ``churn_risk``: Medium or High tier and churn probability >= 0.5;
    - ``vip_prospects``: Medium tier and a purchase probability in the top 40 %;
    - ``discount_seekers_<brand>``: High discount sensitivity, favourite brand = the most common one;
    - ``unsubscribe_risk``: unsubscribe probability >= 0.1.

    Examples
    --------
    >>> import numpy as np
    >>> frame = {"user_id": np.array(["a", "b", "c"]), "tier": np.array([2, 1, 0], dtype=np.int8),
    ...          "p_purchase": np.array([0.9, 0.9, 0.1]), "p_churn": np.array([0.1, 0.6, 0.9]),
    ...          "p_unsubscribe": np.array([0.0, 0.2, np.nan]), "discount_tier": np.array([2, 0, 2]),
    ...          "favourite_brand": np.array([0, 0, 1])}
    >>> {s.name: s.members(frame).tolist() for s in standard_segments(frame, ["acme", "zeta"])}
    ... # doctest: +NORMALIZE_WHITESPACE
    {'high_intent': ['a'], 'churn_risk': ['b'], 'vip_prospects': ['b'],
     'discount_seekers_acme': ['a'], 'unsubscribe_risk': ['b']}
    """
    p_buy = frame["p_purchase"]
    buy_medium = float(np.nanquantile(p_buy, 0.6)) if np.isfinite(p_buy).any() else np.inf
    brands = frame["favourite_brand"]
    known = brands[brands >= 0]
    top_brand = int(np.bincount(known).argmax()) if len(known) else -1
    top_name = brand_names[top_brand] if top_brand >= 0 else "none"
    return [
        Segment(
            "high_intent",
            (col("tier") == "high") & (col("p_purchase") >= buy_medium),
            "High score, likely to buy: reward and cross-sell",
        ),
        Segment(
            "churn_risk",
            (col("p_churn") >= 0.5) & (col("tier") >= "medium"),
            "Valuable but slipping away: win back before they go",
        ),
        Segment(
            "vip_prospects",
            (col("tier") == "medium") & (col("p_purchase") >= buy_medium),
            "Medium score, likely to buy: the next VIPs, nurture them",
        ),
        Segment(
            f"discount_seekers_{top_name}",
            (col("discount_tier") == "high") & (col("favourite_brand") == top_brand),
            f"Discount-driven fans of the most liked brand ({top_name}): send its offers",
        ),
        Segment(
            "unsubscribe_risk",
            col("p_unsubscribe") >= 0.1,
            "Likely to unsubscribe: mail less often",
        ),
    ]


def evaluate_segments(segments: Sequence[Segment], frame: Frame) -> dict[str, NDArray[np.bool_]]:
    """Membership mask per segment name."""
    return {segment.name: segment.mask(frame) for segment in segments}


@dataclass(frozen=True)
class SegmentDiff:
    """Who entered and who exited one segment between two runs."""

    segment: str
    entered: list[str]
    exited: list[str]


def diff_segments(
    before: Mapping[str, Iterable[str]],
    after: Mapping[str, Iterable[str]],
    *,
    suppressed: Iterable[str] = (),
) -> list[SegmentDiff]:
    """Entered / exited users per segment between two runs (segment name → member ids).

    ``suppressed`` ids (opted-out users) never appear in either list: the trigger list for
    journeys is consent-aware even if a caller passes stale memberships.

    Examples
    --------
    >>> diff_segments({"vip": ["a", "b"]}, {"vip": ["b", "c", "d"]}, suppressed=["d"])
    [SegmentDiff(segment='vip', entered=['c'], exited=['a'])]
    """
    blocked = set(suppressed)
    diffs = []
    for name in sorted(set(before) | set(after)):
        old = set(before.get(name, ())) - blocked
        new = set(after.get(name, ())) - blocked
        diffs.append(SegmentDiff(name, sorted(new - old), sorted(old - new)))
    return diffs


def holdout_mask(
    user_ids: Sequence[str] | NDArray[Any], campaign: str, share: float, *, salt: str = ""
) -> NDArray[np.bool_]:
    """Deterministic control group: ``True`` for users held out of ``campaign``.

    A user is held out when ``blake2b(salt, campaign, user) / 2**64 < share``: reproducible
    anywhere without stored state, independent across campaigns, and stable when users are added.

    Examples
    --------
    >>> ids = [f"u{i}" for i in range(10_000)]
    >>> mask = holdout_mask(ids, "spring-sale", 0.1, salt="s1")
    >>> again = holdout_mask(ids, "spring-sale", 0.1, salt="s1")
    >>> bool(0.08 < mask.mean() < 0.12), bool((mask == again).all())
    (True, True)
    """
    if not 0.0 <= share <= 1.0:
        raise ValueError(f"holdout share must be within [0, 1] (got {share})")
    prefix = f"{salt}\x1f{campaign}\x1f".encode()
    limit = int(share * 2**64)
    values = np.fromiter(
        (
            int.from_bytes(hashlib.blake2b(prefix + str(user).encode(), digest_size=8).digest(), "little")
            < limit
            for user in user_ids
        ),
        dtype=np.bool_,
        count=len(user_ids),
    )
    return values


def psi(expected: NDArray[np.float64], actual: NDArray[np.float64], bins: int = 10) -> float:
    """Population stability index of ``actual`` against ``expected``, over ``bins`` quantile bins
    of ``expected`` (empty bins are floored at 1e-4 so the index stays finite).

    Reading it (:func:`psi_level`): below :data:`PSI_MODERATE` (0.1) no real change, up to
    :data:`PSI_ALERT` (0.25) a moderate shift worth a look, above it a shift to act on.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> a = rng.normal(size=5000)
    >>> round(psi(a, rng.normal(size=5000)), 2) < 0.05, psi(a, a + 1.0) > 0.2
    (True, True)
    """
    if len(expected) == 0 or len(actual) == 0:
        return 0.0
    edges = np.unique(np.quantile(expected, np.linspace(0, 1, bins + 1)[1:-1]))
    e = np.bincount(np.searchsorted(edges, expected, side="right"), minlength=len(edges) + 1) / len(expected)
    a = np.bincount(np.searchsorted(edges, actual, side="right"), minlength=len(edges) + 1) / len(actual)
    e, a = np.maximum(e, 1e-4), np.maximum(a, 1e-4)
    return float(np.sum((a - e) * np.log(a / e)))


#: PSI below this: no real change between runs.
PSI_MODERATE: Final = 0.1
#: PSI above this: the score distribution shifted enough to act on (an alert).
PSI_ALERT: Final = 0.25


def psi_level(value: float) -> str:
    """``"stable"`` (PSI < 0.1), ``"moderate"`` (0.1-0.25) or ``"alert"`` (> 0.25).

    Examples
    --------
    >>> psi_level(0.003), psi_level(0.18), psi_level(0.4)
    ('stable', 'moderate', 'alert')
    """
    if value > PSI_ALERT:
        return "alert"
    return "moderate" if value >= PSI_MODERATE else "stable"


@dataclass(frozen=True)
class DriftReport:
    """How scores moved between two runs; ``alert`` is set when a configured limit is crossed.

    ``jumped`` (moved more than ``jump`` points) lists movers to look at: on a normal week about
    4-6 % of users move that far as their activity decays or resumes, so it alerts only when a
    limit is set for it. ``skipped`` (Low -> High or High -> Low in one step) is what a broken
    run looks like (mixed-up ids, a changed config): well under 1 % on a normal week.
    """

    psi: float
    transitions: NDArray[np.int64]  # 3 x 3, rows = tier before (low, medium, high), cols = after
    jumped: list[str]
    n_common: int
    alert: bool
    reasons: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    @property
    def level(self) -> str:
        """The PSI's reading: ``"stable"``, ``"moderate"`` or ``"alert"`` (:func:`psi_level`)."""
        return psi_level(self.psi)


def compare_runs(
    before: ScoreResult,
    after: ScoreResult,
    *,
    jump: float = 25.0,
    psi_limit: float = PSI_ALERT,
    skipped_share_limit: float = 0.05,
    jumped_share_limit: float | None = None,
) -> DriftReport:
    """Drift between two score runs: PSI of the 0-100 scores, the tier transition matrix over
    users present in both, users whose score moved by more than ``jump`` points, users who
    skipped a tier, and an alert when PSI exceeds ``psi_limit``, the share of tier skippers
    exceeds ``skipped_share_limit``, or (only when set) the share of jumpers exceeds
    ``jumped_share_limit``.

    Examples
    --------
    >>> import numpy as np
    >>> from affinity_sdk.score.results import ScoreResult
    >>> def run(scores, tiers):
    ...     return ScoreResult(user_ids=["a", "b", "c", "d"], raw_score=np.array(scores, float),
    ...         score=np.array(scores, float), tier_code=np.array(tiers, dtype=np.int8),
    ...         signal_names=(), decayed=np.zeros((4, 0)), now_ms=0, config_version="v1",
    ...         config_fingerprint="f" * 16)
    >>> d = compare_runs(run([90, 50, 10, 5], [2, 1, 0, 0]), run([92, 20, 12, 6], [2, 0, 0, 0]))
    >>> d.jumped, d.skipped, d.transitions.tolist()
    (['b'], [], [[2, 0, 0], [1, 0, 0], [0, 0, 1]])
    """
    index = {u: i for i, u in enumerate(before.user_ids)}
    rows_after = [j for j, u in enumerate(after.user_ids) if u in index]
    rows_before = [index[after.user_ids[j]] for j in rows_after]
    tier_before = before.tier_code[rows_before].astype(np.int64)
    tier_after = after.tier_code[rows_after].astype(np.int64)
    transitions = np.zeros((3, 3), dtype=np.int64)
    np.add.at(transitions, (tier_before, tier_after), 1)
    moved = np.abs(after.score[rows_after] - before.score[rows_before]) > jump
    jumped = [after.user_ids[j] for j, m in zip(rows_after, moved.tolist(), strict=True) if m]
    skips = np.abs(tier_after - tier_before) == 2
    skipped = [after.user_ids[j] for j, m in zip(rows_after, skips.tolist(), strict=True) if m]
    value = psi(before.score, after.score)
    reasons = []
    if value > psi_limit:
        reasons.append(f"PSI {value:.3f} > {psi_limit}")
    n_common = max(len(rows_after), 1)
    if len(skipped) / n_common > skipped_share_limit:
        reasons.append(
            f"{len(skipped) / n_common:.1%} of users skipped a tier (Low <-> High; "
            f"limit {skipped_share_limit:.0%})"
        )
    if jumped_share_limit is not None and len(jumped) / n_common > jumped_share_limit:
        reasons.append(
            f"{len(jumped) / n_common:.1%} of users moved more than {jump} points "
            f"(limit {jumped_share_limit:.0%})"
        )
    return DriftReport(value, transitions, jumped, len(rows_after), bool(reasons), reasons, skipped)


def export_segments(
    memberships: Mapping[str, Iterable[str]],
    path: str | Path,
    *,
    metadata: Mapping[str, str],
) -> Path:
    """Write ``segment, user_id`` rows as ``.csv``, ``.jsonl`` or ``.parquet``.

    ``metadata`` (config version, fingerprint, run time) goes into the Parquet file metadata, or
    a ``<file>.meta.json`` beside a CSV / JSON-lines file.
    """
    rows = [(name, user) for name, users in memberships.items() for user in users]
    columns = {"segment": [r[0] for r in rows], "user_id": [r[1] for r in rows]}
    return write_columns(columns, path, metadata=metadata)
