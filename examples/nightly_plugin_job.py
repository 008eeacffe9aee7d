"""What a shop plugin runs each night: the day's events in, scores and segment diffs out.

Each run loads last night's state (``state.afs``), folds in the new event file (NDJSON or
Parquet), scores everyone at the end of the day, evaluates the marketing segments, diffs them
against last night's members (who *entered* and *exited*: the trigger lists for journeys, with
opted-out users never listed), writes the exports with the config version and fingerprint in
their metadata, and checkpoints the state with the last file it read, so a re-run of the same
night is skipped instead of counted twice.

Run it on simulated nights: ``python examples/nightly_plugin_job.py`` (writes to a temporary
folder), or on your own files: ``python examples/nightly_plugin_job.py --workdir out day1.ndjson
day2.parquet ...`` (files are processed in the order given).
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np

from affinity_sdk import EventBatch, Scorer
from affinity_sdk.activate.segments import (
    Segment,
    col,
    diff_segments,
    evaluate_segments,
    export_segments,
    frame_from_result,
    holdout_mask,
)
from affinity_sdk.score.results import write_columns
from affinity_sdk.sim.shop import simulate_shop

SEGMENTS = [
    Segment("vip", (col("tier") == "high") & (col("order_completed") >= 1.0), "High and buying"),
    Segment(
        "cart_abandoners",
        (col("product_added") >= 1.0) & (col("order_completed") < 0.1),
        "Adds to cart, does not buy",
    ),
    Segment("rising", (col("tier") >= "medium") & (col("order_completed") < 0.5), "Engaged, few orders"),
]


def run_night(events: Path, workdir: Path) -> dict[str, object]:
    """One nightly run over one event file; returns a small summary."""
    state = workdir / "state.afs"
    scorer = Scorer.load(state) if state.exists() else Scorer()
    done = set(scorer.source_position or [])
    if events.name in done:  # a re-run of a night already folded in
        return {"night": events.name, "skipped": True}

    if events.suffix == ".parquet":
        report = scorer.ingest(EventBatch.from_parquet(events, scorer.interners))
    else:
        report = scorer.ingest(events.read_bytes(), errors="collect")
    result = scorer.score()  # at the newest event time; opted-out users are left out

    frame = frame_from_result(result)
    masks = evaluate_segments(SEGMENTS, frame)
    members = {name: frame["user_id"][mask].tolist() for name, mask in masks.items()}
    previous_file = workdir / "segments.json"
    previous = json.loads(previous_file.read_text()) if previous_file.exists() else {}
    diffs = diff_segments(previous, members, suppressed=scorer.opted_out())

    night = workdir / events.stem
    night.mkdir(exist_ok=True)
    result.save(night / "scores.csv")
    export_segments(members, night / "segments.csv", metadata=result.metadata)
    journeys = [(d.segment, "entered", u) for d in diffs for u in d.entered]
    journeys += [(d.segment, "exited", u) for d in diffs for u in d.exited]
    users = [u for _, _, u in journeys]
    held_out = holdout_mask(users, "nightly-journeys", 0.1, salt="shop-1") if users else np.zeros(0, bool)
    write_columns(
        {
            "segment": [s for s, _, _ in journeys],
            "change": [c for _, c, _ in journeys],
            "user_id": users,
            "holdout": held_out.tolist(),  # the control group: measured later, not messaged
        },
        night / "journeys.csv",
        metadata=result.metadata,
    )

    previous_file.write_text(json.dumps(members))
    scorer.save(state, source_position=sorted(done | {events.name}))  # atomic: crash-safe
    return {
        "night": events.name,
        "events": report.accepted,
        "rejected": len(report.rejected),
        "users": len(result),
        "tiers": result.tier_counts(),
        "entered": {d.segment: len(d.entered) for d in diffs},
        "exited": {d.segment: len(d.exited) for d in diffs},
    }


def simulated_nights(folder: Path, nights: int = 3) -> list[Path]:
    """Split a simulated shop's last days into one NDJSON file per day."""
    sim = simulate_shop(2_000, weeks=4, seed=11)
    everything = folder / "all.ndjson"
    sim.write_ndjson(everything)
    lines = everything.read_bytes().splitlines(keepends=True)
    day_ms = 86_400_000
    first_night = sim.end_ms - nights * day_ms
    day = np.maximum((sim.batch.ts_ms - first_night) // day_ms, -1)  # -1: the history before
    files = []
    for d in range(-1, nights):
        path = folder / ("history.ndjson" if d < 0 else f"day{d + 1}.ndjson")
        path.write_bytes(b"".join(line for line, k in zip(lines, day.tolist(), strict=True) if k == d))
        files.append(path)
    return files


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("events", nargs="*", type=Path, help="event files, oldest first")
    parser.add_argument("--workdir", type=Path, default=None, help="state and outputs (default: temp)")
    args = parser.parse_args()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="nightly-"))
    workdir.mkdir(parents=True, exist_ok=True)
    files = args.events or simulated_nights(workdir)
    for path in [*files, files[-1]]:  # the last night twice: the re-run is detected and skipped
        print(json.dumps(run_night(path, workdir)))
    print(f"outputs in {workdir}")


if __name__ == "__main__":
    main()
