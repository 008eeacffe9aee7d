"""A single, self-contained HTML report (inline SVG charts, no script, no network needed to view
it) that a marketer can act on, plus the users to act on as a CSV beside it.

Sections, each shown when its data is given: headline numbers; the tiers, a line each saying who
is in it and what to do, with the score distribution (bins cut at the tier cut-offs) and why
users score 0; the users to act on (top N per segment, or per tier when no segments are given;
also written to ``<name>_actions.csv``); segments, a line each with their rule; trends since a
previous run (PSI, tier transitions, biggest movers); top affinities; lift / cumulative gains and
calibration per propensity model and custom goal (:mod:`affinity_sdk.models.goals`); RFM
segments (:mod:`affinity_sdk.activate.rfm`); channels and send times when the scorer's store keeps
the ``engagement`` view (per medium: who may be contacted, whose best channel it is and its
shrunk rate; users per best send hour; the fatigued and the caps, see
:func:`~affinity_sdk.activate.report_text.channel_panel`); and a glossary of every term. Charts come from
:mod:`~affinity_sdk.activate.report_charts`, words from :mod:`~affinity_sdk.activate.report_text`.
matplotlib (extra ``[report]``) is imported only when a report is written.

Examples
--------
>>> import numpy as np, tempfile, os
>>> from affinity_sdk.score.results import ScoreResult
>>> r = ScoreResult(user_ids=["a", "b", "c"], raw_score=np.array([9.0, 3.0, 0.0]),
...                 score=np.array([47.4, 23.1, 0.0]), tier_code=np.array([2, 1, 0], dtype=np.int8),
...                 signal_names=("order_completed",), decayed=np.array([[0.9], [0.3], [0.0]]),
...                 now_ms=0, config_version="v1", config_fingerprint="f" * 16)
>>> path = write_report(os.path.join(tempfile.mkdtemp(), "report.html"), ReportInputs(result=r))
>>> "Tiers" in path.read_text(), actions_path(path).name
(True, 'report_actions.csv')
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Final

import numpy as np
from numpy.typing import NDArray

from affinity_sdk._persist import write_atomically
from affinity_sdk.activate import report_charts as charts
from affinity_sdk.activate import report_text as words
from affinity_sdk.activate.segments import DriftReport
from affinity_sdk.errors import ConfigError
from affinity_sdk.score.results import ScoreResult, write_columns

if TYPE_CHECKING:
    from affinity_sdk.activate.rfm import RFMTable
    from affinity_sdk.config import ScoringConfig
    from affinity_sdk.models.affinity import TopAffinities
    from affinity_sdk.models.goals import Goal

__all__ = ["ReportInputs", "actions_path", "favourite_shares", "write_report"]

#: Users listed per segment in the HTML and the actions CSV unless told otherwise.
DEFAULT_TOP_N: Final = 20
#: Biggest risers and fallers listed in the trends section.
N_MOVERS: Final = 10


@dataclass
class ReportInputs:
    """What the report shows; every field but ``result`` is optional."""

    result: ScoreResult
    title: str = "Customer affinity & propensity"
    #: dimension -> [(value, share of users whose favourite it is)], largest first
    top_affinities: Mapping[str, Sequence[tuple[str, float]]] = field(default_factory=dict)
    #: model name -> (outcomes 0/1, predicted probabilities)
    propensity: Mapping[str, tuple[NDArray[Any], NDArray[np.float64]]] = field(default_factory=dict)
    #: segment name -> membership mask aligned with ``result.user_ids``
    segments: Mapping[str, NDArray[np.bool_]] = field(default_factory=dict)
    #: segment name -> who is in it, what to do, its rule (see ``report_text.describe_segments``)
    segment_info: Mapping[str, words.SegmentInfo] = field(default_factory=dict)
    #: per-user columns aligned with ``result.user_ids`` (``p_churn`` ...) that order and explain
    #: the users to act on
    user_columns: Mapping[str, NDArray[Any]] = field(default_factory=dict)
    #: custom goals: (goal, outcomes 0/1, predicted probabilities), a card each
    goals: Sequence[tuple[Goal, NDArray[Any], NDArray[np.float64]]] = ()
    #: RFM scores and segments of the customers with an order
    rfm: RFMTable | None = None
    #: best channel, send hour and fatigue (``report_text.channel_panel`` of the scorer's store;
    #: ``None`` when it keeps no engagement view: then the report has no channel panel)
    channels: words.ChannelPanel | None = None
    previous: ScoreResult | None = None
    drift: DriftReport | None = None
    #: the scoring config: tier plan, signal weights and half-lives, for the words
    config: ScoringConfig | None = None
    #: users to act on per segment
    top_n: int = DEFAULT_TOP_N
    notes: Sequence[str] = ()


def favourite_shares(
    top: TopAffinities, users: NDArray[np.bool_] | None = None, n: int = 8
) -> list[tuple[str, float]]:
    """The ``n`` values that are most often a user's favourite (top-1), with the share of ``users``
    (default: all with one) they are the favourite of: the input to the report's affinity charts.

    Examples
    --------
    >>> import numpy as np
    >>> from affinity_sdk.models.affinity import TopAffinities
    >>> top = TopAffinities("brand", np.array([[0], [1], [1], [-1]]), np.ones((4, 1)), ["acme", "zest"])
    >>> favourite_shares(top)
    [('zest', 0.6666666666666666), ('acme', 0.3333333333333333)]
    """
    first = top.codes[:, 0] if users is None else top.codes[users, 0]
    first = first[first >= 0]
    share = np.bincount(first, minlength=len(top.names)) / max(len(first), 1)
    order = np.argsort(-share, kind="stable")[:n]
    return [(top.names[i], float(share[i])) for i in order.tolist() if share[i] > 0]


def actions_path(report: str | Path) -> Path:
    """The CSV of users to act on that :func:`write_report` writes beside ``report``:
    ``report.html`` -> ``report_actions.csv``."""
    p = Path(report)
    return p.with_name(f"{p.stem}_actions.csv")


def _e(text: object) -> str:
    return html.escape(str(text))


def _pct(share: float) -> str:
    """A share as a whole percentage; a small non-zero one as ``<1%`` rather than ``0%``."""
    return "<1%" if 0 < share < 0.005 else f"{share:.0%}"


def _tier(code: int) -> str:
    return f'<span class="tier t{code}">{charts.TIER_NAMES[code]}</span>'


def _card(title: str, body: str, anchor: str = "") -> str:
    ident = f' id="{anchor}"' if anchor else ""
    return f'<section class="card"{ident}><h2>{_e(title)}</h2>{body}</section>'


def _table(head: Sequence[str], rows: Sequence[Sequence[str]], cls: str = "") -> str:
    """A table whose cells are already HTML; it scrolls within its card on a narrow screen."""
    th = "".join(f"<th>{h}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    table = f'<table class="{cls}"><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>'
    return f'<div class="scroll">{table}</div>'


def _glance(r: ScoreResult) -> str:
    counts = r.tier_counts()
    n = max(len(r), 1)
    kpis = [
        (f"{len(r):,}", "users scored"),
        (f"{counts['high'] / n:.0%}", "High tier"),
        (f"{counts['medium'] / n:.0%}", "Medium tier"),
        (f"{float(np.median(r.score)) if len(r) else 0:.1f}", "median score"),
    ]
    body = "".join(f'<div class="kpi"><b>{v}</b><span>{_e(k)}</span></div>' for v, k in kpis)
    return _card("At a glance", f'<div class="kpis">{body}</div>')


def _tiers(inputs: ReportInputs) -> str:
    r = inputs.result
    lines = []
    for t in words.tier_lines(r, inputs.config):
        span = f"score {t.low:.1f}-{t.high:.1f}" if t.low is not None and t.high is not None else "empty"
        lines.append(
            f'<li data-tier="{t.name.lower()}">{_tier(t.code)} <b>{t.count:,} users ({_pct(t.share)})</b>, '
            f"{span}: {_e(t.who)}. <b>What to do:</b> {_e(t.todo)}</li>"
        )
    cut = words.cutoff_text(r)
    zero = words.zero_score_note(words.zero_scores(r), inputs.config)
    body = (
        f'<ul class="lines">{"".join(lines)}</ul>'
        f'<div class="pair">{charts.tier_chart(r)}{charts.score_chart(r)}</div>'
        f'<div class="caption">Cut-offs (the lowest score in each tier): {_e(cut or "none")}. '
        f"Bars are cut at the cut-offs, so each bar holds one tier.</div>"
        f'<div class="caption" id="zero-scores">{_e(zero)}</div>'
    )
    return _card("Tiers: who is in each and what to do", body, "tiers")


def _action_lists(
    top_n: int, csv_name: str, table: Mapping[str, list[Any]], masks: Mapping[str, NDArray[np.bool_]]
) -> str:
    blocks = []
    for i, name in enumerate(masks):
        rows = [
            (str(rank), _e(user), f"{score:.1f}", _e(reason))
            for seg, rank, user, score, reason in zip(
                table["segment"],
                table["rank"],
                table["user_id"],
                table["score"],
                table["reason"],
                strict=True,
            )
            if seg == name
        ]
        size = int(np.count_nonzero(masks[name]))
        open_ = " open" if i == 0 else ""
        summary = f"{_e(name)}: top {len(rows):,} of {size:,} users" if rows else f"{_e(name)}: no users"
        listing = _table(["rank", "user", "score", "why"], rows, "actions") if rows else "<p>No users.</p>"
        blocks.append(
            f'<details{open_} data-segment="{_e(name)}"><summary>{summary}</summary>{listing}</details>'
        )
    return (
        f'<p class="caption">The {top_n} users to contact first in each segment, most likely '
        f"first; every list is also in <code>{_e(csv_name)}</code> beside this file.</p>" + "".join(blocks)
    )


def _segments(inputs: ReportInputs) -> str:
    n = max(len(inputs.result), 1)
    lines = []
    for name, mask in inputs.segments.items():
        size = int(np.count_nonzero(mask))
        info = inputs.segment_info.get(name)
        text = f'<li data-segment="{_e(name)}"><b>{_e(name)}</b>: <b>{size:,} users ({_pct(size / n)})</b>'
        if info is not None:
            text += f". {_e(info.who)}. <b>What to do:</b> {_e(info.todo)}."
            if info.rule:
                text += f' <span class="rule">Rule: <code>{_e(info.rule)}</code></span>'
        lines.append(text + "</li>")
    size_svg, overlap_svg = charts.segment_charts(inputs.segments)
    body = f'<ul class="lines">{"".join(lines)}</ul><div class="pair">{size_svg}{overlap_svg}</div>'
    return _card("Segments: who is in each and what to do", body, "segments")


_PSI_WORDS: Final = {"stable": "no real change", "moderate": "a moderate shift", "alert": "a large shift"}


def _trends(inputs: ReportInputs) -> str:
    from affinity_sdk.activate.segments import compare_runs

    previous, r = inputs.previous, inputs.result
    assert previous is not None
    d = inputs.drift if inputs.drift is not None else compare_runs(previous, r)
    verdict = f"Drift alert: {'; '.join(d.reasons)}" if d.alert else "No drift alert"
    summary = (
        f'<p class="{"alert" if d.alert else "lead"}" id="drift-verdict">PSI {d.psi:.3f}: '
        f"{_PSI_WORDS[d.level]} in the score distribution (below 0.1 no change, 0.1-0.25 moderate, "
        f"above 0.25 alert). {_e(verdict)}. {d.n_common:,} users are in both runs; "
        f"{len(d.skipped):,} skipped a tier (Low ↔ High).</p>"
    )
    order = (2, 1, 0)
    head = ["was ↓ now →", *(_tier(c) for c in order), "total"]
    rows = [
        [_tier(a), *(f"{int(d.transitions[a, b]):,}" for b in order), f"{int(d.transitions[a].sum()):,}"]
        for a in order
    ]
    new = len(set(r.user_ids) - set(previous.user_ids))
    gone = len(set(previous.user_ids) - set(r.user_ids))
    transitions = (
        "<div><h3>Tier transitions</h3>"
        + _table(head, rows, "transitions")
        + '<p class="caption">Rows: tier in the previous run; columns: tier now. New since the '
        f"previous run: {new:,} users; no longer scored: {gone:,}.</p></div>"
    )
    up, down = words.movers(previous, r, N_MOVERS)
    lists = []
    for title, group in (("Biggest risers: nudge them while warm", up), ("Biggest fallers", down)):
        cells = [
            [_e(m.user_id), f"{m.before:.1f} → {m.after:.1f}", f"{m.tier_before} → {m.tier_after}"]
            for m in group
        ]
        lists.append(f"<div><h3>{title}</h3>{_table(['user', 'score', 'tier'], cells, 'movers')}</div>")
    body = (
        f'{summary}<div class="pair">{transitions}{charts.drift_chart(previous, r)}</div>'
        f'<div class="pair">{"".join(lists)}</div>'
    )
    return _card("Trends since the previous run", body, "trends")


def _model(title: str, label: str, y: NDArray[Any], p: NDArray[np.float64], intro: str, did: str) -> str:
    from affinity_sdk.activate.evaluate import brier_score, gains_table, reliability_table, roc_auc

    table = gains_table(y, p, 10)
    rel = reliability_table(y, p, 10)
    rate = float(np.mean(y)) if len(y) else 0.0
    body = (
        f'<p class="lead">{_e(intro)} {rate:.1%} {did}. Target the top deciles first: the top 10 % by '
        f"probability hold {table.cum_gain[0]:.0%} of those who {did} (lift {table.lift[0]:.1f}×).</p>"
        f'<div class="pair">{charts.lift_chart(table.lift, table.cum_gain)}'
        f"{charts.calibration_chart(rel.mean_predicted, rel.observed_rate)}</div>"
        f'<div class="caption"><a href="#g-roc-auc">ROC AUC {roc_auc(y, p):.3f}</a> · '
        f'<a href="#g-brier-score">Brier {brier_score(y, p):.3f}</a> · '
        f'<a href="#g-calibration">calibration error {rel.ece:.3f}</a> · '
        f"top decile captures {table.cum_gain[0]:.0%} of outcomes (lift {table.lift[0]:.1f}×)</div>"
    )
    return _card(f"{title}{label}", body)


def _affinities(inputs: ReportInputs) -> str:
    items = [charts.affinity_chart(dim, vals) for dim, vals in inputs.top_affinities.items() if vals]
    body = (
        '<p class="lead">The share of customers whose favourite each value is: what to feature in '
        f'campaigns and on the home page.</p><div class="trio">{"".join(items)}</div>'
    )
    return _card("What customers love", body, "affinities")


def _rfm(table: RFMTable) -> str:
    from affinity_sdk.activate.rfm import RFM_SEGMENTS

    counts = table.segment_counts()
    n = max(len(table), 1)
    rows = "".join(
        f'<tr><th class="name">{_e(s.label)}</th><td>{counts[s.name]:,}</td>'
        f'<td>{counts[s.name] / n:.0%}</td><td class="text">{_e(s.description)}</td>'
        f'<td class="text">{_e(s.action)}</td></tr>'
        for s in RFM_SEGMENTS
    )
    when = datetime.fromtimestamp(table.cutoff_ms / 1000, tz=UTC).strftime("%Y-%m-%d")
    size_svg, grid_svg = charts.rfm_charts(table)
    body = (
        f'<div class="pair">{size_svg}{grid_svg}</div>'
        f'<div class="scroll"><table class="rfm"><thead><tr><th class="name">segment</th><th>customers</th>'
        '<th>share</th><th class="text">who they are</th><th class="text">what to do</th></tr></thead>'
        f"<tbody>{rows}</tbody></table></div>"
        f'<div class="caption">{len(table):,} customers with an order by {when}; recency, frequency '
        "and monetary scores 1-5 by quintile (5 = best), segments on the R x FM grid.</div>"
    )
    return _card("RFM segments", body, "rfm")


def _channels(panel: words.ChannelPanel) -> str:
    n = max(panel.n_users, 1)
    rows = []
    for medium, reach, best, rate in zip(
        panel.media, panel.reach, panel.best_for, panel.mean_rate, strict=True
    ):
        shown = "-" if rate != rate else f"{rate:.1%}"
        rows.append(
            [
                f'<span data-medium="{_e(medium)}">{_e(medium.replace("_", "-"))}</span>',
                f"{reach:,}",
                f"{best:,}",
                _pct(best / n),
                shown,
            ]
        )
    head = ["medium", "may contact", "best channel for", "share", "their expected rate"]
    channel_svg, hour_svg = charts.channel_charts(panel.media, panel.best_for, panel.send_hours)
    when = datetime.fromtimestamp(panel.now_ms / 1000, tz=UTC).strftime("%Y-%m-%d")
    body = (
        '<p class="lead">Send each customer on their <a href="#g-best-channel">best channel</a> at '
        'their <a href="#g-best-send-hour">best send hour</a>, and hold back the '
        f'<a href="#g-fatigued">fatigued</a>: <b id="fatigued-count">{panel.fatigued:,} users '
        f"({_pct(panel.fatigued / n)})</b> are at a message cap as of {when} "
        f"(caps: {_e(panel.caps_text())}).</p>"
        f'<div class="pair">{channel_svg}{hour_svg}</div>'
        + _table(head, rows, "channels")
        + f'<div class="caption">{panel.n_users:,} users. "May contact": not opted out of the medium. '
        "Their expected rate: the mean shrunk open-or-click rate on the medium of the users whose best "
        "channel it is. Send hours are the customer's local hour where their events carry a time zone, "
        "else UTC.</div>"
    )
    return _card("Channels and send times", body, "channels")


def _glossary(inputs: ReportInputs) -> str:
    entries = [*words.GLOSSARY, *words.goal_glossary([g for g, _, _ in inputs.goals])]
    if inputs.channels is not None:
        entries += words.CHANNEL_GLOSSARY
    items = "".join(f'<dt id="g-{_slug(term)}">{_e(term)}</dt><dd>{_e(text)}</dd>' for term, text in entries)
    return _card("Glossary", f'<dl class="glossary">{items}</dl>', "glossary")


def _slug(term: str) -> str:
    return "-".join("".join(c if c.isalnum() else " " for c in term.lower()).split())


_CSS: Final = """
*{box-sizing:border-box}
body{font-family:'DejaVu Sans',Helvetica,Arial,sans-serif;margin:0;background:#f1f5f9;color:#1e293b;
line-height:1.45}
header{background:#0f172a;color:#f8fafc;padding:24px 32px}
header h1{margin:0;font-size:24px} header p{margin:6px 0 0;color:#94a3b8;font-size:13px}
nav{margin-top:10px;font-size:13px}
nav a{color:#99f6e4;margin-right:14px;text-decoration:none;white-space:nowrap;display:inline-block}
main{padding:20px 32px;display:grid;grid-template-columns:minmax(0,1fr);gap:20px;max-width:1280px;
margin:0 auto}
.card{background:#fff;border-radius:12px;padding:18px 20px;box-shadow:0 1px 3px rgba(15,23,42,.08);
min-width:0}
.card h2{margin:0 0 10px;font-size:16px;color:#0f172a} .card h3{font-size:14px;margin:16px 0 6px}
.kpis{display:grid;grid-template-columns:repeat(auto-fit,minmax(130px,1fr));gap:12px}
.kpi{background:#f8fafc;border-radius:10px;padding:12px 14px}
.kpi b{display:block;font-size:24px} .kpi span{font-size:12px;color:#64748b}
.pair{display:grid;grid-template-columns:repeat(auto-fit,minmax(min(340px,100%),1fr));gap:16px;
align-items:start;margin-top:8px}
.trio{display:grid;grid-template-columns:repeat(auto-fit,minmax(min(240px,100%),1fr));gap:12px;
align-items:start}
svg.chart{display:block;width:100%;height:auto}
.lines{margin:0;padding-left:18px;font-size:13px} .lines li{margin:6px 0}
.lead{font-size:13px;margin:0 0 6px}
.tier{display:inline-block;border-radius:6px;padding:0 7px;font-weight:bold;font-size:12px}
.t2{background:#0f766e;color:#fff} .t1{background:#f59e0b;color:#1e293b} .t0{background:#cbd5e1;color:#1e293b}
.caption{font-size:12px;color:#475569;margin-top:6px} .caption a,.lead a{color:inherit}
.alert{color:#b91c1c;font-weight:bold;font-size:13px}
.rule{color:#475569;font-size:12px} code{font-size:11px;overflow-wrap:anywhere}
.scroll{overflow-x:auto;max-width:100%}
table{border-collapse:collapse;font-size:12px;margin-top:6px}
td,th{padding:4px 10px;border-bottom:1px solid #e2e8f0;text-align:right;vertical-align:top}
table.actions :is(td,th):nth-child(2),table.actions :is(td,th):nth-child(4),
table.movers :is(td,th):first-child,table.transitions td:first-child,
table.channels :is(td,th):first-child{text-align:left}
.rfm{width:100%} .rfm .name,.rfm .text{text-align:left} .rfm .text{min-width:180px}
details{margin:6px 0;font-size:13px} summary{cursor:pointer;font-weight:bold}
dl.glossary{display:grid;grid-template-columns:minmax(90px,180px) minmax(0,1fr);gap:6px 16px;
font-size:13px;margin:0} dt{font-weight:bold} dd{margin:0}
footer{padding:10px 32px 30px;font-size:11px;color:#64748b;max-width:1280px;margin:0 auto}
@media (max-width:640px){header{padding:16px} main{padding:12px;gap:12px} .card{padding:14px}
td,th{padding:4px 6px}
dl.glossary{grid-template-columns:minmax(0,1fr)} dd{margin-bottom:6px}}
"""


def write_report(path: str | Path, inputs: ReportInputs) -> Path:
    """Write the report to ``path`` (one HTML file with inline SVG) and the users to act on to
    :func:`actions_path` of it (``segment, rank, user_id, score, reason``, with a ``.meta.json``),
    both atomically, and return the report's path. Without segments the tiers are the lists."""
    if inputs.top_n < 1:
        raise ConfigError(f"the report's top_n must be at least 1 (got {inputs.top_n})")
    r = inputs.result
    target = Path(path)
    csv_path = actions_path(target)
    if inputs.segments:
        masks: Mapping[str, NDArray[np.bool_]] = inputs.segments
        info: Mapping[str, words.SegmentInfo] = inputs.segment_info
    else:
        masks, info = words.tier_segments(r)
    weights = {k: s.weight for k, s in inputs.config.signals.items()} if inputs.config is not None else None
    table = words.action_table(
        r, masks, info, user_columns=inputs.user_columns, weights=weights, top_n=inputs.top_n
    )
    sections = [("tiers", "Tiers"), ("actions", "Users to act on")]
    cards = [_glance(r), _tiers(inputs)]
    actions = _action_lists(inputs.top_n, csv_path.name, table, masks)
    cards.append(_card("Users to act on", actions, "actions"))
    if inputs.segments:
        sections.append(("segments", "Segments"))
        cards.append(_segments(inputs))
    if inputs.previous is not None:
        sections.append(("trends", "Trends"))
        cards.append(_trends(inputs))
    if inputs.top_affinities:
        sections.append(("affinities", "Affinities"))
        cards.append(_affinities(inputs))
    for name, (y, p) in inputs.propensity.items():
        intro = f"The probability that a customer {words.describe_outcome(name)}. In the evaluation data,"
        cards.append(
            _model("Propensity: ", name, np.asarray(y), np.asarray(p, dtype=np.float64), intro, "did")
        )
    for goal, y, p in inputs.goals:
        intro = f"Goal: {goal.describe()}. The probability that a customer reaches it. Of those judged,"
        y_goal, p_goal = np.asarray(y), np.asarray(p, dtype=np.float64)
        cards.append(_model("Custom goal: ", goal.name, y_goal, p_goal, intro, "reached it"))
    if inputs.rfm is not None:
        sections.append(("rfm", "RFM"))
        cards.append(_rfm(inputs.rfm))
    if inputs.channels is not None:
        sections.append(("channels", "Channels"))
        cards.append(_channels(inputs.channels))
    for note in inputs.notes:
        cards.append(f'<section class="card"><div class="caption">{_e(note)}</div></section>')
    sections.append(("glossary", "Glossary"))
    cards.append(_glossary(inputs))
    when = datetime.fromtimestamp(r.now_ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M UTC")
    nav = "".join(f'<a href="#{a}">{t}</a>' for a, t in sections)
    page = (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>{_e(inputs.title)}</title><style>{_CSS}</style></head><body>"
        f"<header><h1>{_e(inputs.title)}</h1><p>scores as of {when} · config "
        f"{_e(r.config_version)} ({_e(r.config_fingerprint)})</p><nav>{nav}</nav></header>"
        f"<main>{''.join(cards)}</main>"
        "<footer>affinity_sdk report · self-contained: no network needed to view it</footer></body></html>"
    )
    metadata = {**r.metadata, "top_n": str(inputs.top_n), "report": target.name}
    write_columns(table, csv_path, metadata=metadata)
    data = page.encode("utf-8")

    def write_page(fh: BinaryIO) -> None:
        fh.write(data)

    write_atomically([(target, write_page)])
    return target
