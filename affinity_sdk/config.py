"""``ScoringConfig``: which events score, how much, how fast they fade, and how tiers are cut.

Loaded from TOML or JSON and validated at the boundary with messages that name the key::

    version = "spring-2027"          # free text, recorded with every result

    [signals.product_viewed]          # key = an event type
    weight = 1.0                      # finite, |weight| <= 1e12
    half_life = "3d"                  # > 0: ms / s / m / h / d / w units, or "inf" (no decay)
    # value = "revenue"               # decay a numeric field instead of counting events

    [tiers]
    method = "quantile"               # or "absolute" (then high / medium are 0-100 score thresholds)
    high = 0.9                        # quantile: top 10% are High
    medium = 0.6                      # next 30% are Medium, the rest Low
    # hysteresis = 0.02               # band so users do not flap between tiers

    [score]
    half_point = 10.0                 # the raw score that maps to 50 on the 0-100 scale

Event types absent from ``[signals]`` are accepted and not scored. The fingerprint is a hash of
the canonical form (signals in event-type order, half-lives in seconds; ``version`` excluded, as
it is a label), stored with every state and result built from the config.

Examples
--------
>>> cfg = ScoringConfig.from_toml('''
... version = "v1"
... [signals.order_completed]
... weight = 10.0
... half_life = "30d"
... ''')
>>> cfg.signal_names, cfg.half_lives_s, len(cfg.fingerprint)
(('order_completed',), (2592000.0,), 16)
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from importlib import resources
from os import PathLike
from pathlib import Path
from typing import Any, Final, Literal, TypeVar

import msgspec
from msgspec import Struct

from affinity_sdk._units import parse_duration
from affinity_sdk.capture.events import EVENT_TYPE_CODES
from affinity_sdk.errors import ConfigError

__all__ = [
    "PRODUCT_EVENT_TYPES",
    "AffinityConfig",
    "AffinitySignal",
    "ScoreMapping",
    "ScoringConfig",
    "SignalConfig",
    "TierConfig",
    "default_config",
    "load_affinity_config",
    "load_scoring_config",
]

ValueField = Literal["count", "revenue"]
_T = TypeVar("_T")

#: The largest ``|weight|`` a signal may have: weight × decayed value must stay far from float64
#: overflow (1e308), or scores become inf / NaN.
MAX_WEIGHT: Final = 1e12


class SignalConfig(Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One scored event type: its weight, half-life and what is decayed (a count or revenue)."""

    weight: float
    half_life: str | float
    value: ValueField = "count"

    @property
    def half_life_s(self) -> float:
        return parse_duration(self.half_life)


class TierConfig(Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """How scores become High / Medium / Low.

    ``quantile``: ``high`` / ``medium`` are population quantiles (0.9 = top 10 % High) and
    ``hysteresis`` is in quantile units. ``absolute``: they are thresholds on the 0-100 score
    and ``hysteresis`` is in score points. A user enters a higher tier only past the cut-off plus
    the band and leaves it only below the cut-off minus the band; a user without a tier yet (a
    first run, a new user) is placed at the plain cut-offs, so a first run has the configured
    fractions.
    """

    method: Literal["quantile", "absolute"] = "quantile"
    high: float = 0.9
    medium: float = 0.6
    hysteresis: float = 0.0


class ScoreMapping(Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``score = 100 · r / (r + half_point)`` with ``r = max(raw_score, 0)``: monotone, 50 at
    ``raw_score == half_point``, approaching 100 for very active users, 0 for none."""

    half_point: float = 10.0


def _read_config(path: str | Path) -> tuple[bytes, Literal["toml", "json"], str]:
    """A config file's bytes, its format (by extension: ``.json``, else TOML) and its name."""
    p = Path(path)
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read config {p}: {exc.strerror or exc}") from None
    return raw, "json" if p.suffix.lower() == ".json" else "toml", str(p)


def _decode(text: str | bytes, type: type[_T], fmt: Literal["toml", "json"], source: str) -> _T:
    """Decode and validate TOML / JSON text as ``type``; every failure is a :class:`ConfigError`."""
    decode = msgspec.toml.decode if fmt == "toml" else msgspec.json.decode
    try:
        return decode(text, type=type)
    except msgspec.ValidationError as exc:
        raise ConfigError(f"{source}: {exc}") from None
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:  # msgspec decodes bytes itself
        raise ConfigError(f"{source}: invalid {fmt.upper()}: {exc}") from None
    except RecursionError:  # arrays / tables nested about a thousand deep
        raise ConfigError(f"{source}: invalid {fmt.upper()}: nesting too deep") from None


def _convert(data: Any, type: type[_T], source: str) -> _T:
    """Validate a plain mapping as ``type``; every failure is a :class:`ConfigError`."""
    try:
        return msgspec.convert(data, type)
    except msgspec.ValidationError as exc:
        raise ConfigError(f"{source}: {exc}") from None
    except RecursionError:
        raise ConfigError(f"{source}: nesting too deep") from None


#: Event types that carry product lines and may feed affinity (none of the types after
#: ``consent_changed`` does by default: see docs/segment.md).
PRODUCT_EVENT_TYPES: Final[frozenset[str]] = frozenset(
    {
        "product_viewed",
        "product_list_viewed",
        "product_added",
        "product_removed",
        "product_added_to_wishlist",
        "cart_viewed",
        "checkout_started",
        "order_completed",
        "product_clicked",
        "product_list_filtered",
        "order_updated",
        "order_cancelled",
        "product_removed_from_wishlist",
        "wishlist_product_added_to_cart",
        "product_shared",
        "cart_shared",
        "product_reviewed",
    }
)


# --- the [affinity] section ------------------------------------------------------------------------------
class AffinitySignal(Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One product-level event type feeding affinity: its weight and half-life ("14d" or seconds)."""

    weight: float
    half_life: str | float

    @property
    def half_life_s(self) -> float:
        return parse_duration(self.half_life)


def _default_signals() -> dict[str, AffinitySignal]:
    return {
        "product_viewed": AffinitySignal(weight=1.0, half_life="14d"),
        "product_added_to_wishlist": AffinitySignal(weight=3.0, half_life="30d"),
        "product_added": AffinitySignal(weight=3.0, half_life="30d"),
        "order_completed": AffinitySignal(weight=5.0, half_life="90d"),
    }


class AffinityConfig(Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The ``[affinity]`` section of a config file; every key has a built-in default.

    Examples
    --------
    >>> cfg = AffinityConfig.from_toml('''
    ... [signals.order_completed]
    ... weight = 5.0
    ... half_life = "90d"
    ... [affinity]
    ... shrinkage = 8.0
    ... [affinity.signals.product_viewed]
    ... weight = 1.0
    ... half_life = "7d"
    ... ''')
    >>> cfg.shrinkage, sorted(cfg.signals), cfg.signals["product_viewed"].half_life_s
    (8.0, ['product_viewed'], 604800.0)
    """

    signals: dict[str, AffinitySignal] = msgspec.field(default_factory=_default_signals)
    #: Pseudo-events κ (a view weighs 1) padding observed and expected engagement: pulls thin
    #: profiles' affinity toward 1.
    shrinkage: float = 5.0
    #: Catalogue price quantiles that cut each category into low / mid / premium.
    price_quantiles: tuple[float, float] = (1.0 / 3.0, 2.0 / 3.0)
    #: Half-life of the order counts behind discount sensitivity.
    discount_half_life: str | float = "90d"
    #: Pseudo-orders at the population discount rate (shrinkage of discount sensitivity).
    discount_shrinkage: float = 4.0
    #: Sensitivity (odds ratio against the population) at or above which a profile is High,
    #: resp. Medium.
    discount_high: float = 1.4
    discount_medium: float = 1.0

    def __post_init__(self) -> None:
        _validate_affinity(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, source: str = "affinity config") -> AffinityConfig:
        """Validate the ``[affinity]`` table as a plain mapping."""
        return _convert(data, cls, source)

    @classmethod
    def from_toml(cls, text: str | bytes, *, source: str = "config") -> AffinityConfig:
        """The ``[affinity]`` table of a TOML config file (the default when it has none)."""
        return _decode(text, _ConfigFile, "toml", source).affinity

    @classmethod
    def load(cls, path: str | Path) -> AffinityConfig:
        """The ``[affinity]`` section of a ``.toml`` (or ``.json``) config file."""
        raw, fmt, source = _read_config(path)
        return _decode(raw, _ConfigFile, fmt, source).affinity

    @property
    def signal_names(self) -> tuple[str, ...]:
        """Configured event types in event-type code order."""
        return tuple(sorted(self.signals, key=EVENT_TYPE_CODES.__getitem__))

    @property
    def half_life_groups_s(self) -> tuple[float, ...]:
        """The distinct half-lives (seconds, ascending): one accumulator column each."""
        return tuple(sorted({s.half_life_s for s in self.signals.values()}))


class _ConfigFile(Struct, frozen=True, kw_only=True):
    affinity: AffinityConfig = msgspec.field(default_factory=AffinityConfig)


def _validate_affinity(cfg: AffinityConfig) -> None:
    if not cfg.signals:
        raise ConfigError("`affinity.signals` is empty: configure at least one product event type")
    for name, signal in cfg.signals.items():
        where = f"`affinity.signals.{name}`"
        if name not in PRODUCT_EVENT_TYPES:
            kind = "unknown event type" if name not in EVENT_TYPE_CODES else "event type without products"
            raise ConfigError(f"{where}: {kind} {name!r}")
        if not (math.isfinite(signal.weight) and 0 <= signal.weight <= MAX_WEIGHT):
            raise ConfigError(
                f"{where}.weight must be a finite number >= 0 and <= {MAX_WEIGHT:g} (got {signal.weight})"
            )
        try:
            h = signal.half_life_s
        except ValueError as exc:
            raise ConfigError(f"{where}.half_life: {exc}") from None
        if h <= 0:
            raise ConfigError(f"{where}.half_life must be > 0 (got {signal.half_life!r})")
    try:
        if parse_duration(cfg.discount_half_life) <= 0:
            raise ValueError("must be > 0")
    except ValueError as exc:
        raise ConfigError(f"`affinity.discount_half_life`: {exc}") from None
    for key in ("shrinkage", "discount_shrinkage", "discount_high", "discount_medium"):
        value = getattr(cfg, key)
        if not (math.isfinite(value) and value >= 0):
            raise ConfigError(f"`affinity.{key}` must be a finite number >= 0 (got {value})")
    lo, hi = cfg.price_quantiles
    if not 0.0 < lo <= hi < 1.0:
        raise ConfigError(
            f"`affinity.price_quantiles` needs 0 < low <= high < 1 (got {list(cfg.price_quantiles)})"
        )
    if cfg.discount_medium > cfg.discount_high:
        raise ConfigError("`affinity.discount_medium` must be <= `affinity.discount_high`")


class ScoringConfig(Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A validated scoring configuration (see the module docstring for the TOML shape)."""

    signals: dict[str, SignalConfig]
    version: str = "unversioned"
    tiers: TierConfig = TierConfig()
    score: ScoreMapping = ScoreMapping()
    affinity: AffinityConfig = msgspec.field(default_factory=AffinityConfig)

    def __post_init__(self) -> None:
        _validate(self)

    # --- loading ---------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, data: dict[str, Any], *, source: str = "config") -> ScoringConfig:
        """Validate a plain mapping (as parsed from TOML / JSON)."""
        return _convert(data, cls, source)

    @classmethod
    def from_toml(cls, text: str | bytes, *, source: str = "config") -> ScoringConfig:
        """Parse and validate TOML text."""
        return _decode(text, cls, "toml", source)

    @classmethod
    def from_json(cls, text: str | bytes, *, source: str = "config") -> ScoringConfig:
        """Parse and validate JSON text."""
        return _decode(text, cls, "json", source)

    @classmethod
    def load(cls, path: str | Path) -> ScoringConfig:
        """Load a ``.toml`` or ``.json`` file; any problem is a one-line :class:`ConfigError`."""
        raw, fmt, source = _read_config(path)
        return _decode(raw, cls, fmt, source)

    # --- derived views ---------------------------------------------------------------------
    @property
    def signal_names(self) -> tuple[str, ...]:
        """Scored event types in canonical (event-type code) order: the state's signal axis."""
        return tuple(sorted(self.signals, key=EVENT_TYPE_CODES.__getitem__))

    @property
    def weights(self) -> tuple[float, ...]:
        return tuple(self.signals[name].weight for name in self.signal_names)

    @property
    def half_lives_s(self) -> tuple[float, ...]:
        return tuple(self.signals[name].half_life_s for name in self.signal_names)

    @property
    def value_fields(self) -> tuple[ValueField, ...]:
        return tuple(self.signals[name].value for name in self.signal_names)

    def canonical(self) -> dict[str, Any]:
        """The normalised form the fingerprint hashes (no ``version``, half-lives in seconds)."""
        return {
            "signals": [
                [
                    name,
                    self.signals[name].weight,
                    _json_float(self.signals[name].half_life_s),
                    self.signals[name].value,
                ]
                for name in self.signal_names
            ],
            "tiers": msgspec.to_builtins(self.tiers),
            "score": msgspec.to_builtins(self.score),
        }

    @property
    def fingerprint(self) -> str:
        """16 hex digits of SHA-256 over :meth:`canonical`, stable across processes and machines."""
        blob = json.dumps(self.canonical(), sort_keys=True, separators=(",", ":")).encode()
        return hashlib.sha256(blob).hexdigest()[:16]

    def to_json(self) -> bytes:
        """Serialise as JSON (round-trips through :meth:`from_json`)."""
        return msgspec.json.encode(self)


def _json_float(value: float) -> float | str:
    return value if math.isfinite(value) else "inf"


def _validate(cfg: ScoringConfig) -> None:
    if not cfg.signals:
        raise ConfigError("`signals` is empty: configure at least one event type to score")
    for name, signal in cfg.signals.items():
        where = f"`signals.{name}`"
        if name not in EVENT_TYPE_CODES:
            raise ConfigError(f"{where}: unknown event type {name!r}")
        if not (math.isfinite(signal.weight) and abs(signal.weight) <= MAX_WEIGHT):
            raise ConfigError(
                f"{where}.weight must be a finite number with |weight| <= {MAX_WEIGHT:g} "
                f"(got {signal.weight})"
            )
        try:
            h = signal.half_life_s
        except ValueError as exc:
            raise ConfigError(f"{where}.half_life: {exc}") from None
        if not h > 0:  # 0 would erase every event at once; "inf" (no decay) is allowed
            raise ConfigError(f"{where}.half_life must be > 0 (got {signal.half_life!r})")
    t = cfg.tiers
    if not all(math.isfinite(x) for x in (t.high, t.medium, t.hysteresis)) or t.hysteresis < 0:
        raise ConfigError("`tiers`: high, medium and hysteresis must be finite, hysteresis >= 0")
    if t.method == "quantile" and not 0.0 <= t.medium <= t.high <= 1.0:
        raise ConfigError(
            f"`tiers`: quantiles need 0 <= medium <= high <= 1 (got medium={t.medium}, high={t.high})"
        )
    if t.method == "absolute" and not 0.0 <= t.medium <= t.high <= 100.0:
        raise ConfigError(
            "`tiers`: absolute thresholds need 0 <= medium <= high <= 100 "
            f"(got medium={t.medium}, high={t.high})"
        )
    if not (math.isfinite(cfg.score.half_point) and cfg.score.half_point > 0):
        raise ConfigError(f"`score.half_point` must be a positive number (got {cfg.score.half_point})")


def default_config() -> ScoringConfig:
    """The configuration shipped with the package (``affinity_sdk/data/default_config.toml``).

    Examples
    --------
    >>> "order_completed" in default_config().signals
    True
    """
    text = resources.files("affinity_sdk").joinpath("data/default_config.toml").read_text()
    return ScoringConfig.from_toml(text, source="default_config.toml")


def load_scoring_config(config: ScoringConfig | str | PathLike[str] | None) -> ScoringConfig:
    """The one way every API takes a config: a :class:`ScoringConfig` as is, a path to a TOML /
    JSON file, or ``None`` for :func:`default_config`.

    Examples
    --------
    >>> load_scoring_config(None) == default_config()
    True
    """
    if config is None:
        return default_config()
    if isinstance(config, ScoringConfig):
        return config
    return ScoringConfig.load(Path(config))


def load_affinity_config(
    config: AffinityConfig | ScoringConfig | str | PathLike[str] | None,
) -> AffinityConfig:
    """The ``[affinity]`` section the way every API takes it: an :class:`AffinityConfig` as is,
    a :class:`ScoringConfig`'s section, a config file's section, or ``None`` for the defaults.

    Examples
    --------
    >>> load_affinity_config(None) == AffinityConfig() == load_affinity_config(default_config())
    True
    """
    if config is None:
        return AffinityConfig()
    if isinstance(config, AffinityConfig):
        return config
    if isinstance(config, ScoringConfig):
        return config.affinity
    return AffinityConfig.load(Path(config))
