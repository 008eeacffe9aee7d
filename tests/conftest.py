"""Shared fixtures: ``backend`` runs a test once per kernel backend available here."""

from __future__ import annotations

import os

import pytest
from hypothesis import settings

from affinity_sdk import available_backends

# ``HYPOTHESIS_PROFILE=ci`` (set by .ci/run) replays a fixed example sequence per test, so CI is
# reproducible; without it every run draws new examples. Either way a failure prints its blob.
settings.register_profile("ci", derandomize=True, database=None, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


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
