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
