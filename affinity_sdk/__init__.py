"""affinity_sdk: score e-commerce customers for affinity and propensity, in process, fast.

Typed events (:mod:`affinity_sdk.capture.events`) become columnar batches (:mod:`affinity_sdk.ingest.batch`),
which compiled kernels (:mod:`affinity_sdk.kernels`) fold into exact, mergeable time-decayed
state that is scored and bucketed into High / Medium / Low tiers.
"""

from __future__ import annotations

import logging

from affinity_sdk._backends import available_backends, resolve_backend
from affinity_sdk.config import ScoringConfig, default_config
from affinity_sdk.errors import AffinityError, BackendUnavailableError, ConfigError, SchemaError, StateError
from affinity_sdk.ingest.batch import EventBatch
from affinity_sdk.ingest.interner import Interner, Interners
from affinity_sdk.profile.decay import DecayState
from affinity_sdk.score.scorer import Scorer

__version__ = "0.1.0"

# The library logs through ``logging`` (loggers ``affinity_sdk.<module>``) and configures no
# handler: an application decides where records go. The NullHandler keeps Python's last-resort
# handler from printing the package's warnings when the application configured nothing.
logging.getLogger(__name__).addHandler(logging.NullHandler())

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
