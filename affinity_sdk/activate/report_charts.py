"""The report's charts: matplotlib figures rendered to inline SVG that scale to their card.

Every chart has a fixed figure size and a constrained layout (no tight bounding box), so charts
that sit side by side have the same shape and line up; the SVG's width and height are dropped
and its ``viewBox`` kept, so it fills its card's width at any screen size. Tiers are named and
coloured one way everywhere (:data:`TIER_NAMES`, :data:`TIER_COLOURS`). matplotlib (extra
``[report]``) is imported only when a chart is drawn.

Examples
--------
>>> score_bins([50.0, 75.0], width=12.5).tolist()
[0.0, 12.5, 25.0, 37.5, 50.0, 62.5, 75.0, 87.5, 100.0]
"""

from __future__ import annotations

import io
import itertools
import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final

import numpy as np
from numpy.typing import NDArray

from affinity_sdk.score.results import ScoreResult

if TYPE_CHECKING:
    from affinity_sdk.activate.rfm import RFMTable

__all__ = ["TIER_COLOURS", "TIER_NAMES", "score_bins", "tier_cutoffs"]

#: Display name per tier code (0 = low, 1 = medium, 2 = high), the one spelling charts,
#: legends, tables and text use.
TIER_NAMES: Final = ("Low", "Medium", "High")
#: Colour per tier code.
TIER_COLOURS: Final = ("#cbd5e1", "#f59e0b", "#0f766e")
INK: Final = "#1e293b"
MUTED: Final = "#64748b"
ACCENT: Final = "#0f766e"
LINE: Final = "#b45309"
#: Score histogram bin width (points), adjusted per tier range so edges land on the cut-offs.
BIN_WIDTH: Final = 2.5
#: Figure size in inches of a chart that fills half a card on a desktop, a whole one on a phone.
HALF: Final = (5.6, 3.1)


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
            "font.size": 11,
            "axes.edgecolor": "#cbd5e1",
            "axes.labelcolor": INK,
            "axes.titleweight": "bold",
            "axes.titlesize": 11,
            "axes.titlelocation": "left",
            "axes.spines.top": False,
            "axes.spines.right": False,
            "xtick.color": MUTED,
            "ytick.color": MUTED,
            "svg.fonttype": "none",
        }
    )
    return plt


def _figure(size: tuple[float, float], ncols: int = 1, **kw: Any) -> tuple[Any, Any]:
    return _plt().subplots(1, ncols, figsize=size, layout="constrained", **kw)  # type: ignore[no-any-return]


_SIZE_ATTR: Final = re.compile(r'\s(width|height)="[^"]*"')


def _svg(fig: Any, label: str) -> str:
    """The figure as an ``<svg>`` that fills its container's width (``viewBox`` kept, fixed
    ``width`` / ``height`` dropped), labelled for screen readers."""
    buf = io.StringIO()
    fig.savefig(buf, format="svg", transparent=True)
    _plt().close(fig)
    text = buf.getvalue()
    text = text[text.index("<svg") :]
    head, rest = text.split(">", 1)
    head = _SIZE_ATTR.sub("", head) + f' class="chart" role="img" aria-label="{label}"'
    return head + ">" + rest


def tier_cutoffs(result: ScoreResult) -> dict[int, float]:
    """The lowest 0-100 score in the Medium-or-above and in the High tier (code -> score), for the
    tiers that have members: the cut-off lines the report draws.

    Examples
    --------
    >>> import numpy as np
    >>> r = ScoreResult(user_ids=["a", "b", "c"], raw_score=np.zeros(3),
    ...     score=np.array([90.0, 60.0, 5.0]), tier_code=np.array([2, 1, 0], dtype=np.int8),
    ...     signal_names=(), decayed=np.zeros((3, 0)), now_ms=0, config_version="v",
    ...     config_fingerprint="f")
    >>> tier_cutoffs(r)
    {1: 60.0, 2: 90.0}
    """
    cuts = {}
    for code in (1, 2):
        members = result.score[result.tier_code >= code]
        if members.size:
            cuts[code] = float(members.min())
    return cuts


def score_bins(cuts: Sequence[float], width: float = BIN_WIDTH) -> NDArray[np.float64]:
    """Histogram bin edges over 0-100 about ``width`` apart, with an edge at every cut-off, so no
    bin straddles a cut-off line (each tier range is split into equal bins of its own)."""
    points = [0.0, *sorted({float(c) for c in cuts if 0.0 < c < 100.0}), 100.0]
    parts = [
        np.linspace(a, b, max(1, int(np.ceil((b - a) / width - 1e-9))) + 1)
        for a, b in itertools.pairwise(points)
    ]
    edges: NDArray[np.float64] = np.unique(np.concatenate(parts))
    return edges


def tier_chart(result: ScoreResult) -> str:
    counts = np.bincount(result.tier_code, minlength=3)
    total = max(len(result), 1)
    fig, ax = _figure(HALF)
    order = [0, 1, 2]  # drawn bottom-up: High on top
    bars = ax.barh([TIER_NAMES[c] for c in order], counts[order], color=[TIER_COLOURS[c] for c in order])
    for bar, code in zip(bars, order, strict=True):
        ax.text(
            bar.get_width(),
            bar.get_y() + bar.get_height() / 2,
            f"  {int(counts[code]):,} ({counts[code] / total:.0%})",
            va="center",
            color=INK,
        )
    ax.set_xlim(0, max(int(counts.max()), 1) * 1.4)
    ax.set_xticks([])
    ax.spines["bottom"].set_visible(False)
    ax.set_title("Users per tier")
    return _svg(fig, "users per tier")


def score_chart(result: ScoreResult) -> str:
    cuts = tier_cutoffs(result)
    bins = score_bins(list(cuts.values()))
    fig, ax = _figure(HALF)
    ax.hist(
        [result.score[result.tier_code == code] for code in (0, 1, 2)],
        bins=bins,
        stacked=True,
        color=list(TIER_COLOURS),
        label=list(TIER_NAMES),
    )
    top = ax.get_ylim()[1]
    for code, height in ((1, 0.98), (2, 0.86)):  # staggered: cut-offs may be close
        if code in cuts:
            ax.axvline(cuts[code], color=INK, linestyle="--", linewidth=0.9)
            ax.text(cuts[code], top * height, f" {TIER_NAMES[code]} ≥ {cuts[code]:.1f}", fontsize=9, va="top")
    handles, labels = ax.get_legend_handles_labels()
    # above the plot, right of the title: the bar at 0 is often the tallest
    ax.legend(
        handles[::-1],
        labels[::-1],
        frameon=False,
        fontsize=9,
        ncols=3,
        loc="lower right",
        bbox_to_anchor=(1.0, 1.0),
        borderaxespad=0.2,
        handlelength=1.0,
        columnspacing=0.8,
    )
    ax.set_xlim(0, 100)
    ax.set_xlabel("score (0-100)")
    ax.set_ylabel("users")
    ax.set_title("Users per score, by tier")
    return _svg(fig, "score distribution with tier cut-offs")


def affinity_chart(dimension: str, values: Sequence[tuple[str, float]]) -> str:
    top = list(values)[:8]
    slots = 8  # a fixed number of rows, so charts with fewer values keep the same shape
    fig, ax = _figure((3.6, 3.0))
    ys = np.arange(slots)[::-1][: len(top)]
    ax.barh(ys, [s for _, s in top], color=ACCENT, height=0.7)
    for y, (_, share) in zip(ys, top, strict=True):
        ax.text(share, y, f" {share:.0%}", va="center", color=INK, fontsize=9)
    ax.set_yticks(ys, [v for v, _ in top])
    ax.set_ylim(-0.6, slots - 0.4)
    ax.set_xlim(0, max([s for _, s in top] + [0.01]) * 1.35)
    ax.set_xticks([])
    ax.spines["bottom"].set_visible(False)
    ax.set_title(f"Favourite {dimension.replace('_', ' ')}")
    return _svg(fig, f"favourite {dimension}")


def lift_chart(lift: NDArray[np.float64], cum_gain: NDArray[np.float64]) -> str:
    fig, ax = _figure(HALF)
    deciles = np.arange(1, len(lift) + 1)
    ax.bar(deciles, lift, color=ACCENT, label="lift (bars)")
    ax.axhline(1.0, color=MUTED, linewidth=0.8, linestyle=":")
    ax2 = ax.twinx()
    ax2.plot(deciles, cum_gain * 100, color=LINE, marker="o", markersize=3, label="cumulative gain")
    ax2.set_ylim(0, 105)
    ax2.set_ylabel("cumulative gain (%, line)", color=MUTED)
    ax2.spines["top"].set_visible(False)
    ax.set_xticks(deciles)
    ax.set_xlabel("decile (1 = highest predicted probability)")
    ax.set_ylabel("lift (bars)")
    ax.set_title("Lift and cumulative gains")
    return _svg(fig, "lift and cumulative gains per decile")


def calibration_chart(predicted: NDArray[np.float64], observed: NDArray[np.float64]) -> str:
    fig, ax = _figure(HALF)
    ax.plot([0, 1], [0, 1], color=MUTED, linewidth=0.8, linestyle=":", label="perfect")
    ax.plot(predicted, observed, color=ACCENT, marker="o", markersize=4, label="model")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("predicted probability")
    ax.set_ylabel("observed rate")
    ax.legend(frameon=False, fontsize=9, loc="upper left")
    ax.set_title("Calibration")
    return _svg(fig, "calibration")


def _sizes(ax: Any, names: Sequence[str], sizes: NDArray[np.float64], title: str) -> None:
    ys = np.arange(len(names))[::-1]
    ax.barh(ys, sizes, color=ACCENT)
    ax.set_yticks(ys, list(names), fontsize=9)
    for y, size in zip(ys, sizes, strict=True):
        ax.text(size, y, f" {int(size):,}", va="center", fontsize=9, color=INK)
    ax.set_xlim(0, max(sizes.max(initial=0), 1) * 1.3)
    ax.set_xticks([])
    ax.spines["bottom"].set_visible(False)
    ax.set_title(title)


def _height(rows: int) -> tuple[float, float]:
    return (HALF[0], max(HALF[1], 0.34 * rows + 1.6))


def segment_charts(segments: Mapping[str, NDArray[np.bool_]]) -> tuple[str, str]:
    """The sizes and the overlap (share of the row segment also in the column one) of segments."""
    names = list(segments)
    masks = np.array([segments[n] for n in names], dtype=np.float64)
    sizes = masks.sum(axis=1)
    fig, ax = _figure(_height(len(names)))
    _sizes(ax, names, sizes, "Users per segment")
    size_svg = _svg(fig, "users per segment")
    overlap = masks @ masks.T
    share = np.divide(overlap, sizes[:, None], out=np.zeros_like(overlap), where=sizes[:, None] > 0)
    fig, ax = _figure(_height(len(names)))
    ax.imshow(share, cmap="GnBu", vmin=0, vmax=1, aspect="auto")
    short = [n if len(n) <= 18 else n[:17] + "…" for n in names]
    ax.set_xticks(range(len(names)), short, rotation=30, ha="right", fontsize=9)
    ax.set_yticks(range(len(names)), short, fontsize=9)
    for i in range(len(names)):
        for j in range(len(names)):
            colour = INK if share[i, j] < 0.6 else "white"
            ax.text(j, i, f"{share[i, j]:.0%}", ha="center", va="center", fontsize=8, color=colour)
    ax.set_title("Overlap: row's users also in column", loc="left")
    return size_svg, _svg(fig, "segment overlap")


def rfm_charts(table: RFMTable) -> tuple[str, str]:
    """Customers per RFM segment, and per cell of the R x FM grid."""
    from affinity_sdk.activate.rfm import RFM_SEGMENTS

    counts = table.segment_counts()
    sizes = np.array([counts[s.name] for s in RFM_SEGMENTS], dtype=np.float64)
    fig, ax = _figure(_height(len(RFM_SEGMENTS)))
    _sizes(ax, [s.label for s in RFM_SEGMENTS], sizes, "Customers per RFM segment")
    size_svg = _svg(fig, "customers per RFM segment")
    grid = np.zeros((5, 5))
    np.add.at(grid, (5 - table.r.astype(np.int64), table.fm.astype(np.int64) - 1), 1)
    fig, ax = _figure(_height(len(RFM_SEGMENTS)))
    ax.imshow(grid, cmap="GnBu", aspect="auto")
    ax.set_xticks(range(5), [str(v) for v in range(1, 6)])
    ax.set_yticks(range(5), [str(v) for v in range(5, 0, -1)])
    ax.set_xlabel("FM score (mean of frequency and monetary)")
    ax.set_ylabel("R score (recency)")
    top = grid.max(initial=0)
    for i in range(5):
        for j in range(5):
            colour = "white" if top and grid[i, j] > 0.6 * top else INK
            ax.text(j, i, f"{int(grid[i, j]):,}", ha="center", va="center", fontsize=8, color=colour)
    ax.set_title("Customers per R x FM cell")
    return size_svg, _svg(fig, "customers per R x FM cell")


def drift_chart(previous: ScoreResult, current: ScoreResult) -> str:
    bins = score_bins(list(tier_cutoffs(current).values()))
    fig, ax = _figure(HALF)
    ax.hist(previous.score, bins=bins, color="#94a3b8", alpha=0.6, label="previous run")
    ax.hist(current.score, bins=bins, histtype="step", color=ACCENT, linewidth=1.6, label="this run")
    ax.legend(frameon=False, fontsize=9)
    ax.set_xlim(0, 100)
    ax.set_xlabel("score (0-100)")
    ax.set_ylabel("users")
    ax.set_title("Users per score, both runs")
    return _svg(fig, "score distribution of the previous and this run")


def channel_charts(
    media: Sequence[str], best_for: Sequence[int], send_hours: Sequence[int]
) -> tuple[str, str]:
    """Users per best channel (one bar per medium) and per best send hour (0-23: local where the
    customer's time zone is known, else UTC)."""
    fig, ax = _figure(HALF)
    _sizes(
        ax,
        [m.replace("_", "-") for m in media],
        np.asarray(best_for, dtype=np.float64),
        "Users per best channel",
    )
    channel_svg = _svg(fig, "users per best channel")
    fig, ax = _figure(HALF)
    hours = np.arange(24)
    ax.bar(hours, np.asarray(send_hours, dtype=np.float64), color=ACCENT, width=0.8)
    ax.set_xticks(hours[::3], [f"{h:02d}" for h in hours[::3]])
    ax.set_xlim(-0.6, 23.6)
    ax.set_xlabel("best send hour (local, else UTC)")
    ax.set_ylabel("users")
    ax.set_title("Users per best send hour")
    return channel_svg, _svg(fig, "users per best send hour")
