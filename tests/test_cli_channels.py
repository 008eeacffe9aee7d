"""``affinity channels``: the table's columns, agreement with channel_table, opted-out users left out."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from affinity_sdk.cli import main
from affinity_sdk.models.channels import channel_table
from affinity_sdk.profile.store import ProfileStore

T0 = 1_767_225_600_000


def test_writes_one_row_per_visible_user(tmp_path: Path) -> None:
    events = []
    for i in range(20):
        medium = "push" if i % 2 else "email"
        events += [
            {"type": "message_delivered", "user_id": f"u{i}", "timestamp": T0 + k, "medium": medium}
            for k in range(4)
        ]
        events.append(
            {"type": "message_opened", "user_id": f"u{i}", "timestamp": T0 + 3_600_000 * i, "medium": medium}
        )
    events.append({"type": "consent_changed", "user_id": "u3", "timestamp": T0 + 10**8, "granted": False})
    path = tmp_path / "events.ndjson"
    path.write_text("\n".join(json.dumps(e) for e in events) + "\n")
    out = tmp_path / "channels.csv"
    assert main(["channels", str(path), "--out", str(out)]) == 0
    with open(out, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == ["user_id", "best_channel", "channel_rate", "best_send_hour", "fatigued"]
    store = ProfileStore(views=("signals", "engagement"))
    store.ingest(path.read_bytes())
    table = channel_table(store)
    assert [r["user_id"] for r in rows] == table["user_id"].tolist()
    assert "u3" not in {r["user_id"] for r in rows}
    assert [r["best_channel"] for r in rows] == table["best_channel"].tolist()
    assert [int(r["best_send_hour"]) for r in rows] == table["best_send_hour"].tolist()


def test_segment_file_gives_local_send_hours_and_whatsapp(tmp_path: Path) -> None:
    calls = []
    for i, (user, zone) in enumerate([("tok", "Asia/Tokyo"), ("osl", "Europe/Oslo"), ("nz", None)]):
        context = {"timezone": zone} if zone else {}
        calls += [
            {
                "type": "track",
                "event": "Email Opened" if user != "nz" else "Message Opened",
                "userId": user,
                "messageId": f"m{i}-{d}",
                "timestamp": T0 + 3_600_000 + d * 86_400_000,  # 01:00 UTC
                "context": context,
                "properties": {"medium": "whatsapp"} if user == "nz" else {},
            }
            for d in range(3)
        ]
    calls += [  # email reaches some without an open, so its rate is below WhatsApp's
        {
            "type": "track",
            "event": "Email Delivered",
            "userId": u,
            "messageId": f"d{u}{k}",
            "timestamp": T0 + k,
        }
        for u in ("tok", "osl")
        for k in range(6)
    ]
    path = tmp_path / "calls.ndjson"
    path.write_text("\n".join(json.dumps(c) for c in calls) + "\n")
    out = tmp_path / "channels.csv"
    assert main(["channels", str(path), "--format", "segment", "--out", str(out)]) == 0
    with open(out, newline="") as fh:
        rows = {r["user_id"]: r for r in csv.DictReader(fh)}
    header = ["user_id", "best_channel", "channel_rate", "best_send_hour", "fatigued"]
    assert list(next(iter(rows.values()))) == header
    assert int(rows["tok"]["best_send_hour"]) == 10  # 01:00 UTC in Tokyo
    assert int(rows["osl"]["best_send_hour"]) == 2  # Oslo in January: UTC+1
    assert int(rows["nz"]["best_send_hour"]) == 1  # no zone: UTC
    assert rows["nz"]["best_channel"] == "whatsapp"
