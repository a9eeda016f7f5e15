"""Names of document collections and blob prefixes, in one place.

Terraform's Firestore indexes and IAM conditions refer to these same names;
``tests/test_terraform.py`` checks they agree.
"""

# Document collections
BATCHES = "batches"              # one record per collected batch, accepted or rejected
COLLECTIONS = "collections"      # one record per collection of a source, whatever its outcome
CURSORS = "cursors"              # per-dataset collection cursor (last stored timestamp)
SOURCE_STATE = "source_state"    # per-source last call and cached copy
EVENT_CLAIMS = "event_claims"    # at-least-once guard: one claim per processed event id
MODELS = "models"                # model registry: one record per trained version
PRODUCTION = "production"        # per-target pointer to the serving version
PROMOTIONS = "promotions"        # append-only promotion and rollback history
ALERTS = "alerts"                # monitor alerts, open and resolved
MONITOR_RUNS = "monitor_runs"    # one summary per monitor run
MONITOR_PUSHES = "monitor_pushes"  # one claim per production state a model-updated push judged
DATASETS = "datasets"            # per-dataset head of the processed data
DATASET_VERSIONS = "dataset_versions"  # every processed dataset version
CALENDARS = "calendars"          # per-dataset special days an operator added to the spec's

# Batch record statuses: rejected batches never reach retrain; an operator may retract an
# accepted one (shared/collect/retraction.py), which retrain then leaves out of the data.
BATCH_ACCEPTED = "accepted"
BATCH_REJECTED = "rejected"
BATCH_RETRACTED = "retracted"

# Blob prefixes
RAW = "raw/"
QUARANTINE = "quarantine/"
CACHE = "cache/"
PROCESSED = "processed/"
MODEL_ARTIFACTS = "models/"
PREDICTIONS = "predictions/"
REPORTS = "reports/"

# A prediction-log record field: how many records predict dropped (buffer full) before it.
PREDICTION_LOG_DROPPED = "log_dropped_before"
