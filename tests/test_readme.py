"""README's "Command line" runs as written on the files ``affinity demo`` leaves.

A small demo goes into a temporary ``affinity-demo/``; every ``affinity ...`` line of the section's
``bash`` blocks then runs through :func:`affinity_sdk.cli.main` from a temporary working folder,
with ``affinity-demo/`` pointing at the demo's folder (``affinity demo`` itself, and any line with
``[placeholder]`` options, are skipped). The demo's printed next steps must be README's lines.
"""

from __future__ import annotations

import csv
import re
import shlex
from collections.abc import Iterator
from pathlib import Path

import msgspec
import numpy as np
import pytest

from affinity_sdk.activate.rfm import RFM_SEGMENTS, rfm_from_orders
from affinity_sdk.capture import events as ev
from affinity_sdk.cli import main
from affinity_sdk.config import ScoringConfig, default_config
from affinity_sdk.demo import DEMO_GOALS, run_demo
from affinity_sdk.ingest.batch import EventBatch
from affinity_sdk.models.visibility import visible_users
from affinity_sdk.sim.cdnow import cdnow_orders

README = Path(__file__).resolve().parent.parent / "README.md"
DEMO_DIR = "affinity-demo/"


def _section(title: str) -> str:
    text = README.read_text(encoding="utf-8")
    start = text.index(f"\n## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end >= 0 else len(text)]


def _blocks(title: str, language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```", _section(title), re.S | re.M)


def _readme_commands() -> list[str]:
    """The ``affinity`` lines of "Command line", comments dropped, tokens joined by one space."""
    commands = []
    for block in _blocks("Command line", "bash"):
        for line in block.splitlines():
            tokens = shlex.split(line, comments=True)
            if tokens[:1] == ["affinity"]:
                commands.append(shlex.join(tokens))
    return commands


COMMANDS = _readme_commands()
RUNNABLE = [c for c in COMMANDS if not c.startswith("affinity demo") and "[" not in c]


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    """The demo's folder and what it echoed."""
    folder = tmp_path_factory.mktemp("readme") / "affinity-demo"
    echoed: list[str] = []
    status = run_demo(
        customers=300, weeks=6, out=folder, echo=lambda *a: echoed.append(" ".join(map(str, a)))
    )
    assert status == 0
    return folder, echoed


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.chdir(tmp_path)
    yield tmp_path


def _argv(command: str, folder: Path) -> list[str]:
    """``command``'s arguments with ``affinity-demo/...`` pointing into the demo's ``folder``."""
    return [
        str(folder / token[len(DEMO_DIR) :]) if token.startswith(DEMO_DIR) else token
        for token in shlex.split(command)[1:]
    ]


def _rows(path: Path) -> list[list[str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.reader(fh))


def test_readme_lists_every_command() -> None:
    assert {c.split()[1] for c in RUNNABLE} >= {"score", "affinities", "lookalikes", "report"}
    assert all(DEMO_DIR in c for c in RUNNABLE)  # they run on the demo's files


@pytest.mark.parametrize("command", RUNNABLE, ids=[f"{c.split()[1]}-{i}" for i, c in enumerate(RUNNABLE)])
def test_readme_command_runs(command: str, demo: tuple[Path, list[str]], workdir: Path) -> None:
    folder, _ = demo
    argv = _argv(command, folder)
    if argv[0] == "report":
        pytest.importorskip("matplotlib")
    assert main(argv) == 0
    out = workdir / argv[argv.index("--out") + 1]
    assert out.is_file() and out.stat().st_size > 0
    if argv[:2] == ["score", str(folder / "events.ndjson")] and "--now" not in argv:  # as the demo scored
        header, *rows = _rows(out)
        demo_header, *demo_rows = _rows(folder / "scores.csv")
        assert header == demo_header and sorted(rows) == sorted(demo_rows)


def test_demo_leaves_the_inputs(demo: tuple[Path, list[str]]) -> None:
    folder, _ = demo
    batch = EventBatch.from_ndjson((folder / "events.ndjson").read_bytes())
    assert len(batch) > 0
    orders = cdnow_orders(folder / "orders.csv")  # the order-log path reads it
    is_order = batch.event_type == ev.EVENT_TYPE_CODES["order_completed"]
    assert len(orders) == int(is_order.sum()) > 0
    assert sorted(orders.revenue.tolist()) == sorted(batch.revenue[is_order].tolist())
    assert _rows(folder / "orders.csv")[0] == ["sample_id", "date", "dollars", "timestamp"]
    config = ScoringConfig.load(folder / "scoring.toml")
    assert config.fingerprint == default_config().fingerprint
    seeds = (folder / "seeds.txt").read_text(encoding="utf-8").split()
    scored = {row[0] for row in _rows(folder / "scores.csv")[1:]}
    assert 0 < len(seeds) == len(set(seeds)) and set(seeds) <= scored


def test_demo_prints_readmes_commands(demo: tuple[Path, list[str]]) -> None:
    folder, echoed = demo
    printed = [line.strip() for line in echoed if line.strip().startswith("affinity ")]
    assert len(printed) >= 4
    for line in printed:
        tokens = [
            DEMO_DIR + t[len(str(folder)) + 1 :] if t.startswith(f"{folder}/") else t
            for t in shlex.split(line)
        ]
        assert shlex.join(tokens) in COMMANDS


def test_readme_examples_decode() -> None:
    """The event line of "Command line" is a valid event; the TOML of "Configuration" loads."""
    for block in _blocks("Command line", "json"):
        for line in block.splitlines():
            msgspec.json.decode(line, type=ev.Event)
    (toml,) = _blocks("Configuration", "toml")
    assert ScoringConfig.from_toml(toml).version == "spring-2027"


def test_demo_rfm_counts_match_its_order_log(demo: tuple[Path, list[str]]) -> None:
    """rfm.csv, the printed counts and the report's RFM panel agree with RFM recomputed from the
    order log the demo leaves (consenting customers only)."""
    folder, echoed = demo
    header, *rows = _rows(folder / "rfm.csv")
    assert header == ["customer_id", "recency_days", "orders", "revenue", "r", "f", "m", "segment"]
    cutoff = int(msgspec.json.decode((folder / "rfm.csv.meta.json").read_bytes())["cutoff_ms"])
    batch = EventBatch.from_ndjson((folder / "events.ndjson").read_bytes())
    shown = visible_users(batch)
    hidden = {name for name, ok in zip(batch.interners.users.names, shown.tolist(), strict=True) if not ok}
    log = [r for r in _rows(folder / "orders.csv")[1:] if r[0] not in hidden]
    ts = np.array([r[3].rstrip("Z") for r in log], dtype="datetime64[ms]").astype(np.int64)
    table = rfm_from_orders([r[0] for r in log], ts, [float(r[2]) for r in log], cutoff=cutoff)
    assert [r[0] for r in rows] == table.customer_id.tolist() and not hidden & {r[0] for r in rows}
    assert [int(r[2]) for r in rows] == table.orders.tolist()
    assert [(int(r[4]), int(r[5]), int(r[6])) for r in rows] == list(
        zip(table.r.tolist(), table.f.tolist(), table.m.tolist(), strict=True)
    )
    assert [r[7] for r in rows] == table.segment.tolist()
    counts = table.segment_counts()
    printed = {}
    for line in echoed:
        match = re.fullmatch(r"\s+(.+?)\s+([\d,]+) customers \((\d+)%\)", line)
        if match:
            printed[match[1]] = int(match[2].replace(",", ""))
    assert printed == {s.label: counts[s.name] for s in RFM_SEGMENTS}
    assert sum(printed.values()) == len(table) > 50
    report = (folder / "report.html").read_text(encoding="utf-8")
    section = report.split("<h2>RFM segments</h2>", 1)[1].split("</section>", 1)[0]
    shown_counts = dict(re.findall(r'<tr><th class="name">([^<]*)</th><td>([\d,]+)</td>', section))
    assert {k.replace("&#x27;", "'"): int(v.replace(",", "")) for k, v in shown_counts.items()} == printed


def test_demo_fits_the_custom_goals(demo: tuple[Path, list[str]]) -> None:
    """Each custom goal gets a printed AUC and a report card showing the same AUC."""
    folder, echoed = demo
    report = (folder / "report.html").read_text(encoding="utf-8")
    for goal in DEMO_GOALS:
        (line,) = [e for e in echoed if f" {goal.name} " in e and "AUC" in e]
        auc = float(re.search(r"AUC (\d\.\d{3})", line)[1])  # type: ignore[index]
        assert 0.5 < auc <= 1.0
        card = report.split(f"<h2>Custom goal: {goal.name}</h2>", 1)[1].split("</section>", 1)[0]
        assert f"ROC AUC {auc:.3f}" in card and goal.describe() in card
