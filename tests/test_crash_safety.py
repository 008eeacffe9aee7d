"""Kill -9 during save: a process that ingests and snapshots in a loop is SIGKILLed at random moments,
restarted from its last snapshot, and killed again. After every kill the snapshot on disk must load
and hold exactly what it claims (its ``source_position`` events, no more, no fewer), never a
half-written file. ``AFFINITY_CRASH_TRIALS`` sets the number of kills (default 8)."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from affinity_sdk import Scorer

TRIALS = int(os.environ.get("AFFINITY_CRASH_TRIALS", "8"))
N_BASE_USERS = 20_000  # a few MB of state, so a save takes long enough to be hit mid-write

CHILD = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from affinity_sdk import Scorer
    from affinity_sdk.capture.events import AppOpened, ProductViewed, Product

    path = Path(sys.argv[1])
    T0 = 1_767_225_600_000
    if path.exists():
        scorer = Scorer.load(path, backend="reference")
        position = scorer.source_position
    else:
        scorer = Scorer(backend="reference", dedupe_window=4096)
        # Background users without event ids: the loop's events below are the ones counted.
        scorer.ingest([AppOpened(user_id=f"base{i}", timestamp=T0) for i in range(int(sys.argv[2]))])
        position = 0
        scorer.save(path, source_position=position)
    product = Product(product_id="p", category="c", brand="b", price=5.0)
    announced = False
    while True:
        position += 1
        scorer.ingest(ProductViewed(user_id=f"u{position % 97}", timestamp=T0 + position,
                                    event_id=f"e{position}", product=product))
        scorer.save(path, source_position=position)
        if not announced:  # the parent starts its random countdown once saves are looping
            print("running", position, flush=True)
            announced = True
    """
)


def _check_snapshot(path: Path, n_base: int) -> int:
    """Load the snapshot and check it holds exactly the events its position claims."""
    scorer = Scorer.load(path, backend="reference")
    position = scorer.source_position
    assert isinstance(position, int) and position >= 0
    assert scorer.events_ingested == n_base + position
    views = scorer.config.signal_names.index("product_viewed")
    assert int(scorer.signals.state.records["count"][:, views].sum()) == position
    assert scorer.latest_ms == 1_767_225_600_000 + position or position == 0
    return position


@pytest.mark.slow
def test_sigkill_during_save_never_leaves_a_broken_snapshot(tmp_path: Path) -> None:
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    path = tmp_path / "state.afs"
    rng = random.Random(int(os.environ.get("AFFINITY_CRASH_SEED", "20261123")))
    root = Path(__file__).resolve().parent.parent
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")])}
    last = -1
    kills_mid_write = 0
    for trial in range(TRIALS):
        child = subprocess.Popen(
            [sys.executable, str(script), str(path), str(N_BASE_USERS)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            text=True,
        )
        try:
            assert child.stdout is not None
            line = child.stdout.readline()
            assert line.startswith("running"), child.stderr.read() if child.stderr else line
            time.sleep(rng.uniform(0.02, 0.6))
        finally:
            child.send_signal(signal.SIGKILL)
            child.wait(30)
            if child.stdout:
                child.stdout.close()
            if child.stderr:
                child.stderr.close()
        assert child.returncode == -signal.SIGKILL, f"trial {trial}: the child died on its own"
        # Listed right after the kill, before the next child's first save removes the temp
        # files of dead writers (``remove_stale_temps``): the killed writer's own temp file
        # means the kill landed between its creation and the rename, i.e. mid-write.
        leftovers = [p for p in tmp_path.iterdir() if p.name.startswith(".state.afs.")]
        kills_mid_write += any(p.name.startswith(f".state.afs.{child.pid}.") for p in leftovers)
        for stale in leftovers:  # a killed writer leaves its temp file; it is never read
            stale.unlink()
        position = _check_snapshot(path, N_BASE_USERS)
        assert position >= last, "a restart went back before its own snapshot"
        last = position
    assert last > 0
    # Otherwise the test proves nothing about atomicity: every kill fell between two saves.
    assert kills_mid_write >= 1, f"none of the {TRIALS} kills landed mid-write"
    # The dedupe window survived every restart: replaying everything folds nothing.
    scorer = Scorer.load(path, backend="reference")
    from affinity_sdk.capture.events import Product, ProductViewed

    product = Product(product_id="p", category="c", brand="b", price=5.0)
    replay = [
        ProductViewed(
            user_id=f"u{i % 97}", timestamp=1_767_225_600_000 + i, event_id=f"e{i}", product=product
        )
        for i in range(1, last + 1)
    ]
    assert scorer.ingest(replay).n_duplicates == last
    print(f"{TRIALS} kills, {kills_mid_write} of them mid-write, final position {last}")
    assert np.isfinite(scorer.score().raw_score).all()
