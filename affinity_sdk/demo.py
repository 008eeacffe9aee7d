"""``affinity demo``: simulate a shop, score it, learn affinities, propensities and custom goals,
build segments and RFM segments, and write scores, segments and ``report.html`` into one folder.

The folder also gets the shop's data, so the other ``affinity`` commands have something to run on:
the simulated events (``events.ndjson``, one JSON event per line), its order log (``orders.csv``,
the CDNOW layout ``sample_id,date,dollars`` that :func:`~affinity_sdk.sim.cdnow.cdnow_orders` and
``examples/order_log_propensity.py`` read, plus the exact ``timestamp``), the config the demo
scored with (``scoring.toml``, the built-in default) and ``seeds.txt`` (the 20 highest scores, a
seed list for ``affinity lookalikes``). The demo ends by printing those commands.

Because the shop is simulated, the demo also shows how well the SDK recovers the truth it planted:
favourite category / brand match rates, and each propensity model's ROC AUC beside the AUC of the
true probabilities (the best any model could do). Custom goals (:data:`DEMO_GOALS`: cart
abandonment and VIP spend, see :mod:`affinity_sdk.models.goals`) are fitted the same way and
evaluated on the events the simulator drew for the next two weeks. ``rfm.csv`` holds every
customer's RFM scores and segment (:mod:`affinity_sdk.activate.rfm`); the report shows both. The
scorer also keeps the ``engagement`` view (:data:`DEMO_VIEWS`) and the shop logs every email's
delivery, so the report shows each medium's reach and best-channel users, the best send hours
and the users at a message cap (:mod:`affinity_sdk.models.channels`).

Examples
--------
>>> import tempfile
>>> run_demo(customers=400, weeks=8, seed=1, out=tempfile.mkdtemp(), echo=lambda *a: None)
0
"""

from __future__ import annotations

import shlex
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from affinity_sdk.models.goals import CartAbandonmentGoal, Goal, VipGoal

if TYPE_CHECKING:
    from affinity_sdk.activate.rfm import RFMTable
    from affinity_sdk.models.propensity import Outcome
    from affinity_sdk.profile.store import ViewName

__all__ = ["run_demo"]

WEEK_MS = 7 * 86_400_000
#: (outcome, label used in the summary); each model predicts the next two weeks.
DEMO_OUTCOMES: tuple[tuple[Outcome, str], ...] = (
    ("purchase", "purchase (2w)"),
    ("churn", "churn (2w)"),
    ("unsubscribe", "unsubscribe (2w)"),
)
#: Custom goals over the same two weeks. The simulated shop's checkouts always complete, so cart
#: abandonment starts at a cart add; VIP is a spend of at least 300 in the two weeks.
DEMO_GOALS: tuple[Goal, ...] = (
    CartAbandonmentGoal(name="cart abandonment (2w)", started="product_added", within="24h"),
    VipGoal(name="VIP: spend 300+ (2w)", min_revenue=300.0),
)
#: The scorer's store views: the engagement view feeds the report's channel and send-time panel.
DEMO_VIEWS: tuple[ViewName, ...] = ("signals", "engagement")
#: The shop logs a ``message_delivered`` for every email, so channel rates and fatigue caps have
#: the messages received to count (see ``simulate_shop``'s ``deliveries``).
DELIVERIES = True
#: How many of the highest scores go into ``seeds.txt``.
N_SEEDS = 20
#: The files the demo writes for the CLI, by their placeholder in :data:`NEXT_STEPS`.
INPUT_FILES: dict[str, str] = {"events": "events.ndjson", "config": "scoring.toml", "seeds": "seeds.txt"}
#: The commands the demo suggests next (README's "Command line" runs the same ones), with
#: ``{events}``, ``{config}`` and ``{seeds}`` standing for the files in the demo's folder.
NEXT_STEPS: tuple[str, ...] = (
    "affinity score {events} --config {config} --out scores.csv",
    "affinity affinities {events} --config {config} --dimension brand --top 3 --out brands.csv",
    "affinity lookalikes {events} --config {config} --seeds {seeds} --n 1000 --out lookalikes.csv",
    "affinity report {events} --config {config} --out report.html",
)


def run_demo(
    *,
    customers: int = 8_000,
    weeks: int = 12,
    seed: int = 7,
    out: str | Path = "affinity-demo",
    backend: str | None = "auto",
    echo: Callable[..., Any] = print,
) -> int:
    """Run the demo end to end and write ``scores.csv``, ``segments.csv`` (with a ``.meta.json``),
    ``affinities.csv``, ``rfm.csv`` and ``report.html`` into ``out``, beside the inputs for the CLI:
    ``events.ndjson``, ``orders.csv``, ``scoring.toml`` and ``seeds.txt``. Ends by echoing the
    commands to run on those (:data:`NEXT_STEPS`). Returns the exit status (0)."""
    from affinity_sdk.activate.evaluate import roc_auc
    from affinity_sdk.activate.report_text import channel_panel, describe_segments
    from affinity_sdk.activate.rfm import RFM_SEGMENTS, rfm_from_batch
    from affinity_sdk.activate.segments import (
        evaluate_segments,
        export_segments,
        frame_from_result,
        holdout_mask,
        standard_segments,
    )
    from affinity_sdk.errors import AffinityError
    from affinity_sdk.models.affinity import DIMENSIONS, AffinityModel
    from affinity_sdk.models.goals import goal_labels
    from affinity_sdk.models.propensity import PropensityModel, profile_features, visible_users
    from affinity_sdk.models.training import build_training_sets
    from affinity_sdk.score.scorer import Scorer
    from affinity_sdk.sim.shop import simulate_shop

    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    step = _Steps(echo)

    with step("simulating the shop"):
        sim = simulate_shop(customers, weeks=weeks, horizon_weeks=2, seed=seed, deliveries=DELIVERIES)
    echo(f"    {customers:,} customers, {len(sim.batch):,} events over {weeks} weeks")

    with step("writing the shop's events, order log and config"):
        sim.write_ndjson(folder / INPUT_FILES["events"])
        n_orders = _write_orders(folder / "orders.csv", sim.batch)
        config_path = folder / INPUT_FILES["config"]
        config_path.write_text(_DEMO_CONFIG_HEADER + _default_config_text(), encoding="utf-8")
    echo(f"    events.ndjson: {len(sim.batch):,} events; orders.csv: {n_orders:,} orders; scoring.toml")

    with step("scoring"):
        scorer = Scorer(config_path, backend=backend, views=DEMO_VIEWS)
        scorer.ingest(sim.batch)
        result = scorer.score()
        result.save(folder / "scores.csv")
        seeds = _write_seeds(folder / INPUT_FILES["seeds"], result)
    counts = result.tier_counts()
    echo(
        f"    {len(result):,} users (opted-out excluded), backend {scorer.backend}: "
        f"High {counts['high']:,} · Medium {counts['medium']:,} · Low {counts['low']:,}"
    )

    # rows of the result in simulator user codes (the truth arrays are indexed by them)
    sim_code = {name: i for i, name in enumerate(sim.batch.interners.users.names)}
    rows = np.fromiter((sim_code[u] for u in result.user_ids), dtype=np.int64, count=len(result))

    with step("learning affinities"):
        affinity = AffinityModel(backend=backend)
        affinity.fit_price_bands(sim.batch)
        affinity.ingest(sim.batch)
        top: dict[str, Any] = {
            dim: affinity.top_affinities_all(dim, k=3, now_ms=sim.end_ms) for dim in DIMENSIONS
        }
        discount = affinity.discount_sensitivity(sim.end_ms)
    active = _active_users(sim.batch, len(sim.truth.user_ids))
    truth = sim.truth
    planted_favourites: dict[str, NDArray[Any]] = {
        "category": truth.favourite_category,
        "brand": truth.favourite_brand,
        "price_band": truth.price_band,
    }
    for dim, planted in planted_favourites.items():
        match = float(np.mean(top[dim].codes[active, 0] == planted[active]))
        echo(f"    favourite {dim}: recovered for {match:.0%} of {int(active.sum()):,} active customers")
    sensitive = truth.discount_sensitive & active
    if sensitive.any():
        recall = float(np.mean(discount.tier[sensitive] == 2))
        echo(f"    discount-sensitive customers classed High: {recall:.0%}")

    probabilities: dict[str, NDArray[np.float64]] = {}
    model_curves: dict[str, tuple[NDArray[Any], NDArray[np.float64]]] = {}
    goal_curves: list[tuple[Goal, NDArray[Any], NDArray[np.float64]]] = []
    cutoffs = [sim.end_ms - k * WEEK_MS for k in (4, 2)]
    n_models = len(DEMO_OUTCOMES) + len(DEMO_GOALS)
    width = max(len(name) for name in [*(label for _, label in DEMO_OUTCOMES), *(g.name for g in DEMO_GOALS)])
    with step("fitting propensity models and custom goals"):
        # Features at each cutoff, and at the end for scoring, once for every model: what
        # build_training_set and PropensityModel.score_batch compute per model, shared.
        outcomes: list[Outcome | Goal] = [o for o, _ in DEMO_OUTCOMES]
        sets = build_training_sets(sim.batch, [*outcomes, *DEMO_GOALS], cutoffs, "2w", backend=backend)
        allowed = visible_users(sim.batch)
        now_x = profile_features(sim.batch, sim.end_ms, backend=backend, population=allowed).X

        def score(model: PropensityModel) -> NDArray[np.float64]:
            p = model.predict_proba(now_x, backend=backend)
            p[~allowed] = np.nan  # opted-out customers get no probability
            return p

        for i, (outcome, label) in enumerate(DEMO_OUTCOMES, 1):
            model = PropensityModel.fit(sets[outcome], config_fingerprint=scorer.config.fingerprint)
            p = score(model)
            probabilities[outcome] = p
            shown = ~np.isnan(p)  # opted-out customers get no probability
            y = getattr(truth, f"y_{outcome}")[shown]
            oracle = getattr(truth, f"p_{outcome}")[shown]
            p = p[shown]
            model_curves[label] = (y, p)
            echo(
                f"    {_bar(i, n_models)} {label:<{width}} AUC {roc_auc(y, p):.3f} "
                f"(true probabilities: {roc_auc(y, oracle):.3f})"
            )
        for i, goal in enumerate(DEMO_GOALS, len(DEMO_OUTCOMES) + 1):
            try:
                model = PropensityModel.fit(sets[goal.name], config_fingerprint=scorer.config.fingerprint)
            except AffinityError as exc:  # e.g. no customer reached the goal in a tiny shop
                echo(f"    {_bar(i, n_models)} {goal.name:<{width}} skipped: {exc}")
                continue
            p = score(model)
            eligible, reached = goal_labels(sim.batch, goal, sim.end_ms, "2w", future=sim.future)
            judged = eligible & ~np.isnan(p)
            goal_curves.append((goal, reached[judged], p[judged]))
            echo(
                f"    {_bar(i, n_models)} {goal.name:<{width}} AUC {roc_auc(reached[judged], p[judged]):.3f} "
                f"(reached by {reached[judged].mean():.1%} in the simulated next 2 weeks)"
            )

    with step("building segments"):
        frame = frame_from_result(
            result,
            p_purchase=probabilities["purchase"][rows],
            p_churn=probabilities["churn"][rows],
            p_unsubscribe=probabilities["unsubscribe"][rows],
            discount_tier=discount.tier[rows],
            favourite_brand=top["brand"].codes[rows, 0],
        )
        segments = standard_segments(frame, top["brand"].names)
        masks = evaluate_segments(segments, frame)
        members = {name: frame["user_id"][mask].tolist() for name, mask in masks.items()}
        held_out = holdout_mask(frame["user_id"], "demo-campaign", 0.1, salt=str(seed))
        metadata = {**result.metadata, "holdout_share": "0.1", "campaign": "demo-campaign"}
        export_segments(members, folder / "segments.csv", metadata=metadata)
        _write_affinities(folder / "affinities.csv", result.user_ids, rows, top)
    for name, users in members.items():
        echo(f"    {name:<32} {len(users):>7,} users")
    echo(f"    control group: {int(held_out.sum()):,} users held out of 'demo-campaign' (10%)")

    if len(result):
        best = result.user_ids[int(result.raw_score.argmax())]
        why = scorer.explain(best)
        echo(f"    why is {best} High? score {why.score:.1f}:")
        for signal in why.signals[:3]:
            echo(f"      {signal.signal:<26} +{signal.contribution:7.2f}  ({signal.count} events)")

    with step("scoring RFM segments"):
        rfm = rfm_from_batch(sim.batch, sim.end_ms, visible=scorer)
        rfm.save(folder / "rfm.csv")
    rfm_counts = rfm.segment_counts()
    echo(f"    {len(rfm):,} customers with an order (rfm.csv):")
    for segment in RFM_SEGMENTS:
        count = rfm_counts[segment.name]
        echo(f"    {segment.label:<32} {count:>7,} customers ({count / max(len(rfm), 1):.0%})")

    with step("writing the report"):
        try:
            report = _write_report(
                folder / "report.html",
                result,
                top,
                active,
                model_curves,
                masks,
                goal_curves,
                rfm,
                extra={
                    "config": scorer.config,
                    "segment_info": describe_segments(segments),
                    "user_columns": {k: frame[k] for k in ("p_purchase", "p_churn", "p_unsubscribe")},
                    "channels": channel_panel(scorer.store, sim.end_ms),
                },
            )
        except ImportError as exc:
            report = None
            echo(f"    skipped: {exc}")
    echo(f"inputs in {folder}/: events.ndjson, orders.csv, scoring.toml, seeds.txt ({seeds} users)")
    echo(
        f"outputs in {folder}/: scores.csv, segments.csv, affinities.csv, rfm.csv"
        + (", report.html, report_actions.csv" if report else "")
    )
    echo("next, run the other commands on those files (see README, 'Command line'):")
    for command in _next_steps(folder):
        echo(f"    {command}")
    return 0


_DEMO_CONFIG_HEADER = (
    "# Written by `affinity demo`: the config it scored with, a copy of the built-in default\n"
    "# (affinity_sdk/data/default_config.toml). Edit it and rerun `affinity score ... --config`.\n"
)


def _default_config_text() -> str:
    from importlib import resources

    return resources.files("affinity_sdk").joinpath("data/default_config.toml").read_text(encoding="utf-8")


def _write_orders(path: Path, batch: Any) -> int:
    """The ``order_completed`` events as an order log in the CDNOW layout (``sample_id``, ``date``,
    ``dollars``; see :func:`~affinity_sdk.sim.cdnow.cdnow_orders`) plus the exact UTC
    ``timestamp``; returns the number of orders."""
    import csv

    from affinity_sdk.capture.events import EVENT_TYPE_CODES

    rows = np.flatnonzero(batch.event_type == EVENT_TYPE_CODES["order_completed"])
    when = batch.ts_ms[rows].astype("datetime64[ms]")
    users = batch.interners.users.names
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["sample_id", "date", "dollars", "timestamp"])
        writer.writerows(
            zip(
                [users[u] for u in batch.user[rows].tolist()],
                np.datetime_as_string(when, unit="D").tolist(),
                batch.revenue[rows].tolist(),
                np.datetime_as_string(when, unit="ms", timezone="UTC").tolist(),
                strict=True,
            )
        )
    return len(rows)


def _write_seeds(path: Path, result: Any) -> int:
    """The :data:`N_SEEDS` highest-scoring users, one id a line (a seed list for lookalikes)."""
    best = np.argsort(-result.raw_score, kind="stable")[:N_SEEDS]
    path.write_text("".join(f"{result.user_ids[i]}\n" for i in best.tolist()), encoding="utf-8")
    return len(best)


def _next_steps(folder: Path) -> list[str]:
    """:data:`NEXT_STEPS` on the files in ``folder`` (shell-quoted)."""
    files = {key: shlex.quote(str(folder / name)) for key, name in INPUT_FILES.items()}
    return [command.format(**files) for command in NEXT_STEPS]


def _active_users(batch: Any, n_users: int) -> NDArray[np.bool_]:
    """Users with at least three product-level events (a basis for affinity)."""
    counts = np.bincount(batch.user[batch.item_event], minlength=n_users)
    active: NDArray[np.bool_] = counts >= 3
    return active


def _write_affinities(path: Path, user_ids: list[str], rows: NDArray[np.int64], top: dict[str, Any]) -> None:
    import csv

    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["user_id", "dimension", "rank", "value", "affinity"])
        for dim, t in top.items():
            codes, values = t.codes[rows], t.affinity[rows]
            for i, user in enumerate(user_ids):
                for rank in range(codes.shape[1]):
                    if codes[i, rank] >= 0:
                        writer.writerow(
                            [user, dim, rank + 1, t.names[codes[i, rank]], f"{values[i, rank]:.4f}"]
                        )


def _write_report(
    path: Path,
    result: Any,
    top: dict[str, Any],
    active: NDArray[np.bool_],
    curves: dict[str, tuple[NDArray[Any], NDArray[np.float64]]],
    masks: dict[str, NDArray[np.bool_]],
    goals: list[tuple[Goal, NDArray[Any], NDArray[np.float64]]],
    rfm: RFMTable,
    extra: dict[str, Any],
) -> Path:
    """The report, with ``extra`` :class:`~affinity_sdk.activate.report.ReportInputs` fields (the
    config, segment descriptions and the probabilities that order the users to act on)."""
    from affinity_sdk.activate.report import ReportInputs, favourite_shares, write_report

    favourites = {dim: favourite_shares(t, active) for dim, t in top.items()}
    inputs = ReportInputs(
        result=result,
        title="Demo shop: customer affinity & propensity",
        top_affinities=favourites,
        propensity=curves,
        segments=masks,
        goals=goals,
        rfm=rfm,
        notes=[
            "Simulated data: propensity and goal curves compare each model with the outcomes "
            "the simulator drew."
        ],
        **extra,
    )
    return write_report(path, inputs)


def _bar(done: int, total: int, width: int = 12) -> str:
    filled = round(width * done / total)
    return "[" + "#" * filled + "-" * (width - filled) + f"] {done}/{total}"


class _Steps:
    def __init__(self, echo: Callable[..., Any]) -> None:
        self.echo = echo
        self.n = 0

    @contextmanager
    def __call__(self, what: str) -> Iterator[None]:
        self.n += 1
        started = time.perf_counter()
        self.echo(f"[{self.n}] {what} ...")
        yield
        self.echo(f"    done in {time.perf_counter() - started:.1f}s")
