"""Shadow configs: candidate scoring configs folded beside the live one, compared, promoted.

``Scorer(config, shadow=[candidate, ...])`` keeps every candidate current from the same single
ingest pass: each event is decoded, screened, deduplicated, stitched and consent-checked once,
then folds into every view of the one profile store, the candidates' included. Consent, forget,
replay dedupe, identity merges, save / load and shard merges therefore apply to a candidate
exactly as to the live config.

State
    A candidate with the live config's signals, half-lives and value fields (it differs only in
    weights, tiers or the score mapping) keeps no state: its raw score is the live decayed state
    under its own weights. Any other candidate gets a signals view of its own, one per distinct
    (signals, half-lives, values) set, registered in the store as ``shadow:<hash>``.

Tiers
    A candidate's tiers at ``now`` are those the first :meth:`~affinity_sdk.score.scorer.Scorer.score`
    after promoting it would assign: its own cut-offs over the visible users, with hysteresis
    against each user's last live tier (a user never tiered gets the plain cut-offs). Without
    hysteresis, or before the first ``score()``, they are the tiers of a separate
    ``Scorer(candidate)`` fed the same events.

Promotion
    :meth:`~affinity_sdk.score.scorer.Scorer.promote` makes a candidate the live config without
    re-ingesting: its state becomes the ``signals`` view, the store and scorer take its config
    (version and fingerprint follow, in results and saved files), the tier memory stays (the next
    ``score()`` fires ``on_tier_change`` for exactly the users the report said would move) and the
    cut-offs are recomputed on next use. The old live config is dropped (its state freed unless a
    candidate shares it) or, with ``demote_as``, kept as a shadow, so a promotion can be undone the
    same way.

Examples
--------
>>> import msgspec
>>> from affinity_sdk import Scorer
>>> from affinity_sdk.config import default_config
>>> live = default_config()
>>> app = msgspec.structs.replace(live.signals["app_opened"], weight=20.0)
>>> candidate = msgspec.structs.replace(
...     live, version="app-first", signals={**live.signals, "app_opened": app})
>>> scorer = Scorer(live, shadow=[candidate])
>>> for user, kind in [("ann", "checkout_started"), ("bob", "email_clicked"), ("cy", "app_opened")]:
...     _ = scorer.ingest(f'{{"type":"{kind}","user_id":"{user}","timestamp":0}}'.encode())
>>> report = scorer.shadow_report()
>>> report["app-first"].transitions.tolist()  # rows: live low / medium / high; columns: candidate
[[0, 0, 1], [1, 0, 0], [0, 1, 0]]
>>> [(m.user_id, m.live_tier, m.candidate_tier) for m in report["app-first"].moved]
[('cy', 'low', 'high'), ('ann', 'high', 'medium'), ('bob', 'medium', 'low')]
>>> _ = scorer.promote("app-first")
>>> scorer.config.version, scorer.tier_of("cy")
('app-first', 'high')
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeAlias

import msgspec
import numpy as np
from numpy.typing import NDArray

from affinity_sdk.config import ScoringConfig, load_scoring_config
from affinity_sdk.errors import ConfigError, StateError
from affinity_sdk.profile.signals import SignalView
from affinity_sdk.score.results import ScoreResult
from affinity_sdk.score.tiers import TierPlan

if TYPE_CHECKING:
    from affinity_sdk.profile.store import ProfileStore
    from affinity_sdk.score.scorer import Scorer

__all__ = ["ShadowComparison", "ShadowMove", "ShadowReport", "ShadowSpec", "Shadows"]

#: What ``Scorer(shadow=...)`` takes: configs (or TOML / JSON paths) named by their ``version``,
#: or a mapping of name to config.
ShadowSpec: TypeAlias = Sequence[ScoringConfig | str | Path] | Mapping[str, ScoringConfig | str | Path]
_Label = Literal["low", "medium", "high"]
_LABELS: tuple[_Label, _Label, _Label] = ("low", "medium", "high")
_PREFIX = "shadow:"


@dataclass(frozen=True, slots=True)
class ShadowMove:
    """A user whose tier the candidate changes: both tiers and both 0-100 scores."""

    user_id: str
    live_tier: _Label
    candidate_tier: _Label
    live_score: float
    candidate_score: float


@dataclass(frozen=True)
class ShadowComparison:
    """One candidate against the live config, over the visible users.

    ``transitions[i, j]`` counts users with live tier ``i`` and candidate tier ``j`` (0 low,
    1 medium, 2 high); it sums to ``n_users``. ``spearman`` is the rank correlation of the two
    raw scores (average ranks for ties; NaN with fewer than two users or a constant score).
    ``moved`` lists the ``n_moved`` users whose tier differs, largest score change first, cut
    to the report's ``top``. ``shares_state``: the candidate reads the live decayed state."""

    name: str
    config_version: str
    config_fingerprint: str
    shares_state: bool
    n_users: int
    transitions: NDArray[np.int64]
    spearman: float
    n_moved: int
    moved: list[ShadowMove]


@dataclass(frozen=True)
class ShadowReport:
    """Every candidate against the live config at ``now_ms``; index it by candidate name."""

    now_ms: int
    live_version: str
    live_fingerprint: str
    candidates: dict[str, ShadowComparison]

    def __getitem__(self, name: str) -> ShadowComparison:
        try:
            return self.candidates[name]
        except KeyError:
            raise KeyError(f"no shadow config {name!r} (there are {list(self.candidates)})") from None


def _state_key(config: ScoringConfig) -> str:
    """The store view name of a config's decayed state: equal for configs that fold alike."""
    folds = [config.signal_names, [repr(h) for h in config.half_lives_s], config.value_fields]
    return _PREFIX + hashlib.sha256(msgspec.json.encode(folds)).hexdigest()[:16]


def _named(spec: ShadowSpec) -> list[tuple[str, ScoringConfig]]:
    """``(name, config)`` pairs of a ``shadow=`` argument; ``ConfigError`` on a clash."""
    if isinstance(spec, Mapping):
        pairs = [(name, load_scoring_config(c)) for name, c in spec.items()]
    elif isinstance(spec, str | Path | ScoringConfig):
        raise ConfigError("shadow= takes a list of configs or a {name: config} mapping, not one config")
    else:
        pairs = [(cfg.version, cfg) for cfg in map(load_scoring_config, spec)]
    seen: set[str] = set()
    for name, _ in pairs:
        if not isinstance(name, str) or not name:
            raise ConfigError(f"shadow config names must be non-empty strings (got {name!r})")
        if name in seen:
            raise ConfigError(
                f"two shadow configs are named {name!r}: give them distinct versions or pass "
                "shadow={name: config, ...}"
            )
        seen.add(name)
    return pairs


class Shadows:
    """The candidate configs of one store, by name, and the views holding their state.

    Built by :class:`~affinity_sdk.score.scorer.Scorer`; callers hold the store's lock."""

    def __init__(self, store: ProfileStore) -> None:
        self.store = store
        self.configs: dict[str, ScoringConfig] = {}

    def __len__(self) -> int:
        return len(self.configs)

    # --- registration -----------------------------------------------------------------------
    def add(self, spec: ShadowSpec) -> None:
        """Register candidates on a store that has folded nothing yet (all or none)."""
        pairs = _named(spec)
        if self.store.events_ingested:
            raise ValueError("shadow configs are added before the first event (they could not see it)")
        live = self.store.config
        for name, cfg in pairs:
            if name in self.configs:
                raise ConfigError(f"a shadow config named {name!r} exists already")
            if cfg.affinity != live.affinity:
                raise ConfigError(
                    f"shadow config {name!r}: its [affinity] section differs from the live config's; "
                    "a candidate may change signals, tiers and score only"
                )
        self.configs.update(pairs)
        self._sync_views()

    def drop(self, name: str) -> None:
        """Stop shadowing ``name``, freeing its state unless another config shares it."""
        self._config(name)
        del self.configs[name]
        self._sync_views()

    def _config(self, name: str) -> ScoringConfig:
        try:
            return self.configs[name]
        except KeyError:
            raise KeyError(f"no shadow config {name!r} (there are {list(self.configs)})") from None

    def shares_state(self, name: str) -> bool:
        return _state_key(self._config(name)) == _state_key(self.store.config)

    def view_of(self, name: str) -> SignalView:
        """The signals view whose decayed state ``name`` scores."""
        cfg = self._config(name)
        key = "signals" if self.shares_state(name) else _state_key(cfg)
        view: SignalView = self.store.views[key]  # type: ignore[assignment]
        return view

    def _sync_views(self, spare: dict[str, SignalView] | None = None) -> None:
        """Give every candidate that needs one a view (in key order, so two stores with the same
        candidates keep the same view list and merge) and drop the views nobody needs."""
        store = self.store
        views = {k: v for k, v in store.views.items() if not k.startswith(_PREFIX)}
        old = {k: v for k, v in store.views.items() if k.startswith(_PREFIX)}
        old.update(spare or {})
        live_key = _state_key(store.config)
        wanted = {_state_key(c): c for c in reversed(self.configs.values())}
        signals: SignalView = views["signals"]  # type: ignore[assignment]
        for key in sorted(k for k in wanted if k != live_key):
            view = old.get(key)
            if view is None:
                view = SignalView(wanted[key], backend=signals.backend)
                view.grow(store.n_users)
            view.name = key  # the pipeline reports the scored count of the view named "signals"
            views[key] = view
        store.views = views

    # --- promotion --------------------------------------------------------------------------
    def promote(self, name: str, demote_as: str | None = None) -> None:
        """Make ``name`` the store's live config and signals view (no re-ingest)."""
        store = self.store
        cfg = self._config(name)
        if demote_as is not None and (not demote_as or (demote_as in self.configs and demote_as != name)):
            raise ConfigError(f"demote_as={demote_as!r} must be a new, non-empty shadow name")
        signals: SignalView = store.views["signals"]  # type: ignore[assignment]
        state = self.view_of(name).state
        live = SignalView(cfg, backend=signals.backend)
        live.state = state
        spare = {_state_key(store.config): signals} if state is not signals.state else {}
        old_live = store.config
        del self.configs[name]
        if demote_as is not None:
            self.configs[demote_as] = old_live
        store.views["signals"] = live
        store.config = cfg
        self._sync_views(spare)

    # --- merge, save and load ---------------------------------------------------------------
    def check_mergeable(self, other: Shadows) -> None:
        mine = {n: c.fingerprint for n, c in self.configs.items()}
        theirs = {n: c.fingerprint for n, c in other.configs.items()}
        if mine != theirs:
            raise ConfigError(f"cannot merge scorers with different shadow configs ({mine} vs {theirs})")

    def to_container(self, header: dict[str, Any]) -> None:
        """Move the shadow views' headers out of the store's (its loader knows only the standard
        views) into a ``shadows`` entry of ``header``; their arrays stay in the file under their
        ``shadow:<hash>.`` names. A state without shadows is written as before."""
        if not self.configs:
            return
        views = header["views"]
        header["shadows"] = {
            "configs": [[name, msgspec.to_builtins(cfg)] for name, cfg in self.configs.items()],
            "views": {k: views.pop(k) for k in list(views) if k.startswith(_PREFIX)},
        }

    def load(self, path: str | Path, header: dict[str, Any], arrays: dict[str, NDArray[Any]]) -> None:
        """Restore what :meth:`to_container` wrote; :class:`StateError` if it does not fit."""
        stored = header.get("shadows")
        if stored is None:
            return
        try:
            configs = {name: msgspec.convert(cfg, ScoringConfig) for name, cfg in stored["configs"]}
            view_headers: dict[str, dict[str, Any]] = dict(stored["views"])
        except (msgspec.ValidationError, ConfigError, KeyError, TypeError, ValueError) as exc:
            raise StateError(f"{path}: stored shadow configs are invalid: {exc}") from None
        if not all(isinstance(n, str) and n for n in configs) or not all(
            isinstance(h, dict) for h in view_headers.values()
        ):
            raise StateError(f"{path}: stored shadow configs are invalid: malformed names or view headers")
        self.configs = configs
        self._sync_views()
        needed = [k for k in self.store.views if k.startswith(_PREFIX)]
        if sorted(needed) != sorted(view_headers):
            raise StateError(f"{path}: stored shadow views do not match the stored shadow configs")
        n = self.store.n_users
        latest = self.store.latest_ms
        for key in needed:
            prefix = f"{key}."
            own = {k[len(prefix) :]: v for k, v in arrays.items() if k.startswith(prefix)}
            view: SignalView = self.store.views[key]  # type: ignore[assignment]
            try:
                view.load_arrays(view_headers[key], own, n)
            except StateError as exc:
                raise StateError(f"{path}: shadow view {key}: {exc}") from None
            landmark = view.state.landmark_ms
            if landmark is not None and (latest is None or landmark > latest):
                raise StateError(f"{path}: shadow decay landmark {landmark} lies after the newest event")


# --- scoring and the report -----------------------------------------------------------------
def _tiers(
    plan: TierPlan,
    raw: NDArray[np.float64],
    eligible: NDArray[np.bool_],
    previous: NDArray[np.int8],
    backend: str,
) -> NDArray[np.int8]:
    """The tiers ``score()`` would assign: cut-offs over the eligible users, hysteresis against
    ``previous``."""
    up, down = plan.cutoffs(raw[eligible], backend=backend)
    return plan.assign(raw, up, down, previous, backend=backend)


def _scored(
    scorer: Scorer, name: str, now_ms: int, eligible: NDArray[np.bool_]
) -> tuple[ScoringConfig, TierPlan, NDArray[np.float64], NDArray[np.int8]]:
    """Candidate ``name``'s config, tier plan, raw scores and tiers of every profile at ``now_ms``."""
    cfg = scorer._shadows._config(name)
    plan = TierPlan.from_config(cfg)
    state = scorer._shadows.view_of(name).state
    raw = state.raw_scores(np.asarray(cfg.weights, dtype=np.float64), now_ms)
    return cfg, plan, raw, _tiers(plan, raw, eligible, scorer._grown_tiers(), scorer.backend)


def shadow_result(scorer: Scorer, name: str, now_ms: int) -> ScoreResult:
    """Candidate ``name`` scored at ``now_ms`` as the first ``score()`` after promoting it would
    (caller holds the lock; see the module docstring for the tiers)."""
    store = scorer.store
    store.grow(store.n_users)
    eligible = store.visible()
    cfg, plan, raw, tiers = _scored(scorer, name, now_ms, eligible)
    rows = np.flatnonzero(eligible)
    names = store.interners.users.names
    return ScoreResult(
        user_ids=[names[u] for u in rows.tolist()],
        raw_score=raw[rows],
        score=plan.to_score(raw[rows]),
        tier_code=tiers[rows],
        signal_names=cfg.signal_names,
        decayed=scorer._shadows.view_of(name).state.decayed(now_ms)[rows],
        now_ms=now_ms,
        config_version=cfg.version,
        config_fingerprint=cfg.fingerprint,
        backend=scorer.backend,
    )


def _centred_ranks(x: NDArray[np.float64]) -> NDArray[np.float64]:
    from scipy.stats import rankdata

    ranks = np.asarray(rankdata(x), dtype=np.float64)
    centred: NDArray[np.float64] = ranks - ranks.mean()
    return centred


def _rank_correlation(ra: NDArray[np.float64], rb: NDArray[np.float64]) -> float:
    # Elementwise sums, not ``@``: a BLAS dot wakes its thread pool, slower here than the sums.
    denominator = math.sqrt(float(np.sum(ra * ra)) * float(np.sum(rb * rb)))
    return float(np.sum(ra * rb)) / denominator if ra.shape[0] >= 2 and denominator > 0 else math.nan


def spearman(a: NDArray[np.float64], b: NDArray[np.float64]) -> float:
    """Spearman's rank correlation (average ranks for ties); NaN for under two values or a
    constant side.

    Examples
    --------
    >>> spearman(np.array([1.0, 2.0, 3.0]), np.array([10.0, 30.0, 20.0]))
    0.5
    """
    return _rank_correlation(_centred_ranks(a), _centred_ranks(b))


def shadow_report(scorer: Scorer, now_ms: int, top: int | None) -> ShadowReport:
    """Every candidate against what ``scorer.score(now_ms)`` would give (caller holds the lock)."""
    if top is not None and (isinstance(top, bool) or not isinstance(top, int) or top < 0):
        raise ValueError(f"top must be None or a non-negative integer (got {top!r})")
    store = scorer.store
    store.grow(store.n_users)
    eligible = store.visible()
    rows = np.flatnonzero(eligible)
    live_raw = scorer.signals.raw_scores(now_ms)
    live_tiers = _tiers(scorer.plan, live_raw, eligible, scorer._grown_tiers(), scorer.backend)[rows]
    live_score = scorer.plan.to_score(live_raw[rows])
    live_ranks = _centred_ranks(live_raw[rows])
    names = store.interners.users.names
    comparisons: dict[str, ShadowComparison] = {}
    for name in scorer._shadows.configs:
        cfg, plan, raw, tiers = _scored(scorer, name, now_ms, eligible)
        cand_raw, cand_tiers = raw[rows], tiers[rows]
        cand_score = plan.to_score(cand_raw)
        transitions = np.bincount(
            3 * live_tiers.astype(np.int64) + cand_tiers.astype(np.int64), minlength=9
        ).reshape(3, 3)
        moved = np.flatnonzero(live_tiers != cand_tiers)
        change = np.abs(cand_score[moved] - live_score[moved])
        moved = moved[np.lexsort((moved, -change))][:top]
        comparisons[name] = ShadowComparison(
            name=name,
            config_version=cfg.version,
            config_fingerprint=cfg.fingerprint,
            shares_state=scorer._shadows.shares_state(name),
            n_users=int(rows.shape[0]),
            transitions=transitions,
            spearman=_rank_correlation(live_ranks, _centred_ranks(cand_raw)),
            n_moved=int(np.count_nonzero(live_tiers != cand_tiers)),
            moved=[
                ShadowMove(
                    user_id=names[rows[i]],
                    live_tier=_LABELS[live_tiers[i]],
                    candidate_tier=_LABELS[cand_tiers[i]],
                    live_score=float(live_score[i]),
                    candidate_score=float(cand_score[i]),
                )
                for i in moved.tolist()
            ],
        )
    return ShadowReport(
        now_ms=now_ms,
        live_version=scorer.config.version,
        live_fingerprint=scorer.config.fingerprint,
        candidates=comparisons,
    )
