"""Shared fixtures: ``backend`` runs a test once per kernel backend available here;
``segment_server`` is a local HTTP server that records what a real Segment client sends."""

from __future__ import annotations

import gzip
import http.server
import os
import threading
from collections.abc import Iterator
from typing import ClassVar

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


class _Recorder(http.server.BaseHTTPRequestHandler):
    bodies: ClassVar[list[bytes]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if self.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        type(self).bodies.append(body)
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def segment_server() -> Iterator[tuple[str, list[bytes]]]:
    yield from _recording_server()


@pytest.fixture
def rudder_server() -> Iterator[tuple[str, list[bytes]]]:
    """A local data plane recording what the real ``rudder-sdk-python`` client posts to ``/v1/batch``."""
    yield from _recording_server()


def _recording_server() -> Iterator[tuple[str, list[bytes]]]:
    bodies: list[bytes] = []
    handler = type("Recorder", (_Recorder,), {"bodies": bodies})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", bodies
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
