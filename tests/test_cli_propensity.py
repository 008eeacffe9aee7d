"""``affinity propensity fit | score``: the model the CLI fits and the scores it writes are the
library's, every bad input is one ``affinity: error:`` line, and nothing is overwritten by mistake."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from affinity_sdk.cli import main
from affinity_sdk.cli.propensity import WEEK_MS, iso_utc
from affinity_sdk.config import default_config
from affinity_sdk.ingest.batch import EventBatch
from affinity_sdk.models.propensity import PropensityModel
from affinity_sdk.sim.shop import simulate_shop

T0 = 1_767_225_600_000
DAY_MS = 86_400_000


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    folder = tmp_path_factory.mktemp("shop")
    sim = simulate_shop(500, weeks=8, horizon_weeks=2, seed=5)
    events = folder / "events.ndjson"
    sim.write_ndjson(events)
    batch = EventBatch.from_ndjson(events.read_bytes())
    return {
        "folder": folder,
        "events": events,
        "first_ms": int(batch.ts_ms.min()),
        "last_ms": int(batch.ts_ms.max()),
    }


def _fit(shop: dict[str, Any], out: Path, *extra: str, weeks_back: int = 2) -> int:
    cutoff = iso_utc(shop["last_ms"] - weeks_back * WEEK_MS)
    return main(["propensity", "fit", str(shop["events"]), "--cutoff", cutoff, "--out", str(out), *extra])


def _error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("affinity: error: "), err
    assert "Traceback" not in err
    return lines[0]


def _read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def test_fit_writes_the_library_model(shop: dict[str, Any], tmp_path: Path) -> None:
    out = tmp_path / "model.json"
    cutoffs = [shop["last_ms"] - 3 * WEEK_MS, shop["last_ms"] - 2 * WEEK_MS]
    args = ["--cutoff", iso_utc(cutoffs[0]), "--cutoff", iso_utc(cutoffs[1]), "--outcome", "churn"]
    assert main(["propensity", "fit", str(shop["events"]), *args, "--out", str(out)]) == 0
    model = PropensityModel.load(out, config_fingerprint=default_config().fingerprint)
    assert model.outcome == "churn"
    assert model.horizon_ms == 2 * WEEK_MS
    # both cut-offs were stacked: the window runs from the first to the last label time
    assert model.training_window_ms == (cutoffs[0], cutoffs[1] + 2 * WEEK_MS)


def test_score_matches_the_library(shop: dict[str, Any], tmp_path: Path) -> None:
    model_path, out = tmp_path / "m.bin", tmp_path / "scores.csv"
    assert _fit(shop, model_path) == 0
    assert (
        main(["propensity", "score", str(shop["events"]), "--model", str(model_path), "--out", str(out)]) == 0
    )

    rows = _read_csv(out)
    assert list(rows[0]) == ["user_id", "probability", "tier"]
    batch = EventBatch.from_ndjson(shop["events"].read_bytes())
    p, seen = PropensityModel.load(model_path).score_batch(batch, shop["last_ms"])
    names = batch.interners.users.names
    expected = {names[i]: p[i] for i in np.flatnonzero(seen).tolist()}
    assert {r["user_id"] for r in rows} == set(expected)
    got = np.array([float(r["probability"]) for r in rows])
    assert np.allclose(got, [expected[r["user_id"]] for r in rows], rtol=0, atol=1e-12)

    # default tiers: quantile cut-offs at 0.9 / 0.6, so a higher tier never has a lower probability
    by_tier = {t: got[[r["tier"] == t for r in rows]] for t in ("low", "medium", "high")}
    assert by_tier["high"].min() >= by_tier["medium"].max() >= by_tier["low"].max() - 1e-12
    # top 10 % High, ties (isotonic calibration makes them) on the cut-off all in the same tier
    assert by_tier["high"].min() >= np.quantile(got, 0.9, method="lower")
    assert (got[got > np.quantile(got, 0.9, method="higher")] >= by_tier["high"].min()).all()
    assert len(by_tier["high"]) >= 0.1 * len(rows) - 1
    meta = json.loads(out.with_name("scores.csv.meta.json").read_text())
    assert meta["outcome"] == "purchase" and meta["now_ms"] == str(shop["last_ms"])


def test_threshold_tiers_cut_on_the_probability(shop: dict[str, Any], tmp_path: Path) -> None:
    model_path, out = tmp_path / "m.bin", tmp_path / "scores.jsonl"
    assert _fit(shop, model_path) == 0
    argv = ["propensity", "score", str(shop["events"]), "--model", str(model_path), "--out", str(out)]
    assert main([*argv, "--tiers", "threshold", "--high", "0.5", "--medium", "0.2"]) == 0
    for line in out.read_text().splitlines():
        row = json.loads(line)
        p = row["probability"]
        assert row["tier"] == ("high" if p >= 0.5 else "medium" if p >= 0.2 else "low")


def test_now_leaves_later_events_out(
    shop: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model_path, out = tmp_path / "m.bin", tmp_path / "early.csv"
    assert _fit(shop, model_path) == 0
    now_ms = shop["first_ms"] + 7 * DAY_MS
    argv = ["propensity", "score", str(shop["events"]), "--model", str(model_path), "--out", str(out)]
    assert main([*argv, "--now", iso_utc(now_ms)]) == 0
    assert "events stamped after" in capsys.readouterr().err
    batch = EventBatch.from_ndjson(shop["events"].read_bytes())
    active = {batch.interners.users.names[u] for u in np.unique(batch.user[batch.ts_ms <= now_ms]).tolist()}
    users = {r["user_id"] for r in _read_csv(out)}
    assert users and users <= active


@pytest.mark.parametrize(
    ("cutoff", "message"),
    [
        (lambda s: iso_utc(s["last_ms"] - DAY_MS), "before the last label window ends"),
        (lambda s: iso_utc(s["first_ms"] - DAY_MS), "is before the first event"),
        (lambda s: "2026-01-01", "has no timezone"),
        (lambda s: "yesterday", "invalid ISO-8601 timestamp"),
    ],
)
def test_bad_cutoffs_are_one_line(
    shop: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str], cutoff: Any, message: str
) -> None:
    out = tmp_path / "m.bin"
    assert main(["propensity", "fit", str(shop["events"]), "--cutoff", cutoff(shop), "--out", str(out)]) == 2
    assert message in _error_line(capsys.readouterr().err)
    assert not out.exists()


def test_an_outcome_that_never_happens_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    events = tmp_path / "browse.ndjson"
    lines = [
        {"type": "app_opened", "user_id": f"u{u}", "timestamp": T0 + day * DAY_MS}
        for u in range(20)
        for day in range(0, 40, 3)
    ]
    events.write_text("".join(json.dumps(line) + "\n" for line in lines))
    cutoff = iso_utc(T0 + 20 * DAY_MS)
    argv = ["propensity", "fit", str(events), "--cutoff", cutoff, "--out", str(tmp_path / "m.bin")]
    assert main(argv) == 2
    assert "nothing to learn" in _error_line(capsys.readouterr().err)


def test_a_model_from_another_config_is_refused(
    shop: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model_path = tmp_path / "m.bin"
    assert _fit(shop, model_path) == 0
    config = tmp_path / "other.toml"
    config.write_text('version = "other"\n[signals.order_completed]\nweight = 9.0\nhalf_life = "30d"\n')
    argv = ["propensity", "score", str(shop["events"]), "--model", str(model_path), "--config", str(config)]
    assert main([*argv, "--out", str(tmp_path / "s.csv")]) == 2
    assert "trained under config" in _error_line(capsys.readouterr().err)


def test_out_may_not_be_the_model(
    shop: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model_path = tmp_path / "m.csv"
    assert _fit(shop, model_path) == 0
    before = model_path.read_bytes()
    argv = ["propensity", "score", str(shop["events"]), "--model", str(model_path), "--out", str(model_path)]
    assert main(argv) == 2
    assert "is the --model file" in _error_line(capsys.readouterr().err)
    assert model_path.read_bytes() == before


def test_a_broken_model_file_is_one_line(
    shop: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model_path = tmp_path / "m.bin"
    model_path.write_bytes(b"not a model")
    argv = ["propensity", "score", str(shop["events"]), "--model", str(model_path)]
    assert main([*argv, "--out", str(tmp_path / "s.csv")]) == 2
    _error_line(capsys.readouterr().err)


def test_segment_format_and_missing_command(
    shop: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _fit(shop, tmp_path / "m.bin", "--format", "segment") == 2
    assert "--format segment is not supported" in _error_line(capsys.readouterr().err)
    assert main(["propensity"]) == 2
    assert "fit" in capsys.readouterr().err


def test_parser_choices_match_the_models() -> None:
    """The parser spells the outcomes and default tiers itself (no scipy import to build it)."""
    from affinity_sdk.cli.propensity import DEFAULT_TIERS, OUTCOME_CHOICES
    from affinity_sdk.models.propensity import TierSpec
    from affinity_sdk.models.training import OUTCOMES

    assert OUTCOME_CHOICES == OUTCOMES
    default = TierSpec()
    assert DEFAULT_TIERS == (default.method, default.high, default.medium)


def test_building_the_parser_imports_no_model() -> None:
    import subprocess
    import sys

    code = (
        "import sys; from affinity_sdk.cli import build_parser; build_parser(); "
        "print(sorted(m for m in sys.modules if m.startswith(('scipy', 'numba', 'affinity_sdk.models'))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
