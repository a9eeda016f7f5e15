"""The consolidated, versioned processed dataset that retrain extends batch by batch.

Each version is one gzip CSV under ``processed/<dataset>/`` written create-only;
the head pointer (documents store) moves to it by compare-and-swap on the
version number, so two retrains extending at once cannot lose a batch. A batch
already in the head is not added again: extending is idempotent.

A retracted batch (an operator took it back, ``shared/collect/retraction.py``)
is excluded: the next version drops its rows and lists it under ``retracted``,
so a late extend by the same batch cannot bring it back.
"""

from __future__ import annotations

import gzip
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from shared.core.dataset_spec import TIMESTAMP, DatasetSpec
from shared.core.frames import content_hash, read_canonical_csv, to_canonical_csv
from shared.platform import names
from shared.platform.backends import Backends
from shared.platform.ports import AlreadyExists
from shared.platform.timefmt import iso_utc

if TYPE_CHECKING:
    import pandas as pd

MAX_RACE_RETRIES = 5


class NothingLeft(ValueError):
    """Retracting the batch would leave no processed data to train on."""


@dataclass(frozen=True)
class DatasetVersion:
    """One version of the processed dataset."""

    version: str
    seq: int
    object: str
    rows: int
    start: str
    end: str
    batch_ids: tuple[str, ...]
    sha256: str
    retracted: tuple[str, ...] = ()

    def as_doc(self) -> dict[str, Any]:
        return {"version": self.version, "seq": self.seq, "object": self.object, "rows": self.rows,
                "start": self.start, "end": self.end, "batch_ids": list(self.batch_ids),
                "sha256": self.sha256, "retracted": list(self.retracted)}

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any]) -> DatasetVersion:
        return cls(version=doc["version"], seq=int(doc["seq"]), object=doc["object"],
                   rows=int(doc["rows"]), start=doc["start"], end=doc["end"],
                   batch_ids=tuple(doc["batch_ids"]), sha256=doc["sha256"],
                   retracted=tuple(doc.get("retracted") or ()))


class ProcessedData:
    """Read and extend one dataset's processed versions."""

    def __init__(self, backends: Backends, spec: DatasetSpec) -> None:
        self.backends = backends
        self.spec = spec

    def head(self) -> DatasetVersion | None:
        doc = self.backends.documents.get(names.DATASETS, self.spec.name)
        return DatasetVersion.from_doc(doc) if doc else None

    def read(self, version: DatasetVersion) -> pd.DataFrame:
        raw = self.backends.blobs.read(version.object)
        if content_hash(raw) != version.sha256:
            raise ValueError(f"processed data {version.object} does not match its sha256")
        return read_canonical_csv(gzip.decompress(raw))

    def extend(self, batch: Mapping[str, Any]) -> tuple[DatasetVersion, pd.DataFrame]:
        """The head version including ``batch`` (an accepted batch record), and its frame."""
        import pandas as pd

        new_rows = read_canonical_csv(self.backends.blobs.read(batch["object"]))
        batch_id = batch["batch_id"]
        for _ in range(MAX_RACE_RETRIES):
            head = self.head()
            if head is not None and (batch_id in head.batch_ids or batch_id in head.retracted):
                return head, self.read(head)
            frame = new_rows if head is None else pd.concat([self.read(head), new_rows])
            frame = frame.sort_values(TIMESTAMP).drop_duplicates(TIMESTAMP, keep="first")
            batch_ids = (*(head.batch_ids if head else ()), batch_id)
            version = self._write(frame, head, batch_ids, head.retracted if head else ())
            if self._move_head(head, version, {"added_batch": batch_id}):
                return version, frame.reset_index(drop=True)
        raise RuntimeError(f"processed data of {self.spec.name} kept moving; retry later")

    def exclude(self, batch: Mapping[str, Any]) -> tuple[DatasetVersion, pd.DataFrame]:
        """The head version without ``batch`` (a retracted batch record), and its frame.

        Idempotent: once the head lists the batch as retracted, it is returned as is.
        """
        import pandas as pd

        batch_id = batch["batch_id"]
        stamps = read_canonical_csv(self.backends.blobs.read(batch["object"]))[TIMESTAMP]
        for _ in range(MAX_RACE_RETRIES):
            head = self.head()
            if head is not None and batch_id in head.retracted:
                return head, self.read(head)
            frame = self.read(head) if head is not None else pd.DataFrame()
            if head is not None and batch_id in head.batch_ids:
                frame = frame[~frame[TIMESTAMP].isin(stamps)]
            if head is None or frame.empty:
                raise NothingLeft(f"retracting {batch_id} leaves no processed data of {self.spec.name}")
            version = self._write(frame, head, tuple(b for b in head.batch_ids if b != batch_id),
                                  (*head.retracted, batch_id))
            if self._move_head(head, version, {"removed_batch": batch_id}):
                return version, frame.reset_index(drop=True)
        raise RuntimeError(f"processed data of {self.spec.name} kept moving; retry later")

    def _write(self, frame: pd.DataFrame, head: DatasetVersion | None, batch_ids: tuple[str, ...],
               retracted: tuple[str, ...]) -> DatasetVersion:
        seq = (head.seq + 1) if head else 1
        body = gzip.compress(to_canonical_csv(frame, self.spec), mtime=0)
        digest = content_hash(body)
        version = f"{self.spec.name}-{seq:06d}-{digest[:8]}"
        obj = f"{names.PROCESSED}{self.spec.name}/{version}.csv.gz"
        try:
            self.backends.blobs.create(obj, body, "application/gzip")
        except AlreadyExists:
            pass  # same content, same name: a concurrent or earlier run wrote it
        ts = frame[TIMESTAMP]
        return DatasetVersion(version=version, seq=seq, object=obj, rows=len(frame),
                              start=ts.min().isoformat(), end=ts.max().isoformat(),
                              batch_ids=batch_ids, sha256=digest, retracted=retracted)

    def _move_head(self, expected: DatasetVersion | None, version: DatasetVersion,
                   change: Mapping[str, str]) -> bool:
        """Compare-and-swap the head; ``change`` says what this version did (lineage)."""
        def cas(txn: Any) -> bool:
            current = txn.get(names.DATASETS, self.spec.name)
            if (current["seq"] if current else 0) != (expected.seq if expected else 0):
                return False
            doc = {**version.as_doc(), "updated_at": iso_utc(timespec="microseconds")}
            txn.set(names.DATASETS, self.spec.name, doc)
            txn.set(names.DATASET_VERSIONS, version.version,
                    {**doc, "batch_ids": None, **change,
                     "parent": expected.version if expected else None})
            return True

        return self.backends.documents.transaction(cas)
