"""The tier plan: how raw scores become High / Medium / Low, in one place.

A :class:`TierPlan` holds the ``[tiers]`` section of a config (``method`` quantile or absolute,
``high``, ``medium``, ``hysteresis``) and the ``[score]`` mapping (``half_point``), and gives:

* :attr:`TierPlan.quantile_fractions`: the population quantiles it needs (none for absolute);
* :meth:`TierPlan.cutoffs`: the raw-score cut-offs ``(up, down)`` of a population, in one process
  (quantiles by :func:`affinity_sdk.kernels.quantile_cutoffs`);
* :meth:`TierPlan.cutoffs_from_quantiles`: the same from quantiles computed elsewhere (the exact
  distributed ones of :mod:`affinity_sdk.scale.quantiles`);
* :meth:`TierPlan.assign` / :meth:`TierPlan.tier_of`: tier codes (0 low, 1 medium, 2 high, labels
  :data:`~affinity_sdk.score.results.TIER_LABELS`) with hysteresis against the previous tiers
  (a user's first assignment uses the plain cut-offs);
* :meth:`TierPlan.to_score` / :meth:`TierPlan.raw_threshold`: the 0-100 score mapping and its
  inverse.

Cut-offs are on the *raw* score: ``up[t]`` is the threshold to enter tier ``t + 1`` (Medium,
High) from below, ``down[t]`` the one to stay in it (or drop into it) from above; they are equal
without hysteresis. A value must also be ``> 0`` to leave Low.

First assignment
    A user with no tier yet (``previous`` :data:`NO_TIER`: every user on a first run, a new user
    later) is tiered at the *plain* cut-offs, those of ``high`` / ``medium`` themselves, so a first
    run gives exactly the configured fractions (``high = 0.9``: 10 % High, up to ties) whatever
    the band. The band only applies once a user has a tier: from Low or Medium they enter above
    ``q + b``, from Medium or High they stay above ``q - b``. A banded plan's ``up`` therefore
    has four entries: the entering cut-offs ``[medium, high]`` then the plain ones ``[medium,
    high]`` (:meth:`TierPlan.split_up`); without a band the plain cut-offs are the entering ones
    and ``up`` has two. :meth:`~TierPlan.assign` and :meth:`~TierPlan.tier_of` take either form
    (with a two-entry ``up`` a user with no tier enters at ``up``, as one coming from Low).

``quantile``: ``high`` / ``medium`` are population quantiles (0.9: top 10 % High); with a band
``b`` a user who has a tier enters Medium in the top ``1 - (medium + b)`` and stays while in the
top ``1 - (medium - b)`` (fractions clipped to [0, 1]). ``absolute``: ``high`` / ``medium`` are
thresholds on the 0-100 score (``b`` in score points), turned into raw scores by
:meth:`~TierPlan.raw_threshold`. With ``half_point=None`` the values are tiered as they are (e.g.
probabilities): absolute thresholds then apply to the values directly.

Rules at the edges, the kernels' own: an empty population gives ``+inf`` quantile cut-offs
(nobody above Low); NaN ranks above ``+inf`` in quantiles and is always Low; ``+inf`` scores 100.

Examples
--------
>>> import numpy as np
>>> from affinity_sdk.config import default_config
>>> plan = TierPlan.from_config(default_config())
>>> plan.method, plan.quantile_fractions.tolist()
('quantile', [0.6, 0.9])
>>> raw = np.arange(10.0)
>>> up, down = plan.cutoffs(raw, backend="reference")
>>> up.tolist(), down.tolist()
([6.0, 9.0], [6.0, 9.0])
>>> plan.labels(plan.assign(raw, up, down, backend="reference")).tolist()[5:]
['low', 'medium', 'medium', 'medium', 'high']
>>> banded = TierPlan(high=0.9, medium=0.6, hysteresis=0.1)
>>> up, down = banded.cutoffs(raw, backend="reference")
>>> up.tolist(), down.tolist()  # enter [medium, high], then the plain [medium, high]; stay
([7.0, inf, 6.0, 9.0], [5.0, 8.0])
>>> banded.assign(raw, up, down, backend="reference").tolist()  # a first run: plain cut-offs
[0, 0, 0, 0, 0, 0, 1, 1, 1, 2]
>>> previous = np.array([0, 0, 0, 0, 0, 1, 0, -1, 2, 1], dtype=np.int8)
>>> banded.assign(raw, up, down, previous, backend="reference").tolist()
[0, 0, 0, 0, 0, 1, 0, 1, 2, 1]
>>> absolute = TierPlan(method="absolute", high=75.0, medium=50.0, half_point=10.0)
>>> absolute.cutoffs(raw)[0].tolist(), absolute.to_score(np.array([10.0, np.inf])).tolist()
([10.0, 30.0], [50.0, 100.0])
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Literal, Protocol

import numpy as np
from numpy.typing import ArrayLike, NDArray

from affinity_sdk import kernels
from affinity_sdk.errors import ConfigError
from affinity_sdk.score.results import TIER_LABELS

if TYPE_CHECKING:
    from affinity_sdk.config import ScoringConfig

__all__ = ["NO_TIER", "Cutoffs", "ScalarCutoffs", "TierMethod", "TierPlan"]

TierMethod = Literal["quantile", "absolute"]
#: ``(up, down)``: raw-score thresholds to enter / stay in Medium and High. ``down`` has shape
#: ``(2,)``; ``up`` too, or ``(4,)`` for a banded plan: the entering cut-offs of a user who has a
#: tier, then the plain ones of a user's first assignment (see :meth:`TierPlan.split_up`).
Cutoffs = tuple[NDArray[np.float64], NDArray[np.float64]]
#: The ``previous`` tier code of a user with none yet (treated as coming from Low).
NO_TIER: Final = -1


class _TierSection(Protocol):
    """Anything shaped like :class:`~affinity_sdk.config.TierConfig` (or a propensity
    ``TierSpec``): ``method``, ``high``, ``medium`` and optionally ``hysteresis``."""

    @property
    def method(self) -> str: ...
    @property
    def high(self) -> float: ...
    @property
    def medium(self) -> float: ...


@dataclass(frozen=True, slots=True)
class ScalarCutoffs:
    """Cut-offs ``(up, down)`` as Python floats, for one-user lookups without numpy: ``enter``
    (a user who has a tier entering Medium / High), ``first`` (a first assignment) and ``down``
    (staying), each ``(medium, high)``. :meth:`tier` is :meth:`TierPlan.assign`'s rule.

    Examples
    --------
    >>> cuts = ScalarCutoffs.of(np.array([2.0, 5.0, 1.5, 4.5]), np.array([1.0, 4.0]))
    >>> cuts.tier(1.5, NO_TIER), cuts.tier(1.5, 0), cuts.tier(4.2, 2), cuts.tier(float("nan"), 2)
    (1, 0, 2, 0)
    """

    enter: tuple[float, float]
    first: tuple[float, float]
    down: tuple[float, float]

    @classmethod
    def of(cls, up: ArrayLike, down: ArrayLike | None = None) -> ScalarCutoffs:
        """From ``(up, down)`` as :meth:`TierPlan.cutoffs` gives them (``down`` ``None``: ``up``'s
        entering cut-offs)."""
        enter, first = TierPlan.split_up(up)
        stay = enter if down is None else np.asarray(down, dtype=np.float64)
        e1, e2 = enter.tolist()
        f1, f2 = first.tolist()
        d1, d2 = stay.tolist()
        return cls((e1, e2), (f1, f2), (d1, d2))

    def tier(self, raw: float, previous: int = NO_TIER) -> int:
        """The tier code of ``raw`` for a user whose last tier was ``previous``: tier ``t`` when
        ``raw > 0`` and ``raw`` reaches ``down[t-1]`` if ``previous >= t``, else the entering
        cut-off (the plain one for a user with no tier)."""
        if not raw > 0.0:
            return 0
        enter = self.first if previous == NO_TIER else self.enter
        if raw >= (self.down[1] if previous >= 2 else enter[1]):
            return 2
        return 1 if raw >= (self.down[0] if previous >= 1 else enter[0]) else 0


@dataclass(frozen=True, slots=True)
class TierPlan:
    """How values become tiers: ``method``, ``high``, ``medium``, ``hysteresis`` (as in
    :class:`~affinity_sdk.config.TierConfig`) and the score mapping's ``half_point`` (``None``:
    no mapping, absolute thresholds apply to the values themselves).

    Invalid settings raise :class:`~affinity_sdk.errors.ConfigError`.

    Examples
    --------
    >>> plan = TierPlan(method="absolute", high=80.0, medium=50.0, hysteresis=5.0, half_point=10.0)
    >>> up, down = plan.cutoffs(np.zeros(0))
    >>> up.tolist(), down.tolist()
    ([12.222222222222221, 56.666666666666664, 10.0, 40.0], [8.181818181818182, 30.0])
    >>> plan.tier_of(11.0, up, down), plan.tier_of(11.0, up, down, previous=0)
    (1, 0)
    >>> plan.tier_of(20.0, up, down), plan.tier_of(40.0, up, down, previous=2)
    (1, 2)
    """

    method: TierMethod = "quantile"
    high: float = 0.9
    medium: float = 0.6
    hysteresis: float = 0.0
    half_point: float | None = 10.0

    def __post_init__(self) -> None:
        if self.method not in ("quantile", "absolute"):
            raise ConfigError(f"unknown tier method {self.method!r}: use 'quantile' or 'absolute'")
        if not all(math.isfinite(x) for x in (self.high, self.medium, self.hysteresis)):
            raise ConfigError("tiers: high, medium and hysteresis must be finite")
        if self.hysteresis < 0.0:
            raise ConfigError(f"tiers: hysteresis must be >= 0 (got {self.hysteresis})")
        if self.half_point is not None and not (math.isfinite(self.half_point) and self.half_point > 0):
            raise ConfigError(f"half_point must be a positive number (got {self.half_point})")
        top = 1.0 if self.method == "quantile" else 100.0 if self.half_point is not None else math.inf
        if not 0.0 <= self.medium <= self.high <= top:
            raise ConfigError(
                f"tiers: {self.method} cut-offs need 0 <= medium <= high <= {top:g} "
                f"(got medium={self.medium}, high={self.high})"
            )

    # --- construction ----------------------------------------------------------------------
    @classmethod
    def from_config(cls, config: ScoringConfig) -> TierPlan:
        """The plan of a scoring config: its ``[tiers]`` section and ``[score] half_point``.

        Examples
        --------
        >>> from affinity_sdk.config import default_config
        >>> TierPlan.from_config(default_config())
        TierPlan(method='quantile', high=0.9, medium=0.6, hysteresis=0.0, half_point=10.0)
        """
        return cls.from_section(config.tiers, half_point=config.score.half_point)

    @classmethod
    def from_section(cls, tiers: _TierSection, *, half_point: float | None) -> TierPlan:
        """A plan from a :class:`~affinity_sdk.config.TierConfig`-shaped section (``threshold``
        is read as ``absolute``; a missing ``hysteresis`` is 0).

        Examples
        --------
        >>> from affinity_sdk.models.propensity import TierSpec
        >>> TierPlan.from_section(TierSpec(method="threshold", high=0.7, medium=0.3), half_point=None)
        TierPlan(method='absolute', high=0.7, medium=0.3, hysteresis=0.0, half_point=None)
        """
        method = "absolute" if tiers.method == "threshold" else tiers.method
        if method not in ("quantile", "absolute"):
            raise ConfigError(f"unknown tier method {tiers.method!r}")
        return cls(
            method="quantile" if method == "quantile" else "absolute",
            high=float(tiers.high),
            medium=float(tiers.medium),
            hysteresis=float(getattr(tiers, "hysteresis", 0.0)),
            half_point=None if half_point is None else float(half_point),
        )

    # --- the score mapping -----------------------------------------------------------------
    def to_score(self, raw: ArrayLike, backend: str | None = "auto") -> NDArray[np.float64]:
        """0-100 scores: ``100 · r / (r + half_point)``, ``r = max(raw, 0)``; ``+inf`` gives 100,
        NaN stays NaN (:func:`affinity_sdk.kernels.scores_100` on ``backend``: all give the same
        numbers). Without a ``half_point``, the values as float64.

        Examples
        --------
        >>> TierPlan(half_point=2.0).to_score([0.0, 2.0, 6.0, -1.0, np.inf, np.nan]).tolist()
        [0.0, 50.0, 75.0, 0.0, 100.0, nan]
        """
        values = np.asarray(raw, dtype=np.float64)
        if self.half_point is None:
            same: NDArray[np.float64] = values.copy()
            return same
        flat = np.ascontiguousarray(values.reshape(-1))
        score = kernels.scores_100(flat, self.half_point, backend=backend)
        # max(raw, 0) of -0.0 is +0.0 here, where the kernels keep -0.0 (adding +0.0 changes no other value)
        np.add(score, 0.0, out=score)
        return score.reshape(values.shape)

    def score_one(self, raw: float) -> float:
        """:meth:`to_score` of one value in plain Python (the same number, no array).

        Examples
        --------
        >>> plan = TierPlan(half_point=2.0)
        >>> values = [6.0, -1.0, float("inf")]
        >>> [plan.score_one(x) for x in values] == plan.to_score(values).tolist()
        True
        """
        if self.half_point is None:
            return float(raw)
        positive = raw if raw > 0.0 or raw != raw else 0.0
        return 100.0 if positive == math.inf else 100.0 * positive / (positive + self.half_point)

    def raw_threshold(self, score: float) -> float:
        """The raw value whose score is ``score`` (the mapping's inverse; ``+inf`` from 100 on).

        Examples
        --------
        >>> plan = TierPlan(half_point=10.0)
        >>> plan.raw_threshold(50.0), plan.raw_threshold(100.0), plan.raw_threshold(0.0)
        (10.0, inf, 0.0)
        """
        if self.half_point is None:
            return float(score)
        if score >= 100.0:
            return float("inf")
        return self.half_point * score / (100.0 - score)

    # --- cut-offs --------------------------------------------------------------------------
    @property
    def banded(self) -> bool:
        """Whether entering and staying use different cut-offs (``hysteresis > 0``)."""
        return self.hysteresis > 0.0

    @property
    def quantile_fractions(self) -> NDArray[np.float64]:
        """The quantiles to compute: ``[medium, high]``, or with a band ``[medium + b, high + b,
        medium - b, high - b, medium, high]`` (clipped to [0, 1]; the last two are the plain
        cut-offs of a first assignment); empty for ``absolute``.

        Examples
        --------
        >>> TierPlan(hysteresis=0.25).quantile_fractions.tolist()
        [0.85, 1.0, 0.35, 0.65, 0.6, 0.9]
        """
        if self.method == "absolute":
            return np.zeros(0, dtype=np.float64)
        m, h, b = self.medium, self.high, self.hysteresis
        if not self.banded:
            return np.array([m, h], dtype=np.float64)
        return np.array([min(m + b, 1.0), min(h + b, 1.0), max(m - b, 0.0), max(h - b, 0.0), m, h])

    def absolute_cutoffs(self) -> Cutoffs:
        """``(up, down)`` of an ``absolute`` plan: :meth:`raw_threshold` of ``medium ± b`` and
        ``high ± b`` (the lower ones clipped at 0); with a band ``up`` ends with the plain
        thresholds of ``medium`` and ``high`` (a first assignment's).

        Examples
        --------
        >>> up, down = TierPlan(method="absolute", high=50.0, medium=20.0, half_point=4.0).absolute_cutoffs()
        >>> up.tolist(), down.tolist()
        ([1.0, 4.0], [1.0, 4.0])
        """
        if self.method != "absolute":
            raise ValueError("absolute_cutoffs() needs method='absolute'; quantile plans use cutoffs()")
        m, h, b = self.medium, self.high, self.hysteresis
        enter = [self.raw_threshold(m + b), self.raw_threshold(h + b)]
        plain = [self.raw_threshold(m), self.raw_threshold(h)] if self.banded else []
        up = np.array(enter + plain, dtype=np.float64)
        down = np.array(
            [self.raw_threshold(max(m - b, 0.0)), self.raw_threshold(max(h - b, 0.0))], dtype=np.float64
        )
        return up, down

    def cutoffs_from_quantiles(self, quantiles: ArrayLike) -> Cutoffs:
        """``(up, down)`` from the population's quantiles at :attr:`quantile_fractions`, however
        they were computed (an absolute plan takes an empty array and ignores it).

        Examples
        --------
        >>> TierPlan(hysteresis=0.1).cutoffs_from_quantiles([7.0, 10.0, 5.0, 8.0, 6.0, 9.0])
        (array([ 7., 10.,  6.,  9.]), array([5., 8.]))
        """
        values = np.asarray(quantiles, dtype=np.float64)
        expected = self.quantile_fractions.shape[0]
        if values.shape != (expected,):
            raise ValueError(f"expected {expected} quantiles for this plan, got shape {values.shape}")
        if self.method == "absolute":
            return self.absolute_cutoffs()
        if not self.banded:
            return values[:2].copy(), values[:2].copy()
        return np.concatenate([values[:2], values[4:6]]), values[2:4].copy()

    def cutoffs(self, raw: ArrayLike, backend: str | None = "auto") -> Cutoffs:
        """``(up, down)`` raw-score cut-offs of the population ``raw`` (ignored by ``absolute``).

        Pass only the users who take part (e.g. the consenting ones); ``backend`` picks the
        :func:`~affinity_sdk.kernels.quantile_cutoffs` engine (all give the same numbers).

        Examples
        --------
        >>> TierPlan(high=0.8, medium=0.5).cutoffs(np.arange(1.0, 11.0), backend="reference")
        (array([6., 9.]), array([6., 9.]))
        """
        if self.method == "absolute":
            return self.absolute_cutoffs()
        values = np.ascontiguousarray(raw, dtype=np.float64)
        quantiles = kernels.quantile_cutoffs(values, self.quantile_fractions, backend=backend)
        return self.cutoffs_from_quantiles(quantiles)

    # --- tiers -----------------------------------------------------------------------------
    @staticmethod
    def split_up(up: ArrayLike) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """``(enter, first)``: the entering cut-offs of a user who has a tier and the plain ones
        of a user's first assignment, each of shape ``(2,)``, from an ``up`` of two entries (both
        the same) or four (a banded plan's: ``enter`` then ``first``).

        Examples
        --------
        >>> enter, first = TierPlan.split_up([7.0, 10.0, 6.0, 9.0])
        >>> enter.tolist(), first.tolist()
        ([7.0, 10.0], [6.0, 9.0])
        >>> TierPlan.split_up([7.0, 10.0])[1].tolist()
        [7.0, 10.0]
        """
        cut_up = np.ascontiguousarray(up, dtype=np.float64)
        if cut_up.shape == (2,):
            return cut_up, cut_up
        if cut_up.shape != (4,):
            raise ValueError(f"up cut-offs must have shape (2,) or (4,), got {cut_up.shape}")
        return cut_up[:2], cut_up[2:]

    @staticmethod
    def assign(
        raw: ArrayLike,
        up: NDArray[np.float64],
        down: NDArray[np.float64] | None = None,
        previous: NDArray[np.int8] | None = None,
        backend: str | None = "auto",
    ) -> NDArray[np.int8]:
        """Tier codes (0 low, 1 medium, 2 high) by :func:`affinity_sdk.kernels.assign_tiers`:
        tier ``t`` when ``raw > 0`` and ``raw >= down[t-1]`` if ``previous >= t``, else
        ``raw >= up[t-1]``. ``previous`` -1 (:data:`NO_TIER`; ``None``: everyone) is a user with
        none, tiered at the plain cut-offs (``up[2:4]`` of a four-entry ``up``, see
        :meth:`split_up`; ``up`` itself otherwise).

        Examples
        --------
        >>> up, down = np.array([2.0, 5.0]), np.array([1.0, 4.0])
        >>> TierPlan.assign(np.array([1.5, 1.5, 4.5, 4.5, 0.0]), up, down,
        ...                 np.array([-1, 1, 1, 2, 2], dtype=np.int8), backend="reference").tolist()
        [0, 1, 1, 2, 0]
        >>> up = np.array([2.0, 5.0, 1.5, 4.5])  # a banded plan's: enter, then plain
        >>> TierPlan.assign(np.array([1.5, 1.5, 4.5, 4.5]), up, down,
        ...                 np.array([-1, 0, -1, 1], dtype=np.int8), backend="reference").tolist()
        [1, 0, 2, 1]
        """
        values = np.ascontiguousarray(raw, dtype=np.float64)
        enter, first = TierPlan.split_up(up)
        cut_down = enter if down is None else np.ascontiguousarray(down, dtype=np.float64)
        if previous is None:  # nobody has a tier: the plain cut-offs for all
            return kernels.assign_tiers(values, first, first, None, backend=backend)
        previous = np.ascontiguousarray(previous, dtype=np.int8)
        tiers = kernels.assign_tiers(values, enter, cut_down, previous, backend=backend)
        if first is not enter:
            new = previous == NO_TIER
            if new.any():
                tiers[new] = kernels.assign_tiers(
                    np.ascontiguousarray(values[new]), first, first, None, backend=backend
                )
        return tiers

    @staticmethod
    def tier_of(
        raw: float, up: NDArray[np.float64], down: NDArray[np.float64] | None = None, previous: int = NO_TIER
    ) -> int:
        """One value's tier code, the rule of :meth:`assign` in plain Python (no array, no kernel
        call: what a single-user lookup wants).

        Examples
        --------
        >>> up, down = np.array([2.0, 5.0]), np.array([1.0, 4.0])
        >>> [TierPlan.tier_of(x, up, down, p) for x, p in [(1.5, -1), (1.5, 1), (4.5, 2), (np.nan, 2)]]
        [0, 1, 2, 0]
        >>> TierPlan.tier_of(1.5, np.array([2.0, 5.0, 1.5, 4.5]), down)  # no tier yet: plain cut-offs
        1
        """
        return ScalarCutoffs.of(up, down).tier(float(raw), previous)

    @staticmethod
    def labels(codes: NDArray[np.integer[Any]]) -> NDArray[np.str_]:
        """Tier labels (``"low"``, ``"medium"``, ``"high"``) of tier codes.

        Examples
        --------
        >>> TierPlan.labels(np.array([2, 0, 1], dtype=np.int8)).tolist()
        ['high', 'low', 'medium']
        """
        labels: NDArray[np.str_] = TIER_LABELS[codes]
        return labels
