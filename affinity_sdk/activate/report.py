"""A single, self-contained HTML report (inline SVG charts, no network needed to view it).

Sections, each shown when its data is given: headline numbers and tier sizes, the score
distribution with the tier cut-offs, top affinities, lift / cumulative gains and calibration per
propensity model and per custom goal (:mod:`affinity_sdk.models.goals`), segment sizes and
overlaps, RFM segments (:mod:`affinity_sdk.activate.rfm`: sizes, the R x FM grid, what each
segment means and what to do), and score drift between two runs. Charts are drawn
with matplotlib (extra ``[report]``), imported only when a report is written.

Examples
--------
>>> import numpy as np, tempfile, os
>>> from affinity_sdk.score.results import ScoreResult
>>> r = ScoreResult(user_ids=["a", "b", "c"], raw_score=np.array([9.0, 3.0, 0.0]),
...                 score=np.array([47.4, 23.1, 0.0]), tier_code=np.array([2, 1, 0], dtype=np.int8),
...                 signal_names=("order_completed",), decayed=np.array([[0.9], [0.3], [0.0]]),
...                 now_ms=0, config_version="v1", config_fingerprint="f" * 16)
>>> path = write_report(os.path.join(tempfile.mkdtemp(), "report.html"), ReportInputs(result=r))
>>> "Tier sizes" in path.read_text()
True
"""

from __future__ import annotations

import html
import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import numpy as np
from numpy.typing import NDArray

from affinity_sdk.activate.segments import DriftReport
from affinity_sdk.score.results import ScoreResult

if TYPE_CHECKING:
    from affinity_sdk.activate.rfm import RFMTable
    from affinity_sdk.models.affinity import TopAffinities
    from affinity_sdk.models.goals import Goal

__all__ = ["ReportInputs", "favourite_shares", "write_report"]

TIER_COLOURS: Final = {"high": "#0f766e", "medium": "#f59e0b", "low": "#cbd5e1"}
INK: Final = "#1e293b"
MUTED: Final = "#64748b"
ACCENT: Final = "#0f766e"


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
    #: custom goals: (goal, outcomes 0/1, predicted probabilities), a card each
    goals: Sequence[tuple[Goal, NDArray[Any], NDArray[np.float64]]] = ()
    #: RFM scores and segments of the customers with an order
    rfm: RFMTable | None = None
    previous: ScoreResult | None = None
    drift: DriftReport | None = None
    notes: Sequence[str] = ()


def _plt() -> Any:
    try:
        import matplotlib
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("the HTML report needs matplotlib: pip install 'affinity_sdk[report]'") from exc
    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    plt.rcParams.update(
        {
            "font.family": "DejaVu Sans",
            "font.size": 10,
            "axes.edgecolor": "#cbd5e1",
            "axes.labelcolor": INK,
            "axes.titleweight": "bold",
            "axes.titlesize": 11,
            "axes.spines.top": False,
            "axes.spines.right": False,
            "xtick.color": MUTED,
            "ytick.color": MUTED,
            "svg.fonttype": "none",
        }
    )
    return plt


def _svg(fig: Any) -> str:
    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight", transparent=True)
    _plt().close(fig)
    text = buf.getvalue()
    return text[text.index("<svg") :]


def _tier_chart(result: ScoreResult) -> str:
    plt = _plt()
    counts = result.tier_counts()
    labels = ["high", "medium", "low"]
    fig, ax = plt.subplots(figsize=(5.2, 2.6))
    bars = ax.barh(
        labels[::-1], [counts[t] for t in labels[::-1]], color=[TIER_COLOURS[t] for t in labels[::-1]]
    )
    total = max(len(result), 1)
    for bar, tier in zip(bars, labels[::-1], strict=True):
        ax.text(
            bar.get_width(),
            bar.get_y() + bar.get_height() / 2,
            f"  {counts[tier]:,} ({counts[tier] / total:.0%})",
            va="center",
            color=INK,
        )
    ax.set_xlim(0, max(counts.values()) * 1.35 + 1)
    ax.set_xticks([])
    ax.spines["bottom"].set_visible(False)
    ax.set_title("Users per tier", loc="left")
    return _svg(fig)


def _score_chart(result: ScoreResult) -> str:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7.0, 2.8))
    bins = np.linspace(0, 100, 41)
    for code, tier in ((0, "low"), (1, "medium"), (2, "high")):
        ax.hist(
            result.score[result.tier_code == code], bins=bins, color=TIER_COLOURS[tier], label=tier.title()
        )
    for code, tier, height in ((1, "medium", 0.80), (2, "high", 0.95)):  # staggered: cut-offs may be close
        members = result.score[result.tier_code >= code]
        if members.size:
            cut = float(members.min())
            ax.axvline(cut, color=TIER_COLOURS[tier], linestyle="--", linewidth=1.2)
            ax.text(cut, ax.get_ylim()[1] * height, f" {tier} ≥ {cut:.1f}", color=INK, fontsize=8, va="top")
    ax.set_xlabel("score (0-100)")
    ax.set_ylabel("users")
    ax.legend(frameon=False, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    ax.set_title("Score distribution and tier cut-offs", loc="left")
    return _svg(fig)


def _affinity_chart(dimension: str, values: Sequence[tuple[str, float]]) -> str:
    plt = _plt()
    top = list(values)[:8][::-1]
    fig, ax = plt.subplots(figsize=(4.2, 0.35 * len(top) + 0.9))
    ax.barh([v for v, _ in top], [s for _, s in top], color=ACCENT)
    for i, (_, share) in enumerate(top):
        ax.text(share, i, f" {share:.0%}", va="center", color=INK, fontsize=8)
    ax.set_xlim(0, max([s for _, s in top] + [0.01]) * 1.3)
    ax.set_xticks([])
    ax.spines["bottom"].set_visible(False)
    ax.set_title(f"Favourite {dimension.replace('_', ' ')}", loc="left")
    return _svg(fig)


def _propensity_chart(name: str, y: NDArray[Any], p: NDArray[np.float64]) -> tuple[str, str]:
    from affinity_sdk.activate.evaluate import brier_score, gains_table, reliability_table, roc_auc

    plt = _plt()
    table = gains_table(y, p, 10)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(8.4, 2.9))
    deciles = np.arange(1, len(table.lift) + 1)
    ax1.bar(deciles, table.lift, color=ACCENT)
    ax1.axhline(1.0, color=MUTED, linewidth=0.8, linestyle=":")
    ax1b = ax1.twinx()
    ax1b.plot(deciles, table.cum_gain * 100, color=TIER_COLOURS["medium"], marker="o", markersize=3)
    ax1b.set_ylim(0, 105)
    ax1b.set_ylabel("cumulative gain (%)", color=MUTED)
    ax1b.spines["top"].set_visible(False)
    ax1.set_xticks(deciles)
    ax1.set_xlabel("decile (1 = highest propensity)")
    ax1.set_ylabel("lift")
    ax1.set_title("Lift and cumulative gains", loc="left")
    rel = reliability_table(y, p, 10)
    ax2.plot([0, 1], [0, 1], color=MUTED, linewidth=0.8, linestyle=":")
    ax2.plot(rel.mean_predicted, rel.observed_rate, color=ACCENT, marker="o", markersize=4)
    ax2.set_xlim(0, 1)
    ax2.set_ylim(0, 1)
    ax2.set_xlabel("predicted probability")
    ax2.set_ylabel("observed rate")
    ax2.set_title("Calibration", loc="left")
    fig.tight_layout()
    caption = (
        f"ROC AUC {roc_auc(y, p):.3f} · Brier {brier_score(y, p):.3f} · calibration error {rel.ece:.3f} · "
        f"top decile captures {table.cum_gain[0]:.0%} of outcomes (lift {table.lift[0]:.1f}×)"
    )
    return _svg(fig), caption


def _segment_chart(segments: Mapping[str, NDArray[np.bool_]]) -> str:
    plt = _plt()
    names = list(segments)
    masks = np.array([segments[n] for n in names], dtype=np.float64)
    sizes = masks.sum(axis=1)
    overlap = masks @ masks.T
    share = np.divide(overlap, sizes[:, None], out=np.zeros_like(overlap), where=sizes[:, None] > 0)
    fig, (ax1, ax2) = plt.subplots(
        1, 2, figsize=(9.0, 0.45 * len(names) + 1.6), gridspec_kw={"width_ratios": [1, 1.2]}
    )
    ax1.barh(names[::-1], sizes[::-1], color=ACCENT)
    for i, size in enumerate(sizes[::-1]):
        ax1.text(size, i, f" {int(size):,}", va="center", fontsize=8, color=INK)
    ax1.set_xlim(0, max(sizes.max(initial=0), 1) * 1.3)
    ax1.set_xticks([])
    ax1.spines["bottom"].set_visible(False)
    ax1.set_title("Segment sizes", loc="left")
    im = ax2.imshow(share, cmap="GnBu", vmin=0, vmax=1)
    ax2.set_xticks(range(len(names)), names, rotation=35, ha="right", fontsize=8)
    ax2.set_yticks(range(len(names)), names, fontsize=8)
    for i in range(len(names)):
        for j in range(len(names)):
            ax2.text(
                j,
                i,
                f"{share[i, j]:.0%}",
                ha="center",
                va="center",
                fontsize=7,
                color=INK if share[i, j] < 0.6 else "white",
            )
    ax2.set_title("Overlap (share of row segment)", loc="left")
    fig.colorbar(im, ax=ax2, fraction=0.04)
    fig.tight_layout()
    return _svg(fig)


def _rfm_chart(table: RFMTable) -> str:
    from affinity_sdk.activate.rfm import RFM_SEGMENTS

    plt = _plt()
    counts = table.segment_counts()
    labels = [s.label for s in RFM_SEGMENTS]
    sizes = np.array([counts[s.name] for s in RFM_SEGMENTS], dtype=np.float64)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9.0, 3.6), gridspec_kw={"width_ratios": [1.2, 1]})
    ax1.barh(labels[::-1], sizes[::-1], color=ACCENT)
    for i, size in enumerate(sizes[::-1]):
        ax1.text(size, i, f" {int(size):,}", va="center", fontsize=8, color=INK)
    ax1.set_xlim(0, max(sizes.max(initial=0), 1) * 1.3)
    ax1.set_xticks([])
    ax1.spines["bottom"].set_visible(False)
    ax1.set_title("Customers per RFM segment", loc="left")
    grid = np.zeros((5, 5))
    np.add.at(grid, (5 - table.r.astype(np.int64), table.fm.astype(np.int64) - 1), 1)
    ax2.imshow(grid, cmap="GnBu")
    ax2.set_xticks(range(5), [str(v) for v in range(1, 6)])
    ax2.set_yticks(range(5), [str(v) for v in range(5, 0, -1)])
    ax2.set_xlabel("FM score (mean of frequency and monetary)")
    ax2.set_ylabel("R score (recency)")
    top = grid.max(initial=0)
    for i in range(5):
        for j in range(5):
            colour = "white" if top and grid[i, j] > 0.6 * top else INK
            ax2.text(j, i, f"{int(grid[i, j]):,}", ha="center", va="center", fontsize=7, color=colour)
    ax2.set_title("Customers per R x FM cell", loc="left")
    fig.tight_layout()
    return _svg(fig)


def _rfm_card(table: RFMTable) -> str:
    from affinity_sdk.activate.rfm import RFM_SEGMENTS

    counts = table.segment_counts()
    n = max(len(table), 1)
    rows = "".join(
        f'<tr><th class="name">{html.escape(s.label)}</th><td>{counts[s.name]:,}</td>'
        f'<td>{counts[s.name] / n:.0%}</td><td class="text">{html.escape(s.description)}</td>'
        f'<td class="text">{html.escape(s.action)}</td></tr>'
        for s in RFM_SEGMENTS
    )
    when = datetime.fromtimestamp(table.cutoff_ms / 1000, tz=UTC).strftime("%Y-%m-%d")
    return (
        f'<section class="card wide"><h2>RFM segments</h2>{_rfm_chart(table)}'
        f'<table class="rfm"><thead><tr><th class="name">segment</th><th>customers</th><th>share</th>'
        '<th class="text">who they are</th><th class="text">what to do</th></tr></thead>'
        f"<tbody>{rows}</tbody></table>"
        f'<div class="caption">{len(table):,} customers with an order by {when}; recency, frequency '
        "and monetary scores 1-5 by quintile (5 = best), segments on the R x FM grid.</div></section>"
    )


def _drift_chart(previous: ScoreResult, current: ScoreResult, drift: DriftReport | None) -> str:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7.0, 2.6))
    bins = np.linspace(0, 100, 41)
    ax.hist(previous.score, bins=bins, color="#94a3b8", alpha=0.6, label="previous run")
    ax.hist(current.score, bins=bins, histtype="step", color=ACCENT, linewidth=1.6, label="this run")
    ax.legend(frameon=False)
    ax.set_xlabel("score (0-100)")
    title = "Score drift" + (f" (PSI {drift.psi:.3f})" if drift is not None else "")
    ax.set_title(title, loc="left")
    return _svg(fig)


_CSS: Final = """
body{font-family:'DejaVu Sans',Helvetica,Arial,sans-serif;margin:0;background:#f1f5f9;color:#1e293b}
header{background:#0f172a;color:#f8fafc;padding:28px 40px}
header h1{margin:0;font-size:26px} header p{margin:6px 0 0;color:#94a3b8;font-size:13px}
main{padding:24px 40px;display:grid;grid-template-columns:repeat(auto-fit,minmax(460px,1fr));gap:20px}
.card{background:#fff;border-radius:12px;padding:18px 20px;box-shadow:0 1px 3px rgba(15,23,42,.08)}
.card h2{margin:0 0 10px;font-size:15px;color:#0f172a} .wide{grid-column:1/-1}
.kpis{display:flex;gap:14px;flex-wrap:wrap}
.kpi{flex:1;min-width:120px;background:#f8fafc;border-radius:10px;padding:12px 14px}
.kpi b{display:block;font-size:24px} .kpi span{font-size:12px;color:#64748b}
.caption{font-size:12px;color:#475569;margin-top:6px} svg{max-width:100%;height:auto}
.row{display:flex;flex-wrap:wrap;gap:12px} .alert{color:#b91c1c;font-weight:bold}
table{border-collapse:collapse;font-size:12px}
td,th{padding:4px 10px;border-bottom:1px solid #e2e8f0;text-align:right}
.rfm{margin-top:8px;width:100%} .rfm .name,.rfm .text{text-align:left}
footer{padding:10px 40px 30px;font-size:11px;color:#64748b}
"""


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


def write_report(path: str | Path, inputs: ReportInputs) -> Path:
    """Write the report to ``path`` (one HTML file with inline SVG) and return the path."""
    r = inputs.result
    counts = r.tier_counts()
    n = max(len(r), 1)
    cards: list[str] = []
    kpis = [
        (f"{len(r):,}", "users scored"),
        (f"{counts['high'] / n:.0%}", "High tier"),
        (f"{counts['medium'] / n:.0%}", "Medium tier"),
        (f"{float(np.median(r.score)) if len(r) else 0:.1f}", "median score"),
    ]
    kpi_html = "".join(f'<div class="kpi"><b>{v}</b><span>{html.escape(k)}</span></div>' for v, k in kpis)
    cards.append(
        f'<section class="card wide"><h2>At a glance</h2><div class="kpis">{kpi_html}</div></section>'
    )
    cards.append(f'<section class="card"><h2>Tier sizes</h2>{_tier_chart(r)}</section>')
    cards.append(f'<section class="card"><h2>Score distribution</h2>{_score_chart(r)}</section>')
    if inputs.top_affinities:
        charts = "".join(_affinity_chart(dim, vals) for dim, vals in inputs.top_affinities.items() if vals)
        cards.append(
            f'<section class="card wide"><h2>What customers love</h2><div class="row">{charts}</div>'
        )
        cards.append("</section>")
    for name, (y, p) in inputs.propensity.items():
        svg, caption = _propensity_chart(name, np.asarray(y), np.asarray(p, dtype=np.float64))
        cards.append(
            f'<section class="card wide"><h2>Propensity: {html.escape(name)}</h2>{svg}'
            f'<div class="caption">{html.escape(caption)}</div></section>'
        )
    for goal, y, p in inputs.goals:
        svg, caption = _propensity_chart(goal.name, np.asarray(y), np.asarray(p, dtype=np.float64))
        cards.append(
            f'<section class="card wide"><h2>Custom goal: {html.escape(goal.name)}</h2>'
            f'<div class="caption">Goal: {html.escape(goal.describe())}.</div>{svg}'
            f'<div class="caption">{html.escape(caption)}</div></section>'
        )
    if inputs.segments:
        cards.append(
            f'<section class="card wide"><h2>Segments</h2>{_segment_chart(inputs.segments)}</section>'
        )
    if inputs.rfm is not None:
        cards.append(_rfm_card(inputs.rfm))
    if inputs.previous is not None:
        d = inputs.drift
        alert = (
            f'<div class="caption alert">Drift alert: {html.escape("; ".join(d.reasons))}</div>'
            if d is not None and d.alert
            else '<div class="caption">No drift alert.</div>'
        )
        cards.append(
            f'<section class="card wide"><h2>Drift since the previous run</h2>'
            f"{_drift_chart(inputs.previous, r, d)}{alert}</section>"
        )
    for note in inputs.notes:
        cards.append(f'<section class="card wide"><div class="caption">{html.escape(note)}</div></section>')
    when = datetime.fromtimestamp(r.now_ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M UTC")
    page = (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>{html.escape(inputs.title)}</title><style>{_CSS}</style></head><body>"
        f"<header><h1>{html.escape(inputs.title)}</h1><p>scores as of {when} · config "
        f"{html.escape(r.config_version)} ({html.escape(r.config_fingerprint)})</p></header>"
        f"<main>{''.join(cards)}</main>"
        "<footer>affinity_sdk report · self-contained: no network needed to view it</footer></body></html>"
    )
    target = Path(path)
    target.write_text(page, encoding="utf-8")
    return target
