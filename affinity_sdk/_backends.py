"""The one place that probes which kernel backends can run here.

``reference`` (plain numpy) always works; ``numba`` needs numba; ``cpp`` needs the compiled
``affinity_sdk._native`` extension. ``auto`` picks the fastest available and never hides a
downgrade: the chosen name is returned so callers can record it (and show it in ``repr``).
"""

from __future__ import annotations

import functools
import importlib
import warnings
from types import ModuleType
from typing import Literal

from affinity_sdk.errors import BackendUnavailableError

BackendName = Literal["cpp", "numba", "reference"]
BACKEND_PREFERENCE: tuple[BackendName, ...] = ("cpp", "numba", "reference")

__all__ = ["BACKEND_PREFERENCE", "BackendName", "available_backends", "native", "resolve_backend"]


@functools.cache
def native() -> ModuleType | None:
    """The compiled extension, or ``None`` (with one warning) when it is missing or broken."""
    try:
        return importlib.import_module("affinity_sdk._native")
    except ImportError as exc:
        warnings.warn(
            f"affinity_sdk._native (C++ kernels) is not available ({exc}); falling back to the Numba kernels",
            RuntimeWarning,
            stacklevel=2,
        )
        return None


@functools.cache
def _has_numba() -> bool:
    try:
        importlib.import_module("numba")
    except ImportError:
        return False
    return True


def available_backends() -> tuple[BackendName, ...]:
    """Backends usable in this process, fastest first.

    Examples
    --------
    >>> "reference" in available_backends()
    True
    """
    found: list[BackendName] = []
    if native() is not None:
        found.append("cpp")
    if _has_numba():
        found.append("numba")
    found.append("reference")
    return tuple(found)


def resolve_backend(name: str | None = "auto") -> BackendName:
    """Turn a user's backend request into a concrete backend name.

    ``None`` and ``"auto"`` pick the fastest available backend; an explicit name that is not
    available raises :class:`BackendUnavailableError`.

    Examples
    --------
    >>> resolve_backend("reference")
    'reference'
    """
    # Probe only what the answer needs: importing numba costs about a second, and a cpp run
    # never touches it.
    if name is None or name == "auto":
        return "cpp" if native() is not None else available_backends()[0]
    if name not in BACKEND_PREFERENCE:
        raise BackendUnavailableError(
            f"unknown backend {name!r}; choose one of 'auto', " + ", ".join(map(repr, BACKEND_PREFERENCE))
        )
    present = native() is not None if name == "cpp" else _has_numba() if name == "numba" else True
    if not present:
        raise BackendUnavailableError(
            f"backend {name!r} is not available here (available: {', '.join(available_backends())})"
        )
    return name
