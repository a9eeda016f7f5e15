"""scikit-learn models to plain-array ensembles, and the check that the two agree.

This reads scikit-learn's fitted internals (``_predictors``, ``_baseline_prediction``),
so it lives on the retrain side: predict only loads the arrays
(``shared/core/forest.py``). It refuses every model the arrays cannot represent
instead of exporting something that predicts differently; the parity check
(``parity_error``) then compares the export with ``model.predict`` on real inputs
and on missing-value probes, and the retrain gates refuse a candidate that differs.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np

from shared.core.forest import TreeEnsemble
from shared.platform.errors import InvalidData

# Rows per feature in the missing-value probe: enough to reach every split on that
# feature in practice, few enough that the check costs well under a second.
PROBE_ROWS_PER_FEATURE = 256
# Check rows stored with each export, half of them with one missing value: a few KiB per
# member, enough that a loader notices arrays that do not predict as the model did.
CHECK_ROWS = 16


class UnsupportedModel(InvalidData):
    """The estimator cannot be exported to arrays that predict exactly like it."""


def from_hist_gradient_boosting(model: Any, features: Sequence[str]) -> TreeEnsemble:
    """Export a fitted ``HistGradientBoostingRegressor`` (squared error, numeric features).

    ``features`` names the model's input columns in order. Raises UnsupportedModel
    for any other estimator (a Pipeline included), an unfitted model, a loss other
    than squared error, categorical features, or features that do not match.
    """
    from sklearn.ensemble import HistGradientBoostingRegressor

    # Exactly this class: a Pipeline, preprocessor or subclass may transform the
    # inputs or the output in ways the arrays do not hold.
    if type(model) is not HistGradientBoostingRegressor:
        raise UnsupportedModel(f"cannot export {type(model).__name__}; "
                               "only a bare HistGradientBoostingRegressor exports")
    predictors = getattr(model, "_predictors", None)
    if predictors is None:
        raise UnsupportedModel("the model is not fitted")
    features = tuple(str(f) for f in features)
    if model.n_features_in_ != len(features):
        raise UnsupportedModel(f"the model was fitted on {model.n_features_in_} features, "
                               f"but {len(features)} feature names were given")
    fitted_names = getattr(model, "feature_names_in_", None)
    if fitted_names is not None and tuple(str(f) for f in fitted_names) != features:
        raise UnsupportedModel(f"the model was fitted on features {list(fitted_names)}, "
                               f"not {list(features)}")
    if model.is_categorical_ is not None and np.any(model.is_categorical_):
        raise UnsupportedModel("categorical features do not export (numeric splits only)")
    if model.loss != "squared_error" or type(model._loss).__name__ != "HalfSquaredError":
        raise UnsupportedModel(f"only the squared_error loss exports (identity link), not {model.loss!r}")
    if model.n_trees_per_iteration_ != 1:
        raise UnsupportedModel("only one tree per iteration exports")

    feature, threshold, missing_left, children, value, roots = [], [], [], [], [], []
    depth, offset = 0, 0
    for (tree,) in predictors:
        nodes = tree.nodes
        if nodes["is_categorical"].any():
            raise UnsupportedModel("categorical splits do not export")
        leaf = nodes["is_leaf"].astype(bool)
        idx = np.arange(len(nodes), dtype=np.int64) + offset
        feature.append(np.where(leaf, 0, nodes["feature_idx"]).astype(np.int32))
        threshold.append(np.where(leaf, np.inf, nodes["num_threshold"]))
        missing_left.append(~leaf & nodes["missing_go_to_left"].astype(bool))
        left = np.where(leaf, idx, nodes["left"].astype(np.int64) + offset)
        right = np.where(leaf, idx, nodes["right"].astype(np.int64) + offset)
        children.append(np.column_stack([left, right]).ravel().astype(np.int32))
        value.append(np.where(leaf, nodes["value"], 0.0))
        roots.append(offset)
        depth = max(depth, int(nodes["depth"].max()))
        offset += len(nodes)
    return TreeEnsemble(features=features, feature=np.concatenate(feature),
                        threshold=np.concatenate(threshold), missing_left=np.concatenate(missing_left),
                        children=np.concatenate(children), value=np.concatenate(value),
                        roots=np.array(roots, dtype=np.int32), depth=depth,
                        baseline=float(np.ravel(model._baseline_prediction)[0]))


def with_check_rows(ensemble: TreeEnsemble, model: Any, X: np.ndarray, seed: int = 0) -> TreeEnsemble:
    """``ensemble`` carrying ``CHECK_ROWS`` rows of ``X`` (half with one value missing) and
    ``model.predict`` on them: the loader's trial prediction (``TreeEnsemble.verify``)."""
    X = np.asarray(X, dtype=float)
    if not len(X):
        return ensemble
    rng = np.random.default_rng(seed)
    rows = X[np.linspace(0, len(X) - 1, min(CHECK_ROWS, len(X))).astype(int)].copy()
    half = np.arange(len(rows)) % 2 == 1
    rows[half, rng.integers(0, X.shape[1], int(half.sum()))] = np.nan
    return dataclasses.replace(ensemble, check_inputs=rows,
                               check_outputs=np.asarray(model.predict(rows), dtype=float))


def missing_value_probe(X: np.ndarray, seed: int = 0) -> np.ndarray:
    """``X`` plus rows with missing values: for each feature in turn, a sample of rows
    with that feature set to NaN, and a third of the rows with one random feature NaN.

    Serving sends a row with missing history to the no-history model, so NaN rarely
    reaches the trees, but the arrays must route it as scikit-learn does wherever it does.
    """
    X = np.asarray(X, dtype=float)
    rows, width = X.shape
    if not rows or not width:
        return X
    rng = np.random.default_rng(seed)
    parts = [X]
    for j in range(width):
        pick = rng.choice(rows, size=min(rows, PROBE_ROWS_PER_FEATURE), replace=False)
        one = X[np.sort(pick)].copy()
        one[:, j] = np.nan
        parts.append(one)
    third = X[rng.random(rows) < 1 / 3].copy()
    third[np.arange(len(third)), rng.integers(0, width, len(third))] = np.nan
    parts.append(third)
    return np.vstack(parts)


def parity_error(model: Any, ensemble: TreeEnsemble, X: np.ndarray) -> float:
    """The largest difference between the export and ``model.predict`` on ``X``,
    relative to the largest prediction (so it reads the same for a ratio near 1 and
    a consumption near 30,000). NaN if either side gives a non-finite value."""
    if not len(X):
        return 0.0
    expected = np.asarray(model.predict(X), dtype=float)
    got = ensemble.predict(X)
    if not (np.isfinite(expected).all() and np.isfinite(got).all()):
        return float("nan")
    scale = max(float(np.max(np.abs(expected))), np.finfo(float).tiny)
    return float(np.max(np.abs(got - expected)) / scale)
