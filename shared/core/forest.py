"""Tree ensembles as plain arrays: exported from scikit-learn, evaluated with numpy.

The artifact holds only numeric arrays (``np.load(..., allow_pickle=False)``), so
loading a model never executes code from storage, and predict needs numpy, not
scikit-learn (whose import alone costs about 2 s of cold start).

Layout: every node of every tree in flat arrays. A split node sends a row to
``children[2 * node]`` when ``x[feature] <= threshold`` (scikit-learn's rule)
and to ``children[2 * node + 1]`` otherwise; a leaf points to itself, so all
rows advance in lock-step for ``depth`` steps and end on their leaf. Several
ensembles (targets, variants) are evaluated in one pass over shared inputs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

# Rows per chunk: keeps the (rows x trees) working arrays inside the CPU cache.
CHUNK_ROWS = 512


class UnsupportedModel(ValueError):
    """The estimator cannot be exported to arrays."""


@dataclass(frozen=True)
class TreeEnsemble:
    """A sum of regression trees plus a baseline, over named input features."""

    features: tuple[str, ...]
    feature: np.ndarray     # int32 [nodes]: input column a split node tests
    threshold: np.ndarray   # float64 [nodes]: go left when x <= threshold; +inf on leaves
    children: np.ndarray    # int32 [2 * nodes]: left, right; a leaf points to itself
    value: np.ndarray       # float64 [nodes]: leaf values (0 on split nodes)
    roots: np.ndarray       # int32 [trees]
    depth: int
    baseline: float

    @property
    def n_trees(self) -> int:
        return int(len(self.roots))

    def to_arrays(self, prefix: str) -> dict[str, np.ndarray]:
        """Arrays for ``np.savez`` under ``prefix``."""
        return {f"{prefix}feature": self.feature, f"{prefix}threshold": self.threshold,
                f"{prefix}children": self.children, f"{prefix}value": self.value,
                f"{prefix}roots": self.roots,
                f"{prefix}meta": np.array([self.depth, self.baseline], dtype=float),
                f"{prefix}features": np.array(self.features, dtype=str)}

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray], prefix: str) -> "TreeEnsemble":
        meta = arrays[f"{prefix}meta"]
        return cls(features=tuple(str(f) for f in arrays[f"{prefix}features"]),
                   feature=arrays[f"{prefix}feature"].astype(np.int32),
                   threshold=arrays[f"{prefix}threshold"].astype(float),
                   children=arrays[f"{prefix}children"].astype(np.int32),
                   value=arrays[f"{prefix}value"].astype(float),
                   roots=arrays[f"{prefix}roots"].astype(np.int32),
                   depth=int(meta[0]), baseline=float(meta[1]))

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Predictions for a (rows, len(features)) float matrix."""
        return EnsembleBank([self], [list(range(len(self.features)))]).predict(X)[:, 0]


def from_hist_gradient_boosting(model: Any, features: Sequence[str]) -> TreeEnsemble:
    """Export a fitted ``HistGradientBoostingRegressor`` (squared error, numeric splits)."""
    predictors = getattr(model, "_predictors", None)
    if predictors is None or type(model).__name__ != "HistGradientBoostingRegressor":
        raise UnsupportedModel(f"cannot export {type(model).__name__}; use HistGradientBoostingRegressor")
    if type(model._loss).__name__ != "HalfSquaredError":
        raise UnsupportedModel("only the squared_error loss exports (identity link)")
    feature, threshold, children, value, roots = [], [], [], [], []
    depth, offset = 0, 0
    for (tree,) in predictors:
        nodes = tree.nodes
        if nodes["is_categorical"].any():
            raise UnsupportedModel("categorical splits do not export")
        leaf = nodes["is_leaf"].astype(bool)
        idx = np.arange(len(nodes), dtype=np.int64) + offset
        feature.append(np.where(leaf, 0, nodes["feature_idx"]).astype(np.int32))
        threshold.append(np.where(leaf, np.inf, nodes["num_threshold"]))
        left = np.where(leaf, idx, nodes["left"].astype(np.int64) + offset)
        right = np.where(leaf, idx, nodes["right"].astype(np.int64) + offset)
        children.append(np.column_stack([left, right]).ravel().astype(np.int32))
        value.append(np.where(leaf, nodes["value"], 0.0))
        roots.append(offset)
        depth = max(depth, int(nodes["depth"].max()))
        offset += len(nodes)
    return TreeEnsemble(features=tuple(features), feature=np.concatenate(feature),
                        threshold=np.concatenate(threshold), children=np.concatenate(children),
                        value=np.concatenate(value), roots=np.array(roots, dtype=np.int32),
                        depth=depth, baseline=float(np.ravel(model._baseline_prediction)[0]))


class EnsembleBank:
    """Several ensembles fused for one pass over a shared input matrix.

    ``columns[k][j]`` is the input column of ensemble ``k``'s feature ``j``.
    """

    def __init__(self, ensembles: Sequence[TreeEnsemble], columns: Sequence[Sequence[int]]) -> None:
        feature, threshold, children, value, roots, starts = [], [], [], [], [], []
        offset = 0
        for ens, cols in zip(ensembles, columns):
            mapping = np.asarray(cols, dtype=np.int32)
            feature.append(mapping[ens.feature])
            threshold.append(ens.threshold)
            children.append(ens.children + offset)
            value.append(ens.value)
            starts.append(sum(len(r) for r in roots))
            roots.append(ens.roots + offset)
            offset += len(ens.feature)
        self.feature = np.concatenate(feature)
        self.threshold = np.concatenate(threshold)
        self.children = np.concatenate(children)
        self.value = np.concatenate(value)
        self.roots = np.concatenate(roots)
        self.starts = np.asarray(starts, dtype=np.intp)
        self.baselines = np.array([e.baseline for e in ensembles])
        self.depth = max(e.depth for e in ensembles)

    def predict(self, X: np.ndarray) -> np.ndarray:
        """A (rows, ensembles) matrix of predictions."""
        X = np.ascontiguousarray(X, dtype=float)
        rows, width = X.shape
        out = np.empty((rows, len(self.baselines)))
        trees = len(self.roots)
        # Preallocated work arrays: every step writes in place (``out=``), which
        # saves a third of the time over allocating per step.
        size = min(rows, CHUNK_ROWS)
        node = np.empty((size, trees), np.int32)
        column = np.empty_like(node)
        x = np.empty((size, trees))
        threshold = np.empty_like(x)
        go_right = np.empty((size, trees), bool)
        for start in range(0, rows, CHUNK_ROWS):
            flat = X[start:start + CHUNK_ROWS].ravel()
            n = len(flat) // width if width else 0
            nd, col, xv, th, gr = node[:n], column[:n], x[:n], threshold[:n], go_right[:n]
            nd[:] = self.roots
            row_offset = (np.arange(n, dtype=np.int32) * width)[:, None]
            for _ in range(self.depth):
                np.take(self.feature, nd, out=col)
                np.add(col, row_offset, out=col)
                np.take(flat, col, out=xv)
                np.take(self.threshold, nd, out=th)
                np.greater(xv, th, out=gr)
                np.multiply(nd, 2, out=col)
                np.add(col, gr, out=col)
                np.take(self.children, col, out=nd)
            out[start:start + n] = np.add.reduceat(self.value[nd], self.starts, axis=1) + self.baselines
        return out
