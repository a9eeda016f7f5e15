locals {
  bucket         = "${var.project_id}-${var.name_prefix}-data"
  sources_bucket = "${var.project_id}-${var.name_prefix}-sources"

  topics = {
    data_ready    = "${var.name_prefix}-data-ready"
    model_updated = "${var.name_prefix}-model-updated"
    alerts        = "${var.name_prefix}-alerts"
  }
  dead_letter_suffix = "-dead-letter"

  # One function per folder in functions/; the entry point is the folder name.
  functions = {
    # Pub/Sub push and Cloud Scheduler in the same project count as internal traffic.
    collect_data = { timeout = 540, max_instances = 1, concurrency = 1, ingress = "ALLOW_INTERNAL_ONLY" }
    retrain      = { timeout = 540, max_instances = 2, concurrency = 1, ingress = "ALLOW_INTERNAL_ONLY" }
    predict      = { timeout = 60, max_instances = var.predict_max_instances, concurrency = var.predict_concurrency, ingress = var.predict_ingress }
    # A model-updated push arriving during a scheduled run must not get a 429 (which Pub/Sub
    # retries toward the dead-letter topic): two runs fit side by side; alerts are updated
    # in transactions keyed by condition, so overlapping runs do not raise one twice.
    monitor = { timeout = 540, max_instances = 2, concurrency = 2, ingress = "ALLOW_INTERNAL_ONLY" }
  }

  # Memory in GiB per function ("512Mi" or "2Gi"), for Cloud Run's CPU/memory rules and the cost model.
  memory_gib = {
    for k, v in var.function_memory : k => endswith(v, "Mi") ? tonumber(trimsuffix(v, "Mi")) / 1024 : tonumber(trimsuffix(v, "Gi"))
  }
  # Native thread pools (OpenMP in scikit-learn) size themselves from the host's cores, not the
  # instance's vCPU: OMP_NUM_THREADS carries the vCPU count, and retrain's fits apply it with
  # threadpoolctl (shared/retrain/training.py, docs/retrain.md).
  threads = { for k, v in var.function_cpu : k => tostring(max(1, floor(tonumber(v)))) }

  # Push subscriptions: topic -> consuming function. Declared here (not by Eventarc)
  # so each one carries a dead-letter policy; see README "Event delivery".
  push_subscriptions = {
    retrain-data-ready    = { topic = "data_ready", function = "retrain", ack_deadline = 600 }
    predict-model-updated = { topic = "model_updated", function = "predict", ack_deadline = 60 }
    monitor-model-updated = { topic = "model_updated", function = "monitor", ack_deadline = 600 }
  }
  consumed_topics = toset([for s in values(local.push_subscriptions) : s.topic])

  prediction_log_flush_seconds = "30"

  common_env = {
    BACKEND              = "gcp"
    GOOGLE_CLOUD_PROJECT = var.project_id
    BUCKET               = local.bucket
    FIRESTORE_DATABASE   = google_firestore_database.main.name
    DATASET_SPEC         = var.dataset_spec
    TOPIC_DATA_READY     = local.topics.data_ready
    TOPIC_MODEL_UPDATED  = local.topics.model_updated
    TOPIC_ALERTS         = local.topics.alerts
    DEAD_LETTER_SUFFIX   = local.dead_letter_suffix
    CODE_VERSION         = var.code_version
    LOG_LEVEL            = "INFO"
  }
  function_env = {
    collect_data = {
      COLLECT_SOURCES   = var.collect_sources
      COLLECT_WINDOW    = var.collect_window
      QUALITY_THRESHOLD = "0.8"
      MAX_REQUEST_BYTES = tostring(var.max_request_bytes)
    }
    retrain = {
      TRAINING_PARAMS     = "{}"
      CLAIM_LEASE_SECONDS = "120"
      # The push subscription's own retry policy, so that retrain's start-up check
      # (the retries outlast twice the claim lease) judges what Pub/Sub really does.
      EVENT_MAX_DELIVERY_ATTEMPTS = tostring(var.event_max_delivery_attempts)
      EVENT_MIN_BACKOFF_SECONDS   = tostring(var.event_retry_backoff.min)
      EVENT_MAX_BACKOFF_SECONDS   = tostring(var.event_retry_backoff.max)
      EVENT_ACK_DEADLINE_SECONDS  = tostring(local.push_subscriptions["retrain-data-ready"].ack_deadline)
    }
    predict = {
      MODEL_REFRESH_SECONDS        = "10"
      PREDICT_MAX_INSTANCES        = "10000"
      MAX_REQUEST_BYTES            = tostring(var.max_request_bytes)
      PREDICT_THREADS              = local.threads["predict"]
      PREDICTION_LOG_FLUSH_RECORDS = "200"
      PREDICTION_LOG_FLUSH_SECONDS = local.prediction_log_flush_seconds
      PREDICTION_LOG_MAX_ROWS      = "50000"
      # functions-framework: one gunicorn worker per vCPU (one process is GIL-bound). A lone
      # worker serves best with one thread: threads only contend for its GIL (measured at one
      # worker: 686-747 requests/s, p99 20-21 ms with 1 thread; 476, p99 32 ms with 4; docs/predict.md).
      WORKERS = local.threads["predict"]
      THREADS = contains(["0.5", "1"], var.function_cpu["predict"]) ? "1" : "4"
    }
    monitor = {
      MONITOR_WINDOW              = "P1D"
      MONITOR_PREDICTION_LOOKBACK = "P7D"
      ALERT_THRESHOLDS            = "{}"
      ALERT_COOLDOWN              = "PT6H"
      DEPLOYMENT_NAME             = var.name_prefix
      COLLECT_WINDOW              = var.collect_window
      FRESHNESS_PERIODS           = "2"
      MAX_REQUEST_BYTES           = tostring(var.max_request_bytes)
      # monitor judges requests once predict has surely flushed them.
      PREDICTION_LOG_FLUSH_SECONDS = local.prediction_log_flush_seconds
      MONITOR_AUTO_RETRAIN         = var.monitor_auto_retrain ? "true" : "false"
      COST_MODEL = jsonencode({
        vcpu       = tonumber(var.function_cpu["predict"])
        memory_gib = local.memory_gib["predict"]
      })
    }
  }
  # Environment variables read from Secret Manager, per function: name -> secret id.
  secret_env = {
    # The api_key_env variables named by COLLECT_SOURCES' http sources (docs/collect.md).
    collect_data = var.collect_secrets
    predict      = var.predict_api_key_secret == null ? {} : { PREDICT_API_KEY = var.predict_api_key_secret }
    monitor      = var.alert_webhook_secret == null ? {} : { ALERT_WEBHOOK_URL = var.alert_webhook_secret }
  }
  secret_bindings = {
    for b in flatten([
      for fn, env in local.secret_env : [for name, secret in env : { key = "${fn}-${name}", fn = fn, secret = secret }]
    ]) : b.key => b
  }
}
