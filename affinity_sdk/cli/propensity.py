"""``affinity propensity fit | score``: propensity models from the command line.

``affinity propensity fit EVENTS --outcome purchase --cutoff T --horizon 2w --out model.json``
fits a :class:`~affinity_sdk.models.propensity.PropensityModel` on the features of the events up
to each cutoff ``T`` (repeat ``--cutoff`` to stack several), labelled by whether the outcome
happened in ``(T, T + horizon]``, and saves it (:meth:`~affinity_sdk.models.propensity.PropensityModel.save`:
checksummed and versioned, whatever the file's name). Every label window must lie inside the events,
or the labels would count missing data as "did not happen".

``affinity propensity score EVENTS --model model.json --now T --out scores.csv`` scores every user
with events up to ``T`` (default: the latest event) and writes ``user_id, probability, tier``
(``high`` / ``medium`` / ``low`` by ``--tiers``, ``--high`` and ``--medium``). The model must have
been fitted under the same scoring config (``--config``, default the built-in one). Users whose
latest consent decision in the events is a revocation get no row.

Examples
--------
>>> import tempfile
>>> from pathlib import Path
>>> from affinity_sdk.cli import main
>>> from affinity_sdk.sim.shop import simulate_shop
>>> folder = Path(tempfile.mkdtemp())
>>> sim = simulate_shop(300, weeks=6, horizon_weeks=1, seed=2)
>>> _ = sim.write_ndjson(folder / "events.ndjson")
>>> cutoff = iso_utc(sim.end_ms - 3 * WEEK_MS)
>>> main(["propensity", "fit", str(folder / "events.ndjson"), "--cutoff", cutoff,
...       "--out", str(folder / "model.json")])  # doctest: +ELLIPSIS
fitted purchase propensity on ... rows ...
0
>>> main(["propensity", "score", str(folder / "events.ndjson"), "--model", str(folder / "model.json"),
...       "--out", str(folder / "p.csv")])  # doctest: +ELLIPSIS
scored ... users ...
0
>>> (folder / "p.csv").read_text().splitlines()[0]
'user_id,probability,tier'
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from affinity_sdk.cli import _add_event_input, _same_file
from affinity_sdk.cli.events import print_rejected, read_batch
from affinity_sdk.cli.progress import progress_for
from affinity_sdk.errors import AffinityError

if TYPE_CHECKING:
    from affinity_sdk.ingest.batch import EventBatch

__all__ = ["WEEK_MS", "add_parser", "iso_utc", "read_events"]

log = logging.getLogger(__name__)

WEEK_MS: Final = 7 * 86_400_000
#: Probability tier names by code (0 / 1 / 2), as ``affinity score`` writes its tiers.
TIER_LABELS: Final = ("low", "medium", "high")
#: The built-in outcomes and the default probability tiers (method, high, medium), spelled here so
#: that building the parser does not import the models and scipy (0.4 s on every command);
#: tests/test_cli_propensity.py checks that they match ``training.OUTCOMES`` and ``TierSpec()``.
OUTCOME_CHOICES: Final = ("purchase", "repurchase", "churn", "unsubscribe", "uninstall")
DEFAULT_TIERS: Final = ("quantile", 0.9, 0.6)


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``affinity propensity`` and its ``fit`` / ``score`` sub-commands."""
    p = sub.add_parser(
        "propensity",
        help="fit a propensity model on an event file, or score users with one",
        description="Fit a purchase / repurchase / churn / unsubscribe / uninstall propensity model "
        "on an event file (fit), or score every user of an event file with it (score).",
    )
    commands = p.add_subparsers(title="commands", metavar="COMMAND")
    fit = commands.add_parser(
        "fit",
        help="fit a model on the events up to --cutoff, labelled by the --horizon after it",
        description="Fit a calibrated logistic propensity model: features of each user from the events "
        "up to each --cutoff T, label = whether --outcome happened in (T, T + --horizon]. The events must "
        "reach T + horizon. Writes the model (a checksummed binary container) to --out.",
    )
    _add_event_input(fit)
    fit.add_argument(
        "--outcome", choices=OUTCOME_CHOICES, default="purchase", help="what to predict (default purchase)"
    )
    fit.add_argument(
        "--cutoff",
        action="append",
        required=True,
        help="feature cut-off (ISO-8601 with zone, e.g. 2026-06-30T00:00:00Z); repeat to stack several",
    )
    fit.add_argument("--horizon", default="2w", help="label window after each cut-off (default 2w)")
    fit.add_argument("--l2", type=float, default=1.0, help="L2 penalty (default 1.0)")
    fit.add_argument(
        "--calibration",
        choices=("auto", "platt", "isotonic", "none"),
        default="auto",
        help="probability calibration on held-out users (default auto: the better of platt / isotonic)",
    )
    fit.add_argument("--out", type=Path, required=True, help="model file to write")
    fit.set_defaults(handler=_run_fit)

    score = commands.add_parser(
        "score",
        help="write user_id, probability, tier for every user with a fitted model",
        description="Score every user of an event file at --now with a model from `affinity propensity "
        "fit` and write user_id, probability and tier (high / medium / low).",
    )
    _add_event_input(score)
    score.add_argument("--model", type=Path, required=True, help="model file from `affinity propensity fit`")
    score.add_argument(
        "--now",
        default=None,
        help="score as of this time (ISO-8601 with zone; default: the latest event time); later "
        "events are not used",
    )
    method, high, medium = DEFAULT_TIERS
    score.add_argument(
        "--tiers",
        choices=("quantile", "threshold"),
        default=method,
        help=f"cut-offs on the probability's rank or on the probability itself (default {method})",
    )
    score.add_argument("--high", type=float, default=high, help=f"High cut-off (default {high}: top 10%%)")
    score.add_argument("--medium", type=float, default=medium, help=f"Medium cut-off (default {medium})")
    score.add_argument("--out", type=Path, required=True, help="output file: .csv, .jsonl or .parquet")
    score.set_defaults(handler=_run_score)
    p.set_defaults(handler=lambda args: _missing_command(p))


def _missing_command(parser: argparse.ArgumentParser) -> int:
    parser.print_help(sys.stderr)
    return 2


def iso_utc(ms: int) -> str:
    """Epoch milliseconds as an ISO-8601 UTC time, the form ``--cutoff`` and ``--now`` take.

    Examples
    --------
    >>> iso_utc(1_767_225_600_000)
    '2026-01-01T00:00:00Z'
    """
    text = datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat(timespec="milliseconds")
    return text.replace(".000+00:00", "Z").replace("+00:00", "Z")


def read_events(args: argparse.Namespace, interners: Any = None) -> EventBatch:
    """The events of ``args.events`` as one batch (NDJSON or Parquet, bad lines handled by
    ``--errors`` and listed on stderr). Raises :class:`AffinityError` for an empty file and for
    ``--format segment``, which only the commands that fold events into a scorer read."""
    if args.format == "segment":
        raise AffinityError(
            "--format segment is not supported here: convert the calls to the SDK's events first "
            "(affinity_sdk.capture.segment_adapter)"
        )
    started = time.perf_counter()
    batch = read_batch(args.events, interners, args.errors, args.format)
    print_rejected(batch.rejects.errors, batch.rejects.n_invalid)
    if not len(batch):
        raise AffinityError(f"no events in {args.events}")
    log.info(
        "read %s events of %s users from %s in %.2fs",
        f"{len(batch):,}",
        f"{len(batch.interners.users):,}",
        args.events,
        time.perf_counter() - started,
    )
    return batch


def _config_fingerprint(args: argparse.Namespace) -> str:
    from affinity_sdk.config import load_scoring_config

    return load_scoring_config(args.config).fingerprint


def _run_fit(args: argparse.Namespace) -> int:
    from affinity_sdk._units import parse_duration, to_epoch_ms
    from affinity_sdk.models.propensity import PropensityModel, build_training_set

    started = time.perf_counter()
    cutoffs = sorted(to_epoch_ms(c) for c in args.cutoff)
    horizon_ms = round(parse_duration(args.horizon) * 1000)
    if horizon_ms <= 0:
        raise AffinityError(f"--horizon must be positive (got {args.horizon!r})")
    fingerprint = _config_fingerprint(args)
    with progress_for(args, "propensity fit", 4) as bar:
        bar.advance(f"reading {args.events.name}")
        batch = read_events(args)
        first, last = int(batch.ts_ms.min()), int(batch.ts_ms.max())
        if cutoffs[-1] + horizon_ms > last:
            raise AffinityError(
                f"the events end at {iso_utc(last)}, before the last label window ends "
                f"({iso_utc(cutoffs[-1])} + {args.horizon}): pick an earlier --cutoff or a shorter --horizon"
            )
        if cutoffs[0] < first:
            raise AffinityError(
                f"--cutoff {iso_utc(cutoffs[0])} is before the first event ({iso_utc(first)})"
            )
        bar.advance(f"features at {len(cutoffs)} cut-off(s)")
        train = build_training_set(batch, args.outcome, cutoffs, horizon_ms / 1000, backend=args.backend)
        positives = int(train.y.sum())
        log.info("training set: %s rows, %s with %s", f"{len(train):,}", f"{positives:,}", args.outcome)
        if positives == 0 or positives == len(train):
            raise AffinityError(
                f"every one of the {len(train):,} training rows has the same label ({args.outcome} "
                f"{'always' if positives else 'never'} happens in the --horizon): nothing to learn"
            )
        bar.advance("fitting")
        model = PropensityModel.fit(
            train, l2=args.l2, calibration=args.calibration, config_fingerprint=fingerprint
        )
        log.debug("coefficients: %s", model.explain())
        bar.advance(f"writing {args.out.name}")
        model.save(args.out)
    top = ", ".join(f"{name} {coef:+.2f}" for name, coef in list(model.explain().items())[:3])
    print(
        f"fitted {args.outcome} propensity on {len(train):,} rows ({positives:,} positive) from "
        f"{len(batch):,} events in {time.perf_counter() - started:.2f}s "
        f"(calibration {model.calibrator_.kind}, config {fingerprint})"
    )
    print(f"strongest features (log-odds per standard deviation): {top}")
    print(f"wrote {args.out}")
    log.info("wrote %s", args.out)
    return 0


def _run_score(args: argparse.Namespace) -> int:
    import numpy as np

    from affinity_sdk.models.propensity import PropensityModel, TierSpec
    from affinity_sdk.score.results import write_columns

    started = time.perf_counter()
    for target in (args.out, args.out.with_name(args.out.name + ".meta.json")):
        if _same_file(target, args.model):
            raise AffinityError(
                f"--out {args.out} is the --model file {args.model}: write the output to another file"
            )
    spec = TierSpec(method=args.tiers, high=args.high, medium=args.medium)
    with progress_for(args, "propensity score", 4) as bar:
        bar.advance(f"loading {args.model.name}")
        model = PropensityModel.load(args.model, config_fingerprint=_config_fingerprint(args))
        log.info("loaded %r from %s", model, args.model)
        bar.advance(f"reading {args.events.name}")
        batch = read_events(args)
        now_ms = int(batch.ts_ms.max()) if args.now is None else _now_ms(args.now)
        n_later = int((batch.ts_ms > now_ms).sum())
        if n_later:
            print(f"set aside {n_later:,} events stamped after {args.now} (--now)", file=sys.stderr)
        bar.advance("scoring")
        p, seen = model.score_batch(batch, now_ms, backend=args.backend)
        rows = np.flatnonzero(seen)
        probability = p[rows]
        tiers = model.tiers(probability, spec, backend=args.backend)
        names = batch.interners.users.names
        table: dict[str, Any] = {
            "user_id": [names[i] for i in rows.tolist()],
            "probability": probability,
            "tier": [TIER_LABELS[t] for t in tiers.tolist()],
        }
        log.info("scored %s users at %s", f"{len(rows):,}", iso_utc(now_ms))
        bar.advance(f"writing {args.out.name}")
        metadata = {
            "outcome": model.outcome,
            "model_version": str(model.version),
            "horizon_ms": str(model.horizon_ms),
            "config_fingerprint": str(model.config_fingerprint),
            "now_ms": str(now_ms),
            "tiers": f"{spec.method} high={spec.high} medium={spec.medium}",
        }
        write_columns(table, args.out, metadata=metadata)
    counts = np.bincount(tiers.astype(np.int64), minlength=3)
    print(
        f"scored {len(rows):,} users for {model.outcome} in {time.perf_counter() - started:.2f}s "
        f"(model version {model.version}, at {iso_utc(now_ms)})"
    )
    print(f"tiers: high {counts[2]:,} · medium {counts[1]:,} · low {counts[0]:,}")
    print(f"wrote {args.out}")
    log.info("wrote %s", args.out)
    return 0


def _now_ms(now: str) -> int:
    from affinity_sdk._units import to_epoch_ms

    return to_epoch_ms(now)
