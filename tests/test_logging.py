"""Logging and progress: the library logs through ``logging`` and prints nothing unless the
application configures it; ``affinity -v`` / ``-vv`` / ``-q`` set what the command shows;
``--progress`` draws on stderr only; an error is still one line."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from affinity_sdk.cli import main
from affinity_sdk.cli.propensity import WEEK_MS, iso_utc
from affinity_sdk.ingest.batch import EventBatch
from affinity_sdk.score.scorer import Scorer
from affinity_sdk.sim.shop import simulate_shop

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    folder = tmp_path_factory.mktemp("shop")
    sim = simulate_shop(300, weeks=6, horizon_weeks=1, seed=3)
    events = folder / "events.ndjson"
    sim.write_ndjson(events)
    model = folder / "model.bin"
    cutoff = iso_utc(int(EventBatch.from_ndjson(events.read_bytes()).ts_ms.max()) - 2 * WEEK_MS)
    assert main(["-q", "propensity", "fit", str(events), "--cutoff", cutoff, "--out", str(model)]) == 0
    return {"events": events, "model": model, "cutoff": cutoff}


def _score(shop: dict[str, Any], out: Path, *options: str) -> list[str]:
    return [
        "propensity",
        "score",
        str(shop["events"]),
        "--model",
        str(shop["model"]),
        "--out",
        str(out),
        *options,
    ]


def test_the_library_prints_nothing_unless_configured(tmp_path: Path) -> None:
    """Import, ingest, score, save and load (which log at DEBUG and INFO) in a fresh process that
    configures no logging: nothing on stderr, no handler on the root logger, a NullHandler only on
    the package's."""
    script = textwrap.dedent(
        f"""
        import logging, sys
        import affinity_sdk
        from affinity_sdk.score.scorer import Scorer
        line = b'{{"type":"app_opened","user_id":"u","timestamp":1700000000000}}'
        scorer = Scorer()
        scorer.ingest(line)
        scorer.score()
        scorer.save({str(tmp_path / "state.bin")!r})
        Scorer.load({str(tmp_path / "state.bin")!r}).score()
        package = logging.getLogger("affinity_sdk")
        assert logging.getLogger().handlers == [], logging.getLogger().handlers
        assert [type(h).__name__ for h in package.handlers] == ["NullHandler"], package.handlers
        assert package.level == logging.NOTSET
        print("ok")
        """
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout == "ok\n"
    assert run.stderr == ""


def test_the_scorer_logs_save_and_load(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    scorer = Scorer()
    scorer.ingest(b'{"type":"app_opened","user_id":"u","timestamp":1700000000000}')
    with caplog.at_level(logging.DEBUG, logger="affinity_sdk"):
        scorer.score()
        scorer.save(tmp_path / "state.bin")
        Scorer.load(tmp_path / "state.bin")
    messages = [(r.name, r.levelname, r.getMessage()) for r in caplog.records]
    assert ("affinity_sdk.score.scorer", "DEBUG") == messages[0][:2] and "scored 1 users" in messages[0][2]
    assert any(level == "INFO" and msg.startswith("saved the state of 1 users") for _, level, msg in messages)
    assert any(
        level == "INFO" and msg.startswith("loaded the state of 1 users") for _, level, msg in messages
    )


def test_verbosity_levels(shop: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "p.csv"
    assert main(_score(shop, out)) == 0
    quiet_default = capsys.readouterr()
    assert "INFO" not in quiet_default.err and "wrote" in quiet_default.out

    assert main(["-v", *_score(shop, out)]) == 0
    err = capsys.readouterr().err
    assert "INFO affinity_sdk.cli.propensity: read " in err
    assert "INFO affinity_sdk.cli.propensity: scored " in err
    assert "INFO affinity_sdk.cli.propensity: wrote " in err
    assert "DEBUG" not in err

    # the options also work after the command, and -vv adds DEBUG lines (here: the model's coefficients)
    argv = [
        "propensity",
        "fit",
        str(shop["events"]),
        "--cutoff",
        shop["cutoff"],
        "--out",
        str(tmp_path / "m"),
    ]
    assert main([*argv, "-vv"]) == 0
    assert "DEBUG affinity_sdk.cli.propensity: coefficients: " in capsys.readouterr().err

    assert main(["-q", *_score(shop, out)]) == 0
    assert capsys.readouterr() == ("", "")


def test_main_leaves_logging_as_it_was(shop: dict[str, Any], tmp_path: Path) -> None:
    package = logging.getLogger("affinity_sdk")
    handlers, level = list(package.handlers), package.level
    assert main(["-vv", *_score(shop, tmp_path / "p.csv")]) == 0
    assert main(["-v", "propensity", "fit", str(shop["events"]), "--cutoff", "nope", "--out", "x"]) == 2
    assert package.handlers == handlers and package.level == level


def test_progress_goes_to_stderr_only(
    shop: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "p.csv"
    assert main(_score(shop, out, "--progress")) == 0
    shown = capsys.readouterr()
    assert "\r" in shown.err and "4/4 done" in shown.err and shown.err.endswith("\n")
    assert "\r" not in shown.out and "[#" not in shown.out

    # off by default when stderr is not a terminal (as here), and with --no-progress
    for options in ((), ("--no-progress",)):
        assert main(_score(shop, out, *options)) == 0
        assert "\r" not in capsys.readouterr().err


def test_an_error_is_still_one_line(
    shop: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    late = iso_utc(int(EventBatch.from_ndjson(shop["events"].read_bytes()).ts_ms.max()))
    argv = ["propensity", "fit", str(shop["events"]), "--cutoff", late, "--out", str(tmp_path / "m")]
    assert main(["-v", *argv, "--progress"]) == 2
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("affinity: error: ")]
    assert len(errors) == 1 and "before the last label window ends" in errors[0]
    assert err.endswith(errors[0] + "\n") and "Traceback" not in err

    assert main(["-q", *argv]) == 2  # quiet drops the summary lines, never the error
    quiet = capsys.readouterr()
    assert quiet.out == "" and quiet.err.splitlines() == errors
