"""``python -m affinity_sdk ...``: the ``affinity`` command (see :mod:`affinity_sdk.cli`)."""

from __future__ import annotations

import sys

from affinity_sdk.cli import main

if __name__ == "__main__":
    sys.exit(main())
