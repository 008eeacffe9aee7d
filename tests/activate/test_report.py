"""The HTML report: self-contained, renders in headless Chromium, screenshot kept as an artifact."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from affinity_sdk.activate.evaluate import roc_auc
from affinity_sdk.activate.report import ReportInputs, write_report
from affinity_sdk.activate.rfm import RFM_SEGMENTS, RFMTable, rfm_from_orders, rfm_segments
from affinity_sdk.activate.segments import compare_runs, evaluate_segments
from affinity_sdk.models.goals import CartAbandonmentGoal, VipGoal
from affinity_sdk.score.results import ScoreResult

ARTIFACTS = Path(
    os.environ.get("AFFINITY_TEST_ARTIFACTS", Path(__file__).resolve().parents[2] / "test-artifacts")
)


def _result(seed: int, shift: float = 0.0) -> ScoreResult:
    rng = np.random.default_rng(seed)
    n = 3_000
    raw = rng.gamma(0.8, 8.0, n) + shift
    score = 100 * raw / (raw + 10)
    order = np.argsort(-raw)
    tiers = np.zeros(n, dtype=np.int8)
    tiers[order[: n // 10]] = 2
    tiers[order[n // 10 : 4 * n // 10]] = 1
    return ScoreResult(
        user_ids=[f"u{i}" for i in range(n)],
        raw_score=raw,
        score=score,
        tier_code=tiers,
        signal_names=("order_completed", "product_viewed"),
        decayed=np.c_[raw / 10, raw / 2],
        now_ms=1_767_225_600_000,
        config_version="test",
        config_fingerprint="0123456789abcdef",
    )


def _rfm(seed: int) -> RFMTable:
    """RFM of a random order log: 2,000 customers, 1-12 orders each over a year."""
    rng = np.random.default_rng(seed)
    n_orders = rng.geometric(0.45, 2_000).clip(1, 12)
    customer = np.repeat([f"c{i}" for i in range(2_000)], n_orders)
    day = 86_400_000
    ts = rng.integers(0, 365, customer.shape[0]) * day
    revenue = np.round(rng.lognormal(3.5, 0.8, customer.shape[0]), 2)
    return rfm_from_orders(customer, ts, revenue, cutoff=365 * day)


def full_inputs() -> ReportInputs:
    rng = np.random.default_rng(3)
    current, previous = _result(1, shift=1.0), _result(2)
    p = rng.uniform(0, 1, len(current))
    y = (rng.uniform(0, 1, len(current)) < p).astype(int)
    q = rng.uniform(0, 1, 800)
    z = (rng.uniform(0, 1, 800) < q**2).astype(int)
    return ReportInputs(
        result=current,
        top_affinities={
            "category": [("shoes", 0.31), ("bags", 0.22), ("hats", 0.12)],
            "brand": [("acme", 0.4)],
        },
        propensity={"purchase (14d)": (y, p)},
        segments={
            "high_intent": current.tier_code == 2,
            "churn_risk": current.score < 20,
            "vip": current.score > 80,
        },
        previous=previous,
        drift=compare_runs(previous, current),
        goals=[
            (VipGoal(name="vip (2w)", min_revenue=300), z, q),
            (CartAbandonmentGoal(name="cart abandonment (2w)", within="24h"), y[:500], p[:500]),
        ],
        rfm=_rfm(4),
    )


def test_report_is_self_contained(tmp_path: Path) -> None:
    path = write_report(tmp_path / "report.html", full_inputs())
    text = path.read_text()
    for heading in (
        "Tier sizes",
        "Score distribution",
        "What customers love",
        "Propensity: purchase (14d)",
        "Segments",
        "Drift",
        "Custom goal: vip (2w)",
        "Custom goal: cart abandonment (2w)",
        "RFM segments",
    ):
        assert heading in text
    assert text.count("<svg") >= 10
    # no external resources: nothing is fetched over the network when the file is opened
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", text)


@pytest.mark.skipif(
    shutil.which("chromium") is None, reason="Debian's chromium is not installed (.ci/run installs it)"
)
def test_report_renders_in_headless_chromium(tmp_path: Path) -> None:
    path = write_report(tmp_path / "report.html", full_inputs())
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / "report.png"
    shot.unlink(missing_ok=True)
    common = [
        "chromium",
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--hide-scrollbars",
        f"--user-data-dir={tmp_path / 'profile'}",
    ]
    run = subprocess.run(
        [
            *common,
            "--enable-logging=stderr",
            "--v=0",
            "--window-size=1400,3400",
            f"--screenshot={shot}",
            path.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    assert "Uncaught" not in run.stderr and "CONSOLE" not in run.stderr
    assert shot.exists() and shot.stat().st_size > 20_000  # a real picture, not a blank page
    dom = subprocess.run(
        [*common, "--dump-dom", path.as_uri()], capture_output=True, text=True, timeout=120, check=True
    ).stdout
    assert dom.count("<svg") >= 10 and "Propensity: purchase (14d)" in dom and "RFM segments" in dom


def test_report_command_scores_an_event_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from affinity_sdk.cli import main
    from affinity_sdk.sim.shop import simulate_shop

    sim = simulate_shop(300, weeks=4, seed=3)
    sim.write_ndjson(tmp_path / "now.ndjson")
    simulate_shop(300, weeks=3, seed=3).write_ndjson(tmp_path / "before.ndjson")
    out = tmp_path / "r.html"
    argv = ["report", str(tmp_path / "now.ndjson"), "--previous", str(tmp_path / "before.ndjson")]
    assert main([*argv, "--title", "Nightly", "--out", str(out)]) == 0
    text = out.read_text()
    for heading in ("Nightly", "Tier sizes", "Score distribution", "What customers love", "Drift"):
        assert heading in text
    assert "drift: PSI" in capsys.readouterr().out
    assert main(["report", str(tmp_path / "missing.ndjson"), "--out", str(out)]) == 2
    assert capsys.readouterr().err.startswith("affinity: error: cannot read")


def test_report_numbers_match_the_score_result(tmp_path: Path) -> None:
    """The headline numbers and the tier-size bars show the ScoreResult's own counts."""
    inputs = full_inputs()
    r = inputs.result
    counts = r.tier_counts()
    assert len({counts["low"], counts["medium"], counts["high"]}) == 3  # a swap would show
    text = write_report(tmp_path / "report.html", inputs).read_text()
    kpis = dict((label, value) for value, label in re.findall(r"<b>([^<]*)</b><span>([^<]*)</span>", text))
    assert kpis["users scored"] == f"{len(r):,}"
    assert kpis["High tier"] == f"{counts['high'] / len(r):.0%}"
    assert kpis["Medium tier"] == f"{counts['medium'] / len(r):.0%}"
    assert kpis["median score"] == f"{float(np.median(r.score)):.1f}"
    section = text.split("<h2>Tier sizes</h2>", 1)[1].split("</section>", 1)[0]
    bars = re.findall(r"([\d,]+) \((\d+)%\)", section)
    # Bars are drawn bottom-up: low, medium, high.
    assert [int(n.replace(",", "")) for n, _ in bars] == [counts[t] for t in ("low", "medium", "high")]
    assert [int(p) for _, p in bars] == [round(100 * counts[t] / len(r)) for t in ("low", "medium", "high")]


def _section(text: str, heading: str) -> str:
    return text.split(f"<h2>{heading}</h2>", 1)[1].split("</section>", 1)[0]


def test_report_rfm_panel_shows_the_segment_counts_of_the_data(tmp_path: Path) -> None:
    inputs = full_inputs()
    table = inputs.rfm
    assert table is not None
    text = write_report(tmp_path / "report.html", inputs).read_text()
    section = _section(text, "RFM segments")
    rows = re.findall(
        r'<tr><th class="name">([^<]*)</th><td>([\d,]+)</td><td>(\d+)%</td>'
        r'<td class="text">([^<]+)</td><td class="text">([^<]+)</td></tr>',
        section,
    )
    # Counts straight from the data: the segment rules evaluated on the table's scores.
    masks = evaluate_segments(rfm_segments(), table.frame())
    expected = {s.label.replace("'", "&#x27;"): int(masks[s.name].sum()) for s in RFM_SEGMENTS}
    shown = {label: int(count.replace(",", "")) for label, count, _, _, _ in rows}
    assert shown == expected and sum(shown.values()) == len(table) == 2_000
    assert len({c for c in shown.values()}) > 5  # a mix-up of rows would show
    assert [int(share) for _, _, share, _, _ in rows] == [
        round(100 * masks[s.name].sum() / len(table)) for s in RFM_SEGMENTS
    ]
    assert all(len(what) > 20 and len(todo) > 20 for _, _, _, what, todo in rows)
    # The R x FM grid's cells add up to the customers, and name each cell's count.
    grid_text = section.split("Customers per R x FM cell", 1)[0].split("Customers per RFM segment", 1)[1]
    cells = [
        int(v.replace(",", ""))
        for v in re.findall(r"font-size: 7px;[^>]*text-anchor: middle[^>]*>([\d,]+)</text>", grid_text)
    ]
    grid = np.zeros((5, 5), dtype=int)
    np.add.at(grid, (table.r - 1, table.fm - 1), 1)
    assert sorted(cells) == sorted(grid.ravel().tolist())
    assert f"{len(table):,} customers with an order" in section


def test_report_goal_cards_show_each_goals_numbers(tmp_path: Path) -> None:
    inputs = full_inputs()
    text = write_report(tmp_path / "report.html", inputs).read_text()
    for goal, y, p in inputs.goals:
        card = _section(text, f"Custom goal: {goal.name}")
        assert f"Goal: {goal.describe()}." in card.replace("&#x27;", "'")
        assert f"ROC AUC {roc_auc(y, p):.3f}" in card
    auc_vip = roc_auc(*inputs.goals[0][1:])
    auc_cart = roc_auc(*inputs.goals[1][1:])
    assert f"{auc_vip:.3f}" != f"{auc_cart:.3f}"  # the cards do not share one number
