"""Tree ensembles as plain arrays, evaluated with numpy.

The artifact holds only numeric arrays (``np.load(..., allow_pickle=False)``), so
loading a model never executes code from storage, and predict needs numpy, not
scikit-learn (whose import alone costs about 2 s of cold start). The exporter that
reads scikit-learn's fitted trees lives on the retrain side
(``shared/retrain/export.py``); this module only holds and evaluates the arrays.

Layout: every node of every tree in flat arrays. A split node sends a row to
``children[2 * node]`` when ``x[feature] <= threshold`` (scikit-learn's rule)
and to ``children[2 * node + 1]`` otherwise; a missing value (NaN) goes left
when the node's ``missing_left`` flag is set and right otherwise, exactly as
scikit-learn's ``missing_go_to_left``. A leaf points to itself, so all rows
advance in lock-step for ``depth`` steps and end on their leaf. Several
ensembles (targets, variants) are evaluated in one pass over shared inputs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from shared.platform.errors import InvalidData

# Rows per chunk: keeps the (rows x trees) working arrays inside the CPU cache.
CHUNK_ROWS = 512
# The array layout's version. Bump it whenever the arrays or their meaning change:
# a loader refuses any other version rather than evaluate arrays it misreads.
# Version 2 added ``missing_left``; artifacts before it carry no version at all. The
# check rows (``check_inputs``/``check_outputs``) are optional, so adding them kept version 2.
FORMAT_VERSION = 2
# Deepest tree a loader accepts: scikit-learn's trees of 31 leaves are at most 30 deep.
MAX_DEPTH = 64
# Largest relative difference from the predictions recorded at training time (as the parity gate).
CHECK_TOLERANCE = 1e-9


class FormatError(InvalidData):
    """Arrays in a layout this code does not read (missing or other format version)."""


@dataclass(frozen=True)
class TreeEnsemble:
    """A sum of regression trees plus a baseline, over named input features."""

    features: tuple[str, ...]
    feature: np.ndarray       # int32 [nodes]: input column a split node tests
    threshold: np.ndarray     # float64 [nodes]: go left when x <= threshold; +inf on leaves
    missing_left: np.ndarray  # bool [nodes]: a NaN goes left (else right); False on leaves
    children: np.ndarray      # int32 [2 * nodes]: left, right; a leaf points to itself
    value: np.ndarray         # float64 [nodes]: leaf values (0 on split nodes)
    roots: np.ndarray         # int32 [trees]
    depth: int
    baseline: float
    # Input rows and the predictions the trained model gave for them, recorded at training
    # time: a loader evaluates the arrays on them before serving (``verify``).
    check_inputs: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))
    check_outputs: np.ndarray = field(default_factory=lambda: np.zeros(0))

    @property
    def n_trees(self) -> int:
        return len(self.roots)

    def to_arrays(self, prefix: str) -> dict[str, np.ndarray]:
        """Arrays for ``np.savez`` under ``prefix``, with the format version."""
        return {f"{prefix}format_version": np.array(FORMAT_VERSION, dtype=np.int64),
                f"{prefix}feature": self.feature, f"{prefix}threshold": self.threshold,
                f"{prefix}missing_left": self.missing_left.astype(np.uint8),
                f"{prefix}children": self.children, f"{prefix}value": self.value,
                f"{prefix}roots": self.roots,
                f"{prefix}meta": np.array([self.depth, self.baseline], dtype=float),
                f"{prefix}features": np.array(self.features, dtype=str),
                f"{prefix}check_inputs": self.check_inputs, f"{prefix}check_outputs": self.check_outputs}

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray], prefix: str) -> TreeEnsemble:
        """The ensemble stored under ``prefix``, verified (``verify``); FormatError for another
        format version or arrays that do not form trees, KeyError for a missing array."""
        name = prefix.rstrip("/") or "ensemble"
        version = arrays.get(f"{prefix}format_version")
        found = None if version is None or np.size(version) != 1 else int(np.ravel(version)[0])
        if found != FORMAT_VERSION:
            raise FormatError(f"{name} has format version {found}, this code reads "
                              f"{FORMAT_VERSION}; retrain to produce a current artifact")
        try:
            meta = np.asarray(arrays[f"{prefix}meta"], dtype=float).ravel()
            ensemble = cls(features=tuple(str(f) for f in np.ravel(arrays[f"{prefix}features"])),
                           feature=_vector(arrays[f"{prefix}feature"], np.int32),
                           threshold=_vector(arrays[f"{prefix}threshold"], float),
                           missing_left=_vector(arrays[f"{prefix}missing_left"], bool),
                           children=_vector(arrays[f"{prefix}children"], np.int32),
                           value=_vector(arrays[f"{prefix}value"], float),
                           roots=_vector(arrays[f"{prefix}roots"], np.int32),
                           depth=int(meta[0]), baseline=float(meta[1]),
                           check_inputs=np.asarray(arrays.get(f"{prefix}check_inputs", np.zeros((0, 0))), float),
                           check_outputs=np.asarray(arrays.get(f"{prefix}check_outputs", np.zeros(0)), float))
        except (TypeError, ValueError, IndexError, OverflowError) as exc:
            raise FormatError(f"{name} has unreadable arrays: {exc}") from exc
        ensemble.verify(name)
        return ensemble

    def verify(self, name: str = "ensemble") -> None:
        """FormatError unless the arrays form trees this code can evaluate (lengths, indices
        in range, every path a leaf within ``depth`` steps, finite leaves) and they reproduce
        the recorded ``check_outputs`` on ``check_inputs``."""
        nodes = len(self.feature)
        if not (nodes and len(self.threshold) == len(self.missing_left) == len(self.value) == nodes
                and len(self.children) == 2 * nodes):
            raise FormatError(f"{name} has node arrays of different lengths, or none")
        if not len(self.roots) or not 0 <= self.depth <= MAX_DEPTH or not np.isfinite(self.baseline):
            raise FormatError(f"{name} has no trees, a depth outside 0..{MAX_DEPTH} or a non-finite baseline")
        if not (_in_range(self.children, nodes) and _in_range(self.roots, nodes)):
            raise FormatError(f"{name} points to nodes outside its {nodes} nodes")
        own = np.arange(nodes)
        leaf = self.children[0::2] == own
        if (leaf != (self.children[1::2] == own)).any():
            raise FormatError(f"{name} has nodes with only one child")
        if not _in_range(self.feature[~leaf], len(self.features)) or np.isnan(self.threshold[~leaf]).any():
            raise FormatError(f"{name} splits on a feature it does not have, or on a NaN threshold")
        if not np.isfinite(self.value[leaf]).all():
            raise FormatError(f"{name} has non-finite leaf values")
        reached = np.unique(self.roots)
        for _ in range(self.depth):
            reached = np.unique(self.children[np.concatenate([2 * reached, 2 * reached + 1])])
        if not leaf[reached].all():
            raise FormatError(f"{name} has trees deeper than its recorded depth {self.depth}")
        self._verify_check_rows(name)

    def _verify_check_rows(self, name: str) -> None:
        if not self.check_outputs.size:
            return  # written before check rows were recorded
        X = self.check_inputs
        if X.ndim != 2 or X.shape != (len(self.check_outputs), len(self.features)):
            raise FormatError(f"{name} has check rows of shape {X.shape} for {len(self.features)} features")
        got = self.predict(X)
        scale = max(float(np.max(np.abs(self.check_outputs))), np.finfo(float).tiny)
        worst = float(np.max(np.abs(got - self.check_outputs))) / scale
        if not worst <= CHECK_TOLERANCE:  # NaN fails too
            raise FormatError(f"{name} does not reproduce its training-time predictions "
                              f"(relative difference {worst:.3g})")

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Predictions for a (rows, len(features)) float matrix."""
        return EnsembleBank([self], [list(range(len(self.features)))]).predict(X)[:, 0]


def _vector(values: np.ndarray, dtype: type) -> np.ndarray:
    array = np.asarray(values)
    if array.ndim != 1:
        raise ValueError(f"expected a vector, found shape {array.shape}")
    return array.astype(dtype)


def _in_range(index: np.ndarray, size: int) -> bool:
    return bool(((index >= 0) & (index < size)).all())


class EnsembleBank:
    """Several ensembles fused for one pass over a shared input matrix.

    ``columns[k][j]`` is the input column of ensemble ``k``'s feature ``j``.
    """

    def __init__(self, ensembles: Sequence[TreeEnsemble], columns: Sequence[Sequence[int]]) -> None:
        feature: list[np.ndarray] = []
        threshold: list[np.ndarray] = []
        nan_right: list[np.ndarray] = []
        children: list[np.ndarray] = []
        value: list[np.ndarray] = []
        roots: list[np.ndarray] = []
        used: list[np.ndarray] = []
        starts: list[int] = []
        offset = 0
        for ens, cols in zip(ensembles, columns, strict=True):
            mapping = np.asarray(cols, dtype=np.intp)
            feature.append(mapping[ens.feature])
            threshold.append(ens.threshold)
            nan_right.append(~ens.missing_left.astype(bool))
            children.append(ens.children.astype(np.intp) + offset)
            value.append(ens.value)
            starts.append(int(sum(len(r) for r in roots)))
            roots.append(ens.roots.astype(np.intp) + offset)
            split = ens.children[0::2] != np.arange(len(ens.feature))  # leaves point to themselves
            used.append(mapping[ens.feature[split]])
            offset += len(ens.feature)
        # Node indices as intp, the type numpy indexes with (see ``predict``).
        self.feature = np.concatenate(feature)
        self.threshold = np.concatenate(threshold)
        self.nan_right = np.concatenate(nan_right)
        self.children = np.concatenate(children)
        self.value = np.concatenate(value)
        self.roots = np.concatenate(roots)
        self.starts = np.asarray(starts, dtype=np.intp)
        self.baselines = np.array([e.baseline for e in ensembles])
        self.depth = max(e.depth for e in ensembles)
        # The columns some split tests: a NaN elsewhere (e.g. another target's
        # history column in a shared matrix) never reaches a split, so it does
        # not force the slower missing-value path.
        self.used_columns = np.unique(np.concatenate(used)) if used else np.zeros(0, np.intp)

    def predict(self, X: np.ndarray) -> np.ndarray:
        """A (rows, ensembles) matrix of predictions."""
        X = np.ascontiguousarray(X, dtype=float)
        rows, width = X.shape
        out = np.empty((rows, len(self.baselines)))
        nan_rows = None  # per row: a NaN in a column some split tests
        if len(self.used_columns) and np.isnan(X).any():  # one cheap scan for the usual all-finite case
            nan_rows = np.isnan(X[:, self.used_columns]).any(axis=1)
        for start in range(0, rows, CHUNK_ROWS):
            flat = X[start:start + CHUNK_ROWS].ravel()
            n = len(flat) // width if width else 0
            # Only a chunk holding a NaN in a tested column pays for missing-value routing.
            has_nan = nan_rows is not None and bool(nan_rows[start:start + n].any())
            node = np.tile(self.roots, (n, 1))
            row_offset = np.arange(0, n * width, width, dtype=np.intp)[:, None]
            for _ in range(self.depth):
                # Indexing with intp arrays, not np.take: several times faster on these
                # sizes, and it keeps the GIL, where np.take (and any int32 index, which
                # numpy first casts) releases and retakes it on every call: with a
                # worker's request threads waiting, each of those is a thread switch.
                column = self.feature[node]
                column += row_offset
                values = flat[column]
                go_right = values > self.threshold[node]  # NaN > t is False: a NaN lands left here ...
                if has_nan:  # ... and goes right where the node says missing goes right
                    go_right |= np.isnan(values) & self.nan_right[node]
                node *= 2
                node += go_right
                node = self.children[node]
            out[start:start + n] = np.add.reduceat(self.value[node], self.starts, axis=1) + self.baselines
        return out
