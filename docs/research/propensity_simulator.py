"""The simulator table of docs/propensity.md: each outcome's model AUC and ECE against the oracle.

``simulate_shop(20000, weeks=16, horizon_weeks=2, seed=7)``; a model per outcome trained on 4
weekly cutoffs with a 2-week horizon inside the history (default ``FeatureSpec``,
``calibration="auto"``), scored at ``end_ms``, evaluated on the simulator's realised horizon
outcomes (``y_*``) for the profiles seen by then (repurchase: those who purchased before;
uninstall: those with the app installed). ECE:
expected calibration error over 10 equal-count bins; "raw" is the model before calibration.

Run: ``.venv/bin/python docs/research/propensity_simulator.py [SEED]`` (about a minute).
"""

from __future__ import annotations

import sys

from affinity_sdk.activate.evaluate import expected_calibration_error, roc_auc
from affinity_sdk.models import propensity as P
from affinity_sdk.sim.shop import simulate_shop

WEEK = 7 * 86_400_000


def main(seed: int = 7) -> None:
    sim = simulate_shop(20_000, weeks=16, horizon_weeks=2, seed=seed)
    cutoffs = [sim.end_ms - 2 * WEEK - k * WEEK for k in range(4)]
    print(f"simulate_shop(20000, weeks=16, horizon_weeks=2, seed={seed}): {len(sim.batch):,} events")
    print(
        "| outcome | calibration chosen | model AUC | oracle AUC (true p) | ECE raw | ECE calibrated | oracle ECE |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for outcome in P.OUTCOMES:
        model = P.PropensityModel.fit(P.build_training_set(sim.batch, outcome, cutoffs, "2w"))
        p, seen = model.score_batch(sim.batch, sim.end_ms)
        if outcome == "repurchase":
            seen = seen & sim.truth.purchased_before
        if outcome == "uninstall":  # the outcome's population: the app installed at the end
            seen = seen & sim.truth.app_installed
        features = P.profile_features(sim.batch, sim.end_ms, spec=model.spec)
        raw = model.predict_proba(features.X, calibrated=False)
        y = getattr(sim.truth, f"y_{outcome}")[seen].astype(float)
        truth = getattr(sim.truth, f"p_{outcome}")[seen]
        print(
            f"| {outcome} | {model.calibrator_.kind} | {roc_auc(y, p[seen]):.3f} | {roc_auc(y, truth):.3f} "
            f"| {expected_calibration_error(y, raw[seen]):.3f} | {expected_calibration_error(y, p[seen]):.3f} "
            f"| {expected_calibration_error(y, truth):.3f} |"
        )


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:2]))
