"""Two trainings on the same data and configuration, side by side.

Fixed seeds and byte-reproducible artifacts mean the two runs must agree on
every metric, every holdout prediction (by hash) and every model file (by hash).

    python -m tools.reproducibility [--data bundled|processed] [--output reports/reproducibility.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from shared.cli import format_table
from shared.core.dataset_spec import DatasetSpec, load_spec
from shared.core.frames import content_hash, read_dataset_csv
from shared.core.registry import ensembles_to_bytes
from shared.platform import runtime
from shared.retrain.processed import ProcessedData
from shared.retrain.service import Retrainer
from shared.retrain.training import SERVED, TrainingConfig, fit_target, prepare, refit_on_all

if TYPE_CHECKING:
    import pandas as pd


def one_run(frame: pd.DataFrame, spec: DatasetSpec, config: TrainingConfig) -> dict[str, Any]:
    started = time.perf_counter()
    prepared = prepare(frame, spec, config.holdout_days)
    targets = {}
    for target in spec.target_names:
        fit = fit_target(prepared, target, config)
        if config.refit and fit.ensembles:  # the model retrain serves after its gates pass
            fit = refit_on_all(prepared, target, config, fit)
        targets[target] = {"metrics": fit.metrics, "seasonal_naive": fit.naive,
                           "prediction_sha256": fit.prediction_hash,
                           "model_sha256": content_hash(ensembles_to_bytes(fit.ensembles, fit.intervals))
                           if fit.ensembles else None}
    return {"targets": targets, "seconds": round(time.perf_counter() - started, 3)}


def report(frame: pd.DataFrame, spec: DatasetSpec, config: TrainingConfig, data: str) -> dict[str, Any]:
    """Run training twice and compare; ``identical`` is the verdict."""
    first, second = one_run(frame, spec, config), one_run(frame, spec, config)
    differences = [f"{t}.{key}" for t in spec.target_names for key in first["targets"][t]
                   if first["targets"][t][key] != second["targets"][t][key]]
    return {"dataset": spec.name, "data": data, "rows": len(frame),
            "estimator": config.estimator, "params": dict(config.params),
            "seeds": {"random_state": config.params.get("random_state")},
            "runs": [first, second], "identical": not differences, "differences": differences}


COLUMNS = ["target", "identical", "mape_run1", "mape_run2", "prediction_sha256_run1",
           "prediction_sha256_run2"]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.reproducibility", description=report.__doc__)
    parser.add_argument("--data", choices=("bundled", "processed"), default="bundled",
                        help="the spec's bundled series, or the current processed dataset")
    parser.add_argument("--output", default="reports/reproducibility.json")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args(argv)
    settings, backends = runtime.start()
    spec = load_spec(settings.dataset_spec)
    processed = ProcessedData(backends, spec)
    head = processed.head() if args.data == "processed" else None
    if args.data == "processed" and head is None:
        print("error: no processed dataset yet; use --data bundled", file=sys.stderr)
        return 1
    if head is not None:
        frame, data = processed.read(head), head.version
    elif spec.replay_data is not None:
        frame, data = read_dataset_csv(spec.replay_data.read_bytes(), spec), spec.replay_data.name
    else:
        print(f"error: spec {spec.name} names no bundled data; use --data processed", file=sys.stderr)
        return 1
    result = report(frame, spec, Retrainer(settings, backends, spec).config, data)
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(result, indent=2, default=str))
    rows = [{"target": t, "identical": result["identical"],
             "mape_run1": r1["metrics"][SERVED]["mape"], "mape_run2": r2["metrics"][SERVED]["mape"],
             "prediction_sha256_run1": r1["prediction_sha256"][:16],
             "prediction_sha256_run2": r2["prediction_sha256"][:16]}
            for t, r1, r2 in ((t, result["runs"][0]["targets"][t], result["runs"][1]["targets"][t])
                              for t in spec.target_names)]
    print(json.dumps(rows, indent=2) if args.json else format_table(rows, COLUMNS))
    print(f"report: {args.output}", file=sys.stderr)
    return 0 if result["identical"] else 1


if __name__ == "__main__":
    sys.exit(main())
