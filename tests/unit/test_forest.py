"""Plain-array tree ensembles: exact parity with scikit-learn (missing values included),
fused evaluation, the exporter's refusals, packing and the format version."""

from __future__ import annotations

import dataclasses
import io

import numpy as np
import pytest
from sklearn.compose import TransformedTargetRegressor
from sklearn.ensemble import HistGradientBoostingRegressor, RandomForestRegressor
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from shared.core.forest import FORMAT_VERSION, EnsembleBank, FormatError, TreeEnsemble
from shared.core.registry import ArtifactError, ensembles_from_bytes, ensembles_to_bytes, pack_arrays, unpack_arrays
from shared.retrain import gates
from shared.retrain.export import (
    UnsupportedModel,
    from_hist_gradient_boosting,
    missing_value_probe,
    parity_error,
    with_check_rows,
)

FEATURES = [f"f{i}" for i in range(6)]


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(4000, 6))
    y = 3 * X[:, 0] + np.sin(2 * X[:, 1]) + X[:, 2] * X[:, 3] + rng.normal(size=4000) * 0.1
    return X, y


@pytest.fixture(scope="module")
def with_missing(data):
    """A model trained where missing values carry signal, so that splits send them both
    ways, and test rows where a third miss one value."""
    X, y = data
    rng = np.random.default_rng(2)
    train = X.copy()
    # Missing f0 means "large", missing f1 means "small": the best direction differs.
    train[(X[:, 0] > 0.8) & (rng.random(len(X)) < 0.6), 0] = np.nan
    train[(X[:, 1] < -0.8) & (rng.random(len(X)) < 0.6), 1] = np.nan
    train[rng.random(len(X)) < 0.05, 2] = np.nan
    model = HistGradientBoostingRegressor(max_iter=40, max_depth=5, random_state=0,
                                          early_stopping=False).fit(train, y)
    test = rng.normal(size=(4000, 6))
    third = rng.random(len(test)) < 1 / 3
    test[np.flatnonzero(third), rng.integers(0, 6, third.sum())] = np.nan
    return model, test


@pytest.mark.parametrize("params", [dict(max_iter=30, max_depth=5, learning_rate=0.2),
                                    dict(max_iter=20)])  # unbounded depth, 31 leaves
def test_exported_ensemble_predicts_exactly_like_scikit_learn(data, params):
    X, y = data
    model = HistGradientBoostingRegressor(random_state=0, early_stopping=False, **params).fit(X, y)
    ensemble = from_hist_gradient_boosting(model, FEATURES)
    np.testing.assert_allclose(ensemble.predict(X), model.predict(X), rtol=0, atol=1e-9)
    assert ensemble.n_trees == params["max_iter"]


def test_missing_values_follow_each_nodes_direction_like_scikit_learn(with_missing):
    model, test = with_missing
    split_flags = np.concatenate([tree.nodes["missing_go_to_left"][~tree.nodes["is_leaf"].astype(bool)]
                                  for (tree,) in model._predictors])
    assert split_flags.any() and not split_flags.all(), "the fitted trees must send missing values both ways"
    ensemble = from_hist_gradient_boosting(model, FEATURES)
    np.testing.assert_allclose(ensemble.predict(test), model.predict(test), rtol=1e-9, atol=1e-12)
    # The data exercise the routing: sending every NaN left (or right) breaks parity.
    for flag in (True, False):
        broken = dataclasses.replace(ensemble, missing_left=np.full_like(ensemble.missing_left, flag))
        assert not np.allclose(broken.predict(test), model.predict(test), rtol=1e-9, atol=1e-12)


def test_a_nan_in_a_column_no_split_tests_leaves_the_fast_path_exact(data, with_missing):
    """Shared serving matrices hold NaN in columns an ensemble never reads."""
    model, test = with_missing
    ensemble = from_hist_gradient_boosting(model, FEATURES)
    wide = np.column_stack([test, np.full(len(test), np.nan)])
    out = EnsembleBank([ensemble], [list(range(6))]).predict(wide)[:, 0]
    np.testing.assert_allclose(out, model.predict(test), rtol=1e-9, atol=1e-12)


def test_the_parity_check_accepts_an_exact_export_and_refuses_a_broken_one(with_missing):
    model, test = with_missing
    ensemble = from_hist_gradient_boosting(model, FEATURES)
    probe = missing_value_probe(test[:500])
    assert np.isnan(probe).any(axis=1).sum() >= 6 * 256
    good = gates.parity_gate({"history": parity_error(model, ensemble, probe)}, len(probe))
    assert good.status == gates.PASSED and good.value <= gates.PARITY_TOLERANCE
    broken = dataclasses.replace(ensemble, missing_left=np.zeros_like(ensemble.missing_left))
    bad = gates.parity_gate({"history": 0.0, "no_history": parity_error(model, broken, probe)}, len(probe))
    assert bad.status == gates.FAILED and gates.failures([bad])[0].startswith("parity")
    nan = gates.parity_gate({"history": float("nan")}, 10)
    assert nan.status == gates.FAILED


def test_a_bank_evaluates_several_ensembles_over_shared_columns(data):
    X, y = data
    a = HistGradientBoostingRegressor(max_iter=10, random_state=0).fit(X[:, :3], y)
    b = HistGradientBoostingRegressor(max_iter=15, random_state=0).fit(X[:, [5, 1]], -y)
    ea = from_hist_gradient_boosting(a, ["f0", "f1", "f2"])
    eb = from_hist_gradient_boosting(b, ["f5", "f1"])
    out = EnsembleBank([ea, eb], [[0, 1, 2], [5, 1]]).predict(X)
    np.testing.assert_allclose(out[:, 0], a.predict(X[:, :3]), atol=1e-9)
    np.testing.assert_allclose(out[:, 1], b.predict(X[:, [5, 1]]), atol=1e-9)


def _fitted(X, y, **params):
    return HistGradientBoostingRegressor(max_iter=3, random_state=0, **params).fit(X, y)


@pytest.mark.parametrize("case", ["random forest", "pipeline", "transformed target", "subclass", "unfitted",
                                  "feature count", "feature names", "categorical", "loss"])
def test_models_the_arrays_cannot_represent_are_refused(data, case):
    import pandas as pd

    X, y = data
    names = FEATURES
    if case == "random forest":
        model = RandomForestRegressor(n_estimators=2).fit(X, y)
    elif case == "pipeline":
        model = make_pipeline(StandardScaler(), HistGradientBoostingRegressor(max_iter=3)).fit(X, y)
    elif case == "transformed target":
        model = TransformedTargetRegressor(HistGradientBoostingRegressor(max_iter=3), func=np.exp,
                                           inverse_func=np.log, check_inverse=False).fit(X, np.abs(y) + 1)
    elif case == "subclass":
        class Shifted(HistGradientBoostingRegressor):
            def predict(self, X):
                return super().predict(X) + 1

        model = Shifted(max_iter=3).fit(X, y)
    elif case == "unfitted":
        model = HistGradientBoostingRegressor()
    elif case == "feature count":
        model, names = _fitted(X, y), FEATURES[:5]
    elif case == "feature names":
        model = _fitted(pd.DataFrame(X, columns=[f"g{i}" for i in range(6)]), y)
    elif case == "categorical":
        Xc = X.copy()
        Xc[:, 0] = (Xc[:, 0] > 0).astype(float)
        model = _fitted(Xc, y, categorical_features=[0])
    else:
        model = _fitted(X, y, loss="absolute_error")
    with pytest.raises(UnsupportedModel):
        from_hist_gradient_boosting(model, names)


def test_matching_fitted_feature_names_export(data):
    import pandas as pd

    X, y = data
    model = _fitted(pd.DataFrame(X, columns=FEATURES), y)
    ensemble = from_hist_gradient_boosting(model, FEATURES)
    np.testing.assert_allclose(ensemble.predict(X), model.predict(pd.DataFrame(X, columns=FEATURES)), atol=1e-9)


def test_artifacts_round_trip_and_are_byte_reproducible(data, with_missing):
    X, y = data
    model = HistGradientBoostingRegressor(max_iter=5, random_state=0).fit(X, y)
    ensemble = from_hist_gradient_boosting(model, FEATURES)
    first = ensembles_to_bytes({"history": ensemble})
    assert first == ensembles_to_bytes({"history": ensemble})
    loaded = ensembles_from_bytes(first, ["history"])["history"]
    assert isinstance(loaded, TreeEnsemble) and loaded.features == ensemble.features
    np.testing.assert_array_equal(loaded.predict(X), ensemble.predict(X))
    nan_model, test = with_missing  # the missing-value directions survive the round trip
    nan_ensemble = from_hist_gradient_boosting(nan_model, FEATURES)
    again = ensembles_from_bytes(ensembles_to_bytes({"history": nan_ensemble}), ["history"])["history"]
    np.testing.assert_array_equal(again.missing_left, nan_ensemble.missing_left)
    np.testing.assert_array_equal(again.predict(test), nan_ensemble.predict(test))


@pytest.mark.parametrize("version", [None, FORMAT_VERSION - 1, FORMAT_VERSION + 1])
def test_an_artifact_of_another_format_version_is_refused(data, version):
    X, y = data
    ensemble = from_hist_gradient_boosting(_fitted(X, y), FEATURES)
    arrays = ensemble.to_arrays("history/")
    assert int(arrays["history/format_version"]) == FORMAT_VERSION
    if version is None:  # as written before the format was versioned
        del arrays["history/format_version"], arrays["history/missing_left"]
    else:
        arrays["history/format_version"] = np.array(version)
    with pytest.raises(ArtifactError, match="format version"):
        ensembles_from_bytes(pack_arrays(arrays), ["history"])


def test_pickled_objects_are_refused_both_ways():
    with pytest.raises(ValueError):
        pack_arrays({"evil": np.array([object()], dtype=object)})
    buffer = io.BytesIO()
    np.savez(buffer, evil=np.array([{"a": 1}], dtype=object))
    with pytest.raises(ArtifactError):
        unpack_arrays(buffer.getvalue())["evil"]
    with pytest.raises(ArtifactError):
        unpack_arrays(b"not a zip at all")


def _fitted_with_check_rows(data):
    X, y = data
    model = HistGradientBoostingRegressor(max_iter=10, max_depth=4, random_state=0).fit(X, y)
    return with_check_rows(from_hist_gradient_boosting(model, FEATURES), model, X)


def _set(name, index, value):
    def change(arrays):
        arrays[name] = arrays[name].astype(type(value) if not isinstance(value, bool) else bool).copy()
        arrays[name][index] = value
    return change


def _first_split(ensemble: TreeEnsemble) -> int:
    return int(np.flatnonzero(ensemble.children[0::2] != np.arange(len(ensemble.feature)))[0])


# Each way arrays can be well-formed as an archive but not as trees, and what verify says.
BROKEN = {
    "child outside the tree": (lambda e: _set("m/children", 0, 10 ** 6), "outside its"),
    "negative root": (lambda e: _set("m/roots", 0, -1), "outside its"),
    "one child only": (lambda e: _set("m/children", 2 * _first_leaf(e) + 1, 0), "only one child"),
    "split on a missing feature": (lambda e: _set("m/feature", _first_split(e), 99), "feature it does not have"),
    "NaN threshold": (lambda e: _set("m/threshold", _first_split(e), float("nan")), "NaN threshold"),
    "infinite leaf": (lambda e: _set("m/value", _first_leaf(e), float("inf")), "non-finite leaf"),
    "depth understated": (lambda e: _set("m/meta", 0, 1.0), "deeper than its recorded depth"),
    "leaves scaled by 1 %": (lambda e: lambda a: a.update({"m/value": a["m/value"] * 1.01}),
                             "training-time predictions"),
    "threshold moved": (lambda e: _set("m/threshold", _first_split(e), -1e9), "training-time predictions"),
    "check rows of another width": (lambda e: lambda a: a.update({"m/check_inputs": a["m/check_inputs"][:, :2]}),
                                    "check rows of shape"),
    "node arrays of different lengths": (lambda e: lambda a: a.update({"m/value": a["m/value"][:-1]}),
                                         "different lengths"),
}


def _first_leaf(ensemble: TreeEnsemble) -> int:
    return int(np.flatnonzero(ensemble.children[0::2] == np.arange(len(ensemble.feature)))[0])


@pytest.mark.parametrize("kind", list(BROKEN))
def test_arrays_that_are_not_the_trained_trees_never_load(data, kind):
    ensemble = _fitted_with_check_rows(data)
    arrays = ensemble.to_arrays("m/")
    TreeEnsemble.from_arrays(arrays, "m/")  # intact, it loads
    breaking, reason = BROKEN[kind]
    breaking(ensemble)(arrays)
    with pytest.raises(FormatError, match=reason):
        TreeEnsemble.from_arrays(arrays, "m/")


def test_check_rows_travel_with_the_artifact_and_hold_missing_values(data):
    ensemble = _fitted_with_check_rows(data)
    assert ensemble.check_inputs.shape == (16, len(FEATURES))
    assert np.isnan(ensemble.check_inputs).any(axis=1).sum() == 8
    loaded = ensembles_from_bytes(ensembles_to_bytes({"m": ensemble}), ["m"])["m"]
    np.testing.assert_array_equal(loaded.check_outputs, ensemble.check_outputs)
    np.testing.assert_allclose(loaded.predict(loaded.check_inputs), ensemble.check_outputs, rtol=1e-12)
