"""Accuracy on the reference split: train on January–November 2017, hold out December.

Prints MAPE (%), RMSE and R² per zone for the seasonal-naive forecast (same slot
one week earlier), our history model and our no-history (weather + calendar)
model, next to the reference figures measured for the energy document's approach.

    .venv/bin/python benchmarks/holdout_december.py
"""

from __future__ import annotations

import time

REFERENCE = {  # MAPE % on the same split, measured on this machine kind
    "seasonal-naive": {"zone1": 2.87, "zone2": 4.09, "zone3": 5.49},
    "random forest, weather + calendar": {"zone1": 3.25, "zone2": 4.80, "zone3": 12.46},
    "HGB, cyclical + history": {"zone1": 2.6, "zone2": 3.0, "zone3": 5.5},
}


def main() -> None:
    from shared.core.dataset_spec import load_spec
    from shared.core.frames import read_dataset_csv
    from shared.retrain.training import TrainingConfig, fit_target, prepare

    spec = load_spec("tetouan_power")
    frame = read_dataset_csv(spec.read_replay_data(), spec)
    config = TrainingConfig.from_spec(spec)
    started = time.perf_counter()
    prepared = prepare(frame, spec, holdout_days=30)  # 2017-12-01 00:00 .. 12-30 23:50
    print(f"holdout {prepared.timestamps[prepared.holdout].min()} .. "
          f"{prepared.timestamps[prepared.holdout].max()}, {int(prepared.holdout.sum())} rows")
    rows = []
    for target in spec.target_names:
        fit = fit_target(prepared, target, config)
        rows.append((target, fit.naive, fit.metrics["history"], fit.metrics["no_history"]))
    print(f"{'zone':6} {'naive MAPE':>11} {'ours MAPE':>10} {'no-hist MAPE':>13} {'ours RMSE':>10} {'ours R2':>8}")
    for target, naive, ours, plain in rows:
        print(f"{target:6} {naive['mape']:11.2f} {ours['mape']:10.2f} {plain['mape']:13.2f} "
              f"{ours['rmse']:10.1f} {ours['r2']:8.4f}")
    print("reference MAPE (same split):")
    for name, figures in REFERENCE.items():
        print(f"  {name:36} " + "  ".join(f"{z} {v:.2f}" for z, v in figures.items()))
    print(f"trained 3 targets x 2 variants in {time.perf_counter() - started:.1f} s")


if __name__ == "__main__":
    main()
