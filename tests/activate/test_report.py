"""The HTML report: its structure and numbers, checked in the HTML itself (no browser needed;
``test_report_screens.py`` renders it in headless Chromium)."""

from __future__ import annotations

import csv
import html
import json
import re
from pathlib import Path

import numpy as np
import pytest

from affinity_sdk.activate.evaluate import roc_auc
from affinity_sdk.activate.report import ReportInputs, actions_path, write_report
from affinity_sdk.activate.report_charts import TIER_COLOURS, TIER_NAMES, score_bins, tier_cutoffs
from affinity_sdk.activate.report_text import GLOSSARY, describe_segments
from affinity_sdk.activate.rfm import RFM_SEGMENTS, RFMTable, rfm_from_orders, rfm_segments
from affinity_sdk.activate.segments import (
    compare_runs,
    evaluate_segments,
    frame_from_result,
    psi_level,
    standard_segments,
)
from affinity_sdk.config import default_config
from affinity_sdk.errors import ConfigError
from affinity_sdk.models.goals import CartAbandonmentGoal, VipGoal
from affinity_sdk.score.results import ScoreResult

N_NEGATIVE = 40  # users whose unsubscribes outweigh their activity: raw < 0, score 0
N_INACTIVE = 25  # users with no scored activity at all
N_FADED = 20  # users whose activity is many half-lives old: 0 < score < 1


def _result(seed: int, shift: float = 0.0) -> ScoreResult:
    rng = np.random.default_rng(seed)
    n = 3_000
    raw = rng.gamma(0.8, 8.0, n) + shift
    decayed = np.c_[raw / 10, raw / 2, np.zeros(n)]
    raw[:N_NEGATIVE] = -1.5
    decayed[:N_NEGATIVE] = [0.05, 0.5, 0.7]
    raw[N_NEGATIVE : N_NEGATIVE + N_INACTIVE] = 0.0
    decayed[N_NEGATIVE : N_NEGATIVE + N_INACTIVE] = 0.0
    faded = slice(N_NEGATIVE + N_INACTIVE, N_NEGATIVE + N_INACTIVE + N_FADED)
    raw[faded] = 0.05
    decayed[faded] = [0.001, 0.08, 0.0]
    positive = np.maximum(raw, 0.0)
    score = 100 * positive / (positive + 10)
    order = np.argsort(-raw, kind="stable")
    tiers = np.zeros(n, dtype=np.int8)
    tiers[order[: n // 10]] = 2
    tiers[order[n // 10 : 4 * n // 10]] = 1
    return ScoreResult(
        user_ids=[f"u{i}" for i in range(n)],
        raw_score=raw,
        score=score,
        tier_code=tiers,
        signal_names=("order_completed", "product_viewed", "unsubscribed"),
        decayed=decayed,
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


def _frame(result: ScoreResult, seed: int = 5) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    n = len(result)
    return frame_from_result(
        result,
        p_purchase=rng.uniform(0, 1, n),
        p_churn=rng.uniform(0, 1, n),
        p_unsubscribe=rng.uniform(0, 0.3, n),
        discount_tier=rng.integers(0, 3, n),
        favourite_brand=rng.integers(-1, 4, n),
    )


def full_inputs(top_n: int = 20) -> ReportInputs:
    rng = np.random.default_rng(3)
    current, previous = _result(1, shift=1.0), _result(2)
    p = rng.uniform(0, 1, len(current))
    y = (rng.uniform(0, 1, len(current)) < p).astype(int)
    q = rng.uniform(0, 1, 800)
    z = (rng.uniform(0, 1, 800) < q**2).astype(int)
    frame = _frame(current)
    segments = standard_segments(frame, ["acme", "zest", "kilo", "oslo"])
    return ReportInputs(
        result=current,
        top_affinities={
            "category": [("shoes", 0.31), ("bags", 0.22), ("hats", 0.12)],
            "brand": [("acme", 0.4)],
        },
        propensity={"purchase (14d)": (y, p)},
        segments=evaluate_segments(segments, frame),
        segment_info=describe_segments(segments),
        user_columns={k: frame[k] for k in ("p_purchase", "p_churn", "p_unsubscribe")},
        previous=previous,
        drift=compare_runs(previous, current),
        goals=[
            (VipGoal(name="vip (2w)", min_revenue=300), z, q),
            (CartAbandonmentGoal(name="cart abandonment (2w)", within="24h"), y[:500], p[:500]),
        ],
        rfm=_rfm(4),
        config=default_config(),
        top_n=top_n,
    )


def _section(text: str, anchor: str) -> str:
    """The card with id ``anchor``, or (a heading) the card whose title starts with it."""
    marker = f'id="{anchor}"' if re.fullmatch(r"[a-z-]+", anchor) else f"<h2>{anchor}"
    return text.split(marker, 1)[1].split("</section>", 1)[0]


def _plain(html_text: str) -> str:
    return html.unescape(re.sub(r"<[^>]+>", "", html_text))


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> tuple[ReportInputs, str, Path]:
    inputs = full_inputs()
    path = write_report(tmp_path_factory.mktemp("report") / "report.html", inputs)
    return inputs, path.read_text(), path


def test_report_is_self_contained(report: tuple[ReportInputs, str, Path]) -> None:
    _, text, _ = report
    for heading in (
        "Tiers: who is in each and what to do",
        "Users to act on",
        "Segments: who is in each and what to do",
        "Trends since the previous run",
        "What customers love",
        "Propensity: purchase (14d)",
        "Custom goal: vip (2w)",
        "Custom goal: cart abandonment (2w)",
        "RFM segments",
        "Glossary",
    ):
        assert f"<h2>{heading}</h2>" in text
    assert text.count("<svg") >= 14
    # no external resources and no script: nothing is fetched or run when the file is opened
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", text)
    assert "<script" not in text


def test_report_numbers_match_the_score_result(report: tuple[ReportInputs, str, Path]) -> None:
    """The headline numbers, the tier-size bars and each tier's line show the result's own data."""
    inputs, text, _ = report
    r = inputs.result
    counts = r.tier_counts()
    assert len({counts["low"], counts["medium"], counts["high"]}) == 3  # a swap would show
    kpis = dict((label, value) for value, label in re.findall(r"<b>([^<]*)</b><span>([^<]*)</span>", text))
    assert kpis["users scored"] == f"{len(r):,}"
    assert kpis["High tier"] == f"{counts['high'] / len(r):.0%}"
    assert kpis["Medium tier"] == f"{counts['medium'] / len(r):.0%}"
    assert kpis["median score"] == f"{float(np.median(r.score)):.1f}"
    section = _section(text, "tiers")
    chart = section.split('aria-label="users per tier"', 1)[1].split("</svg>", 1)[0]
    bars = re.findall(r"([\d,]+) \((\d+)%\)", chart)
    # Bars are drawn bottom-up: low, medium, high.
    assert [int(n.replace(",", "")) for n, _ in bars] == [counts[t] for t in ("low", "medium", "high")]
    assert [int(p) for _, p in bars] == [round(100 * counts[t] / len(r)) for t in ("low", "medium", "high")]
    # One line per tier: who (the config's plan), how many, the score range, what to do.
    lines = dict(re.findall(r'<li data-tier="(\w+)">(.*?)</li>', section))
    assert list(lines) == ["high", "medium", "low"]
    plan = {
        "high": "the top 10% by score",
        "medium": "the next 30% by score",
        "low": "the bottom 60% by score",
    }
    for code, tier in ((2, "high"), (1, "medium"), (0, "low")):
        line = _plain(lines[tier])
        scores = r.score[r.tier_code == code]
        assert line.startswith(f"{TIER_NAMES[code]} {counts[tier]:,} users ({counts[tier] / len(r):.0%})")
        assert f"score {scores.min():.1f}-{scores.max():.1f}" in line
        assert plan[tier] in line and "What to do:" in line


def test_users_at_score_zero_are_explained_from_the_data(report: tuple[ReportInputs, str, Path]) -> None:
    inputs, text, _ = report
    r = inputs.result
    n_zero = int((r.score == 0).sum())
    negative = int(((r.score == 0) & (r.raw_score < 0)).sum())
    inactive = int(((r.score == 0) & (np.abs(r.decayed).sum(axis=1) == 0)).sum())
    faded = int(((r.score > 0) & (r.score < 1)).sum())
    assert (negative, inactive) == (N_NEGATIVE, N_INACTIVE) and faded >= N_FADED
    note = _plain(text.split('id="zero-scores">', 1)[1].split("</div>", 1)[0])
    assert note.startswith(f"{n_zero:,} users score 0: {negative:,} because negative signals")
    assert f"{inactive:,} with no scored activity at all" in note
    assert f"Another {faded:,} score above 0 but below 1" in note and "half-lives 14d, 30d" in note


def test_segment_lines_show_size_rule_and_action(report: tuple[ReportInputs, str, Path]) -> None:
    inputs, text, _ = report
    lines = dict(re.findall(r'<li data-segment="([^"]+)">(.*?)</li>', _section(text, "segments")))
    assert list(lines) == list(inputs.segments)
    for name, mask in inputs.segments.items():
        line = _plain(lines[name])
        info = inputs.segment_info[name]
        size = int(mask.sum())
        assert line.startswith(f"{name}: {size:,} users")
        assert info.who in line and f"What to do: {info.todo}" in line and len(info.todo) > 10
        assert f"Rule: {info.rule}" in line
    # thresholds computed from data read as 3 digits, not 16
    assert re.search(r"p_purchase &gt;= 0\.\d{1,3}\)", lines["vip_prospects"])


def _read_actions(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_actions_csv_lists_the_top_users_of_each_segment(tmp_path: Path) -> None:
    inputs = full_inputs(top_n=7)
    path = write_report(tmp_path / "weekly.html", inputs)
    assert actions_path(path) == tmp_path / "weekly_actions.csv"
    rows = _read_actions(tmp_path / "weekly_actions.csv")
    assert list(rows[0]) == ["segment", "rank", "user_id", "score", "reason"]
    meta = json.loads((tmp_path / "weekly_actions.csv.meta.json").read_text())
    assert meta["config_fingerprint"] == inputs.result.config_fingerprint and meta["top_n"] == "7"
    r = inputs.result
    row_of = {u: i for i, u in enumerate(r.user_ids)}
    text = path.read_text()
    for name, mask in inputs.segments.items():
        listed = [row for row in rows if row["segment"] == name]
        assert len(listed) == min(7, int(mask.sum()))
        assert [int(row["rank"]) for row in listed] == list(range(1, len(listed) + 1))
        idx = [row_of[row["user_id"]] for row in listed]
        assert mask[idx].all()  # members only
        rank_by = inputs.segment_info[name].rank_by
        key = inputs.user_columns[rank_by] if rank_by else r.score
        # the segment's best users: nobody left out ranks above the last one listed
        assert np.all(np.diff(key[idx]) <= 0)
        if listed:
            assert key[mask].max() == key[idx[0]]
            assert np.sum(key[mask] > key[idx[-1]]) <= len(listed) - 1
        for row, i in zip(listed, idx, strict=True):
            assert float(row["score"]) == round(float(r.score[i]), 1)
            assert row["reason"].startswith(f"{TIER_NAMES[r.tier_code[i]]} tier, score {r.score[i]:.1f}")
            if rank_by:
                assert f"{rank_by} {key[i]:.2f}" in row["reason"]
        # the HTML lists the same users in the same order
        block = text.split(f'data-segment="{name}"><summary>', 1)[1].split("</details>", 1)[0]
        assert re.findall(r"<tr><td>\d+</td><td>([^<]+)</td>", block) == [row["user_id"] for row in listed]
    # the reason names the signal that contributes most (weight x decayed value)
    config = default_config()
    weights = np.array([config.signals[name].weight for name in r.signal_names])
    for row in rows:
        contribution = r.decayed[row_of[row["user_id"]]] * weights
        assert f"mostly {r.signal_names[int(np.argmax(contribution))]} (" in row["reason"]


def test_without_segments_the_tiers_are_the_action_lists(tmp_path: Path) -> None:
    r = _result(1)
    path = write_report(tmp_path / "report.html", ReportInputs(result=r, top_n=3))
    rows = _read_actions(tmp_path / "report_actions.csv")
    assert [row["segment"] for row in rows] == ["High tier"] * 3 + ["Medium tier"] * 3 + ["Low tier"] * 3
    best = np.argsort(-r.score, kind="stable")[:3]
    assert [row["user_id"] for row in rows[:3]] == [r.user_ids[i] for i in best]
    assert "High tier: top 3 of" in path.read_text()
    with pytest.raises(ConfigError, match="top_n"):
        write_report(tmp_path / "bad.html", ReportInputs(result=r, top_n=0))
    assert not (tmp_path / "bad.html").exists() and not (tmp_path / "bad_actions.csv").exists()


def test_trends_show_the_tier_transitions_and_movers(report: tuple[ReportInputs, str, Path]) -> None:
    inputs, text, _ = report
    before, after = inputs.previous, inputs.result
    assert before is not None
    # transition counts computed here, independently of compare_runs
    expected = np.zeros((3, 3), dtype=int)
    where = {u: i for i, u in enumerate(before.user_ids)}
    for j, u in enumerate(after.user_ids):
        if u in where:
            expected[before.tier_code[where[u]], after.tier_code[j]] += 1
    section = _section(text, "trends")
    table = section.split('class="transitions">', 1)[1].split("</table>", 1)[0]
    shown = [
        [int(v.replace(",", "")) for v in re.findall(r"<td>([\d,]+)</td>", row)]
        for row in table.split("<tbody>", 1)[1].split("</tr>")[:3]
    ]
    order = [2, 1, 0]  # High, Medium, Low
    assert shown == [[*expected[a, order].tolist(), int(expected[a].sum())] for a in order]
    assert expected.sum() == len(after) and expected[0, 1] > 0 and expected[1, 0] > 0
    delta = after.score - before.score  # same users, same order in these fixtures
    risers = section.split("Biggest risers", 1)[1].split("</table>", 1)[0]
    first = re.findall(r"<tr><td>([^<]+)</td>", risers)[0]
    assert first == after.user_ids[int(np.argmax(delta))]
    drift = inputs.drift
    assert drift is not None
    verdict = _plain(section.split('id="drift-verdict">', 1)[1].split("</p>", 1)[0])
    assert verdict.startswith(f"PSI {drift.psi:.3f}: ")
    assert ("Drift alert" in verdict) == drift.alert and f"{len(drift.skipped):,} skipped a tier" in verdict


def test_trends_without_a_drift_report_still_show_transitions(tmp_path: Path) -> None:
    before, after = _result(2), _result(1)
    text = write_report(tmp_path / "r.html", ReportInputs(result=after, previous=before)).read_text()
    assert "<h3>Tier transitions</h3>" in _section(text, "trends")


def test_drift_rule_is_quiet_on_a_normal_week_and_fires_on_a_broken_run() -> None:
    from affinity_sdk.ingest.batch import take_rows
    from affinity_sdk.score.scorer import Scorer
    from affinity_sdk.sim.shop import simulate_shop

    sim = simulate_shop(3_000, weeks=10, seed=1)

    def run(end: int) -> ScoreResult:
        scorer = Scorer()
        scorer.ingest(take_rows(sim.batch, sim.batch.ts_ms <= end))
        return scorer.score(end)

    before, after = run(sim.end_ms - 7 * 86_400_000), run(sim.end_ms)
    normal = compare_runs(before, after)
    # a normal week: plenty of users move 25+ points as activity decays or resumes...
    assert len(normal.jumped) / normal.n_common > 0.02
    # ... but the score distribution is stable and hardly anyone skips a tier: no alert
    assert normal.level == "stable" and not normal.alert, normal.reasons
    assert len(normal.skipped) / normal.n_common < 0.01
    # ids mixed up between runs: same distribution (PSI unchanged), tiers scrambled: alert
    shuffled = np.random.default_rng(0).permutation(len(after))
    broken = ScoreResult(
        user_ids=[after.user_ids[i] for i in shuffled],
        raw_score=after.raw_score,
        score=after.score,
        tier_code=after.tier_code,
        signal_names=after.signal_names,
        decayed=after.decayed,
        now_ms=after.now_ms,
        config_version=after.config_version,
        config_fingerprint=after.config_fingerprint,
    )
    bad = compare_runs(before, broken)
    assert bad.alert and bad.psi == normal.psi and "skipped a tier" in bad.reasons[0]
    assert [psi_level(v) for v in (0.003, 0.099, 0.1, 0.25, 0.26)] == [
        "stable",
        "stable",
        "moderate",
        "moderate",
        "alert",
    ]


def test_glossary_defines_every_term_the_report_uses(report: tuple[ReportInputs, str, Path]) -> None:
    inputs, text, _ = report
    glossary = _section(text, "glossary")
    entries = re.findall(r'<dt id="g-([^"]+)">([^<]+)</dt><dd>([^<]+)</dd>', glossary)
    terms = {term: meaning for _, term, meaning in entries}
    for term in (
        "Score",
        "Raw score",
        "Tier",
        "Cut-off",
        "Hysteresis",
        "ROC AUC",
        "Brier score",
        "Calibration",
        "PSI",
        "(2w), (14d)",
        "RFM",
        "Half-life",
        "Lift",
        "Cumulative gain",
    ):
        assert len(terms.get(term, "")) > 40, term
    for goal, _, _ in inputs.goals:
        assert terms[goal.name] == f"Custom goal: {goal.describe()}.".replace("'", "&#x27;")
    # every glossary link in the report lands on an entry
    anchors = {a for a, _, _ in entries}
    links = set(re.findall(r'href="#g-([^"]+)"', text))
    assert links and links <= anchors
    assert len(entries) == len(GLOSSARY) + len(inputs.goals)


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_score_bins_hold_one_tier_each(seed: int) -> None:
    r = _result(seed, shift=seed / 2)
    cuts = tier_cutoffs(r)
    edges = score_bins(list(cuts.values()))
    assert set(cuts.values()) <= set(edges.tolist()) and edges[0] == 0 and edges[-1] == 100
    assert np.diff(edges).max() <= 2.5 + 1e-9
    which = np.clip(np.searchsorted(edges, r.score, side="right") - 1, 0, len(edges) - 2)
    for b in np.unique(which):
        assert len(np.unique(r.tier_code[which == b])) == 1, (
            f"bin {edges[b]}-{edges[b + 1]} straddles a cut-off"
        )


def test_tier_names_and_colours_are_one_spelling_everywhere(report: tuple[ReportInputs, str, Path]) -> None:
    _, text, _ = report
    svg_words = re.findall(r"<text[^>]*>\s*([^<]*?)\s*</text>", text)
    tier_words = {w.split()[0] for w in svg_words if w and w.split()[0].lower() in ("high", "medium", "low")}
    assert tier_words == set(TIER_NAMES)  # legends, axes, cut-off labels: never "high" or "HIGH"
    tiers = _section(text, "tiers")
    for colour in TIER_COLOURS:  # both tier charts and the HTML badges use the same colours
        assert tiers.split('aria-label="users per tier"', 1)[1].split("</svg>")[0].count(colour) >= 1
        assert tiers.split('aria-label="score distribution')[1].split("</svg>")[0].count(colour) >= 1
    for code, colour in enumerate(TIER_COLOURS):
        assert re.search(rf"\.t{code}\{{background:{colour}", text)


def test_charts_scale_to_their_cards_and_pairs_share_a_shape(report: tuple[ReportInputs, str, Path]) -> None:
    _, text, _ = report
    roots = re.findall(r"<svg [^>]*>", text)
    assert len(roots) >= 14
    box: dict[str, list[tuple[float, float]]] = {}
    for root in roots:
        # no fixed size: the CSS makes each chart as wide as its card (they used to fill 60 %)
        assert ' width="' not in root and ' height="' not in root and 'class="chart"' in root
        label = re.search(r'aria-label="([^"]+)"', root)
        size = re.search(r'viewBox="0 0 ([\d.]+) ([\d.]+)"', root)
        assert label and size
        box.setdefault(label.group(1), []).append((float(size.group(1)), float(size.group(2))))
    assert "svg.chart{display:block;width:100%;height:auto}" in text
    # charts shown side by side have one shape, so their axes line up
    for group in (
        ["users per tier", "score distribution with tier cut-offs"],
        ["lift and cumulative gains per decile", "calibration"],
        ["users per segment", "segment overlap"],
        ["customers per RFM segment", "customers per R x FM cell"],
        ["favourite category", "favourite brand"],
    ):
        shapes = {s for label in group for s in box[label]}
        assert len(shapes) == 1, (group, shapes)


def test_report_command_scores_an_event_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from affinity_sdk.cli import main
    from affinity_sdk.sim.shop import simulate_shop

    sim = simulate_shop(300, weeks=4, seed=3)
    sim.write_ndjson(tmp_path / "now.ndjson")
    simulate_shop(300, weeks=3, seed=3).write_ndjson(tmp_path / "before.ndjson")
    out = tmp_path / "r.html"
    argv = ["report", str(tmp_path / "now.ndjson"), "--previous", str(tmp_path / "before.ndjson")]
    assert main([*argv, "--title", "Nightly", "--top", "4", "--out", str(out)]) == 0
    text = out.read_text()
    for heading in ("Nightly", "Tiers: who", "Users to act on", "What customers love", "Glossary"):
        assert heading in text
    printed = capsys.readouterr().out
    assert re.search(r"drift: PSI \d\.\d{3} \((stable|moderate|alert)\)", printed)
    assert f"wrote {out} and {tmp_path / 'r_actions.csv'}" in printed
    # what --help promises is in the report
    assert main(["report", "--help"]) == 0
    promised = " ".join(capsys.readouterr().out.split())
    assert "tier transition matrix" in promised and "<h3>Tier transitions</h3>" in text
    assert "risers and fallers" in promised and "Biggest risers" in text and "Biggest fallers" in text
    assert "_actions.csv" in promised and "glossary" in promised and 'id="glossary"' in text
    rows = _read_actions(tmp_path / "r_actions.csv")
    assert {row["segment"] for row in rows} == {"High tier", "Medium tier", "Low tier"}
    assert max(int(row["rank"]) for row in rows) == 4
    assert main(["report", str(tmp_path / "now.ndjson"), "--top", "0", "--out", str(out)]) == 2
    assert "--top must be at least 1" in capsys.readouterr().err
    assert main(["report", str(tmp_path / "missing.ndjson"), "--out", str(out)]) == 2
    assert capsys.readouterr().err.startswith("affinity: error: cannot read")


def test_report_command_has_a_channel_panel_only_for_files_with_messages(tmp_path: Path) -> None:
    from affinity_sdk.cli import main

    opened = b'{"type":"email_opened","user_id":"u%d","timestamp":%d}\n'
    app = b'{"type":"app_opened","user_id":"u%d","timestamp":%d}\n'
    day = 86_400_000
    plain = b"".join(app % (u, 1_767_225_600_000 + u * day) for u in range(30))
    (tmp_path / "plain.ndjson").write_bytes(plain)
    (tmp_path / "messages.ndjson").write_bytes(plain + opened % (3, 1_767_225_600_000 + 40 * day))
    for name, has_panel in (("plain", False), ("messages", True)):
        out = tmp_path / f"{name}.html"
        assert main(["report", str(tmp_path / f"{name}.ndjson"), "--out", str(out)]) == 0
        assert ('id="channels"' in out.read_text()) == has_panel, name


def test_report_rfm_panel_shows_the_segment_counts_of_the_data(
    report: tuple[ReportInputs, str, Path],
) -> None:
    inputs, text, _ = report
    table = inputs.rfm
    assert table is not None
    section = _section(text, "rfm")
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
    grid_text = section.split('aria-label="customers per R x FM cell"', 1)[1].split("</svg>", 1)[0]
    cells = [
        int(v.replace(",", ""))
        for v in re.findall(r"font-size: 8px;[^>]*text-anchor: middle[^>]*>([\d,]+)</text>", grid_text)
    ]
    grid = np.zeros((5, 5), dtype=int)
    np.add.at(grid, (table.r - 1, table.fm - 1), 1)
    assert sorted(cells) == sorted(grid.ravel().tolist())
    assert f"{len(table):,} customers with an order" in section


def test_report_goal_cards_show_each_goals_numbers(report: tuple[ReportInputs, str, Path]) -> None:
    inputs, text, _ = report
    for goal, y, p in inputs.goals:
        card = _plain(_section(text, f"Custom goal: {goal.name}"))
        assert f"Goal: {goal.describe()}." in card
        assert f"ROC AUC {roc_auc(y, p):.3f}" in card
        assert f"{np.mean(y):.1%} reached it" in card
    auc_vip = roc_auc(*inputs.goals[0][1:])
    auc_cart = roc_auc(*inputs.goals[1][1:])
    assert f"{auc_vip:.3f}" != f"{auc_cart:.3f}"  # the cards do not share one number
    card = _plain(_section(text, "Propensity: purchase (14d)"))
    assert "places an order within the next 14 days" in card


@pytest.fixture(scope="module")
def channel_report(tmp_path_factory: pytest.TempPathFactory) -> tuple[object, ReportInputs, str]:
    """A report of a simulated shop whose scorer keeps the engagement view (email deliveries on)."""
    from affinity_sdk.activate.report_text import channel_panel
    from affinity_sdk.score.scorer import Scorer
    from affinity_sdk.sim.shop import simulate_shop

    sim = simulate_shop(1_500, weeks=6, seed=12, deliveries=True)
    scorer = Scorer(views=("signals", "engagement"))
    scorer.ingest(sim.batch)
    inputs = ReportInputs(result=scorer.score(sim.end_ms), channels=channel_panel(scorer.store, sim.end_ms))
    text = write_report(tmp_path_factory.mktemp("channels") / "report.html", inputs).read_text()
    return scorer, inputs, text


def test_channel_panel_counts_match_the_channel_table(
    channel_report: tuple[object, ReportInputs, str],
) -> None:
    from affinity_sdk.capture.events import MEDIA
    from affinity_sdk.models.channels import DEFAULT_CAPS, channel_table
    from affinity_sdk.score.scorer import Scorer

    scorer, inputs, text = channel_report
    assert isinstance(scorer, Scorer)
    now = inputs.result.now_ms
    table = channel_table(scorer.store, now)  # computed here, apart from the report's panel
    section = _section(text, "channels")
    rows = re.findall(
        r'<tr><td><span data-medium="(\w+)">[^<]*</span></td><td>([\d,]+)</td><td>([\d,]+)</td>'
        r"<td>([^<]+)</td><td>([^<]+)</td></tr>",
        section,
    )
    assert [medium for medium, *_ in rows] == list(MEDIA)
    n = len(table["user_id"])
    for medium, reach, best, share, rate in rows:
        mine = table["best_channel"] == medium
        assert int(reach.replace(",", "")) == int(scorer.contact_mask(medium).sum())
        assert int(best.replace(",", "")) == int(mine.sum())
        assert share.replace("&lt;", "<") in (f"{mine.sum() / n:.0%}", "<1%")
        assert rate == (f"{table['channel_rate'][mine].mean():.1%}" if mine.any() else "-")
    shown = {medium: int(best.replace(",", "")) for medium, _, best, _, _ in rows}
    assert shown["email"] > 0 and shown["push"] > 0 and sum(shown.values()) <= n
    # unsubscribing opts out of email alone: fewer may be emailed than pushed
    reach = {medium: int(r.replace(",", "")) for medium, r, *_ in rows}
    assert reach["email"] < reach["push"] == n
    fatigued = int(np.count_nonzero(table["fatigued"]))
    assert fatigued > 0
    lead = _plain(section.split('<p class="lead">', 1)[1].split("</p>", 1)[0])
    assert f"{fatigued:,} users (" in lead
    for medium, (count, window) in DEFAULT_CAPS.items():
        assert f"{medium} {count} in {window}" in lead
    # the send-hour chart's data: users per best hour, as the channel table has them
    panel = inputs.channels
    assert panel is not None
    hours = table["best_send_hour"]
    assert list(panel.send_hours) == np.bincount(hours[hours >= 0], minlength=24).tolist()
    assert (
        'aria-label="users per best send hour"' in section
        and 'aria-label="users per best channel"' in section
    )
    assert '<a href="#channels">Channels</a>' in text
    glossary = _section(text, "glossary")
    for term in ("Best channel", "Best send hour", "Fatigued"):
        assert f">{term}</dt>" in glossary


def test_without_the_engagement_view_there_is_no_channel_panel(
    report: tuple[ReportInputs, str, Path],
) -> None:
    from affinity_sdk.activate.report_text import channel_panel
    from affinity_sdk.score.scorer import Scorer

    inputs, text, _ = report
    assert inputs.channels is None
    assert 'id="channels"' not in text and "Channels and send times" not in text
    assert "#channels" not in text and ">Fatigued</dt>" not in text
    assert channel_panel(Scorer().store) is None  # the scorer's default store keeps no engagement view
