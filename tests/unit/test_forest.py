"""Plain-array tree ensembles: exact parity with scikit-learn, fused evaluation, packing."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.ensemble import HistGradientBoostingRegressor, RandomForestRegressor

from shared.core.forest import EnsembleBank, TreeEnsemble, UnsupportedModel, from_hist_gradient_boosting
from shared.core.registry import ArtifactError, ensembles_from_bytes, ensembles_to_bytes, pack_arrays, unpack_arrays


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(4000, 6))
    y = 3 * X[:, 0] + np.sin(2 * X[:, 1]) + X[:, 2] * X[:, 3] + rng.normal(size=4000) * 0.1
    return X, y


@pytest.mark.parametrize("params", [dict(max_iter=30, max_depth=5, learning_rate=0.2),
                                    dict(max_iter=20)])  # unbounded depth, 31 leaves
def test_exported_ensemble_predicts_exactly_like_scikit_learn(data, params):
    X, y = data
    model = HistGradientBoostingRegressor(random_state=0, early_stopping=False, **params).fit(X, y)
    ensemble = from_hist_gradient_boosting(model, [f"f{i}" for i in range(6)])
    np.testing.assert_allclose(ensemble.predict(X), model.predict(X), rtol=0, atol=1e-9)
    assert ensemble.n_trees == params["max_iter"]


def test_a_bank_evaluates_several_ensembles_over_shared_columns(data):
    X, y = data
    a = HistGradientBoostingRegressor(max_iter=10, random_state=0).fit(X[:, :3], y)
    b = HistGradientBoostingRegressor(max_iter=15, random_state=0).fit(X[:, [5, 1]], -y)
    ea = from_hist_gradient_boosting(a, ["f0", "f1", "f2"])
    eb = from_hist_gradient_boosting(b, ["f5", "f1"])
    out = EnsembleBank([ea, eb], [[0, 1, 2], [5, 1]]).predict(X)
    np.testing.assert_allclose(out[:, 0], a.predict(X[:, :3]), atol=1e-9)
    np.testing.assert_allclose(out[:, 1], b.predict(X[:, [5, 1]]), atol=1e-9)


def test_other_estimators_are_refused(data):
    X, y = data
    with pytest.raises(UnsupportedModel):
        from_hist_gradient_boosting(RandomForestRegressor(n_estimators=2).fit(X, y), ["f"] * 6)


def test_artifacts_round_trip_and_are_byte_reproducible(data):
    X, y = data
    model = HistGradientBoostingRegressor(max_iter=5, random_state=0).fit(X, y)
    ensemble = from_hist_gradient_boosting(model, [f"f{i}" for i in range(6)])
    first = ensembles_to_bytes({"history": ensemble})
    assert first == ensembles_to_bytes({"history": ensemble})
    loaded = ensembles_from_bytes(first, ["history"])["history"]
    assert isinstance(loaded, TreeEnsemble) and loaded.features == ensemble.features
    np.testing.assert_array_equal(loaded.predict(X), ensemble.predict(X))


def test_pickled_objects_are_refused_both_ways():
    with pytest.raises(ValueError):
        pack_arrays({"evil": np.array([object()], dtype=object)})
    import io
    buffer = io.BytesIO()
    np.savez(buffer, evil=np.array([{"a": 1}], dtype=object))
    with pytest.raises(ArtifactError):
        unpack_arrays(buffer.getvalue())["evil"]
    with pytest.raises(ArtifactError):
        unpack_arrays(b"not a zip at all")
