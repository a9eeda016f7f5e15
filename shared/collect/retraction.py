"""Taking an accepted batch back out: an operator's retraction, recorded and announced.

The batch's file stays in ``raw/`` as evidence; its record turns ``retracted``
with the reason, who and when. Retracting also bumps the dataset cursor's
``revision``, so predict and the monitor reload their recent actuals without
it (they read accepted batches only). A ``data-ready`` message with
``retracted: true`` makes retrain build a processed dataset version without the
batch and train on it.

Each step is idempotent, so a retraction whose announcement failed is finished
by running the same command again.
"""

from __future__ import annotations

from typing import Any

from shared.platform import names
from shared.platform.backends import Backends
from shared.platform.log import get_logger
from shared.platform.settings import Settings
from shared.platform.timefmt import iso_utc

log = get_logger("collect")
ACCEPTED, RETRACTED = names.BATCH_ACCEPTED, names.BATCH_RETRACTED


def retract(backends: Backends, settings: Settings, batch_id: str, reason: str,
            actor: str) -> dict[str, Any]:
    """Mark an accepted batch retracted and announce it; LookupError/ValueError say why not."""
    if not reason.strip():
        raise ValueError("a retraction needs a reason")

    def mark(txn: Any) -> dict[str, Any]:
        record = txn.get(names.BATCHES, batch_id)
        if record is None:
            raise LookupError(f"no batch {batch_id!r}")
        if record.get("status") == RETRACTED:
            return dict(record)
        if record.get("status") != ACCEPTED:
            raise ValueError(f"batch {batch_id} is {record.get('status')}: only an accepted batch "
                             "can be retracted")
        cursor = txn.get(names.CURSORS, record["dataset"]) or {}  # every read before a write
        retracted = {**record, "status": RETRACTED,
                     "retraction": {"reason": reason, "actor": actor, "at": iso_utc(),
                                    "announced": False}}
        txn.set(names.BATCHES, batch_id, retracted)
        txn.set(names.CURSORS, record["dataset"],
                {**cursor, "revision": int(cursor.get("revision") or 0) + 1,
                 "retracted_batch_id": batch_id})
        return retracted

    record = backends.documents.transaction(mark)
    retraction = record["retraction"]
    if retraction.get("announced"):
        return _result(record, already=True)
    message_id = backends.events.publish(
        settings.topic_data_ready,
        {"batch_id": batch_id, "dataset": record["dataset"], "retracted": True,
         "reason": retraction["reason"]},
        {"batch_id": batch_id, "dataset": record["dataset"], "kind": RETRACTED})

    def announced(txn: Any) -> dict[str, Any]:
        current = txn.get(names.BATCHES, batch_id) or record
        done = {**current, "retraction": {**current["retraction"], "announced": True,
                                          "message_id": message_id}}
        txn.set(names.BATCHES, batch_id, done)
        return done

    record = backends.documents.transaction(announced)
    log.warning("batch retracted", fields={"batch_id": batch_id, "reason": retraction["reason"],
                                           "actor": retraction["actor"], "message_id": message_id})
    return _result(record, already=False)


def _result(record: dict[str, Any], already: bool) -> dict[str, Any]:
    retraction = record["retraction"]
    return {"batch_id": record["batch_id"], "status": record["status"], "start": record.get("start"),
            "end": record.get("end"), "reason": retraction["reason"], "actor": retraction["actor"],
            "at": retraction["at"], "message_id": retraction.get("message_id"),
            "already_retracted": already}
