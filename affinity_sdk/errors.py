"""One exception hierarchy, so callers can catch :class:`AffinityError` and nothing else."""

from __future__ import annotations

__all__ = [
    "AffinityError",
    "BackendUnavailableError",
    "ConfigError",
    "SchemaError",
    "StateError",
]


class AffinityError(Exception):
    """Base class of every error the SDK raises on purpose."""


class SchemaError(AffinityError, ValueError):
    """An event (or batch of events) does not match the schema.

    ``position`` is the 0-based index of the event in its batch (for NDJSON: the line number
    minus one) when known; the message already names it and the offending field.
    """

    def __init__(self, message: str, position: int | None = None) -> None:
        super().__init__(message)
        self.position = position


class ConfigError(AffinityError, ValueError):
    """A scoring configuration is invalid; the message names the offending key."""


class StateError(AffinityError):
    """Saved state is corrupt, truncated, from a foreign format, or from another config."""


class BackendUnavailableError(AffinityError, RuntimeError):
    """A kernel backend was requested explicitly but cannot be used here."""
