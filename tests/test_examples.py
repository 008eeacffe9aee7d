"""The scripts in examples/ run end to end (they are documentation: keep them working)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def _run(script: str, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / script), *args], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_backend_embed() -> None:
    out = _run("backend_embed.py")
    assert "checkpoint restored at source position 5000" in out
    assert "erasure: {'user_id': 'user-2', 'was_known': True}" in out
    assert "of their events: {'user_id': 'user-2', 'tier': None, 'score': None}" in out


def test_nightly_plugin_job(tmp_path: Path) -> None:
    lines = _run("nightly_plugin_job.py", "--workdir", str(tmp_path)).splitlines()
    nights = [json.loads(line) for line in lines if line.startswith("{")]
    names = ["history.ndjson", "day1.ndjson", "day2.ndjson", "day3.ndjson", "day3.ndjson"]
    assert [n["night"] for n in nights] == names
    assert nights[-1] == {"night": "day3.ndjson", "skipped": True}
    first, second = nights[0], nights[1]
    assert first["events"] > 0 and first["rejected"] == 0
    assert sum(first["exited"].values()) == 0 and sum(second["entered"].values()) > 0
    # the journeys file of night 1 lists exactly the entered / exited counts it printed
    journeys = (tmp_path / "day1" / "journeys.csv").read_text().splitlines()[1:]
    assert len(journeys) == sum(second["entered"].values()) + sum(second["exited"].values())
    assert json.loads((tmp_path / "day1" / "scores.csv.meta.json").read_text())["config_fingerprint"]


def test_dask_lake() -> None:
    assert "identical to the single-process Scorer" in _run("dask_lake.py")


def test_order_log_propensity(tmp_path: Path) -> None:
    out = _run("order_log_propensity.py", "--out", str(tmp_path / "tiers.csv"))
    assert "ROC AUC 0.7838  this model" in out  # docs/propensity.md, stage 2
    rates = [float(line.split(": ")[1].split("%")[0]) for line in out.splitlines() if "ordered again" in line]
    assert len(rates) == 3 and rates[0] > rates[1] > rates[2]  # High > Medium > Low
    rows = (tmp_path / "tiers.csv").read_text().splitlines()
    assert rows[0] == "customer,probability,tier" and len(rows) == 1 + 2357
