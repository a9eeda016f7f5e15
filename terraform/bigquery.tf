# Predictions against reality in SQL: external tables over what the functions already write
# to the data bucket (no copy, no load job, nothing on the functions' path) and views that
# join them (docs/deploy.md "Predictions vs reality in SQL"). BigQuery reads the objects
# with the querying principal's own credentials: var.analysts get read access to the three
# prefixes, the dataset, and query jobs.
locals {
  bq_dataset = replace("${var.name_prefix}_analytics", "-", "_")
  bq_tables  = "${var.project_id}.${local.bq_dataset}"
  spec       = jsondecode(file("${path.module}/../shared/core/specs/${var.dataset_spec}.json"))
  targets    = [for t in local.spec.targets : t.name]
  sources    = [for s in jsondecode(var.collect_sources) : s.name]
  bq_views = {
    actuals                = { sql = "actuals.sql.tftpl", description = "One row per timestamp of the accepted batches: the actuals." }
    predictions_vs_reality = { sql = "predictions_vs_reality.sql.tftpl", description = "Every served prediction row, per target, with the model version, its interval and the actual when collected." }
    metrics_daily          = { sql = "metrics_daily.sql.tftpl", description = "Per day of the predicted timestamps, target and model version: pairs, MAPE, RMSE, interval coverage, beside the version's holdout MAPE." }
  }
  analyst_prefixes = ["predictions/", "raw/", "models/"]
}

resource "google_bigquery_dataset" "analytics" {
  #checkov:skip=CKV_GCP_81:The dataset holds only external tables and views over the data bucket, which uses Google-managed encryption; there is no data at rest in BigQuery to encrypt with a customer key.
  dataset_id    = local.bq_dataset
  friendly_name = "${var.name_prefix} predictions vs reality"
  description   = "External tables over the data bucket (prediction log, collected batches, model registry) and views joining predictions with actuals."
  location      = var.region
  depends_on    = [terraform_data.apis_ready]
}

resource "google_bigquery_table" "prediction_log" {
  #checkov:skip=CKV_GCP_80:No data is stored in BigQuery (an external table or a view); the objects stay in the bucket under its encryption.
  #checkov:skip=CKV_GCP_121:Holds no data: replacing it loses nothing, and deletion protection would block the replacements a schema change needs.
  dataset_id          = google_bigquery_dataset.analytics.dataset_id
  table_id            = "prediction_log"
  description         = "predict's request log, predictions/date=YYYY-MM-DD/*.jsonl: one request per row."
  deletion_protection = false
  external_data_configuration {
    source_format         = "NEWLINE_DELIMITED_JSON"
    source_uris           = ["gs://${google_storage_bucket.data.name}/predictions/*"]
    autodetect            = false
    ignore_unknown_values = true
    schema                = file("${path.module}/bigquery/${var.dataset_spec}/prediction_log.json")
    hive_partitioning_options {
      mode              = "CUSTOM"
      source_uri_prefix = "gs://${google_storage_bucket.data.name}/predictions/{date:DATE}"
    }
  }
}

resource "google_bigquery_table" "batches" {
  #checkov:skip=CKV_GCP_80:No data is stored in BigQuery (an external table or a view); the objects stay in the bucket under its encryption.
  #checkov:skip=CKV_GCP_121:Holds no data: replacing it loses nothing, and deletion protection would block the replacements a schema change needs.
  for_each            = toset(local.sources)
  dataset_id          = google_bigquery_dataset.analytics.dataset_id
  table_id            = "batches_${replace(each.key, "-", "_")}"
  description         = "Accepted batches of source ${each.key}, raw/${each.key}/date=YYYY-MM-DD/*.csv: the canonical columns."
  deletion_protection = false
  external_data_configuration {
    source_format = "CSV"
    source_uris   = ["gs://${google_storage_bucket.data.name}/raw/${each.key}/*"]
    autodetect    = true
    csv_options {
      quote             = "\""
      skip_leading_rows = 1
    }
    hive_partitioning_options {
      mode              = "CUSTOM"
      source_uri_prefix = "gs://${google_storage_bucket.data.name}/raw/${each.key}/{date:DATE}"
    }
  }
}

resource "google_bigquery_table" "model_registry" {
  #checkov:skip=CKV_GCP_80:No data is stored in BigQuery (an external table or a view); the objects stay in the bucket under its encryption.
  #checkov:skip=CKV_GCP_121:Holds no data: replacing it loses nothing, and deletion protection would block the replacements a schema change needs.
  dataset_id          = google_bigquery_dataset.analytics.dataset_id
  table_id            = "model_registry"
  description         = "Every trained version's metadata.json (models/<target>/<version>/), one line each."
  deletion_protection = false
  external_data_configuration {
    source_format         = "NEWLINE_DELIMITED_JSON"
    source_uris           = ["gs://${google_storage_bucket.data.name}/models/*metadata.json"]
    autodetect            = false
    ignore_unknown_values = true
    schema                = file("${path.module}/bigquery/model_registry.json")
  }
}

resource "google_bigquery_table" "views" {
  #checkov:skip=CKV_GCP_80:No data is stored in BigQuery (an external table or a view); the objects stay in the bucket under its encryption.
  #checkov:skip=CKV_GCP_121:Holds no data: replacing it loses nothing, and deletion protection would block the replacements a schema change needs.
  for_each            = local.bq_views
  dataset_id          = google_bigquery_dataset.analytics.dataset_id
  table_id            = each.key
  description         = each.value.description
  deletion_protection = false
  view {
    query = templatefile("${path.module}/bigquery/${each.value.sql}", {
      tables = local.bq_tables, targets = local.targets, sources = [for s in local.sources : replace(s, "-", "_")]
    })
    use_legacy_sql = false
  }
  # The views name the tables (and each other) only inside their SQL.
  depends_on = [google_bigquery_table.prediction_log, google_bigquery_table.batches, google_bigquery_table.model_registry]
}

resource "google_bigquery_dataset_iam_member" "analysts" {
  for_each   = toset(var.analysts)
  dataset_id = google_bigquery_dataset.analytics.dataset_id
  role       = "roles/bigquery.dataViewer"
  member     = each.value
}

resource "google_project_iam_member" "analysts_jobs" {
  for_each   = toset(var.analysts)
  project    = var.project_id
  role       = "roles/bigquery.jobUser"
  member     = each.value
  depends_on = [terraform_data.apis_ready]
}

resource "google_storage_bucket_iam_member" "analysts" {
  for_each = toset(var.analysts)
  bucket   = google_storage_bucket.data.name
  role     = "roles/storage.objectViewer"
  member   = each.value
  condition {
    title       = "analysts-read"
    description = "Objects under ${join(", ", local.analyst_prefixes)} (and listing the bucket), for the external tables"
    expression = join(" || ", concat(
      ["resource.type == \"storage.googleapis.com/Bucket\""],
      [for p in local.analyst_prefixes : "resource.name.startsWith(\"projects/_/buckets/${local.bucket}/objects/${p}\")"]
    ))
  }
}
