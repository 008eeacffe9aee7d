"""``affinity score`` on a folder of Parquet files: streamed row group by row group, it writes what
the same events in one Parquet file give (to float rounding), for the commands that stream and
those that read whole."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("pyarrow", reason="the [arrow] extra (pyarrow) is not installed")

from affinity_sdk.cli import main
from affinity_sdk.ingest.batch import take_rows
from affinity_sdk.sim.shop import simulate_shop


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(one Parquet file of a simulated shop, a folder with the same rows split over 3 files)."""
    root = tmp_path_factory.mktemp("lake")
    batch = simulate_shop(80, weeks=3, horizon_weeks=1, seed=4).batch
    whole = root / "all.parquet"
    batch.to_parquet(whole)
    folder = root / "events"
    (folder / "day=2").mkdir(parents=True)  # sub-folders are read too, after the files beside them
    parts = np.array_split(np.arange(len(batch)), 3)
    for i, rows in enumerate(parts):
        keep = np.zeros(len(batch), dtype=np.bool_)
        keep[rows] = True
        where = folder / "day=2" / "c.parquet" if i == 2 else folder / f"{'ab'[i]}.parquet"
        take_rows(batch, keep).to_parquet(where, row_group_size=500)
    return whole, folder


@pytest.mark.parametrize("command", [["score"], ["score", "--now", "2026-01-20T00:00:00Z"], ["affinities"]])
def test_a_folder_scores_as_one_file(lake: tuple[Path, Path], tmp_path: Path, command: list[str]) -> None:
    whole, folder = lake
    extra = ["--dimension", "category", "--top", "2"] if command == ["affinities"] else []
    out_whole, out_folder = tmp_path / "whole.csv", tmp_path / "folder.csv"
    assert main([command[0], str(whole), "--out", str(out_whole), *command[1:], *extra]) == 0
    assert main([command[0], str(folder), "--out", str(out_folder), *command[1:], *extra]) == 0
    want, got = _rows(out_whole), _rows(out_folder)
    assert len(want) > 50
    assert [r[0] for r in got] == [r[0] for r in want]  # users, in the same order
    for row_got, row_want in zip(got, want, strict=True):
        for a, b in zip(row_got[1:], row_want[1:], strict=True):
            try:
                x, y = float(a), float(b)
            except ValueError:  # header, tier, category name
                assert a == b
            else:  # folded in row groups, not one batch: the same to float rounding
                assert x == pytest.approx(y, rel=1e-12, abs=1e-300)


def _rows(path: Path) -> list[list[str]]:
    return [line.split(",") for line in path.read_text().splitlines()]


def test_an_empty_folder_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "empty").mkdir()
    assert main(["score", str(tmp_path / "empty"), "--out", str(tmp_path / "o.csv")]) != 0
    assert "parquet" in capsys.readouterr().err.lower()
