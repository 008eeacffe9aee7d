"""``affinity segments``: membership of the standard segments agrees with the tiers ``affinity
score`` gives, opted-out users are in no segment, the file says what each segment is, and a
model the events cannot train leaves its segments empty instead of failing."""

from __future__ import annotations

import csv
import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from affinity_sdk.activate.rfm import RFM_SEGMENTS
from affinity_sdk.activate.segments import standard_segments
from affinity_sdk.cli import main
from affinity_sdk.cli.propensity import WEEK_MS, iso_utc
from affinity_sdk.sim.shop import simulate_shop

SEGMENTS = {"high_intent", "churn_risk", "vip_prospects", "unsubscribe_risk"}
RFM = {s.name for s in RFM_SEGMENTS}


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    folder = tmp_path_factory.mktemp("shop")
    sim = simulate_shop(600, weeks=8, horizon_weeks=2, seed=11)
    events = folder / "events.ndjson"
    sim.write_ndjson(events)
    return {"folder": folder, "events": events, "end_ms": sim.end_ms}


def _members(path: Path) -> dict[str, set[str]]:
    out: dict[str, set[str]] = defaultdict(set)
    with open(path, newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            out[row["segment"]].add(row["user_id"])
    return out


def _buyers(events: Path) -> set[str]:
    lines = (json.loads(line) for line in events.read_text().splitlines() if line.strip())
    return {e["user_id"] for e in lines if e["type"] == "order_completed"}


def _tiers(path: Path) -> dict[str, str]:
    with open(path, newline="", encoding="utf-8") as fh:
        return {row["user_id"]: row["tier"] for row in csv.DictReader(fh)}


def test_segments_agree_with_the_tiers(shop: dict[str, Any], tmp_path: Path) -> None:
    out, scores = tmp_path / "segments.csv", tmp_path / "scores.csv"
    assert main(["segments", str(shop["events"]), "--out", str(out)]) == 0
    assert main(["score", str(shop["events"]), "--out", str(scores)]) == 0
    members, tiers = _members(out), _tiers(scores)

    discount = [name for name in members if name.startswith("discount_seekers_")]
    assert set(members) - set(discount) <= SEGMENTS | RFM and len(discount) <= 1
    # every customer with an order is in exactly one RFM segment, and only they are
    rfm = [u for name in RFM for u in members[name]]
    buyers = _buyers(shop["events"])
    assert len(rfm) == len(set(rfm)) and set(rfm) == buyers & set(tiers)
    assert members["high_intent"] and members["vip_prospects"]
    everyone = set().union(*members.values())
    assert everyone <= set(tiers)
    assert {tiers[u] for u in members["high_intent"]} == {"high"}
    assert {tiers[u] for u in members["vip_prospects"]} == {"medium"}
    assert {tiers[u] for u in members["churn_risk"]} <= {"medium", "high"}

    meta = json.loads(out.with_name("segments.csv.meta.json").read_text())
    for name in members:
        assert meta[f"segment:{name}"], name  # a description and the rule, for the marketer


def test_opted_out_users_are_in_no_segment(shop: dict[str, Any], tmp_path: Path) -> None:
    first = tmp_path / "first.csv"
    assert main(["segments", str(shop["events"]), "--out", str(first)]) == 0
    members = _members(first)
    leaving = sorted(members["high_intent"])[:3] + sorted(members["vip_prospects"])[:3]
    events = tmp_path / "events.ndjson"
    revocations = [
        {"type": "consent_changed", "user_id": u, "timestamp": shop["end_ms"] - 60_000, "granted": False}
        for u in leaving
    ]
    events.write_bytes(
        shop["events"].read_bytes() + "".join(json.dumps(r) + "\n" for r in revocations).encode()
    )
    second = tmp_path / "second.csv"
    assert main(["segments", str(events), "--out", str(second)]) == 0
    assert not set(leaving) & set().union(*_members(second).values())


def test_now_sets_later_events_aside(
    shop: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "early.csv"
    now_ms = shop["end_ms"] - WEEK_MS
    assert main(["segments", str(shop["events"]), "--now", iso_utc(now_ms), "--out", str(out)]) == 0
    assert "events stamped after" in capsys.readouterr().err
    assert json.loads(out.with_name("early.csv.meta.json").read_text())["now_ms"] == str(now_ms)


def test_an_untrainable_model_leaves_its_segment_empty(
    shop: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    events = tmp_path / "no-unsubscribes.ndjson"
    lines = shop["events"].read_bytes().splitlines(keepends=True)
    events.write_bytes(b"".join(line for line in lines if b'"unsubscribed"' not in line))
    out = tmp_path / "segments.csv"
    assert main(["segments", str(events), "--out", str(out)]) == 0
    assert "unsubscribe: all" in capsys.readouterr().err
    members = _members(out)
    assert not members["unsubscribe_risk"] and members["high_intent"]


def test_too_little_history_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    events = tmp_path / "short.ndjson"
    events.write_text(
        "".join(
            json.dumps(
                {"type": "app_opened", "user_id": f"u{i}", "timestamp": 1_767_225_600_000 + i * 60_000}
            )
            + "\n"
            for i in range(10)
        )
    )
    assert main(["segments", str(events), "--out", str(tmp_path / "s.csv")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("affinity: error: the events span less than one --horizon")


def test_standard_segments_rules() -> None:
    frame = {
        "user_id": np.array(["a", "b", "c", "d"]),
        "tier": np.array([2, 2, 1, 0], dtype=np.int8),
        "p_purchase": np.array([np.nan, 0.9, 0.9, 0.9]),
        "p_churn": np.array([0.9, np.nan, 0.2, 0.9]),
        "p_unsubscribe": np.full(4, np.nan),
        "discount_tier": np.array([2, 2, 2, 2], dtype=np.int8),
        "favourite_brand": np.array([1, 1, 0, -1]),
    }
    got = {s.name: s.members(frame).tolist() for s in standard_segments(frame, ["acme", "zeta"])}
    assert got == {
        "high_intent": ["b"],  # a has no purchase probability: never a member
        "churn_risk": ["a"],  # d churns but is Low
        "vip_prospects": ["c"],
        "discount_seekers_zeta": ["a", "b"],  # zeta (code 1) is the most common favourite
        "unsubscribe_risk": [],
    }
