"""Edges of the first five minutes: ``python -m affinity_sdk``, an ``--out`` that is an input,
atomic table writes, Parquet without pyarrow, config values that break scoring, and the temporary
files a killed save leaves behind."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import pytest

from affinity_sdk import __version__
from affinity_sdk._persist import (
    STALE_TEMP_AGE_S,
    read_container,
    remove_stale_temps,
    write_container,
)
from affinity_sdk.cli import main
from affinity_sdk.config import ScoringConfig, default_config
from affinity_sdk.errors import ConfigError
from affinity_sdk.score import results
from affinity_sdk.score.results import ScoreResult, write_columns

ROOT = Path(__file__).resolve().parent.parent
T0 = 1_767_225_600_000
EVENTS = "".join(
    json.dumps(event) + "\n"
    for event in [
        {"type": "app_opened", "user_id": "ann", "timestamp": T0},
        {
            "type": "product_viewed",
            "user_id": "bob",
            "timestamp": T0 + 1000,
            "product": {"product_id": "p1", "category": "shoes", "brand": "acme", "price": 30.0},
        },
        {
            "type": "order_completed",
            "user_id": "bob",
            "timestamp": T0 + 2000,
            "order_id": "o1",
            "revenue": 30.0,
            "products": [{"product_id": "p1", "category": "shoes", "brand": "acme", "price": 30.0}],
        },
    ]
)


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}


def _one_error_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("affinity: error: "), err
    assert "Traceback" not in err
    return lines[0]


def _listing(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


# --- 1. python -m affinity_sdk -------------------------------------------------------------------
def test_python_m_affinity_sdk_runs_the_cli(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "affinity_sdk", "--version"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=_env(),
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"affinity_sdk {__version__}"
    # and its errors are the CLI's: one line, status 2
    bad = subprocess.run(
        [sys.executable, "-m", "affinity_sdk", "score", "missing.jsonl", "--out", "x.csv"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=_env(),
        timeout=120,
    )
    assert bad.returncode == 2
    assert "cannot read missing.jsonl" in _one_error_line(bad.stderr)


def test_the_command_flushes_its_output_before_it_exits(tmp_path: Path) -> None:
    # The command leaves without the interpreter's teardown (affinity_sdk.cli.run): what it
    # printed, into a file (block-buffered), and what it wrote must all be there.
    (tmp_path / "x.jsonl").write_text(EVENTS)
    with open(tmp_path / "stdout.txt", "wb") as out:
        done = subprocess.run(
            [sys.executable, "-m", "affinity_sdk", "score", "x.jsonl", "--out", "s.csv"],
            stdout=out,
            stderr=subprocess.PIPE,
            text=True,
            cwd=tmp_path,
            env=_env(),
            timeout=120,
        )
    assert done.returncode == 0, done.stderr
    printed = (tmp_path / "stdout.txt").read_text().splitlines()
    assert printed[0].startswith("scored 2 users from 3 events")
    assert printed[-1] == "wrote s.csv"
    rows = (tmp_path / "s.csv").read_text().splitlines()
    assert rows[0].startswith("user_id,raw_score,score,tier") and len(rows) == 3


@pytest.mark.parametrize(("given", "seen"), [(None, "16"), ("20", "20")])
def test_the_command_keeps_idle_blas_threads_from_spinning(given: str | None, seen: str) -> None:
    # OPENBLAS_THREAD_TIMEOUT is read when numpy loads OpenBLAS: the command sets it (unless the
    # user did) before anything imports numpy.
    env = {k: v for k, v in _env().items() if k != "OPENBLAS_THREAD_TIMEOUT"}
    if given is not None:
        env["OPENBLAS_THREAD_TIMEOUT"] = given
    code = (
        "import os, sys\n"
        "import affinity_sdk.cli as cli\n"
        "def main(argv=None):\n"
        "    print(os.environ.get('OPENBLAS_THREAD_TIMEOUT'), 'numpy' in sys.modules)\n"
        "    return 0\n"
        "cli.main = main\n"
        "cli.run()\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [seen, "False"]


# --- 2. --out must not be an input ---------------------------------------------------------------
@pytest.fixture
def shop(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A folder (the cwd) with events, an earlier export, seeds and a config."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "x.jsonl").write_text(EVENTS)
    (tmp_path / "prev.jsonl").write_text(EVENTS)
    (tmp_path / "seeds.txt").write_text("bob\n")
    (tmp_path / "shop.toml").write_text('[signals.order_completed]\nweight = 1.0\nhalf_life = "30d"\n')
    (tmp_path / "sub").mkdir()
    (tmp_path / "link.jsonl").symlink_to("x.jsonl")
    return tmp_path


COMMANDS: dict[str, list[str]] = {
    "score": ["score", "x.jsonl"],
    "affinities": ["affinities", "x.jsonl", "--dimension", "category"],
    "lookalikes": ["lookalikes", "x.jsonl", "--seeds", "seeds.txt"],
    "report": ["report", "x.jsonl", "--previous", "prev.jsonl"],
}


@pytest.mark.parametrize("command", sorted(COMMANDS))
@pytest.mark.parametrize(
    "out",
    ["x.jsonl", "./x.jsonl", "sub/../x.jsonl", "link.jsonl", "ABSOLUTE", "HARDLINK"],
)
def test_out_equal_to_the_events_file_is_refused(
    shop: Path, command: str, out: str, capsys: pytest.CaptureFixture[str]
) -> None:
    if out == "ABSOLUTE":
        out = str(shop / "x.jsonl")
    elif out == "HARDLINK":
        os.link(shop / "x.jsonl", shop / "hard.jsonl")
        out = "hard.jsonl"
    before = _listing(shop)
    assert main([*COMMANDS[command], "--out", out]) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert "is the events file x.jsonl" in line
    assert _listing(shop) == before  # input untouched, nothing written


@pytest.mark.parametrize(
    ("argv", "role"),
    [
        (["report", "x.jsonl", "--previous", "prev.jsonl", "--out", "prev.jsonl"], "--previous file"),
        (["report", "x.jsonl", "--previous", "link.jsonl", "--out", "x.jsonl"], "events file"),
        (["lookalikes", "x.jsonl", "--seeds", "seeds.txt", "--out", "sub/../seeds.txt"], "--seeds file"),
        (["score", "x.jsonl", "--config", "shop.toml", "--out", "shop.toml"], "--config file"),
        (["affinities", "x.jsonl", "--dimension", "brand", "--out", "./link.jsonl"], "events file"),
        # the sidecar written beside a CSV / JSON-lines table counts too
        (["score", "x.jsonl", "--config", "y.csv.meta.json", "--out", "y.csv"], "--config file"),
    ],
)
def test_out_equal_to_any_input_is_refused(
    shop: Path, argv: list[str], role: str, capsys: pytest.CaptureFixture[str]
) -> None:
    (shop / "y.csv.meta.json").write_text("{}")
    before = _listing(shop)
    assert main(argv) == 2
    assert f"is the {role} " in _one_error_line(capsys.readouterr().err)
    assert _listing(shop) == before


def test_a_different_out_still_works(shop: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["score", "x.jsonl", "--config", "shop.toml", "--out", "sub/x.jsonl"]) == 0
    rows = [json.loads(line) for line in (shop / "sub" / "x.jsonl").read_text().splitlines()]
    assert {row["user_id"] for row in rows} == {"ann", "bob"}
    assert (shop / "x.jsonl").read_text() == EVENTS


# --- 3. atomic writes ---------------------------------------------------------------------------
def _columns(n: int = 200) -> dict[str, Any]:
    return {"user_id": [f"u{i}" for i in range(n)], "score": np.linspace(0, 100, n)}


def _fail_after_part(real: Callable[..., None]) -> Callable[..., None]:
    """A writer that writes part of what ``real`` would, then fails like a full disk."""

    def write(columns: Any, fh: BinaryIO, *_: Any, **__: Any) -> None:
        fh.write(b"user_id,score\npartial-row")
        raise OSError(28, "No space left on device")

    return write


@pytest.mark.parametrize(("suffix", "writer"), [(".csv", "_write_csv_binary"), (".jsonl", "_write_jsonl")])
def test_a_failed_table_write_keeps_the_previous_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, suffix: str, writer: str
) -> None:
    out = tmp_path / f"top{suffix}"
    write_columns(_columns(3), out, metadata={"run": "old"})
    before = _listing(tmp_path)
    assert set(before) == {out.name, out.name + ".meta.json"}
    monkeypatch.setattr(results, writer, _fail_after_part(getattr(results, writer)))
    with pytest.raises(OSError, match="No space left"):
        write_columns(_columns(), out, metadata={"run": "new"})
    assert _listing(tmp_path) == before  # old file and sidecar intact, no temporary file


def test_a_failed_sidecar_write_keeps_the_previous_table_and_sidecar(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "top.csv"
    write_columns(_columns(3), out, metadata={"run": "old"})
    before = _listing(tmp_path)

    def broken_meta(metadata: Any, fh: BinaryIO) -> None:
        fh.write(b'{"run": ')
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(results, "_write_meta", broken_meta)
    with pytest.raises(OSError):
        write_columns(_columns(), out, metadata={"run": "new"})
    assert _listing(tmp_path) == before


def test_a_failed_parquet_write_keeps_the_previous_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("pyarrow")
    out = tmp_path / "top.parquet"
    write_columns(_columns(3), out, metadata={"run": "old"})
    before = _listing(tmp_path)

    def broken(pq: Any, table: Any, fh: BinaryIO) -> None:
        fh.write(b"PAR1 half a file")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(results, "_write_parquet", broken)
    with pytest.raises(OSError):
        write_columns(_columns(), out, metadata={"run": "new"})
    assert _listing(tmp_path) == before


def _result() -> ScoreResult:
    return ScoreResult(
        user_ids=["a", "b"],
        raw_score=np.array([3.0, 0.0]),
        score=np.array([23.1, 0.0]),
        tier_code=np.array([2, 0], dtype=np.int8),
        signal_names=("order_completed",),
        decayed=np.array([[0.3], [0.0]]),
        now_ms=0,
        config_version="v1",
        config_fingerprint="f" * 16,
    )


@pytest.mark.parametrize("name", ["scores.csv", "scores.jsonl"])
def test_score_result_save_is_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    out = tmp_path / name
    _result().save(out)
    before = _listing(tmp_path)
    writer = "_write_csv" if name.endswith(".csv") else "_write_jsonl"

    def broken(columns: Any, fh: Any, *_: Any) -> None:
        fh.write("user_id,raw" if name.endswith(".csv") else b'{"user_id":')
        raise RuntimeError("killed mid-write")

    monkeypatch.setattr(results, writer, broken)
    with pytest.raises(RuntimeError):
        _result().save(out)
    with pytest.raises(RuntimeError):  # the format-specific exports too
        (_result().to_csv if name.endswith(".csv") else _result().to_jsonl)(out)
    assert _listing(tmp_path) == before
    monkeypatch.undo()
    _result().save(out)  # and a good write replaces the file
    assert _listing(tmp_path) == before


def test_cli_write_failure_is_one_line_and_keeps_the_previous_output(
    shop: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["score", "x.jsonl", "--out", "scores.csv"]) == 0
    capsys.readouterr()
    before = _listing(shop)
    monkeypatch.setattr(results, "_write_csv_binary", _fail_after_part(results._write_csv_binary))
    assert main(["score", "x.jsonl", "--out", "scores.csv"]) == 2
    assert "No space left on device" in _one_error_line(capsys.readouterr().err)
    assert _listing(shop) == before


def test_atomic_write_keeps_permissions_and_writes_through_a_symlink(tmp_path: Path) -> None:
    real = tmp_path / "real.csv"
    write_columns(_columns(2), real, metadata={})
    real.chmod(0o640)
    (tmp_path / "via.csv").symlink_to("real.csv")
    write_columns(_columns(5), tmp_path / "via.csv", metadata={})
    assert (tmp_path / "via.csv").is_symlink()
    assert real.read_text().count("\n") == 6
    assert real.stat().st_mode & 0o777 == 0o640


# --- 4. Parquet without pyarrow -----------------------------------------------------------------
@pytest.fixture
def no_pyarrow(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [m for m in sys.modules if m == "pyarrow" or m.startswith("pyarrow.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # ``import pyarrow`` raises ImportError


EXTRA = "needs the [arrow] extra: pip install 'affinity_sdk[arrow]'"


@pytest.mark.usefixtures("no_pyarrow")
@pytest.mark.parametrize(
    "argv",
    [
        ["score", "x.jsonl", "--out", "scores.parquet"],
        ["affinities", "x.jsonl", "--dimension", "brand", "--out", "top.parquet"],
        ["lookalikes", "x.jsonl", "--seeds", "seeds.txt", "--out", "like.parquet"],
        ["score", "events.parquet", "--out", "scores.csv"],
        ["report", "x.jsonl", "--previous", "events.parquet", "--out", "r.html"],
    ],
)
def test_parquet_without_pyarrow_is_one_error_line(
    shop: Path, argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    (shop / "events.parquet").write_bytes(b"PAR1")
    before = _listing(shop)
    assert main(argv) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert line.endswith(f"(Parquet) {EXTRA}")
    assert ("reading" if "events.parquet" in argv else "writing") in line
    assert _listing(shop) == before


@pytest.mark.usefixtures("no_pyarrow")
def test_parquet_export_without_pyarrow_raises_a_clear_import_error(tmp_path: Path) -> None:
    with pytest.raises(ImportError, match=r"needs the \[arrow\] extra") as info:
        _result().save(tmp_path / "s.parquet")
    assert isinstance(info.value, results.ArrowMissingError)
    assert list(tmp_path.iterdir()) == []


# --- 5. config values that break scoring --------------------------------------------------------
def _signal(weight: object = 1.0, half_life: object = "1d") -> dict[str, Any]:
    return {"signals": {"order_completed": {"weight": weight, "half_life": half_life}}}


@pytest.mark.parametrize(
    ("weight", "half_life", "message"),
    [
        (1e308, "1d", "`signals.order_completed`.weight must be a finite number with |weight| <= 1e+12"),
        (-1e13, "1d", "`signals.order_completed`.weight must be a finite number with |weight| <= 1e+12"),
        (float("inf"), "1d", "`signals.order_completed`.weight must be a finite number"),
        (1.0, "0s", "`signals.order_completed`.half_life must be > 0 (got '0s')"),
        (1.0, 0, "`signals.order_completed`.half_life must be > 0 (got 0"),
        (1.0, "0d", "`signals.order_completed`.half_life must be > 0"),
    ],
)
def test_config_rejects_weights_and_half_lives_that_break_scores(
    weight: float, half_life: object, message: str
) -> None:
    with pytest.raises(ConfigError) as info:
        ScoringConfig.from_dict(_signal(weight, half_life), source="c.toml")
    assert message in str(info.value)
    assert str(info.value).startswith("c.toml: ")


@pytest.mark.parametrize(("weight", "half_life"), [(1e12, "inf"), (-1e12, "1ms"), (0.0, 1e-3)])
def test_config_accepts_the_edges(weight: float, half_life: object) -> None:
    cfg = ScoringConfig.from_dict(_signal(weight, half_life))
    assert cfg.weights == (weight,)
    assert default_config().fingerprint  # the shipped config still validates


def test_affinity_weights_are_bounded_too() -> None:
    doc = {**_signal(), "affinity": {"signals": {"product_viewed": {"weight": 1e300, "half_life": "1d"}}}}
    with pytest.raises(ConfigError, match=r"affinity\.signals\.product_viewed`\.weight"):
        ScoringConfig.from_dict(doc)


def test_cli_names_the_bad_config_key(shop: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (shop / "bad.toml").write_text('[signals.order_completed]\nweight = 1e308\nhalf_life = "30d"\n')
    assert main(["score", "x.jsonl", "--config", "bad.toml", "--out", "s.csv"]) == 2
    assert "`signals.order_completed`.weight" in _one_error_line(capsys.readouterr().err)
    assert not (shop / "s.csv").exists()


# --- 7. temporary files of a killed save --------------------------------------------------------
KILLED_WRITER = textwrap.dedent(
    """
    import os, sys, time
    import numpy as np
    from affinity_sdk import _persist

    def stuck_fsync(fd):  # the payload is written; hang before the rename
        print("writing", flush=True)
        time.sleep(600)

    _persist.os.fsync = stuck_fsync
    _persist.write_container(sys.argv[1], "demo", {"n": 2}, {"a": np.arange(1000)})
    """
)


def _temps(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


def test_the_next_save_removes_the_temp_file_of_a_killed_writer(tmp_path: Path) -> None:
    target = tmp_path / "state.afs"
    write_container(target, "demo", {"n": 1}, {"a": np.arange(3)})
    child = subprocess.Popen(
        [sys.executable, "-c", KILLED_WRITER, str(target)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(),
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "writing", child.stderr.read() if child.stderr else ""
    finally:
        child.send_signal(signal.SIGKILL)
        child.communicate(timeout=30)
    assert child.returncode == -signal.SIGKILL
    left = _temps(tmp_path)
    assert left and all(name.startswith(f".state.afs.{child.pid}.") for name in left)
    header, _ = read_container(target, "demo")
    assert header == {"n": 1}  # the killed save never replaced the file

    write_container(target, "demo", {"n": 3}, {"a": np.arange(3)})
    assert _temps(tmp_path) == []
    assert read_container(target, "demo")[0] == {"n": 3}


def test_stale_temp_rule_keeps_live_writers_and_other_targets(tmp_path: Path) -> None:
    target = tmp_path / "state.afs"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True)
    dead_pid = int(dead.stdout)  # reaped: no such process any more (pid reuse within ms is unlikely)
    me = os.getpid()
    names = {
        f".state.afs.{dead_pid}.0123abcd.tmp": True,  # its writer is gone
        f".state.afs.{me}.0123abcd.tmp": False,  # a live writer (another thread, say)
        f".state.afs.{me}.89abcdef.tmp": True,  # ... but untouched for over an hour
        ".state.afs.k2j4h5l1.tmp": True,  # an old-style name, over an hour old
        ".state.afs.zz99yy88.tmp": False,  # an old-style name, fresh
        f".state.afs.x.{dead_pid}.0123abcd.tmp": False,  # the temp of target "state.afs.x"
        f".other.afs.{dead_pid}.0123abcd.tmp": False,  # another target
        f".state.afs.{dead_pid}.0123abcd.tmp.keep": False,  # not a temp name
        "state.afs.bak": False,
    }
    old = time.time() - STALE_TEMP_AGE_S - 60
    for name in names:
        (tmp_path / name).write_bytes(b"x")
    for name in (
        f".state.afs.{me}.89abcdef.tmp",
        ".state.afs.k2j4h5l1.tmp",
        f".other.afs.{dead_pid}.0123abcd.tmp",
    ):
        os.utime(tmp_path / name, (old, old))
    removed = remove_stale_temps(target)
    assert sorted(p.name for p in removed) == sorted(n for n, stale in names.items() if stale)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(n for n, stale in names.items() if not stale)
