"""One retrain, from a data-ready event to model-updated.

A data-ready event either announces an accepted batch, which extends the
processed dataset, or (``retracted: true``) a batch an operator took back,
which a new processed version leaves out; both then train the same way.

claim the event -> extend the processed dataset by the batch -> train both
variants of every target -> gate -> write artifacts and registry records ->
promote (compare-and-swap) -> publish model-updated.

Version ids derive from the dataset version, the training configuration and the
code version, so a rerun of the same event after a crash produces the same
version, finds its artifacts and records, and finishes instead of duplicating.
What the records and ``metadata.json`` hold is assembled in ``metadata.py``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from shared.core.calendar_store import operator_calendar
from shared.core.dataset_spec import DatasetSpec
from shared.core.frames import content_hash
from shared.core.registry import (
    CANDIDATE,
    METADATA_FILE,
    MODEL_FILE,
    REFERENCE_FILE,
    ArtifactError,
    Promotion,
    Registry,
    ensembles_to_bytes,
    pack_arrays,
)
from shared.platform import names
from shared.platform.backends import Backends
from shared.platform.claims import RUNNING, EventClaims, LiveClaim
from shared.platform.errors import ForecastError
from shared.platform.log import get_logger
from shared.platform.pubsub_push import BadEvent, decode_event
from shared.platform.settings import Settings
from shared.retrain import gates, metadata
from shared.retrain.processed import DatasetVersion, NothingLeft, ProcessedData
from shared.retrain.training import (
    SERVED,
    Prepared,
    TargetFit,
    TrainingConfig,
    candidate_on,
    evaluate_champion,
    fit_target,
    prepare,
    refit_on_all,
)

log = get_logger("retrain")


class PermanentFailure(ForecastError):
    """An event that can never succeed: recorded and acknowledged, not retried."""


class ClaimBusy(LiveClaim, RuntimeError):
    """The event is claimed by a live run; raising makes Pub/Sub deliver it again later.

    The entry point answers it with 409 (``claims.nack_if_claimed``), not a 500.
    """


@dataclass
class TargetOutcome:
    """What happened to one target in a retrain."""

    target: str
    version: str
    decision: str
    reasons: list[str]
    promotion: Promotion | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"target": self.target, "version": self.version, "decision": self.decision,
                "reasons": self.reasons}


class Retrainer:
    """Retrains one dataset's targets on one set of backends."""

    def __init__(self, settings: Settings, backends: Backends, spec: DatasetSpec,
                 clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.backends = backends
        self.spec = spec
        self.config = TrainingConfig.from_spec(spec, {"params": {
            **dict(spec.section("training").get("params", {})), **settings.training_params}})
        self.registry = Registry(settings, backends)
        self.processed = ProcessedData(backends, spec)
        self.claims = EventClaims(backends.documents, settings.claim_lease_seconds, clock)

    # -- event handling -------------------------------------------------------------

    def handle(self, cloud_event: Any) -> dict[str, Any]:
        """Process one data-ready CloudEvent; raises only for failures worth a redelivery."""
        try:
            message = decode_event(cloud_event)
        except BadEvent as exc:
            event_id = str(cloud_event["id"])
            claim = self.claims.claim(event_id, topic="data-ready")
            if claim.acquired:
                self.claims.failed(event_id, claim.owner, f"undecodable event: {exc}")
            log.error("undecodable data-ready event acknowledged", fields={"event_id": event_id,
                                                                             "error": str(exc)})
            return {"status": "failed", "reason": str(exc)}
        claim = self.claims.claim(message.id, topic="data-ready", batch_id=message.data.get("batch_id"))
        if not claim.acquired and claim.state == RUNNING:
            # Another delivery holds a live claim. Acknowledging would lose the event
            # if that run has crashed: ask for a redelivery, which finds the work done
            # or takes over the claim once its lease has run out.
            raise ClaimBusy(message.id, claim.record, self.claims.clock())
        if not claim.acquired:
            log.info("duplicate delivery, no work", fields={"event_id": message.id, "state": claim.state})
            return {"status": "duplicate", "state": claim.state}
        try:
            summary = self.retrain(message.data)
        except PermanentFailure as exc:
            self.claims.failed(message.id, claim.owner, str(exc))
            log.error("data-ready event cannot succeed; acknowledged", fields={
                "event_id": message.id, "reason": str(exc)})
            return {"status": "failed", "reason": str(exc)}
        except Exception as exc:
            self.claims.release(message.id, claim.owner, f"{type(exc).__name__}: {exc}")
            raise
        self.claims.done(message.id, claim.owner, outcome=summary)
        return summary

    # -- one retrain ----------------------------------------------------------------

    def _batch(self, data: Mapping[str, Any]) -> dict[str, Any]:
        batch_id = data.get("batch_id")
        if not isinstance(batch_id, str) or not batch_id:
            raise PermanentFailure("event names no batch_id")
        try:
            record = self.backends.documents.get(names.BATCHES, batch_id)
        except ValueError as exc:
            raise PermanentFailure(f"invalid batch id {batch_id!r}") from exc
        if record is None:
            raise PermanentFailure(f"unknown batch {batch_id!r}")
        expected = names.BATCH_RETRACTED if data.get("retracted") is True else names.BATCH_ACCEPTED
        if record.get("status") != expected:
            raise PermanentFailure(f"batch {batch_id} is {record.get('status')}, not {expected}")
        return record

    def retrain(self, data: Mapping[str, Any]) -> dict[str, Any]:
        """Train, gate and promote for the batch the event announces."""
        started = time.perf_counter()
        batch = self._batch(data)
        retracting = batch["status"] == names.BATCH_RETRACTED
        try:
            dataset, frame = (self.processed.exclude(batch) if retracting
                              else self.processed.extend(batch))
        except NothingLeft as exc:
            raise PermanentFailure(str(exc)) from exc
        prepared = prepare(frame, self.spec, self.config.holdout_days,
                           operator_calendar(self.backends.documents, self.spec))
        outcomes = [self._target(prepared, dataset, target) for target in self.spec.target_names]
        message_id = self.registry.announce(
            [o.promotion for o in outcomes if o.promotion], cause="retrain",
            extra={"dataset_version": dataset.version, "batch_id": batch["batch_id"],
                   **({"retracted": True} if retracting else {})})
        summary = {"status": "trained", "dataset_version": dataset.version, "rows": dataset.rows,
                   **({"retracted_batch_id": batch["batch_id"]} if retracting else {}),
                   "targets": [o.as_dict() for o in outcomes], "model_updated_message_id": message_id,
                   "seconds": round(time.perf_counter() - started, 3)}
        log.info("retrain finished", fields=summary)
        return summary

    def _version_id(self, target: str, dataset: DatasetVersion) -> str:
        digest = content_hash(f"{dataset.sha256}|{self.config.digest()}|{self.settings.code_version}".encode())
        return f"{target}-{dataset.seq:06d}-{digest[:8]}"

    def _champion(self, target: str, prepared: Prepared
                  ) -> tuple[dict[str, Any] | None, dict | None, str, np.datetime64 | None]:
        """The production pointer, its served metrics on the holdout rows it never saw, why
        they are missing, and the end of the data it saw (None: it saw none of the holdout).

        A production model refit on every row saw its dataset up to its lineage end, which
        overlaps this holdout when retrains come daily: there it is in-sample, and comparing
        would reject every honest candidate. It is judged on the newer rows only."""
        pointer = self.registry.production(target)
        if pointer is None:
            return None, None, "", None
        record = self.registry.get(pointer["version"]) or {}
        end = (record.get("lineage") or {}).get("end")
        seen_until = np.datetime64(end, "m") if record.get("refit") and end else None
        try:
            ensembles = self.registry.load_ensembles(pointer)
            champion = evaluate_champion(ensembles, prepared, target, seen_until)
        except (ArtifactError, KeyError) as exc:
            log.error("production model cannot be evaluated", fields={"target": target, "error": str(exc)})
            return pointer, None, f"production model {pointer['version']} unusable: {exc}", None
        if not champion.get("n"):
            return pointer, None, (f"production model {pointer['version']} was refit on every row of this "
                                   "holdout: no row to compare on"), None
        return pointer, champion, "", seen_until

    def _target(self, prepared: Prepared, dataset: DatasetVersion, target: str) -> TargetOutcome:
        version = self._version_id(target, dataset)
        existing = self.registry.get(version)
        if existing is not None and existing["status"] != CANDIDATE:
            # A rerun after a crash: the decision stands; a promotion is announced again.
            again = Promotion(True, target, version, version) if existing["status"] == "production" else None
            return TargetOutcome(target, version, existing["status"], existing.get("reasons", []), again)
        fit = fit_target(prepared, target, self.config)
        base = metadata.record_base(fit, dataset, version, self.spec, self.settings.code_version)
        if fit.data_gate.status == gates.FAILED:
            reasons = gates.failures([fit.data_gate])
            self.registry.record({**base, "status": "rejected", "reasons": reasons,
                                  "gates": [fit.data_gate.as_dict()]})
            return TargetOutcome(target, version, "rejected", reasons)

        pointer, champion, champion_note, seen_until = self._champion(target, prepared)
        # Served metrics against the champion's served metrics on the same rows; the
        # parity gate refuses an export that would not predict like its model.
        parity = fit.parity or gates.GateResult("parity", gates.FAILED, None, None, "not checked")
        results = [fit.data_gate, parity, *gates.evaluate(gates.gate_config(self.spec, target),
                                                              fit.metrics[SERVED], fit.naive, champion,
                                                              candidate_on(fit, seen_until))]
        if champion_note:
            results[-1] = gates.GateResult("champion", gates.SKIPPED, None, None, champion_note)
        if self.config.refit and gates.passed(results):
            # The gates judged the model that never saw the holdout; the one served learns
            # from those most recent days too (it wins in the walk-forward, docs/retrain.md).
            fit = refit_on_all(prepared, target, self.config, fit)
            results[1] = fit.parity or gates.GateResult("parity", gates.FAILED, None, None, "not checked")
        record = self._write(fit, base, results, champion)
        self.registry.record(record)
        if not gates.passed(results):
            reasons = gates.failures(results)
            self.registry.reject(version, reasons)
            return TargetOutcome(target, version, "rejected", reasons)
        expected = pointer["version"] if pointer else None
        reason = metadata.promotion_reason(fit, champion)
        promotion = self.registry.promote(target, version, expected, reason)
        if not promotion.won:
            self.registry.reject(version, [f"promotion lost: {promotion.reason}"])
            return TargetOutcome(target, version, "rejected", [f"promotion lost: {promotion.reason}"])
        return TargetOutcome(target, version, "promoted", [reason], promotion)

    def _write(self, fit: TargetFit, base: dict[str, Any], results: list[gates.GateResult],
               champion: Mapping[str, float] | None) -> dict[str, Any]:
        """Write the version's files (create-only) and return its registry record."""
        model_bytes = ensembles_to_bytes(fit.ensembles, fit.intervals)
        reference_bytes = pack_arrays(fit.reference_sample)
        meta = metadata.artifact_metadata(base, fit, self.config, self.spec, results, champion,
                                          model_bytes, reference_bytes)
        files = self.registry.write_artifact(fit.target, base["version"], {
            MODEL_FILE: model_bytes, REFERENCE_FILE: reference_bytes,
            # One line: BigQuery's model_registry table reads the files as newline-delimited JSON.
            METADATA_FILE: (json.dumps(meta, default=str) + "\n").encode()})
        return metadata.version_record(base, fit, results, champion, files, model_bytes, reference_bytes)
