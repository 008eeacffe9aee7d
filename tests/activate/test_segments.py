"""Segments: rules, diffs, holdouts, drift and exports."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from affinity_sdk.activate.segments import (
    Segment,
    col,
    compare_runs,
    diff_segments,
    evaluate_segments,
    export_segments,
    frame_from_result,
    holdout_mask,
    psi,
)
from affinity_sdk.score.results import ScoreResult


def make_result(scores: list[float], tiers: list[int], users: list[str] | None = None) -> ScoreResult:
    n = len(scores)
    ids = users or [f"u{i}" for i in range(n)]
    raw = np.array(scores) / 10
    return ScoreResult(
        user_ids=ids,
        raw_score=raw,
        score=np.array(scores, dtype=float),
        tier_code=np.array(tiers, dtype=np.int8),
        signal_names=("order_completed",),
        decayed=raw[:, None],
        now_ms=0,
        config_version="v",
        config_fingerprint="0" * 16,
    )


def test_rules_compose_and_compare_tiers_by_code() -> None:
    result = make_result([90, 60, 30, 10], [2, 1, 0, 0])
    frame = frame_from_result(result, p_purchase=np.array([0.1, 0.8, 0.9, 0.2]))
    high_intent = Segment("high_intent", (col("tier") >= "medium") & (col("p_purchase") >= 0.5))
    churn_risk = Segment("churn_risk", ~(col("tier") == "high") & (col("score") < 40))
    either = Segment("either", (col("tier") == "high") | col("user_id").isin(["u3"]))
    masks = evaluate_segments([high_intent, churn_risk, either], frame)
    assert masks["high_intent"].tolist() == [False, True, False, False]
    assert masks["churn_risk"].tolist() == [False, False, True, True]
    assert either.members(frame).tolist() == ["u0", "u3"]
    with pytest.raises(KeyError, match="'nope'"):
        Segment("bad", col("nope") > 1).mask(frame)
    with pytest.raises(ValueError, match="rows"):
        frame_from_result(result, short=np.zeros(2))


def test_diff_is_consent_aware() -> None:
    diffs = diff_segments(
        {"vip": ["a", "b"], "gone": ["x"]}, {"vip": ["b", "c", "z"], "new": ["y"]}, suppressed=["z"]
    )
    by_name = {d.segment: d for d in diffs}
    assert by_name["vip"].entered == ["c"] and by_name["vip"].exited == ["a"]
    assert by_name["gone"].exited == ["x"] and by_name["new"].entered == ["y"]
    assert all("z" not in d.entered + d.exited for d in diffs)


def test_holdout_is_deterministic_salted_and_sized() -> None:
    ids = [f"user-{i}" for i in range(20_000)]
    a = holdout_mask(ids, "c1", 0.2, salt="s")
    assert np.array_equal(a, holdout_mask(list(reversed(ids)), "c1", 0.2, salt="s")[::-1])
    assert abs(a.mean() - 0.2) < 0.015
    other_campaign = holdout_mask(ids, "c2", 0.2, salt="s")
    assert abs((a & other_campaign).mean() - 0.04) < 0.01  # independent across campaigns
    assert not np.array_equal(a, holdout_mask(ids, "c1", 0.2, salt="t"))
    assert not holdout_mask(ids, "c1", 0.0).any() and holdout_mask(ids, "c1", 1.0).all()
    with pytest.raises(ValueError):
        holdout_mask(ids, "c1", 1.5)


def test_psi_and_drift_alerts() -> None:
    rng = np.random.default_rng(1)
    base = rng.uniform(0, 100, 5_000)
    assert psi(base, rng.uniform(0, 100, 5_000)) < 0.02
    assert psi(base, np.clip(base + 30, 0, 100)) > 0.2
    before = make_result([80, 50, 10, 5], [2, 1, 0, 0])
    after = make_result([85, 10, 70, 6], [2, 0, 2, 0])
    report = compare_runs(before, after, jump=25)
    assert report.transitions.tolist() == [[1, 0, 1], [1, 0, 0], [0, 0, 1]]
    assert report.jumped == ["u1", "u2"] and report.alert
    calm = compare_runs(before, before)
    assert not calm.alert and calm.jumped == [] and calm.psi == 0.0


def test_exports_carry_config_metadata(tmp_path: Path) -> None:
    memberships = {"vip": ["a", "b"], "churn_risk": ["c"]}
    meta = {"config_version": "v9", "config_fingerprint": "abc"}
    csv_path = export_segments(memberships, tmp_path / "segments.csv", metadata=meta)
    assert csv_path.read_text().splitlines() == ["segment,user_id", "vip,a", "vip,b", "churn_risk,c"]
    assert json.loads((tmp_path / "segments.csv.meta.json").read_text()) == meta
    jsonl = export_segments(memberships, tmp_path / "segments.jsonl", metadata=meta)
    assert [json.loads(x)["user_id"] for x in jsonl.read_text().splitlines()] == ["a", "b", "c"]
    pq = pytest.importorskip("pyarrow.parquet")
    path = export_segments(memberships, tmp_path / "segments.parquet", metadata=meta)
    table = pq.read_table(path)
    assert table.schema.metadata[b"config_fingerprint"] == b"abc"
    assert table.column("user_id").to_pylist() == ["a", "b", "c"]
    with pytest.raises(ValueError, match="unsupported"):
        export_segments(memberships, tmp_path / "x.xlsx", metadata=meta)
