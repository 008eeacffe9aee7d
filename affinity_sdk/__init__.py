"""affinity_sdk: score e-commerce customers for affinity and propensity, in process, fast.

Typed events (:mod:`affinity_sdk.capture.events`) become columnar batches (:mod:`affinity_sdk.ingest.batch`),
which compiled kernels (:mod:`affinity_sdk.kernels`) fold into exact, mergeable time-decayed
state that is scored and bucketed into High / Medium / Low tiers.

The names below are imported on first use (PEP 562), so ``import affinity_sdk`` costs a few
milliseconds and a program that needs one submodule (the ``affinity`` command starting to read a
file, an app decoding events) does not wait for numpy and every model to load.

Examples
--------
>>> import affinity_sdk
>>> affinity_sdk.Scorer.__name__
'Scorer'
"""

from __future__ import annotations

import importlib
import logging
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from affinity_sdk._backends import available_backends, resolve_backend
    from affinity_sdk.config import ScoringConfig, default_config
    from affinity_sdk.errors import (
        AffinityError,
        BackendUnavailableError,
        ConfigError,
        SchemaError,
        StateError,
    )
    from affinity_sdk.ingest.batch import EventBatch
    from affinity_sdk.ingest.interner import Interner, Interners
    from affinity_sdk.profile.decay import DecayState
    from affinity_sdk.score.scorer import Scorer

__version__ = "0.1.0"

# The library logs through ``logging`` (loggers ``affinity_sdk.<module>``) and configures no
# handler: an application decides where records go. The NullHandler keeps Python's last-resort
# handler from printing the package's warnings when the application configured nothing.
logging.getLogger(__name__).addHandler(logging.NullHandler())

#: Where each public name lives (the module under ``affinity_sdk`` that defines it).
_HOMES: Final[dict[str, str]] = {
    "AffinityError": "errors",
    "BackendUnavailableError": "errors",
    "ConfigError": "errors",
    "DecayState": "profile.decay",
    "EventBatch": "ingest.batch",
    "Interner": "ingest.interner",
    "Interners": "ingest.interner",
    "SchemaError": "errors",
    "Scorer": "score.scorer",
    "ScoringConfig": "config",
    "StateError": "errors",
    "available_backends": "_backends",
    "default_config": "config",
    "resolve_backend": "_backends",
}

__all__ = [
    "AffinityError",
    "BackendUnavailableError",
    "ConfigError",
    "DecayState",
    "EventBatch",
    "Interner",
    "Interners",
    "SchemaError",
    "Scorer",
    "ScoringConfig",
    "StateError",
    "__version__",
    "available_backends",
    "default_config",
    "resolve_backend",
]


def __getattr__(name: str) -> Any:
    """Import a public name's module on first use (PEP 562) and keep the name here."""
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'affinity_sdk' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"affinity_sdk.{home}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_HOMES})
