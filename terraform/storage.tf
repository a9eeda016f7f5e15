# Data: raw/, quarantine/, cache/, processed/, models/, predictions/, reports/.
resource "google_storage_bucket" "data" {
  #checkov:skip=CKV_GCP_62:Object reads and writes are recorded by Cloud Audit Logs data-access logs (google_project_iam_audit_config.storage) instead of legacy usage logs in a second bucket; with var.storage_data_access_logs off only admin activity is recorded, an accepted risk stated in docs/deploy.md.
  name                        = local.bucket
  location                    = var.region
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = false

  # Models and processed data are written create-only; versioning also keeps a
  # replaced reports/latest.* and anything deleted by mistake for a while.
  versioning {
    enabled = true
  }

  lifecycle_rule {
    condition {
      age            = var.retention_days.raw_to_coldline
      matches_prefix = ["raw/"]
    }
    action {
      type          = "SetStorageClass"
      storage_class = "COLDLINE"
    }
  }
  lifecycle_rule {
    condition {
      age            = var.retention_days.predictions
      matches_prefix = ["predictions/"]
    }
    action {
      type = "Delete"
    }
  }
  lifecycle_rule {
    condition {
      age            = var.retention_days.reports
      matches_prefix = ["reports/"]
    }
    action {
      type = "Delete"
    }
  }
  lifecycle_rule {
    condition {
      age            = var.retention_days.quarantine
      matches_prefix = ["quarantine/"]
    }
    action {
      type = "Delete"
    }
  }
  lifecycle_rule {
    condition {
      days_since_noncurrent_time = var.retention_days.noncurrent
      with_state                 = "ARCHIVED"
    }
    action {
      type = "Delete"
    }
  }
  depends_on = [terraform_data.apis_ready]
}

# Function source bundles, named by content hash.
resource "google_storage_bucket" "sources" {
  #checkov:skip=CKV_GCP_62:Build inputs only; reads and writes are recorded by the same Cloud Audit Logs data-access logs as the data bucket (google_project_iam_audit_config.storage).
  name                        = local.sources_bucket
  location                    = var.region
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = true

  versioning {
    enabled = true
  }

  # A code change uploads a new bundle (its name is its hash) and Terraform deletes the old
  # one, which versioning keeps as noncurrent: only those are removed, never a live bundle,
  # which a rebuild of the function (a configuration change) still reads.
  lifecycle_rule {
    condition {
      days_since_noncurrent_time = var.retention_days.noncurrent
      with_state                 = "ARCHIVED"
    }
    action {
      type = "Delete"
    }
  }
  depends_on = [terraform_data.apis_ready]
}

resource "google_storage_bucket_object" "bundle" {
  for_each = local.functions
  # A code change changes the hash, hence the name, hence the function's source: it redeploys.
  name   = "bundles/${each.key}-${filesha256("${var.bundle_dir}/${each.key}.zip")}.zip"
  bucket = google_storage_bucket.sources.name
  source = "${var.bundle_dir}/${each.key}.zip"
  # The function switches to the new bundle before the old one goes.
  lifecycle {
    create_before_destroy = true
  }
}

# Data-access audit logs for Cloud Storage: who read or wrote which object. They are off
# by default on a project. The resource is authoritative for storage.googleapis.com in the
# project: an audit configuration for Cloud Storage set elsewhere is replaced.
resource "google_project_iam_audit_config" "storage" {
  count   = var.storage_data_access_logs ? 1 : 0
  project = var.project_id
  service = "storage.googleapis.com"
  audit_log_config {
    log_type = "DATA_READ"
  }
  audit_log_config {
    log_type = "DATA_WRITE"
  }
  depends_on = [terraform_data.apis_ready]
}
