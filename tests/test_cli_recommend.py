"""``affinity recommend``: the table's shape, its agreement with the Recommender on the same
events, opted-out users left out, --now, bad arguments."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from affinity_sdk.cli import main
from affinity_sdk.models.recommend import Recommender
from affinity_sdk.profile.store import ProfileStore
from affinity_sdk.sim.shop import ShopSimulation, simulate_shop

OPTED_OUT = "c0000003"


@pytest.fixture(scope="module")
def sim() -> ShopSimulation:
    return simulate_shop(150, weeks=4, horizon_weeks=0, seed=6)


@pytest.fixture(scope="module")
def events(sim: ShopSimulation, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("recommend") / "events.ndjson"
    sim.write_ndjson(path)
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(
            json.dumps(
                {
                    "type": "consent_changed",
                    "user_id": OPTED_OUT,
                    "timestamp": sim.end_ms - 1,
                    "granted": False,
                }
            )
        )
        fh.write("\n")
    return path


def read_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def test_writes_each_visible_users_top_k(
    sim: ShopSimulation, events: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "recs.csv"
    assert main(["recommend", str(events), "--k", "4", "--out", str(out)]) == 0
    assert "top 4 products of" in capsys.readouterr().out
    rows = read_rows(out)
    assert list(rows[0]) == ["user_id", "rank", "product_id", "score"]
    store = ProfileStore(views=("signals", "affinity", "products"))
    store.ingest(events.read_bytes())
    rec = Recommender(store)
    by_user: dict[str, list[tuple[str, float]]] = {}
    for row in rows:
        by_user.setdefault(row["user_id"], []).append((row["product_id"], float(row["score"])))
    visible = {store.interners.users.names[c] for c in range(store.n_users) if store.is_visible(c)}
    assert set(by_user) == visible
    assert OPTED_OUT not in visible and len(visible) == store.n_users - 1
    for user in sorted(by_user)[:25]:
        want = rec.recommend(user, 4)
        assert [p for p, _ in by_user[user]] == [p for p, _ in want]
        assert [s for _, s in by_user[user]] == pytest.approx([s for _, s in want], rel=1e-12)
    ranks = [int(r["rank"]) for r in rows if r["user_id"] == rows[0]["user_id"]]
    assert ranks == list(range(1, len(ranks) + 1)) and len(ranks) <= 4
    meta = json.loads(out.with_name("recs.csv.meta.json").read_text())
    assert meta["k"] == "4" and meta["source"] == str(events)


def test_now_sets_later_events_aside(sim: ShopSimulation, events: Path, tmp_path: Path) -> None:
    out = tmp_path / "recs.csv"
    cut = "2026-01-19T00:00:00Z"  # two weeks into the four
    assert main(["recommend", str(events), "--k", "3", "--now", cut, "--out", str(out)]) == 0
    early = {r["user_id"] for r in read_rows(out)}
    assert len(early) > 100
    full = tmp_path / "full.csv"
    assert main(["recommend", str(events), "--k", "3", "--out", str(full)]) == 0
    later = {r["user_id"] for r in read_rows(full)}
    # the opt-out comes after the cut: as of then, that customer still gets recommendations
    assert OPTED_OUT in early and OPTED_OUT not in later
    assert read_rows(out) != [r for r in read_rows(full) if r["user_id"] in early]


@pytest.mark.parametrize(
    ("extra", "message"),
    [(["--k", "0"], "--k must be >= 1"), (["--popularity-weight", "-1"], "popularity_weight")],
)
def test_bad_arguments_are_refused(
    events: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], message: str
) -> None:
    out = tmp_path / "recs.csv"
    assert main(["recommend", str(events), *extra, "--out", str(out)]) != 0
    assert message in capsys.readouterr().err
    assert not out.exists()
