"""``python -m affinity_sdk ...``: the ``affinity`` command (see :mod:`affinity_sdk.cli`)."""

from __future__ import annotations

from affinity_sdk.cli import run

if __name__ == "__main__":
    run()
