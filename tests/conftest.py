"""Shared fixtures: ``backend`` runs a test once per kernel backend available here."""

from __future__ import annotations

import pytest

from affinity_sdk import available_backends


@pytest.fixture(scope="session", params=available_backends())
def backend(request: pytest.FixtureRequest) -> str:
    """Each available kernel backend in turn (``cpp``, ``numba``, ``reference``)."""
    name: str = request.param
    return name


@pytest.fixture(scope="session", params=[b for b in available_backends() if b != "reference"])
def fast_backend(request: pytest.FixtureRequest) -> str:
    """Each available compiled backend (compared against the reference oracle)."""
    name: str = request.param
    return name
