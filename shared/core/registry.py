"""The model registry: artifacts, version records, production pointers, history.

- Artifacts live create-only under ``models/<target>/<version>/``: ``model.npz``
  (plain arrays, loaded with ``allow_pickle=False``), ``reference.npz`` and
  ``metadata.json``. The registry keeps each file's sha256; a load checks it.
  ``model.npz`` carries the array layout's format version
  (``shared/core/forest.FORMAT_VERSION``): a load refuses a missing or other
  version, so a model this code would misread never serves.
- ``models/<version>`` records a version's status: candidate, production,
  rejected or archived, with reasons.
- ``production/<target>`` points at the serving version. Promotion and rollback
  move it in one transaction that compares the previous version, updates both
  version records, and appends to ``promotions``; ``model-updated`` is published
  only after that commit.
"""

from __future__ import annotations

import io
import zipfile
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from shared.core.forest import FormatError, TreeEnsemble
from shared.core.frames import content_hash
from shared.core.intervals import IntervalTable
from shared.platform import names
from shared.platform.backends import Backends
from shared.platform.errors import InvalidData
from shared.platform.log import get_logger
from shared.platform.ports import AlreadyExists, NotFound, where
from shared.platform.settings import Settings
from shared.platform.timefmt import iso_utc

log = get_logger("registry")
CANDIDATE, PRODUCTION, REJECTED, ARCHIVED = "candidate", "production", "rejected", "archived"
MODEL_FILE, REFERENCE_FILE, METADATA_FILE = "model.npz", "reference.npz", "metadata.json"


class ArtifactError(InvalidData):
    """An artifact is missing, corrupt, of another format version, or does not match its
    recorded sha256."""


def pack_arrays(arrays: Mapping[str, np.ndarray]) -> bytes:
    """Arrays as .npz bytes: compressed, no pickled objects, and byte-for-byte
    reproducible (fixed member timestamps, sorted names), so the same model has the
    same sha256 on every run."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name in sorted(arrays):
            member = io.BytesIO()
            np.lib.format.write_array(member, np.asarray(arrays[name]), allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, member.getvalue())
    return buffer.getvalue()


def unpack_arrays(data: bytes) -> dict[str, np.ndarray]:
    """Arrays from .npz bytes; refuses pickled objects."""
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            return {k: npz[k] for k in npz.files}
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
        raise ArtifactError(f"not a readable array archive: {type(exc).__name__}: {exc}") from exc


INTERVALS_PREFIX = "interval/"


@dataclass(frozen=True)
class ModelArtifact:
    """What ``model.npz`` holds: each member's trees and each variant's interval table."""

    ensembles: dict[str, TreeEnsemble]
    intervals: dict[str, IntervalTable] = field(default_factory=dict)


def ensembles_to_bytes(ensembles: Mapping[str, TreeEnsemble],
                       intervals: Mapping[str, IntervalTable] | None = None) -> bytes:
    """A model artifact: each member's arrays (with the format version) under ``<member>/``,
    each variant's interval table under ``interval/<variant>/``."""
    arrays: dict[str, np.ndarray] = {}
    for member, ensemble in ensembles.items():
        arrays.update(ensemble.to_arrays(f"{member}/"))
    for variant, table in (intervals or {}).items():
        arrays.update(table.to_arrays(f"{INTERVALS_PREFIX}{variant}/"))
    return pack_arrays(arrays)


def artifact_from_bytes(data: bytes, members: list[str]) -> ModelArtifact:
    """The members and interval tables of a model artifact; ArtifactError when a member is
    missing, unreadable or of another format version (artifacts written before versioning
    have none). An artifact without intervals (written before them) serves without."""
    arrays = unpack_arrays(data)
    try:
        ensembles = {m: TreeEnsemble.from_arrays(arrays, f"{m}/") for m in members}
        variants = {k[len(INTERVALS_PREFIX):].split("/")[0] for k in arrays if k.startswith(INTERVALS_PREFIX)}
        tables = {v: IntervalTable.from_arrays(arrays, f"{INTERVALS_PREFIX}{v}/") for v in sorted(variants)}
    except KeyError as exc:
        raise ArtifactError(f"artifact lacks {exc}") from exc
    except FormatError as exc:
        raise ArtifactError(f"unsupported artifact format: {exc}") from exc
    except ValueError as exc:
        raise ArtifactError(f"unreadable interval table: {exc}") from exc
    return ModelArtifact(ensembles, {v: t for v, t in tables.items() if t is not None})


def ensembles_from_bytes(data: bytes, members: list[str]) -> dict[str, TreeEnsemble]:
    """The members of a model artifact (``artifact_from_bytes`` without the intervals)."""
    return artifact_from_bytes(data, members).ensembles


@dataclass(frozen=True)
class Promotion:
    """What a promotion attempt did: whether it won, and the version now serving."""

    won: bool
    target: str
    version: str
    current: str | None
    reason: str = ""


class Registry:
    """Registry operations on one set of backends."""

    def __init__(self, settings: Settings, backends: Backends) -> None:
        self.settings = settings
        self.backends = backends

    # -- artifacts ------------------------------------------------------------------

    def artifact_prefix(self, target: str, version: str) -> str:
        return f"{names.MODEL_ARTIFACTS}{target}/{version}/"

    def write_artifact(self, target: str, version: str, files: Mapping[str, bytes]) -> dict[str, str]:
        """Write each file create-only; returns name -> object path.

        A rerun of the same training finds the model files identical (they are
        reproducible); its metadata differs only in ``created_at`` and the first
        one written is kept.
        """
        written = {}
        for name, data in files.items():
            obj = self.artifact_prefix(target, version) + name
            try:
                self.backends.blobs.create(obj, data, "application/json" if name.endswith(".json")
                                           else "application/octet-stream")
            except AlreadyExists:
                if name != METADATA_FILE and content_hash(self.backends.blobs.read(obj)) != content_hash(data):
                    raise ArtifactError(f"{obj} exists with different content") from None
            written[name] = obj
        return written

    def read_verified(self, obj: str, expected_sha256: str) -> bytes:
        """An artifact file's bytes, after checking them against the registry's sha256."""
        try:
            data = self.backends.blobs.read(obj)
        except NotFound as exc:
            raise ArtifactError(f"{obj} is missing") from exc
        if content_hash(data) != expected_sha256:
            raise ArtifactError(f"{obj} does not match its recorded sha256")
        return data

    def load_model(self, record: Mapping[str, Any]) -> ModelArtifact:
        """The version's members and interval tables, verified; ArtifactError when it cannot serve.

        ``record["variants"]`` names the members the artifact holds (the name predates twins).
        """
        data = self.read_verified(record["artifact"], record["sha256"])
        return artifact_from_bytes(data, list(record["variants"]))

    def load_ensembles(self, record: Mapping[str, Any]) -> dict[str, TreeEnsemble]:
        """The version's members, verified; ArtifactError when it cannot serve."""
        return self.load_model(record).ensembles

    # -- records --------------------------------------------------------------------

    def get(self, version: str) -> dict[str, Any] | None:
        return self.backends.documents.get(names.MODELS, version)

    def production(self, target: str) -> dict[str, Any] | None:
        """One target's production pointer, or None."""
        return self.backends.documents.get(names.PRODUCTION, target)

    def production_pointers(self) -> dict[str, dict[str, Any]]:
        """Every target's production pointer, ``{target: pointer}``, in one query."""
        return {doc_id: doc for doc_id, doc in self.backends.documents.query(where(names.PRODUCTION))}

    def record(self, record: Mapping[str, Any]) -> dict[str, Any]:
        """Create a version record, or return the one a previous run created."""
        try:
            self.backends.documents.create(names.MODELS, record["version"], dict(record))
            return dict(record)
        except AlreadyExists:
            return self.get(record["version"]) or dict(record)

    def reject(self, version: str, reasons: list[str]) -> None:
        def change(txn: Any) -> None:
            current = txn.get(names.MODELS, version)
            if current and current["status"] == CANDIDATE:
                txn.set(names.MODELS, version, {**current, "status": REJECTED, "reasons": reasons,
                                                "decided_at": iso_utc(timespec="microseconds")})

        self.backends.documents.transaction(change)

    def versions(self, target: str, limit: int = 20) -> list[dict[str, Any]]:
        """A target's versions, newest first."""
        found = self.backends.documents.query(where(names.MODELS, ("target", "==", target),
                                                    order_by="created_at", descending=True,
                                                    limit=limit))
        return [doc for _, doc in found]

    def history(self, target: str, limit: int = 20) -> list[dict[str, Any]]:
        """A target's promotions and rollbacks, newest first."""
        found = self.backends.documents.query(where(names.PROMOTIONS, ("target", "==", target),
                                                    order_by="at", descending=True, limit=limit))
        return [doc for _, doc in found]

    # -- promotion ------------------------------------------------------------------

    def _move(self, target: str, version: str, expected: str | None, action: str, reason: str,
              actor: str, allowed: tuple[str, ...]) -> Promotion:
        def move(txn: Any) -> Promotion:
            pointer = txn.get(names.PRODUCTION, target)
            current = pointer["version"] if pointer else None
            if current != expected:
                return Promotion(False, target, version, current,
                                 f"production moved to {current} before this {action} committed")
            record = txn.get(names.MODELS, version)
            previous = txn.get(names.MODELS, current) if current else None
            if record is None or record["target"] != target or record["status"] not in allowed:
                status = record["status"] if record else "missing"
                return Promotion(False, target, version, current,
                                 f"{version} is {status}; {action} needs one of {allowed}")
            now = iso_utc(timespec="microseconds")
            txn.set(names.PRODUCTION, target, {
                "target": target, "version": version, "previous_version": current,
                "promoted_at": now, "reason": reason, "action": action, "actor": actor,
                "artifact": record["artifact"], "sha256": record["sha256"],
                "variants": record["variants"], "metrics": record.get("metrics", {}).get("served", {})})
            txn.set(names.MODELS, version, {**record, "status": PRODUCTION, "promoted_at": now})
            if previous is not None and current != version:
                txn.set(names.MODELS, current, {**previous, "status": ARCHIVED, "archived_at": now})
            txn.create(names.PROMOTIONS, f"{target}-{now.replace(':', '').replace('+', 'Z')}-{action}", {
                "target": target, "action": action, "from_version": current, "to_version": version,
                "reason": reason, "actor": actor, "at": now})
            return Promotion(True, target, version, version, reason)

        outcome = self.backends.documents.transaction(move)
        log.info(f"{action} {'committed' if outcome.won else 'refused'}", fields={
            "target": target, "version": version, "current": outcome.current, "reason": outcome.reason})
        return outcome

    def promote(self, target: str, version: str, expected: str | None, reason: str,
                actor: str = "retrain") -> Promotion:
        """Make a candidate serve, if production is still ``expected``."""
        return self._move(target, version, expected, "promote", reason, actor, (CANDIDATE,))

    def rollback(self, target: str, version: str, reason: str, actor: str = "operator") -> Promotion:
        """Make an earlier (archived) version serve again."""
        pointer = self.production(target)
        current = pointer["version"] if pointer else None
        if current == version:
            return Promotion(False, target, version, current, f"{version} is already serving")
        return self._move(target, version, current, "rollback", reason, actor, (ARCHIVED,))

    def announce(self, promotions: list[Promotion], cause: str, extra: Mapping[str, Any] | None = None) -> str | None:
        """Publish model-updated for committed promotions (after the commit, never before)."""
        won = [p for p in promotions if p.won]
        if not won:
            return None
        targets = {}
        for p in won:
            pointer = self.production(p.target) or {}
            targets[p.target] = {k: pointer.get(k) for k in ("version", "artifact", "sha256", "metrics",
                                                            "previous_version")}
        payload = {"cause": cause, "targets": targets, **dict(extra or {})}
        return self.backends.events.publish(self.settings.topic_model_updated, payload,
                                            {"cause": cause, "targets": ",".join(sorted(targets))})
