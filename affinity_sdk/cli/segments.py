"""``affinity segments EVENTS --out segments.csv``: per-user membership of the SDK's standard segments.

The command scores the events (tiers), learns affinities (favourite brand, discount sensitivity),
fits purchase, churn and unsubscribe propensity models on the events themselves (features at
``now - 2 H`` and ``now - H``, labels in the ``H = --horizon`` after each, as ``affinity demo``
does), scores every user at ``now`` and writes one ``segment, user_id`` row per membership
(:func:`~affinity_sdk.activate.segments.export_segments`). Each segment's description and rule go
into the file's metadata (``<file>.meta.json`` beside a CSV), so the file says what it holds.

The segments are :func:`~affinity_sdk.activate.segments.standard_segments` (``high_intent``,
``churn_risk``, ``vip_prospects``, ``discount_seekers_<top brand>`` and ``unsubscribe_risk``) and
the named RFM segments of every customer with an order
(:func:`~affinity_sdk.activate.rfm.rfm_segments`: ``champions``, ``loyal``, ... ``lost``; each
such customer is in exactly one). A propensity model the events cannot train (every training row
with the same label, e.g. nobody unsubscribed) is reported on stderr and its segments stay empty.

Examples
--------
>>> import tempfile
>>> from pathlib import Path
>>> from affinity_sdk.cli import main
>>> from affinity_sdk.sim.shop import simulate_shop
>>> folder = Path(tempfile.mkdtemp())
>>> _ = simulate_shop(400, weeks=8, horizon_weeks=2, seed=1).write_ndjson(folder / "events.ndjson")
>>> events, out = str(folder / "events.ndjson"), str(folder / "segments.csv")
>>> main(["segments", events, "--out", out])  # doctest: +ELLIPSIS
segments of ... users ...
0
>>> (folder / "segments.csv").read_text().splitlines()[0]
'segment,user_id'
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from affinity_sdk.cli import _add_event_input
from affinity_sdk.cli.events import print_rejected
from affinity_sdk.cli.progress import progress_for
from affinity_sdk.cli.propensity import iso_utc, read_events
from affinity_sdk.errors import AffinityError

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray

    from affinity_sdk.ingest.batch import EventBatch
    from affinity_sdk.models.propensity import Outcome

__all__ = ["SEGMENT_OUTCOMES", "add_parser"]

log = logging.getLogger(__name__)

#: The propensity models the standard segments read, as frame columns ``p_<outcome>``.
SEGMENT_OUTCOMES: Final[tuple[Outcome, ...]] = ("purchase", "churn", "unsubscribe")


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``affinity segments``."""
    p = sub.add_parser(
        "segments",
        help="write each user's membership of the standard segments",
        description="Score an event file, learn affinities, fit purchase / churn / unsubscribe "
        "propensities on it and write segment,user_id rows for the standard segments (high_intent, "
        "churn_risk, vip_prospects, discount_seekers_<top brand>, unsubscribe_risk) and the named "
        "RFM segments (champions ... lost) of the customers with an order.",
    )
    _add_event_input(p)
    p.add_argument(
        "--now",
        default=None,
        help="segment as of this time (ISO-8601 with zone; default: the latest event time); later "
        "events are set aside",
    )
    p.add_argument(
        "--horizon",
        default="2w",
        help="the propensity models' prediction window; the events need two of them of history (default 2w)",
    )
    p.add_argument("--out", type=Path, required=True, help="output file: .csv, .jsonl or .parquet")
    p.set_defaults(handler=_run_segments)


def _run_segments(args: argparse.Namespace) -> int:
    import numpy as np

    from affinity_sdk._units import parse_duration, to_epoch_ms
    from affinity_sdk.activate.rfm import rfm_from_batch, rfm_segments
    from affinity_sdk.activate.segments import (
        evaluate_segments,
        export_segments,
        frame_from_result,
        standard_segments,
    )
    from affinity_sdk.ingest.batch import take_rows
    from affinity_sdk.score.scorer import Scorer

    started = time.perf_counter()
    horizon_ms = round(parse_duration(args.horizon) * 1000)
    if horizon_ms <= 0:
        raise AffinityError(f"--horizon must be positive (got {args.horizon!r})")
    with progress_for(args, "segments", 5 + len(SEGMENT_OUTCOMES)) as bar:
        bar.advance(f"reading {args.events.name}")
        scorer = Scorer(args.config, backend=args.backend, views=("signals", "affinity"))
        batch = read_events(args, scorer.interners)
        now_ms = int(batch.ts_ms.max()) if args.now is None else to_epoch_ms(args.now)
        later = batch.ts_ms > now_ms
        if later.any():
            print(f"set aside {int(later.sum()):,} events stamped after {args.now} (--now)", file=sys.stderr)
            batch = take_rows(batch, ~later)
        bar.advance("scoring")
        report = scorer.ingest(batch, errors=args.errors)
        print_rejected(report.rejected, report.n_rejected)
        result = scorer.score(now_ms)
        log.info("scored %s users at %s", f"{len(result):,}", iso_utc(now_ms))
        lookup = scorer.interners.users.lookup
        rows = np.fromiter((lookup(u) for u in result.user_ids), dtype=np.int64, count=len(result))

        bar.advance("affinities")
        affinity = scorer.affinity
        brand = affinity.top_affinities_all("brand", 1, now_ms)
        discount = affinity.discount_sensitivity(now_ms)
        extra: dict[str, NDArray[Any]] = {
            "discount_tier": _rows_of(discount.tier, rows, 0),
            "favourite_brand": _rows_of(brand.codes[:, 0], rows, -1),
        }
        for outcome in SEGMENT_OUTCOMES:
            bar.advance(f"{outcome} propensity")
            p = _fit_and_score(args, batch, scorer, outcome, now_ms, horizon_ms)
            extra[f"p_{outcome}"] = _rows_of(p, rows, np.nan)

        bar.advance("RFM")
        frame = frame_from_result(result, **extra)
        segments = standard_segments(frame, brand.names)
        masks = evaluate_segments(segments, frame)
        members = {name: frame["user_id"][mask].tolist() for name, mask in masks.items()}
        rfm = rfm_from_batch(batch, now_ms, visible=scorer)
        members.update(rfm.members())
        segments += rfm_segments()
        log.info("RFM of %s customers with an order", f"{len(rfm):,}")

        bar.advance(f"writing {args.out.name}")
        metadata = {
            **result.metadata,
            "horizon": args.horizon,
            **{f"segment:{s.name}": f"{s.description} ({s.rule.text})" for s in segments},
        }
        export_segments(members, args.out, metadata=metadata)
    print(f"segments of {len(result):,} users in {time.perf_counter() - started:.2f}s (at {iso_utc(now_ms)})")
    for name, users in members.items():
        print(f"  {name:<32} {len(users):>9,} users")
    print(f"wrote {args.out}")
    log.info("wrote %s", args.out)
    return 0


def _rows_of(values: NDArray[Any], rows: NDArray[np.int64], fill: Any) -> NDArray[Any]:
    """``values[rows]`` where ``values`` may be shorter than the interner (users it never saw)."""
    import numpy as np

    out = np.full(len(rows), fill, dtype=np.result_type(values.dtype, np.asarray(fill).dtype))
    inside = rows < len(values)
    out[inside] = values[rows[inside]]
    return out


def _fit_and_score(
    args: argparse.Namespace, batch: EventBatch, scorer: Any, outcome: Outcome, now_ms: int, horizon_ms: int
) -> NDArray[np.float64]:
    """Fit ``outcome``'s propensity on ``batch`` (cut-offs ``now - 2H`` and ``now - H``, those
    after the first event) and score it at ``now``: a probability per user code (NaN for users
    without one, and for all when the events cannot train the model)."""
    import numpy as np

    from affinity_sdk.models.propensity import PropensityModel, build_training_set

    first = int(batch.ts_ms.min())
    cutoffs = [now_ms - k * horizon_ms for k in (2, 1) if now_ms - k * horizon_ms >= first]
    if not cutoffs:
        raise AffinityError(
            f"the events span less than one --horizon ({args.horizon}) before {iso_utc(now_ms)}: "
            "too little history to fit the propensity models"
        )
    train = build_training_set(
        batch, outcome, cutoffs, horizon_ms / 1000, backend=args.backend, visible=scorer
    )
    positives = int(train.y.sum())
    if positives == 0 or positives == len(train):
        print(
            f"{outcome}: all {len(train):,} training rows have the same label, so no model; "
            f"its segments are empty",
            file=sys.stderr,
        )
        return np.full(len(batch.interners.users), np.nan)
    model = PropensityModel.fit(train, config_fingerprint=scorer.config.fingerprint)
    p, _ = model.score_batch(batch, now_ms, backend=args.backend, visible=scorer)
    log.info("%s propensity: %s training rows, %s positive", outcome, f"{len(train):,}", f"{positives:,}")
    return p
